"""``octoctl health``: the seed's quick reference as one table, from a read-only run of the collection's
``octollm.remediation.health`` playbook (the stack check plus the health table judged in the collection,
``plugin_utils/health.py``, with the procedures' thresholds).

Exit statuses: 0 every service well; 1 a service is down or a row is not ok (a problem, or a metric that could not
be read); 3 the stack cannot be reached (the inventory host, the Docker or Kubernetes API).
"""

from __future__ import annotations

import json
from typing import Any

from octoctl.errors import ExitCode
from octoctl.exitstatus import status_for_code
from octoctl.models import RunReport, TargetResult

PLAYBOOK = "octollm.remediation.health"
# the procedures whose thresholds judge the table (their settings are the run's)
PROCEDURES = ("service_unavailable", "high_latency", "cache_performance", "database_connections", "resource_exhaustion")
NOT_WELL = ("problem", "unknown", "warning")

# (heading, row key)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("SERVICE", "service"),
    ("STATE", "state"),
    ("RESTARTS", "restarts"),
    ("HEALTH", "health"),
    ("READY", "ready"),
    ("REQ/S", "requests_per_s"),
    ("ERR%", "error_ratio"),
    ("P95", "p95_seconds"),
    ("CACHE HIT", "cache_hit_rate"),
    ("DB CONN", "db_connections"),
    ("MEM%", "memory_percent"),
    ("CPU%", "cpu_percent"),
    ("STATUS", "status"),
)


def health_of(target: TargetResult) -> dict[str, Any]:
    """The table the playbook published under the stack check (``stack.health``), or an empty one."""
    if target.stack is None:
        return {"services": [], "thresholds": {}}
    extra = target.stack.model_extra or {}
    found = extra.get("health")
    return found if isinstance(found, dict) else {"services": [], "thresholds": {}}


def rows_of(target: TargetResult) -> list[dict[str, Any]]:
    return [row for row in health_of(target).get("services") or [] if isinstance(row, dict)]


def judge(report: RunReport) -> RunReport:
    """The run's exit status with the table's rows: a target the engine judged 0 whose table has a row that is not
    ok, or no table at all, is 1; 3 (environment) and higher stay as they are."""
    code = ExitCode.HEALTHY
    for target in report.targets:
        target_code = ExitCode(target.exit_code)
        rows = rows_of(target)
        if target_code < ExitCode.HUMAN_NEEDED and (not rows or any(r.get("status") in NOT_WELL for r in rows)):
            target_code = ExitCode.HUMAN_NEEDED
            target.exit_code = int(target_code)
            target.status = "needs_human"
        code = max(code, target_code)
    if report.targets:
        report.exit_code = int(code)
        report.status = status_for_code(int(code)) if code else "healthy"
    return report


def _cell(key: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if key == "error_ratio" and isinstance(value, (int, float)):
        return f"{100 * value:.1f}"
    if key == "cache_hit_rate" and isinstance(value, (int, float)):
        return f"{100 * value:.0f}%"
    if key == "p95_seconds" and isinstance(value, (int, float)):
        return f"{value:.3f}s"
    if key in ("memory_percent", "cpu_percent") and isinstance(value, (int, float)):
        return f"{value:.0f}"
    if key == "requests_per_s" and isinstance(value, (int, float)):
        return f"{value:.2f}"
    return " ".join(str(value).split())


def _table(rows: list[dict[str, Any]]) -> list[str]:
    cells = [[heading for heading, _ in COLUMNS]]
    cells += [[_cell(key, row.get(key)) for _, key in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in cells]


def _thresholds(thresholds: dict[str, Any]) -> str:
    if not thresholds:
        return ""
    t = thresholds
    parts = [
        f"restarts < {t.get('restart_max')} in {t.get('restart_window_seconds')}s",
        f"errors <= {100 * float(t.get('error_ratio_max') or 0):g}%",
        f"P95 <= {t.get('p95_max_seconds')}s",
        f"cache hit >= {100 * float(t.get('hit_rate_min') or 0):g}%",
        f"DB connections < {100 * float(t.get('connections_usage_ratio_max') or 0):g}%",
        f"memory < {t.get('memory_high_percent')}%",
        f"CPU < {t.get('cpu_high_percent')}% of the limit",
    ]
    return f"thresholds (the procedures' settings; rates over {t.get('window')}): " + ", ".join(parts)


def data(report: RunReport) -> dict[str, Any]:
    """The JSON form: the run, and per target its services, thresholds and errors."""
    return {
        "run_id": report.run_id,
        "status": report.status,
        "exit_code": report.exit_code,
        "targets": [
            {
                "target": target.target,
                "status": target.status,
                "exit_code": target.exit_code,
                "services": rows_of(target),
                "thresholds": health_of(target).get("thresholds") or {},
                "errors": [error.model_dump(exclude_none=True) for error in target.errors],
            }
            for target in report.targets
        ],
        "notes": list(report.notes),
    }


def render(report: RunReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data(report), indent=2, default=str)
    lines: list[str] = []
    for target in report.targets:
        rows = rows_of(target)
        lines.append(f"{target.target}: {target.status} (exit {target.exit_code})")
        for error in target.errors:
            lines.append(f"  error {error.kind}: {error.message}")
        if rows:
            lines += _table(rows)
        else:
            lines.append("  no health table: the stack could not be read")
        for row in rows:
            for note in row.get("notes") or []:
                lines.append(f"  {row.get('service')}: {note}")
        legend = _thresholds(health_of(target).get("thresholds") or {})
        if legend:
            lines.append(legend)
    for note in report.notes:
        lines.append(f"note: {note}")
    lines.append(f"run {report.run_id}: {report.status} (exit {report.exit_code})")
    return "\n".join(lines)
