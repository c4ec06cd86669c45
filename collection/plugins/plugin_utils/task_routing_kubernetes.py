# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""task_routing on Kubernetes: the Compose judgement, with the arms' health read from the API.

The arms are the Deployments labelled ``app-type=arm``. An arm is down when its Deployment has 0 ready replicas,
no ready pod, an Endpoints object without ready addresses, or its pods are in CrashLoopBackOff with none ready
(``plugin_utils/kubernetes.workload_state``). That replaces the Compose side's /health probes (the arms' pod
addresses are not reachable from the controller); the orchestrator's registry and scoring, the stuck tasks
(PostgreSQL) and the Prometheus rules are read as on Compose at the inventory's addresses (Services or
port-forwards). The orchestrator's routing log lines come from its pods' logs (the API).

Fixes on Kubernetes:

- A  ``task_routing.A.restart_arms``: a rollout restart (``restartedAt`` annotation) of each arm that is down;
     disruptive, waits for approval.
- C  ``task_routing.C.register_arms``: an arm registers with the orchestrator on start-up, so an unregistered arm
     gets a rollout restart as well (disruptive); the Compose POST of its /capabilities needs the arm's address.
- stuck tasks (A, C, D) are re-queued through the orchestrator API and one SQL transaction, as on Compose; when
  the arms' and the orchestrator's pods started (a container's ``startedAt``, else the pod's ``startTime``) tells
  a task stuck in ``running`` on a process that is gone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing as tr
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import gated
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import escalation, finding, unknown

PREFIX = "task_routing_"
READS = ("deployments", "pods", "endpoints", "events", "orchestrator")


def _by_app(items):
    found = {}
    for item in items:
        meta = item.get("metadata") or {}
        app = (meta.get("labels") or {}).get("app") or meta.get("name")
        found.setdefault(app, []).append(item)
    return found


def arm_states(reads, s):
    """``{arm: workload_state}`` for every arm of the settings and every Deployment labelled as an arm."""
    deployments = {(d.get("metadata") or {}).get("name"): d for d in reads["deployments"]["items"]}
    pods = _by_app(reads["pods"]["items"])
    endpoints = {(e.get("metadata") or {}).get("name"): e for e in reads["endpoints"]["items"]}
    events = reads["events"]["items"]
    states = {}
    for arm in sorted(set(s["arms"]) | set(name for name in deployments if name)):
        state = k8s.workload_state(deployments.get(arm), pods.get(arm) or [], endpoints.get(arm))
        names = {pod["name"] for pod in state["pods"]} | {arm}
        state["events"] = k8s.events_summary(events, names=names, limit=5)
        states[arm] = state
    return states


def api_error(reads):
    """The error that keeps the arms' state from being known (Deployments or pods unreadable), or None."""
    return reads["deployments"]["error"] or reads["pods"]["error"]


def pod_records(items, service=None):
    """The pods as the containers collector's records that ``task_routing.service_starts`` reads: the service (the
    ``app`` label, or ``service``), running, and when its process started (the newest running container's
    ``startedAt``: a restart in place counts; else the pod's ``startTime``)."""
    records = []
    for pod in items or []:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        running = [
            ((c.get("state") or {}).get("running") or {}).get("startedAt")
            for c in status.get("containerStatuses") or []
            if (c.get("state") or {}).get("running")
        ]
        started = [(tr.epoch(when), when) for when in running if tr.epoch(when) is not None]
        records.append(
            {
                "service": service or (meta.get("labels") or {}).get("app"),
                "name": meta.get("name"),
                "running": status.get("phase") == "Running" and bool(running),
                "started_at": max(started)[1] if started else status.get("startTime"),
            }
        )
    return records


def with_api(evidence, reads, states, s):
    """The evidence with the arms' /health probes answered from the API and the orchestrator's log lines from
    its pods, so that the Compose judgement applies unchanged."""
    evidence = copy.deepcopy(evidence or {})
    http = evidence.get("http")
    if not http or not http.get("ok"):
        # the orchestrator's probes failed as a whole: they carry that error, the arms' health the API's answer
        failed = {
            "ok": False,
            "status": None,
            "error": (http or {}).get("error") or {"kind": "other", "message": "http evidence was not gathered"},
        }
        http = {"ok": True, "probes": {PREFIX + "registry": failed, PREFIX + "score": failed}}
    probes = http.setdefault("probes", {})
    error = api_error(reads)
    for arm in s["arms"]:
        state = states.get(arm)
        if error or state is None:
            probes["%shealth_%s" % (PREFIX, arm)] = {
                "ok": False,
                "status": None,
                "error": error or {"kind": "other", "message": "no Deployment %s" % arm},
            }
        else:
            probes["%shealth_%s" % (PREFIX, arm)] = {
                "ok": not state["down"],
                "status": 200 if not state["down"] else None,
                "error": None if not state["down"] else {"kind": "other", "message": "; ".join(state["reasons"])},
            }
    evidence["http"] = http
    log = reads["orchestrator"]["log"]
    starts = None  # when the pods started: unknown when a read failed
    if not reads["pods"]["error"] and not reads["orchestrator"]["error"]:
        starts = pod_records(reads["pods"]["items"]) + pod_records(reads["orchestrator"]["items"], tr.ORCHESTRATOR)
    evidence["containers"] = {
        "ok": True,
        "containers": starts,
        "logs": {
            s["k8s_orchestrator_app"]: log
            or {"lines": [], "pattern_counts": {}, "error": reads["orchestrator"]["error"]}
        },
    }
    return evidence


def check_workloads(reads, states, s):
    title = "Every arm Deployment (%s) has ready replicas, ready Endpoints and no crash loop" % s["k8s_arm_selector"]
    expected = "all arms serving"
    error = api_error(reads)
    if error:
        return unknown("k8s.arm_workloads", title, expected, error, "A")
    evidence = {
        arm: {
            key: state[key]
            for key in ("desired", "ready_replicas", "ready_pods", "endpoints_ready", "reasons", "events")
        }
        for arm, state in states.items()
    }
    for arm, state in states.items():
        evidence[arm]["pods"] = [
            {key: pod[key] for key in ("name", "phase", "ready", "restarts", "containers")} for pod in state["pods"]
        ]
    down = sorted(arm for arm, state in states.items() if state["down"])
    troubled = sorted(arm for arm, state in states.items() if state["trouble"] and not state["down"])
    if down:
        observed = "; ".join("%s: %s" % (arm, ", ".join(states[arm]["reasons"])) for arm in down)
        return finding("k8s.arm_workloads", title, "problem", observed, expected, evidence, "A")
    if troubled:
        observed = "; ".join(
            "%s: %s" % (arm, ", ".join(r for rs in states[arm]["trouble"].values() for r in rs)) for arm in troubled
        )
        return finding("k8s.arm_workloads", title, "warning", observed, expected, evidence, "A")
    return finding("k8s.arm_workloads", title, "ok", "%d arms serving" % len(states), expected, evidence)


def diagnose(evidence, settings=None):
    """task_routing's diagnosis with the arms' health from the API, plus ``k8s.arm_workloads``."""
    s = settings
    reads = k8s.named_reads(evidence, PREFIX, READS)
    states = arm_states(reads, s)
    result = tr.diagnose(with_api(evidence, reads, states, s), s)
    findings = list(result["findings"])
    error = api_error(reads)
    context = dict(result["context"])
    if error:
        # the arms' health is not known: never report (or restart) them as down
        findings = [
            unknown(item["check"], item["title"], item["expected"], error, item["scenario"])
            if item["check"] == "arms.health"
            else item
            for item in findings
        ]
        context["down"] = []
        context["unregistered"] = []
    findings.append(check_workloads(reads, states, s))
    context["workloads"] = {arm: "Deployment/%s" % arm for arm in states}
    return {
        "findings": findings,
        "scenarios": result["scenarios"],
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _restart_change(arms, s, why):
    return {
        "workloads": ["Deployment/%s" % arm for arm in arms],
        "arms": list(arms),
        "namespace": s["namespace"],
        "op": "rollout restart (%s), %s" % (k8s.RESTARTED_AT, why),
    }


def plan(diagnosis, settings=None):
    """task_routing's plan with the Kubernetes fixes of A and C (rollout restarts), gated by approval."""
    s = settings
    ctx = diagnosis.get("context") or {}
    raw = tr.plan(diagnosis, dict(s, dry_run=False, approve=True))  # every action as planned, gated below
    actions = []
    for item in raw:
        item = dict(item)
        if item["id"] == "task_routing.A.restart_arms":
            down = list(ctx.get("down") or [])
            item.update(
                change=_restart_change(down, s, "then each registers again on start-up"),
                resource="k8s:deployments:%s" % ",".join(down),
                _apply="rollout_restart",
                outcome="rollout restart of %s (the arms register again on start-up)"
                % ", ".join("Deployment/%s" % arm for arm in down),
            )
        elif item["id"] == "task_routing.C.register_arms":
            missing = list(ctx.get("unregistered") or [])
            item.update(
                change=_restart_change(missing, s, "the arm registers with the orchestrator on start-up"),
                resource="k8s:deployments:%s" % ",".join(missing),
                disruptive=True,
                _apply="rollout_restart",
                outcome="rollout restart of %s: an arm registers with the orchestrator on start-up"
                % ", ".join("Deployment/%s" % arm for arm in missing),
            )
        actions.append(item)
    return gated(actions, s)


def check_probes(reads, states, s):
    title = "Every arm Deployment has readiness and liveness probes"
    expected = "readinessProbe and livenessProbe on each arm container"
    if reads["deployments"]["error"]:
        return unknown("prevent.k8s.arm_probes", title, expected, reads["deployments"]["error"])
    missing = {}
    for deployment in reads["deployments"]["items"]:
        name = (deployment.get("metadata") or {}).get("name")
        containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
        lacking = sorted(
            {probe for c in containers for probe in ("readinessProbe", "livenessProbe") if not c.get(probe)}
        )
        if lacking:
            missing[name] = lacking
    absent = sorted(
        arm
        for arm in s["arms"]
        if arm not in {(d.get("metadata") or {}).get("name") for d in reads["deployments"]["items"]}
    )
    evidence = {"missing": missing, "no_deployment": absent}
    if missing or absent:
        observed = "; ".join(
            ["%s: %s" % (k, ", ".join(v)) for k, v in sorted(missing.items())]
            + ["no Deployment: %s" % ", ".join(absent)] * bool(absent)
        )
        return finding("prevent.k8s.arm_probes", title, "problem", observed, expected, evidence)
    return finding(
        "prevent.k8s.arm_probes", title, "ok", "all %d" % len(reads["deployments"]["items"]), expected, evidence
    )


def prevention(evidence, settings=None):
    """task_routing's prevention with the arms' probes (the API) in place of the Compose health checks."""
    s = settings
    reads = k8s.named_reads(evidence, PREFIX, READS)
    states = arm_states(reads, s)
    result = tr.prevention(with_api(evidence, reads, states, s), s)
    findings = [item for item in result["findings"] if item["check"] != "prevent.arms.healthcheck"]
    findings.insert(0, check_probes(reads, states, s))
    actions = [item for item in result["actions"] if item["resource"] != "prevent.arms.healthcheck"]
    if findings[0]["status"] == "problem":
        actions.append(
            {
                "id": "task_routing.prevent_k8s_arm_probes",
                "scenario": None,
                "title": "report: prevent.k8s.arm_probes",
                "resource": "prevent.k8s.arm_probes",
                "change": {},
                "disruptive": False,
                "destructive": False,
                "status": "report",
                "outcome": "%s: add readiness and liveness probes (GET /health) to these arms' "
                "Deployments" % s["escalation_level"],
            }
        )
    return {"findings": findings, "actions": actions, "context": {}}
