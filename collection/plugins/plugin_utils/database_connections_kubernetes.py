# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""database_connections on Kubernetes: the Compose judgement plus what the API shows.

PostgreSQL, the application's ``/health`` and Prometheus are probed as on Compose, at the addresses the inventory
gives (a Service address or a port-forward). The Compose inputs that come from Docker are taken from the API:

- the pool settings (``db_pool_size``, ``db_pool_max_overflow`` under the deployment's names; the seed's
  ``DB_POOL_SIZE``, ``DB_POOL_MAX_OVERFLOW``) from the ConfigMap the application's pods load
  (``octollm-config``; a literal ``env`` entry of the Deployment overrides it and is reported, not patched);
- the replicas from the application's Deployment (ready replicas, else spec).

The API adds these checks:

- ``k8s.postgres_pods`` / ``k8s.app_pods``: phase, readiness, restarts, CrashLoopBackOff, OOMKilled;
- ``k8s.postgres_service``: the ``postgres`` Service exists and its Endpoints have ready addresses (what the name
  ``postgres.<namespace>.svc`` resolves and routes to; scenario D when not);
- ``k8s.network_policy``: the NetworkPolicies that select the PostgreSQL pods (Ingress) or the application's pods
  (Egress) admit the application's traffic to PostgreSQL's port (scenario D when one blocks it).

A PostgreSQL StatefulSet scaled to 0 replicas is the Kubernetes form of a stopped database (``pg.running``): it is
scaled back to ``k8s_db_start_replicas`` with ``kubernetes.core.k8s_scale`` (not disruptive: nothing runs), before any
scenario. Pods that crash are the kubelet's to restart (``k8s.postgres_pods`` reports them).

Fixes on Kubernetes: A raises the pool in the ConfigMap and restarts the application with a rollout restart (the
pod template's ``restartedAt``; disruptive); B terminates idle sessions (SQL, as on Compose) or, with a target,
``ALTER SYSTEM SET max_connections`` and a rollout restart of the PostgreSQL StatefulSet (disruptive; the lab's
``POSTGRES_MAX_CONNECTIONS`` only applies when the data directory is created); C terminates the leaked sessions
and reports the leaking application (with its Deployment); D reports (the blocking NetworkPolicy, the Service)
and checks the names from an application pod: ``getent hosts`` through ``kubernetes.core.k8s_exec``, argv built
here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import shlex

from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections as dc
from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import (
    gated,
    scenarios_named,
    to_int,
)
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    unknown,
)

PREFIX = "database_connections_"
READS = (
    "app_pods",
    "db_pods",
    "configmap",
    "app_workload",
    "db_workload",
    "service",
    "endpoints",
    "netpols",
    "pdbs",
    "hpas",
    "events",
)
LISTS = ("app_pods", "db_pods", "netpols", "pdbs", "hpas", "events")


def pool_keys(s):
    """The names of the application's pool settings in its ConfigMap or env (the deployment's; docs/deployment.md)."""
    return tuple(name for name in dc.pool_names(s) if name)


CHECK_SCENARIO = dict(dc.CHECK_SCENARIO, **{"k8s.postgres_service": "D", "k8s.network_policy": "D"})


# --- the API's evidence ------------------------------------------------------------------------------------
def normalise(evidence):
    """The ``kubernetes`` evidence (reads named ``database_connections_<read>``) as lists / one object / None,
    and the errors by read."""
    return k8s.reads_as_facts(evidence, PREFIX, READS, LISTS)


def _api_error(facts, name):
    error = (facts.get("errors") or {}).get(name)
    if not error:
        return None
    return {"kind": error.get("kind") or k8s.error_kind(error.get("message")), "message": error.get("message", "")}


def _container(workload, name):
    template = ((workload or {}).get("spec") or {}).get("template") or {}
    for container in (template.get("spec") or {}).get("containers") or []:
        if container.get("name") == name:
            return container
    return None


def pool_source(facts, s):
    """``{values, overrides, configmap, loaded}``: the pool keys from the ConfigMap and the Deployment's literal
    env (which wins), and whether the container loads that ConfigMap at all."""
    data = (facts.get("configmap") or {}).get("data") or {}
    container = _container(facts.get("app_workload"), s["k8s_app_container"]) or {}
    loaded = any(
        (item.get("configMapRef") or {}).get("name") == s["k8s_pool_configmap"]
        for item in container.get("envFrom") or []
    )
    keys = pool_keys(s)
    values = {key: data[key] for key in keys if key in data and loaded}
    overrides = {}
    for item in container.get("env") or []:
        if item.get("name") in keys and "value" in item:
            overrides[item["name"]] = str(item["value"])
    values.update(overrides)
    return {"values": values, "overrides": overrides, "configmap": s["k8s_pool_configmap"], "loaded": loaded}


def replicas(facts):
    workload = facts.get("app_workload") or {}
    status = workload.get("status") or {}
    ready = status.get("readyReplicas")
    return int(ready) if ready else int((workload.get("spec") or {}).get("replicas") or 1)


def as_compose_evidence(evidence, facts, s):
    """The evidence in the shape the Compose judgement reads: the pool env as the env source's lines, the
    replicas as the application's running containers (no exec probe, no log counts: they come from Docker)."""
    out = copy.deepcopy(evidence or {})
    source = pool_source(facts, s)
    out["logs"] = {
        "ok": True,
        "sources": {
            dc.ENV_SOURCE: {
                "lines": [{"text": "%s=%s" % (key, value)} for key, value in sorted(source["values"].items())]
            }
        },
    }
    if facts.get("app_workload") is not None:
        out["containers"] = {
            "ok": True,
            "services": {s["app_service"]: {"running": replicas(facts)}},
            "exec_probes": [],
            "logs": {},
        }
    else:
        out["containers"] = {
            "ok": False,
            "error": _api_error(facts, "app_workload")
            or {"kind": "other", "message": "%s/%s not found" % (dc.APP_WORKLOAD_KIND, s["k8s_app_workload"])},
        }
    return out


# --- Kubernetes checks -------------------------------------------------------------------------------------
def check_pods(facts, s, which):
    label = s["k8s_db_label"] if which == "db" else s["k8s_app_label"]
    workload = s["k8s_db_workload"] if which == "db" else s["k8s_app_workload"]
    container = s["k8s_db_container"] if which == "db" else s["k8s_app_container"]
    check = "k8s.postgres_pods" if which == "db" else "k8s.app_pods"
    title = "The %s pods are running and ready, without OOM kills or crash loops" % label
    expected = "all Running and Ready, no CrashLoopBackOff, no OOMKilled"
    error = _api_error(facts, which + "_pods")
    if error:
        return unknown(check, title, expected, error)
    pods = k8s.pods_summary(facts.get(which + "_pods"), label)
    events = k8s.events_summary(facts.get("events"), names={pod["name"] for pod in pods} | {workload})
    evidence = {"pods": pods, "events": events}
    if not pods:
        return finding(check, title, "problem", "no pod with app=%s" % label, expected, evidence)
    troubled = {pod["name"]: k8s.pod_trouble(pod) for pod in pods if k8s.pod_trouble(pod)}
    ready = [pod["name"] for pod in pods if pod["ready"]]
    if not troubled:
        return finding(check, title, "ok", "%d/%d ready" % (len(ready), len(pods)), expected, evidence)
    observed = "; ".join("%s: %s" % (name, ", ".join(reasons)) for name, reasons in sorted(troubled.items()))
    oom = [pod["name"] for pod in pods if k8s.oom_killed(pod, container)]
    status = "problem" if not ready or (which == "db" and len(ready) < len(pods)) else "warning"
    if oom:
        evidence["oom_killed"] = oom
    return finding(check, title, status, observed, expected, evidence)


def check_service(facts, s):
    title = "The %s Service routes to ready PostgreSQL pods" % s["k8s_db_service"]
    expected = "Service %s with ready endpoint addresses on port %s" % (s["k8s_db_service"], s["db_port"])
    error = _api_error(facts, "service") or _api_error(facts, "endpoints")
    if error:
        return unknown("k8s.postgres_service", title, expected, error, "D")
    service = facts.get("service")
    endpoints = facts.get("endpoints")
    ready, not_ready = [], []
    for subset in (endpoints or {}).get("subsets") or []:
        ready += [a.get("ip") or (a.get("targetRef") or {}).get("name") for a in subset.get("addresses") or []]
        not_ready += [
            a.get("ip") or (a.get("targetRef") or {}).get("name") for a in subset.get("notReadyAddresses") or []
        ]
    source = "endpoints"
    if endpoints is None and service is not None:
        # no Endpoints object read: the pods the Service selects stand for it (what the controller would list)
        source = "pods selected by the Service"
        selector = (service.get("spec") or {}).get("selector") or {}
        for pod in facts.get("db_pods") or []:
            if _selects({"matchLabels": selector}, (pod.get("metadata") or {}).get("labels") or {}):
                summary = k8s.pod_summary(pod)
                (ready if summary["ready"] else not_ready).append(summary["name"])
    evidence = {
        "service": s["k8s_db_service"],
        "names": s["dns_names"],
        "addresses": ready,
        "not_ready_addresses": not_ready,
        "source": source,
        "ports": [p.get("port") for p in ((service or {}).get("spec") or {}).get("ports") or []],
    }
    if service is None:
        return finding(
            "k8s.postgres_service", title, "problem", "no Service %s" % s["k8s_db_service"], expected, evidence, "D"
        )
    if not ready:
        observed = "no ready endpoint address%s" % (" (%d not ready)" % len(not_ready) if not_ready else "")
        return finding("k8s.postgres_service", title, "problem", observed, expected, evidence, "D")
    return finding("k8s.postgres_service", title, "ok", "%d ready address(es)" % len(ready), expected, evidence)


def _selects(selector, labels):
    """Whether a label selector (matchLabels, matchExpressions) selects ``labels``; an empty one selects all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _port_allowed(ports, port, port_name):
    if not ports:
        return True
    for item in ports:
        value = item.get("port")
        if value is None or value in (port, port_name):
            return True
    return False


def _peer_allows(peers, labels, namespace, own_namespace):
    if peers is None:
        return True  # no from/to: every peer
    for peer in peers:
        if "ipBlock" in peer and len(peer) == 1:
            continue  # pod IPs are not judged here
        ns_selector = peer.get("namespaceSelector")
        if ns_selector is None and namespace != own_namespace:
            continue
        if ns_selector is not None and not _selects(ns_selector, {"kubernetes.io/metadata.name": namespace}):
            continue
        if _selects(peer.get("podSelector"), labels):
            return True
    return False


def _pod_labels(workload):
    return ((((workload or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def blocking_policies(facts, s):
    """``(selecting, blocking)``: the policies that select PostgreSQL (Ingress) or the application (Egress), and
    those of them under which no rule admits the application's traffic to PostgreSQL's port."""
    db_labels = _pod_labels(facts.get("db_workload")) or {"app": s["k8s_db_label"]}
    app_labels = _pod_labels(facts.get("app_workload")) or {"app": s["k8s_app_label"]}
    ns = s["namespace"]
    selecting, blocking = [], []
    ingress_policies = [
        p
        for p in facts.get("netpols") or []
        if "Ingress" in _types(p) and _selects((p.get("spec") or {}).get("podSelector"), db_labels)
    ]
    egress_policies = [
        p
        for p in facts.get("netpols") or []
        if "Egress" in _types(p) and _selects((p.get("spec") or {}).get("podSelector"), app_labels)
    ]
    # traffic is admitted when ANY policy of a direction allows it (policies are additive)
    for direction, policies, key, peer_key, peer_labels in (
        ("ingress to postgres", ingress_policies, "ingress", "from", app_labels),
        ("egress from %s" % s["k8s_app_label"], egress_policies, "egress", "to", db_labels),
    ):
        names = [p["metadata"]["name"] for p in policies]
        selecting += ["%s (%s)" % (name, direction) for name in names]
        if not policies:
            continue
        allowed = False
        for policy in policies:
            for rule in (policy.get("spec") or {}).get(key) or []:
                if _port_allowed(rule.get("ports"), s["db_port"], "postgres") and _peer_allows(
                    rule.get(peer_key), peer_labels, ns, ns
                ):
                    allowed = True
        if not allowed:
            blocking += ["%s (%s)" % (name, direction) for name in names]
    return selecting, blocking


def _types(policy):
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return types
    return ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def check_network_policy(facts, s):
    title = "No NetworkPolicy blocks %s -> PostgreSQL (port %s)" % (s["k8s_app_label"], s["db_port"])
    expected = "every policy selecting either side admits the traffic"
    error = _api_error(facts, "netpols")
    if error:
        return unknown("k8s.network_policy", title, expected, error, "D")
    selecting, blocking = blocking_policies(facts, s)
    evidence = {"selecting": selecting, "blocking": blocking}
    if blocking:
        return finding(
            "k8s.network_policy", title, "problem", "blocked by %s" % ", ".join(blocking), expected, evidence, "D"
        )
    observed = "admitted by %s" % ", ".join(selecting) if selecting else "no policy selects either side"
    return finding("k8s.network_policy", title, "ok", observed, expected, evidence)


def dns_exec(facts, s):
    """The exec of the DNS check: a ready application pod and ``getent hosts`` of each name (argv and the
    command string kubernetes.core.k8s_exec takes), or None without a running application pod."""
    pods = [p for p in k8s.pods_summary(facts.get("app_pods"), s["k8s_app_label"]) if p["phase"] == "Running"]
    if not pods:
        return None
    pods.sort(key=lambda p: (not p["ready"], p["name"]))
    # getent exits 2 when one of the names does not resolve, and prints those that do
    argv = ["getent", "hosts"] + list(s["dns_names"])
    return {
        "namespace": s["namespace"],
        "pod": pods[0]["name"],
        "container": s["k8s_app_container"],
        "argv": argv,
        "command": " ".join(shlex.quote(part) for part in argv),
    }


def check_running(facts, s, answers):
    """The seed's diagnosis step 1 on Kubernetes: the PostgreSQL StatefulSet is not scaled to 0. ``answers``:
    PostgreSQL answered the diagnosis."""
    ref = _workload_ref(dc.DB_WORKLOAD_KIND, s["k8s_db_workload"])
    title = "PostgreSQL is running (%s has replicas)" % ref
    expected = ">= 1 replica"
    error = _api_error(facts, "db_workload")
    if error:
        return unknown("pg.running", title, expected, error)
    workload = facts.get("db_workload")
    if workload is None:
        if answers:
            return finding("pg.running", title, "ok", "answers (no %s)" % ref, expected, {"workload": ref})
        missing = {"kind": "other", "message": "%s not found" % ref}
        return unknown("pg.running", title, expected, missing, evidence={"workload": ref})
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    replicas = spec.get("replicas")
    replicas = 1 if replicas is None else int(replicas)
    evidence = {"workload": ref, "replicas": replicas, "ready_replicas": status.get("readyReplicas") or 0}
    if replicas == 0:
        evidence["stopped"] = True
        return finding("pg.running", title, "problem", "%s scaled to 0 replicas" % ref, expected, evidence)
    return finding(
        "pg.running",
        title,
        "ok",
        "%d replica(s), %d ready" % (replicas, evidence["ready_replicas"]),
        expected,
        evidence,
    )


# --- diagnosis and plan ------------------------------------------------------------------------------------
def diagnose(evidence, settings, previous=None, applied=()):
    """The Compose diagnosis over the API's pool settings and replicas, plus the Kubernetes checks."""
    s = settings
    facts = normalise(evidence)
    result = dc.diagnose(as_compose_evidence(evidence, facts, s), s)
    findings = []
    running = check_running(facts, s, any(f["check"] == "pg.up" and f["status"] == "ok" for f in result["findings"]))
    for item in result["findings"]:
        if item["check"] == "pg.running":
            item = running
        if item["check"] == "app.connectivity" and item["evidence"] is not None:
            item = dict(item, evidence=dict(item["evidence"]))
            item["evidence"].pop("exec_probe", None)
            item["title"] = "The %s reaches PostgreSQL (its /health)" % s["app_service"]
            item["expected"] = "/health postgres ok"
        findings.append(item)
    findings += [
        check_pods(facts, s, "db"),
        check_pods(facts, s, "app"),
        check_service(facts, s),
        check_network_policy(facts, s),
    ]
    context = dict(
        result["context"],
        db_stopped=bool(running["evidence"].get("stopped")),
        db_state=running["observed"],
        dependants_failing=[],
        pool_source=pool_source(facts, s),
        dns_exec=dns_exec(facts, s),
        blocking=blocking_policies(facts, s)[1],
        deployments={p["app"]: s["k8s_app_workload"] for p in k8s.pods_summary(facts.get("app_pods"))},
    )
    return {
        "findings": findings,
        "scenarios": scenarios_named(dc.SCENARIOS, findings, CHECK_SCENARIO),
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _workload_ref(kind, name):
    return "%s/%s" % (kind, name)


def _k8s_action(item, s, ctx):
    """A Compose action rewritten for Kubernetes (or None to drop it)."""
    aid = item["id"]
    if aid == dc.START_ACTION:
        ref = _workload_ref(dc.DB_WORKLOAD_KIND, s["k8s_db_workload"])
        new = int(s["k8s_db_start_replicas"])
        return dict(
            item,
            title="scale %s from 0 to %d replicas" % (ref, new),
            resource="k8s:%s" % ref.lower(),
            change={
                "workload": ref,
                "kind": dc.DB_WORKLOAD_KIND,
                "name": s["k8s_db_workload"],
                "namespace": s["namespace"],
                "old": 0,
                "new": new,
                "op": "scale (kubernetes.core.k8s_scale)",
            },
            outcome="kubernetes.core.k8s_scale %s 0 -> %d (only while it still has 0), then wait for its pods "
            "(database_connections_k8s_rollout_timeout)" % (ref, new),
        )
    if aid == "database_connections.A.raise_pool":
        source = ctx.get("pool_source") or {}
        keys = item["change"]["keys"]
        restart = _workload_ref(dc.APP_WORKLOAD_KIND, s["k8s_app_workload"])
        if source.get("overrides") or not source.get("loaded"):
            return action(
                "database_connections.A.report_pool_env",
                "A",
                "report pool settings outside the ConfigMap",
                "k8s:%s" % restart.lower(),
                {"overrides": source.get("overrides"), "configmap": s["k8s_pool_configmap"]},
                "report",
                "L1: %s sets %s in its own env (or does not load ConfigMap %s): change the Deployment's env to %s"
                % (
                    restart,
                    ", ".join(sorted(source.get("overrides") or {})) or "nothing",
                    s["k8s_pool_configmap"],
                    ", ".join("%s=%s" % (k, v["new"]) for k, v in sorted(keys.items())),
                ),
            )
        ref = "configmap/%s/%s" % (s["namespace"], s["k8s_pool_configmap"])
        return dict(
            item,
            title="raise the pool of %s (ConfigMap) and restart it" % s["k8s_app_workload"],
            resource="k8s:%s" % restart.lower(),
            change={
                "file": ref,
                "configmap": s["k8s_pool_configmap"],
                "keys": keys,
                "data": {key: value["new"] for key, value in keys.items()},
                "restart": restart,
                "op": "ConfigMap patch + rollout restart (%s)" % k8s.RESTARTED_AT,
                "budget_per_replica": item["change"].get("budget_per_replica"),
            },
            outcome="%s in %s (max %s per replica within max_connections), then a rollout restart of %s"
            % (
                ", ".join("%s %s -> %s" % (k, v["old"], v["new"]) for k, v in sorted(keys.items())),
                ref,
                item["change"].get("budget_per_replica"),
                restart,
            ),
            _apply="raise_pool",
        )
    if aid == "database_connections.B.raise_max_connections":
        restart = _workload_ref(dc.DB_WORKLOAD_KIND, s["k8s_db_workload"])
        change = dict(
            item["change"],
            restart=restart,
            container=None,
            op="ALTER SYSTEM SET + rollout restart (%s)" % k8s.RESTARTED_AT,
        )
        return dict(
            item,
            change=change,
            resource="postgres:max_connections",
            outcome="ALTER SYSTEM SET max_connections = %s (community.postgresql.postgresql_set: kept in the "
            "data volume), then a rollout restart of %s: max_connections only changes at server start; "
            "every session ends" % (change["new"], restart),
        )
    if aid == "database_connections.D.report_network":
        blocking = ctx.get("blocking") or []
        return dict(
            item,
            change=dict(item["change"], blocking_policies=blocking, names=s["dns_names"]),
            outcome="L1: %s cannot reach PostgreSQL while it answers the diagnosis (%s). %s"
            % (
                s["app_service"],
                ctx.get("health_postgres") or "see the findings",
                "NetworkPolicy %s blocks the traffic: fix or remove it (a security change: not done here)"
                % ", ".join(blocking)
                if blocking
                else "Check the Service %s and its endpoints, and name resolution from the pods (%s)"
                % (s["k8s_db_service"], ", ".join(s["dns_names"])),
            ),
        )
    if aid.startswith("database_connections.C.report_leak_"):
        app = item["change"].get("application_name")
        owner = (ctx.get("deployments") or {}).get(app)
        if owner:
            return dict(item, change=dict(item["change"], workload=_workload_ref(dc.APP_WORKLOAD_KIND, owner)))
    return item


def plan(diagnosis, settings):
    """The Compose plan with the Kubernetes fixes (ConfigMap + rollout restart, StatefulSet restart) and the
    DNS check of scenario D."""
    s = settings
    ctx = diagnosis.get("context") or {}
    actions = []
    for item in dc.plan(diagnosis, dict(s, dry_run=False, approve=True, allow_disruptive=True)):
        item = dict(item)
        if item["status"] in ("planned", "awaiting_approval"):
            item["status"] = "planned"
        converted = _k8s_action(item, s, ctx)
        if converted is not None:
            actions.append(converted)
    if any(a["id"] == "database_connections.D.report_network" for a in actions) and ctx.get("dns_exec"):
        probe = ctx["dns_exec"]
        actions.append(
            action(
                "database_connections.D.check_dns",
                "D",
                "resolve the PostgreSQL Service names from a %s pod" % s["k8s_app_label"],
                "k8s:exec:%s" % probe["pod"],
                probe,
                "planned",
                "kubernetes.core.k8s_exec in pod %s (container %s): %s (reads only)"
                % (probe["pod"], probe["container"], probe["command"]),
                apply="check_dns",
            )
        )
    return gated(actions, s)


# --- prevention ------------------------------------------------------------------------------------------
def check_pdb(facts, s):
    title = "A PodDisruptionBudget covers the PostgreSQL pods"
    expected = "a PDB selecting app=%s" % s["k8s_db_label"]
    error = _api_error(facts, "pdbs")
    if error:
        return unknown("prevent.k8s.postgres_pdb", title, expected, error)
    labels = _pod_labels(facts.get("db_workload")) or {"app": s["k8s_db_label"]}
    pdbs = [
        p["metadata"]["name"]
        for p in facts.get("pdbs") or []
        if _selects((p.get("spec") or {}).get("selector"), labels)
    ]
    if pdbs:
        return finding("prevent.k8s.postgres_pdb", title, "ok", ", ".join(pdbs), expected, {"pdbs": pdbs})
    return finding(
        "prevent.k8s.postgres_pdb",
        title,
        "warning",
        "none: a drain may evict PostgreSQL at any time",
        expected,
        {"pdbs": []},
    )


def check_hpa_pool(facts, f_ctx, s):
    title = "The pool fits max_connections at the HPA's maximum replicas"
    expected = "pool max x maxReplicas <= max_connections - reserved"
    error = _api_error(facts, "hpas")
    if error:
        return unknown("prevent.k8s.pool_at_max_replicas", title, expected, error)
    hpa = next(
        (
            h
            for h in facts.get("hpas") or []
            if ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == s["k8s_app_workload"]
        ),
        None,
    )
    if hpa is None:
        return finding(
            "prevent.k8s.pool_at_max_replicas", title, "ok", "no HPA scales %s" % s["k8s_app_workload"], expected
        )
    maximum = int(hpa["spec"].get("maxReplicas") or 1)
    values = pool_source(facts, s)["values"]
    pool = sum(to_int(values.get(key), 0) or 0 for key in pool_keys(s))
    available = f_ctx.get("available")
    evidence = {"hpa": hpa["metadata"]["name"], "max_replicas": maximum, "pool_max": pool, "available": available}
    if not pool or available is None:
        return unknown(
            "prevent.k8s.pool_at_max_replicas",
            title,
            expected,
            {"kind": "other", "message": "pool settings or max_connections not known"},
            evidence=evidence,
        )
    wanted = pool * maximum
    status = "ok" if wanted <= available else "warning"
    return finding(
        "prevent.k8s.pool_at_max_replicas",
        title,
        status,
        "%d x %d = %d of %d" % (pool, maximum, wanted, available),
        expected,
        evidence,
        None if status == "ok" else "A",
    )


def prevention(evidence, settings):
    """The Compose prevention (pool x replicas, idle_in_transaction_session_timeout, alert rules) plus the
    PostgreSQL PDB and the pool at the HPA's maximum (reports)."""
    s = settings
    facts = normalise(evidence)
    result = dc.prevention(as_compose_evidence(evidence, facts, s), s)
    pg = (evidence or {}).get("postgres") or {}
    conn = pg.get("connections") or {}
    available = None
    if conn.get("max_connections"):
        available = (
            conn["max_connections"]
            - (conn.get("superuser_reserved_connections") or 0)
            - (conn.get("reserved_connections") or 0)
        )
    pdb = check_pdb(facts, s)
    hpa = check_hpa_pool(facts, {"available": available}, s)
    actions = list(result["actions"])
    if pdb["status"] == "warning":
        actions.append(
            action(
                "database_connections.prevent.report_postgres_pdb",
                None,
                "report PostgreSQL without a PDB",
                "k8s:pdb:%s" % s["k8s_db_label"],
                {"selector": {"app": s["k8s_db_label"]}},
                "report",
                "L1: add a PodDisruptionBudget for app=%s (with one replica, maxUnavailable: 0 makes a drain wait for "
                "an operator)" % s["k8s_db_label"],
            )
        )
    if hpa["status"] == "warning":
        actions.append(
            action(
                "database_connections.prevent.report_pool_at_max_replicas",
                "A",
                "report a pool that does not fit at the HPA's maximum",
                "k8s:hpa:%s" % s["k8s_app_workload"],
                hpa["evidence"],
                "report",
                "L1: at %s replicas the pool needs %s connections: lower the HPA's maxReplicas or the pool, or raise "
                "max_connections"
                % (hpa["evidence"]["max_replicas"], hpa["evidence"]["max_replicas"] * hpa["evidence"]["pool_max"]),
            )
        )
    return {"findings": result["findings"] + [pdb, hpa], "actions": actions, "context": result["context"]}
