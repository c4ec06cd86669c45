# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The seed's quick reference as one table (``octoctl health``, ``playbooks/health.yml``): every service of the
stack with its container or pod state, restarts, ``/health`` and readiness, and the seed's key metrics (request
rate, error rate, P95 latency, cache hit rate, DB connections, memory and CPU against limits).

Built on the stack check (``stack.py``: state and ``/health``) and the evidence the procedures gather; each metric
is judged with the threshold of the procedure that owns it, from the run's settings (its role's defaults as the run
sees them, ``procedure_run``), never a copy:

| metric | settings of | threshold |
|---|---|---|
| restarts | service_unavailable | ``restart_max`` within ``restart_window_seconds`` |
| error rate (5xx share) | service_unavailable | ``error_ratio_max`` |
| P95 latency | high_latency | ``p95_max_seconds`` over ``prometheus_window`` |
| cache hit rate | cache_performance | ``hit_rate_min`` (judged from ``hit_rate_min_lookups_per_s`` lookups) |
| DB connections | database_connections | ``usage_ratio_max`` of ``max_connections`` |
| memory, CPU | resource_exhaustion | ``memory_high_percent``, ``cpu_high_percent`` of the limit |

A metric a service has no series of is not shown ("-"); a source that cannot be read makes the metric ``unknown``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils import stack
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context, get

KEY = "health"
# the procedures whose thresholds judge the table
PROCEDURES = ("service_unavailable", "high_latency", "cache_performance", "database_connections", "resource_exhaustion")
READY_PREFIX = "health_ready_"
Q_REQUESTS = "health_requests_per_s"
Q_ERRORS = "health_errors_per_s"
Q_P95 = "health_p95_seconds"
RANK = {"ok": 0, "unknown": 1, "warning": 2, "problem": 3}


def settings_of(run):
    """``{procedure: settings}`` as the procedures receive them in a run (``Procedure.settings``)."""
    context = Context(run.get("context") or {})
    found = {}
    for name in PROCEDURES:
        role = (run.get("settings") or {}).get(name)
        if role is None:
            raise ValueError("the health run needs the settings of %s (procedure_run with %s)" % (name, ", ".join(
                PROCEDURES)))
        found[name] = get(name).settings(role, context)
    return found, context


def _services(context):
    services = context.inventory.get("services") or {}
    return {name: spec if isinstance(spec, dict) else {} for name, spec in services.items()}


def queries(settings, context):
    """The named PromQL queries: per service request rate, 5xx rate, P95 (the deployment's metric names), and the
    cache hit rate and lookups of cache_performance's own queries."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import cache_performance

    window = settings["high_latency"]["prometheus_window"]
    requests = context.metric("http_requests")
    duration = context.metric("http_request_duration")
    named = {
        Q_REQUESTS: 'sum by (service) (rate(%s{endpoint!="/metrics"}[%s]))' % (requests, window),
        Q_ERRORS: 'sum by (service) (rate(%s{endpoint!="/metrics",status=~"5.."}[%s]))' % (requests, window),
        Q_P95: 'histogram_quantile(0.95, sum by (service, le) (rate(%s_bucket{endpoint!="/metrics"}[%s])))'
        % (duration, window),
    }
    cache = settings["cache_performance"]
    cached = cache_performance.queries(cache, cache_performance.metric_names(context))
    named[cache_performance.Q_HIT_RATE] = cached[cache_performance.Q_HIT_RATE]
    named[cache_performance.Q_LOOKUPS] = cached[cache_performance.Q_LOOKUPS]
    return named


def needs(run):
    """``{kind: options}`` beside the stack check's: readiness probes, the containers' stats (Compose), the
    Prometheus queries and PostgreSQL's connections."""
    settings, context = settings_of(run)
    ready = [
        {"name": READY_PREFIX + name, "service": name, "path": spec["ready_path"], "timeout": 3.0,
         "expect_status": [200]}
        for name, spec in sorted(_services(context).items())
        if spec.get("url") and spec.get("ready_path")
    ]
    need = {
        "prometheus": {"queries": queries(settings, context), "max_series": 100},
        "postgres": {"connections": True},
    }
    if ready:
        need["http"] = {"probes": ready}
    if context.kubernetes:
        # resource_exhaustion's own reads (pods, workloads, metrics.k8s.io): usage against the workloads' limits
        from ansible_collections.octollm.remediation.plugins.plugin_utils.resource_exhaustion_kubernetes import (
            objects,
        )

        need["kubernetes"] = {"objects": objects()}
    else:
        need["containers"] = {
            "stats": True,
            "stats_sample_seconds": settings["resource_exhaustion"]["stats_sample_seconds"],
        }
    return need


def _kind(evidence, kind):
    result = (evidence or {}).get(kind)
    if result is None or not result.get("ok", False):
        return None, (result or {}).get("error") or {"kind": "other", "message": "%s evidence was not read" % kind}
    return result, None


def _by_service(answer):
    """``{service: value}`` of a query's series."""
    found = {}
    for series in (answer or {}).get("series") or []:
        name = (series.get("labels") or {}).get("service")
        if name and series.get("value") is not None:
            found[name] = series["value"]
    return found


class _Row:
    def __init__(self, name):
        self.name = name
        self.values = {"service": name}
        self.notes = []
        self.status = "ok"

    def judge(self, status, note=None):
        if RANK[status] > RANK[self.status]:
            self.status = status
        if note and status != "ok":
            self.notes.append(note)

    def done(self):
        self.values["status"] = self.status
        self.values["notes"] = self.notes
        return self.values


def _compose_runtime(row, records, s):
    """Restarts (and when they count) from the service's containers."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import age_seconds

    mine = [r for r in records if r.get("service") == row.name]
    row.values["containers"] = len(mine)
    row.values["restarts"] = sum(int(r.get("restart_count") or 0) for r in mine) if mine else None
    for record in mine:
        count = int(record.get("restart_count") or 0)
        age = age_seconds(record.get("started_at"))
        recent = age is None or age <= s["restart_window_seconds"]
        if count >= s["restart_max"] and (recent or not record.get("running")):
            row.judge("problem", "%s restarted %d times (>= %d within %ss)" % (
                record.get("name"), count, s["restart_max"], s["restart_window_seconds"]))
    stats = [r.get("stats") for r in mine if r.get("running") and r.get("stats")]
    memory = [st.get("memory_percent") for st in stats if st.get("memory_percent") is not None]
    cpu = [st.get("cpu_limit_percent") for st in stats if st.get("cpu_limit_percent") is not None]
    return (max(memory) if memory else None), (max(cpu) if cpu else None)


def _pod_runtime(row, pods, s, usage):
    """Restarts from the service's pods; memory and CPU (percent of the limit, the highest container) from
    resource_exhaustion's usage rows (None without the metrics API)."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils.kubernetes import pods_summary

    mine = [p for p in pods_summary(pods) if p["app"] == row.name]
    row.values["containers"] = len(mine)
    row.values["restarts"] = sum(p["restarts"] for p in mine) if mine else None
    for pod in mine:
        if pod["restarts"] >= s["restart_max"] and not pod["ready"]:
            row.judge("problem", "%s restarted %d times and is not ready" % (pod["name"], pod["restarts"]))
    rows = [item for item in usage if item.get("app") == row.name]
    memory = [100.0 * item["memory_ratio"] for item in rows if item.get("memory_ratio") is not None]
    cpu = [100.0 * item["cpu_ratio"] for item in rows if item.get("cpu_ratio") is not None]
    return (round(max(memory), 1) if memory else None), (round(max(cpu), 1) if cpu else None)


def _usage(evidence, settings):
    """resource_exhaustion's Kubernetes usage rows (its Facts over its own reads), or [] when not read."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import resource_exhaustion_kubernetes as rek

    try:
        return rek.Facts(evidence, settings).usage
    except Exception:  # noqa: BLE001 - reads missing or failed: memory and CPU are not shown
        return []


def judge(evidence, run):
    """``{services: [row], stack: stack.judge(...)}``: one row per service of the inventory, each with its values,
    its ``status`` (the worst of its judgements) and ``notes`` (why it is not ok); ``thresholds`` says what judged."""
    settings, context = settings_of(run)
    su, hl, cp = settings["service_unavailable"], settings["high_latency"], settings["cache_performance"]
    dc, rx = settings["database_connections"], settings["resource_exhaustion"]
    checked = stack.judge(evidence, context)
    by_check = {item["check"]: item for item in checked["findings"]}

    prom, prom_error = _kind(evidence, "prometheus")
    answers = (prom or {}).get("queries") or {}
    requests = _by_service(answers.get(Q_REQUESTS))
    errors = _by_service(answers.get(Q_ERRORS))
    p95 = _by_service(answers.get(Q_P95))
    http, _ = _kind(evidence, "http")
    probes = (http or {}).get("probes") or {}
    if context.kubernetes:
        kube, _ = _kind(evidence, "kubernetes")
        pods = (((kube or {}).get("objects") or {}).get(stack.PODS) or {}).get("items") or []
        usage = _usage(evidence, rx)
    else:
        data, _ = _kind(evidence, "containers")
        records = (data or {}).get("containers") or []

    rows = []
    for name, spec in sorted(_services(context).items()):
        row = _Row(name)
        item = by_check.get("stack.%s" % name) or {}
        row.values["state"] = (item.get("evidence") or {}).get("state") or item.get("observed")
        row.values["health"] = (item.get("evidence") or {}).get("health")
        if item.get("status") == "problem":
            row.judge("problem", "%s" % item.get("observed"))
        elif item.get("status") == "unknown" and (item.get("evidence") or {}).get("state") is None:
            message = (item.get("error") or {}).get("message") or "not seen"
            row.values["state"] = message
            if (item.get("error") or {}).get("kind") in ("unreachable", "auth", "missing_tool"):
                row.judge("unknown", "runtime: %s" % message)
        if spec.get("url") and spec.get("ready_path"):
            answer = probes.get(READY_PREFIX + name)
            row.values["ready"] = (answer or {}).get("status") or (answer or {}).get("error", {}).get("kind") \
                if answer else "not probed"
            if answer and answer.get("status") != 200:
                row.judge("problem", "%s answered %s" % (spec["ready_path"], row.values["ready"]))
        if context.kubernetes:
            memory, cpu = _pod_runtime(row, pods, su, usage)
        else:
            memory, cpu = _compose_runtime(row, records, su)
        # the seed's key metrics, each where the service has it
        if prom is None:
            if name in ("orchestrator",) or name.endswith("-arm"):
                row.judge("unknown", "metrics: %s" % (prom_error or {}).get("message"))
        else:
            rate = requests.get(name)
            if rate is not None:
                row.values["requests_per_s"] = round(rate, 3)
                ratio = round((errors.get(name) or 0.0) / rate, 4) if rate > 0 else 0.0
                row.values["error_ratio"] = ratio
                if ratio > su["error_ratio_max"]:
                    row.judge("problem", "error rate %.1f%% > %.1f%%" % (100 * ratio, 100 * su["error_ratio_max"]))
            if p95.get(name) is not None:
                row.values["p95_seconds"] = round(p95[name], 3)
                if p95[name] > hl["p95_max_seconds"]:
                    row.judge("problem", "P95 %.2fs > %ss" % (p95[name], hl["p95_max_seconds"]))
        if memory is not None:
            row.values["memory_percent"] = memory
            if memory >= rx["memory_high_percent"]:
                row.judge("problem", "memory %.0f%% of its limit (>= %s%%)" % (memory, rx["memory_high_percent"]))
        if cpu is not None:
            row.values["cpu_percent"] = cpu
            if cpu >= rx["cpu_high_percent"]:
                row.judge("problem", "CPU %.0f%% of its limit (>= %s%%)" % (cpu, rx["cpu_high_percent"]))
        rows.append(row)

    by_name = {row.name: row for row in rows}
    # the cache is Redis (the service cache_performance reads; its Kubernetes app label names it)
    _judge_cache(by_name.get(cp["k8s_redis_app"]), answers, prom_error, cp)
    _judge_connections(by_name.get(dc["db_service"]), evidence, dc)
    return {
        "services": [row.done() for row in rows],
        "stack": checked,
        "thresholds": {
            "restart_max": su["restart_max"],
            "restart_window_seconds": su["restart_window_seconds"],
            "error_ratio_max": su["error_ratio_max"],
            "p95_max_seconds": hl["p95_max_seconds"],
            "hit_rate_min": cp["hit_rate_min"],
            "connections_usage_ratio_max": dc["usage_ratio_max"],
            "memory_high_percent": rx["memory_high_percent"],
            "cpu_high_percent": rx["cpu_high_percent"],
            "window": hl["prometheus_window"],
        },
    }


def _judge_cache(row, answers, prom_error, s):
    """The cache hit rate on the cache's row (cache_performance's own queries and threshold)."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import cache_performance

    if row is None:
        return
    if answers is None or prom_error is not None and not answers:
        row.values["cache_hit_rate"] = "unknown"
        row.judge("unknown", "cache hit rate: %s" % (prom_error or {}).get("message"))
        return
    rate = (answers.get(cache_performance.Q_HIT_RATE) or {}).get("value")
    lookups = (answers.get(cache_performance.Q_LOOKUPS) or {}).get("value")
    if lookups is None or lookups < s["hit_rate_min_lookups_per_s"] or rate is None:
        row.values["cache_hit_rate"] = "no traffic"
        return
    row.values["cache_hit_rate"] = round(rate, 4)
    if rate < s["hit_rate_min"]:
        row.judge("problem", "cache hit rate %.0f%% < %.0f%%" % (100 * rate, 100 * s["hit_rate_min"]))


def _judge_connections(row, evidence, s):
    """Connections in use against max_connections on the database's row (database_connections' threshold)."""
    if row is None:
        return
    data, error = _kind(evidence, "postgres")
    connections = (data or {}).get("connections") or {}
    if data is None or connections.get("error") or not connections.get("max_connections"):
        why = (error or connections.get("error") or {}).get("message") or "not read"
        row.values["db_connections"] = "unknown"
        row.judge("unknown" if row.status != "problem" else "problem", "DB connections: %s" % why)
        return
    total, maximum = connections.get("total") or 0, connections["max_connections"]
    ratio = float(total) / maximum
    row.values["db_connections"] = "%d/%d" % (total, maximum)
    row.values["db_connections_ratio"] = round(ratio, 4)
    if ratio >= s["usage_ratio_max"]:
        row.judge("problem", "%d of %d connections (>= %.0f%%)" % (total, maximum, 100 * s["usage_ratio_max"]))
