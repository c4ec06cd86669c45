# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""cache_performance on Kubernetes: the Compose judgement plus what the API shows.

Redis and Prometheus are probed as on Compose, at the addresses the inventory gives (a Service address reachable
from the controller, or a port-forward). The API adds:

- the persisted settings: the ``redis.conf`` key of the Redis ConfigMap takes the place of the config file, so
  ``redis.eviction_policy`` and the prevention checks see what a restart would bring back;
- ``k8s.redis_pods``: phase, readiness, restarts, ``CrashLoopBackOff``, ``lastState.terminated.reason`` and the
  Warning events of the Redis pods;
- ``k8s.redis_memory_limit``: Redis' ``maxmemory`` against its container's memory limit. Redis uses memory beyond
  ``maxmemory`` (buffers, fragmentation, a fork), so a ``maxmemory`` over ``memory_limit_max_ratio`` of the limit
  (or none at all) lets the kernel OOM-kill it, which empties the cache (scenario A, the memory side).

Scenario A's Kubernetes fix ``cache_performance.A.fit_maxmemory``: set ``maxmemory`` in the ConfigMap to that
share of the limit and restart Redis with a rollout restart (the pod template's ``restartedAt`` annotation).
Disruptive: the restart empties the cache (no persistence), so it waits for approval.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.octollm.remediation.plugins.plugin_utils import cache_performance as cp
from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    gate,
    human_bytes,
    redis_bytes,
    unknown,
)


def _settings(settings):
    return dict(settings or {})


def normalise(evidence, prefix="cache_performance_"):
    """The ``kubernetes`` evidence of stack_evidence (reads named ``<prefix>pods``, ``<prefix>events``,
    ``<prefix>configmap``, ``<prefix>workload``) as pods, events (lists), configmap and workload (one object or
    None) and errors by read."""
    kube = (evidence or {}).get("kubernetes")
    out = {"pods": [], "events": [], "configmap": None, "workload": None, "errors": {}}
    if kube is None:
        error = {"kind": "other", "message": "kubernetes evidence was not gathered"}
        out["errors"] = {name: error for name in ("pods", "events", "configmap", "workload")}
        return out
    reads = kube.get("objects") or {}
    for name in ("pods", "events", "configmap", "workload"):
        read = reads.get(prefix + name)
        if read is None:
            out["errors"][name] = kube.get("error") or {"kind": "other", "message": "%s%s not read" % (prefix, name)}
            continue
        if read.get("error"):
            out["errors"][name] = read["error"]
        items = read.get("items") or []
        out[name] = items if name in ("pods", "events") else (items[0] if items else None)
    return out


def _api_error(facts, name):
    error = (facts.get("errors") or {}).get(name)
    if not error:
        return None
    return {"kind": error.get("kind") or k8s.error_kind(error.get("message")), "message": error.get("message", "")}


def configmap_ref(s):
    return "configmap/%s/%s:%s" % (s["namespace"], s["k8s_redis_configmap"], s["k8s_redis_configmap_key"])


def configmap_text(facts, s):
    """The redis.conf text of the ConfigMap, or None."""
    configmap = facts.get("configmap") or {}
    return (configmap.get("data") or {}).get(s["k8s_redis_configmap_key"])


def with_configmap(evidence, facts, settings=None):
    """The evidence with the ConfigMap's settings as Redis' persisted config (what a restart brings back)."""
    s = _settings(settings)
    evidence = copy.deepcopy(evidence or {})
    redis = evidence.get("redis")
    if not redis or not redis.get("ok"):
        return evidence
    text = configmap_text(facts, s)
    if text is not None:
        redis["persisted"] = {
            "file": configmap_ref(s),
            "config": k8s.config_directives(text, ("maxmemory", "maxmemory-policy")),
        }
    else:
        error = _api_error(facts, "configmap") or {"kind": "other", "message": "%s not found" % configmap_ref(s)}
        redis["persisted"] = {"file": configmap_ref(s), "error": error}
    return evidence


def _redis_container_limit(facts, s):
    """The memory limit (bytes, text) of the Redis container: from the workload's template, else a pod."""
    workload = facts.get("workload") or {}
    pods = [workload.get("spec", {}).get("template", {})] + list(facts.get("pods") or [])
    for pod in pods:
        for container in (pod.get("spec") or {}).get("containers") or []:
            if container.get("name") == s["k8s_redis_container"]:
                memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
                return k8s.quantity_bytes(memory), memory
    return None, None


def check_pods(facts, s):
    title = "Redis pods are running and ready, without OOM kills or crash loops"
    expected = "all Running and Ready, no CrashLoopBackOff, no OOMKilled"
    error = _api_error(facts, "pods")
    if error:
        return unknown("k8s.redis_pods", title, expected, error)
    pods = k8s.pods_summary(facts.get("pods"), s["k8s_redis_app"])
    events = k8s.events_summary(facts.get("events"), names={pod["name"] for pod in pods} | {s["k8s_redis_workload"]})
    evidence = {"pods": pods, "events": events}
    if not pods:
        return finding(
            "k8s.redis_pods", title, "problem", "no pod with app=%s" % s["k8s_redis_app"], expected, evidence
        )
    troubled = {pod["name"]: k8s.pod_trouble(pod) for pod in pods if k8s.pod_trouble(pod)}
    oom = [pod["name"] for pod in pods if k8s.oom_killed(pod, s["k8s_redis_container"])]
    ready = [pod["name"] for pod in pods if pod["ready"]]
    if not troubled:
        return finding("k8s.redis_pods", title, "ok", "%d/%d ready" % (len(ready), len(pods)), expected, evidence)
    observed = "; ".join("%s: %s" % (name, ", ".join(reasons)) for name, reasons in sorted(troubled.items()))
    status = "problem" if oom or len(ready) < len(pods) else "warning"
    return finding("k8s.redis_pods", title, status, observed, expected, evidence, "A" if oom else None)


def memory_fit(facts, live_maxmemory, s):
    """What the memory-limit check and the fix need: limit, maxmemory (live, persisted), the target."""
    limit, limit_text = _redis_container_limit(facts, s)
    persisted = redis_bytes(k8s.config_directives(configmap_text(facts, s) or "", ("maxmemory",)).get("maxmemory"))
    # the worse of the running value and the one a restart brings back; 0 (no maxmemory) is the worst
    known = [value for value in (live_maxmemory, persisted) if value is not None]
    maxmemory = 0 if 0 in known else (max(known) if known else None)
    ceiling = int(limit * float(s["k8s_memory_limit_max_ratio"])) if limit else None
    target_mb = ceiling // (1024 * 1024) if ceiling else None
    pods = k8s.pods_summary(facts.get("pods"), s["k8s_redis_app"])
    return {
        "limit": limit,
        "limit_text": limit_text,
        "maxmemory": maxmemory,
        "maxmemory_live": live_maxmemory,
        "maxmemory_persisted": persisted,
        "ceiling": ceiling,
        "target": "%dmb" % target_mb if target_mb else None,
        "fits": bool(limit) and bool(maxmemory) and maxmemory <= ceiling,
        "oom_killed": [pod["name"] for pod in pods if k8s.oom_killed(pod, s["k8s_redis_container"])],
    }


def check_memory_limit(facts, live_maxmemory, s, check="k8s.redis_memory_limit"):
    title = "Redis maxmemory leaves headroom under its container memory limit"
    expected = "0 < maxmemory <= %s of the limit" % s["k8s_memory_limit_max_ratio"]
    error = _api_error(facts, "workload") or _api_error(facts, "configmap")
    fit = memory_fit(facts, live_maxmemory, s)
    evidence = dict(
        fit, configmap=configmap_ref(s), workload="%s/%s" % (s["k8s_redis_workload_kind"], s["k8s_redis_workload"])
    )
    if error and fit["limit"] is None:
        return unknown(check, title, expected, error, evidence=evidence)
    if fit["limit"] is None:
        return finding(
            check, title, "warning", "no memory limit on container %s" % s["k8s_redis_container"], expected, evidence
        )
    observed = "maxmemory %s, limit %s" % (
        human_bytes(fit["maxmemory"]) if fit["maxmemory"] else "unset (no limit)",
        fit["limit_text"],
    )
    if fit["fits"]:
        return finding(check, title, "ok", observed, expected, evidence)
    status = "problem" if fit["oom_killed"] else "warning"
    return finding(check, title, status, observed, expected, evidence, "A")


def _recompute_a(findings, scenarios):
    """Scenario A also holds on a Kubernetes problem that points at it."""
    k8s_a = [
        item
        for item in findings
        if item["check"].startswith("k8s.") and item["status"] == "problem" and item["scenario"] == "A"
    ]
    out = []
    for item in scenarios:
        item = dict(item)
        if item["id"] == "A" and k8s_a:
            reason = "; ".join("%s: %s" % (f["check"], f["observed"]) for f in k8s_a)
            item["reason"] = "%s; %s" % (item["reason"], reason) if item["holds"] else reason
            item["holds"] = True
        out.append(item)
    return out


def diagnose(evidence, settings=None, previous=None, applied=()):
    """cache_performance's diagnosis with the ConfigMap as the persisted config, plus the Kubernetes checks."""
    s = _settings(settings)
    facts = normalise(evidence)
    base_settings = dict(s, config_file=configmap_ref(s))
    merged = with_configmap(evidence, facts, s)
    result = cp.diagnose(merged, base_settings, previous, applied)
    live = result["context"].get("maxmemory") if result["context"].get("redis_ok") else None
    extra = [check_pods(facts, s), check_memory_limit(facts, live, s)]
    findings = result["findings"] + extra
    context = dict(result["context"], k8s=memory_fit(facts, live, s), configmap=configmap_ref(s))
    return {
        "findings": findings,
        "scenarios": _recompute_a(findings, result["scenarios"]),
        "escalation": escalation(findings, s.get("escalation_level", "L1"), phase="diagnose"),
        "context": context,
    }


def _fit_action(ctx, s, action_id):
    fit = ctx.get("k8s") or {}
    if not fit.get("target") or fit.get("fits"):
        return None
    return action(
        action_id,
        "A",
        "fit Redis maxmemory to its memory limit and restart it",
        "redis:maxmemory",
        {
            "key": "maxmemory",
            "old": fit.get("maxmemory_persisted"),
            "new": fit["target"],
            "file": ctx.get("configmap") or configmap_ref(s),
            "file_old": human_bytes(fit.get("maxmemory_persisted")) if fit.get("maxmemory_persisted") else None,
            "file_new": "maxmemory %s" % fit["target"],
            "restart": "%s/%s" % (s["k8s_redis_workload_kind"], s["k8s_redis_workload"]),
            "op": "rollout restart (%s)" % k8s.RESTARTED_AT,
        },
        "planned",
        "maxmemory %s in %s (%s of the %s limit), then a rollout restart of %s/%s; the restart empties the cache"
        % (
            fit["target"],
            ctx.get("configmap") or configmap_ref(s),
            s["k8s_memory_limit_max_ratio"],
            fit.get("limit_text"),
            s["k8s_redis_workload_kind"],
            s["k8s_redis_workload"],
        ),
        disruptive=True,
        apply="fit_maxmemory",
    )


def plan(diagnosis, settings=None):
    """cache_performance's plan, plus the Kubernetes fix of scenario A's memory side when it holds."""
    s = _settings(settings)
    ctx = diagnosis.get("context") or {}
    actions = cp.plan(diagnosis, dict(s, config_file=configmap_ref(s)))
    forced = s.get("scenario") or None
    holds_a = any(item["id"] == "A" and item["holds"] for item in diagnosis.get("scenarios") or [])
    memory_problem = any(
        item["check"] == "k8s.redis_memory_limit" and item["status"] == "problem"
        for item in diagnosis.get("findings") or []
    )
    if (forced == "A" or (not forced and holds_a)) and (memory_problem or forced == "A"):
        item = _fit_action(ctx, s, "cache_performance.A.fit_maxmemory")
        if item:
            taken = {a["resource"] for a in actions}
            if item["resource"] not in taken:
                actions += gate(
                    [item],
                    dry_run=s.get("dry_run", False),
                    approve=s.get("approve", False),
                    allow_disruptive=s.get("allow_disruptive", False),
                )
    return actions


def prevention(evidence, settings=None):
    """cache_performance's prevention checks (ConfigMap as the persisted config) plus the memory-limit fit and the
    Redis probes; fitting maxmemory is planned (disruptive: a restart)."""
    s = _settings(settings)
    facts = normalise(evidence)
    base_settings = dict(s, config_file=configmap_ref(s))
    merged = with_configmap(evidence, facts, s)
    result = cp.prevention(merged, base_settings)
    live = None
    redis = merged.get("redis") or {}
    if redis.get("ok"):
        live = redis_bytes((redis.get("config") or {}).get("maxmemory"))
    fit_finding = check_memory_limit(facts, live, s, "prevent.k8s.redis_memory_limit")
    findings = result["findings"] + [fit_finding, check_probes(facts, s)]
    actions = list(result["actions"])
    if fit_finding["status"] in ("problem", "warning"):
        item = _fit_action(
            {"k8s": memory_fit(facts, live, s), "configmap": configmap_ref(s)},
            s,
            "cache_performance.prevent.fit_maxmemory",
        )
        taken = {a["resource"] for a in actions}
        if item and item["resource"] not in taken:
            actions += gate(
                [item],
                dry_run=s.get("dry_run", False),
                approve=s.get("approve", False),
                allow_disruptive=s.get("allow_disruptive", False),
            )
    return {"findings": findings, "actions": actions, "context": dict(result["context"], configmap=configmap_ref(s))}


def check_probes(facts, s):
    title = "The Redis container has readiness and liveness probes"
    expected = "readinessProbe and livenessProbe"
    error = _api_error(facts, "workload")
    if error:
        return unknown("prevent.k8s.redis_probes", title, expected, error)
    template = ((facts.get("workload") or {}).get("spec") or {}).get("template") or {}
    containers = [
        c for c in (template.get("spec") or {}).get("containers") or [] if c.get("name") == s["k8s_redis_container"]
    ]
    if not containers:
        return finding(
            "prevent.k8s.redis_probes",
            title,
            "warning",
            "no container %s in %s/%s"
            % (s["k8s_redis_container"], s["k8s_redis_workload_kind"], s["k8s_redis_workload"]),
            expected,
        )
    missing = [probe for probe in ("readinessProbe", "livenessProbe") if not containers[0].get(probe)]
    return finding(
        "prevent.k8s.redis_probes",
        title,
        "warning" if missing else "ok",
        "missing: %s" % ", ".join(missing) if missing else "both set",
        expected,
        {"workload": "%s/%s" % (s["k8s_redis_workload_kind"], s["k8s_redis_workload"])},
    )
