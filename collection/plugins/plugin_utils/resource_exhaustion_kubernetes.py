# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""resource_exhaustion on Kubernetes: the Compose procedure's scenarios judged from what the API shows.

Evidence (the ``kubernetes`` kind of stack_evidence, reads named ``resource_exhaustion_<name>``): the nodes (their
MemoryPressure, DiskPressure and PIDPressure conditions), the pods, the Deployments and StatefulSets (limits,
replicas), the HorizontalPodAutoscalers, the Warning events (Evicted, FailedScheduling) and, where the metrics API
(``metrics.k8s.io``, metrics-server) is served, each pod's CPU and memory use. A metrics API that is not served is
evidence (usage cannot be judged, an HPA cannot scale), not a failure.

- A  CPU or memory exhausted: a node under MemoryPressure or PIDPressure, pods evicted or unschedulable for lack
     of CPU or memory, or containers at their CPU or memory limit. Fixes: the top consumer is scaled out by a
     bounded step (``kubernetes.core.k8s_scale``; CPU-bound, a Deployment without an HPA: not disruptive) or
     restarted (memory-bound or at the replica bound: a rollout restart, disruptive); a node under pressure is
     drained (``kubernetes.core.k8s_drain``; disruptive, only where another node can take its pods).
- C  the node's disk is full (DiskPressure, pods evicted for ephemeral-storage): the node is drained as above
     (kubelet then garbage-collects images and dead containers); the images are the kubelet's, not ours to prune.
- B, D (expired backups, container logs without rotation) are files on the hosts: not visible through the API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils import k8s_workloads as kw
from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils import resource_exhaustion as re_compose
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import gated
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    human_bytes,
    unknown,
)

NAME = re_compose.NAME
PREFIX = "resource_exhaustion_"
READS = ("nodes", "pods", "deployments", "statefulsets", "hpas", "events", "pod_metrics")
SCENARIOS = re_compose.SCENARIOS
NOT_ON_KUBERNETES = {
    "B": "not checked on Kubernetes: backups are files on a host or a volume, not visible through the API",
    "D": "not checked on Kubernetes: the kubelet rotates container logs (containerLogMaxSize)",
}
PRESSURE_SCENARIO = {"MemoryPressure": "A", "PIDPressure": "A", "DiskPressure": "C"}


def objects():
    """The API reads of the judgement (stack_evidence kind kubernetes), named ``resource_exhaustion_<read>``."""
    return {
        PREFIX + "nodes": {"kind": "Node", "namespaced": False},
        PREFIX + "pods": {"kind": "Pod"},
        PREFIX + "deployments": {"kind": "Deployment", "api_version": "apps/v1"},
        PREFIX + "statefulsets": {"kind": "StatefulSet", "api_version": "apps/v1"},
        PREFIX + "hpas": {"kind": "HorizontalPodAutoscaler", "api_version": "autoscaling/v2"},
        PREFIX + "events": {"kind": "Event", "field_selector": "type=Warning"},
        PREFIX + "pod_metrics": {"kind": "PodMetrics", "api_version": "metrics.k8s.io/v1beta1"},
    }


def _name(text):
    return (text or "none").replace("-", "_")


def metrics_missing(error):
    """Whether a failed metrics read means the metrics API is not served (no metrics-server)."""
    message = (error or {}).get("message") or ""
    return "No matches found" in message or "ResourceNotFound" in message or "404" in message


class Facts(object):
    def __init__(self, evidence, s):
        self.s = s
        self.items, self.errors = kw.reads(evidence, PREFIX, READS)
        self.workloads = kw.workloads(self.items["deployments"], self.items["statefulsets"])
        self.pods_of = kw.pods_by_workload(self.items["pods"], self.workloads)
        self.nodes = kw.node_conditions(self.items["nodes"])
        self.metrics_error = self.errors.get("pod_metrics")
        self.metrics_served = not self.metrics_error
        self.usage = kw.container_usage(self.pods_of, self.workloads, kw.pod_usage(self.items["pod_metrics"]))
        self.hpa_targets = {
            "%s/%s"
            % (
                ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("kind"),
                ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name"),
            ): h
            for h in self.items["hpas"]
        }

    def error(self, *names):
        for name in names:
            if self.errors.get(name):
                return self.errors[name]
        return None


def check_nodes(f):
    title = "No node is under memory, disk or PID pressure"
    expected = "every node Ready, MemoryPressure/DiskPressure/PIDPressure False"
    error = f.error("nodes")
    if error:
        return unknown("k8s.node_pressure", title, expected, error)
    troubled = [n for n in f.nodes if n["pressure"] or not n["ready"]]
    evidence = {"nodes": f.nodes}
    if not troubled:
        return finding("k8s.node_pressure", title, "ok", "%d nodes without pressure" % len(f.nodes), expected, evidence)
    observed = "; ".join(
        "%s: %s" % (n["name"], ", ".join(n["pressure"] + ([] if n["ready"] else ["NotReady"]))) for n in troubled
    )
    kinds = sorted({PRESSURE_SCENARIO[p] for n in troubled for p in n["pressure"]})
    return finding("k8s.node_pressure", title, "problem", observed, expected, evidence, kinds[0] if kinds else "A")


def _usage_check(f, check, resource, ratio_key, limit_percent):
    title = "No container runs at its %s limit" % resource
    expected = "%s use < %s%% of the limit" % (resource, ("%g" % limit_percent))
    error = f.error("pods", "deployments", "statefulsets")
    if error:
        return unknown(check, title, expected, error)
    if not f.metrics_served:
        if metrics_missing(f.metrics_error):
            return finding(
                check,
                title,
                "warning",
                "metrics API (metrics.k8s.io) not served: %s use not judged" % resource,
                expected,
                {"metrics_api": False},
            )
        return unknown(check, title, expected, f.metrics_error, evidence={"metrics_api": None})
    rows = [row for row in f.usage if row[ratio_key] is not None]
    high = sorted((row for row in rows if row[ratio_key] * 100.0 >= limit_percent), key=lambda row: -row[ratio_key])
    top = sorted(rows, key=lambda row: -row[ratio_key])[: f.s["top"]]
    evidence = {"metrics_api": True, "top": top}
    if not high:
        return finding(
            check,
            title,
            "ok",
            "highest %s" % ("%.0f%%" % (100 * top[0][ratio_key]) if top else "n/a"),
            expected,
            evidence,
        )
    observed = "; ".join(
        "%s/%s %.0f%% of its limit" % (row["pod"], row["container"], 100 * row[ratio_key]) for row in high[: f.s["top"]]
    )
    return finding(check, title, "problem", observed, expected, dict(evidence, high=high), "A")


def check_events(f):
    title = "No pod was evicted or left unscheduled for lack of resources"
    expected = "no Evicted / FailedScheduling (Insufficient) events"
    error = f.error("events")
    if error:
        return unknown("k8s.evictions", title, expected, error)
    rows = []
    for event in f.items["events"]:
        message = event.get("message") or ""
        if (
            event.get("reason") == "Evicted"
            or (event.get("reason") == "FailedScheduling" and "Insufficient" in message)
            or event.get("reason") in ("EvictionThresholdMet", "SystemOOM")
        ):
            rows.append(event)
    events = k8s.events_summary(rows)
    if not events:
        return finding("k8s.evictions", title, "ok", "none", expected)
    disk = any(
        "ephemeral-storage" in e["message"] or "DiskPressure" in e["message"] or "disk" in e["message"].lower()
        for e in events
    )
    observed = "; ".join(
        "%s %s x%d: %s" % (e["reason"], e["object"], e["count"], e["message"][:80]) for e in events[:5]
    )
    return finding("k8s.evictions", title, "problem", observed, expected, {"events": events}, "C" if disk else "A")


def _consumer(f, findings):
    """The top consumer among the containers at a limit: its workload, what it exhausts, its ratios."""
    high = []
    for item in findings:
        if item["check"] in ("k8s.pod_cpu", "k8s.pod_memory") and item["status"] == "problem":
            for row in item["evidence"].get("high") or []:
                high.append(
                    (
                        row["cpu_ratio"] if item["check"] == "k8s.pod_cpu" else row["memory_ratio"],
                        "cpu" if item["check"] == "k8s.pod_cpu" else "memory",
                        row,
                    )
                )
    if not high:
        return None
    ratio, resource, row = sorted(high, key=lambda item: -item[0])[0]
    workload = next((w for w in f.workloads if w["ref"] == row["workload"]), None)
    if workload is None:
        return None
    return {
        "workload": workload["ref"],
        "kind": workload["kind"],
        "name": workload["name"],
        "app": workload["app"],
        "replicas": workload["replicas"],
        "resource": resource,
        "ratio": ratio,
        "pod": row["pod"],
        "container": row["container"],
        "hpa": workload["ref"] in f.hpa_targets,
        "database": workload["app"] in f.s["k8s_databases"] or workload["name"] in f.s["k8s_databases"],
        "memory": human_bytes(row["memory_bytes"]),
        "cpu_m": row["cpu_m"],
    }


def diagnose(evidence, settings, previous=None, applied=()):
    s = settings
    f = Facts(evidence, s)
    findings = [
        check_nodes(f),
        _usage_check(f, "k8s.pod_cpu", "CPU", "cpu_ratio", s["cpu_high_percent"]),
        _usage_check(f, "k8s.pod_memory", "memory", "memory_ratio", s["memory_high_percent"]),
        check_events(f),
    ]
    scenarios = []
    for sid, stitle in SCENARIOS.items():
        holding = [item for item in findings if item["status"] == "problem" and item["scenario"] == sid]
        nodes = ["%s %s" % (n["name"], p) for n in f.nodes for p in n["pressure"] if PRESSURE_SCENARIO[p] == sid]
        if nodes and not any(item["check"] == "k8s.node_pressure" for item in holding):
            # one finding for every node; a node's DiskPressure is C even when another's MemoryPressure is A
            holding.append({"check": "k8s.node_pressure", "observed": ", ".join(nodes)})
        if sid in NOT_ON_KUBERNETES:
            reason = NOT_ON_KUBERNETES[sid]
        elif holding:
            reason = "; ".join("%s: %s" % (item["check"], item["observed"]) for item in holding)
        elif any(item["status"] == "unknown" for item in findings):
            reason = "not checked: %s" % ", ".join(item["check"] for item in findings if item["status"] == "unknown")
        else:
            reason = "checks ok: %s" % ", ".join(item["check"] for item in findings)
        scenarios.append({"id": sid, "title": stitle, "holds": bool(holding), "reason": reason})
    pressured = [n for n in f.nodes if n["pressure"]]
    healthy_nodes = [n["name"] for n in f.nodes if n["ready"] and not n["pressure"] and not n["unschedulable"]]
    context = {
        "namespace": s["namespace"],
        "consumer": _consumer(f, findings),
        "pressured_nodes": [
            {
                "name": n["name"],
                "pressure": n["pressure"],
                "unschedulable": n["unschedulable"],
                "pods": sorted(p["name"] for pods in f.pods_of.values() for p in pods if p["node"] == n["name"]),
            }
            for n in pressured
        ],
        "healthy_nodes": healthy_nodes,
        "metrics_api": f.metrics_served,
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def drain_args(node, s):
    """The exact arguments the drain task passes to kubernetes.core.k8s_drain (asserted at this level: the API
    emulator of the tests serves no eviction)."""
    return {
        "state": "drain",
        "name": node,
        "delete_options": {
            "ignore_daemonsets": True,
            "delete_emptydir_data": bool(s["k8s_drain_delete_emptydir_data"]),
            "disable_eviction": False,  # evict: PodDisruptionBudgets are honoured
            "force": False,  # never pods without a controller: they would not come back
            "terminate_grace_period": s["k8s_drain_grace_period"],
            "wait_timeout": s["k8s_drain_timeout"],
        },
    }


def _top_consumer_action(top, s):
    ident = _name(top["name"])
    scalable = (
        top["kind"] == "Deployment"
        and top["resource"] == "cpu"
        and not top["database"]
        and top["replicas"] < s["k8s_max_replicas"]
    )
    if top["hpa"]:
        return action(
            "%s.A.report_hpa_%s" % (NAME, ident),
            "A",
            "report %s at its limit under an HPA" % top["workload"],
            "k8s:%s" % top["workload"],
            {"workload": top["workload"], "resource": top["resource"], "ratio": top["ratio"]},
            "report",
            "%s: %s runs at %.0f%% of its %s limit and its HorizontalPodAutoscaler owns the replica "
            "count: raise the HPA's maxReplicas or the container's limit"
            % (s["escalation_level"], top["workload"], 100 * top["ratio"], top["resource"]),
        )
    if scalable:
        replicas = min(top["replicas"] + s["k8s_scale_step"], s["k8s_max_replicas"])
        return action(
            "%s.A.scale_%s" % (NAME, ident),
            "A",
            "scale out the top consumer %s to %d replicas" % (top["workload"], replicas),
            "k8s:%s" % top["workload"],
            {
                "workload": top["workload"],
                "kind": top["kind"],
                "name": top["name"],
                "namespace": s["namespace"],
                "key": "spec.replicas",
                "old": top["replicas"],
                "new": replicas,
                "op": "kubernetes.core.k8s_scale",
                "resource": top["resource"],
                "ratio": top["ratio"],
            },
            "planned",
            "k8s_scale %s from %d to %d replicas (%s at %.0f%% of its CPU limit; bound resource_exhaustion_k8s_"
            "max_replicas=%d); only if it still has %d"
            % (
                top["workload"],
                top["replicas"],
                replicas,
                top["pod"],
                100 * top["ratio"],
                s["k8s_max_replicas"],
                top["replicas"],
            ),
            apply="scale",
        )
    if top["database"]:
        return action(
            "%s.A.report_%s" % (NAME, ident),
            "A",
            "report the database %s at its limit" % top["workload"],
            "k8s:%s" % top["workload"],
            {"workload": top["workload"], "resource": top["resource"], "ratio": top["ratio"]},
            "report",
            "%s: the database %s runs at %.0f%% of its %s limit: find the heavy queries or raise the "
            "limit; a restart would drop every connection"
            % (s["escalation_level"], top["workload"], 100 * top["ratio"], top["resource"]),
        )
    return action(
        "%s.A.restart_%s" % (NAME, ident),
        "A",
        "rollout restart of the top consumer %s" % top["workload"],
        "k8s:%s" % top["workload"],
        {
            "workload": top["workload"],
            "kind": top["kind"],
            "name": top["name"],
            "namespace": s["namespace"],
            "op": "rollout restart (%s)" % k8s.RESTARTED_AT,
            "resource": top["resource"],
            "ratio": top["ratio"],
        },
        "planned",
        "rollout restart of %s (%s at %.0f%% of its %s limit%s)"
        % (
            top["workload"],
            top["pod"],
            100 * top["ratio"],
            top["resource"],
            "; already at resource_exhaustion_k8s_max_replicas" if top["replicas"] >= s["k8s_max_replicas"] else "",
        ),
        disruptive=True,
        apply="rollout_restart",
    )


def _drain_action(node, sid, ctx, s):
    others = [name for name in ctx.get("healthy_nodes") or [] if name != node["name"]]
    ident = "%s.%s.drain_%s" % (NAME, sid, _name(node["name"]))
    if not others:
        return action(
            ident.replace(".drain_", ".report_node_"),
            sid,
            "report node %s under %s" % (node["name"], ", ".join(node["pressure"])),
            "k8s:Node/%s" % node["name"],
            {"node": node["name"], "pressure": node["pressure"]},
            "report",
            "%s: node %s is under %s and no other node is Ready without pressure to take its pods: add capacity "
            "(a node) or free the node's %s"
            % (s["escalation_level"], node["name"], ", ".join(node["pressure"]), "disk" if sid == "C" else "memory"),
        )
    args = drain_args(node["name"], s)
    return action(
        ident,
        sid,
        "drain node %s (%s)" % (node["name"], ", ".join(node["pressure"])),
        "k8s:Node/%s" % node["name"],
        {
            "node": node["name"],
            "pressure": node["pressure"],
            "pods": node["pods"],
            "to_nodes": others,
            "op": "kubernetes.core.k8s_drain (cordon, then evict honouring PodDisruptionBudgets)",
            "drain": args,
        },
        "planned",
        "cordon %s and evict its pods (%s) to %s; DaemonSet pods stay, emptyDir data %s; uncordon it once the "
        "pressure is gone (kubernetes.core.k8s_drain state=uncordon)"
        % (
            node["name"],
            ", ".join(node["pods"]) or "none of the namespace",
            ", ".join(others),
            "is deleted" if args["delete_options"]["delete_emptydir_data"] else "blocks the drain",
        ),
        disruptive=True,
        apply="drain",
    )


def plan(diagnosis, settings):
    s = settings
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    actions = []
    for sid in ("A", "C"):
        if not (sid == forced if forced else sid in holding):
            continue
        if sid == "A" and ctx.get("consumer"):
            actions.append(_top_consumer_action(ctx["consumer"], s))
        for node in ctx.get("pressured_nodes") or []:
            kinds = sorted({PRESSURE_SCENARIO[p] for p in node["pressure"]})
            if kinds and kinds[0] == sid and not node["unschedulable"]:
                actions.append(_drain_action(node, sid, ctx, s))
    if forced in NOT_ON_KUBERNETES:
        actions.append(
            action(
                "%s.%s.report_not_on_kubernetes" % (NAME, forced),
                forced,
                "report scenario %s" % forced,
                "k8s:report:%s" % forced,
                {},
                "report",
                "%s: %s" % (s["escalation_level"], NOT_ON_KUBERNETES[forced]),
            )
        )
    return gated(actions, s)


def prevention(evidence, settings):
    """CPU and memory limits and requests on every container, an HPA on the workloads that should scale, and the
    metrics API the HPA needs. Reports (the fix belongs in the manifests)."""
    s = settings
    f = Facts(evidence, s)
    checks = [
        (
            "prevent.k8s.memory_limits",
            "Every container has a memory limit",
            "resources.limits.memory",
            lambda c: c["memory_limit"],
        ),
        ("prevent.k8s.cpu_limits", "Every container has a CPU limit", "resources.limits.cpu", lambda c: c["cpu_limit"]),
        (
            "prevent.k8s.requests",
            "Every container has CPU and memory requests",
            "resources.requests",
            lambda c: c["cpu_request"] and c["memory_request"],
        ),
    ]
    findings, actions = [], []
    error = f.error("deployments", "statefulsets")
    for check, title, expected, test in checks:
        if error:
            findings.append(unknown(check, title, expected, error))
            continue
        missing = {w["ref"]: [c["name"] for c in w["containers"] if not test(c)] for w in f.workloads}
        missing = {ref: names for ref, names in missing.items() if names}
        if not missing:
            findings.append(finding(check, title, "ok", "all %d workloads" % len(f.workloads), expected))
            continue
        findings.append(
            finding(
                check,
                title,
                "warning",
                "missing on %s"
                % "; ".join("%s (%s)" % (ref, ", ".join(names)) for ref, names in sorted(missing.items())),
                expected,
                {"workloads": missing},
            )
        )
        actions.append(
            action(
                "%s.prevent.report_%s" % (NAME, check.rsplit(".", 1)[-1]),
                None,
                "add %s to %s" % (expected, ", ".join(sorted(missing))),
                "k8s:prevent:%s" % expected,
                {"workloads": missing},
                "report",
                "%s: set %s on the containers of %s in the manifests, then apply them"
                % (s["escalation_level"], expected, ", ".join(sorted(missing))),
            )
        )
    title = "The workloads that scale have a HorizontalPodAutoscaler"
    error_hpa = error or f.error("hpas")
    if error_hpa:
        findings.append(unknown("prevent.k8s.hpa", title, "an HPA per workload", error_hpa))
    else:
        wanted = [w for w in f.workloads if w["name"] in s["k8s_hpa_workloads"]]
        missing = sorted(w["ref"] for w in wanted if w["ref"] not in f.hpa_targets)
        findings.append(
            finding(
                "prevent.k8s.hpa",
                title,
                "warning" if missing else "ok",
                "missing on %s" % ", ".join(missing) if missing else "%d of %d" % (len(wanted), len(wanted)),
                "an HPA on %s" % ", ".join(s["k8s_hpa_workloads"]),
                {"hpas": sorted(f.hpa_targets)},
            )
        )
        if missing:
            actions.append(
                action(
                    "%s.prevent.report_hpa" % NAME,
                    None,
                    "add an HPA to %s" % ", ".join(missing),
                    "k8s:prevent:hpa",
                    {"workloads": missing},
                    "report",
                    "%s: add a HorizontalPodAutoscaler (CPU 70%%) to %s" % (s["escalation_level"], ", ".join(missing)),
                )
            )
    title = "The metrics API is served (kubectl top, HPAs)"
    if f.metrics_served:
        findings.append(finding("prevent.k8s.metrics_api", title, "ok", "served", "served", {"metrics_api": True}))
    elif metrics_missing(f.metrics_error):
        findings.append(
            finding("prevent.k8s.metrics_api", title, "warning", "not served", "served", {"metrics_api": False})
        )
        actions.append(
            action(
                "%s.prevent.report_metrics_api" % NAME,
                None,
                "install metrics-server",
                "k8s:prevent:metrics",
                {},
                "report",
                "%s: install metrics-server: without it HPAs cannot scale and usage cannot be judged"
                % s["escalation_level"],
            )
        )
    else:
        findings.append(unknown("prevent.k8s.metrics_api", title, "served", f.metrics_error))
    return {
        "findings": findings,
        "actions": gated(actions, dict(s, approve=False, allow_disruptive=False)),
        "context": {},
    }
