"""service_unavailable's Kubernetes side against the Kubernetes API EMULATOR (kmock) seeded with lab/kubernetes:
the four scenarios of the seed (A crash, B OOM, C database, D configuration) seeded as a cluster would show them,
the findings, and the method, path, content type and body of every API write.

The emulator has no controllers: a restart, a new limit or a rollback makes no new pods, so the verification after
a fix still sees the old pods (the problem is reported as left, one level up). Waiting for a rollout is off
(service_unavailable_k8s_rollout_timeout=0).
"""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from k8s_emulator import KubernetesAPIEmulator
from k8s_results import by_check, by_id, collect_evidence

pytestmark = pytest.mark.kubernetes

NS = "/apis/apps/v1/namespaces/octollm"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
FAST = {"service_unavailable_k8s_rollout_timeout": 0}
READS = {
    "service_unavailable_pods": {"kind": "Pod"},
    "service_unavailable_deployments": {"kind": "Deployment", "api_version": "apps/v1"},
    "service_unavailable_statefulsets": {"kind": "StatefulSet", "api_version": "apps/v1"},
    "service_unavailable_replicasets": {"kind": "ReplicaSet", "api_version": "apps/v1"},
    "service_unavailable_services": {"kind": "Service"},
    "service_unavailable_endpoints": {"kind": "Endpoints"},
    "service_unavailable_events": {"kind": "Event", "field_selector": "type=Warning"},
    "service_unavailable_pdbs": {"kind": "PodDisruptionBudget", "api_version": "policy/v1"},
}
SETTINGS = procedure_settings("service_unavailable", platform="kubernetes")


def pod_of(k8s_api: KubernetesAPIEmulator, app: str) -> dict[str, Any]:
    return k8s_api.objects_of("v1/pods", f"app={app}")[0]


def crash(pod: dict[str, Any], container: str, *, reason: str = "Error", exit_code: int = 1, restarts: int = 5,
          waiting: str = "CrashLoopBackOff", message: str | None = None) -> dict[str, Any]:
    """The pod as the kubelet shows a crash-looping container: not ready, waiting, the last termination."""
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"},
                                   {"type": "ContainersReady", "status": "False"}]
    for status in pod["status"]["containerStatuses"]:
        if status["name"] != container:
            continue
        last = {"reason": reason, "exitCode": exit_code, "finishedAt": "2026-11-28T09:58:00Z"}
        if message:
            last["message"] = message
        status.update(ready=False, restartCount=restarts, lastState={"terminated": last},
                      state={"waiting": {"reason": waiting, "message": "back-off 2m40s restarting failed container"}})
    return pod


def event(name: str, kind: str, reason: str, message: str, count: int = 5) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": reason, "count": count,
            "metadata": {"name": f"{name}.{reason.lower()}"}, "involvedObject": {"kind": kind, "name": name},
            "message": message, "lastTimestamp": "2026-11-28T09:59:00Z"}


def new_revision(k8s_api: KubernetesAPIEmulator, name: str, revision: int,
                 change: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment updated to ``revision`` by ``change`` (a function on its template): the old ReplicaSet keeps
    revision - 1 (scaled to 0), a new one holds the new template and the pods. Returns (old template, pod)."""
    deployment = k8s_api.get("apps/v1/deployments", name)
    old_template = copy.deepcopy(deployment["spec"]["template"])
    old_rs = next(rs for rs in k8s_api.objects_of("apps/v1/replicasets", f"app={name}"))
    old_hash = old_rs["metadata"]["labels"]["pod-template-hash"]
    old_rs["metadata"]["annotations"][REVISION] = str(revision - 1)
    old_rs["spec"]["replicas"] = 0
    old_rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = old_hash
    change(deployment["spec"]["template"])
    deployment["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
    new_hash = f"r{revision}x{name[:4]}"
    new_rs = copy.deepcopy(old_rs)
    new_rs["metadata"].update(name=f"{name}-{new_hash}", uid=f"uid-replicaset-{name}-{new_hash}",
                              annotations={REVISION: str(revision)},
                              labels={**old_rs["metadata"]["labels"], "pod-template-hash": new_hash})
    new_rs["spec"]["replicas"] = deployment["spec"]["replicas"]
    new_rs["spec"]["template"] = copy.deepcopy(deployment["spec"]["template"])
    new_rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = new_hash
    pods = k8s_api.objects_of("v1/pods", f"app={name}")
    for pod in pods:
        pod["metadata"]["labels"]["pod-template-hash"] = new_hash
        pod["metadata"]["ownerReferences"][0]["name"] = new_rs["metadata"]["name"]
        pod["spec"]["containers"] = copy.deepcopy(deployment["spec"]["template"]["spec"]["containers"])
    k8s_api.seed([deployment, old_rs, new_rs, *pods])
    return old_template, pods[0]


def with_env(name: str, value: str) -> Any:
    def change(template: dict[str, Any]) -> None:
        template["spec"]["containers"][0]["env"].append({"name": name, "value": value})
    return change


def break_the_stack(k8s_api: KubernetesAPIEmulator) -> dict[str, Any]:
    """One fault per scenario, as the kubelet and the controllers would show them:

    C  postgres-0 crash-loops (exit 1) and the postgres Service has no ready endpoint;
    B  planner-arm was OOM-killed at its 256Mi limit and crash-loops;
    D  orchestrator (revision 4) crash-loops on ``ValueError ... DB_POOL_SIZE`` (its previous revision 3 is
       unambiguous: kubernetes.core.k8s_rollback), coder-arm (revision 2) cannot start: ``couldn't find key
       CODER_MODEL`` (revision 1 is shared by every lab ReplicaSet: the JSON patch path);
    A  judge-arm crash-loops with exit 1 and nothing about its configuration.
    """
    seeded: dict[str, Any] = {}
    postgres = crash(k8s_api.get("v1/pods", "postgres-0"), "postgres", restarts=6)
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "postgres"},
                 "subsets": [{"notReadyAddresses": [{"ip": "10.1.0.7", "targetRef": {"kind": "Pod",
                                                                                       "name": "postgres-0"}}],
                              "ports": [{"name": "postgres", "port": 5432}]}]}
    planner = crash(pod_of(k8s_api, "planner-arm"), "planner-arm", reason="OOMKilled", exit_code=137, restarts=4)
    judge = crash(pod_of(k8s_api, "judge-arm"), "judge-arm", restarts=7)
    # orchestrator: revision 3 (good) -> 4 (DB_POOL_SIZE=five); then another rev 1 -> 2 for coder-arm
    seeded["orchestrator_template"], _ = new_revision(k8s_api, "orchestrator", 4, with_env("DB_POOL_SIZE", "five"))
    orchestrator = [crash(pod, "orchestrator", restarts=5, message=(
        "Traceback (most recent call last):\nValueError: invalid literal for int() with base 10: 'five' "
        "(DB_POOL_SIZE)")) for pod in k8s_api.objects_of("v1/pods", "app=orchestrator")]
    seeded["coder_template"], coder = new_revision(k8s_api, "coder-arm", 2, lambda t: t["spec"]["containers"][0][
        "env"].append({"name": "CODER_MODEL", "valueFrom": {"configMapKeyRef": {"name": "octollm-config",
                                                                                 "key": "CODER_MODEL"}}}))
    coder["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    coder["status"]["phase"] = "Pending"
    coder["status"]["containerStatuses"][0].update(ready=False, state={"waiting": {
        "reason": "CreateContainerConfigError",
        "message": "couldn't find key CODER_MODEL in ConfigMap octollm/octollm-config"}})
    k8s_api.seed([postgres, endpoints, planner, judge, *orchestrator, coder,
                  event("postgres-0", "Pod", "BackOff", "Back-off restarting failed container postgres"),
                  event(planner["metadata"]["name"], "Pod", "BackOff", "Back-off restarting failed container"),
                  event(coder["metadata"]["name"], "Pod", "Failed",
                        "Error: couldn't find key CODER_MODEL in ConfigMap octollm/octollm-config")])
    seeded["planner"] = planner["metadata"]["name"]
    return seeded


# --- plugin level: the collector and the judgement called directly --------------------------------------------
def test_a_healthy_cluster_gives_no_problem_and_no_action(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import service_unavailable_kubernetes as suk

    evidence = collect_evidence(k8s_api, tmp_path, READS)
    assert evidence["kubernetes"]["ok"]
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context, get

    # the reads are the procedure's needs on Kubernetes
    assert get("service_unavailable").needs(SETTINGS, Context(platform="kubernetes")) == {
        "kubernetes": {"objects": READS}}
    diagnosis = suk.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert {item["status"] for item in diagnosis["findings"]} == {"ok"}, diagnosis["findings"]
    assert found["k8s.workloads_ready"]["observed"] == "none of 14 workloads"
    # the emulator has no endpoints controller: Services without an Endpoints object are judged by their pods
    assert "no Endpoints object for" in found["k8s.endpoints"]["observed"]
    assert not any(item["holds"] for item in diagnosis["scenarios"])
    assert suk.plan(diagnosis, dict(SETTINGS, approve=True)) == []
    prevention = by_check(suk.prevention(evidence, SETTINGS)["findings"])
    assert prevention["prevent.k8s.memory_limits"]["status"] == "ok"
    assert prevention["prevent.k8s.disruption_budget"]["status"] == "ok"  # the orchestrator's PDB
    # the lab's exporters and loadgen have no probes: reported, never written
    assert prevention["prevent.k8s.probes"]["evidence"]["workloads"] == {
        "Deployment/loadgen": ["loadgen"], "Deployment/redis": ["redis-exporter"],
        "StatefulSet/postgres": ["postgres-exporter"]}
    assert k8s_api.writes() == []


def test_each_scenario_is_found_with_its_root_cause(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import service_unavailable_kubernetes as suk

    seeded = break_the_stack(k8s_api)
    diagnosis = suk.diagnose(collect_evidence(k8s_api, tmp_path, READS), SETTINGS)
    assert diagnosis["context"]["causes"] == {
        "StatefulSet/postgres": "C", "Deployment/planner-arm": "B", "Deployment/orchestrator": "D",
        "Deployment/coder-arm": "D", "Deployment/judge-arm": "A"}
    found = by_check(diagnosis["findings"])
    assert found["k8s.workloads_ready"]["status"] == "problem" and found["k8s.workloads_ready"]["scenario"] == "C"
    oom = found["k8s.oom_killed"]
    assert oom["status"] == "problem" and oom["scenario"] == "B"
    assert oom["evidence"]["workloads"]["Deployment/planner-arm"] == [{
        "pod": seeded["planner"], "container": "planner-arm", "restarts": 4, "memory_limit": "256Mi",
        "memory_limit_bytes": 256 * 1024 * 1024}]
    loops = found["k8s.crash_loops"]["evidence"]["workloads"]
    assert loops["StatefulSet/postgres"] == [{"pod": "postgres-0", "container": "postgres", "restarts": 6,
                                              "waiting": "CrashLoopBackOff", "last_terminated": "Error",
                                              "exit_code": 1}]
    config = found["k8s.config_errors"]
    assert config["status"] == "problem" and config["scenario"] == "D"
    assert config["evidence"]["workloads"]["Deployment/orchestrator"]["setting"] == "DB_POOL_SIZE"
    coder = config["evidence"]["workloads"]["Deployment/coder-arm"]
    assert coder["setting"] == "CODER_MODEL" and coder["reasons"][0].endswith("CreateContainerConfigError")
    endpoints = found["k8s.endpoints"]
    assert endpoints["status"] == "problem" and endpoints["scenario"] == "C"
    assert endpoints["evidence"]["empty"] == {"postgres": {"ready": 0, "not_ready": 1}}
    events = found["k8s.warning_events"]
    assert events["status"] == "warning" and {e["reason"] for e in events["evidence"]["events"]} == {"BackOff",
                                                                                                     "Failed"}
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]} == {"A": True, "B": True, "C": True, "D": True}
    assert diagnosis["escalation"]["level"] == "L1"

    # without approval every fix waits (all roll pods); D's report is there either way
    waiting = by_id(suk.plan(diagnosis, dict(SETTINGS, approve=False)))
    assert [a["status"] for a in waiting.values()] == [
        "awaiting_approval", "awaiting_approval", "awaiting_approval", "report", "awaiting_approval", "report",
        "awaiting_approval"]
    assert list(waiting) == [
        "service_unavailable.C.restart_postgres", "service_unavailable.B.raise_memory_planner_arm_planner_arm",
        "service_unavailable.D.rollback_coder_arm", "service_unavailable.D.report_config_coder_arm",
        "service_unavailable.D.rollback_orchestrator", "service_unavailable.D.report_config_orchestrator",
        "service_unavailable.A.restart_judge_arm"]
    assert all(a["disruptive"] for a in waiting.values() if a["status"] != "report")
    raise_memory = waiting["service_unavailable.B.raise_memory_planner_arm_planner_arm"]["change"]
    assert (raise_memory["old"], raise_memory["new"]) == ("256Mi", "384Mi")  # x1.5, capped at 1g
    rollback = waiting["service_unavailable.D.rollback_orchestrator"]["change"]
    assert (rollback["from_revision"], rollback["to_revision"], rollback["via"]) == (4, 3, "k8s_rollback")
    coder_rollback = waiting["service_unavailable.D.rollback_coder_arm"]["change"]
    assert (coder_rollback["to_revision"], coder_rollback["via"]) == (1, "json_patch")
    report = waiting["service_unavailable.D.report_config_orchestrator"]
    assert report["change"]["setting"] == "DB_POOL_SIZE" and "setting DB_POOL_SIZE" in report["outcome"]
    assert k8s_api.writes() == []


def test_oom_at_the_cap_or_without_limit_is_a_report(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import service_unavailable_kubernetes as suk

    k8s_api.seed([crash(pod_of(k8s_api, "planner-arm"), "planner-arm", reason="OOMKilled", exit_code=137)])
    diagnosis = suk.diagnose(collect_evidence(k8s_api, tmp_path, READS), SETTINGS)
    capped = suk.plan(diagnosis, dict(SETTINGS, approve=True, memory_limit_max="256Mi"))
    assert [(a["id"], a["status"]) for a in capped] == [
        ("service_unavailable.B.report_memory_planner_arm_planner_arm", "report")]
    assert "at the cap" in capped[0]["outcome"]
    bounded = suk.plan(diagnosis, dict(SETTINGS, approve=True, memory_limit_max="300Mi"))[0]
    assert bounded["change"]["new"] == "300Mi" and bounded["status"] == "planned"
    assert bounded["change"]["patch"] == {"spec": {"template": {"spec": {"containers": [
        {"name": "planner-arm", "resources": {"limits": {"memory": "300Mi"}}}]}}}}
    # forcing another scenario plans nothing for B
    assert suk.plan(diagnosis, dict(SETTINGS, approve=True, scenario="A")) == []


# --- end to end: playbooks/run.yml with inventory/kubernetes (two runs) ------------------------------------
def test_resolve_without_approval_writes_nothing(run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    break_the_stack(k8s_api)
    result = run_k8s("service_unavailable", "resolve", **FAST)
    assert result["platform"] == "kubernetes" and result["phase"] == "resolve"
    statuses = {a["id"]: a["status"] for a in result["actions"]}
    assert statuses["service_unavailable.C.restart_postgres"] == "awaiting_approval"
    assert statuses["service_unavailable.D.report_config_orchestrator"] == "report"
    assert all(not key.startswith("_") for a in result["actions"] for key in a)  # the template stays internal
    assert by_check(result["findings"])["k8s.oom_killed"]["scenario"] == "B"
    assert result["escalation"]["level"] == "L1"
    assert k8s_api.writes() == []


def test_resolve_with_approval_restarts_raises_and_rolls_back(run_k8s: Any,
                                                              k8s_api: KubernetesAPIEmulator) -> None:
    seeded = break_the_stack(k8s_api)
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    result = run_k8s("service_unavailable", "resolve", octollm_approve=True, **FAST)
    done = by_id(result["actions"])
    for ident in ("service_unavailable.C.restart_postgres",
                  "service_unavailable.B.raise_memory_planner_arm_planner_arm",
                  "service_unavailable.D.rollback_coder_arm", "service_unavailable.D.rollback_orchestrator",
                  "service_unavailable.A.restart_judge_arm"):
        assert done[ident]["status"] == "applied", done[ident]
    assert "rollout not awaited" in done["service_unavailable.C.restart_postgres"]["outcome"]
    assert "back from revision 4 to 3 (k8s_rollback)" in done["service_unavailable.D.rollback_orchestrator"]["outcome"]

    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", f"{NS}/statefulsets/postgres"),
        ("PATCH", f"{NS}/deployments/planner-arm"),
        ("PATCH", f"{NS}/deployments/coder-arm"),
        ("PATCH", f"{NS}/deployments/orchestrator"),
        ("PATCH", f"{NS}/deployments/judge-arm"),
    ]
    for restart in (writes[0], writes[4]):  # C first (the database), A last
        assert restart.content_type == "application/strategic-merge-patch+json"
        assert set(restart.body) <= {"apiVersion", "kind", "metadata", "spec"}
        stamp = restart.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        assert restart.body["spec"] == {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
        when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
        assert started - datetime.timedelta(seconds=5) <= when <= datetime.datetime.now(datetime.UTC)
    memory = writes[1]
    assert memory.content_type == "application/strategic-merge-patch+json"
    assert memory.body["spec"] == {"template": {"spec": {"containers": [
        {"name": "planner-arm", "resources": {"limits": {"memory": "384Mi"}}}]}}}
    # both rollbacks send what k8s_rollback sends: a JSON patch of the template and the revision annotation
    for write, template, revision in ((writes[2], seeded["coder_template"], "1"),
                                      (writes[3], seeded["orchestrator_template"], "3")):
        assert write.content_type == "application/json-patch+json"
        assert write.body == [{"op": "replace", "path": "/spec/template", "value": template},
                              {"op": "replace", "path": "/metadata/annotations", "value": {REVISION: revision}}]
    assert k8s_api.get("apps/v1/deployments", "orchestrator")["spec"]["template"] == seeded["orchestrator_template"]
    assert k8s_api.get("apps/v1/deployments", "coder-arm")["spec"]["template"] == seeded["coder_template"]

    # no controller replaced the pods: the verification still sees them, so the problems are left (one level up)
    assert result["verification"]["healthy"] is False
    assert result["escalation"]["level"] == "L2"


# --- issue 15: a stopped database (its workload scaled to 0) is started, without approval --------------------
def stop_postgres(k8s_api: KubernetesAPIEmulator) -> None:
    """PostgreSQL stopped as `kubectl scale statefulset/postgres --replicas=0` leaves it: no replica, its pod
    terminating."""
    stateful = k8s_api.get("apps/v1/statefulsets", "postgres")
    stateful["spec"]["replicas"] = 0
    stateful["status"] = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0}
    pod = k8s_api.get("v1/pods", "postgres-0")
    pod["metadata"]["deletionTimestamp"] = "2026-11-28T09:30:00Z"
    k8s_api.seed([stateful, pod])


def test_a_database_scaled_to_zero_is_started_without_approval(k8s_api: KubernetesAPIEmulator,
                                                                tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import service_unavailable_kubernetes as suk

    stop_postgres(k8s_api)
    diagnosis = suk.diagnose(collect_evidence(k8s_api, tmp_path, READS), SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["k8s.workloads_ready"]["status"] == "problem"
    assert "StatefulSet/postgres: scaled to 0 replicas" in found["k8s.workloads_ready"]["observed"]
    assert {s["id"] for s in diagnosis["scenarios"] if s["holds"]} == {"C"}
    [start] = suk.plan(diagnosis, SETTINGS)
    assert (start["id"], start["status"], start["disruptive"]) == ("service_unavailable.C.start_postgres", "planned",
                                                                   False)
    assert {k: start["change"][k] for k in ("workload", "old", "new", "op")} == {
        "workload": "StatefulSet/postgres", "old": 0, "new": 1, "op": "scale (kubernetes.core.k8s_scale)"}
    assert start["_apply"] == "scale_up"


def test_resolve_without_approval_scales_the_stopped_database_up(run_k8s: Any,
                                                                 k8s_api: KubernetesAPIEmulator) -> None:
    stop_postgres(k8s_api)
    result = run_k8s("service_unavailable", "resolve", **FAST)
    start = by_id(result["actions"])["service_unavailable.C.start_postgres"]
    assert start["status"] == "applied" and "from 0 to 1 replicas" in start["outcome"], start
    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [("PATCH", f"{NS}/statefulsets/postgres/scale")]
    assert writes[0].body["spec"] == {"replicas": 1}
    assert k8s_api.get("apps/v1/statefulsets", "postgres")["spec"]["replicas"] == 1
