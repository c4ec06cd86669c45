# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ``prometheus`` evidence kind: named PromQL instant queries run concurrently, and the loaded rules.

Uses only the standard library (urllib), so it runs wherever the module runs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import math
import ssl
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from ansible_collections.octollm.remediation.plugins.module_utils.evidence import (
    Collector,
    error_of,
    register,
    remaining,
)


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return value


def parse_vector(data, max_series):
    """An instant-query answer as ``value`` (one series or a scalar) plus ``series``."""
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type in ("scalar", "string"):
        return {"value": _number(result[1]), "raw": result[1], "series": [], "empty": False}
    series = []
    for item in result or []:
        labels = {k: v for k, v in item.get("metric", {}).items()}
        raw = (item.get("value") or [None, None])[1]
        series.append({"labels": labels, "value": _number(raw), "raw": raw})
    value = series[0]["value"] if len(series) == 1 else None
    nan = len(series) == 1 and series[0]["raw"] in ("NaN", "+Inf", "-Inf")
    return {"value": value, "series": series[:max_series], "series_count": len(series), "empty": not series, "nan": nan}


@register
class PrometheusCollector(Collector):
    kind = "prometheus"
    SECRETS = ("password", "bearer_token")
    OPTIONS = dict(
        url=dict(type="str", default="http://127.0.0.1:9090"),
        queries=dict(type="dict", default={}),
        rules=dict(type="bool", default=False),
        timeout=dict(type="float", default=5.0),
        max_series=dict(type="int", default=20),
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        bearer_token=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
    )

    def _opt(self, name):
        value = self.options.get(name)
        return self.OPTIONS[name].get("default") if value is None else value

    def _get(self, path, params, deadline):
        url = self._opt("url").rstrip("/") + path
        if params:
            url += "?" + urlencode(params)
        request = Request(url, headers={"Accept": "application/json"})
        if self._opt("bearer_token"):
            request.add_header("Authorization", "Bearer %s" % self._opt("bearer_token"))
        elif self._opt("username"):
            token = base64.b64encode(("%s:%s" % (self._opt("username"), self._opt("password") or "")).encode())
            request.add_header("Authorization", "Basic %s" % token.decode())
        context = None
        if url.startswith("https") and not self._opt("validate_certs"):
            context = ssl._create_unverified_context()
        timeout = min(float(self._opt("timeout")), remaining(deadline))
        response = urlopen(request, timeout=timeout, context=context)
        try:
            body = json.loads(response.read().decode("utf-8"))
        finally:
            response.close()
        if body.get("status") != "success":
            raise ValueError("%s: %s" % (body.get("errorType"), body.get("error")))
        return body.get("data")

    def _query(self, name, promql, deadline):
        try:
            answer = parse_vector(self._get("/api/v1/query", {"query": promql}, deadline), int(self._opt("max_series")))
            answer["error"] = None
        except Exception as exc:
            answer = {"value": None, "series": [], "error": error_of(exc, self.secrets())}
        answer["query"] = promql
        return name, answer

    def _rules(self, deadline):
        try:
            data = self._get("/api/v1/rules", None, deadline)
        except Exception as exc:
            return {"names": [], "alerts": {}, "groups": 0, "error": error_of(exc, self.secrets())}
        names, alerts = [], {}
        groups = data.get("groups") or []
        for group in groups:
            for rule in group.get("rules") or []:
                names.append(rule.get("name"))
                if rule.get("type") == "alerting":
                    alerts[rule.get("name")] = {
                        "group": group.get("name"),
                        "state": rule.get("state"),
                        "health": rule.get("health"),
                        "active": len(rule.get("alerts") or []),
                    }
        return {"names": sorted(set(names)), "alerts": alerts, "groups": len(groups), "error": None}

    def collect(self, deadline):
        queries = self._opt("queries") or {}
        jobs = [("query", name, promql) for name, promql in queries.items()]
        if self._opt("rules"):
            jobs.append(("rules", None, None))
        result = {"url": self._opt("url"), "queries": {}}
        if not jobs:
            return result
        pool = ThreadPoolExecutor(max_workers=min(8, len(jobs)))
        try:
            futures = []
            for job, name, promql in jobs:
                if job == "query":
                    futures.append(pool.submit(self._query, name, str(promql), deadline))
                else:
                    futures.append(pool.submit(lambda: ("__rules__", self._rules(deadline))))
            for future in futures:
                name, answer = future.result()
                if name == "__rules__":
                    result["rules"] = answer
                else:
                    result["queries"][name] = answer
        finally:
            pool.shutdown(wait=False)
        errors = [answer["error"] for answer in result["queries"].values() if answer.get("error")]
        if "rules" in result and result["rules"].get("error"):
            errors.append(result["rules"]["error"])
        if errors and len(errors) == len(jobs):
            # nothing answered: the kind failed as a whole (Prometheus down, wrong URL, auth)
            result["ok"] = False
            result["error"] = errors[0]
        return result
