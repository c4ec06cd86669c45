# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""security_violations on Kubernetes: the Compose judgement, with the guardian's log, lists and settings from the
cluster, and a quarantine NetworkPolicy for an offending workload.

- guardian-arm's log is its pods' log read through the API (PII masked by the collector, which counts what it
  masked), in place of ``docker logs``;
- its blocked lists are the keys of its ConfigMap (mounted at /etc/octollm/guardian), its settings the
  ``GUARDIAN_*`` keys of the services' ConfigMap (``envFrom``), in place of ``docker exec``;
- the NetworkPolicies and Deployments of the namespace: a source that keeps trying and is a workload of the
  namespace (a Deployment of that name or app label) is isolated by labelling its pods for the quarantine policy.

Fixes:

- A  bundle the redacted evidence on the controller and mark it handled (as on Compose); escalate to L3 always.
- B/C append the lines to the guardian ConfigMap's key (one patch), then one rollout restart of guardian-arm
     loads them (``security_violations.reload_guardian``, disruptive).
- C  for an offending workload of the namespace: ``security_violations.C.quarantine_<workload>`` ensures the
     quarantine NetworkPolicy (deny all ingress and egress for pods labelled ``octollm.io/quarantine``) and labels
     the workload's running pods (disruptive: they lose all traffic; a restart of the workload ends it).
- D  the raw log lives in the kubelet's files, which the API cannot rewrite: copy each guardian pod's log to the
     quarantine dir (mode 600), then a rollout restart of guardian-arm replaces the pods, and their logs go with
     them (disruptive). Copies held elsewhere (a log shipper) stay with L3.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils import security_violations as sv
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import gated, slug
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import action, escalation, finding, unknown

PREFIX = "security_violations_"
READS = ("pods", "guardian_configmap", "settings_configmap", "network_policies", "workloads")
QUARANTINE_LABEL = "octollm.io/quarantine"


def _first(read):
    return read["items"][0] if read["items"] else None


def configmap_ref(s, key=None):
    ref = "configmap/%s/%s" % (s["namespace"], s["k8s_guardian_configmap"])
    return "%s:%s" % (ref, key) if key else ref


def quarantine_policy(s):
    """The quarantine NetworkPolicy: every pod labelled octollm.io/quarantine loses all ingress and egress."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": s["k8s_quarantine_policy"],
            "namespace": s["namespace"],
            "labels": {"app.kubernetes.io/managed-by": "octollm-remediation"},
        },
        "spec": {
            "podSelector": {"matchExpressions": [{"key": QUARANTINE_LABEL, "operator": "Exists"}]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }


def with_cluster(evidence, reads, s):
    """The evidence in the Compose shape: the pods' log as the guardian's, the ConfigMaps' keys as its exec probes."""
    evidence = copy.deepcopy(evidence or {})
    log = reads["pods"]["log"] or {"lines": [], "redactions": {}, "error": reads["pods"]["error"]}
    if log.get("error") and not log.get("lines"):
        log = None  # no log read: the log checks are unknown, as when docker logs fails
    settings_cm = _first(reads["settings_configmap"])
    guardian_cm = _first(reads["guardian_configmap"])
    probes = []
    if settings_cm is not None:
        data = settings_cm.get("data") or {}
        probes.append(
            {
                "name": sv.EXEC_SETTINGS,
                "ok": True,
                "exit_code": 0,
                "output": "\n".join("%s=%s" % (key, data[key]) for key in sorted(data) if key.startswith("GUARDIAN_")),
            }
        )
    else:
        missing = {"kind": "other", "message": "no ConfigMap %s" % s["k8s_settings_configmap"]}
        probes.append(
            {
                "name": sv.EXEC_SETTINGS,
                "ok": False,
                "exit_code": None,
                "error": reads["settings_configmap"]["error"] or missing,
            }
        )
    data = (guardian_cm or {}).get("data") or {}
    error = reads["guardian_configmap"]["error"] or {"kind": "other", "message": "no %s" % configmap_ref(s)}
    for name, key in ((sv.EXEC_COMMANDS, s["k8s_commands_key"]), (sv.EXEC_SOURCES, s["k8s_sources_key"])):
        if guardian_cm is not None and key in data:
            probes.append({"name": name, "ok": True, "exit_code": 0, "output": data[key] or ""})
        elif guardian_cm is not None and name == sv.EXEC_SOURCES:
            probes.append({"name": name, "ok": False, "exit_code": 1, "output": ""})  # no file: nothing blocked
        else:
            probes.append({"name": name, "ok": False, "exit_code": None, "error": error})
    evidence["containers"] = {
        "ok": True,
        "containers": [],
        "logs": {s["service"]: log} if log else {},
        "exec_probes": probes,
    }
    if log is None:
        evidence["containers"]["logs"] = {}
        evidence["containers"]["error"] = reads["pods"]["error"] or (reads["pods"]["log"] or {}).get("error")
    return evidence


def workloads_of(reads, sources):
    """``{source: {workload, selector, pods}}`` for the sources that are Deployments of the namespace (by name or
    app label)."""
    found = {}
    for deployment in reads["workloads"]["items"]:
        meta = deployment.get("metadata") or {}
        names = {meta.get("name"), (meta.get("labels") or {}).get("app")}
        for source in sources:
            if source in names:
                selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                found[source] = {"workload": meta.get("name"), "selector": selector}
    return found


def quarantined(reads, s):
    """Whether the quarantine policy exists (deny-all for the label)."""
    names = {(p.get("metadata") or {}).get("name") for p in reads["network_policies"]["items"]}
    return s["k8s_quarantine_policy"] in names


def check_offenders(reads, to_block, s):
    title = "No offending workload of the namespace keeps its network access"
    expected = "offending workloads isolated by %s" % s["k8s_quarantine_policy"]
    error = reads["workloads"]["error"] or reads["network_policies"]["error"]
    if error:
        return unknown("k8s.offending_workloads", title, expected, error, "C")
    offenders = workloads_of(reads, to_block)
    evidence = {
        "offenders": {src: item["workload"] for src, item in offenders.items()},
        "quarantine_policy": quarantined(reads, s),
    }
    if offenders:
        return finding(
            "k8s.offending_workloads",
            title,
            "problem",
            ", ".join("Deployment/%s" % item["workload"] for item in offenders.values()),
            expected,
            evidence,
            "C",
        )
    return finding("k8s.offending_workloads", title, "ok", "none", expected, evidence)


def diagnose(evidence, settings=None, previous=None, applied=()):
    """security_violations' diagnosis from the guardian's pods and ConfigMaps, plus the offending workloads."""
    s = settings
    reads = k8s.named_reads(evidence, PREFIX, READS)
    result = sv.diagnose(with_cluster(evidence, reads, s), s, previous, applied)
    to_block = result["context"].get("to_block") or []
    findings = result["findings"] + [check_offenders(reads, to_block, s)]
    offenders = workloads_of(reads, to_block)
    context = dict(
        result["context"],
        offenders=offenders,
        quarantine_policy=quarantined(reads, s),
        guardian_pods=sorted((reads["pods"]["log"] or {}).get("pods") or []),
    )
    return {
        "findings": findings,
        "scenarios": result["scenarios"],
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def plan(diagnosis, settings=None):
    """security_violations' plan on Kubernetes (see the module's doc), gated by approval."""
    s = settings
    ctx = diagnosis.get("context") or {}
    base = dict(
        s, blocked_file=configmap_ref(s, s["k8s_commands_key"]), sources_file=configmap_ref(s, s["k8s_sources_key"])
    )
    raw = sv.plan(diagnosis, dict(base, dry_run=False, approve=True))
    restart = "Deployment/%s" % s["k8s_guardian_workload"]
    actions, added = [], []
    for item in raw:
        item = dict(item)
        change = dict(item.get("change") or {})
        if item.get("_apply") == "add_lines":
            change.pop("_reload_url", None)  # the rollout restart below loads the lists
            key = s["k8s_commands_key"] if item["id"].endswith("block_commands") else s["k8s_sources_key"]
            change.update(configmap=s["k8s_guardian_configmap"], key=key, then="rollout restart of %s" % restart)
            item.update(
                change=change,
                _apply="add_configmap_lines",
                outcome="append %d line(s) to %s; %s loads "
                "them when it restarts" % (len(change["add"]), change["file"], restart),
            )
            added.append(item["id"])
            actions.append(item)
            if item["id"] == "security_violations.C.block_sources":
                actions.extend(_quarantine_actions(ctx, s))
            continue
        if item.get("_apply") == "quarantine_logs":
            change = {
                "pods": ctx.get("guardian_pods") or [],
                "quarantine_dir": s["quarantine_dir"],
                "matches_by_kind": change.get("matches_by_kind") or {},
                "restart": restart,
                "op": "copy each pod's log (mode 600), then rollout restart (%s)" % k8s.RESTARTED_AT,
            }
            item.update(
                change=change,
                _apply="quarantine_pod_logs",
                outcome=(
                    "copy the log of %s to %s (mode 600), then a rollout restart of %s: the new pods start with "
                    "empty logs and the kubelet removes the old ones with their pods; copies held by a log shipper "
                    "stay with L3" % (", ".join(change["pods"]) or "the guardian pods", s["quarantine_dir"], restart)
                ),
            )
            if not s["quarantine_dir"]:
                item.update(
                    status="report",
                    outcome="L3: set security_violations_quarantine_dir (a directory "
                    "on the controller) to quarantine the guardian's log; nothing was copied",
                )
                item.pop("_apply", None)
        if item.get("_apply") == "bundle_evidence" and not s["evidence_dir"]:
            item.update(
                status="report",
                outcome="L3: set security_violations_evidence_dir (a directory on the "
                "controller) to bundle the evidence; the findings above are the evidence of this run",
            )
            item.pop("_apply", None)
        actions.append(item)
    d_restarts = any(item["id"] == "security_violations.D.quarantine_logs" and item.get("_apply") for item in actions)
    if added and not d_restarts:
        reload_action = action(
            "security_violations.reload_guardian",
            "B" if "security_violations.B.block_commands" in added else "C",
            "load the new lists: rollout restart of guardian-arm",
            "%s:restart" % restart,
            {"workload": restart, "op": "rollout restart (%s)" % k8s.RESTARTED_AT, "after": added},
            "planned",
            "rollout restart of %s so that it reads the patched %s" % (restart, configmap_ref(s)),
            disruptive=True,
            apply="restart_guardian",
        )
        reload_action["_after"] = added[0]
        escalate = [i for i, item in enumerate(actions) if item["id"] == "security_violations.escalate"]
        actions.insert(escalate[0] if escalate else len(actions), reload_action)
    return gated(actions, s)


def _quarantine_actions(ctx, s):
    found = []
    for source, item in sorted((ctx.get("offenders") or {}).items()):
        selector = ",".join("%s=%s" % kv for kv in sorted(item["selector"].items()))
        found.append(
            action(
                "security_violations.C.quarantine_%s" % slug(item["workload"]),
                "C",
                "quarantine Deployment/%s (NetworkPolicy %s)" % (item["workload"], s["k8s_quarantine_policy"]),
                "k8s:quarantine:%s" % item["workload"],
                {
                    "source": source,
                    "workload": "Deployment/%s" % item["workload"],
                    "pod_selector": selector,
                    "policy": s["k8s_quarantine_policy"],
                    "label": {QUARANTINE_LABEL: item["workload"]},
                    "_definition": quarantine_policy(s),
                },
                "planned",
                "ensure NetworkPolicy %s (deny all ingress and egress for pods labelled %s), then label the pods of "
                "Deployment/%s (%s): they lose all traffic until the label goes (a restart of the workload also ends "
                "it); deleting or scaling it down stays with L3"
                % (s["k8s_quarantine_policy"], QUARANTINE_LABEL, item["workload"], selector),
                disruptive=True,
                apply="quarantine_workload",
            )
        )
    return found


def check_network_policy(reads, s):
    title = "A default-deny or quarantine-ready NetworkPolicy exists in the namespace"
    expected = "a policy selecting all pods with no ingress rule, or %s" % s["k8s_quarantine_policy"]
    error = reads["network_policies"]["error"]
    if error:
        return unknown("prevent.k8s.network_policy", title, expected, error)
    default_deny, ready = [], quarantined(reads, s)
    for policy in reads["network_policies"]["items"]:
        spec = policy.get("spec") or {}
        if (
            spec.get("podSelector") in ({}, None)
            and "Ingress" in (spec.get("policyTypes") or ["Ingress"])
            and not spec.get("ingress")
        ):
            default_deny.append((policy.get("metadata") or {}).get("name"))
    evidence = {
        "default_deny": default_deny,
        "quarantine_ready": ready,
        "policies": sorted((p.get("metadata") or {}).get("name") for p in reads["network_policies"]["items"]),
    }
    if default_deny or ready:
        observed = ", ".join(
            ["default-deny: %s" % ", ".join(default_deny)] * bool(default_deny)
            + ["quarantine-ready: %s" % s["k8s_quarantine_policy"]] * ready
        )
        return finding("prevent.k8s.network_policy", title, "ok", observed, expected, evidence)
    return finding("prevent.k8s.network_policy", title, "warning", "none", expected, evidence)


def prevention(evidence, settings=None):
    """security_violations' prevention checks (audit logging and PII masking from the ConfigMap, the blocked list,
    the rule) plus the NetworkPolicy; a missing quarantine-ready policy is created (it selects no pod until one is
    labelled, so it is not disruptive)."""
    s = settings
    reads = k8s.named_reads(evidence, PREFIX, READS)
    result = sv.prevention(with_cluster(evidence, reads, s), s)
    policy = check_network_policy(reads, s)
    findings = result["findings"] + [policy]
    actions = list(result["actions"])
    if policy["status"] == "warning":
        actions.append(
            action(
                "security_violations.prevent.quarantine_policy",
                None,
                "create the quarantine-ready NetworkPolicy",
                "networkpolicy/%s/%s" % (s["namespace"], s["k8s_quarantine_policy"]),
                {
                    "policy": s["k8s_quarantine_policy"],
                    "selects": "pods labelled %s" % QUARANTINE_LABEL,
                    "_definition": quarantine_policy(s),
                },
                "planned",
                "create NetworkPolicy %s: deny all ingress and egress for pods labelled %s (none today), so "
                "that a quarantine is one label away" % (s["k8s_quarantine_policy"], QUARANTINE_LABEL),
                apply="ensure_quarantine_policy",
            )
        )
    return {"findings": findings, "actions": gated(actions, s), "context": {}}
