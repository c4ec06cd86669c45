"""The graph of an alert's metric before and after a fix: a Prometheus range query drawn as SVG (no plotting library).

The metric is the alert's expression, taken from the alert's ``generatorURL`` (``.../graph?g0.expr=...``), without
its final threshold comparison (``up{job="orchestrator"} == 0`` plots ``up{job="orchestrator"}``, with the threshold
drawn as a dashed line). The SVG carries its axes' ranges (``data-t0``, ``data-t1``, ``data-v0``, ``data-v1`` and
the plot box), so :func:`plotted_values` reads the plotted values back from the points: what a test compares with
the range query's values.
"""

from __future__ import annotations

import html
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from octoctl.errors import ExitCode, OctoctlError

WIDTH, HEIGHT = 720, 260
BOX = {"left": 60.0, "top": 20.0, "width": 600.0, "height": 180.0}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
MAX_SERIES = 6
MAX_POINTS = 240
_COMPARISON = re.compile(
    r"^(?P<expr>.*?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?:bool\s+)?(?P<value>-?[0-9.]+(?:e[+-]?\d+)?)\s*$", re.DOTALL)


@dataclass
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]

    @property
    def name(self) -> str:
        shown = {k: v for k, v in self.labels.items() if k != "__name__"}
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items()))
        return f"{self.labels.get('__name__', '')}{{{inner}}}" if inner or self.labels.get("__name__") else "value"


@dataclass
class Graph:
    query: str
    start: float
    end: float
    step: float
    series: list[Series] = field(default_factory=list)
    threshold: float | None = None
    marks: list[tuple[float, str]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self, svg: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "query": self.query, "start": self.start, "end": self.end, "step": self.step,
            "threshold": self.threshold, "marks": [{"at": t, "label": label} for t, label in self.marks],
            "series": [{"labels": s.labels, "values": [[t, v] for t, v in s.points]} for s in self.series],
            "error": self.error,
        }
        if svg:
            data["svg"] = render_svg(self)
        return data


def alert_expression(generator_url: str) -> tuple[str, float | None] | None:
    """``(metric expression, threshold)`` from an alert's generatorURL; None when it names no expression."""
    if not generator_url:
        return None
    query = urllib.parse.parse_qs(urllib.parse.urlparse(generator_url).query)
    expr = (query.get("g0.expr") or [""])[0].strip()
    if not expr:
        return None
    return split_threshold(expr)


def split_threshold(expr: str) -> tuple[str, float | None]:
    match = _COMPARISON.match(expr)
    if match is None or _depth(match["expr"]) != 0 or " or " in match["expr"] or " and " in match["expr"]:
        return expr, None
    return match["expr"].strip(), float(match["value"])


def _depth(text: str) -> int:
    return text.count("(") - text.count(")")


def step_for(start: float, end: float, minimum: float = 1.0) -> float:
    return float(max(minimum, math.ceil((end - start) / MAX_POINTS)))


def range_query(prometheus_url: str, query: str, start: float, end: float, step: float,
                timeout: float = 10.0) -> list[Series]:
    """Prometheus' ``/api/v1/query_range``; OctoctlError (exit 3) when it cannot be asked."""
    params = urllib.parse.urlencode({"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"})
    url = f"{prometheus_url.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - an http(s) URL of settings
            data = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise OctoctlError(f"Prometheus range query failed: {exc}", ExitCode.ENVIRONMENT) from exc
    if data.get("status") != "success":
        raise OctoctlError(f"Prometheus range query failed: {data.get('error', data)}", ExitCode.ENVIRONMENT)
    found = []
    for item in data["data"]["result"]:
        points = [(float(t), float(v)) for t, v in item.get("values", []) if v not in ("NaN", "+Inf", "-Inf")]
        found.append(Series(dict(item.get("metric") or {}), points))
    return found


def fetch_graph(prometheus_url: str, generator_url: str, start: datetime, end: datetime,
                marks: list[tuple[datetime, str]] | None = None) -> Graph | None:
    """The graph of the alert's metric over [start, end]; None when the alert names no expression. A Prometheus
    that does not answer gives a graph with ``error`` set (a notification still goes out)."""
    found = alert_expression(generator_url)
    if found is None:
        return None
    expr, threshold = found
    t0, t1 = start.timestamp(), max(end.timestamp(), start.timestamp() + 1)
    graph = Graph(query=expr, start=round(t0, 3), end=round(t1, 3), step=step_for(t0, t1), threshold=threshold,
                  marks=[(m.timestamp(), label) for m, label in (marks or [])])
    try:
        graph.series = range_query(prometheus_url, graph.query, graph.start, graph.end, graph.step)[:MAX_SERIES]
    except OctoctlError as exc:
        graph.error = exc.message
    return graph


# --- drawing ---------------------------------------------------------------------------------------


def _value_range(graph: Graph) -> tuple[float, float]:
    values = [v for s in graph.series for _, v in s.points]
    if graph.threshold is not None:
        values.append(graph.threshold)
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 1.0, high + 1.0
    if low > 0 and low < (high - low):
        low = 0.0
    return low, high


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def render_svg(graph: Graph) -> str:
    """An SVG line chart of the graph's series, with the threshold and the marks (alert start, fix)."""
    t0, t1 = graph.start, graph.end
    v0, v1 = _value_range(graph)
    left, top, width, height = BOX["left"], BOX["top"], BOX["width"], BOX["height"]

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * width

    def y(v: float) -> float:
        return top + (1.0 - (v - v0) / (v1 - v0)) * height

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="octoctl-graph" data-t0="{t0}" data-t1="{t1}" data-v0="{v0!r}" data-v1="{v1!r}" '
        f'data-box="{left},{top},{width},{height}" font-family="sans-serif" font-size="11">',
        f"<title>{html.escape(graph.query)}</title>",
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="#fff" stroke="#999"/>',
    ]
    for i in range(5):
        value = v0 + (v1 - v0) * i / 4
        parts.append(f'<line x1="{left}" x2="{left + width}" y1="{y(value):.2f}" y2="{y(value):.2f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 4}" y="{y(value) + 4:.2f}" text-anchor="end">{_fmt(value)}</text>')
    for i in range(5):
        t = t0 + (t1 - t0) * i / 4
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")
        parts.append(f'<text x="{x(t):.2f}" y="{top + height + 14}" text-anchor="middle">{label}</text>')
    if graph.threshold is not None:
        parts.append(f'<line class="threshold" x1="{left}" x2="{left + width}" y1="{y(graph.threshold):.2f}" '
                     f'y2="{y(graph.threshold):.2f}" stroke="#d62728" stroke-dasharray="4 3"/>')
    for t, label in graph.marks:
        if t0 <= t <= t1:
            parts.append(f'<line class="mark" x1="{x(t):.2f}" x2="{x(t):.2f}" y1="{top}" y2="{top + height}" '
                         f'stroke="#555" stroke-dasharray="2 2"/>')
            parts.append(f'<text x="{x(t) + 3:.2f}" y="{top + 10}">{html.escape(label)}</text>')
    for index, series in enumerate(graph.series):
        color = COLORS[index % len(COLORS)]
        points = " ".join(f"{x(t):.3f},{y(v):.3f}" for t, v in series.points)
        parts.append(f'<polyline class="series" data-series="{html.escape(series.name)}" fill="none" '
                     f'stroke="{color}" stroke-width="1.5" points="{points}"/>')
        parts.append(f'<text x="{left + 4}" y="{top + height + 30 + 12 * index}" fill="{color}">'
                     f"{html.escape(series.name)}</text>")
    if graph.error:
        parts.append(f'<text x="{left + 8}" y="{top + 20}" fill="#d62728">{html.escape(graph.error)}</text>')
    elif not graph.series:
        parts.append(f'<text x="{left + 8}" y="{top + 20}">no data</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def plotted_values(svg: str) -> dict[str, list[tuple[float, float]]]:
    """The ``(time, value)`` points of each polyline of an SVG made by :func:`render_svg`, read back through its
    axes: what the graph shows, for comparison with the range query."""
    root = re.search(r'data-t0="([^"]+)" data-t1="([^"]+)" data-v0="([^"]+)" data-v1="([^"]+)" '
                     r'data-box="([^"]+)"', svg)
    if root is None:
        raise ValueError("not an octoctl graph")
    t0, t1, v0, v1 = (float(root[i]) for i in range(1, 5))
    left, top, width, height = (float(p) for p in root[5].split(","))
    found: dict[str, list[tuple[float, float]]] = {}
    for name, points in re.findall(r'<polyline class="series" data-series="([^"]*)"[^>]* points="([^"]*)"', svg):
        pairs = []
        for pair in points.split():
            px, py = (float(p) for p in pair.split(","))
            pairs.append((t0 + (px - left) / width * (t1 - t0), v0 + (1.0 - (py - top) / height) * (v1 - v0)))
        found[html.unescape(name)] = pairs
    return found
