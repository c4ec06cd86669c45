# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Is every service of the stack up, and does it answer? Judged in every diagnosis and fix, whatever procedures the
page selected, from the evidence the run gathers anyway: a stopped component is found even when the text named
another one, and no run is healthy while one is down.

Services are those of the inventory (``octollm_services``). On Compose a service is up when one of its containers
runs (not restarting, not unhealthy): its containers are those the inventory's description finds (Compose project and
service, container names, labels; the containers evidence names each record after its service); on Kubernetes when
one of its pods (its ``k8s_selector``, default ``app=<service>``) is ready. A service
with a URL and a health path (``health_path`` in the inventory; the seed's ``/health`` for the orchestrator and the
arms) must answer it with 200. What cannot be checked is ``unknown``, never ok.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.results import finding, unknown

KEY = "stack"
PROBE_PREFIX = "stack_health_"
PODS = "stack_pods"
# the seed's health endpoint: the orchestrator and the arms offer it
SEED_HEALTH = "/health"


def _services(context):
    services = context.inventory.get("services") or {}
    return {name: spec if isinstance(spec, dict) else {} for name, spec in services.items()}


def health_path(name, spec):
    """The path a service's health is read at, or None (a service the seed gives no health endpoint and the
    inventory names none)."""
    if spec.get("health_path"):
        return spec["health_path"]
    if name == "orchestrator" or name.endswith("-arm"):
        return SEED_HEALTH
    return None


def needs(context):
    """``{kind: options}``: the containers (or pods) and the health endpoints."""
    services = _services(context)
    probes = [
        {
            "name": PROBE_PREFIX + name,
            "service": name,
            "path": health_path(name, spec),
            "timeout": 3.0,
            "expect_status": [200],
        }
        for name, spec in sorted(services.items())
        if spec.get("url") and health_path(name, spec)
    ]
    need = {"http": {"probes": probes}} if probes else {}
    if context.kubernetes:
        need["kubernetes"] = {"objects": {PODS: {"kind": "Pod"}}}
    else:
        need["containers"] = {}
    return need


def _kind(evidence, kind):
    result = (evidence or {}).get(kind)
    if result is None:
        return None, {"kind": "other", "message": "%s evidence was not gathered" % kind}
    if not result.get("ok", False):
        return None, result.get("error") or {"kind": "other", "message": "%s evidence failed" % kind}
    return result, None


def _compose_state(name, containers):
    """(up, observed) of a service from its containers."""
    mine = [c for c in containers if c.get("service") == name]
    if not mine:
        return None, "no container"
    for record in mine:
        restarting = record.get("restarting") or record.get("state") == "restarting"
        if record.get("running") and not restarting and record.get("health") != "unhealthy":
            return True, "running" + (" (%s)" % record["health"] if record.get("health") else "")
    first = mine[0]
    state = first.get("state") or ("running" if first.get("running") else "stopped")
    if first.get("health") == "unhealthy":
        state += ", unhealthy"
    if first.get("exit_code") not in (None, 0) and not first.get("running"):
        state += ", exit code %s" % first["exit_code"]
    return False, state


def selects(selector, labels):
    """Whether an equality-based label selector (``app=orchestrator,tier!=canary``) selects these labels."""
    for term in [item.strip() for item in str(selector or "").split(",") if item.strip()]:
        if "!=" in term:
            key, value = [part.strip() for part in term.split("!=", 1)]
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=", 1).partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _pod_state(name, pods, selector=None):
    selector = selector or "app=%s" % name
    mine = [p for p in pods if selects(selector, (p.get("metadata") or {}).get("labels") or {})]
    if not mine:
        return None, "no pod with %s" % selector
    for pod in mine:
        conditions = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
        if conditions.get("Ready") == "True":
            return True, "ready"
    return False, (mine[0].get("status") or {}).get("phase") or "not ready"


def judge(evidence, context):
    """``{findings, down}``: one finding per service of the inventory (check ``stack.<service>``)."""
    services = _services(context)
    if context.kubernetes:
        kube, runtime_error = _kind(evidence, "kubernetes")
        read = ((kube or {}).get("objects") or {}).get(PODS) or {}
        if kube is not None and read.get("error"):
            runtime_error, kube = read["error"], None
        items = read.get("items") or []
        state_of = lambda name: _pod_state(name, items, services[name].get("k8s_selector"))  # noqa: E731
    else:
        data, runtime_error = _kind(evidence, "containers")
        items = (data or {}).get("containers") or []
        state_of = lambda name: _compose_state(name, items)  # noqa: E731
    http, http_error = _kind(evidence, "http")
    answers = (http or {}).get("probes") or {}
    findings = []
    for name, spec in sorted(services.items()):
        check = "stack.%s" % name
        title = "%s is up and answers" % name
        path = health_path(name, spec) if spec.get("url") else None
        expected = "up" + (", %s answers 200" % path if path else "")
        if runtime_error is not None:
            findings.append(unknown(check, title, expected, runtime_error))
            continue
        up, observed = state_of(name)
        answer = answers.get(PROBE_PREFIX + name) if path else None
        evidence_item = {"state": observed}
        if path:
            if answer is None and http_error is not None:
                evidence_item["health"] = "not probed"
            else:
                evidence_item["health"] = (answer or {}).get("status") or (answer or {}).get("error")
        answered = None if not path or answer is None else answer.get("status") == 200
        if up is False or answered is False:
            detail = observed if up is False else "%s answered %s" % (path, evidence_item["health"])
            findings.append(finding(check, title, "problem", detail, expected, evidence_item))
        elif up is None and answered is None:
            # neither a container nor a health answer: a service this runtime does not show (external, or named
            # otherwise); not a problem, not a health
            findings.append(unknown(check, title, expected, {"kind": "other", "message": observed}))
        else:
            findings.append(finding(check, title, "ok", observed if up else "answers", expected, evidence_item))
    down = [item["check"].split(".", 1)[1] for item in findings if item["status"] == "problem"]
    return {"findings": findings, "down": down}
