"""resource_exhaustion's Kubernetes side against the Kubernetes API EMULATOR (kmock) seeded with lab/kubernetes:
node conditions, pod usage from the metrics API (served only where a test calls ``serve_metrics``: its absence is
evidence), eviction events; the findings and the method, path, content type and body of every API write.

The emulator serves no eviction: the drain (kubernetes.core.k8s_drain) is asserted at the level of the module
arguments the plan hands the task unchanged, and end to end only as awaiting approval. B and D (backups, log
rotation) are host files, not visible through the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from k8s_emulator import KubernetesAPIEmulator
from k8s_results import by_check, by_id, collect_evidence, task_args

pytestmark = pytest.mark.kubernetes

NS = "/apis/apps/v1/namespaces/octollm"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
FAST = {"resource_exhaustion_k8s_rollout_timeout": 0}
READS = {
    "resource_exhaustion_nodes": {"kind": "Node", "namespaced": False},
    "resource_exhaustion_pods": {"kind": "Pod"},
    "resource_exhaustion_deployments": {"kind": "Deployment", "api_version": "apps/v1"},
    "resource_exhaustion_statefulsets": {"kind": "StatefulSet", "api_version": "apps/v1"},
    "resource_exhaustion_hpas": {"kind": "HorizontalPodAutoscaler", "api_version": "autoscaling/v2"},
    "resource_exhaustion_events": {"kind": "Event", "field_selector": "type=Warning"},
    "resource_exhaustion_pod_metrics": {"kind": "PodMetrics", "api_version": "metrics.k8s.io/v1beta1"},
}
SETTINGS = procedure_settings("resource_exhaustion", platform="kubernetes")


def test_the_procedure_needs_these_reads() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
    from ansible_collections.octollm.remediation.plugins.plugin_utils.resource_exhaustion import PROCEDURE

    context = Context(platform="kubernetes", inventory={"k8s": {"namespace": "octollm"}})
    assert PROCEDURE.needs(SETTINGS, context) == {"kubernetes": {"objects": READS}}


def pod_name(k8s_api: KubernetesAPIEmulator, app: str) -> str:
    return str(k8s_api.objects_of("v1/pods", f"app={app}")[0]["metadata"]["name"])


def busy_metrics(k8s_api: KubernetesAPIEmulator) -> dict[str, str]:
    """metrics-server's view: executor-arm at 95% of its 1 CPU, retriever-arm at 245Mi of 256Mi, the rest idle."""
    names = {app: pod_name(k8s_api, app) for app in ("executor-arm", "retriever-arm", "planner-arm")}
    k8s_api.serve_metrics({
        names["executor-arm"]: {"executor-arm": {"cpu": "950m", "memory": "120Mi"}},
        names["retriever-arm"]: {"retriever-arm": {"cpu": "100m", "memory": "245Mi"}},
        names["planner-arm"]: {"planner-arm": {"cpu": "20000000n", "memory": "80Mi"}},
        "postgres-0": {"postgres": {"cpu": "50m", "memory": "200Mi"}, "postgres-exporter": {"cpu": "1m",
                                                                                             "memory": "20Mi"}},
    })
    return names


def pressure(k8s_api: KubernetesAPIEmulator, node: str, condition: str) -> None:
    obj = k8s_api.get("v1/nodes", node, namespace=None)
    for item in obj["status"]["conditions"]:
        if item["type"] == condition:
            item["status"] = "True"
    k8s_api.seed([obj])


def evicted(pod: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "Evicted", "count": 1,
            "metadata": {"name": f"{pod}.evicted"}, "involvedObject": {"kind": "Pod", "name": pod},
            "message": message, "lastTimestamp": "2026-11-28T09:59:00Z"}


# --- plugin level ------------------------------------------------------------------------------------------------
def test_a_healthy_cluster_without_metrics_server(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    """No metrics API (the emulator's default, a cluster without metrics-server): a warning, not an error."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import resource_exhaustion_kubernetes as rek

    evidence = collect_evidence(k8s_api, tmp_path, READS)
    reads = evidence["kubernetes"]["objects"]
    assert "No matches found" in reads["resource_exhaustion_pod_metrics"]["error"]["message"]
    assert len(reads["resource_exhaustion_pods"]["items"]) == 15  # the other reads are unharmed
    diagnosis = rek.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["k8s.node_pressure"]["status"] == "ok"
    assert found["k8s.pod_cpu"]["status"] == "warning" and found["k8s.pod_cpu"]["evidence"] == {"metrics_api": False}
    assert found["k8s.pod_memory"]["status"] == "warning"
    assert found["k8s.evictions"]["status"] == "ok"
    assert not any(item["status"] in ("problem", "unknown") for item in diagnosis["findings"])
    assert not any(item["holds"] for item in diagnosis["scenarios"])
    assert rek.plan(diagnosis, dict(SETTINGS, approve=True)) == []
    prevention = by_check(rek.prevention(evidence, SETTINGS)["findings"])
    assert prevention["prevent.k8s.metrics_api"]["status"] == "warning"
    assert prevention["prevent.k8s.hpa"]["status"] == "ok"  # the orchestrator's HPA
    assert prevention["prevent.k8s.memory_limits"]["status"] == "ok"
    assert k8s_api.writes() == []


def test_the_top_consumer_is_scaled_out_or_restarted(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import resource_exhaustion_kubernetes as rek

    names = busy_metrics(k8s_api)
    diagnosis = rek.diagnose(collect_evidence(k8s_api, tmp_path, READS), SETTINGS)
    found = by_check(diagnosis["findings"])
    cpu = found["k8s.pod_cpu"]
    assert cpu["status"] == "problem" and cpu["scenario"] == "A"
    assert [(r["pod"], r["cpu_ratio"]) for r in cpu["evidence"]["high"]] == [(names["executor-arm"], 0.95)]
    memory = found["k8s.pod_memory"]
    assert memory["status"] == "problem"
    assert [(r["pod"], r["memory_ratio"]) for r in memory["evidence"]["high"]] == [(names["retriever-arm"], 0.957)]
    assert diagnosis["context"]["consumer"]["workload"] == "Deployment/retriever-arm"  # 95.7% > 95%
    restart = rek.plan(diagnosis, dict(SETTINGS, approve=False))
    assert [(a["id"], a["status"], a["disruptive"]) for a in restart] == [
        ("resource_exhaustion.A.restart_retriever_arm", "awaiting_approval", True)]
    # CPU-bound: scaled out by one (not disruptive); at the bound: restarted
    cpu_settings = procedure_settings("resource_exhaustion", {"memory_high_percent": 99}, platform="kubernetes")
    cpu_diag = rek.diagnose(collect_evidence(k8s_api, tmp_path, READS), cpu_settings)
    scale = rek.plan(cpu_diag, dict(cpu_settings, approve=False))[0]
    assert (scale["id"], scale["status"], scale["disruptive"]) == ("resource_exhaustion.A.scale_executor_arm",
                                                                   "planned", False)
    assert {k: scale["change"][k] for k in ("workload", "old", "new", "op")} == {
        "workload": "Deployment/executor-arm", "old": 1, "new": 2, "op": "kubernetes.core.k8s_scale"}
    bounded = rek.plan(cpu_diag, dict(cpu_settings, approve=True, k8s_max_replicas=1))[0]
    assert bounded["id"] == "resource_exhaustion.A.restart_executor_arm"
    assert k8s_api.writes() == []


def test_a_node_under_pressure_is_drained_with_these_arguments(k8s_api: KubernetesAPIEmulator,
                                                              tmp_path: Path) -> None:
    """k8s_drain at the level of its module arguments: the plan's change.drain is what the task passes."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import resource_exhaustion_kubernetes as rek
    from conftest import REPO

    pressure(k8s_api, "node-1", "MemoryPressure")
    victim = pod_name(k8s_api, "judge-arm")
    k8s_api.seed([evicted(victim, "The node was low on resource: memory. Threshold quantity: 100Mi.")])
    diagnosis = rek.diagnose(collect_evidence(k8s_api, tmp_path, READS), SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["k8s.node_pressure"]["status"] == "problem" and found["k8s.node_pressure"]["scenario"] == "A"
    assert found["k8s.node_pressure"]["observed"] == "node-1: MemoryPressure"
    assert found["k8s.evictions"]["status"] == "problem" and found["k8s.evictions"]["scenario"] == "A"
    drain = by_id(rek.plan(diagnosis, dict(SETTINGS, approve=True)))["resource_exhaustion.A.drain_node_1"]
    assert drain["status"] == "planned" and drain["disruptive"] is True
    assert drain["change"]["to_nodes"] == ["node-2"]
    assert drain["change"]["drain"] == {
        "state": "drain", "name": "node-1",
        "delete_options": {"ignore_daemonsets": True, "delete_emptydir_data": False, "disable_eviction": False,
                           "force": False, "terminate_grace_period": 30, "wait_timeout": 300}}
    drain_file = REPO / "roles/resource_exhaustion/tasks/kubernetes/actions/drain.yml"
    module = task_args(drain_file, "kubernetes.core.k8s_drain")
    assert module == {"state": "{{ _common_action.change.drain.state }}",
                      "name": "{{ _common_action.change.drain.name }}",
                      "delete_options": "{{ _common_action.change.drain.delete_options }}"}

    # DiskPressure is C; with both nodes under pressure there is nowhere to go: a report
    pressure(k8s_api, "node-2", "DiskPressure")
    both = rek.diagnose(collect_evidence(k8s_api, tmp_path, READS), SETTINGS)
    assert {s["id"]: s["holds"] for s in both["scenarios"]} == {"A": True, "B": False, "C": True, "D": False}
    assert "not visible through the API" in {s["id"]: s["reason"] for s in both["scenarios"]}["B"]
    assert [(a["id"], a["status"]) for a in rek.plan(both, dict(SETTINGS, approve=True))] == [
        ("resource_exhaustion.A.report_node_node_1", "report"), ("resource_exhaustion.C.report_node_node_2", "report")]
    assert k8s_api.writes() == []


# --- end to end (two runs) ------------------------------------------------------------------------------------
def test_resolve_without_approval_scales_out_and_leaves_the_drain_waiting(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    """node-1 under MemoryPressure and executor-arm CPU-bound: the scale-out adds a pod (not disruptive, applied
    without approval), the drain waits for approval and writes nothing."""
    pressure(k8s_api, "node-1", "MemoryPressure")
    busy_metrics(k8s_api)
    result = run_k8s("resource_exhaustion", "resolve", resource_exhaustion_memory_high_percent=99, **FAST)
    assert result["platform"] == "kubernetes"
    found = by_check(result["findings"])
    assert found["k8s.node_pressure"]["status"] == "problem"
    assert found["k8s.pod_cpu"]["status"] == "problem" and found["k8s.pod_memory"]["status"] == "ok"
    done = by_id(result["actions"])
    drain = done["resource_exhaustion.A.drain_node_1"]
    assert drain["status"] == "awaiting_approval" and drain["change"]["drain"]["name"] == "node-1"
    scale = done["resource_exhaustion.A.scale_executor_arm"]
    assert scale["status"] == "applied", scale
    assert "from 1 to 2 replicas" in scale["outcome"]
    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [("PATCH", f"{NS}/deployments/executor-arm/scale")]
    assert writes[0].body["spec"] == {"replicas": 2}
    assert k8s_api.get("apps/v1/deployments", "executor-arm")["spec"]["replicas"] == 2
    assert result["escalation"]["level"] == "L2"  # the drain of scenario A is still pending


def test_resolve_with_approval_restarts_the_top_memory_consumer(run_k8s: Any,
                                                                k8s_api: KubernetesAPIEmulator) -> None:
    busy_metrics(k8s_api)
    result = run_k8s("resource_exhaustion", "resolve", octollm_approve=True, **FAST)
    restart = by_id(result["actions"])["resource_exhaustion.A.restart_retriever_arm"]
    assert restart["status"] == "applied", restart
    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [("PATCH", f"{NS}/deployments/retriever-arm")]
    assert writes[0].content_type == "application/strategic-merge-patch+json"
    assert set(writes[0].body) <= {"apiVersion", "kind", "metadata", "spec"}
    stamp = writes[0].body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert writes[0].body["spec"] == {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    assert result["verification"]["healthy"] is False  # the metrics did not change: no controller, no new pod
    assert result["escalation"]["level"] == "L3"  # problems left after a fix: one level above L2
