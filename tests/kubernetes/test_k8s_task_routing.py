"""task_routing's Kubernetes side: the arms' health from the API (Deployments labelled app-type=arm, their pods and
Endpoints) against the Kubernetes API EMULATOR seeded with lab/kubernetes, the orchestrator's registry and scoring
at a local stand-in for the port-forward to svc/orchestrator, and the exact body of every API write.

What the emulator cannot show: a restart that makes new pods (the verification still sees the old CrashLoopBackOff
pod), an arm registering on start-up. PostgreSQL is a throwaway server (postgres_standin.py) where a test needs it:
the tasks stuck in running as the collector reads them, and the re-queue's SQL. Those need the `cluster` suite.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import deployments
import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from conftest import closed_port
from k8s_emulator import KubernetesAPIEmulator
from k8s_results import by_check, collect_evidence
from postgres_standin import postgres, sql

pytestmark = pytest.mark.kubernetes

ARMS = {
    "planner-arm": ("planning", ["plan"]),
    "executor-arm": ("execution", ["run"]),
    "coder-arm": ("coding", ["python", "function", "code"]),
    "judge-arm": ("judging", ["review"]),
    "guardian-arm": ("safety", ["safe"]),
    "retriever-arm": ("retrieval", ["search"]),
}
# the lab on Kubernetes as inventory/kubernetes describes it (the orchestrator's registry and scoring are offered)
SETTINGS = procedure_settings("task_routing", {"arms": {name: {"port": 8100 + i} for i, name in enumerate(ARMS)}},
                              platform="kubernetes", inventory=deployments.inventory("kubernetes"))
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# the API reads of the role's one gather task on Kubernetes (the procedure's needs, checked below)
OBJECTS = {
    "task_routing_deployments": {"kind": "Deployment", "api_version": "apps/v1", "label_selector": "app-type=arm"},
    "task_routing_pods": {"kind": "Pod", "label_selector": "app-type=arm"},
    "task_routing_endpoints": {"kind": "Endpoints", "label_selector": "app-type=arm"},
    "task_routing_events": {"kind": "Event", "field_selector": "type=Warning"},
    "task_routing_orchestrator": {"kind": "Pod", "label_selector": "app=orchestrator",
                                  "logs": {"tail": 200, "patterns": {"task_routing_pending": "task pending"}}},
}


class Orchestrator:
    """A stand-in for `kubectl port-forward svc/orchestrator`: its registry (GET /api/v1/arms) and read-only scoring
    (POST /api/v1/route/score), with the arms in ``registered`` listed as healthy."""

    def __init__(self) -> None:
        self.registered = set(ARMS)
        self.requests: list[tuple[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(("GET", self.path))
                self._send({"arms": [{"name": n, "domain": d, "keywords": k, "url": f"http://{n}:8100",
                                      "registered_at": time.time(), "health": "healthy"}
                                     for n, (d, k) in ARMS.items() if n in owner.registered]})

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append(("POST", self.path))
                self._send({"scores": {"coder-arm": 30, "planner-arm": 0}, "selected": "coder-arm", "score": 30,
                            "fallback": False})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def orchestrator() -> Iterator[Orchestrator]:
    stub = Orchestrator()
    try:
        yield stub
    finally:
        stub.server.shutdown()


def collect(k8s_api: KubernetesAPIEmulator, orchestrator: Orchestrator, tmp_path: Path) -> dict[str, Any]:
    """The evidence of the role's one gather task on Kubernetes (stack_evidence's collectors, called directly)."""
    probes = [{"name": "task_routing_registry", "service": "orchestrator", "path": "/api/v1/arms"},
              {"name": "task_routing_score", "service": "orchestrator", "path": "/api/v1/route/score",
               "method": "POST", "body": {"goal": "Write a Python function", "constraints": []}}]
    http = {"services": {"orchestrator": {"url": orchestrator.url}}, "probes": probes}
    return collect_evidence(k8s_api, tmp_path, OBJECTS, http=http)


def test_the_reads_are_the_procedures_kubernetes_needs() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing as tr
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context

    needs = tr.PROCEDURE.needs(SETTINGS, Context(platform="kubernetes", inventory={"k8s": {"namespace": "octollm"}}))
    assert needs["kubernetes"]["objects"] == OBJECTS
    # the arms' pod addresses are not reachable: no /health probe, no /capabilities of an arm without a url
    assert [probe["name"] for probe in needs["http"]["probes"]] == ["task_routing_registry", "task_routing_score"]
    assert "containers" not in needs and needs["postgres"]["tasks"] is True


def break_arm(k8s_api: KubernetesAPIEmulator, arm: str) -> str:
    """The fault of scenario A on Kubernetes: the arm's Deployment has 0 ready replicas, its pod is in
    CrashLoopBackOff, its Endpoints have no ready address (only a not-ready one), with a BackOff event."""
    deployment = k8s_api.get("apps/v1/deployments", arm)
    deployment["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 0, "unavailableReplicas": 1}
    pod = k8s_api.objects_of("v1/pods", f"app={arm}")[0]
    name = pod["metadata"]["name"]
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    pod["status"]["containerStatuses"][0].update(
        ready=False, restartCount=7, state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
        lastState={"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": "2026-11-28T09:58:00Z"}})
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": arm, "labels": {"app": arm, "app-type": "arm"}},
                 "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.7", "targetRef": {"kind": "Pod", "name": name}}],
                              "ports": [{"name": "http", "port": 8102}]}]}
    event = {"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "BackOff", "count": 12,
             "metadata": {"name": f"{name}.backoff"}, "involvedObject": {"kind": "Pod", "name": name},
             "message": f"Back-off restarting failed container {arm}", "lastTimestamp": "2026-11-28T09:59:00Z"}
    k8s_api.seed([deployment, pod, endpoints, event])
    return name


def assert_restart(write: Any, arm: str, started: datetime.datetime) -> None:
    """A rollout restart of the arm: a strategic merge patch of its pod template's restartedAt, nothing else."""
    assert write.method == "PATCH" and write.path == f"/apis/apps/v1/namespaces/octollm/deployments/{arm}"
    assert write.content_type == "application/strategic-merge-patch+json"
    assert set(write.body) <= {"apiVersion", "kind", "metadata", "spec"}
    stamp = write.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert write.body["spec"] == {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert started - datetime.timedelta(seconds=5) <= when <= datetime.datetime.now(datetime.UTC)


def test_a_healthy_cluster_has_every_arm_serving(k8s_api: KubernetesAPIEmulator, orchestrator: Orchestrator,
                                                 tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing_kubernetes as trk

    evidence = collect(k8s_api, orchestrator, tmp_path)
    diagnosis = trk.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["k8s.arm_workloads"]["status"] == "ok" and found["k8s.arm_workloads"]["observed"] == "6 arms serving"
    assert found["arms.health"]["status"] == "ok"
    assert found["arms.registered"]["status"] == "ok"
    assert found["routing.scores"]["status"] == "ok"
    assert found["tasks.stuck_pending"]["status"] == "unknown"  # no PostgreSQL in this test
    assert [f["check"] for f in diagnosis["findings"] if f["status"] == "problem"] == []
    assert not any(s["holds"] for s in diagnosis["scenarios"])
    assert trk.plan(diagnosis, SETTINGS) == []
    prevention = by_check(trk.prevention(evidence, SETTINGS)["findings"])
    assert prevention["prevent.k8s.arm_probes"]["status"] == "ok"
    assert "prevent.arms.healthcheck" not in prevention  # the Compose health check has no meaning here
    assert k8s_api.writes() == []


def test_an_arm_in_crashloop_is_down_and_its_restart_waits_for_approval(
        k8s_api: KubernetesAPIEmulator, orchestrator: Orchestrator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing_kubernetes as trk

    pod = break_arm(k8s_api, "coder-arm")
    diagnosis = trk.diagnose(collect(k8s_api, orchestrator, tmp_path), SETTINGS)
    found = by_check(diagnosis["findings"])
    workloads = found["k8s.arm_workloads"]
    assert workloads["status"] == "problem" and workloads["scenario"] == "A"
    assert workloads["observed"] == (f"coder-arm: 0/1 ready replicas, no ready pod, Endpoints without ready "
                                     f"addresses, {pod}: coder-arm: CrashLoopBackOff")
    coder = workloads["evidence"]["coder-arm"]
    assert coder["ready_replicas"] == 0 and coder["endpoints_ready"] == 0 and coder["ready_pods"] == []
    assert coder["pods"][0]["containers"][0]["last_terminated"]["reason"] == "Error"
    assert coder["pods"][0]["restarts"] == 7
    assert [(e["reason"], e["object"], e["count"]) for e in coder["events"]] == [("BackOff", f"Pod/{pod}", 12)]
    assert found["arms.health"]["status"] == "problem" and found["arms.health"]["observed"] == "down: coder-arm"
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]}["A"] is True

    planned = {a["id"]: a for a in trk.plan(diagnosis, SETTINGS)}
    restart = planned["task_routing.A.restart_arms"]
    assert restart["status"] == "awaiting_approval" and restart["disruptive"] is True
    assert restart["change"] == {"workloads": ["Deployment/coder-arm"], "arms": ["coder-arm"],
                                 "namespace": "octollm",
                                 "op": f"rollout restart ({RESTARTED_AT}), then each registers again on start-up"}
    approved = {a["id"]: a for a in trk.plan(diagnosis, dict(SETTINGS, approve=True))}
    assert approved["task_routing.A.restart_arms"]["status"] == "planned"
    assert approved["task_routing.A.restart_arms"]["_apply"] == "rollout_restart"
    assert k8s_api.writes() == []  # reading and planning write nothing


def test_an_api_that_cannot_be_read_never_restarts_arms(orchestrator: Orchestrator) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing_kubernetes as trk

    error = {"kind": "auth", "message": "deployments.apps is forbidden"}
    evidence = {"kubernetes": {"ok": True, "objects": {
        "task_routing_deployments": {"items": [], "error": error}, "task_routing_pods": {"items": []},
        "task_routing_endpoints": {"items": []}, "task_routing_events": {"items": []},
        "task_routing_orchestrator": {"items": []}}}}
    diagnosis = trk.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["arms.health"]["status"] == "unknown" and found["arms.health"]["error"]["kind"] == "auth"
    assert found["k8s.arm_workloads"]["status"] == "unknown"
    assert trk.plan(diagnosis, dict(SETTINGS, scenario="A", approve=True)) == []


def test_stuck_tasks_are_requeued_as_on_compose(k8s_api: KubernetesAPIEmulator, orchestrator: Orchestrator,
                                                tmp_path: Path) -> None:
    """PostgreSQL is not here: its evidence is given as the postgres collector returns it; the re-queue is the
    Compose tasks (POST /api/v1/tasks at the orchestrator's address, one SQL transaction)."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing as tr
    from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing_kubernetes as trk

    evidence = collect(k8s_api, orchestrator, tmp_path)
    stuck = {"task_id": "t-1", "goal": "Write a Python function", "priority": "high", "age_s": 600,
             "constraints": ["must use coder", "prefer judge review"],
             "actions": [{"action": "failed", "details": json.dumps({"reason": "no arm satisfies constraints"})}]}
    evidence["postgres"] = {"ok": True, "tasks": {"stuck_count": 1, "stuck_sample": [stuck],
                                                  "stuck_oldest_age_s": 600}}
    diagnosis = trk.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["tasks.stuck_pending"]["status"] == "problem" and found["tasks.stuck_pending"]["scenario"] == "D"
    (requeue,) = trk.plan(diagnosis, SETTINGS)
    assert requeue["id"] == "task_routing.D.requeue_tasks" and requeue["status"] == "awaiting_approval"
    assert requeue["disruptive"] is True and requeue["change"]["drops_constraints"] == ["prefer judge review"]
    approved = trk.plan(diagnosis, dict(SETTINGS, approve=True))[0]
    assert approved["status"] == "planned" and approved["_apply"] == "requeue_tasks"
    assert requeue["change"]["sql"] == tr.requeue_sql()
    assert requeue["change"]["_moves"] == [{"task_id": "t-1", "priority": "high", "status": "pending",
                                            "updated_at": None, "old": ["must use coder", "prefer judge review"],
                                            "new": ["must use coder"], "dropped": ["prefer judge review"]}]


def test_a_task_running_on_a_pod_that_started_after_its_dispatch_is_stuck(
        k8s_api: KubernetesAPIEmulator, orchestrator: Orchestrator, tmp_path: Path) -> None:
    """The arms' and the orchestrator's pods say when their processes started (a container's startedAt): a task
    dispatched before coder-arm's pod started again is on a process that is gone."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing_kubernetes as trk

    pod = k8s_api.objects_of("v1/pods", "app=coder-arm")[0]
    pod["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": "2026-11-28T10:30:00Z"}}
    k8s_api.seed([pod])
    evidence = collect(k8s_api, orchestrator, tmp_path)
    grace = SETTINGS["running_grace_seconds"]
    task = {"task_id": "t-run", "status": "running", "assigned_arm": "coder-arm", "priority": "medium",
            "goal": "Write a Python function", "constraints": [], "updated_at": "2026-11-28T10:20:00+00:00",
            "dispatched_at": "2026-11-28T10:20:00+00:00", "idle_s": grace + 1, "running_s": grace + 1}
    evidence["postgres"] = {"ok": True, "tasks": {"stuck_count": 0, "stuck_sample": [], "running_count": 1,
                                                  "running_sample": [task]}}
    diagnosis = trk.diagnose(evidence, SETTINGS)
    stuck = by_check(diagnosis["findings"])["tasks.stuck_running"]
    assert stuck["status"] == "problem" and stuck["scenario"] == "A"
    assert [t["cause"] for t in stuck["evidence"]["sample"]] == ["coder-arm restarted after the dispatch"]
    (requeue,) = trk.plan(diagnosis, SETTINGS)
    assert (requeue["id"], requeue["status"]) == ("task_routing.A.requeue_running", "awaiting_approval")
    # dispatched after every pod started: still running, not stuck
    task["dispatched_at"] = task["updated_at"] = "2026-11-28T10:40:00+00:00"
    assert by_check(trk.diagnose(evidence, SETTINGS)["findings"])["tasks.stuck_running"]["status"] == "ok"
    assert k8s_api.writes() == []


def test_running_tasks_and_the_requeue_sql_on_postgresql() -> None:
    """The collector's running_sample (progress: updated_at or a newer action_log entry; dispatched_at: the last
    routed entry) and the re-queue's two statements on a real PostgreSQL: the select returns the whole goal of the
    tasks still as planned, the update cancels exactly those submitted again, a task that moved is left alone."""
    import time

    from ansible_collections.octollm.remediation.plugins.module_utils import collector_postgres  # noqa: F401
    from ansible_collections.octollm.remediation.plugins.module_utils.evidence import run_collector
    from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing as tr

    goal = "Write a Python function for alice@example.org " + "x" * 150  # longer than the evidence's preview
    with postgres(schema=True) as port:
        sql(port,
            "INSERT INTO tasks (task_id, goal, status, assigned_arm, created_at, updated_at) VALUES"
            f" ('lost', '{goal}', 'running', 'coder-arm', now() - interval '20 minutes',"
            "  now() - interval '20 minutes'),"
            " ('moving', 'Plan the steps', 'running', 'planner-arm', now() - interval '20 minutes',"
            "  now() - interval '20 minutes'),"
            " ('fresh', 'Plan the steps', 'running', 'planner-arm', now(), now()),"
            " ('done', 'Plan the steps', 'completed', 'planner-arm', now() - interval '1 hour', now())",
            "INSERT INTO action_log (task_id, action, arm, timestamp) VALUES"
            " ('lost', 'routed', 'coder-arm', now() - interval '19 minutes'),"
            " ('moving', 'routed', 'planner-arm', now() - interval '19 minutes'),"
            " ('moving', 'executed', 'planner-arm', now() - interval '30 seconds')")
        options = {"host": "127.0.0.1", "port": port, "database": "octollm", "user": "postgres", "ping": False,
                   "connections": False, "tasks": True, "running_after_seconds": 60, "sample_limit": 10}
        tasks = run_collector("postgres", options, time.monotonic() + 20)["tasks"]
        assert tasks["running_count"] == 1 and [t["task_id"] for t in tasks["running_sample"]] == ["lost"]
        lost = tasks["running_sample"][0]
        assert 1130 <= lost["idle_s"] <= 1260 and 1070 <= lost["running_s"] <= 1200  # since the routed entry
        assert "alice@example.org" not in lost["goal"] and len(lost["goal"]) <= 120  # a redacted preview
        evidence = {"postgres": {"ok": True, "tasks": tasks},
                    "containers": {"ok": True, "containers": [{"service": "coder-arm", "running": True,
                                                               "started_at": "2100-01-01T00:00:00Z"}]}}
        diagnosis = tr.diagnose(evidence, dict(SETTINGS, orchestrator_url="http://o:8000"))
        requeue = next(a for a in tr.plan(diagnosis, dict(SETTINGS, orchestrator_url="http://o:8000", approve=True))
                       if a["id"] == "task_routing.A.requeue_running")
        moves = json.dumps(requeue["change"]["_moves"])
        select = requeue["change"]["_select_sql"].replace("%(moves)s", f"'{moves}'")
        assert sql(port, select) == [("lost", goal, [], "medium")]  # the whole goal, as stored
        update = requeue["change"]["sql"].replace("%(moves)s", f"'{moves}'").replace(
            "%(submitted)s", "'[{\"task_id\": \"lost\", \"new_task_id\": \"task-new\"}]'")
        assert sql(port, update) == [("lost",)]
        assert sql(port, "SELECT status, result FROM tasks WHERE task_id = 'lost'") == [
            ("cancelled", {"requeued_as": "task-new", "dropped_constraints": [], "previous_status": "running"})]
        assert sql(port, "SELECT action, details->>'previous_status' FROM action_log WHERE task_id = 'lost'"
                   " ORDER BY id DESC LIMIT 1") == [("requeued", "running")]
        assert sql(port, update) == []  # done once; and a task that moved since the plan is left alone
        assert sql(port, select) == []


def test_prevention_flags_an_arm_without_probes(k8s_api: KubernetesAPIEmulator, orchestrator: Orchestrator,
                                                tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing_kubernetes as trk

    deployment = k8s_api.get("apps/v1/deployments", "judge-arm")
    del deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    k8s_api.seed([deployment])
    prevention = trk.prevention(collect(k8s_api, orchestrator, tmp_path), SETTINGS)
    probes = by_check(prevention["findings"])["prevent.k8s.arm_probes"]
    assert probes["status"] == "problem" and probes["observed"] == "judge-arm: livenessProbe"
    assert [a["status"] for a in prevention["actions"] if a["resource"] == "prevent.k8s.arm_probes"] == ["report"]
    assert k8s_api.writes() == []


def test_resolve_without_approval_reads_only(run_k8s: Any, k8s_api: KubernetesAPIEmulator,
                                            orchestrator: Orchestrator) -> None:
    break_arm(k8s_api, "coder-arm")
    result = run_k8s("task_routing", "resolve", env={"OCTOLLM_ORCHESTRATOR_URL": orchestrator.url,
                                                     "OCTOLLM_POSTGRES_PORT": str(closed_port())},
                     task_routing_k8s_rollout_timeout=0)
    assert result["platform"] == "kubernetes"
    found = by_check(result["findings"])
    assert found["k8s.arm_workloads"]["status"] == "problem"
    assert found["arms.health"]["observed"] == "down: coder-arm"
    actions = {a["id"]: a for a in result["actions"]}
    assert actions["task_routing.A.restart_arms"]["status"] == "awaiting_approval"
    assert k8s_api.writes() == []
    assert ("GET", "/api/v1/arms") in orchestrator.requests and ("POST", "/api/v1/route/score") in orchestrator.requests
    assert "/apis/apps/v1/namespaces/octollm/deployments?labelSelector=app-type%3Darm" in k8s_api.reads()


def test_resolve_with_approval_restarts_the_down_and_the_unregistered_arms(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, orchestrator: Orchestrator) -> None:
    break_arm(k8s_api, "coder-arm")
    orchestrator.registered -= {"coder-arm", "judge-arm"}  # judge-arm serves but the orchestrator forgot it
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    result = run_k8s("task_routing", "resolve", env={"OCTOLLM_ORCHESTRATOR_URL": orchestrator.url,
                                                     "OCTOLLM_POSTGRES_PORT": str(closed_port())},
                     octollm_approve=True, task_routing_k8s_rollout_timeout=0)

    found = by_check(result["findings"])
    assert found["arms.registered"]["status"] == "problem"
    assert found["arms.registered"]["observed"] == "not registered: judge-arm"
    actions = {a["id"]: a for a in result["actions"]}
    restart, register = actions["task_routing.A.restart_arms"], actions["task_routing.C.register_arms"]
    assert restart["status"] == "applied", restart["outcome"]
    assert restart["outcome"].startswith(
        "rollout restart of Deployment/coder-arm; rollout not awaited (task_routing_k8s_rollout_timeout is 0)")
    assert register["status"] == "applied" and register["disruptive"] is True
    assert register["change"]["workloads"] == ["Deployment/judge-arm"]

    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", "/apis/apps/v1/namespaces/octollm/deployments/coder-arm"),
        ("PATCH", "/apis/apps/v1/namespaces/octollm/deployments/judge-arm")]
    assert_restart(writes[0], "coder-arm", started)
    assert_restart(writes[1], "judge-arm", started)
    deployment = k8s_api.get("apps/v1/deployments", "judge-arm")
    assert RESTARTED_AT in deployment["spec"]["template"]["metadata"]["annotations"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]  # the rest untouched
    # no controller replaced the crashing pod and no arm registered: the problems are reported as left
    after = by_check(result["verification"]["findings"])
    assert after["k8s.arm_workloads"]["status"] == "problem" and result["verification"]["healthy"] is False
