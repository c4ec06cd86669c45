"""A Kubernetes API EMULATOR for the Kubernetes tests: kmock's in-memory KubernetesEmulator on a local port.

It speaks the API's wire protocol (discovery, list, get, create, patch, delete) well enough for the kubernetes
client and kubernetes.core's k8s / k8s_info / k8s_scale, and records every request, so a test can assert the body
of every write. It is NOT Kubernetes: no controllers (a Deployment makes no pods, a patch starts no rollout,
``wait:`` never completes), no admission, no RBAC, no strategic merge (patches merge dicts and replace lists);
pod logs only as set_log() stored them; exec only when a test asks (serve_exec()): the command then runs HERE, as
the test says the pod would run it, behind the API's exec protocol (a websocket, v4.channel.k8s.io: stdout on
channel 1, stderr on 2, the exit status on 3). It checks our calls, not Kubernetes' behaviour.

Extended here, because the roles rely on it: list requests honour ``labelSelector`` (equality and set-based
``in``/``notin``/exists) and ``fieldSelector`` (equality on dotted paths, e.g. ``involvedObject.name=redis-0``).

A plain module (not a conftest): pytest puts this folder on sys.path.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
from kmock._internal import rendering

NAMESPACE = "octollm"

# The API resources the lab and the procedures use: (group/version/plural, kind, namespaced, subresources).
RESOURCES: list[tuple[str, str, bool, tuple[str, ...]]] = [
    ("v1/namespaces", "Namespace", False, ()),
    ("v1/nodes", "Node", False, ("status",)),
    ("v1/pods", "Pod", True, ("status", "log", "exec", "eviction")),
    ("v1/services", "Service", True, ("status",)),
    ("v1/endpoints", "Endpoints", True, ()),
    ("v1/events", "Event", True, ()),
    ("v1/configmaps", "ConfigMap", True, ()),
    ("v1/secrets", "Secret", True, ()),
    ("v1/serviceaccounts", "ServiceAccount", True, ()),
    ("v1/persistentvolumeclaims", "PersistentVolumeClaim", True, ()),
    ("apps/v1/deployments", "Deployment", True, ("status", "scale")),
    ("apps/v1/statefulsets", "StatefulSet", True, ("status", "scale")),
    ("apps/v1/replicasets", "ReplicaSet", True, ("status", "scale")),
    ("apps/v1/controllerrevisions", "ControllerRevision", True, ()),
    ("policy/v1/poddisruptionbudgets", "PodDisruptionBudget", True, ("status",)),
    ("autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("status",)),
    ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True, ()),
    ("batch/v1/cronjobs", "CronJob", True, ("status",)),
    ("rbac.authorization.k8s.io/v1/roles", "Role", True, ()),
    ("rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding", True, ()),
    ("rbac.authorization.k8s.io/v1/clusterroles", "ClusterRole", False, ()),
    ("rbac.authorization.k8s.io/v1/clusterrolebindings", "ClusterRoleBinding", False, ()),
]
_BY_KIND = {(path.rsplit("/", 1)[0], kind): (path, namespaced) for path, kind, namespaced, _ in RESOURCES}
_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]


def _selector_terms(selector: str) -> list[str]:
    """Split a label selector on the commas that are not inside an ``in (...)`` set."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return terms


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in _selector_terms(selector):
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = match[1], match[2], {v.strip() for v in match[3].split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
        elif match := re.fullmatch(r"([^!=\s]+)\s*(==|=|!=)\s*(\S*)", term):
            key, op, value = match[1], match[2], match[3]
            if (op == "!=") == (labels.get(key) == value):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_selector_matches(selector: str, obj: dict[str, Any]) -> bool:
    for term in _selector_terms(selector):
        path, op, value = re.fullmatch(r"([^!=]+)(==|=|!=)(.*)", term).groups()  # type: ignore[union-attr]
        node: Any = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if (op == "!=") == ((str(node) if node is not None else "") == value):
            return False
    return True


EXEC_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec$")
# what the test says the pod runs for an exec: (argv, environment) from (namespace, pod, container, command)
ExecRunner = Callable[[str, str, "str | None", list[str]], "tuple[list[str], dict[str, str]]"]


@dataclass
class Exec:
    """One exec the emulator received: where, and the command as the API got it (the query's ``command``s)."""

    namespace: str
    pod: str
    container: str | None
    command: list[str]
    query: dict[str, list[str]]
    exit_code: int | None = None


class _SelectingEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with label and field selectors on lists (kmock 0.8 returns every object), and exec."""

    async def __call__(self, raw_request: Any) -> Any:
        match = EXEC_PATH.match(raw_request.path)
        runner = getattr(self, "exec_runner", None)
        if match and runner is not None and raw_request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._serve_exec(raw_request, match[1], match[2], runner)
        return await super().__call__(raw_request)

    async def _serve_exec(self, raw_request: Any, namespace: str, pod: str, runner: ExecRunner) -> Any:
        """The API's exec: a websocket (v4.channel.k8s.io) whose binary frames carry the channel number first."""
        import aiohttp.web

        query = {key: raw_request.query.getall(key) for key in raw_request.query}
        done = Exec(namespace=namespace, pod=pod, container=(query.get("container") or [None])[0],
                    command=list(query.get("command") or []), query=query)
        self.execs.append(done)
        socket = aiohttp.web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await socket.prepare(raw_request)
        argv, env = runner(namespace, pod, done.container, done.command)
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)

        async def pump(stream: Any, channel: int) -> None:
            while chunk := await stream.read(1 << 16):
                await socket.send_bytes(bytes([channel]) + chunk)

        await asyncio.gather(pump(proc.stdout, 1), pump(proc.stderr, 2))
        done.exit_code = await proc.wait()
        status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        if done.exit_code:
            status = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                      "message": f"command terminated with non-zero exit code: {done.exit_code}",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(done.exit_code)}]}}
        await socket.send_bytes(bytes([3]) + json.dumps(status).encode())
        await socket.close()
        return socket

    async def _serve_list(self, request: rendering.Request) -> Any:
        listing: Any = await super()._serve_list(request)
        assert request.resource is not None  # a list is always of a resource
        labels, fields = request.params.get("labelSelector"), request.params.get("fieldSelector")
        items: list[Any] = listing["items"]
        if labels:
            items = [i for i in items if label_selector_matches(labels, i.get("metadata", {}).get("labels") or {})]
        if fields:
            items = [i for i in items if field_selector_matches(fields, i)]
        kind = self.resources[request.resource].kind if request.resource in self.resources else None
        group, version = request.resource.group, request.resource.version
        return {**listing, "items": items, "kind": f"{kind}List" if kind else "List",
                "apiVersion": f"{group}/{version}" if group else version}

    # pod logs (GET .../pods/{name}/log), as text: what KubernetesAPIEmulator.set_log stored, else 404
    async def _serve_fetch(self, request: rendering.Request) -> Any:
        if request.subresource == "log" and request.name is not None:
            key = (request.namespace, request.name)
            if key not in getattr(self, "pod_logs", {}):
                from kmock import KubernetesObjectNotFoundError
                raise KubernetesObjectNotFoundError()
            return self.pod_logs[key].encode()
        return await super()._serve_fetch(request)


@dataclass
class Write:
    """One write the emulator received: method, API path and decoded body."""

    method: str
    path: str
    content_type: str
    body: Any
    name: str | None
    subresource: str | None


class KubernetesAPIEmulator:
    """The emulator served on 127.0.0.1 in a background thread, with helpers to seed and inspect it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="k8s-api-emulator", daemon=True)
        self.handler: Any = None
        self.url = ""

    # -- life cycle --------------------------------------------------------------------------------------------
    def start(self) -> KubernetesAPIEmulator:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Kubernetes API emulator did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with _SelectingEmulator() as handler, kmock.Server(handler) as server:
            self.handler = handler
            for path, kind, namespaced, subresources in RESOURCES:
                handler.resources[path] = kmock.ResourceInfo(
                    kind=kind, namespaced=namespaced, singular=kind.lower(), verbs=_VERBS, subresources=subresources)
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def kubeconfig(self, path: Path, context: str = "octollm-emulator") -> Path:
        """Write a kubeconfig whose context points at the emulator (plain HTTP, no credentials)."""
        import yaml

        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "octoctl", "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": "emulator", "user": "octoctl",
                                                       "namespace": NAMESPACE}}],
        }))
        return path

    # -- objects -----------------------------------------------------------------------------------------------
    @staticmethod
    def resource_of(obj: dict[str, Any]) -> tuple[str, bool]:
        key = (obj["apiVersion"], obj["kind"])
        if key not in _BY_KIND:
            raise KeyError(f"the emulator does not serve {key}: add it to RESOURCES")
        return _BY_KIND[key]

    def seed(self, objects: Iterable[dict[str, Any]]) -> None:
        """Store objects as they are (status included), as if a cluster held them."""
        for obj in objects:
            path, namespaced = self.resource_of(obj)
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if namespaced:
                meta.setdefault("namespace", NAMESPACE)
            meta.setdefault("uid", f"uid-{obj['kind'].lower()}-{meta['name']}")
            meta.setdefault("resourceVersion", "1")
            meta.setdefault("creationTimestamp", "2026-11-28T09:00:00Z")
            self.handler.objects[path, meta.get("namespace") if namespaced else None, meta["name"]] = obj

    def get(self, path: str, name: str, namespace: str | None = NAMESPACE) -> dict[str, Any]:
        return copy.deepcopy(dict(self.handler.objects[path, namespace, name].raw))

    def objects_of(self, path: str, label: str | None = None) -> list[dict[str, Any]]:
        """The stored objects of a resource (``group/version/plural``), of one ``key=value`` label when given."""
        found = []
        for (resource, _namespace, _name), obj in list(self.handler.objects.items()):
            if obj.deleted or f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/") != path:
                continue
            raw = copy.deepcopy(dict(obj.raw))
            labels = raw.get("metadata", {}).get("labels") or {}
            if label is None or label_selector_matches(label, labels):
                found.append(raw)
        return found

    def serve_exec(self, runner: ExecRunner) -> None:
        """Serve exec from now on: ``runner(namespace, pod, container, command)`` gives the argv and environment to
        run here as that pod would; its output and exit status go back through the API's exec protocol."""
        self.handler.execs = []
        self.handler.exec_runner = runner

    def execs(self) -> list[Exec]:
        """The execs served so far, in order."""
        return list(getattr(self.handler, "execs", []))

    def set_log(self, pod: str, text: str, namespace: str | None = NAMESPACE) -> None:
        """The log that GET .../pods/{pod}/log serves (text; every query option ignored)."""
        if not hasattr(self.handler, "pod_logs"):
            self.handler.pod_logs = {}
        self.handler.pod_logs[namespace, pod] = text

    def writes(self) -> list[Write]:
        """Every request that could change something (POST, PUT, PATCH, DELETE), in order."""
        found = []
        for request in list(self.handler._requests):
            method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                found.append(Write(method=method, path=request.url.path,
                                   content_type=request.headers.get("Content-Type", ""),
                                   body=request.data, name=request.name, subresource=request.subresource))
        return found

    def reads(self) -> list[str]:
        """The paths (with query) of the GET requests, in order."""
        return [str(r.url.path_qs) for r in list(self.handler._requests)
                if str(getattr(r.method, "value", r.method)).upper() == "GET"]

    def serve_metrics(self, usage: dict[str, dict[str, dict[str, str]]], namespace: str = NAMESPACE) -> None:
        """Serve the metrics API (metrics.k8s.io/v1beta1, as metrics-server does; not served unless called) with
        PodMetrics ``{pod: {container: {"cpu": "950m", "memory": "200Mi"}}}``."""
        for plural, kind, namespaced in (("pods", "PodMetrics", True), ("nodes", "NodeMetrics", False)):
            self.handler.resources[f"metrics.k8s.io/v1beta1/{plural}"] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, singular=kind.lower(), verbs=["get", "list"], subresources=())
        for pod, containers in usage.items():
            self.handler.objects["metrics.k8s.io/v1beta1/pods", namespace, pod] = {
                "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
                "metadata": {"name": pod, "namespace": namespace}, "timestamp": "2026-11-28T10:00:00Z",
                "window": "15s", "containers": [{"name": name, "usage": dict(values)}
                                                for name, values in containers.items()]}
