# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What every procedure's Kubernetes side shares: pod states, events, quantities, config text edits.

Input is what ``kubernetes.core.k8s_info`` returns (``resources``: the objects as the API serves them). The
summaries keep what a diagnosis needs (phase, readiness, restarts, the waiting reason such as
``CrashLoopBackOff``, the last termination such as ``OOMKilled``) and never a container's environment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_FACTORS = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "m": 0.001,
}


def quantity_bytes(value):
    """A Kubernetes quantity (``256Mi``, ``1G``, ``512000``) as a number of bytes; None when absent or invalid."""
    if value is None or value == "":
        return None
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _FACTORS:
        return None
    return int(float(match.group(1)) * _FACTORS[match.group(2)])


def _container_status(status):
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    waiting = (state.get("waiting") or {}).get("reason")
    terminated = (state.get("terminated") or {}).get("reason")
    item = {
        "name": status.get("name"),
        "ready": bool(status.get("ready")),
        "restarts": int(status.get("restartCount") or 0),
        "state": "waiting" if "waiting" in state else "terminated" if "terminated" in state else "running",
        "waiting_reason": waiting,
        "terminated_reason": terminated,
    }
    if last:
        item["last_terminated"] = {
            "reason": last.get("reason"),
            "exit_code": last.get("exitCode"),
            "finished_at": last.get("finishedAt"),
        }
    return item


def pod_summary(pod):
    """One pod: name, app label, phase, ready, restarts, per-container state and last termination, node."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    containers = [_container_status(item) for item in status.get("containerStatuses") or []]
    conditions = {item.get("type"): item.get("status") for item in status.get("conditions") or []}
    limits = {}
    for container in spec.get("containers") or []:
        memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        limits[container.get("name")] = {"memory": memory, "memory_bytes": quantity_bytes(memory)}
    return {
        "name": meta.get("name"),
        "app": (meta.get("labels") or {}).get("app"),
        "phase": status.get("phase"),
        "ready": conditions.get("Ready") == "True",
        "restarts": sum(item["restarts"] for item in containers),
        "containers": containers,
        "limits": limits,
        "node": spec.get("nodeName"),
        "deleting": bool(meta.get("deletionTimestamp")),
        "template_hash": (meta.get("labels") or {}).get("pod-template-hash"),
    }


def pods_summary(pods, app=None):
    """The summaries of the pods (of one ``app`` label when given), sorted by name."""
    found = [pod_summary(pod) for pod in pods or []]
    if app is not None:
        found = [item for item in found if item["app"] == app]
    return sorted(found, key=lambda item: item["name"] or "")


def pod_trouble(summary):
    """Reasons a pod is unhealthy: not ready, a waiting reason (CrashLoopBackOff...), OOMKilled, restarts."""
    reasons = []
    if summary["phase"] != "Running" or not summary["ready"]:
        reasons.append("%s, %s" % (summary["phase"] or "no phase", "ready" if summary["ready"] else "not ready"))
    for container in summary["containers"]:
        if container["waiting_reason"]:
            reasons.append("%s: %s" % (container["name"], container["waiting_reason"]))
        last = (container.get("last_terminated") or {}).get("reason")
        if last and container["restarts"]:
            reasons.append("%s: last terminated %s (%d restarts)" % (container["name"], last, container["restarts"]))
    return reasons


def oom_killed(summary, container=None):
    """Whether a container (or any) of the pod was OOMKilled: its current or last termination."""
    for item in summary["containers"]:
        if container and item["name"] != container:
            continue
        if item["terminated_reason"] == "OOMKilled" or (item.get("last_terminated") or {}).get("reason") == "OOMKilled":
            return True
    return False


def events_summary(events, names=None, limit=10):
    """Warning events (of the objects in ``names`` when given), newest first: reason, object, count, message."""
    found = []
    for event in events or []:
        involved = event.get("involvedObject") or {}
        if event.get("type") != "Warning":
            continue
        if names is not None and involved.get("name") not in names:
            continue
        found.append(
            {
                "reason": event.get("reason"),
                "object": "%s/%s" % (involved.get("kind"), involved.get("name")),
                "count": int(event.get("count") or 1),
                "last": event.get("lastTimestamp") or event.get("eventTime"),
                "message": (event.get("message") or "")[:200],
            }
        )
    found.sort(key=lambda item: item["last"] or "", reverse=True)
    return found[:limit]


def config_directives(text, keys=None):
    """``{directive: value}`` of a redis.conf-like text (first word, the rest); secret directives never."""
    values = {}
    for line in (text or "").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split(None, 1)
        key = parts[0].lower()
        if key in ("requirepass", "masterauth", "user"):
            continue
        if keys is None or key in keys:
            values[key] = parts[1].strip().strip('"') if len(parts) > 1 else ""
    return values


def config_set(text, key, value):
    """The text with directive ``key`` set to ``value``: the first such line replaced (the others dropped), or
    the line appended. Only that directive changes."""
    lines = (text or "").splitlines()
    pattern = re.compile(r"^\s*%s(\s|$)" % re.escape(key), re.IGNORECASE)
    out, done = [], False
    for line in lines:
        if pattern.match(line):
            if not done:
                out.append("%s %s" % (key, value))
                done = True
            continue
        out.append(line)
    if not done:
        out.append("%s %s" % (key, value))
    return "\n".join(out) + "\n"


def restart_patch(timestamp):
    """The body of a rollout restart (what ``kubectl rollout restart`` sends): the pod template's annotation."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: timestamp}}}}}


def error_kind(message):
    """The contract's error kind of a failed Kubernetes API call, from its message."""
    text = (message or "").lower()
    if any(word in text for word in ("401", "403", "unauthorized", "forbidden")):
        return "auth"
    if any(word in text for word in ("connection refused", "max retries", "failed to establish", "name or service")):
        return "unreachable"
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if "no module named" in text or "failed to import" in text or "requires the kubernetes" in text:
        return "missing_tool"
    return "other"


def named_reads(evidence, prefix, names):
    """The reads ``<prefix><name>`` of the ``kubernetes`` evidence as ``{name: {items, error, log}}``: ``error``
    (``{kind, message}``) when the read or the whole API failed, ``log`` when the read asked for pod logs."""
    kube = (evidence or {}).get("kubernetes")
    reads = (kube or {}).get("objects") or {}
    out = {}
    for name in names:
        read = reads.get(prefix + name)
        if kube is None:
            error = {"kind": "other", "message": "kubernetes evidence was not gathered"}
        elif read is None:
            error = kube.get("error") or {"kind": "other", "message": "%s%s not read" % (prefix, name)}
        else:
            error = read.get("error")
        if error:
            error = {"kind": error.get("kind") or error_kind(error.get("message")), "message": error.get("message", "")}
        out[name] = {"items": list((read or {}).get("items") or []), "error": error, "log": (read or {}).get("log")}
    return out


def reads_as_facts(evidence, prefix, names, lists):
    """:func:`named_reads` as ``{name: its items (for a name in lists), its one object or None}`` plus ``errors``
    ``{name: {kind, message}}`` for the reads that failed (a failed read still gives what it returned)."""
    reads = named_reads(evidence, prefix, names)
    out = {name: read["items"] if name in lists else (read["items"][0] if read["items"] else None)
           for name, read in reads.items()}
    out["errors"] = {name: read["error"] for name, read in reads.items() if read["error"]}
    return out


def workload_state(workload, pods, endpoints=None):
    """Whether a Deployment/StatefulSet serves: desired and ready replicas (its status, else its pods), ready pods,
    ready Endpoints addresses (None without an Endpoints object) and the reasons it does not serve (``down``)."""
    spec = (workload or {}).get("spec") or {}
    status = (workload or {}).get("status") or {}
    desired = int(spec.get("replicas", 1)) if workload else 0
    summaries = sorted((pod_summary(pod) for pod in pods or []), key=lambda item: item["name"] or "")
    ready_pods = [item["name"] for item in summaries if item["ready"] and not item["deleting"]]
    ready_replicas = int(status.get("readyReplicas") or 0) if status else None
    addresses = None
    if endpoints is not None:
        addresses = sum(len(subset.get("addresses") or []) for subset in endpoints.get("subsets") or [])
    reasons = []
    if not workload:
        reasons.append("no workload")
    elif desired == 0:
        reasons.append("scaled to 0 replicas")
    if workload and desired and ready_replicas == 0:
        reasons.append("0/%d ready replicas" % desired)
    if workload and desired and not ready_pods:
        reasons.append("no ready pod")
    if addresses == 0:
        reasons.append("Endpoints without ready addresses")
    troubled = {item["name"]: pod_trouble(item) for item in summaries if pod_trouble(item)}
    for name, trouble in sorted(troubled.items()):
        reasons.extend("%s: %s" % (name, reason) for reason in trouble if "CrashLoopBackOff" in reason)
    return {
        "desired": desired,
        "ready_replicas": ready_replicas,
        "ready_pods": ready_pods,
        "endpoints_ready": addresses,
        "pods": summaries,
        "trouble": troubled,
        "down": bool(not workload or desired == 0 or ready_replicas == 0 or not ready_pods or addresses == 0),
        "reasons": reasons,
    }
