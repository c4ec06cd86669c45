# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ``http`` evidence kind: named HTTP probes run concurrently (standard library only).

Each probe reports its status, time, a bounded body (parsed when it is JSON) and the response headers asked
for (``x-ratelimit-*``, ``retry-after``... globs allowed). A service that does not answer is evidence about
that service, not a failure of the kind: the kind stays ``ok`` and each failing probe carries
``error: {kind, message}`` (connection refused -> ``unreachable``, 401/403 -> ``auth``, a time-out ->
``timeout``, any other unexpected status -> ``other``).

Header values are secrets: the ``headers`` of a probe and the named ``header_sets`` are ``no_log``; their
values are removed from bodies and messages, and request headers are never echoed back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import json
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from ansible_collections.octollm.remediation.plugins.module_utils.evidence import (
    Collector,
    CollectorError,
    error_of,
    redact,
    register,
    remaining,
)
from ansible_collections.octollm.remediation.plugins.module_utils.redact import DEFAULT_PII, redact_value

DEFAULT_RESPONSE_HEADERS = ["x-ratelimit-*", "retry-after", "content-type", "x-request-id", "server"]

PROBE_OPTIONS = dict(
    name=dict(type="str", required=True),
    url=dict(type="str"),
    service=dict(type="str"),
    path=dict(type="str", default="/"),
    method=dict(type="str", default="GET"),
    headers=dict(type="dict", no_log=True),
    header_set=dict(type="str"),
    body=dict(type="raw"),
    timeout=dict(type="float"),
    expect_status=dict(type="list", elements="int", default=[200]),
)


def _status_kind(status):
    return "auth" if status in (401, 403, 407) else "other"


def _header_values(headers):
    return [str(value) for value in (headers or {}).values() if value]


@register
class HttpCollector(Collector):
    kind = "http"
    SECRETS = ()
    OPTIONS = dict(
        probes=dict(type="list", elements="dict", default=[], options=PROBE_OPTIONS),
        services=dict(type="dict", default={}),
        header_sets=dict(type="dict", default={}, no_log=True),
        timeout=dict(type="float", default=5.0),
        max_body=dict(type="int", default=2048),
        response_headers=dict(type="list", elements="str", default=list(DEFAULT_RESPONSE_HEADERS)),
        validate_certs=dict(type="bool", default=True),
        concurrency=dict(type="int", default=8),
        redact=dict(type="list", elements="str", default=list(DEFAULT_PII)),
    )

    def _opt(self, name):
        value = self.options.get(name)
        return self.OPTIONS[name].get("default") if value is None else value

    def secrets(self):
        values = []
        for headers in (self._opt("header_sets") or {}).values():
            values.extend(_header_values(headers if isinstance(headers, dict) else {}))
        for probe in self._opt("probes") or []:
            values.extend(_header_values(probe.get("headers")))
        # a bearer token is also matched without its scheme
        values.extend(value.split(None, 1)[1] for value in list(values) if " " in value)
        return [value for value in values if len(value) >= 3]

    def _url(self, probe):
        if probe.get("url"):
            return probe["url"]
        service = probe.get("service")
        if not service:
            raise CollectorError("other", "probe %s has neither url nor service" % probe.get("name"))
        entry = (self._opt("services") or {}).get(service)
        if isinstance(entry, str):
            base = entry
        elif isinstance(entry, dict) and entry.get("url"):
            base = entry["url"]
        elif isinstance(entry, dict) and entry.get("port"):
            base = "http://127.0.0.1:%s" % entry["port"]
        else:
            raise CollectorError("other", "service %s has no url in the http services map" % service)
        path = probe.get("path") or "/"
        return base.rstrip("/") + ("/" + path.lstrip("/") if path != "/" else "/")

    def _headers(self, probe):
        headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.5", "User-Agent": "octollm-remediation"}
        if probe.get("header_set"):
            sets = self._opt("header_sets") or {}
            if probe["header_set"] not in sets:
                raise CollectorError("other", "header set %s is not defined" % probe["header_set"])
            headers.update({str(k): str(v) for k, v in (sets[probe["header_set"]] or {}).items()})
        headers.update({str(k): str(v) for k, v in (probe.get("headers") or {}).items()})
        return headers

    def _selected_headers(self, response_headers):
        wanted = [pattern.lower() for pattern in self._opt("response_headers") or []]
        selected = {}
        for name, value in response_headers.items():
            lowered = name.lower()
            if any(fnmatch.fnmatchcase(lowered, pattern) for pattern in wanted):
                selected[lowered] = value
        return selected

    def _body(self, raw, content_type, complete, counts):
        text = raw.decode("utf-8", "replace")
        for secret in self.secrets():
            text = text.replace(secret, "********")
        kinds = self._opt("redact")
        if complete and ("json" in (content_type or "") or text[:1] in ("{", "[")):
            try:
                return redact_value(json.loads(text), kinds, counts), False
            except ValueError:
                pass
        return redact_value(text, kinds, counts), not complete

    def _probe(self, probe, deadline):
        name = probe.get("name")
        answer = {
            "name": name,
            "url": None,
            "method": (probe.get("method") or "GET").upper(),
            "status": None,
            "ok": False,
            "elapsed_ms": None,
            "body": None,
            "body_truncated": False,
            "headers": {},
            "redactions": {},
            "error": None,
        }
        started = time.monotonic()
        try:
            url = self._url(probe)
            answer["url"] = url
            data = probe.get("body")
            headers = self._headers(probe)
            if data is not None and not isinstance(data, (str, bytes)):
                data = json.dumps(data)
                headers.setdefault("Content-Type", "application/json")
            if isinstance(data, str):
                data = data.encode("utf-8")
            request = Request(url, data=data, headers=headers, method=answer["method"])
            context = None
            if url.startswith("https") and not self._opt("validate_certs"):
                context = ssl._create_unverified_context()
            seconds = min(float(probe.get("timeout") or self._opt("timeout")), remaining(deadline))
            limit = max(0, int(self._opt("max_body")))
            try:
                response = urlopen(request, timeout=seconds, context=context)
            except HTTPError as exc:  # an answer all the same: status, headers and body are evidence
                response = exc
            try:
                status = response.getcode()
                raw = response.read(limit + 1) if limit else b""
                answer["headers"] = self._selected_headers(response.headers or {})
                content_type = (response.headers or {}).get("Content-Type", "")
            finally:
                response.close()
            answer["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
            answer["status"] = status
            complete = len(raw) <= limit
            body, truncated = self._body(raw[:limit], content_type, complete, answer["redactions"])
            answer["body"], answer["body_truncated"] = body, truncated
            expected = probe.get("expect_status") or [200]
            answer["ok"] = status in expected
            if not answer["ok"]:
                answer["error"] = {
                    "kind": _status_kind(status),
                    "message": "HTTP %s from %s (expected %s)" % (status, url, ", ".join(str(s) for s in expected)),
                }
        except Exception as exc:
            answer["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
            answer["error"] = self._error(exc)
        if answer["error"]:
            answer["error"]["message"] = redact(answer["error"]["message"], self.secrets())
        if answer["url"]:
            for secret in self.secrets():
                answer["url"] = answer["url"].replace(secret, "********")
        return answer

    def _error(self, exc):
        if isinstance(exc, CollectorError):
            return error_of(exc, self.secrets())
        reason = exc.reason if isinstance(exc, URLError) and not isinstance(exc, HTTPError) else exc
        if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason).lower():
            return {"kind": "timeout", "message": redact("timed out: %s" % reason, self.secrets())}
        if isinstance(reason, (ConnectionError, socket.gaierror, socket.herror, OSError)) or isinstance(exc, URLError):
            message = "%s: %s" % (type(reason).__name__, reason)
            return {"kind": "unreachable", "message": redact(message, self.secrets())}
        return error_of(exc, self.secrets())

    def collect(self, deadline):
        probes = list(self._opt("probes") or [])
        seen = set()
        unique = []
        for probe in probes:  # two procedures may ask for the same probe: the first one wins
            if probe.get("name") in seen:
                continue
            seen.add(probe.get("name"))
            unique.append(probe)
        result = {"probes": {}, "failed": [], "duplicates": len(probes) - len(unique)}
        if not unique:
            return result
        pool = ThreadPoolExecutor(max_workers=max(1, min(int(self._opt("concurrency")), len(unique))))
        try:
            futures = [(probe.get("name"), pool.submit(self._probe, probe, deadline)) for probe in unique]
            for name, future in futures:
                try:
                    answer = future.result(timeout=remaining(deadline) + 1)
                except Exception as exc:
                    answer = {"name": name, "ok": False, "status": None, "error": self._error(exc)}
                result["probes"][name] = answer
                if not answer.get("ok"):
                    result["failed"].append(name)
        finally:
            pool.shutdown(wait=False)
        return result
