"""lab/kubernetes as objects: ``kubectl kustomize`` when a kubectl with kustomize is installed, else a small loader
that does what this kustomization uses (resources list, namespace, labels without selectors, image tags).

A plain module (not a conftest): pytest puts this folder on sys.path.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZATION = REPO / "lab" / "kubernetes"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "Node", "PersistentVolume"}


def key(obj: dict[str, Any]) -> tuple[str, str | None, str]:
    return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]


def render_python(root: Path = KUSTOMIZATION) -> list[dict[str, Any]]:
    """The kustomization rendered in Python: only the features lab/kubernetes uses (others raise)."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    supported = {"apiVersion", "kind", "namespace", "labels", "images", "resources"}
    unsupported = set(kustomization) - supported
    if unsupported:
        raise NotImplementedError(f"the python loader does not render {sorted(unsupported)}: use kubectl kustomize")
    objects = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((root / name).read_text()):
            if doc:
                objects.append(doc)
    namespace = kustomization.get("namespace")
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if namespace and obj["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = namespace
        for group in kustomization.get("labels") or []:
            if group.get("includeSelectors") or group.get("includeTemplates"):
                raise NotImplementedError("labels with selectors/templates: use kubectl kustomize")
            meta.setdefault("labels", {}).update(group["pairs"])
        for image in kustomization.get("images") or []:
            for container in _containers(obj):
                repo = container["image"].split(":", 1)[0]
                if repo == image["name"]:
                    container["image"] = f"{image.get('newName', repo)}:{image['newTag']}"
    return objects


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or (spec if obj["kind"] == "Pod" else {})
    return list(pod.get("containers") or []) + list(pod.get("initContainers") or [])


def kubectl_kustomize() -> str | None:
    """The kubectl that can render a kustomization offline, if any."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    probe = subprocess.run([kubectl, "kustomize", "--help"], capture_output=True, timeout=20)
    return kubectl if probe.returncode == 0 else None


def render_kubectl(root: Path = KUSTOMIZATION) -> list[dict[str, Any]]:
    kubectl = kubectl_kustomize()
    assert kubectl, "no kubectl with kustomize"
    out = subprocess.run([kubectl, "kustomize", str(root)], capture_output=True, text=True, timeout=60, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def render() -> list[dict[str, Any]]:
    return render_kubectl() if kubectl_kustomize() else render_python()


# --- what a cluster would hold once the manifests ran ----------------------------------------------------------
def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server stores it: a Secret's stringData becomes base64 data."""
    obj = copy.deepcopy(obj)
    if obj["kind"] == "Secret" and "stringData" in obj:
        data = obj.setdefault("data", {})
        for name, value in obj.pop("stringData").items():
            data[name] = base64.b64encode(value.encode()).decode()
    return obj


def running_pods(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods (and the ReplicaSet of a Deployment) that the controllers would have made, all Running and Ready."""
    meta, spec = workload["metadata"], workload["spec"]
    template = copy.deepcopy(spec["template"])
    replicas = int(spec.get("replicas", 1))
    made: list[dict[str, Any]] = []
    owner: dict[str, Any]
    if workload["kind"] == "Deployment":
        pod_hash = _hash(yaml.safe_dump(template))
        rs_name = f"{meta['name']}-{pod_hash}"
        made.append({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": meta["namespace"],
                         "labels": {**template["metadata"]["labels"], "pod-template-hash": pod_hash},
                         "annotations": {"deployment.kubernetes.io/revision": "1"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                              "uid": f"uid-deployment-{meta['name']}", "controller": True}]},
            "spec": {"replicas": replicas, "selector": spec["selector"], "template": template},
            "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
        })
        names = [f"{rs_name}-{_hash(rs_name + str(i))[:5]}" for i in range(replicas)]
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name, "uid": f"uid-replicaset-{rs_name}",
                 "controller": True}
        extra_labels = {"pod-template-hash": pod_hash}
    else:
        names = [f"{meta['name']}-{i}" for i in range(replicas)]
        owner = {"apiVersion": "apps/v1", "kind": workload["kind"], "name": meta["name"],
                 "uid": f"uid-{workload['kind'].lower()}-{meta['name']}", "controller": True}
        extra_labels = {}
    for index, name in enumerate(names):
        containers = template["spec"]["containers"]
        made.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": meta["namespace"],
                         "labels": {**template["metadata"]["labels"], **extra_labels},
                         "ownerReferences": [owner]},
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": f"node-{index % 2 + 1}"},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
                "containerStatuses": [
                    {"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"],
                     "state": {"running": {"startedAt": "2026-11-28T09:00:05Z"}}} for c in containers],
            },
        })
    return made


def cluster_state(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifests as stored objects plus the pods, ReplicaSets and nodes a healthy cluster would show."""
    objects = [as_stored(obj) for obj in manifests]
    for obj in manifests:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            objects.extend(running_pods(obj))
    for index in (1, 2):
        objects.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{index}"},
                        "status": {"conditions": [{"type": "Ready", "status": "True"},
                                                  {"type": "MemoryPressure", "status": "False"},
                                                  {"type": "DiskPressure", "status": "False"}]}})
    return objects
