"""memory_leaks' Kubernetes side against the Kubernetes API EMULATOR (kmock) seeded with lab/kubernetes: OOM kills
and restarts from the pods' container statuses, memory use against the limit from the metrics API (served only
where a test calls ``serve_metrics``), containers without a memory limit; the findings and the method, path,
content type and body of every API write.

What needs a real cluster: the growth over time (Prometheus' deriv of container_memory_working_set_bytes, the
Compose side's evidence; one metrics API sample shows the level only) and the controller's rolling replacement.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from k8s_emulator import KubernetesAPIEmulator
from k8s_results import by_check, by_id, collect_evidence

pytestmark = pytest.mark.kubernetes

NS = "/apis/apps/v1/namespaces/octollm"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
FAST = {"memory_leaks_k8s_rollout_timeout": 0}
READS = {
    "memory_leaks_pods": {"kind": "Pod"},
    "memory_leaks_deployments": {"kind": "Deployment", "api_version": "apps/v1"},
    "memory_leaks_statefulsets": {"kind": "StatefulSet", "api_version": "apps/v1"},
    "memory_leaks_events": {"kind": "Event", "field_selector": "type=Warning"},
    "memory_leaks_pod_metrics": {"kind": "PodMetrics", "api_version": "metrics.k8s.io/v1beta1"},
}
SETTINGS = procedure_settings("memory_leaks", platform="kubernetes")


def oom_killed(pod: dict[str, Any], restarts: int = 3) -> dict[str, Any]:
    """A pod whose container was OOM-killed and came back (Running, Ready again: the leak starts over)."""
    status = pod["status"]["containerStatuses"][0]
    status.update(restartCount=restarts, lastState={"terminated": {
        "reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-11-28T09:40:00Z"}})
    return pod


def without_memory_limit(k8s_api: KubernetesAPIEmulator, app: str) -> dict[str, Any]:
    deployment = k8s_api.get("apps/v1/deployments", app)
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    del limits["memory"]
    pods = k8s_api.objects_of("v1/pods", f"app={app}")
    for pod in pods:
        pod["spec"]["containers"] = copy.deepcopy(deployment["spec"]["template"]["spec"]["containers"])
    k8s_api.seed([deployment, *pods])
    return deployment


def leak(k8s_api: KubernetesAPIEmulator) -> dict[str, Any]:
    """The seed's leak: both orchestrator pods were OOM-killed at 256Mi, planner-arm holds 240Mi of its 256Mi
    (metrics-server), judge-arm runs without a memory limit."""
    orchestrator = [oom_killed(pod) for pod in k8s_api.objects_of("v1/pods", "app=orchestrator")]
    planner = k8s_api.objects_of("v1/pods", "app=planner-arm")[0]
    k8s_api.seed(orchestrator)
    without_memory_limit(k8s_api, "judge-arm")
    k8s_api.serve_metrics({
        planner["metadata"]["name"]: {"planner-arm": {"cpu": "100m", "memory": "240Mi"}},
        orchestrator[0]["metadata"]["name"]: {"orchestrator": {"cpu": "200m", "memory": "150Mi"}},
    })
    return {"orchestrator": sorted(p["metadata"]["name"] for p in orchestrator),
            "planner": planner["metadata"]["name"]}


# --- plugin level ------------------------------------------------------------------------------------------------
def test_a_healthy_cluster_gives_no_problem(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import memory_leaks_kubernetes as mlk
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context, get

    # the reads are the procedure's needs on Kubernetes
    assert get("memory_leaks").needs(SETTINGS, Context(platform="kubernetes")) == {"kubernetes": {"objects": READS}}
    diagnosis = mlk.diagnose(collect_evidence(k8s_api, tmp_path, READS), SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["k8s.memory.oom_kills"]["status"] == "ok"
    assert found["k8s.memory.restarts"]["status"] == "ok"
    assert found["k8s.memory.limits"]["status"] == "ok"
    near = found["k8s.memory.near_limit"]  # no metrics-server here: evidence, not an error
    assert near["status"] == "warning" and near["evidence"] == {"metrics_api": False}
    assert not any(item["holds"] for item in diagnosis["scenarios"])
    assert mlk.plan(diagnosis, dict(SETTINGS, approve=True)) == []
    assert k8s_api.writes() == []


def test_the_leak_and_the_missing_limit_are_found(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import memory_leaks_kubernetes as mlk

    seeded = leak(k8s_api)
    diagnosis = mlk.diagnose(collect_evidence(k8s_api, tmp_path, READS), SETTINGS)
    found = by_check(diagnosis["findings"])
    oom = found["k8s.memory.oom_kills"]
    assert oom["status"] == "problem" and oom["scenario"] == "A"
    assert [(k["pod"], k["restarts"], k["memory_limit"], k["finished_at"]) for k in oom["evidence"]["killed"]] == [
        (name, 3, "256Mi", "2026-11-28T09:40:00Z") for name in seeded["orchestrator"]]
    near = found["k8s.memory.near_limit"]
    assert near["status"] == "problem" and near["scenario"] == "A"
    assert [(r["pod"], r["memory_bytes"], r["memory_ratio"]) for r in near["evidence"]["high"]] == [
        (seeded["planner"], 240 * 1024 * 1024, 0.938)]
    restarts = found["k8s.memory.restarts"]
    assert restarts["status"] == "warning" and len(restarts["evidence"]["restarts"]) == 2
    limits = found["k8s.memory.limits"]
    assert limits["status"] == "warning" and limits["evidence"]["without_limit"] == {
        "Deployment/judge-arm": ["judge-arm"]}
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]} == {"A": True, "B": True}
    assert diagnosis["context"]["suspects"] == ["Deployment/orchestrator", "Deployment/planner-arm"]
    assert diagnosis["escalation"]["level"] == "L2"

    waiting = mlk.plan(diagnosis, dict(SETTINGS, approve=False, memory_limit="256m"))
    assert [(a["id"], a["status"]) for a in waiting] == [
        ("memory_leaks.B.set_memory_limit.judge-arm.judge-arm", "awaiting_approval"),
        ("memory_leaks.A.rolling_restart.orchestrator", "awaiting_approval"),
        ("memory_leaks.A.report.orchestrator", "report"),
        ("memory_leaks.A.rolling_restart.planner-arm", "awaiting_approval"),
        ("memory_leaks.A.report.planner-arm", "report")]
    limit = waiting[0]["change"]
    assert (limit["old"], limit["new"]) == (None, "256Mi")  # the Compose-style 256m as a Kubernetes quantity
    assert waiting[2]["outcome"].startswith("L2: the restart only buys time")
    assert k8s_api.writes() == []


# --- end to end (two runs) ------------------------------------------------------------------------------------
def test_resolve_with_approval_sets_the_limit_and_rolls_the_leaking_workloads(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    leak(k8s_api)
    result = run_k8s("memory_leaks", "resolve", octollm_approve=True, **FAST)
    done = by_id(result["actions"])
    for ident in ("memory_leaks.B.set_memory_limit.judge-arm.judge-arm", "memory_leaks.A.rolling_restart.orchestrator",
                  "memory_leaks.A.rolling_restart.planner-arm"):
        assert done[ident]["status"] == "applied", done[ident]
    assert done["memory_leaks.A.report.orchestrator"]["status"] == "report"
    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", f"{NS}/deployments/judge-arm"),
        ("PATCH", f"{NS}/deployments/orchestrator"),
        ("PATCH", f"{NS}/deployments/planner-arm"),
    ]
    assert all(w.content_type == "application/strategic-merge-patch+json" for w in writes)
    assert writes[0].body["spec"] == {"template": {"spec": {"containers": [
        {"name": "judge-arm", "resources": {"limits": {"memory": "256Mi"}}}]}}}
    for restart in writes[1:]:
        assert set(restart.body) <= {"apiVersion", "kind", "metadata", "spec"}
        stamp = restart.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        assert restart.body["spec"] == {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    # the limit is in the template now; the OOM history and the metrics stay (no controller, no new pod); the
    # leak's report to the owning team keeps the procedure's level (L2)
    after = by_check(result["verification"]["findings"])
    assert after["k8s.memory.limits"]["status"] == "ok"
    assert after["k8s.memory.oom_kills"]["status"] == "problem"
    assert result["verification"]["healthy"] is False
    assert result["escalation"]["level"] == "L2" and "memory_leaks.A.report.orchestrator" in result["escalation"][
        "reason"]


def test_prevent_without_approval_plans_the_limit_and_writes_nothing(run_k8s: Any,
                                                                   k8s_api: KubernetesAPIEmulator) -> None:
    without_memory_limit(k8s_api, "judge-arm")
    result = run_k8s("memory_leaks", "prevent", **FAST)
    prevention = result["prevention"]
    found = by_check(prevention["findings"])
    assert found["prevent.k8s.memory.limits"]["status"] == "problem"
    assert found["prevent.k8s.memory.metrics_api"]["status"] == "warning"
    planned = by_id(prevention["actions"])
    assert planned["memory_leaks.prevent.set_memory_limit.judge-arm.judge-arm"]["status"] == "awaiting_approval"
    assert planned["memory_leaks.prevent.report_metrics_api"]["status"] == "report"
    assert k8s_api.writes() == []
