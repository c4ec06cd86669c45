# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""memory_leaks on Kubernetes: the Compose procedure's scenarios judged from what the API shows.

Evidence (the ``kubernetes`` kind of stack_evidence, reads named ``memory_leaks_<name>``): the pods (restart
counts, ``lastState.terminated.reason`` OOMKilled), the Deployments and StatefulSets (each container's memory
limit), the Warning events and, where the metrics API (``metrics.k8s.io``) is served, each container's memory use
against its limit (``kubectl top``). One sample of the metrics API shows the level, not the growth: the growth
over time is Prometheus' (the Compose side's ``deriv`` query), which needs a cluster with cAdvisor metrics.

- A  a workload leaks: its containers were OOM-killed, or run at ``limit_ratio_max`` of their limit. Mitigation:
     rolling restart (the pod template's ``restartedAt``: the controller replaces the pods one by one; disruptive)
     and a report to the owning team (L2): the restart only buys time.
- B  a container has no memory limit (a leak takes the node down): set ``memory_limit`` on it (a patch of the pod
     template that rolls the pods; disruptive).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils import k8s_workloads as kw
from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils import memory_leaks as ml
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import gated
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    human_bytes,
    unknown,
)

NAME = ml.NAME
PREFIX = "memory_leaks_"
READS = ("pods", "deployments", "statefulsets", "events", "pod_metrics")
SCENARIOS = ml.SCENARIOS
CHECK_SCENARIO = {
    "k8s.memory.oom_kills": "A",
    "k8s.memory.near_limit": "A",
    "k8s.memory.restarts": "A",
    "k8s.memory.limits": "B",
}


def _settings(settings):
    return dict(settings or {})


def _limit_quantity(value):
    """The configured memory limit as a Kubernetes quantity: ``256m`` (Compose style) -> ``256Mi``."""
    text = str(value).strip()
    if text[-1:].lower() in ("m", "g", "k") and text[:-1].isdigit():
        return text[:-1] + {"m": "Mi", "g": "Gi", "k": "Ki"}[text[-1].lower()]
    return text


class Facts(object):
    def __init__(self, evidence, s):
        self.s = s
        self.items, self.errors = kw.reads(evidence, PREFIX, READS)
        self.workloads = [
            w
            for w in kw.workloads(self.items["deployments"], self.items["statefulsets"])
            if not s["services"] or w["app"] in s["services"] or w["name"] in s["services"]
        ]
        self.pods_of = kw.pods_by_workload(self.items["pods"], self.workloads)
        self.metrics_error = self.errors.get("pod_metrics")
        self.usage = kw.container_usage(
            {ref: pods for ref, pods in self.pods_of.items() if ref},
            self.workloads,
            kw.pod_usage(self.items["pod_metrics"]),
        )

    def error(self, *names):
        for name in names:
            if self.errors.get(name):
                return self.errors[name]
        return None

    def containers(self):
        """(workload ref, pod summary, container status) of every pod of the workloads."""
        for ref, pods in sorted(self.pods_of.items(), key=lambda item: str(item[0])):
            if ref is None:
                continue
            for pod in pods:
                for container in pod["containers"]:
                    yield ref, pod, container


def check_oom(f):
    title = "No container was OOM-killed"
    expected = "no lastState.terminated.reason OOMKilled"
    error = f.error("pods", "deployments", "statefulsets")
    if error:
        return unknown("k8s.memory.oom_kills", title, expected, error)
    killed = [
        {
            "workload": ref,
            "pod": pod["name"],
            "container": c["name"],
            "restarts": c["restarts"],
            "finished_at": (c.get("last_terminated") or {}).get("finished_at"),
            "memory_limit": (pod["limits"].get(c["name"]) or {}).get("memory"),
        }
        for ref, pod, c in f.containers()
        if k8s.oom_killed({"containers": [c]})
    ]
    if not killed:
        return finding("k8s.memory.oom_kills", title, "ok", "none", expected)
    observed = "; ".join(
        "%s/%s OOMKilled (%d restarts, limit %s)" % (k["pod"], k["container"], k["restarts"], k["memory_limit"])
        for k in killed
    )
    return finding("k8s.memory.oom_kills", title, "problem", observed, expected, {"killed": killed}, "A")


def check_restarts(f):
    title = "No container restarts repeatedly"
    expected = "fewer than %d restarts" % f.s["k8s_restart_max"]
    error = f.error("pods", "deployments", "statefulsets")
    if error:
        return unknown("k8s.memory.restarts", title, expected, error)
    rows = [
        {
            "workload": ref,
            "pod": pod["name"],
            "container": c["name"],
            "restarts": c["restarts"],
            "last": (c.get("last_terminated") or {}).get("reason"),
        }
        for ref, pod, c in f.containers()
        if c["restarts"] >= f.s["k8s_restart_max"]
    ]
    if not rows:
        return finding("k8s.memory.restarts", title, "ok", "none", expected)
    observed = "; ".join(
        "%s/%s %d restarts (last %s)" % (r["pod"], r["container"], r["restarts"], r["last"]) for r in rows
    )
    return finding("k8s.memory.restarts", title, "warning", observed, expected, {"restarts": rows}, "A")


def check_near_limit(f):
    title = "No container's memory is near its limit"
    expected = "working set < %.0f%% of the limit" % (100 * f.s["limit_ratio_max"])
    error = f.error("pods", "deployments", "statefulsets")
    if error:
        return unknown("k8s.memory.near_limit", title, expected, error)
    if f.metrics_error:
        message = f.metrics_error.get("message") or ""
        if "No matches found" in message or "ResourceNotFound" in message or "404" in message:
            return finding(
                "k8s.memory.near_limit",
                title,
                "warning",
                "metrics API (metrics.k8s.io) not served: memory use not judged (OOM kills still are)",
                expected,
                {"metrics_api": False},
            )
        return unknown("k8s.memory.near_limit", title, expected, f.metrics_error)
    rows = sorted((r for r in f.usage if r["memory_ratio"] is not None), key=lambda r: -r["memory_ratio"])
    high = [r for r in rows if r["memory_ratio"] >= f.s["limit_ratio_max"]]
    evidence = {"metrics_api": True, "top": rows[:5]}
    if not high:
        return finding(
            "k8s.memory.near_limit",
            title,
            "ok",
            "highest %s" % ("%.0f%%" % (100 * rows[0]["memory_ratio"]) if rows else "n/a"),
            expected,
            evidence,
        )
    observed = "; ".join(
        "%s/%s %s of %s (%.0f%%)"
        % (
            r["pod"],
            r["container"],
            human_bytes(r["memory_bytes"]),
            human_bytes(r["memory_limit_bytes"]),
            100 * r["memory_ratio"],
        )
        for r in high
    )
    return finding("k8s.memory.near_limit", title, "problem", observed, expected, dict(evidence, high=high), "A")


def check_limits(f, check="k8s.memory.limits", status="warning"):
    title = "Every container has a memory limit"
    expected = "resources.limits.memory on every container"
    error = f.error("deployments", "statefulsets")
    if error:
        return unknown(check, title, expected, error)
    missing = {w["ref"]: [c["name"] for c in w["containers"] if not c["memory_limit"]] for w in f.workloads}
    missing = {ref: names for ref, names in missing.items() if names}
    if not missing:
        return finding(check, title, "ok", "all %d workloads" % len(f.workloads), expected)
    observed = "no memory limit on %s" % "; ".join(
        "%s (%s)" % (ref, ", ".join(names)) for ref, names in sorted(missing.items())
    )
    return finding(check, title, status, observed, expected, {"without_limit": missing}, "B")


def diagnose(evidence, settings=None, previous=None, applied=()):
    s = _settings(settings)
    f = Facts(evidence, s)
    findings = [check_oom(f), check_near_limit(f), check_restarts(f), check_limits(f)]
    scenarios = []
    for sid, stitle in SCENARIOS.items():
        mine = [item for item in findings if CHECK_SCENARIO.get(item["check"]) == sid]
        statuses = ("problem", "warning") if sid == "B" else ("problem",)
        holding = [item for item in mine if item["status"] in statuses and item["scenario"] == sid]
        if holding:
            reason = "; ".join("%s: %s" % (item["check"], item["observed"]) for item in holding)
        elif any(item["status"] == "unknown" for item in mine):
            reason = "not checked: %s" % ", ".join(item["check"] for item in mine if item["status"] == "unknown")
        else:
            reason = "checks ok: %s" % ", ".join(item["check"] for item in mine)
        scenarios.append({"id": sid, "title": stitle, "holds": bool(holding), "reason": reason})
    suspects = set()
    for item in findings:
        if item["check"] in ("k8s.memory.oom_kills", "k8s.memory.near_limit") and item["status"] == "problem":
            suspects.update(
                row["workload"] for row in item["evidence"].get("killed", []) + item["evidence"].get("high", [])
            )
    by_ref = {w["ref"]: w for w in f.workloads}
    limits = findings[3]
    context = {
        "namespace": s["namespace"],
        "suspects": sorted(suspects),
        "workloads": {
            ref: {
                "kind": w["kind"],
                "name": w["name"],
                "app": w["app"],
                "replicas": w["replicas"],
                "pods": [p["name"] for p in f.pods_of.get(ref) or []],
            }
            for ref, w in by_ref.items()
        },
        "without_limit": (limits.get("evidence") or {}).get("without_limit") or {},
        "evidence": {
            ref: {
                "oom_kills": [k for k in (findings[0]["evidence"].get("killed") or []) if k["workload"] == ref],
                "memory": [r for r in (findings[1]["evidence"].get("top") or []) if r["workload"] == ref],
            }
            for ref in sorted(suspects)
        },
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _limit_actions(s, ctx, without_limit, prefix):
    actions = []
    quantity = _limit_quantity(s["memory_limit"])
    for ref, containers in sorted(without_limit.items()):
        workload = (ctx.get("workloads") or {}).get(ref) or {}
        for container in containers:
            actions.append(
                action(
                    "%s.%s.%s.%s" % (NAME, prefix, workload.get("name"), container),
                    "B",
                    "set a memory limit of %s on %s/%s" % (quantity, ref, container),
                    "k8s:%s" % ref,
                    {
                        "workload": ref,
                        "kind": workload.get("kind"),
                        "name": workload.get("name"),
                        "namespace": s["namespace"],
                        "container": container,
                        "key": "spec.template.spec.containers[%s].resources.limits.memory" % container,
                        "old": None,
                        "new": quantity,
                        "patch": kw.memory_limit_patch(container, quantity),
                        "op": "patch (rolls the pods)",
                    },
                    "planned",
                    "%s/%s: resources.limits.memory None -> %s (a pod template patch: the controller rolls the pods)"
                    % (ref, container, quantity),
                    disruptive=True,
                    apply="set_memory_limit",
                )
            )
    return actions


def plan(diagnosis, settings=None):
    s = _settings(settings)
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    actions = []
    for sid in ("B", "A"):
        if not (sid == forced if forced else sid in holding):
            continue
        if sid == "B":
            actions.extend(_limit_actions(s, ctx, ctx.get("without_limit") or {}, "B.set_memory_limit"))
            continue
        for ref in ctx.get("suspects") or []:
            workload = (ctx.get("workloads") or {}).get(ref) or {}
            actions.append(
                action(
                    "%s.A.rolling_restart.%s" % (NAME, workload.get("name")),
                    "A",
                    "rolling restart of %s (mitigation: frees the leaked memory)" % ref,
                    "k8s:%s" % ref,
                    {
                        "workload": ref,
                        "kind": workload.get("kind"),
                        "name": workload.get("name"),
                        "namespace": s["namespace"],
                        "pods": workload.get("pods") or [],
                        "op": "rollout restart (%s): pods replaced one at a time" % k8s.RESTARTED_AT,
                    },
                    "planned",
                    "rollout restart of %s: the controller replaces %s one at a time (its rolling update strategy), "
                    "each ready before the next" % (ref, ", ".join(workload.get("pods") or []) or "its pods"),
                    disruptive=True,
                    apply="rolling_restart",
                )
            )
            evidence = (ctx.get("evidence") or {}).get(ref) or {}
            actions.append(
                action(
                    "%s.A.report.%s" % (NAME, workload.get("name")),
                    "A",
                    "report the leak in %s to its owning team" % ref,
                    "report:%s" % ref,
                    {"workload": ref, "evidence": evidence},
                    "report",
                    "%s: the restart only buys time; the leak is in %s's code. Profile it (MEMORY_TRACE=true shows "
                    "the top allocations in GET /debug/memory; kubectl top pod shows the level) and fix the code; the "
                    "seed's patterns: %s"
                    % (
                        s["escalation_level"],
                        workload.get("name"),
                        "; ".join("%s %s" % (key, value) for key, value in sorted(ml.SEED_PATTERNS.items())),
                    ),
                )
            )
    return gated(actions, s)


def prevention(evidence, settings=None):
    """Every container has a memory limit (set one where missing: disruptive) and the metrics API is served."""
    s = _settings(settings)
    f = Facts(evidence, s)
    limits = check_limits(f, "prevent.k8s.memory.limits", "problem")
    title = "The metrics API is served (per-pod memory, kubectl top)"
    if not f.metrics_error:
        metrics = finding("prevent.k8s.memory.metrics_api", title, "ok", "served", "served")
    elif "No matches found" in (f.metrics_error.get("message") or ""):
        metrics = finding(
            "prevent.k8s.memory.metrics_api", title, "warning", "not served", "served", {"metrics_api": False}
        )
    else:
        metrics = unknown("prevent.k8s.memory.metrics_api", title, "served", f.metrics_error)
    ctx = {"workloads": {w["ref"]: {"kind": w["kind"], "name": w["name"]} for w in f.workloads}}
    actions = []
    if limits["status"] == "problem":
        actions.extend(_limit_actions(s, ctx, limits["evidence"]["without_limit"], "prevent.set_memory_limit"))
    if metrics["status"] == "warning":
        actions.append(
            action(
                "%s.prevent.report_metrics_api" % NAME,
                None,
                "install metrics-server",
                "k8s:prevent:metrics",
                {},
                "report",
                "%s: install metrics-server so that memory use per pod can be judged" % s["escalation_level"],
            )
        )
    return {"findings": [limits, metrics], "actions": gated(actions, s), "context": ctx}
