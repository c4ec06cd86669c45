# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Workload-level views of the Kubernetes evidence, shared by the Kubernetes sides of service_unavailable,
resource_exhaustion and memory_leaks: which pods belong to which Deployment or StatefulSet (by its selector),
each workload's containers and their resources, its rollout history (ReplicaSet revisions), Endpoints readiness,
node conditions and the usage the metrics API (``metrics.k8s.io``) serves.

Pure functions on the objects as the API serves them (the ``kubernetes`` evidence kind of stack_evidence). The
generic pod and event summaries live in ``kubernetes.py``; this module builds on them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import redis_bytes

REVISION = "deployment.kubernetes.io/revision"
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")
_CPU = re.compile(r"^([0-9.]+)(n|u|m)?$")


def reads(evidence, prefix, names):
    """``({name: items}, {name: error})`` of the reads ``<prefix><name>`` of the ``kubernetes`` evidence.

    A read that is missing or failed has an error (``{kind, message}``); a named get that found nothing has no
    items and no error.
    """
    kube = (evidence or {}).get("kubernetes")
    items, errors = {}, {}
    for name in names:
        items[name] = []
        if kube is None:
            errors[name] = {"kind": "other", "message": "kubernetes evidence was not gathered"}
            continue
        read = (kube.get("objects") or {}).get(prefix + name)
        if read is None:
            errors[name] = kube.get("error") or {"kind": "other", "message": "%s%s not read" % (prefix, name)}
            continue
        if read.get("error"):
            error = dict(read["error"])
            error.setdefault("kind", k8s.error_kind(error.get("message")))
            errors[name] = error
        items[name] = list(read.get("items") or [])
    return items, errors


def cpu_millicores(value):
    """A CPU quantity (``500m``, ``1``, ``250000000n``) as millicores (float), or None."""
    if value is None or value == "":
        return None
    match = _CPU.match(str(value).strip())
    if not match:
        return None
    number = float(match.group(1))
    return {None: number * 1000.0, "m": number, "u": number / 1000.0, "n": number / 1000000.0}[match.group(2)]


def memory_quantity(value):
    """Bytes as a Kubernetes memory quantity in whole Mi (rounded up): ``402653184`` -> ``384Mi``."""
    return "%dMi" % int(-(-int(value) // (1024 * 1024)))


def size_bytes(value):
    """Bytes of a role setting given as a Compose-style size (``64m``, ``1g``, bytes) or as a Kubernetes quantity
    (``256Mi``); None otherwise. (A Kubernetes ``64m`` would be 0.064 bytes: settings are sizes first.)"""
    found = redis_bytes(value)
    return found if found is not None else k8s.quantity_bytes(value)


def _container(spec):
    resources = spec.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    return {
        "name": spec.get("name"),
        "memory_limit": limits.get("memory"),
        "memory_limit_bytes": k8s.quantity_bytes(limits.get("memory")),
        "memory_request": requests.get("memory"),
        "cpu_limit": limits.get("cpu"),
        "cpu_limit_m": cpu_millicores(limits.get("cpu")),
        "cpu_request": requests.get("cpu"),
        "readiness_probe": bool(spec.get("readinessProbe")),
        "liveness_probe": bool(spec.get("livenessProbe")),
    }


def workload_summary(obj):
    """A Deployment or StatefulSet: kind, name, app, selector, replicas (desired, ready), revision, containers."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    template = spec.get("template") or {}
    labels = meta.get("labels") or {}
    return {
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "ref": "%s/%s" % (obj.get("kind"), meta.get("name")),
        "app": labels.get("app") or ((template.get("metadata") or {}).get("labels") or {}).get("app"),
        "app_type": labels.get("app-type"),
        "selector": dict((spec.get("selector") or {}).get("matchLabels") or {}),
        "replicas": int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        "ready_replicas": status.get("readyReplicas") if status else None,
        "revision": (meta.get("annotations") or {}).get(REVISION),
        "containers": [_container(item) for item in (template.get("spec") or {}).get("containers") or []],
    }


def workloads(deployments=None, statefulsets=None):
    """The summaries of the Deployments and StatefulSets, sorted by kind then name."""
    found = [workload_summary(obj) for obj in list(deployments or []) + list(statefulsets or [])]
    return sorted(found, key=lambda item: (item["kind"] or "", item["name"] or ""))


def selects(selector, labels):
    """Whether a ``matchLabels`` selector (non-empty) selects an object with ``labels``."""
    return bool(selector) and all((labels or {}).get(key) == value for key, value in selector.items())


def pods_by_workload(pods, workload_list):
    """``{workload ref: [pod summary]}`` and the pods no workload selects (``None`` key)."""
    grouped = {item["ref"]: [] for item in workload_list}
    for pod in pods or []:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        owner = next((item["ref"] for item in workload_list if selects(item["selector"], labels)), None)
        grouped.setdefault(owner, []).append(k8s.pod_summary(pod))
    for ref in grouped:
        grouped[ref].sort(key=lambda item: item["name"] or "")
    return grouped


def revisions(workload, replicasets):
    """The rollout history of a Deployment: ``[{name, revision, replicas}]`` of its ReplicaSets, newest first."""
    found = []
    for rs in replicasets or []:
        meta = rs.get("metadata") or {}
        owners = meta.get("ownerReferences") or []
        owned = any(o.get("kind") == "Deployment" and o.get("name") == workload["name"] for o in owners)
        if not owned and not (not owners and selects(workload["selector"], meta.get("labels"))):
            continue
        revision = (meta.get("annotations") or {}).get(REVISION)
        if revision is None or not str(revision).isdigit():
            continue
        found.append({"name": meta.get("name"), "revision": int(revision),
                      "replicas": int((rs.get("spec") or {}).get("replicas") or 0)})
    return sorted(found, key=lambda item: item["revision"], reverse=True)


def previous_revision(workload, replicasets):
    """``(current, previous)`` revisions when ``kubernetes.core.k8s_rollback`` can go back one (it needs the
    Deployment's revision annotation and a ReplicaSet of revision current - 1); else ``(current, None)``."""
    current = workload.get("revision")
    if workload.get("kind") != "Deployment" or current is None or not str(current).isdigit():
        return current, None
    history = {item["revision"] for item in revisions(workload, replicasets)}
    previous = int(current) - 1
    return int(current), (previous if previous in history else None)


def rollback_plan(workload, replicasets, to_revision=None):
    """How to roll a Deployment back one revision (or to ``to_revision``: ``kubectl rollout undo --to-revision``),
    or None when it has no such revision (nor a previous one).

    ``kubernetes.core.k8s_rollback`` lists the ReplicaSets by the label KEYS of the Deployment's selector (it
    joins the ``matchLabels`` dict, so ``app=orchestrator`` becomes ``app``) and takes the first one of revision
    current - 1: in a namespace where other Deployments' ReplicaSets carry the same keys and revision, it can
    take another workload's template. So ``via`` is ``k8s_rollback`` only when that ReplicaSet is the only
    candidate; otherwise ``json_patch``: the very patch k8s_rollback sends (``/spec/template`` from the right
    ReplicaSet, without its pod-template-hash label, and the revision annotation), built here.
    """
    current, previous = previous_revision(workload, replicasets)
    if to_revision:
        history = {item["revision"] for item in revisions(workload, replicasets)}
        named = int(to_revision)
        previous = named if current is not None and named != int(current) and named in history else None
    if previous is None:
        return None
    keys = set(workload["selector"])
    candidates = [rs for rs in replicasets or []
                  if keys <= set((rs.get("metadata") or {}).get("labels") or {})
                  and str(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION)) == str(previous)]
    own = [rs for rs in candidates
           if any(o.get("kind") == "Deployment" and o.get("name") == workload["name"]
                  for o in (rs.get("metadata") or {}).get("ownerReferences") or [])]
    if not own:
        return None
    target = own[0]
    template = copy.deepcopy((target.get("spec") or {}).get("template") or {})
    ((template.get("metadata") or {}).get("labels") or {}).pop("pod-template-hash", None)
    return {
        "from_revision": current,
        "to_revision": previous,
        "replicaset": target["metadata"]["name"],
        # k8s_rollback goes back one revision only: to a named other one, the JSON patch
        "via": "k8s_rollback" if len(candidates) == 1 and previous == int(current) - 1 else "json_patch",
        "candidates": sorted(rs["metadata"]["name"] for rs in candidates),
        "json_patch": [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": {REVISION: str(previous)}},
        ],
    }


def endpoints_summary(services, endpoints):
    """Per Service with a selector: ready and not-ready addresses of its Endpoints (``found`` False when the
    Endpoints object is not there, e.g. in an API emulator without the endpoints controller)."""
    by_name = {(item.get("metadata") or {}).get("name"): item for item in endpoints or []}
    found = []
    for service in services or []:
        meta = service.get("metadata") or {}
        if not (service.get("spec") or {}).get("selector"):
            continue
        item = by_name.get(meta.get("name"))
        ready = not_ready = 0
        for subset in (item or {}).get("subsets") or []:
            ready += len(subset.get("addresses") or [])
            not_ready += len(subset.get("notReadyAddresses") or [])
        found.append({"service": meta.get("name"), "selector": dict(service["spec"]["selector"]),
                      "found": item is not None, "ready": ready, "not_ready": not_ready})
    return sorted(found, key=lambda item: item["service"] or "")


def endpoints_without_addresses(services, endpoints):
    """``{service: {"ready": 0, "not_ready": n}}`` of the Services whose Endpoints exist but have no ready address."""
    return {item["service"]: {"ready": item["ready"], "not_ready": item["not_ready"]}
            for item in endpoints_summary(services, endpoints) if item["found"] and not item["ready"]}


def node_conditions(nodes):
    """Per node: ready, the pressure conditions that are True, unschedulable."""
    found = []
    for node in nodes or []:
        status = {item.get("type"): item.get("status") for item in (node.get("status") or {}).get("conditions") or []}
        found.append({
            "name": (node.get("metadata") or {}).get("name"),
            "ready": status.get("Ready") == "True",
            "pressure": [kind for kind in PRESSURE_CONDITIONS if status.get(kind) == "True"],
            "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
        })
    return sorted(found, key=lambda item: item["name"] or "")


def pod_usage(metrics):
    """``{pod: {container: {memory_bytes, cpu_m}}}`` from PodMetrics (``metrics.k8s.io/v1beta1``)."""
    usage = {}
    for item in metrics or []:
        name = (item.get("metadata") or {}).get("name")
        usage[name] = {
            container.get("name"): {
                "memory_bytes": k8s.quantity_bytes((container.get("usage") or {}).get("memory")),
                "cpu_m": cpu_millicores((container.get("usage") or {}).get("cpu")),
            }
            for container in item.get("containers") or []
        }
    return usage


def container_usage(pods_of, workload_list, usage):
    """Per container of every pod with metrics: usage against the workload's limits (ratios 0..1, None when the
    container has no such limit)."""
    rows = []
    limits = {item["ref"]: {c["name"]: c for c in item["containers"]} for item in workload_list}
    refs = {item["ref"]: item for item in workload_list}
    for ref, pods in sorted(pods_of.items(), key=lambda item: str(item[0])):
        for pod in pods:
            for name, used in sorted((usage.get(pod["name"]) or {}).items()):
                spec = (limits.get(ref) or {}).get(name) or {}
                memory_limit = spec.get("memory_limit_bytes") or (pod["limits"].get(name) or {}).get("memory_bytes")
                cpu_limit = spec.get("cpu_limit_m")
                rows.append({
                    "workload": ref,
                    "app": (refs.get(ref) or {}).get("app") or pod.get("app"),
                    "pod": pod["name"],
                    "container": name,
                    "node": pod.get("node"),
                    "memory_bytes": used.get("memory_bytes"),
                    "memory_limit_bytes": memory_limit,
                    "memory_ratio": (round(float(used["memory_bytes"]) / memory_limit, 3)
                                     if memory_limit and used.get("memory_bytes") is not None else None),
                    "cpu_m": used.get("cpu_m"),
                    "cpu_limit_m": cpu_limit,
                    "cpu_ratio": (round(float(used["cpu_m"]) / cpu_limit, 3)
                                  if cpu_limit and used.get("cpu_m") is not None else None),
                })
    return rows


def memory_limit_patch(container, memory):
    """The body that sets one container's memory limit in a workload's pod template. Strategic merge (what
    ``kubernetes.core.k8s`` state=patched sends) merges ``containers`` by name, so only that limit changes."""
    return {"spec": {"template": {"spec": {"containers": [
        {"name": container, "resources": {"limits": {"memory": memory}}}]}}}}


def k8s_ref(workload):
    """The action resource of a workload (one action per workload and run)."""
    return "k8s:%s" % workload["ref"]
