# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "High Latency": findings, scenarios, plan and prevention checks.

Input is the evidence of ``stack_evidence`` (kinds ``prometheus``, ``postgres``, ``containers``, ``logs``, ``http``):
the orchestrator's recent call durations per arm come from ``action_log`` through the postgres kind's named query
``high_latency_hops``; the ``py-spy dump`` of the slow service is the containers kind's exec probe
``high_latency_profile``, which the procedure asks for after a first judgement names that service
(``HighLatency.followup``). Every threshold comes from ``roles/high_latency/defaults/main.yml``. Scenarios:

- A  slow queries: an index the seed names (tasks by created_at or status, entities by entity_type) is missing or
     invalid on a large table that is sequentially scanned. Fixable: CREATE INDEX CONCURRENTLY + ANALYZE.
- B  LLM latency: the LLM API's P95 is high (report), or the stack's response cache is off (fixable: enable it in
     the services' env file and recreate the orchestrator - disruptive).
- C  resource contention: a service uses its CPU limit. Fixable for services that can run replicas: scale out
     (bounded), persisted in the Compose override file.
- D  network latency: the caller's round trip to a service is much slower than the service's own time. Report.

The deployment's names (docs/deployment.md): the latency metrics by meaning (``http_request_duration``,
``llm_duration``) from every service that exports them, under each one's own name (a service exporting
``orchestrator_http_request_duration_seconds`` is judged on that); a metric with no series at all is unknown, never a
silent ok. The response-cache switch is the cache service's ``response_cache`` setting: a deployment without one gets
``llm.response_cache`` unknown ``not_offered``, and a switch that is not set is "not set" (a warning), never
"enabled". The hop round trips (``action_log.details`` key ``octollm_postgres.schema.hop_duration_key``) are optional:
not offered, ``network.hops`` is unknown ``not_offered``. Container CPU and memory come from the exporter the
inventory names (``context.container_metrics``), the tables from the schema.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import not_offered, sql_name
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import (
    env_values,
    evidence_kind,
    finite_number,
    gated,
    rule_loaded,
    scenarios_named,
    selected_scenarios,
)
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    percent,
    unknown,
)

PROCEDURE = "high_latency"

Q_P95 = "high_latency_p95"
Q_LLM_P95 = "high_latency_llm_p95"
Q_SERVER_MEAN = "high_latency_server_mean"
Q_REDIS = "high_latency_redis_seconds_per_call"
Q_CPU = "high_latency_cpu_cores"
Q_MEMORY = "high_latency_memory_ratio"
Q_HOST_MEMORY = "high_latency_host_memory_available"
# how many series the latency metrics have at all (none: the metric is not exported under that name)
Q_P95_SERIES = "high_latency_p95_series"
Q_LLM_SERIES = "high_latency_llm_series"
NOT_SET = "not set"
CACHE_PROBE = "high_latency_cache_setting"
RTT_PROBE = "high_latency_rtt"
HEALTH_PROBE = "high_latency_app_health"
ENV_SOURCE = "high_latency_env"
HOPS_QUERY = "high_latency_hops"
PROFILE_PROBE = "high_latency_profile"
PROFILE_TOOL = "py-spy dump --nonblocking"
PROFILE_MAX_CHARS = 3000

SCENARIOS = {
    "A": "Database slow queries",
    "B": "LLM API latency",
    "C": "Resource contention",
    "D": "Network latency",
}

CHECK_SCENARIO = {
    "db.indexes": "A",
    "db.slow_statements": "A",
    "llm.latency": "B",
    "llm.response_cache": "B",
    "resources.cpu": "C",
    "network.hops": "D",
}


def _settings(settings):
    return dict(settings or {})


def _series(prom, name):
    """(series, error) of a named query; series as ``[(labels, value)]`` without NaN."""
    if prom is None:
        return None, None
    answer = (prom.get("queries") or {}).get(name)
    if not answer:
        return None, {"kind": "other", "message": "query %s was not run" % name}
    if answer.get("error"):
        return None, answer["error"]
    out = []
    for item in answer.get("series") or []:
        value = finite_number(item.get("value"))
        if value is not None:
            out.append((item.get("labels") or {}, value))
    return out, None


def _bool(text):
    return str(text).strip().lower() in ("1", "true", "yes", "on")


def _first_column(definition):
    """Leading column of ``CREATE INDEX ... USING btree (col, ...)``."""
    match = re.search(r"\(([^)]*)\)", definition or "")
    if not match:
        return None
    return match.group(1).split(",")[0].strip().strip('"').split(" ")[0]


def hops_answer(evidence):
    """``{rows}`` of the named query ``high_latency_hops`` (the caller's recent round trips per service), or
    ``{error}`` when PostgreSQL or the query failed."""
    pg, error = evidence_kind(evidence, "postgres")
    if pg is None:
        return {"error": error}
    answer = (pg.get("queries") or {}).get(HOPS_QUERY)
    if answer is None:
        error = (pg.get("probe_errors") or {}).get("queries")
        return {"error": error or {"kind": "other", "message": "query %s was not run" % HOPS_QUERY}}
    if answer.get("error") or answer.get("rows") is None:
        return {"error": answer.get("error") or {"kind": "other", "message": "query %s failed" % HOPS_QUERY}}
    return {"rows": answer["rows"]}


def profile_of(evidence, service):
    """The CPU profile of ``service`` when the evidence has it (the exec probe ``high_latency_profile``)."""
    containers = (evidence or {}).get("containers") or {}
    for probe in containers.get("exec_probes") or []:
        if probe.get("name") == PROFILE_PROBE and probe.get("service") == service:
            output = probe.get("output") or ""
            if len(output) > PROFILE_MAX_CHARS:
                output = output[: PROFILE_MAX_CHARS - 3] + "..."
            return {"service": service, "tool": PROFILE_TOOL, "output": output, "error": probe.get("error")}
    return None


class Facts:
    def __init__(self, evidence, settings, extra):
        self.s = settings
        self.extra = extra or {}
        self.prom, self.prom_error = evidence_kind(evidence, "prometheus")
        self.pg, self.pg_error = evidence_kind(evidence, "postgres")
        self.containers, self.containers_error = evidence_kind(evidence, "containers")
        self.logs, self.logs_error = evidence_kind(evidence, "logs")
        self.http, self.http_error = evidence_kind(evidence, "http")
        self.env = env_values(self.logs, ENV_SOURCE)
        self.probes = {p.get("name"): p for p in (self.containers or {}).get("exec_probes") or []}
        pg = self.pg or {}
        self.tables = ((pg.get("tables") or {}).get("tables")) or {}
        self.tables_error = (pg.get("probe_errors") or {}).get("tables")
        self.statements = pg.get("statements") or {}
        self.statements_error = (pg.get("probe_errors") or {}).get("statements")
        self.services = (self.containers or {}).get("services") or {}

    def replicas(self, service):
        entry = self.services.get(service) or {}
        return entry.get("running") or entry.get("containers") or 0

    def cpu_limit(self, service):
        """CPU limit (cores) of the service: the sum over its running containers (replicas may differ, e.g. one
        throttled by ``docker update``); None when one of them is unlimited or unknown."""
        total, seen = 0.0, False
        for container in (self.containers or {}).get("containers") or []:
            if container.get("service") != service or container.get("state") not in (None, "running"):
                continue
            seen = True
            cpus = finite_number(container.get("cpus"))
            if not cpus:
                nano = finite_number(container.get("nano_cpus"))
                cpus = nano / 1e9 if nano else None
            if not cpus:
                return None
            total += cpus
        return round(total, 3) if seen else None


def metric_names(s, meaning):
    """The names a latency metric is exported under by the deployment's services (one per naming, sorted)."""
    return list((s.get("metrics") or {}).get(meaning) or [])


def no_series(f, query, s, meaning):
    """The error of a latency metric that has no series at all under the deployment's names (a renamed metric the
    inventory does not name, or a service that exports none), or None when it has some (then "no traffic" holds)."""
    series, error = _series(f.prom, query)
    if series is None:
        return error or f.prom_error
    if any(value > 0 for _, value in series):
        return None
    return {
        "kind": "other",
        "message": "no series of %s in Prometheus: name the metric the services export in "
        "octollm_services.<service>.metrics.%s" % (" or ".join(metric_names(s, meaning)) or meaning, meaning),
    }


# --- checks ------------------------------------------------------------------------------------------
def check_p95(f):
    s = f.s
    title = "P95 request latency per endpoint stays under %ss" % s["p95_max_seconds"]
    expected = "<= %ss" % s["p95_max_seconds"]
    series, error = _series(f.prom, Q_P95)
    if series is None:
        return unknown("latency.p95", title, expected, error or f.prom_error)
    rows = sorted(
        (
            {"service": labels.get("service"), "endpoint": labels.get("endpoint"), "p95_s": round(value, 3)}
            for labels, value in series
        ),
        key=lambda row: -row["p95_s"],
    )
    evidence = {"slowest": rows[:8], "endpoints": len(rows), "metrics": metric_names(s, "http_request_duration")}
    slow = [row for row in rows if row["p95_s"] > s["p95_max_seconds"]]
    if not rows:
        absent = no_series(f, Q_P95_SERIES, s, "http_request_duration")
        if absent:
            return unknown("latency.p95", title, expected, absent, evidence=evidence)
        return finding("latency.p95", title, "ok", "no traffic", expected, evidence)
    top = rows[0]
    observed = "%s %s %.2fs" % (top["service"], top["endpoint"], top["p95_s"])
    if slow:
        evidence["slow"] = slow[:8]
        return finding("latency.p95", title, "problem", observed, expected, evidence)
    return finding("latency.p95", title, "ok", observed, expected, evidence)


def check_cpu(f):
    s = f.s
    title = "No service runs at its CPU limit"
    expected = "< %s of its CPU limit" % percent(s["cpu_limit_ratio_max"])
    series, error = _series(f.prom, Q_CPU)
    if series is None:
        return unknown("resources.cpu", title, expected, error or f.prom_error, "C")
    rows = []
    for labels, cores in series:
        service = labels.get("compose_service") or labels.get("service")
        if not service:
            continue
        limit = f.cpu_limit(service)  # of all its replicas
        replicas = max(1, f.replicas(service))
        ratio = round(cores / limit, 4) if limit else None
        rows.append(
            {"service": service, "cores": round(cores, 3), "limit_cores": limit, "replicas": replicas, "ratio": ratio}
        )
    rows.sort(key=lambda row: -(row["ratio"] or 0))
    hot = [row for row in rows if row["ratio"] is not None and row["ratio"] >= s["cpu_limit_ratio_max"]]
    evidence = {"busiest": rows[:6], "saturated": hot}
    if hot:
        observed = ", ".join("%s %s of %s cores" % (r["service"], percent(r["ratio"]), r["limit_cores"]) for r in hot)
        return finding("resources.cpu", title, "problem", observed, expected, evidence, "C")
    top = rows[0] if rows else None
    observed = "%s %s" % (top["service"], percent(top["ratio"])) if top and top["ratio"] is not None else "idle"
    return finding("resources.cpu", title, "ok", observed, expected, evidence)


def check_memory(f):
    s = f.s
    title = "No memory pressure (services under their limits, host memory available)"
    expected = "< %s of a limit; host > %s available" % (
        percent(s["memory_ratio_max"]),
        percent(s["host_memory_available_min"]),
    )
    series, error = _series(f.prom, Q_MEMORY)
    host, host_error = _series(f.prom, Q_HOST_MEMORY)
    if series is None and host is None:
        return unknown("resources.memory", title, expected, error or host_error or f.prom_error)
    rows = sorted(
        (
            {
                "service": labels.get("compose_service") or labels.get("service") or labels.get("name"),
                "ratio": round(v, 4),
            }
            for labels, v in series or []
        ),
        key=lambda row: -row["ratio"],
    )
    available = host[0][1] if host else None
    evidence = {"services": rows[:5], "host_available_ratio": round(available, 4) if available is not None else None}
    high = [row for row in rows if row["ratio"] >= s["memory_ratio_max"]]
    low_host = available is not None and available < s["host_memory_available_min"]
    if high or low_host:
        parts = ["%s at %s of its limit" % (r["service"], percent(r["ratio"])) for r in high]
        if low_host:
            parts.append("host has %s available" % percent(available))
        evidence["note"] = "memory pressure slows services (swap, reclaim, GC); see memory_leaks / resource_exhaustion"
        return finding("resources.memory", title, "warning", "; ".join(parts), expected, evidence, "C")
    return finding("resources.memory", title, "ok", "host %s available" % percent(available), expected, evidence)


def missing_indexes(f):
    """``[(spec, state, table_info)]`` for the expected indexes that are absent or invalid."""
    out = []
    for spec in f.s["expected_indexes"]:
        info = f.tables.get(spec["table"])
        if info is None:
            continue
        found = None
        for index in info.get("indexes") or []:
            if _first_column(index.get("definition")) == spec["column"]:
                found = index
                if index.get("valid"):
                    break
        if found is None:
            out.append((spec, "missing", info))
        elif not found.get("valid"):
            out.append((dict(spec, name=found["name"]), "invalid", info))
    return out


def check_indexes(f):
    s = f.s
    title = "The indexes the seed names exist on large tables"
    expected = ", ".join("%s(%s)" % (spec["table"], spec["column"]) for spec in s["expected_indexes"])
    if f.pg is None or f.tables_error or not f.tables:
        return unknown(
            "db.indexes",
            title,
            expected,
            f.tables_error or f.pg_error or {"kind": "other", "message": "no table statistics"},
            "A",
        )
    absent = missing_indexes(f)
    rows = []
    for spec, state, info in absent:
        rows.append(
            {
                "table": spec["table"],
                "column": spec["column"],
                "index": spec["name"],
                "state": state,
                "rows": info.get("n_live_tup"),
                "seq_scan": info.get("seq_scan"),
                "seq_tup_read": info.get("seq_tup_read"),
                "idx_scan": info.get("idx_scan"),
                "total_bytes": info.get("total_bytes"),
                "large": (info.get("n_live_tup") or 0) >= s["large_table_rows"],
            }
        )
    evidence = {
        "missing": rows,
        "tables": {
            name: {"rows": info.get("n_live_tup"), "seq_scan": info.get("seq_scan"), "idx_scan": info.get("idx_scan")}
            for name, info in f.tables.items()
        },
        "missing_tables": (f.pg.get("tables") or {}).get("missing"),
    }
    if not rows:
        return finding("db.indexes", title, "ok", "all present", expected, evidence)
    observed = ", ".join("%s(%s) %s on %s rows" % (r["table"], r["column"], r["state"], r["rows"]) for r in rows)
    if any(r["large"] or r["state"] == "invalid" for r in rows):
        evidence["note"] = "queries filtering on these columns scan the whole table (seq_scan, seq_tup_read)"
        return finding("db.indexes", title, "problem", observed, expected, evidence, "A")
    return finding("db.indexes", title, "warning", observed, expected, evidence, "A")


def check_statements(f, missing_tables):
    s = f.s
    title = "No frequent statement slower than %s ms on average" % s["slow_statement_ms"]
    expected = "mean < %s ms (statements called >= %s times)" % (s["slow_statement_ms"], s["slow_statement_min_calls"])
    if f.pg is None or f.statements_error:
        return unknown("db.slow_statements", title, expected, f.statements_error or f.pg_error)
    if not f.statements.get("available"):
        return finding(
            "db.slow_statements",
            title,
            "ok",
            "pg_stat_statements unavailable: %s" % f.statements.get("reason"),
            expected,
            {},
        )
    top = f.statements.get("top") or []
    rows = [
        {
            "query": (q.get("query") or "")[:160],
            "mean_ms": q.get("mean_ms"),
            "calls": q.get("calls"),
            "max_ms": q.get("max_ms"),
        }
        for q in top
    ]
    on_missing = [
        r for r in rows if any(re.search(r"\b%s\b" % re.escape(t), r["query"] or "", re.I) for t in missing_tables)
    ]
    evidence = {"slowest": rows[:5], "on_tables_missing_an_index": on_missing[:5]}
    slow = [
        r
        for r in rows
        if (r["mean_ms"] or 0) >= s["slow_statement_ms"] and (r["calls"] or 0) >= s["slow_statement_min_calls"]
    ]
    if slow:
        observed = "%d slow statements, worst %.1f ms: %s" % (len(slow), slow[0]["mean_ms"], slow[0]["query"][:80])
        return finding(
            "db.slow_statements", title, "warning", observed, expected, evidence, "A" if on_missing else None
        )
    observed = "slowest %.1f ms" % rows[0]["mean_ms"] if rows else "no statements"
    return finding("db.slow_statements", title, "ok", observed, expected, evidence)


def check_redis(f):
    s = f.s
    title = "Redis answers cache commands within %s ms" % s["redis_latency_max_ms"]
    expected = "< %s ms per call" % s["redis_latency_max_ms"]
    series, error = _series(f.prom, Q_REDIS)
    if series is None:
        return unknown("redis.latency", title, expected, error or f.prom_error)
    rows = sorted(
        ({"cmd": labels.get("cmd"), "ms": round(v * 1000, 3)} for labels, v in series), key=lambda row: -row["ms"]
    )
    evidence = {"per_command": rows[:5]}
    if rows and rows[0]["ms"] >= s["redis_latency_max_ms"]:
        return finding(
            "redis.latency", title, "warning", "%s %.1f ms" % (rows[0]["cmd"], rows[0]["ms"]), expected, evidence
        )
    return finding("redis.latency", title, "ok", "%s ms" % (rows[0]["ms"] if rows else "no calls"), expected, evidence)


def check_llm(f):
    s = f.s
    title = "LLM API P95 latency stays under %ss" % s["llm_p95_max_seconds"]
    expected = "<= %ss" % s["llm_p95_max_seconds"]
    series, error = _series(f.prom, Q_LLM_P95)
    if series is None:
        return unknown("llm.latency", title, expected, error or f.prom_error, "B")
    rows = sorted(
        ({"provider": labels.get("provider"), "p95_s": round(v, 3)} for labels, v in series),
        key=lambda row: -row["p95_s"],
    )
    evidence = {"providers": rows, "metrics": metric_names(s, "llm_duration")}
    if not rows:
        absent = no_series(f, Q_LLM_SERIES, s, "llm_duration")
        if absent:
            return unknown("llm.latency", title, expected, absent, "B", evidence)
        return finding("llm.latency", title, "ok", "no LLM calls", expected, evidence)
    observed = "%s %.2fs" % (rows[0]["provider"], rows[0]["p95_s"])
    if rows[0]["p95_s"] > s["llm_p95_max_seconds"]:
        return finding("llm.latency", title, "problem", observed, expected, evidence, "B")
    return finding("llm.latency", title, "ok", observed, expected, evidence)


def cache_state(f):
    """(live, file): the response cache switch in the running service (True, False, "not set", or None when
    unknown) and in the env file (None when it does not set it)."""
    probe = f.probes.get(CACHE_PROBE)
    live = None
    if probe and probe.get("exit_code") in (0, 1) and (probe.get("error") or {}).get("kind") != "unreachable":
        text = (probe.get("output") or "").strip()
        # unset: the application's own default, which octoctl does not know: "not set", never "enabled"
        live = _bool(text) if text else NOT_SET
    file_value = f.env.get(f.s["cache_key"]) if f.s.get("cache_key") else None
    return live, (None if file_value is None else _bool(file_value)), probe


def check_cache(f):
    s = f.s
    title = "The LLM response cache of %s is enabled" % s["cache_service"]
    if not s.get("cache_key"):
        return not_offered(
            "llm.response_cache",
            title,
            "the response-cache switch set to true",
            "a response-cache switch (octollm_services.%s.settings.response_cache)" % s["cache_service"],
            scenario="B",
        )
    expected = "%s=true (running and in the env file)" % s["cache_key"]
    live, in_file, probe = cache_state(f)
    evidence = {
        "live": live,
        "env_file": in_file,
        "file": s["env_file"] or None,
        "probe": {k: (probe or {}).get(k) for k in ("cmd", "exit_code", "output", "error")} if probe else None,
    }
    if live is None:
        error = (probe or {}).get("error") or f.containers_error or {"kind": "other", "message": "no probe result"}
        return unknown("llm.response_cache", title, expected, error, "B", evidence)
    if live == NOT_SET:
        evidence["note"] = "%s is not set in %s: the application's own default applies" % (
            s["cache_key"],
            s["cache_service"],
        )
        status = "problem" if in_file is False else "warning"
        return finding("llm.response_cache", title, status, NOT_SET, expected, evidence, "B")
    if not live:
        return finding("llm.response_cache", title, "problem", "disabled", expected, evidence, "B")
    if in_file is False:
        evidence["note"] = "the env file disables it: the next recreate turns the cache off"
        return finding("llm.response_cache", title, "warning", "enabled (file: false)", expected, evidence, "B")
    return finding("llm.response_cache", title, "ok", "enabled", expected, evidence)


def parse_rtt(output):
    rtt = {}
    for line in (output or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and finite_number(parts[1]) is not None:
            rtt[parts[0].split(":")[0]] = round(float(parts[1]) * 1000, 2)
    return rtt


def hops(f):
    """Per called service: the caller's recent round trips vs the service's own time."""
    s = f.s
    server, _ = _series(f.prom, Q_SERVER_MEAN)
    own = {labels.get("service"): round(v * 1000, 1) for labels, v in server or []}
    rtt = parse_rtt((f.probes.get(RTT_PROBE) or {}).get("output"))
    rows = []
    for row in (f.extra.get("hops") or {}).get("rows") or []:
        service = row.get("arm")
        caller = finite_number(row.get("p50_ms"))
        if service is None or caller is None:
            continue
        server_ms = own.get(service)
        overhead = round(caller - (server_ms or 0.0), 1)
        rows.append(
            {
                "from": s["cache_service"],
                "to": service,
                "calls": row.get("calls"),
                "caller_p50_ms": caller,
                "caller_mean_ms": finite_number(row.get("mean_ms")),
                "server_mean_ms": server_ms,
                "tcp_rtt_ms": rtt.get(service),
                "overhead_ms": overhead,
                "slow": overhead >= s["hop_max_ms"] and (row.get("calls") or 0) >= s["hop_min_calls"],
            }
        )
    rows.sort(key=lambda row: -row["overhead_ms"])
    return rows, rtt


def check_hops(f):
    s = f.s
    title = "Service-to-service round trips add less than %s ms" % s["hop_max_ms"]
    expected = "caller time - service time < %s ms" % s["hop_max_ms"]
    hop_answer = f.extra.get("hops") or {}
    if not s.get("hop_duration_key"):
        return not_offered(
            "network.hops",
            title,
            expected,
            "the callers' round trips (action_log.details, octollm_postgres.schema.hop_duration_key)",
            scenario="D",
        )
    if hop_answer.get("error") or "rows" not in hop_answer:
        return unknown(
            "network.hops",
            title,
            expected,
            hop_answer.get("error") or {"kind": "other", "message": "call durations not read"},
            "D",
        )
    rows, rtt = hops(f)
    evidence = {"hops": rows[:8], "tcp_rtt_ms": rtt}
    profile = f.extra.get("profile")
    slow = [row for row in rows if row["slow"]]
    if slow:
        if profile:
            evidence["profile"] = profile
        observed = ", ".join(
            "%s -> %s +%.0f ms (service %s ms, TCP %s ms)"
            % (r["from"], r["to"], r["overhead_ms"], r["server_mean_ms"], r["tcp_rtt_ms"])
            for r in slow
        )
        return finding("network.hops", title, "problem", observed, expected, evidence, "D")
    observed = "worst +%.0f ms (%s)" % (rows[0]["overhead_ms"], rows[0]["to"]) if rows else "no recent calls"
    return finding("network.hops", title, "ok", observed, expected, evidence)


def profile_service(f, hop_rows, p95):
    """The service whose CPU profile is worth taking: the caller of a slow hop, else the slowest endpoint's."""
    if any(row["slow"] for row in hop_rows):
        return f.s["cache_service"]
    slow_services = [r["service"] for r in (p95["evidence"].get("slow") or [])]
    return slow_services[0] if slow_services else None


def diagnose(evidence, settings=None, previous=None, applied=()):
    """``{findings, scenarios, escalation, context}``; ``context`` feeds the plan and the follow-up and is never
    reported. The CPU profile of the slow service is attached when the evidence has it (a follow-up)."""
    s = _settings(settings)
    f = Facts(evidence, s, {"hops": hops_answer(evidence)})
    first = _diagnose(f)
    service = first["context"]["profile_service"]
    profile = profile_of(evidence, service) if service else None
    if not profile:
        return first
    f.extra["profile"] = profile
    result = _diagnose(f)
    result["context"]["profile_taken"] = True
    return result


def _diagnose(f):
    s = f.s
    absent = missing_indexes(f) if f.tables else []
    checks = [
        check_indexes(f),
        check_statements(f, sorted({spec["table"] for spec, _, _ in absent})),
        check_llm(f),
        check_cache(f),
        check_cpu(f),
        check_memory(f),
        check_redis(f),
        check_hops(f),
    ]
    p95 = check_p95(f)
    holding_ids = []
    for sid in ("A", "B", "C", "D"):
        if any(item["scenario"] == sid and item["status"] == "problem" for item in checks):
            holding_ids.append(sid)
    if p95["status"] == "problem" and holding_ids:
        p95["scenario"] = holding_ids[0]
    profile = f.extra.get("profile")
    if p95["status"] == "problem" and profile:
        p95["evidence"]["profile"] = profile
    findings = [p95] + checks
    scenarios = scenarios_named(SCENARIOS, checks, CHECK_SCENARIO)
    live, in_file, _ = cache_state(f)
    hop_rows, _ = hops(f) if "rows" in (f.extra.get("hops") or {}) else ([], {})
    cpu = next(item for item in checks if item["check"] == "resources.cpu")
    context = {
        "missing_indexes": [
            {
                "table": spec["table"],
                "column": spec["column"],
                "name": spec["name"],
                "state": state,
                "rows": info.get("n_live_tup"),
            }
            for spec, state, info in absent
        ],
        "cache_live": live,
        "cache_file": in_file,
        "llm": (next(item for item in checks if item["check"] == "llm.latency")).get("evidence"),
        "saturated": [
            dict(row, replicas_now=f.replicas(row["service"]))
            for row in (cpu.get("evidence") or {}).get("saturated") or []
        ],
        "slow_hops": [row for row in hop_rows if row["slow"]],
        "profile_service": profile_service(f, hop_rows, p95),
        "profile_taken": False,
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


# --- plan ----------------------------------------------------------------------------------------------
def _index_action(item, action_id_prefix, scenario):
    table, column, name = item["table"], item["column"], item["name"]
    if item["state"] == "invalid":
        statements = ["REINDEX INDEX CONCURRENTLY %s" % name, "ANALYZE %s" % table]
        title = "rebuild the invalid index %s concurrently, then ANALYZE %s" % (name, table)
    else:
        statements = [
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (%s)" % (name, table, column),
            "ANALYZE %s" % table,
        ]
        title = "create %s concurrently, then ANALYZE %s" % (name, table)
    return action(
        "%s.%s" % (action_id_prefix, name),
        scenario,
        title,
        "postgres:index:%s(%s)" % (table, column),
        {
            # the contract's sql is one string; the statements run one by one (CONCURRENTLY: no transaction)
            "sql": "; ".join(statements),
            "statements": statements,
            "rows": item.get("rows"),
            "table": table,
            "column": column,
            "index": name,
        },
        "planned",
        "%s on %s rows (autocommit: CONCURRENTLY cannot run in a transaction, so it is not run in check mode; "
        "writes continue while it builds)" % ("; ".join(statements), item.get("rows")),
        apply="create_index",
    )


def plan(diagnosis, settings=None):
    """The actions for the scenarios that hold (or the forced ``scenario``), gated by approval."""
    s = _settings(settings)
    ctx = diagnosis.get("context") or {}
    selected = selected_scenarios(diagnosis, s, ("A", "B", "C", "D"))
    actions = []
    for sid in selected:
        if sid == "A":
            for item in ctx.get("missing_indexes") or []:
                actions.append(_index_action(item, "high_latency.A.index", "A"))
        elif sid == "B":
            if s.get("cache_key") and (ctx.get("cache_live") in (False, NOT_SET) or ctx.get("cache_file") is False):
                service = s["cache_service"]
                actions.append(
                    action(
                        "high_latency.B.enable_response_cache",
                        "B",
                        "enable the LLM response cache and recreate %s" % service,
                        "compose:%s" % service,
                        {
                            "file": s["env_file"],
                            "keys": {
                                s["cache_key"]: {
                                    "old": "false"
                                    if ctx.get("cache_file") is False
                                    else NOT_SET
                                    if ctx.get("cache_file") is None
                                    else str(ctx.get("cache_file")).lower(),
                                    "new": "true",
                                }
                            },
                            "container": service,
                            "op": "recreate (docker compose up, new environment)",
                            "live_old": ctx.get("cache_live"),
                        },
                        "planned",
                        "%s=true in %s, then recreate %s (repeated prompts are answered from Redis)"
                        % (s["cache_key"], s["env_file"], service),
                        disruptive=True,
                        apply="set_env_and_recreate",
                    )
                )
            providers = (ctx.get("llm") or {}).get("providers") or []
            if providers and providers[0].get("p95_s", 0) > s["llm_p95_max_seconds"]:
                actions.append(
                    action(
                        "high_latency.B.report_llm_latency",
                        "B",
                        "report the LLM API latency",
                        "llm:latency",
                        {"providers": providers},
                        "report",
                        "L1: the LLM API answers in %.1fs (P95, %s): batch requests, cache repeated prompts, consider "
                        "a faster model or the fallback provider (see llm_api)"
                        % (providers[0]["p95_s"], providers[0]["provider"]),
                    )
                )
        elif sid == "C":
            for row in ctx.get("saturated") or []:
                service = row["service"]
                now = max(1, int(row.get("replicas_now") or row.get("replicas") or 1))
                if service in s["scalable_services"] and now < int(s["max_replicas"]):
                    actions.append(
                        action(
                            "high_latency.C.scale_%s" % service.replace("-", "_"),
                            "C",
                            "scale %s out to %d replicas" % (service, now + 1),
                            "compose:%s" % service,
                            {
                                "service": service,
                                "old": now,
                                "new": now + 1,
                                "file": s["override_file"],
                                "op": "docker compose up --scale (replicas share the port: SO_REUSEPORT)",
                            },
                            "planned",
                            "%s replicas %d -> %d (persisted as deploy.replicas in %s)"
                            % (service, now, now + 1, s["override_file"]),
                            apply="scale_service",
                        )
                    )
                else:
                    actions.append(
                        action(
                            "high_latency.C.report_%s" % service.replace("-", "_"),
                            "C",
                            "report CPU contention on %s" % service,
                            "compose:%s" % service,
                            row,
                            "report",
                            "L1: %s uses %s of its CPU limit and cannot be scaled here (%s): raise its CPU limit or "
                            "find the hot path (profile)"
                            % (
                                service,
                                percent(row.get("ratio")),
                                "at max_replicas" if service in s["scalable_services"] else "not a scalable service",
                            ),
                        )
                    )
        elif sid == "D":
            slow = ctx.get("slow_hops") or []
            actions.append(
                action(
                    "high_latency.D.report_slow_hop",
                    "D",
                    "report the slow service-to-service hop",
                    "network:%s" % ",".join("%s-%s" % (r["from"], r["to"]) for r in slow) if slow else "network:hops",
                    {"hops": slow},
                    "report",
                    "L1: %s. The service itself is fast and the TCP round trip is short, so the time is spent in the "
                    "caller's path to it (client, proxy, network, an injected delay): check the caller's HTTP client "
                    "settings and the route; use connection pooling and a circuit breaker with timeouts"
                    % "; ".join(
                        "%s -> %s adds %.0f ms per call (caller p50 %.0f ms, service %s ms, TCP %s ms)"
                        % (
                            r["from"],
                            r["to"],
                            r["overhead_ms"],
                            r["caller_p50_ms"],
                            r["server_mean_ms"],
                            r["tcp_rtt_ms"],
                        )
                        for r in slow
                    )
                    if slow
                    else "no slow hop measured now",
                )
            )
    return gated(actions, s)


# --- prevention ---------------------------------------------------------------------------------------
def prevention(evidence, settings=None):
    """``{findings, actions, context}``: indexes present, cache enabled, pool settings, latency alert loaded."""
    s = _settings(settings)
    f = Facts(evidence, s, {})
    findings = []
    idx = check_indexes(f)
    findings.append(
        dict(idx, check="prevent.db.indexes", status="problem" if idx["status"] == "warning" else idx["status"])
    )
    cache = check_cache(f)
    findings.append(
        dict(
            cache,
            check="prevent.llm.response_cache",
            status="problem" if cache["status"] == "warning" else cache["status"],
        )
    )
    # connection pool settings: bounded, pre-ping on, and x replicas within max_connections
    title = "The %s's database pool is configured and fits max_connections" % s["cache_service"]
    probe = ((f.http or {}).get("probes") or {}).get(HEALTH_PROBE) or {}
    body = probe.get("body") if isinstance(probe.get("body"), dict) else {}
    pool = (body.get("checks") or {}).get("db_pool")
    conn = (f.pg or {}).get("connections") or {}
    if not s.get("db_pool_path"):
        findings.append(
            not_offered(
                "prevent.app.db_pool",
                title,
                "pool max x replicas <= max_connections - reserved",
                "the pool figures (checks.db_pool, probes.db_pool; database_connections judges the pool settings)",
            )
        )
    elif pool is None or not conn:
        findings.append(
            unknown(
                "prevent.app.db_pool",
                title,
                "pool max x replicas <= max_connections - reserved",
                probe.get("error") or f.http_error or f.pg_error or {"kind": "other", "message": "no pool figures"},
            )
        )
    else:
        replicas = max(1, f.replicas(s["cache_service"]))
        available = (conn.get("max_connections") or 0) - (conn.get("superuser_reserved_connections") or 0)
        wanted = (pool.get("max") or 0) * replicas
        ok = 0 < wanted <= available
        findings.append(
            finding(
                "prevent.app.db_pool",
                title,
                "ok" if ok else "problem",
                "%s x %d = %d of %d" % (pool.get("max"), replicas, wanted, available),
                "<= %d" % available,
                {"pool": pool, "replicas": replicas, "env": {k: v for k, v in f.env.items() if k.startswith("DB_")}},
            )
        )
    findings.append(rule_loaded("prevent.prometheus.latency_rule", s["latency_rule"], f.prom, f.prom_error))
    actions = []
    by_check = {item["check"]: item for item in findings}
    if by_check["prevent.db.indexes"]["status"] == "problem":
        for spec, state, info in missing_indexes(f):
            actions.append(
                _index_action(
                    {
                        "table": spec["table"],
                        "column": spec["column"],
                        "name": spec["name"],
                        "state": state,
                        "rows": info.get("n_live_tup"),
                    },
                    "high_latency.prevent.index",
                    "A",
                )
            )
    if by_check["prevent.llm.response_cache"]["status"] == "problem":
        diag_ctx = {"cache_live": cache["evidence"].get("live"), "cache_file": cache["evidence"].get("env_file")}
        for item in plan({"context": diag_ctx, "scenarios": []}, dict(s, scenario="B", dry_run=False, approve=True)):
            if item["id"] == "high_latency.B.enable_response_cache":
                item = dict(item, id="high_latency.prevent.enable_response_cache", status="planned")
                item["_apply"] = "set_env_and_recreate"
                actions.append(item)
    if by_check["prevent.app.db_pool"]["status"] == "problem":
        actions.append(
            action(
                "high_latency.prevent.report_db_pool",
                "A",
                "report the pool settings",
                "compose:%s:pool" % s["cache_service"],
                by_check["prevent.app.db_pool"]["evidence"],
                "report",
                "L1: size DB_POOL_SIZE + DB_POOL_MAX_OVERFLOW (x replicas) under "
                "max_connections - reserved (see database_connections)",
            )
        )
    if by_check["prevent.prometheus.latency_rule"]["status"] == "problem":
        actions.append(
            action(
                "high_latency.prevent.report_rule",
                None,
                "report the missing latency alert",
                "prometheus:rules:%s" % s["latency_rule"],
                {"rule": s["latency_rule"]},
                "report",
                "L1: add the %s rule (P95 of http_request_duration_seconds) and reload Prometheus" % s["latency_rule"],
            )
        )
    actions = gated(actions, s)
    return {"findings": findings, "actions": actions, "context": {}}


# --- the procedure ------------------------------------------------------------------------------------
# The orchestrator's recent call durations per arm (action_log "executed" rows), the caller's side of each hop:
# a named read-only query of the postgres evidence kind.
# The action_log table and the details key come from the schema (octollm_postgres.schema): $action_log, $key.
HOPS_SQL = (
    "SELECT arm, count(*) AS calls, "
    "round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1)::float AS p50_ms, "
    "round(avg(ms)::numeric, 1)::float AS mean_ms "
    "FROM (SELECT arm, (details->>'$key')::float AS ms, "
    "row_number() OVER (PARTITION BY arm ORDER BY timestamp DESC) AS n "
    "FROM $action_log WHERE action = 'executed' AND details ? '$key' "
    "AND timestamp > now() - make_interval(secs => %(window)s)) x "
    "WHERE n <= %(sample)s GROUP BY arm ORDER BY arm"
)


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


def hops_sql(s):
    """The hops query on the schema's action_log table and details key (a plain key: it is a SQL literal)."""
    key = str(s["hop_duration_key"])
    if not _KEY.match(key):
        raise ValueError("not a JSON key: %r (octollm_postgres.schema.hop_duration_key)" % (key,))
    table = sql_name((s.get("tables") or {}).get("action_log") or "action_log")
    return HOPS_SQL.replace("$action_log", table).replace("$key", key)


def rates(names, suffix, matchers, window):
    """The per-second rates of a metric exported under several names (one per service naming), joined by ``or``
    (their series differ by their ``service`` label)."""
    terms = ["rate(%s%s{%s}[%s])" % (name, suffix, matchers, window) for name in names]
    return "(%s)" % " or ".join(terms)  # parenthesised: an aggregation's argument


def series_count(names, suffix):
    """How many series a metric has under any of its names."""
    return "count({__name__=~%s})" % _quoted("|".join(re.escape(name + suffix) for name in names))


def _quoted(value):
    return '"%s"' % str(value).replace("\\", "\\\\").replace('"', '\\"')


def container_selector(s, meaning):
    """The selector of a container metric (``cpu_seconds``, ``memory``, ``memory_limit``) of the exporter the inventory
    names, narrowed to the stack's Compose project (``context.container_metrics``)."""
    preset = s.get("container_metrics") or {}
    metric = preset.get(meaning) or meaning
    matchers = []
    if preset.get("project_label") and s.get("compose_project"):
        matchers.append("%s=%s" % (preset["project_label"], _quoted(s["compose_project"])))
    if preset.get("matchers"):
        matchers.append(preset["matchers"])
    name, brace, rest = metric.partition("{")
    if brace:
        inner = rest.rstrip().rstrip("}").strip()
        if inner:
            matchers.insert(0, inner)
    return "%s{%s}" % (name, ",".join(matchers)) if matchers else name


def queries(s, namespace=None):
    """The named PromQL queries of the judgement, built from the settings: the latency metrics under the
    deployment's names, the container metrics of its exporter (``container_metrics``, the service label as it
    names it, relabelled to ``service`` when it is not that); on Kubernetes (``namespace``) the CPU and memory series
    are cAdvisor's by container, relabelled to ``service``."""
    window = s["prometheus_window"]
    http = metric_names(s, "http_request_duration") or ["http_request_duration_seconds"]
    llm = metric_names(s, "llm_duration") or ["llm_api_duration_seconds"]
    preset = s.get("container_metrics") or {}
    label = preset.get("service_label") or "compose_service"
    cpu = "sum by (%s) (rate(%s[%s]))" % (label, container_selector(s, "cpu_seconds"), window)
    memory = "max by (%s) (%s / (%s > 0))" % (
        label,
        container_selector(s, "memory"),
        container_selector(s, "memory_limit"),
    )
    if label not in ("compose_service", "service"):
        # the judgement reads a service label: name it as the exporter does
        cpu = 'label_replace(%s, "service", "$1", "%s", "(.*)")' % (cpu, label)
        memory = 'label_replace(%s, "service", "$1", "%s", "(.*)")' % (memory, label)
    named = {
        Q_P95: "histogram_quantile(0.95, sum by (service, endpoint, le) %s)"
        % rates(http, "_bucket", 'endpoint!="/metrics"', window),
        Q_P95_SERIES: series_count(http, "_count"),
        Q_LLM_P95: "histogram_quantile(0.95, sum by (provider, le) %s)" % rates(llm, "_bucket", "", window),
        Q_LLM_SERIES: series_count(llm, "_count"),
        Q_SERVER_MEAN: "sum by (service) %s / sum by (service) %s"
        % (rates(http, "_sum", 'endpoint="/execute"', window), rates(http, "_count", 'endpoint="/execute"', window)),
        Q_REDIS: 'rate(redis_commands_duration_seconds_total{cmd=~"get|set|setex"}[%s]) '
        '/ rate(redis_commands_total{cmd=~"get|set|setex"}[%s])' % (window, window),
        Q_CPU: cpu,
        Q_MEMORY: memory,
        Q_HOST_MEMORY: "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    }
    if namespace:
        selector = 'namespace="%s",container!="",container!="POD"' % namespace
        named[Q_CPU] = (
            'label_replace(sum by (container) (rate(container_cpu_usage_seconds_total{%s}[%s])), "service", "$1", '
            '"container", "(.*)")' % (selector, window)
        )
        named[Q_MEMORY] = (
            "label_replace(max by (container) (container_memory_working_set_bytes{%s} / "
            '(container_spec_memory_limit_bytes{%s} > 0)), "service", "$1", "container", "(.*)")' % (selector, selector)
        )
    return named


LATENCY_METRICS = ("http_request_duration", "llm_duration")


def deployment_metric_names(context, meaning):
    """The names a metric is exported under by the deployment's services (each service's own name; the seed's for a
    deployment that names none), sorted."""
    names = {context.metric(meaning, name) for name in context.service_names()}
    names.add(context.metric(meaning))
    return sorted(name for name in names if name)


def rtt_targets(context):
    """``name:port`` of the arms the round-trip probe times from the cache service's container."""
    services = context.inventory.get("services") or {}
    return [
        "%s:%s" % (name, svc["port"])
        for name, svc in services.items()
        if name.endswith("-arm") and (svc or {}).get("port") is not None
    ]


class HighLatency(Procedure):
    name = PROCEDURE
    title = "High Latency"
    scenarios = SCENARIOS
    modules = {"compose": "high_latency", "kubernetes": "high_latency_kubernetes"}

    def settings(self, role_settings, context):
        s = super(HighLatency, self).settings(role_settings, context)
        if context.kubernetes:
            s["namespace"] = context.inventory["k8s"]["namespace"]
        # the deployment's names (docs/deployment.md): the cache service's response-cache switch and pool settings
        # (None: it has none), the latency metrics under every service's own names, the container metrics of its
        # exporter, the optional probes (pool figures, hop round trips) and the schema's tables
        app = s["cache_service"]
        s["cache_key"] = context.setting_name(app, "response_cache")
        s["pool_keys"] = [
            name for name in (context.setting_name(app, m) for m in ("db_pool_size", "db_pool_max_overflow")) if name
        ]
        s["metrics"] = {meaning: deployment_metric_names(context, meaning) for meaning in LATENCY_METRICS}
        s["container_metrics"] = dict(context.container_metrics)
        s["compose_project"] = (context.inventory.get("compose") or {}).get("project")
        s["db_pool_path"] = context.probe(app, "db_pool")
        s["schema"] = dict(context.schema)
        s["hop_duration_key"] = context.schema.get("hop_duration_key") or None
        s["tables"] = {meaning: context.table(meaning) for meaning in ("tasks", "action_log", "entities")}
        # the seed's index specs name tables by meaning: on the deployment's tables
        s["expected_indexes"] = [dict(spec, table=context.table(spec["table"])) for spec in s["expected_indexes"]]
        return s

    def needs(self, settings, context):
        s = settings
        need = {
            "prometheus": {
                "queries": queries(s, s.get("namespace") if context.kubernetes else None),
                "rules": True,
                "max_series": 60,
            },
            "postgres": {
                "connections": True,
                "statements": s["statements"],
                "tables": list(dict.fromkeys(spec["table"] for spec in s["expected_indexes"])),
            },
        }
        if s.get("schema"):
            need["postgres"]["schema"] = s["schema"]
        if s.get("hop_duration_key"):
            need["postgres"]["queries"] = {
                HOPS_QUERY: {
                    "sql": hops_sql(s),
                    "params": {"window": s["hop_window_seconds"], "sample": s["hop_sample"]},
                }
            }
        if s.get("db_pool_path"):
            need["http"] = {
                "probes": [
                    {
                        "name": HEALTH_PROBE,
                        "service": s["cache_service"],
                        "path": s["db_pool_path"],
                        "expect_status": [200, 503],
                    }
                ]
            }
        if context.kubernetes:
            need["kubernetes"] = {
                "objects": {
                    "high_latency_deployments": {"kind": "Deployment", "api_version": "apps/v1"},
                    "high_latency_configmap": {"kind": "ConfigMap", "name": s["k8s_configmap"]},
                    "high_latency_hpas": {"kind": "HorizontalPodAutoscaler", "api_version": "autoscaling/v2"},
                }
            }
            return need
        need["containers"] = {
            "exec_probes": [
                {
                    "name": CACHE_PROBE,
                    "service": s["cache_service"],
                    "cmd": "printenv %s" % s["cache_key"],
                    "timeout": 5,
                }
            ]
            if s.get("cache_key")
            else []
        }
        need["containers"]["exec_probes"].append(
            {
                "name": RTT_PROBE,
                "service": s["cache_service"],
                "cmd": "for t in %s; do "
                'curl -s -o /dev/null -m 2 -w "$t %%{time_total}\\n" "http://$t/health" || echo "$t failed"; done'
                % " ".join(rtt_targets(context)),
                "timeout": 15,
            }
        )
        keys = ([s["cache_key"]] if s.get("cache_key") else []) + list(s.get("pool_keys") or [])
        if s["env_file"] and keys:
            need["logs"] = {
                "sources": [
                    {
                        "name": ENV_SOURCE,
                        "path": s["env_file"],
                        "pattern": "^(%s)=" % "|".join(re.escape(key) for key in keys),
                        "max_lines": 10,
                    }
                ]
            }
        return need

    def followup(self, diagnosis, settings, context):
        """A CPU profile (``py-spy dump --nonblocking`` in its container) of the slow service the judgement names,
        on Compose, when it is one py-spy can read and the evidence does not have it yet."""
        ctx = diagnosis.get("context") or {}
        service = ctx.get("profile_service")
        if (
            context.kubernetes
            or not settings["profile"]
            or ctx.get("profile_taken")
            or service not in settings["profile_services"]
        ):
            return {}
        return {
            "containers": {
                "services": [service],
                "exec_probes": [
                    {
                        "name": PROFILE_PROBE,
                        "service": service,
                        "cmd": ["py-spy", "dump", "--pid", "1", "--nonblocking"],
                        "timeout": 10,
                        # without pausing the process, py-spy can read a code object while it changes and fail
                        "attempts": 3,
                    }
                ],
            }
        }


PROCEDURE = HighLatency()
