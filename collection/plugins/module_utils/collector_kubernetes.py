# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ``kubernetes`` evidence kind: named reads of the Kubernetes API, run concurrently in one task.

Each entry of ``objects`` is one list (or one get, with ``name``) of a kind in the namespace: pods by label,
the events of a type, a ConfigMap, a Deployment. One client and one API discovery serve them all, so a
procedure pays one module start for every read (kubernetes.core's ``k8s_info`` costs one module start per read).
Uses the ``kubernetes`` Python client (the same one kubernetes.core needs) and the kubeconfig, context or host
given, with the kubeconfig's credentials or ``K8S_AUTH_API_KEY``. Reads only.

Returned per read: ``items`` (the objects as the API serves them, Secrets never: their ``data`` is dropped)
or ``error`` ``{kind, message}`` (a read that fails is evidence; the others still return).

Option ``logs`` of a read of pods (``{container, tail, since_seconds, previous, patterns, redact,
line_max_chars}``): the read also returns ``log``, the pods' logs as the containers collector returns a
service's (``pods``, ``lines`` with PII masked, ``pattern_counts`` of the named regexes over the raw lines,
``lines_scanned``, ``redactions`` by kind, ``truncated``, ``error``, ``errors`` by pod). Reads without it are
unchanged.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import os
import re
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.octollm.remediation.plugins.module_utils.evidence import (
    Collector,
    CollectorError,
    error_of,
    register,
    remaining,
)
from ansible_collections.octollm.remediation.plugins.module_utils.redact import (
    DEFAULT_PII,
    redact_pii,
    validate_kinds,
)

_DISCOVERY_LOCK = threading.Lock()

OBJECT_OPTIONS = dict(
    kind=dict(type="str", required=True),
    api_version=dict(type="str", default="v1"),
    name=dict(type="str"),
    label_selector=dict(type="str"),
    field_selector=dict(type="str"),
    namespaced=dict(type="bool", default=True),
)


def _classify_api(exc):
    """Error kinds of the kubernetes client's exceptions (ApiException carries the HTTP status)."""
    status = getattr(exc, "status", None)
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "other"
    return None


def _connection_kind(exc):
    """The error kind of a failure to reach the API at all (urllib3 wraps refusals in MaxRetryError)."""
    kind = _classify_api(exc)
    if kind:
        return kind
    text = "%s %s" % (type(exc).__name__, exc)
    if any(word in text for word in ("NewConnectionError", "Connection refused", "Name or service not known",
                                     "Failed to resolve", "No route to host")):
        return "unreachable"
    if "timed out" in text.lower() or "Timeout" in text:
        return "timeout"
    return error_of(exc)["kind"]


def _plain(item):
    """An API object as a plain dict, a Secret without its data."""
    obj = item.to_dict() if hasattr(item, "to_dict") else dict(item)
    if obj.get("kind") == "Secret":
        obj.pop("data", None)
        obj.pop("stringData", None)
    return obj


@register
class KubernetesCollector(Collector):
    kind = "kubernetes"
    SECRETS = ("api_key",)
    OPTIONS = dict(
        kubeconfig=dict(type="path"),
        context=dict(type="str"),
        host=dict(type="str"),
        api_key=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        namespace=dict(type="str", default="octollm"),
        objects=dict(type="dict", default={}),
        timeout=dict(type="float", default=10.0),
    )

    def _opt(self, name):
        value = self.options.get(name)
        return self.OPTIONS[name].get("default") if value is None else value

    def _client(self):
        try:
            from kubernetes import client, config
            from kubernetes.dynamic import DynamicClient
        except ImportError as exc:
            raise CollectorError("missing_tool", "the kubernetes Python client is not installed: %s" % exc) from exc
        api_key = self._opt("api_key") or os.environ.get("K8S_AUTH_API_KEY")
        host = self._opt("host")
        if host and api_key:
            configuration = client.Configuration()
            configuration.host = host
            configuration.api_key = {"authorization": "Bearer %s" % api_key}
        else:
            configuration = client.Configuration()
            kubeconfig = self._opt("kubeconfig") or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
            config.load_kube_config(config_file=kubeconfig, context=self._opt("context") or None,
                                    client_configuration=configuration)
            if host:
                configuration.host = host
        configuration.verify_ssl = bool(self._opt("validate_certs"))
        configuration.retries = 1  # a down API server is evidence, found out quickly
        # discovery of this run only: the client's default cache file (per API address, kept for minutes in the temp
        # dir) would answer with the APIs of an earlier run - a metrics API since removed reads as a failed request
        cache_dir = tempfile.mkdtemp(prefix="octollm-k8s-discovery-")
        atexit.register(shutil.rmtree, cache_dir, True)
        try:
            return DynamicClient(client.ApiClient(configuration), cache_file=os.path.join(cache_dir, "discovery.json"))
        except Exception as exc:
            raise CollectorError(_connection_kind(exc), error_of(exc, self.secrets())["message"]) from exc

    def _read(self, dynamic, spec, deadline):
        spec = dict(spec)
        for option, rules in OBJECT_OPTIONS.items():
            if spec.get(option) is None and "default" in rules:
                spec[option] = rules["default"]
        if not spec.get("kind"):
            raise CollectorError("other", "a kubernetes read needs a kind")
        # one lookup at a time: a kind the API does not serve (metrics.k8s.io without metrics-server) makes the
        # dynamic client invalidate and rebuild its discovery cache, which concurrent lookups would see half-built
        with _DISCOVERY_LOCK:
            resource = dynamic.resources.get(api_version=spec["api_version"], kind=spec["kind"])
        kwargs = {"_request_timeout": min(float(self._opt("timeout")), remaining(deadline))}
        if resource.namespaced and spec.get("namespaced", True):
            kwargs["namespace"] = self._opt("namespace")
        if spec.get("name"):
            kwargs["name"] = spec["name"]
        if spec.get("label_selector"):
            kwargs["label_selector"] = spec["label_selector"]
        if spec.get("field_selector"):
            kwargs["field_selector"] = spec["field_selector"]
        answer = resource.get(**kwargs)
        if spec.get("name"):
            return [_plain(answer)]
        return [_plain(item) for item in (answer.items or [])]

    def _read_logs(self, dynamic, spec, pods, deadline):
        """The logs of ``pods`` (option ``logs`` of a read): masked lines, named pattern counts, redactions."""
        from kubernetes import client

        logs = spec.get("logs") or {}
        kinds = validate_kinds(logs.get("redact", list(DEFAULT_PII)))
        try:
            named = {key: re.compile(regex) for key, regex in (logs.get("patterns") or {}).items()}
        except re.error as exc:
            raise CollectorError("other", "invalid log pattern: %s" % exc) from exc
        cap = max(40, int(logs.get("line_max_chars") or 400))
        core = client.CoreV1Api(dynamic.client)
        names = sorted(name for name in ((pod.get("metadata") or {}).get("name") for pod in pods) if name)
        entry = {"pods": names, "lines": [], "pattern_counts": {key: 0 for key in named}, "lines_scanned": 0,
                 "redactions": {}, "truncated": False, "error": None, "errors": {}}
        for name in names:
            kwargs = {"_request_timeout": min(float(self._opt("timeout")), remaining(deadline)),
                      "_preload_content": False}
            if logs.get("container"):
                kwargs["container"] = logs["container"]
            if logs.get("tail"):
                kwargs["tail_lines"] = int(logs["tail"])
            if logs.get("since_seconds"):
                kwargs["since_seconds"] = int(logs["since_seconds"])
            if logs.get("previous"):
                kwargs["previous"] = True
            try:
                raw = core.read_namespaced_pod_log(name, self._opt("namespace"), **kwargs).data
            except Exception as exc:  # one pod's log that cannot be read is evidence
                error = error_of(exc, self.secrets())
                error["kind"] = _classify_api(exc) or error["kind"]
                entry["errors"][name] = error
                continue
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            prefix = "%s | " % name if len(names) > 1 else ""
            for line in text.splitlines():
                if not line.strip():
                    continue
                entry["lines_scanned"] += 1
                for key, regex in named.items():
                    if regex.search(line):
                        entry["pattern_counts"][key] += 1
                clean = redact_pii(line, kinds, entry["redactions"])[0]
                if len(clean) > cap:
                    clean = clean[: cap - 3] + "..."
                    entry["truncated"] = True
                entry["lines"].append(prefix + clean)
        if names and len(entry["errors"]) == len(names):
            entry["error"] = entry["errors"][names[0]]
        elif not names:
            entry["error"] = {"kind": "other", "message": "no pod to read logs from"}
        return entry

    def collect(self, deadline):
        objects = self._opt("objects") or {}
        dynamic = self._client()
        reads = {}

        def one(name, spec):
            try:
                items = self._read(dynamic, spec, deadline)
                if spec.get("logs") is not None:  # the option: the listed pods' logs as well
                    return name, {"items": items, "log": self._read_logs(dynamic, spec, items, deadline)}
                return name, {"items": items}
            except Exception as exc:  # one failed read is evidence; the others still return
                error = error_of(exc, self.secrets())
                if isinstance(exc, CollectorError):
                    return name, {"items": [], "error": error}
                kind = _classify_api(exc)
                if getattr(exc, "status", None) == 404 and spec.get("name"):
                    return name, {"items": [], "not_found": True}
                if kind:
                    error["kind"] = kind
                return name, {"items": [], "error": error}

        if objects:
            pool = ThreadPoolExecutor(max_workers=min(8, len(objects)))
            try:
                for name, result in pool.map(lambda item: one(*item), sorted(objects.items())):
                    reads[name] = result
            finally:
                pool.shutdown(wait=False)
        failed = [name for name, result in reads.items() if result.get("error")]
        if objects and len(failed) == len(objects):
            first = reads[failed[0]]["error"]
            return {"ok": False, "error": first, "objects": reads, "namespace": self._opt("namespace")}
        return {"objects": reads, "namespace": self._opt("namespace")}
