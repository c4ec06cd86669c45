# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""service_unavailable on Kubernetes: the Compose procedure's scenarios judged from what the API shows.

Evidence (the ``kubernetes`` kind of stack_evidence, reads named ``service_unavailable_<name>``): every pod of the
namespace (phase, readiness, restarts, the waiting reason such as ``CrashLoopBackOff`` or
``CreateContainerConfigError``, ``lastState.terminated`` with its reason and message), the Deployments and
StatefulSets (selector, replicas, containers and their limits, revision), the ReplicaSets (rollout history), the
Services and their Endpoints, the PodDisruptionBudgets and the Warning events. Each workload that is down is given
one root cause, as on Compose (C, then B, D, A):

- C  database connection failure: a database workload (postgres, redis) is down; the workloads that are only
     not ready meanwhile wait for it. Fix: a database workload scaled to 0 replicas (stopped) is scaled back to
     ``k8s_database_start_replicas`` with ``kubernetes.core.k8s_scale`` (not disruptive: nothing runs); one whose
     pods fail gets a rollout restart (disruptive).
- B  out of memory: a container was OOM-killed (``lastState.terminated.reason``). Fix: raise its memory limit in
     the workload's pod template by a bounded step (a patch that rolls the pods: disruptive); at the cap a report.
- D  configuration error: a container cannot start on its configuration (``CreateContainerConfigError``, a
     termination message or Warning event matching the configuration error pattern). The bad setting is named;
     where the Deployment has a previous revision, ``kubernetes.core.k8s_rollback`` goes back to it (disruptive).
- A  crashed (anything else: CrashLoopBackOff, not ready, no pods). Fix: rollout restart (the pod template's
     ``kubectl.kubernetes.io/restartedAt`` annotation, as ``kubectl rollout restart``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.octollm.remediation.plugins.plugin_utils import k8s_workloads as kw
from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils import service_unavailable as sa
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import gated
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    human_bytes,
    unknown,
)

NAME = sa.NAME
PREFIX = "service_unavailable_"
READS = ("pods", "deployments", "statefulsets", "replicasets", "services", "endpoints", "events", "pdbs")
SCENARIOS = sa.SCENARIOS
_ORDER = {"C": 0, "B": 1, "D": 2, "A": 3}
CONFIG_WAITING = ("CreateContainerConfigError", "CreateContainerError", "InvalidImageName", "RunContainerError")


def _settings(settings):
    return dict(settings or {})


def _name(text):
    return (text or "none").replace("-", "_")


class Facts(object):
    """The reads, grouped by workload, with each workload's state and root cause."""

    def __init__(self, evidence, s):
        self.s = s
        self.items, self.errors = kw.reads(evidence, PREFIX, READS)
        self.workloads = [
            item
            for item in kw.workloads(self.items["deployments"], self.items["statefulsets"])
            if item["app"] not in s["excluded_services"] and item["name"] not in s["excluded_services"]
        ]
        self.pods_of = kw.pods_by_workload(self.items["pods"], self.workloads)
        self.raw_pods = {(p.get("metadata") or {}).get("name"): p for p in self.items["pods"]}
        self.events = self.items["events"]

    def error(self, *names):
        for name in names:
            if self.errors.get(name):
                return self.errors[name]
        return None

    def is_database(self, workload):
        return workload["app"] in self.s["databases"] or workload["name"] in self.s["databases"]

    def stopped(self, workload):
        """A database workload scaled to 0 replicas: a stopped database, which a scale-up starts."""
        return self.is_database(workload) and workload["replicas"] == 0

    def live_pods(self, workload):
        return [pod for pod in self.pods_of.get(workload["ref"]) or [] if not pod["deleting"]]

    def down(self, workload):
        """Reasons the workload does not serve: no pods, pods not Running and Ready, too few ready replicas."""
        pods = self.live_pods(workload)
        reasons = []
        if self.stopped(workload):
            reasons.append("scaled to 0 replicas")
        if workload["replicas"] and not pods:
            reasons.append("no pod (%d desired)" % workload["replicas"])
        for pod in pods:
            if pod["phase"] != "Running" or not pod["ready"]:
                waiting = [c["waiting_reason"] for c in pod["containers"] if c["waiting_reason"]]
                reasons.append(
                    "%s %s, %s%s"
                    % (
                        pod["name"],
                        pod["phase"] or "no phase",
                        "ready" if pod["ready"] else "not ready",
                        " (%s)" % ", ".join(waiting) if waiting else "",
                    )
                )
        ready = workload["ready_replicas"]
        if not reasons and ready is not None and int(ready or 0) < workload["replicas"]:
            reasons.append("%s/%d replicas ready" % (ready or 0, workload["replicas"]))
        return reasons

    def looping(self, workload):
        """Containers in CrashLoopBackOff, or restarted restart_max times with the last exit recent."""
        found = []
        for pod in self.live_pods(workload):
            for container in pod["containers"]:
                last = container.get("last_terminated") or {}
                recent = (
                    last.get("finished_at") is None
                    or (sa.age_seconds(last.get("finished_at"), self.s.get("now")) or 0)
                    <= self.s["restart_window_seconds"]
                )
                if container["waiting_reason"] == "CrashLoopBackOff" or (
                    container["restarts"] >= self.s["restart_max"] and recent
                ):
                    found.append(
                        {
                            "pod": pod["name"],
                            "container": container["name"],
                            "restarts": container["restarts"],
                            "waiting": container["waiting_reason"],
                            "last_terminated": last.get("reason"),
                            "exit_code": last.get("exit_code"),
                        }
                    )
        return found

    def oom(self, workload):
        """Containers OOM-killed (now or last time), with their memory limit."""
        limits = {c["name"]: c for c in workload["containers"]}
        found = []
        for pod in self.live_pods(workload):
            for container in pod["containers"]:
                if k8s.oom_killed(pod, container["name"]):
                    spec = limits.get(container["name"]) or {}
                    found.append(
                        {
                            "pod": pod["name"],
                            "container": container["name"],
                            "restarts": container["restarts"],
                            "memory_limit": spec.get("memory_limit"),
                            "memory_limit_bytes": spec.get("memory_limit_bytes"),
                        }
                    )
        return found

    def _messages(self, workload):
        """Waiting and termination messages of the workload's containers, and its Warning events' messages."""
        lines = []
        names = {pod["name"] for pod in self.live_pods(workload)}
        for name in sorted(names):
            status = (self.raw_pods.get(name) or {}).get("status") or {}
            for container in status.get("containerStatuses") or []:
                for state in (container.get("state") or {}, container.get("lastState") or {}):
                    for detail in state.values():
                        message = (detail or {}).get("message")
                        if message:
                            lines.extend(str(message).splitlines()[-5:])
        for event in self.events:
            involved = event.get("involvedObject") or {}
            ours = involved.get("name") in names or involved.get("name") == workload["name"]
            if event.get("type") == "Warning" and ours and event.get("message"):
                lines.append(str(event["message"])[:300])
        return lines

    def config(self, workload):
        """``{reasons, lines, setting}`` when a container cannot start on its configuration, else None."""
        reasons = sorted(
            {
                "%s: %s" % (pod["name"], c["waiting_reason"])
                for pod in self.live_pods(workload)
                for c in pod["containers"]
                if c["waiting_reason"] in CONFIG_WAITING
            }
        )
        pattern = re.compile(self.s["config_error_pattern"])
        lines = [
            line
            for line in self._messages(workload)
            if pattern.search(line)
            or "couldn't find key" in line
            or ("not found" in line and ("configmap" in line.lower() or "secret" in line.lower()))
        ]
        if not reasons and not lines:
            return None
        lines = list(dict.fromkeys(lines))
        return {"reasons": reasons, "lines": lines[-5:], "setting": sa._setting_named(lines[-3:])}


def pod_identities(f, workload):
    """``[{name, uid, ready, deleting, images}]``: the workload's pods as the verification tells them apart (a rollout
    replaces them: new uids)."""
    found = []
    for pod in f.pods_of.get(workload["ref"]) or []:
        raw = f.raw_pods.get(pod["name"]) or {}
        found.append(
            {
                "name": pod["name"],
                "uid": (raw.get("metadata") or {}).get("uid"),
                "ready": bool(pod["ready"]) and pod["phase"] == "Running",
                "deleting": pod["deleting"],
                "images": sorted(
                    set(c.get("image") for c in (raw.get("spec") or {}).get("containers") or [] if c.get("image"))
                ),
            }
        )
    return found


def verify_identity(findings, actions):
    """The verification's identity check (``fix.identity``) of the applied actions on workloads: the pods that are
    ready (those a Service sends to) after a rollout restart, a new limit or a rollback are new pods (uids the
    diagnosis did not see), and after a restart or a start they run the images the workload ran before."""
    fixed = [item for item in actions or [] if item.get("status") == "applied" and (item.get("_target") or {})]
    if not fixed:
        return []
    title = "The pods that are ready are the ones the fix started"
    expected = "ready pods of the fixed workload, new after a rollout, with the images it ran before"
    ready_finding = next((item for item in findings if item.get("check") == "k8s.workloads_ready"), None)
    identity = ((ready_finding or {}).get("evidence") or {}).get("identity")
    scenario = fixed[0].get("scenario")
    if identity is None:
        return [unknown("fix.identity", title, expected,
                        {"kind": "other", "message": "the pods after the fix were not read"}, scenario)]
    problems, confirmed, evidence = [], [], {}
    for item in fixed:
        target = item["_target"]
        ref = target["workload"]
        before = target.get("before") or []
        now = identity.get(ref) or []
        ready = [pod for pod in now if pod.get("ready") and not pod.get("deleting")]
        uids = set(pod.get("uid") for pod in before)
        images = set(image for pod in before for image in pod.get("images") or [])
        rolled = item.get("_apply") in ("rollout_restart", "set_memory_limit", "rollback")
        evidence[ref] = {"before": before, "now": now}
        if not ready:
            problems.append("%s: no pod is ready after the fix" % ref)
            continue
        fresh = [pod for pod in ready if pod.get("uid") not in uids]
        if rolled and not fresh:
            problems.append("%s: the ready pods (%s) are those from before the fix: the rollout replaced none"
                            % (ref, ", ".join(pod["name"] for pod in ready)))
            continue
        moved = [pod for pod in fresh if images and item.get("_apply") != "rollback"
                 and not set(pod.get("images") or []) <= images]
        if moved:
            problems.append("%s: %s runs %s; before the fix it ran %s"
                            % (ref, moved[0]["name"], ", ".join(moved[0]["images"]), ", ".join(sorted(images))))
            continue
        confirmed.append(
            "%s: %s" % (ref, ", ".join("%s (%s)" % (pod["name"], pod.get("uid")) for pod in fresh or ready))
        )
    if problems:
        return [finding("fix.identity", title, "problem", "; ".join(problems), expected, evidence, scenario)]
    return [finding("fix.identity", title, "ok", "; ".join(confirmed), expected, evidence)]


def _diagnose_workloads(f):
    state = {}
    if f.error("pods", "deployments", "statefulsets"):
        return state  # nothing is judged down on evidence that could not be read
    for workload in f.workloads:
        row = {
            "down": f.down(workload),
            "looping": f.looping(workload),
            "oom": f.oom(workload),
            "config": f.config(workload),
        }
        causes = []
        if f.is_database(workload) and (row["down"] or row["looping"]):
            causes.append("C")
        if row["oom"]:
            causes.append("B")
        if row["config"]:
            causes.append("D")
        if row["down"] or row["looping"]:
            causes.append("A")
        row["cause"] = min(causes, key=lambda sid: _ORDER[sid]) if causes else None
        state[workload["ref"]] = row
    # a workload that only is not ready (pods Running, no crash loop) while a database is down waits for it
    databases = sorted(w["ref"] for w in f.workloads if f.is_database(w) and state[w["ref"]]["cause"] == "C")
    for workload in f.workloads:
        row = state[workload["ref"]]
        running = all(pod["phase"] == "Running" for pod in f.live_pods(workload)) and f.live_pods(workload)
        if databases and row["cause"] == "A" and not row["looping"] and running:
            row["cause"] = "C"
            row["waits_for"] = databases
    return state


def _scenario(state, refs):
    causes = sorted({state[ref]["cause"] for ref in refs if state[ref]["cause"]}, key=lambda sid: _ORDER[sid])
    return causes[0] if causes else None


def _check(f, state, check, title, expected, key, reads, describe):
    error = f.error(*reads)
    if error:
        return unknown(check, title, expected, error)
    hits = {ref: row[key] for ref, row in state.items() if row[key]}
    if not hits:
        return finding(check, title, "ok", "none of %d workloads" % len(f.workloads), expected)
    observed = "; ".join("%s: %s" % (ref, describe(value)) for ref, value in sorted(hits.items()))
    return finding(check, title, "problem", observed, expected, {"workloads": hits}, _scenario(state, hits))


def check_endpoints(f, state):
    title = "Every Service has ready endpoints"
    expected = "at least one ready address per Service"
    error = f.error("services", "endpoints")
    if error:
        return unknown("k8s.endpoints", title, expected, error)
    summary = kw.endpoints_summary(f.items["services"], f.items["endpoints"])
    empty = kw.endpoints_without_addresses(f.items["services"], f.items["endpoints"])
    missing = [item["service"] for item in summary if not item["found"]]
    evidence = {"empty": empty, "without_endpoints_object": missing, "checked": len(summary) - len(missing)}
    if not empty:
        observed = "%d Services with ready addresses" % (len(summary) - len(missing))
        if missing:
            observed += "; no Endpoints object for %s (judged by their pods)" % ", ".join(missing)
        return finding("k8s.endpoints", title, "ok", observed, expected, evidence)
    refs = [
        w["ref"]
        for w in f.workloads
        for name in empty
        if kw.selects(next(i["selector"] for i in summary if i["service"] == name), w["selector"]) or w["name"] == name
    ]
    observed = "; ".join(
        "%s: 0 ready, %d not ready" % (name, item["not_ready"]) for name, item in sorted(empty.items())
    )
    return finding("k8s.endpoints", title, "problem", observed, expected, evidence, _scenario(state, refs))


def check_events(f):
    title = "No Warning events for the stack's pods and workloads"
    expected = "none"
    error = f.error("events")
    if error:
        return unknown("k8s.warning_events", title, expected, error)
    names = {w["name"] for w in f.workloads} | {pod["name"] for pods in f.pods_of.values() for pod in pods}
    events = k8s.events_summary(f.events, names=names)
    if not events:
        return finding("k8s.warning_events", title, "ok", "none", expected)
    observed = "; ".join("%s %s x%d" % (e["reason"], e["object"], e["count"]) for e in events[:5])
    return finding("k8s.warning_events", title, "warning", observed, expected, {"events": events})


def diagnose(evidence, settings=None, previous=None, applied=()):
    """``{findings, scenarios, escalation, context}`` from the Kubernetes evidence (a verification judges afresh:
    ``previous`` and ``applied`` are not needed)."""
    s = _settings(settings)
    f = Facts(evidence, s)
    state = _diagnose_workloads(f)
    pod_reads = ("pods", "deployments", "statefulsets")
    findings = [
        _check(
            f,
            state,
            "k8s.workloads_ready",
            "Every workload has its pods Running and Ready",
            "all pods Running and Ready",
            "down",
            pod_reads,
            "; ".join,
        ),
        _check(
            f,
            state,
            "k8s.crash_loops",
            "No container is crash-looping",
            "no CrashLoopBackOff, fewer than %d recent restarts" % s["restart_max"],
            "looping",
            pod_reads,
            lambda rows: ", ".join(
                "%s/%s %s (%d restarts, last %s)"
                % (r["pod"], r["container"], r["waiting"] or "restarting", r["restarts"], r["last_terminated"])
                for r in rows
            ),
        ),
        _check(
            f,
            state,
            "k8s.oom_killed",
            "No container was OOM-killed",
            "no OOMKilled",
            "oom",
            pod_reads,
            lambda rows: ", ".join(
                "%s/%s OOMKilled at limit %s" % (r["pod"], r["container"], r["memory_limit"]) for r in rows
            ),
        ),
        check_endpoints(f, state),
        _check(
            f,
            state,
            "k8s.config_errors",
            "Every container starts on its configuration",
            "no configuration error at start",
            "config",
            pod_reads + ("events",),
            lambda row: (
                "; ".join(row["reasons"] + row["lines"][-1:])
                + (" (setting %s)" % row["setting"] if row["setting"] else "")
            ),
        ),
        check_events(f),
    ]
    if previous is not None:
        # after a fix: which pods each workload runs now, for the verification's identity check
        findings[0]["evidence"] = dict(
            findings[0].get("evidence") or {}, identity={w["ref"]: pod_identities(f, w) for w in f.workloads}
        )
    # scenario B is the memory's; a config error that also OOMs is B first (the finding keeps its own scenario)
    for item in findings:
        if item["check"] == "k8s.oom_killed" and item["status"] == "problem":
            item["scenario"] = "B"
        if item["check"] == "k8s.config_errors" and item["status"] == "problem":
            item["scenario"] = "D"
    causes = {ref: row["cause"] for ref, row in state.items() if row["cause"]}
    scenarios = []
    for sid, stitle in SCENARIOS.items():
        mine = sorted(ref for ref, cause in causes.items() if cause == sid)
        if mine:
            reason = "%s: %s" % (stitle.lower(), ", ".join(mine))
        elif any(item["status"] == "unknown" for item in findings):
            reason = "not checked: %s" % ", ".join(item["check"] for item in findings if item["status"] == "unknown")
        else:
            reason = "no workload down for this cause"
        scenarios.append({"id": sid, "title": stitle, "holds": bool(mine), "reason": reason})
    by_ref = {w["ref"]: w for w in f.workloads}
    context = {
        "namespace": s["namespace"],
        "causes": causes,
        "waits_for": {ref: row["waits_for"] for ref, row in state.items() if row.get("waits_for")},
        "workloads": {
            ref: {
                "kind": by_ref[ref]["kind"],
                "name": by_ref[ref]["name"],
                "app": by_ref[ref]["app"],
                "containers": by_ref[ref]["containers"],
                "revision": by_ref[ref]["revision"],
                "rollback": kw.rollback_plan(by_ref[ref], f.items["replicasets"]),
                "oom": state[ref]["oom"],
                "config": state[ref]["config"],
                "stopped": f.stopped(by_ref[ref]),
                "pods": pod_identities(f, by_ref[ref]),
            }
            for ref in causes
        },
        # the emergency restart's workloads (every one, with its replicas) and where its backup's pg_dump runs
        "emergency": {
            "workloads": [{"ref": w["ref"], "kind": w["kind"], "name": w["name"], "app": w["app"],
                           "replicas": w["replicas"]} for w in f.workloads],
            "postgres_pods": sorted(
                (p["name"] for w in f.workloads if w["app"] == "postgres" or w["name"] == "postgres"
                 for p in f.live_pods(w) if p.get("phase") == "Running"),
            ),
        } if s.get("emergency_restart") else None,
        # the workloads an operator may ask to restart (restart_services: octoctl restart SERVICE)
        "restartable": {
            w["ref"]: {"kind": w["kind"], "name": w["name"], "app": w["app"]}
            for w in f.workloads
            if w["app"] in (s.get("restart_services") or []) or w["name"] in (s.get("restart_services") or [])
        },
        # the workload an operator asked to roll back (rollback: octoctl rollback SERVICE [--to-revision N])
        "rollbacks": {
            w["ref"]: {
                "kind": w["kind"],
                "name": w["name"],
                "app": w["app"],
                "revision": w["revision"],
                "history": [item["revision"] for item in kw.revisions(w, f.items["replicasets"])],
                "rollback": kw.rollback_plan(w, f.items["replicasets"], _asked_revision(s)),
                "pods": pod_identities(f, w),
            }
            for w in f.workloads
            if _asked_rollback(s) in (w["app"], w["name"])
        },
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


# --- plan ----------------------------------------------------------------------------------------------------
def _start(ref, workload, waiting, s):
    """Scale a stopped database workload (0 replicas) back up: not disruptive, nothing runs to be interrupted."""
    new = int(s["k8s_database_start_replicas"])
    return action(
        "%s.C.start_%s" % (NAME, _name(workload["name"])),
        "C",
        "start the database %s (scale 0 -> %d), then check the workloads that wait for it" % (ref, new),
        "k8s:%s" % ref,
        dict(
            {
                "workload": ref,
                "kind": workload["kind"],
                "name": workload["name"],
                "namespace": s["namespace"],
                "old": 0,
                "new": new,
                "op": "scale (kubernetes.core.k8s_scale)",
            },
            **({"then_wait": waiting} if waiting else {}),
        ),
        "planned",
        "kubernetes.core.k8s_scale %s 0 -> %d (only while it still has 0), wait for its pods; then %s"
        % (
            ref,
            new,
            "wait until %s ready again" % ", ".join(waiting) if waiting else "the verification judges the rest",
        ),
        apply="scale_up",
    )


def _restart(cause, ref, workload, waiting, s):
    op = "rollout restart (%s)" % k8s.RESTARTED_AT
    if cause == "C":
        title = "rollout restart of the database %s, then check the workloads that wait for it" % ref
        outcome = "%s of %s; then wait until %s ready again" % (op, ref, ", ".join(waiting) or "nothing else is")
    else:
        title = "rollout restart of %s" % ref
        outcome = "%s of %s, then wait for the rollout (service_unavailable_k8s_rollout_timeout)" % (op, ref)
    return action(
        "%s.%s.restart_%s" % (NAME, cause, _name(workload["name"])),
        cause,
        title,
        "k8s:%s" % ref,
        dict(
            {
                "workload": ref,
                "kind": workload["kind"],
                "name": workload["name"],
                "namespace": s["namespace"],
                "op": op,
            },
            **({"then_wait": waiting} if waiting else {}),
        ),
        "planned",
        outcome,
        disruptive=True,
        apply="rollout_restart",
    )


def _raise_memory(ref, workload, s):
    actions = []
    done = set()
    for row in workload["oom"]:
        if row["container"] in done:
            continue
        done.add(row["container"])
        current = row.get("memory_limit_bytes")
        step = dict(
            s,
            memory_step_min=kw.size_bytes(s["memory_step_min"]),
            memory_limit_max=kw.size_bytes(s["memory_limit_max"]),
        )
        new = sa.memory_step(current, None, step) if current else None
        ident = "%s_%s" % (_name(workload["name"]), _name(row["container"]))
        if not new:
            why = (
                "it has no memory limit (the node's memory ran out): set one"
                if not current
                else "it is at the cap service_unavailable_memory_limit_max (%s): find the leak (memory_leaks "
                "procedure) or raise the cap" % s["memory_limit_max"]
            )
            actions.append(
                action(
                    "%s.B.report_memory_%s" % (NAME, ident),
                    "B",
                    "raise the memory limit of %s/%s (not automatic)" % (ref, row["container"]),
                    "k8s:%s" % ref,
                    {"workload": ref, "container": row["container"], "old": row.get("memory_limit")},
                    "report",
                    "L1: %s/%s is OOM-killed at %s; %s"
                    % (ref, row["container"], row.get("memory_limit") or "no limit", why),
                )
            )
            continue
        quantity = kw.memory_quantity(new)
        actions.append(
            action(
                "%s.B.raise_memory_%s" % (NAME, ident),
                "B",
                "raise the memory limit of %s/%s" % (ref, row["container"]),
                "k8s:%s" % ref,
                {
                    "workload": ref,
                    "kind": workload["kind"],
                    "name": workload["name"],
                    "namespace": s["namespace"],
                    "container": row["container"],
                    "key": "spec.template.spec.containers[%s].resources.limits.memory" % row["container"],
                    "old": row.get("memory_limit"),
                    "new": quantity,
                    "patch": kw.memory_limit_patch(row["container"], quantity),
                    "op": "patch (rolls the pods)",
                },
                "planned",
                "memory limit of %s in %s: %s -> %s (x%s, at least +%s, at most %s); the patch rolls the pods"
                % (
                    row["container"],
                    ref,
                    row.get("memory_limit"),
                    quantity,
                    s["memory_step_factor"],
                    human_bytes(step["memory_step_min"]),
                    s["memory_limit_max"],
                ),
                disruptive=True,
                apply="set_memory_limit",
            )
        )
    return actions


def _config(ref, workload, s):
    config = workload.get("config") or {}
    setting = config.get("setting")
    actions = []
    rollback = workload.get("rollback")
    previous = rollback["to_revision"] if rollback else None
    if rollback:
        item = action(
            "%s.D.rollback_%s" % (NAME, _name(workload["name"])),
            "D",
            "roll %s back to revision %s" % (ref, previous),
            "k8s:%s" % ref,
            {
                "workload": ref,
                "kind": workload["kind"],
                "name": workload["name"],
                "namespace": s["namespace"],
                "from_revision": rollback["from_revision"],
                "to_revision": previous,
                "replicaset": rollback["replicaset"],
                "via": rollback["via"],
                "op": "kubectl rollout undo (%s)"
                % (
                    "kubernetes.core.k8s_rollback"
                    if rollback["via"] == "k8s_rollback"
                    else "kubernetes.core.k8s_json_patch: the template of %s" % rollback["replicaset"]
                ),
            },
            "planned",
            "roll %s back from revision %s to %s (the template of ReplicaSet %s)%s"
            % (
                ref,
                rollback["from_revision"],
                previous,
                rollback["replicaset"],
                ""
                if rollback["via"] == "k8s_rollback"
                else "; as a JSON patch because k8s_rollback would choose "
                "among %s by label keys only" % ", ".join(rollback["candidates"]),
            ),
            disruptive=True,
            apply="rollback",
        )
        item["_json_patch"] = rollback["json_patch"]  # internal: the previous template, not in the report
        actions.append(item)
    actions.append(
        action(
            "%s.D.report_config_%s" % (NAME, _name(workload["name"])),
            "D",
            "report the configuration error of %s" % ref,
            "k8s:config:%s" % ref,
            {
                "workload": ref,
                "setting": setting,
                "reasons": config.get("reasons") or [],
                "lines": (config.get("lines") or [])[-3:],
            },
            "report",
            "L1: %s fails at start on its configuration%s; fix it in the ConfigMap/Secret or manifest it reads%s"
            % (
                ref,
                " (setting %s)" % setting
                if setting
                else ": %s" % ((config.get("lines") or config.get("reasons") or ["see the pod's events"])[-1]),
                ", then kubectl rollout restart %s" % ref.lower()
                if previous is None
                else " (the rollback restores the previous revision meanwhile)",
            ),
        )
    )
    return actions


def plan(diagnosis, settings=None):
    """Actions for the workloads that are down, root causes first; gated by approval. The emergency restart: a
    report (``emergency_report``)."""
    s = _settings(settings)
    if s.get("emergency_restart"):
        return emergency_plan(diagnosis.get("context") or {}, s)
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    waits_for = ctx.get("waits_for") or {}
    actions = []
    for ref, cause in sorted((ctx.get("causes") or {}).items(), key=lambda item: (_ORDER[item[1]], item[0])):
        if (forced and cause != forced) or ref in waits_for:
            continue
        workload = (ctx.get("workloads") or {}).get(ref) or {}
        if cause in ("A", "C"):
            waiting = sorted(name for name, needs in waits_for.items() if ref in needs)
            if cause == "C" and workload.get("stopped"):
                actions.append(_start(ref, workload, waiting, s))
            else:
                actions.append(_restart(cause, ref, workload, waiting, s))
        elif cause == "B":
            actions.extend(_raise_memory(ref, workload, s))
        elif cause == "D":
            actions.extend(_config(ref, workload, s))
    actions = actions + _requested_restarts(actions, ctx, s) + _requested_rollback(actions, ctx, s)
    known = dict(ctx.get("rollbacks") or {}, **(ctx.get("workloads") or {}))
    for item in actions:
        ref = (item.get("change") or {}).get("workload")
        if ref in known and item.get("_apply"):
            # the pods before the fix (internal: the verification's identity check)
            item["_target"] = {"workload": ref, "before": (known[ref].get("pods") or [])}
    return gated(actions, s)


def emergency_plan(ctx, s):
    """The seed's complete system restart on Kubernetes: Data Corruption's backup streamed out of a running
    PostgreSQL pod, then each tier scaled to 0 in order (arms, orchestrator, data stores; each only once the backup
    is verified), then every workload scaled back to its replicas in reverse (kubernetes.core.k8s_scale, only while
    it has 0, waiting for its pods). No running PostgreSQL pod: no backup, so a report and nothing else. --volumes
    (the seed's down -v) is not done here: removing PersistentVolumeClaims is a report."""
    found = ctx.get("emergency") or {}
    workloads = found.get("workloads") or []
    pods = found.get("postgres_pods") or []
    tables = list(s.get("emergency_backup_tables") or [])
    if not pods:
        return [action("%s.E.report_no_backup" % NAME, "E", "emergency restart", "stack", {"postgres_pods": []},
                       "report", "no running PostgreSQL pod to take the verified backup in: nothing is scaled down "
                       "(octoctl health shows why; start PostgreSQL first)")]
    exec_in = dict(s["k8s_backup_exec"], namespace=s["namespace"], pod=pods[0])
    actions = [action(
        sa.EMERGENCY_BACKUP, "E", "verified backup of PostgreSQL (pg_dump in pod %s, streamed out) before the restart"
        % pods[0], "backup:postgres:%s" % s.get("database"),
        {"format": "custom", "database": s.get("database"), "directory": s.get("emergency_backup_dir") or None,
         "count_tables": tables, "exec": exec_in},
        "planned", "pg_dump -Fc in the pod from one snapshot, streamed to the controller, verified there",
        disruptive=True, apply="backup_postgres")]
    tiers = []
    for tier in s["emergency_tiers"] or []:
        mine = [w for w in workloads if (w["app"] in tier or w["name"] in tier) and w["replicas"] > 0]
        mine.sort(key=lambda w: tier.index(w["app"] if w["app"] in tier else w["name"]))  # the tier's own order
        if mine:
            tiers.append(mine)
    for index, tier in enumerate(tiers):
        actions.append(action(
            "%s.E.scale_down_%d" % (NAME, index + 1), "E", "scale %s to 0" % ", ".join(w["ref"] for w in tier),
            "stack:tier:%d" % (index + 1),
            {"workloads": [{"kind": w["kind"], "name": w["name"], "old": w["replicas"], "new": 0} for w in tier],
             "namespace": s["namespace"], "after": sa.EMERGENCY_BACKUP},
            "planned", "kubernetes.core.k8s_scale of each to 0 (only from its replicas), once the backup is verified",
            disruptive=True, apply="scale_tier"))
    for tier in reversed(tiers):
        for w in tier:
            actions.append(action(
                "%s.E.scale_up_%s" % (NAME, _name(w["name"])), "E", "scale %s back to %d" % (w["ref"], w["replicas"]),
                "k8s:%s" % w["ref"],
                {"workload": w["ref"], "kind": w["kind"], "name": w["name"], "namespace": s["namespace"], "old": 0,
                 "new": w["replicas"], "op": "scale (kubernetes.core.k8s_scale)"},
                "planned", "kubernetes.core.k8s_scale %s 0 -> %d (only while it has 0), wait for its pods"
                % (w["ref"], w["replicas"]), disruptive=True, apply="scale_up"))
    if s.get("emergency_volumes"):
        actions.append(action("%s.E.remove_data" % NAME, "E", "remove the stack's data", "stack:data", {},
                              "report", "not on Kubernetes: delete the PersistentVolumeClaims yourself, then restore "
                              "the backup (octoctl restore RUN_ID)"))
    return gated(actions, s)


def _requested_restarts(planned, ctx, s):
    """Scenario A's rollout restart of the workload of each service of ``restart_services`` (an operator asked for
    it: octoctl restart SERVICE) that the ``planned`` actions do not touch yet; disruptive."""
    touched = set(item.get("resource") for item in planned)
    found = []
    for service in s.get("restart_services") or []:
        for ref, workload in sorted((ctx.get("restartable") or {}).items()):
            if service in (workload.get("app"), workload.get("name")) and "k8s:%s" % ref not in touched:
                found.append(_restart("A", ref, workload, [], s))
                touched.add("k8s:%s" % ref)
                break
    return found


def _asked_rollback(s):
    return ((s.get("rollback") or {}).get("service")) or None


def _asked_revision(s):
    return int((s.get("rollback") or {}).get("to_revision") or 0) or None


def _requested_rollback(planned, ctx, s):
    """The rollback an operator asked for (``rollback``: ``{service, to_revision}``, 0 the previous revision):
    ``kubectl rollout undo [--to-revision N]`` of the service's Deployment, as scenario D's rollback action does it
    (kubernetes.core.k8s_rollback one revision back when unambiguous, else the named ReplicaSet's template as a
    JSON patch); disruptive. A revision the rollout history does not hold is a report."""
    service = _asked_rollback(s)
    if not service:
        return []
    touched = set(item.get("resource") for item in planned)
    for ref, workload in sorted((ctx.get("rollbacks") or {}).items()):
        if "k8s:%s" % ref in touched:
            return []
        rollback = workload.get("rollback")
        if rollback:
            return [item for item in _config(ref, dict(workload, rollback=rollback), s)
                    if item["id"].startswith("%s.D.rollback_" % NAME)]
        return [action(
            "%s.D.rollback_%s" % (NAME, _name(workload["name"])),
            "D",
            "roll %s back to revision %s" % (ref, _asked_revision(s) or "previous"),
            "k8s:%s" % ref,
            {"workload": ref, "revision": workload.get("revision"), "history": workload.get("history") or []},
            "report",
            "%s is at revision %s; its rollout history holds %s: no %s to roll back to"
            % (ref, workload.get("revision"), ", ".join(str(r) for r in workload.get("history") or []) or "nothing",
               "revision %s" % _asked_revision(s) if _asked_revision(s) else "previous revision"),
        )]
    return [action(
        "%s.D.rollback_%s" % (NAME, _name(service)),
        "D",
        "roll %s back" % service,
        "k8s:%s" % service,
        {"service": service},
        "report",
        "no Deployment of %s found in namespace %s" % (service, s["namespace"]),
    )]


# --- prevention ----------------------------------------------------------------------------------------------
def prevention(evidence, settings=None):
    """The seed's prevention list on Kubernetes: probes, memory limits and requests, a PodDisruptionBudget for
    every workload with more than one replica. Manifest changes: reports (they belong to the manifests)."""
    s = _settings(settings)
    f = Facts(evidence, s)
    checks = [
        (
            "prevent.k8s.probes",
            "Every container has readiness and liveness probes",
            "readinessProbe, livenessProbe",
            lambda w: [c["name"] for c in w["containers"] if not (c["readiness_probe"] and c["liveness_probe"])],
        ),
        (
            "prevent.k8s.memory_limits",
            "Every container has a memory limit",
            "resources.limits.memory",
            lambda w: [c["name"] for c in w["containers"] if not c["memory_limit"]],
        ),
        (
            "prevent.k8s.memory_requests",
            "Every container has a memory request",
            "resources.requests.memory",
            lambda w: [c["name"] for c in w["containers"] if not c["memory_request"]],
        ),
    ]
    findings, actions = [], []
    error = f.error("deployments", "statefulsets")
    for check, title, expected, test in checks:
        if error:
            findings.append(unknown(check, title, expected, error))
            continue
        missing = {w["ref"]: test(w) for w in f.workloads if test(w)}
        if not missing:
            findings.append(finding(check, title, "ok", "all %d workloads" % len(f.workloads), expected))
            continue
        observed = "missing on %s" % "; ".join("%s (%s)" % (ref, ", ".join(c)) for ref, c in sorted(missing.items()))
        findings.append(finding(check, title, "warning", observed, expected, {"workloads": missing}))
        actions.append(
            action(
                "%s.prevent.report_%s" % (NAME, check.rsplit(".", 1)[-1]),
                None,
                "add %s to %s" % (expected, ", ".join(sorted(missing))),
                "k8s:prevent:%s" % expected,
                {"workloads": missing},
                "report",
                "L1: add %s to the containers of %s in the manifests (lab/kubernetes or the cluster's), then apply them"
                % (expected, ", ".join(sorted(missing))),
            )
        )
    title = "Every workload with more than one replica has a PodDisruptionBudget"
    error = error or f.error("pdbs")
    if error:
        findings.append(unknown("prevent.k8s.disruption_budget", title, "a PDB selecting its pods", error))
    else:
        selectors = [((p.get("spec") or {}).get("selector") or {}).get("matchLabels") or {} for p in f.items["pdbs"]]
        missing = sorted(
            w["ref"]
            for w in f.workloads
            if w["replicas"] > 1 and not any(kw.selects(sel, w["selector"]) for sel in selectors)
        )
        findings.append(
            finding(
                "prevent.k8s.disruption_budget",
                title,
                "warning" if missing else "ok",
                "missing on %s" % ", ".join(missing) if missing else "all covered",
                "a PDB selecting its pods",
                {"workloads": missing} if missing else {},
            )
        )
        if missing:
            actions.append(
                action(
                    "%s.prevent.report_disruption_budget" % NAME,
                    None,
                    "add a PodDisruptionBudget for %s" % ", ".join(missing),
                    "k8s:prevent:pdb",
                    {"workloads": missing},
                    "report",
                    "L1: add a PodDisruptionBudget (minAvailable: 1) for %s" % ", ".join(missing),
                )
            )
    return {
        "findings": findings,
        "actions": gated(actions, dict(s, approve=False, allow_disruptive=False)),
        "context": {},
    }
