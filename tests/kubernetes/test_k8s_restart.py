"""`octoctl restart SERVICE` on Kubernetes (issue 19): Service Unavailable's rollout restart of the service's
workload when asked (service_unavailable_restart_services), on a healthy cluster: awaiting approval without it
(nothing written), with it exactly one strategic merge patch of the restartedAt annotation."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
from k8s_emulator import KubernetesAPIEmulator

pytestmark = pytest.mark.kubernetes

NS = "/apis/apps/v1/namespaces/octollm"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ASKED = {"service_unavailable_k8s_rollout_timeout": 0, "service_unavailable_restart_services": ["judge-arm"]}


def test_a_restart_asked_for_awaits_approval_then_patches_only_its_workload(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    waiting = run_k8s("service_unavailable", "resolve", **ASKED)
    (action,) = waiting["actions"]
    assert (action["id"], action["status"]) == ("service_unavailable.A.restart_judge_arm", "awaiting_approval")
    assert action["change"]["workload"] == "Deployment/judge-arm" and action["disruptive"] is True
    assert k8s_api.writes() == []

    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    done = run_k8s("service_unavailable", "resolve", octollm_approve=True, **ASKED)
    (action,) = done["actions"]
    assert action["status"] == "applied", action
    (write,) = k8s_api.writes()
    assert (write.method, write.path) == ("PATCH", f"{NS}/deployments/judge-arm")
    assert write.content_type == "application/strategic-merge-patch+json"
    stamp = write.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert write.body["spec"] == {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert started - datetime.timedelta(seconds=5) <= when <= datetime.datetime.now(datetime.UTC)


def test_the_emergency_restart_on_kubernetes_backs_up_then_scales_tiers_down_and_up(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    """The seed's complete system restart on Kubernetes: the verified backup streamed out of the PostgreSQL pod
    (Data Corruption's task file, the emulator serving the exec against a stand-in PostgreSQL), then each tier
    scaled to 0 in order (arms, orchestrator, data stores) and back in reverse: exactly these scale writes."""
    from postgres_standin import postgres
    from test_k8s_data_corruption import pod_env

    emergency = {"service_unavailable_emergency_restart": True, "service_unavailable_k8s_rollout_timeout": 0,
                 "service_unavailable_emergency_backup_dir": str(tmp_path / "backups"),
                 "service_unavailable_k8s_backup_exec": {"container": "postgres", "user": "postgres",
                                                         "password_env": "POSTGRES_ADMIN_PASSWORD"}}
    waiting = run_k8s("service_unavailable", "resolve", **emergency)
    assert {a["status"] for a in waiting["actions"]} == {"awaiting_approval"} and k8s_api.writes() == []
    replicas = {name: k8s_api.get(f"apps/v1/{kind.lower()}s", name)["spec"]["replicas"] for kind, name in [
        ("StatefulSet", "postgres"), ("Deployment", "redis"), ("Deployment", "qdrant"), ("Deployment", "orchestrator"),
        *[("Deployment", f"{arm}-arm") for arm in ("planner", "executor", "coder", "judge", "guardian", "retriever")]]}
    assert replicas["orchestrator"] == 2  # each goes back to the replicas it had, not to 1
    with postgres(schema=True) as port:
        k8s_api.serve_exec(lambda namespace, pod, container, command: (command, pod_env(port)))
        done = run_k8s("service_unavailable", "resolve", env={"OCTOLLM_POSTGRES_PORT": str(port)},
                       octollm_approve=True, **emergency)
    steps = {a["id"].split(".", 2)[2]: a for a in done["actions"]}
    assert {a["status"] for a in steps.values()} == {"applied"}, done["actions"]
    assert list(steps)[:4] == ["backup_postgres", "scale_down_1", "scale_down_2", "scale_down_3"]
    backup = steps["backup_postgres"]["change"]
    assert backup["verified"] and Path(backup["backup"]).parent == tmp_path / "backups"
    [dumped] = k8s_api.execs()
    assert (dumped.pod, dumped.container) == ("postgres-0", "postgres")
    arms = ["planner-arm", "executor-arm", "coder-arm", "judge-arm", "guardian-arm", "retriever-arm"]
    stores = [("StatefulSet", "postgres"), ("Deployment", "redis"), ("Deployment", "qdrant")]
    down = [("Deployment", name) for name in [*arms, "orchestrator"]] + stores
    up = stores + [("Deployment", name) for name in ["orchestrator", *arms]]
    expected = [(kind, name, 0) for kind, name in down] + [(kind, name, replicas[name]) for kind, name in up]
    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", f"{NS}/{kind.lower()}s/{name}/scale") for kind, name, _ in expected]
    assert [w.body for w in writes] == [{"kind": kind, "metadata": {"name": name, "namespace": "octollm"},
                                         "spec": {"replicas": replicas}} for kind, name, replicas in expected]


# --- octoctl rollback SERVICE [--to-revision N] (issue 19 item 4): `kubectl rollout undo` semantics --------------
REVISION = "deployment.kubernetes.io/revision"


def three_revisions(k8s_api: KubernetesAPIEmulator) -> dict[int, dict[str, Any]]:
    """judge-arm rolled out three times: revision 1 (JUDGE_MODE=lenient), 2 (the lab's template), 3 (JUDGE_MODE=
    strict, running). Returns each revision's pod template as `kubectl rollout undo` writes it back (without the
    ReplicaSet's pod-template-hash label)."""
    from test_k8s_service_unavailable import new_revision, with_env

    second, _ = new_revision(k8s_api, "judge-arm", 3, with_env("JUDGE_MODE", "strict"))
    third = copy.deepcopy(k8s_api.get("apps/v1/deployments", "judge-arm")["spec"]["template"])
    older = next(rs for rs in k8s_api.objects_of("apps/v1/replicasets", "app=judge-arm")
                 if rs["metadata"]["annotations"][REVISION] == "2")
    first_rs = copy.deepcopy(older)
    first_rs["metadata"].update(name="judge-arm-r1xjudg", uid="uid-replicaset-judge-arm-r1",
                                annotations={REVISION: "1"},
                                labels={**older["metadata"]["labels"], "pod-template-hash": "r1xjudg"})
    first_rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "r1xjudg"
    first_rs["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "JUDGE_MODE", "value": "lenient"})
    k8s_api.seed([first_rs])
    first = copy.deepcopy(first_rs["spec"]["template"])
    first["metadata"]["labels"].pop("pod-template-hash")
    return {1: first, 2: second, 3: third}


def test_a_rollback_to_a_named_revision_writes_that_revisions_template(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    templates = three_revisions(k8s_api)
    asked = {"service_unavailable_k8s_rollout_timeout": 0,
             "service_unavailable_rollback": {"service": "judge-arm", "to_revision": 1}}
    waiting = run_k8s("service_unavailable", "resolve", **asked)
    (action,) = waiting["actions"]
    assert (action["id"], action["status"]) == ("service_unavailable.D.rollback_judge_arm", "awaiting_approval")
    assert (action["change"]["from_revision"], action["change"]["to_revision"]) == (3, 1)
    assert action["change"]["via"] == "json_patch" and action["disruptive"] is True
    assert k8s_api.writes() == []

    done = run_k8s("service_unavailable", "resolve", octollm_approve=True, **asked)
    (action,) = done["actions"]
    assert action["status"] == "applied", action
    (write,) = k8s_api.writes()
    assert (write.method, write.path) == ("PATCH", f"{NS}/deployments/judge-arm")
    assert write.content_type == "application/json-patch+json"
    assert write.body == [{"op": "replace", "path": "/spec/template", "value": templates[1]},
                          {"op": "replace", "path": "/metadata/annotations", "value": {REVISION: "1"}}]
    assert k8s_api.get("apps/v1/deployments", "judge-arm")["spec"]["template"] == templates[1]


def test_a_rollback_to_the_previous_revision_and_to_one_the_history_lacks(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    templates = three_revisions(k8s_api)
    missing = run_k8s("service_unavailable", "resolve", octollm_approve=True, service_unavailable_k8s_rollout_timeout=0,
                      service_unavailable_rollback={"service": "judge-arm", "to_revision": 7})
    (action,) = missing["actions"]
    assert action["status"] == "report" and "holds 3, 2, 1: no revision 7" in action["outcome"], action
    assert k8s_api.writes() == []

    done = run_k8s("service_unavailable", "resolve", octollm_approve=True, service_unavailable_k8s_rollout_timeout=0,
                   service_unavailable_rollback={"service": "judge-arm", "to_revision": 0})
    (action,) = done["actions"]
    assert action["status"] == "applied" and action["change"]["to_revision"] == 2, action
    (write,) = k8s_api.writes()
    assert (write.method, write.path, write.content_type) == (
        "PATCH", f"{NS}/deployments/judge-arm", "application/json-patch+json")
    assert write.body == [{"op": "replace", "path": "/spec/template", "value": templates[2]},
                          {"op": "replace", "path": "/metadata/annotations", "value": {REVISION: "2"}}]


def test_the_rollback_playbook_awx_runs(run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    """playbooks/rollback.yml (AWX "OctoLLM rollback"): the survey's rollback_service and rollback_to_revision, the
    approval: the same JSON patch as octoctl rollback --to-revision 1."""
    templates = three_revisions(k8s_api)
    done = run_k8s("service_unavailable", "resolve", playbook="rollback.yml", octollm_approve=True,
                   service_unavailable_k8s_rollout_timeout=0, rollback_service="judge-arm", rollback_to_revision=1)
    (action,) = done["actions"]
    assert action["status"] == "applied" and action["change"]["to_revision"] == 1, action
    (write,) = k8s_api.writes()
    assert write.body[0] == {"op": "replace", "path": "/spec/template", "value": templates[1]}
