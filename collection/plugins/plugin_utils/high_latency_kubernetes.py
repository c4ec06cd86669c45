# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""high_latency on Kubernetes: the Compose judgement with the inputs Docker gave taken from the API.

Prometheus and PostgreSQL are read as on Compose (the inventory's addresses). The CPU and memory queries select
cAdvisor's series by namespace and ``container`` (the role's Kubernetes queries relabel it to ``service``). What
came from Docker comes from the API:

- each Deployment's replicas (ready, else spec) and its container's CPU limit (per pod, times the replicas);
- the response cache switch: the value the application's pods load - the ConfigMap (``octollm-config``) unless a
  literal ``env`` entry of the Deployment overrides it. A pod started before a ConfigMap change may still run the
  old value: the fix restarts the Deployment.

The API adds ``k8s.hpa``: the HorizontalPodAutoscalers of the services that run at their CPU limit (present, at
their maximum). Fixes on Kubernetes: A creates the indexes (SQL, as on Compose); B sets the switch in the
ConfigMap and restarts the Deployment (rollout restart, disruptive); C scales a saturated Deployment out by one
within ``max_replicas`` with ``kubernetes.core.k8s_scale`` when no HPA drives it (with an HPA: a report - at its
maximum, raise maxReplicas; below it, the HPA scales, check the metrics API); D is a report. The round-trip probe
and the CPU profile (an exec in the pod on Compose) are not taken on Kubernetes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.octollm.remediation.plugins.plugin_utils import high_latency as hl
from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import gated, scenarios_named
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import action, escalation, finding, unknown

PREFIX = "high_latency_"
READS = ("deployments", "configmap", "hpas")
LISTS = ("deployments", "hpas")

CHECK_SCENARIO = dict(hl.CHECK_SCENARIO, **{"k8s.hpa": "C"})


def _settings(settings):
    return dict(settings or {})


def configmap_ref(s):
    return "configmap/%s/%s" % (s["namespace"], s["k8s_configmap"])


def normalise(evidence):
    return k8s.reads_as_facts(evidence, PREFIX, READS, LISTS)


def _deployments(facts):
    return {d["metadata"]["name"]: d for d in facts.get("deployments") or []}


def _replicas(deployment):
    status = deployment.get("status") or {}
    return int(status.get("readyReplicas") or (deployment.get("spec") or {}).get("replicas") or 0)


def _container(deployment, name):
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return next((c for c in containers if c.get("name") == name), containers[0] if containers else {})


def cpu_cores(quantity):
    """A CPU quantity ("1", "500m", 0.5) in cores; None when absent."""
    if quantity in (None, ""):
        return None
    text = str(quantity)
    try:
        return float(text[:-1]) / 1000.0 if text.endswith("m") else float(text)
    except ValueError:
        return None


def switch(facts, s):
    """``{value, source}``: the cache switch the application's pods load (Deployment env over the ConfigMap)."""
    deployment = _deployments(facts).get(s["cache_service"]) or {}
    if not s.get("cache_key") or not deployment:
        # the deployment has no cache switch, or its workload is not there: nothing to read
        return {"value": None, "source": None, "known": False}
    container = _container(deployment, s["cache_service"])
    for item in container.get("env") or []:
        if item.get("name") == s["cache_key"] and "value" in item:
            return {"value": str(item["value"]), "source": "deployment/%s env" % s["cache_service"], "known": True}
    loads = any((e.get("configMapRef") or {}).get("name") == s["k8s_configmap"] for e in container.get("envFrom") or [])
    data = (facts.get("configmap") or {}).get("data") or {}
    if loads and s["cache_key"] in data:
        return {"value": str(data[s["cache_key"]]), "source": "configmap/%s" % s["k8s_configmap"], "known": True}
    # neither the Deployment's env nor the ConfigMap it loads sets it: "not set"
    return {"value": None, "source": None, "known": True}


def as_compose_evidence(evidence, facts, s):
    """The evidence in the shape the Compose judgement reads: replicas and CPU limits as containers, the cache
    switch as the probe's output and the env source's line."""
    out = copy.deepcopy(evidence or {})
    if facts.get("deployments") is None or (facts.get("errors") or {}).get("deployments"):
        out["containers"] = {"ok": False, "error": (facts.get("errors") or {}).get("deployments")}
        return out
    services, containers = {}, []
    for name, deployment in sorted(_deployments(facts).items()):
        replicas = _replicas(deployment)
        services[name] = {"running": replicas, "containers": replicas}
        limit = cpu_cores(((_container(deployment, name).get("resources") or {}).get("limits") or {}).get("cpu"))
        containers += [{"service": name, "state": "running", "cpus": limit} for _ in range(replicas)]
    cache = switch(facts, s)
    probes = []
    if cache["value"] is None and cache["known"]:
        # as printenv of a variable that is not set: no output, exit status 1
        probes.append(
            {
                "name": hl.CACHE_PROBE,
                "cmd": "(%s env and configmap/%s: %s)" % (s["cache_service"], s["k8s_configmap"], s["cache_key"]),
                "exit_code": 1,
                "output": "",
                "ok": False,
            }
        )
    if cache["value"] is not None:
        probes.append(
            {
                "name": hl.CACHE_PROBE,
                "cmd": "(%s: %s)" % (cache["source"], s["cache_key"]),
                "exit_code": 0,
                "output": cache["value"],
                "ok": True,
            }
        )
        out["logs"] = {
            "ok": True,
            "sources": {hl.ENV_SOURCE: {"lines": [{"text": "%s=%s" % (s["cache_key"], cache["value"])}]}},
        }
    out["containers"] = {"ok": True, "services": services, "containers": containers, "exec_probes": probes}
    return out


def check_hpa(facts, saturated, s):
    title = "The services at their CPU limit can scale (HPA below its maximum, or room to scale)"
    expected = "no saturated service whose HPA is at maxReplicas"
    error = (facts.get("errors") or {}).get("hpas")
    if error:
        return unknown("k8s.hpa", title, expected, error, "C")
    rows = []
    for row in saturated:
        hpa = hpa_of(facts, row["service"])
        rows.append(
            {
                "service": row["service"],
                "hpa": hpa["metadata"]["name"] if hpa else None,
                "current": ((hpa or {}).get("status") or {}).get("currentReplicas"),
                "max": ((hpa or {}).get("spec") or {}).get("maxReplicas"),
            }
        )
    at_max = [
        r
        for r in rows
        if r["hpa"] and r["current"] is not None and r["max"] is not None and int(r["current"]) >= int(r["max"])
    ]
    evidence = {"saturated": rows}
    if at_max:
        return finding(
            "k8s.hpa",
            title,
            "problem",
            ", ".join("%s: HPA %s at %s/%s" % (r["service"], r["hpa"], r["current"], r["max"]) for r in at_max),
            expected,
            evidence,
            "C",
        )
    observed = (
        ", ".join(
            "%s: %s" % (r["service"], "HPA %s %s/%s" % (r["hpa"], r["current"], r["max"]) if r["hpa"] else "no HPA")
            for r in rows
        )
        or "no saturated service"
    )
    return finding("k8s.hpa", title, "ok", observed, expected, evidence)


def hpa_of(facts, name):
    for hpa in facts.get("hpas") or []:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") == "Deployment" and ref.get("name") == name:
            return hpa
    return None


def diagnose(evidence, settings=None, previous=None, applied=()):
    s = _settings(settings)
    facts = normalise(evidence)
    result = hl.diagnose(as_compose_evidence(evidence, facts, s), dict(s, env_file=configmap_ref(s)))
    findings = list(result["findings"])
    hpa = check_hpa(facts, result["context"].get("saturated") or [], s)
    findings.append(hpa)
    context = dict(
        result["context"],
        hpas={r["service"]: r for r in hpa["evidence"].get("saturated") or []},
        cache_source=switch(facts, s)["source"],
        deployments={name: _replicas(d) for name, d in _deployments(facts).items()},
    )
    return {
        "findings": findings,
        "scenarios": scenarios_named(hl.SCENARIOS, findings, CHECK_SCENARIO),
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _cache_action(item, s, ctx):
    source = ctx.get("cache_source") or ""
    ref = configmap_ref(s)
    if source.startswith("deployment/"):
        return action(
            "high_latency.B.report_response_cache_env",
            "B",
            "report the cache switch in the Deployment env",
            "k8s:deployment/%s" % s["cache_service"],
            {"source": source, "key": s["cache_key"]},
            "report",
            "L1: %s sets %s in its own env: change it there to true" % (source, s["cache_key"]),
        )
    return dict(
        item,
        title="enable the LLM response cache (ConfigMap) and restart %s" % s["cache_service"],
        resource="k8s:deployment/%s" % s["cache_service"],
        change={
            "file": ref,
            "configmap": s["k8s_configmap"],
            "keys": item["change"]["keys"],
            "data": {s["cache_key"]: "true"},
            "restart": "Deployment/%s" % s["cache_service"],
            "op": "ConfigMap patch + rollout restart (%s)" % k8s.RESTARTED_AT,
            "live_old": item["change"].get("live_old"),
        },
        outcome="%s=true in %s, then a rollout restart of Deployment/%s (the pods read envFrom at start)"
        % (s["cache_key"], ref, s["cache_service"]),
        _apply="set_configmap_and_restart",
    )


def _scale_action(item, s, ctx):
    service = item["change"]["service"]
    hpa = (ctx.get("hpas") or {}).get(service) or {}
    if hpa.get("hpa"):
        at_max = (
            hpa.get("current") is not None and hpa.get("max") is not None and int(hpa["current"]) >= int(hpa["max"])
        )
        return action(
            "high_latency.C.report_hpa_%s" % service.replace("-", "_"),
            "C",
            "report the HPA of %s" % service,
            "k8s:hpa/%s" % hpa["hpa"],
            hpa,
            "report",
            "L1: HPA %s drives %s (%s/%s replicas): %s"
            % (
                hpa["hpa"],
                service,
                hpa.get("current"),
                hpa.get("max"),
                "it is at its maximum: raise maxReplicas or the CPU limit"
                if at_max
                else "scaling by hand would fight it; check that the metrics API serves it (kubectl top pods)",
            ),
        )
    now = int((ctx.get("deployments") or {}).get(service) or item["change"]["old"])
    new = now + 1
    if new > int(s["max_replicas"]):
        return None
    return dict(
        item,
        resource="k8s:deployment/%s" % service,
        title="scale %s out to %d replicas" % (service, new),
        change={
            "service": service,
            "kind": "Deployment",
            "name": service,
            "namespace": s["namespace"],
            "old": now,
            "new": new,
            "op": "kubernetes.core.k8s_scale (spec.replicas)",
        },
        outcome="Deployment/%s replicas %d -> %d (kubernetes.core.k8s_scale; at most %s)"
        % (service, now, new, s["max_replicas"]),
        _apply="scale_deployment",
    )


def plan(diagnosis, settings=None):
    s = _settings(settings)
    ctx = diagnosis.get("context") or {}
    actions = []
    for item in hl.plan(diagnosis, dict(s, dry_run=False, approve=True, allow_disruptive=True)):
        item = dict(item)
        if item["status"] in ("planned", "awaiting_approval"):
            item["status"] = "planned"
        if item["id"] == "high_latency.B.enable_response_cache":
            item = _cache_action(item, s, ctx)
        elif item["id"].startswith("high_latency.C.scale_"):
            item = _scale_action(item, s, ctx)
        if item is not None:
            actions.append(item)
    return gated(actions, s)


def prevention(evidence, settings=None):
    """The Compose prevention (indexes, the cache switch in the ConfigMap, pool x replicas, the latency rule) plus
    an HPA for each scalable Deployment (a report)."""
    s = _settings(settings)
    facts = normalise(evidence)
    result = hl.prevention(as_compose_evidence(evidence, facts, s), dict(s, env_file=configmap_ref(s)))
    actions = []
    for item in result["actions"]:
        if item["id"] == "high_latency.prevent.enable_response_cache":
            converted = _cache_action(item, s, {"cache_source": switch(facts, s)["source"]})
            item = dict(
                converted,
                id="high_latency.prevent.enable_response_cache" if converted.get("_apply") else converted["id"],
            )
        actions.append(item)
    deployments = _deployments(facts)
    error = (facts.get("errors") or {}).get("hpas")
    title = "The scalable Deployments have an HPA"
    expected = "an HPA for each of %s" % ", ".join(s["scalable_services"])
    if error:
        hpa_finding = unknown("prevent.k8s.hpa", title, expected, error)
    else:
        missing = [name for name in s["scalable_services"] if name in deployments and hpa_of(facts, name) is None]
        hpa_finding = finding(
            "prevent.k8s.hpa",
            title,
            "warning" if missing else "ok",
            "none for %s" % ", ".join(missing) if missing else "present",
            expected,
            {"without_hpa": missing},
        )
        if missing:
            actions.append(
                action(
                    "high_latency.prevent.report_hpa",
                    "C",
                    "report Deployments without an HPA",
                    "k8s:hpa",
                    {"deployments": missing},
                    "report",
                    "L1: add an HPA (CPU target, min/max replicas) for %s; high_latency scales them by "
                    "one replica at most" % ", ".join(missing),
                )
            )
    # the Compose actions are gated already; the one added here is a report
    return {"findings": result["findings"] + [hpa_finding], "actions": actions, "context": result["context"]}
