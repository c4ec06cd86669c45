# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "Memory Leaks": findings, scenarios, plan and prevention checks.

Input is the evidence of ``stack_evidence`` (kinds ``containers`` with stats sampled twice over the window,
``prometheus`` with the working-set history of the deployment's containers, named by the exporter the inventory
names (``context.container_metrics``: the lab's, cAdvisor, kube-state-metrics), ``http`` with the in-process memory
of the services that offer it (the optional probe ``debug_memory``; not offered: ``not_offered``, which neither
escalates nor changes the exit status), ``redis`` for the prevention's bounded cache) and the role's settings
(``roles/memory_leaks/defaults/main.yml``).

Scenarios (the seed's four leak patterns A-D are code changes: the report names the suspected one):

- A  a service leaks memory: its working set grows over the sample window and over the Prometheus history,
     or it was OOM-killed, or it sits at its limit. Mitigation: rolling restart (disruptive), then a report
     with the in-process evidence for the owning team (L2).
- B  a service has no memory limit: a leak then takes the whole host. Fix: ``mem_limit`` in the Compose
     override of the state dir, applied by recreating the service (disruptive).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import not_offered
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import age_seconds, evidence_kind, rule_loaded
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    gate,
    human_bytes,
    unknown,
)

NAME = "memory_leaks"
Q_GROWTH = "memory_leaks_growth"
Q_SWAP_USED = "memory_leaks_swap_used"
Q_SWAP_TOTAL = "memory_leaks_swap_total"

SCENARIOS = {"A": "A service leaks memory", "B": "A service has no memory limit"}
CHECK_SCENARIO = {
    "memory.growth": "A",
    "memory.oom_kills": "A",
    "memory.near_limit": "A",
    "memory.restarts": "A",
    "memory.in_process": "A",
    "memory.limits": "B",
}

# Object types whose counts point at one of the seed's leak patterns.
PATTERN_TYPES = {
    "B": ("socket", "SSLSocket", "HTTPConnection", "HTTPSConnection", "HTTPConnectionPool", "Session", "connection"),
    "D": ("weakref", "cell", "frame", "Task", "Future"),
}
SEED_PATTERNS = {
    "A": "unbounded cache (dict/list growing without bound: use a TTL/LRU cache or Redis with expiry)",
    "B": "connection leaks (clients or sessions never closed: share one client, use context managers)",
    "C": "large object retention (large buffers kept after use: release them, paginate)",
    "D": "circular references (parent/child cycles: weak references)",
}


def _settings(settings):
    return dict(settings or {})


def _mib(value):
    return None if value is None else round(float(value) / 1048576.0, 2)


class Facts(object):
    """The evidence, per service."""

    def __init__(self, evidence, s):
        self.s = s
        self.containers, self.containers_error = evidence_kind(evidence, "containers")
        self.prom, self.prom_error = evidence_kind(evidence, "prometheus")
        self.http, self.http_error = evidence_kind(evidence, "http")
        self.redis, self.redis_error = evidence_kind(evidence, "redis")
        wanted = set(s["services"] or [])
        self.records = [
            item
            for item in (self.containers or {}).get("containers") or []
            if not wanted or item.get("service") in wanted
        ]
        self.history = {}
        answer = ((self.prom or {}).get("queries") or {}).get(Q_GROWTH) or {}
        self.history_error = answer.get("error") if self.prom else self.prom_error
        # the exporter's label that names one container (the lab's and cAdvisor's name)
        label = (s.get("container_metrics") or {}).get("container_label") or "name"
        for series in answer.get("series") or []:
            labels = series.get("labels") or {}
            name = labels.get(label)
            try:
                self.history[name] = float(series.get("value"))
            except (TypeError, ValueError):
                continue

    def services(self):
        names = []
        for item in self.records:
            if item.get("service") not in names:
                names.append(item.get("service"))
        return names

    def of(self, service):
        return [item for item in self.records if item.get("service") == service]

    def growth(self, record):
        """(now rate, delta bytes, history rate) of one container."""
        stats = record.get("stats") or {}
        rate = stats.get("memory_growth_bytes_per_s")
        first = stats.get("memory_working_set_first_bytes")
        last = stats.get("memory_working_set_bytes")
        delta = (last - first) if isinstance(first, int) and isinstance(last, int) else None
        return rate, delta, self.history.get(record.get("name"))

    def warming_up(self, record):
        """Started less than ``warmup_seconds`` ago: its growth may be its warm-up (the start time unknown: not)."""
        age = age_seconds(record.get("started_at"))
        return age is not None and age < self.s["warmup_seconds"]

    def leaking(self, record):
        if self.warming_up(record):
            return False
        rate, delta, history = self.growth(record)
        s = self.s
        now = rate is not None and rate >= s["growth_rate_min"] and (delta or 0) >= s["growth_min_bytes"]
        corroborated = history is None or history >= s["history_rate_min"]
        return now and corroborated

    def debug_memory(self, service):
        probe = ((self.http or {}).get("probes") or {}).get("memory_leaks_%s" % service)
        return probe

    def debug_services(self):
        """``(offered, not offered)``: the selected services (``debug_services``, empty: every one) whose inventory
        entry offers the optional probe ``debug_memory``, and those that do not."""
        paths = self.s.get("debug_probes") or {}
        wanted = list(self.s["debug_services"] or []) or sorted(paths)
        return [svc for svc in wanted if paths.get(svc)], [svc for svc in wanted if not paths.get(svc)]


def _record_evidence(f, record):
    stats = record.get("stats") or {}
    rate, delta, history = f.growth(record)
    return {
        "container": record.get("name"),
        "working_set_mib": _mib(stats.get("memory_working_set_bytes")),
        "limit_mib": _mib(stats.get("memory_limit_bytes") or record.get("memory_limit")),
        "growth_mib_per_s": _mib(rate),
        "growth_mib": _mib(delta),
        "window_s": stats.get("sample_seconds"),
        "history_mib_per_s": _mib(history),
    }


def check_growth(f):
    title = "No service's memory keeps growing (sample window and Prometheus history)"
    expected = "< %s/s over %ss, and < %s/s over %s" % (
        human_bytes(f.s["growth_rate_min"]),
        f.s["sample_seconds"],
        human_bytes(f.s["history_rate_min"]),
        f.s["history_window"],
    )
    if f.containers is None:
        return unknown("memory.growth", title, expected, f.containers_error, "A")
    leaking = {}
    for record in f.records:
        if record.get("running") and f.leaking(record):
            leaking.setdefault(record["service"], []).append(_record_evidence(f, record))
    fastest = sorted(
        (_record_evidence(f, r) for r in f.records if r.get("running") and r.get("stats")),
        key=lambda item: -(item["growth_mib_per_s"] or 0),
    )[:3]
    warming = sorted({r["service"] for r in f.records if r.get("running") and f.warming_up(r)})
    evidence = {"leaking": leaking, "fastest": fastest, "history_error": f.history_error, "warming_up": warming}
    if leaking:
        observed = ", ".join(
            "%s +%s MiB/s" % (svc, max(item["growth_mib_per_s"] or 0 for item in items))
            for svc, items in sorted(leaking.items())
        )
        return finding("memory.growth", title, "problem", observed, expected, evidence, "A")
    observed = "no service growing"
    if warming:
        observed += " (warming up, not judged: %s)" % ", ".join(warming)
    return finding("memory.growth", title, "ok", observed, expected, evidence)


def leaking_services(f):
    return sorted({r["service"] for r in f.records if r.get("running") and f.leaking(r)})


def check_oom(f):
    title = "No container was OOM-killed"
    if f.containers is None:
        return unknown("memory.oom_kills", title, "none", f.containers_error, "A")
    killed = []
    for record in f.records:
        kills = (record.get("stats") or {}).get("oom_kills") or 0
        if record.get("oom_killed") or kills:
            killed.append({"container": record.get("name"), "oom_killed": record.get("oom_killed"), "kills": kills})
    if killed:
        return finding(
            "memory.oom_kills",
            title,
            "problem",
            ", ".join(k["container"] for k in killed),
            "none",
            {"killed": killed},
            "A",
        )
    return finding("memory.oom_kills", title, "ok", "none", "none", {})


def check_restarts(f):
    title = "No container was restarted by Docker"
    if f.containers is None:
        return unknown("memory.restarts", title, "0", f.containers_error, "A")
    restarted = {r["name"]: r.get("restart_count") for r in f.records if (r.get("restart_count") or 0) > 0}
    if restarted:
        return finding("memory.restarts", title, "warning", restarted, "0", {"restarted": restarted}, "A")
    return finding("memory.restarts", title, "ok", 0, "0", {})


def check_near_limit(f):
    ratio = f.s["limit_ratio_max"]
    title = "Every container stays under %d%% of its memory limit (HighMemoryUsage)" % (100 * ratio)
    expected = "< %d%%" % (100 * ratio)
    if f.containers is None:
        return unknown("memory.near_limit", title, expected, f.containers_error, "A")
    high = []
    for record in f.records:
        percent = (record.get("stats") or {}).get("memory_percent")
        if percent is not None and percent >= 100 * ratio:
            high.append({"container": record["name"], "percent": percent})
    if high:
        return finding(
            "memory.near_limit",
            title,
            "problem",
            ", ".join("%(container)s %(percent)s%%" % h for h in high),
            expected,
            {"high": high},
            "A",
        )
    top = max((r.get("stats") or {}).get("memory_percent") or 0 for r in f.records) if f.records else 0
    return finding("memory.near_limit", title, "ok", "highest %s%%" % top, expected, {})


def check_limits(f):
    title = "Every service has a memory limit"
    if f.containers is None:
        return unknown("memory.limits", title, "a limit on every service", f.containers_error, "B")
    missing = sorted({r["service"] for r in f.records if not r.get("memory_limit")})
    if missing:
        leaking = set(leaking_services(f))
        status = "problem" if leaking & set(missing) else "warning"
        return finding(
            "memory.limits",
            title,
            status,
            "no limit: %s" % ", ".join(missing),
            "a limit on every service",
            {"without_limit": missing},
            "B",
        )
    return finding("memory.limits", title, "ok", "all %d limited" % len(f.records), "a limit on every service", {})


def check_swap(f):
    title = "The host does not swap heavily"
    expected = "< %d%% of swap used" % (100 * f.s["swap_used_ratio_max"])
    memory = (((f.containers or {}).get("host") or {}).get("memory")) or {}
    total, used = memory.get("swap_total_bytes"), memory.get("swap_used_bytes")
    if total is None:
        answers = (f.prom or {}).get("queries") or {}
        total = (answers.get(Q_SWAP_TOTAL) or {}).get("value")
        used = (answers.get(Q_SWAP_USED) or {}).get("value")
    if total is None:
        if f.containers is None and f.prom is None:
            return unknown("memory.swap", title, expected, f.containers_error)
        return finding("memory.swap", title, "ok", "swap not reported", expected, {})
    if not total:
        return finding("memory.swap", title, "ok", "no swap configured", expected, {"swap_total_bytes": 0})
    ratio = float(used or 0) / float(total)
    status = "warning" if ratio >= f.s["swap_used_ratio_max"] else "ok"
    return finding(
        "memory.swap",
        title,
        status,
        "%d%% used" % round(100 * ratio),
        expected,
        {"swap_total_bytes": total, "swap_used_bytes": used},
        "A" if status != "ok" else None,
    )


def suspected_pattern(body):
    """The seed's leak pattern the in-process evidence points at (A by default: data kept without bound)."""
    counts = dict((name, count) for name, count in (body or {}).get("top_object_types") or [])
    for pattern in ("B", "D"):
        if sum(counts.get(name, 0) for name in PATTERN_TYPES[pattern]) >= 1000:
            return pattern
    traces = (body or {}).get("tracemalloc") or []
    if traces and traces[0].get("count") and traces[0]["size_bytes"] / float(traces[0]["count"]) >= 65536:
        return "C"
    return "A"


def in_process(f, service):
    probe = f.debug_memory(service)
    if probe is None:
        return None
    body = probe.get("body") if isinstance(probe.get("body"), dict) else {}
    return {
        "ok": probe.get("ok"),
        "error": probe.get("error"),
        "rss_mib": _mib(body.get("rss_bytes")),
        "top_object_types": (body.get("top_object_types") or [])[:8],
        "top_allocations": (body.get("tracemalloc") or [])[:3],
        "tracemalloc": body.get("tracemalloc") is not None,
        "suspected_pattern": suspected_pattern(body) if body else None,
    }


def check_in_process(f):
    title = "In-process memory evidence (optional probe debug_memory) of the services that offer it"
    expected = "answered"
    offered, missing = f.debug_services()
    if not offered:
        return not_offered(
            "memory.in_process", title, expected, "in-process memory (probes.debug_memory)",
            {"not_offered": missing} if missing else None, "A",
        )
    services = [svc for svc in offered if svc in f.services() or not f.records]
    if f.http is None:
        return unknown("memory.in_process", title, expected, f.http_error, "A")
    evidence = {svc: in_process(f, svc) for svc in services}
    failed = [svc for svc, item in evidence.items() if item is None or not item.get("ok")]
    leaking = [svc for svc in leaking_services(f) if svc in evidence]
    if failed:
        message = "; ".join(
            "%s: %s" % (svc, ((evidence[svc] or {}).get("error") or {}).get("message", "no answer")) for svc in failed
        )
        return unknown(
            "memory.in_process",
            title,
            expected,
            {"kind": "other", "message": message},
            "A",
            {svc: evidence[svc] for svc in leaking},
        )
    if leaking:
        observed = ", ".join(
            "%s: %s MiB RSS, suspected seed pattern %s"
            % (svc, evidence[svc]["rss_mib"], evidence[svc]["suspected_pattern"])
            for svc in leaking
        )
        return finding(
            "memory.in_process", title, "warning", observed, expected, {svc: evidence[svc] for svc in leaking}, "A"
        )
    return finding(
        "memory.in_process", title, "ok", "%d services answered" % len(services), expected,
        {"not_offered": missing} if missing else {},
    )


def diagnose(evidence, settings=None, previous=None, applied=()):
    """``{findings, scenarios, escalation, context}`` (a verification judges a fresh sample: ``previous`` and
    ``applied`` are not needed)."""
    s = _settings(settings)
    f = Facts(evidence, s)
    findings = [
        check_growth(f),
        check_oom(f),
        check_near_limit(f),
        check_restarts(f),
        check_swap(f),
        check_limits(f),
        check_in_process(f),
    ]
    scenarios = []
    for sid, stitle in SCENARIOS.items():
        mine = [item for item in findings if CHECK_SCENARIO.get(item["check"]) == sid]
        holding = [item for item in mine if item["status"] in ("problem",) and item["scenario"] == sid]
        if sid == "B":
            holding = [item for item in mine if item["status"] in ("problem", "warning") and item["scenario"] == sid]
        if holding:
            reason = "; ".join("%s: %s" % (item["check"], item["observed"]) for item in holding)
        elif any(item["status"] == "unknown" for item in mine):
            reason = "not checked: %s" % ", ".join(item["check"] for item in mine if item["status"] == "unknown")
        else:
            reason = "checks ok: %s" % ", ".join(item["check"] for item in mine)
        scenarios.append({"id": sid, "title": stitle, "holds": bool(holding), "reason": reason})
    suspects = set(leaking_services(f))
    for item in findings:
        if item["check"] in ("memory.oom_kills", "memory.near_limit") and item["status"] == "problem":
            for entry in item["evidence"].get("killed", []) + item["evidence"].get("high", []):
                suspects.update(r["service"] for r in f.records if r["name"] == entry["container"])
    context = {
        "suspects": sorted(suspects),
        "containers": {svc: [r["name"] for r in f.of(svc)] for svc in f.services()},
        "without_limit": sorted({r["service"] for r in f.records if not r.get("memory_limit")}),
        "evidence": {
            svc: {"memory": [_record_evidence(f, r) for r in f.of(svc)], "in_process": in_process(f, svc)}
            for svc in sorted(suspects)
        },
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _limit_action(s, service, action_id, scenario, ctx):
    key = "services.%s.mem_limit" % service
    return action(
        action_id,
        scenario,
        "set a memory limit of %s on %s (Compose override) and recreate it" % (s["memory_limit"], service),
        "service:%s" % service,
        {
            "file": s["override_file"],
            "key": key,
            "old": None,
            "new": s["memory_limit"],
            "container": ", ".join(ctx.get("containers", {}).get(service, [])),
            "op": "recreate",
        },
        "planned",
        "%s: %s -> %s, then docker compose up %s (recreates the container)" % (key, None, s["memory_limit"], service),
        disruptive=True,
        apply="set_memory_limit",
    )


def plan(diagnosis, settings=None):
    s = _settings(settings)
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    selected = [sid for sid in ("B", "A") if (sid == forced if forced else sid in holding)]
    actions = []
    for sid in selected:
        if sid == "B":
            for service in ctx.get("without_limit") or []:
                actions.append(_limit_action(s, service, "memory_leaks.B.set_memory_limit.%s" % service, "B", ctx))
        elif sid == "A":
            for service in ctx.get("suspects") or []:
                containers = ctx.get("containers", {}).get(service, [])
                actions.append(
                    action(
                        "memory_leaks.A.rolling_restart.%s" % service,
                        "A",
                        "rolling restart of %s (mitigation: frees the leaked memory)" % service,
                        "service:%s" % service,
                        {
                            "container": ", ".join(containers),
                            "op": "restart one at a time, wait healthy",
                            "containers": containers,
                        },
                        "planned",
                        "restart %s one container at a time (%s), each healthy before the next"
                        % (service, ", ".join(containers)),
                        disruptive=True,
                        apply="rolling_restart",
                    )
                )
                evidence = (ctx.get("evidence") or {}).get(service) or {}
                pattern = (evidence.get("in_process") or {}).get("suspected_pattern") or "A"
                actions.append(
                    action(
                        "memory_leaks.A.report.%s" % service,
                        "A",
                        "report the leak in %s to its owning team" % service,
                        "report:%s" % service,
                        {"service": service, "evidence": evidence, "suspected_pattern": pattern},
                        "report",
                        "%s: the restart only buys time; the leak is in %s's code - suspected seed pattern %s, %s. "
                        "Profile it (its in-process memory evidence, where it offers one, and a heap profiler) and fix "
                        "the code"
                        % (s["escalation_level"], service, pattern, SEED_PATTERNS.get(pattern, "")),
                    )
                )
    return gate(actions, dry_run=s["dry_run"], approve=s["approve"], allow_disruptive=s["allow_disruptive"])


def prevention(evidence, settings=None):
    s = _settings(settings)
    f = Facts(evidence, s)
    findings = []
    limits = check_limits(f)
    limits = dict(
        limits, check="prevent.memory.limits", status="problem" if limits["status"] == "warning" else limits["status"]
    )
    findings.append(limits)
    findings.append(rule_loaded("prevent.prometheus.high_memory_rule", s["high_memory_rule"], f.prom, f.prom_error))
    title = "The stack's shared cache is bounded (Redis maxmemory with an evicting policy)"
    if f.redis is None:
        findings.append(unknown("prevent.cache.bounded", title, "maxmemory > 0, allkeys-*/volatile-*", f.redis_error))
    else:
        config = f.redis.get("config") or {}
        maxmemory = str(config.get("maxmemory") or "0")
        policy = config.get("maxmemory-policy")
        bounded = maxmemory not in ("0", "") and policy not in (None, "noeviction")
        findings.append(
            finding(
                "prevent.cache.bounded",
                title,
                "ok" if bounded else "problem",
                "maxmemory %s, %s" % (maxmemory, policy),
                "maxmemory > 0, allkeys-*/volatile-*",
                {"maxmemory": maxmemory, "policy": policy},
            )
        )
    ctx = {"containers": {svc: [r["name"] for r in f.of(svc)] for svc in f.services()}}
    actions = []
    if findings[0]["status"] == "problem":
        for service in findings[0]["evidence"].get("without_limit") or []:
            actions.append(_limit_action(s, service, "memory_leaks.prevent.set_memory_limit.%s" % service, "B", ctx))
    if findings[1]["status"] == "problem":
        actions.append(
            action(
                "memory_leaks.prevent.report_rule",
                None,
                "report the missing %s rule" % s["high_memory_rule"],
                "prometheus:rules",
                {"rule": s["high_memory_rule"]},
                "report",
                "%s: add the %s rule (working set / limit > %s) to Prometheus and reload it"
                % (s["escalation_level"], s["high_memory_rule"], s["limit_ratio_max"]),
            )
        )
    if findings[2]["status"] == "problem":
        actions.append(
            action(
                "memory_leaks.prevent.report_cache",
                None,
                "report the unbounded Redis cache",
                "redis:maxmemory",
                findings[2]["evidence"],
                "report",
                "%s: run the cache_performance procedure's prevent (maxmemory and an allkeys-lru policy)"
                % s["escalation_level"],
            )
        )
    actions = gate(actions, dry_run=s["dry_run"], approve=s["approve"], allow_disruptive=s["allow_disruptive"])
    return {"findings": findings, "actions": actions, "context": ctx}


# --- the procedure ------------------------------------------------------------------------------------
def queries(s, context):
    """The named PromQL queries of the judgement: the working set's growth over the history window of each container
    of the deployment (its Compose projects, the containers found by name; the exporter's metric and labels:
    ``context.container_metrics``), and the host's swap."""
    growth = " or ".join(
        "deriv(%s[%s])" % (selector, s["history_window"]) for selector in context.container_selectors("memory")
    )
    return {
        Q_GROWTH: growth,
        Q_SWAP_TOTAL: "sum(node_memory_SwapTotal_bytes)",
        Q_SWAP_USED: "sum(node_memory_SwapTotal_bytes) - sum(node_memory_SwapFree_bytes)",
    }


# Kubernetes: the API reads of one evidence task (names prefixed: the evidence is shared by the procedures; a
# metrics API that is not served is evidence).
K8S_READS = {
    "memory_leaks_pods": {"kind": "Pod"},
    "memory_leaks_deployments": {"kind": "Deployment", "api_version": "apps/v1"},
    "memory_leaks_statefulsets": {"kind": "StatefulSet", "api_version": "apps/v1"},
    "memory_leaks_events": {"kind": "Event", "field_selector": "type=Warning"},
    "memory_leaks_pod_metrics": {"kind": "PodMetrics", "api_version": "metrics.k8s.io/v1beta1"},
}


def debug_probes(context):
    """``{service: path}`` of the services whose inventory entry offers the optional probe ``debug_memory``."""
    found = {}
    for service in sorted(context.inventory.get("services") or {}):
        path = context.probe(service, "debug_memory")
        if path:
            found[service] = path
    return found


class MemoryLeaks(Procedure):
    name = NAME
    title = "Memory Leaks"
    scenarios = SCENARIOS
    modules = {"compose": "memory_leaks", "kubernetes": "memory_leaks_kubernetes"}

    def settings(self, role_settings, context):
        s = super(MemoryLeaks, self).settings(role_settings, context)
        # the services that offer in-process memory evidence (their path), and the container metrics' names
        s["debug_probes"] = debug_probes(context)
        s["container_metrics"] = dict(context.container_metrics)
        if context.kubernetes:
            s["namespace"] = context.inventory["k8s"]["namespace"]
        return s

    def needs(self, settings, context):
        """On Compose every container's memory sampled twice (and the host), the Prometheus history, each debug
        service's GET /debug/memory and, to prevent, Redis' maxmemory; on Kubernetes the API reads."""
        s = settings
        if context.kubernetes:
            return {"kubernetes": {"objects": K8S_READS}}
        need = {
            "containers": {
                "services": list(s["services"] or []),
                "stats": True,
                "stats_sample_seconds": s["sample_seconds"],
                "host": True,
            },
            "prometheus": {"queries": queries(s, context), "rules": True, "max_series": 50},
        }
        paths = debug_probes(context)
        offered = [svc for svc in (s["debug_services"] or sorted(paths)) if paths.get(svc)]
        if offered:
            need["http"] = {
                "max_body": 16384,
                "probes": [
                    {"name": "memory_leaks_%s" % service, "service": service, "path": paths[service], "timeout": 10}
                    for service in offered
                ],
            }
        if context.get("phase") == "prevent":
            need["redis"] = {"info": False, "config": ["maxmemory", "maxmemory-policy"], "slowlog": 0, "scan_count": 0}
        return need


PROCEDURE = MemoryLeaks()
