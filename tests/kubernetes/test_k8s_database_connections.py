"""database_connections' Kubernetes side: the judgement over the API emulator (kmock) seeded with lab/kubernetes,
and two runs of playbooks/run.yml with inventory/kubernetes against it, a throwaway PostgreSQL standing in for the
port-forward to svc/postgres and a small HTTP server for the orchestrator's /health.

Asserted against the emulator: the body, method, path and content type of every API write (scenario A's ConfigMap
patch and rollout restart). The exec of scenario D (getent hosts in an orchestrator pod) is asserted at the level
of the module arguments: the emulator serves no exec. Scenario B's StatefulSet restart follows ALTER SYSTEM on a
real server; its plan is asserted here, the restart itself needs a cluster.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import deployments
import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from k8s_emulator import KubernetesAPIEmulator
from k8s_results import by_check, by_id, collect_evidence, task_args
from postgres_standin import postgres

pytestmark = pytest.mark.kubernetes

REPO = Path(__file__).resolve().parents[2]
CONFIGMAP_PATH = "/api/v1/namespaces/octollm/configmaps/octollm-config"
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/octollm/deployments/orchestrator"
FAST = {"database_connections_k8s_rollout_timeout": 0}

OBJECTS = {
    "database_connections_app_pods": {"kind": "Pod", "label_selector": "app=orchestrator"},
    "database_connections_db_pods": {"kind": "Pod", "label_selector": "app=postgres"},
    "database_connections_configmap": {"kind": "ConfigMap", "name": "octollm-config"},
    "database_connections_app_workload": {"kind": "Deployment", "api_version": "apps/v1", "name": "orchestrator"},
    "database_connections_db_workload": {"kind": "StatefulSet", "api_version": "apps/v1", "name": "postgres"},
    "database_connections_service": {"kind": "Service", "name": "postgres"},
    "database_connections_endpoints": {"kind": "Endpoints", "name": "postgres"},
    "database_connections_netpols": {"kind": "NetworkPolicy", "api_version": "networking.k8s.io/v1"},
    "database_connections_pdbs": {"kind": "PodDisruptionBudget", "api_version": "policy/v1"},
    "database_connections_hpas": {"kind": "HorizontalPodAutoscaler", "api_version": "autoscaling/v2"},
    "database_connections_events": {"kind": "Event", "field_selector": "type=Warning"},
}
# the lab on Kubernetes as inventory/kubernetes describes it (the orchestrator's pool figures are offered)
SETTINGS = procedure_settings("database_connections", platform="kubernetes",
                              inventory=deployments.inventory("kubernetes"))


def test_the_needs_read_these_objects_and_no_docker() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections as dbc
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context

    need = dbc.PROCEDURE.needs(SETTINGS, Context(platform="kubernetes", inventory={"k8s": {"namespace": "octollm"}}))
    assert set(need) == {"postgres", "http", "prometheus", "kubernetes"}
    assert need["kubernetes"]["objects"] == OBJECTS
    assert SETTINGS["dns_names"] == ["postgres", "postgres.octollm.svc"] and SETTINGS["db_port"] == 5432


def stack_evidence(total: int = 6, pool: dict[str, int] | None = None, health_pg: str = "ok",
                   idle_in_tx: list[dict[str, Any]] | None = None, oldest_idle: list[dict[str, Any]] | None = None,
                   ping: dict[str, Any] | None = None) -> dict[str, Any]:
    """PostgreSQL and /health evidence in the collectors' shapes (as tests/collection builds it)."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections as dbc

    return {
        "postgres": {
            "ok": True, "rtt_ms": 0.4, "server": {"version": "15.18", "uptime_s": 100},
            "connections": {
                "total": total, "max_connections": 40, "superuser_reserved_connections": 5,
                "reserved_connections": None, "by_state": {"idle": total},
                "by_application": [{"application_name": "orchestrator", "count": min(total, 4)}],
                "waiting_on_locks": 0, "idle_in_transaction_count": len(idle_in_tx or []),
                "idle_in_transaction": idle_in_tx or [], "oldest_idle": oldest_idle or [], "long_running": [],
                "available_to_applications": 35 - total,
            },
            "settings": {"settings": {"idle_in_transaction_session_timeout": {"value": "300000", "unit": "ms"}}},
            "ping": ping or {"user": "octollm", "ok": True, "saturated": False, "error": None},
        },
        "http": {"ok": True, "probes": {dbc.HEALTH_PROBE: {
            "status": 200 if health_pg == "ok" else 503, "ok": True, "error": None,
            "body": {"status": "ok", "checks": {"postgres": health_pg,
                                                "db_pool": pool or {"in_use": 1, "max": 10, "leaked": 0}}}}}},
        "prometheus": {"ok": True, "rules": {"names": ["HighDatabaseConnections", "PostgreSQLDown"], "alerts": {}}},
    }


def evidence_with(k8s_api: KubernetesAPIEmulator, tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    return {**stack_evidence(**kwargs), "kubernetes": collect_evidence(k8s_api, tmp_path, OBJECTS)["kubernetes"]}


DENY_POSTGRES = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "postgres-ingress"},
    "spec": {"podSelector": {"matchLabels": {"app": "postgres"}}, "policyTypes": ["Ingress"],
             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}],
                          "ports": [{"port": 9187}]}]},
}


# --- the judgement over the emulator's objects ---------------------------------------------------------
def test_a_healthy_cluster_gives_no_problem_and_writes_nothing(k8s_api: KubernetesAPIEmulator,
                                                               tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections_kubernetes as dck

    evidence = evidence_with(k8s_api, tmp_path)
    assert evidence["kubernetes"]["ok"]
    diagnosis = dck.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert [f["check"] for f in diagnosis["findings"] if f["status"] == "problem"] == []
    assert found["k8s.postgres_pods"]["observed"] == "1/1 ready"
    assert found["k8s.app_pods"]["observed"] == "2/2 ready"
    assert found["k8s.postgres_service"]["status"] == "ok"
    assert found["k8s.postgres_service"]["evidence"]["addresses"] == ["postgres-0"]
    assert found["k8s.network_policy"]["observed"] == "no policy selects either side"
    assert found["app.pool"]["evidence"]["env"] == {"DB_POOL_SIZE": "5", "DB_POOL_MAX_OVERFLOW": "5"}  # ConfigMap
    assert found["app.pool"]["evidence"]["replicas"] == 2  # the Deployment
    assert not any(s["holds"] for s in diagnosis["scenarios"])
    assert dck.plan(diagnosis, SETTINGS) == []
    prevention = by_check(dck.prevention(evidence, SETTINGS)["findings"])
    assert prevention["prevent.k8s.postgres_pdb"]["status"] == "warning"  # the lab has a PDB for the orchestrator
    # 10 connections per pod x the HPA's 6 replicas > 35: a real risk of the lab, reported
    hpa = prevention["prevent.k8s.pool_at_max_replicas"]
    assert hpa["status"] == "warning" and hpa["observed"] == "10 x 6 = 60 of 35"
    assert k8s_api.writes() == []


def test_a_pool_exhausted_plans_the_configmap_and_a_rollout_restart(k8s_api: KubernetesAPIEmulator,
                                                                    tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections_kubernetes as dck

    evidence = evidence_with(k8s_api, tmp_path, pool={"in_use": 10, "max": 10, "leaked": 0})
    diagnosis = dck.diagnose(evidence, SETTINGS)
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]} == {"A": True, "B": False, "C": False, "D": False}
    waiting = by_id(dck.plan(diagnosis, SETTINGS))["database_connections.A.raise_pool"]
    assert waiting["status"] == "awaiting_approval" and waiting["disruptive"] is True
    planned = by_id(dck.plan(diagnosis, {**SETTINGS, "approve": True}))["database_connections.A.raise_pool"]
    assert planned["status"] == "planned" and planned["_apply"] == "raise_pool"
    # 40 - 5 reserved - 2 other sessions - 5 headroom = 28 for 2 replicas: 14 each
    assert planned["change"]["data"] == {"DB_POOL_SIZE": "9", "DB_POOL_MAX_OVERFLOW": "5"}
    assert planned["change"]["configmap"] == "octollm-config"
    assert planned["change"]["restart"] == "Deployment/orchestrator"
    assert planned["resource"] == "k8s:deployment/orchestrator"

    # a literal env entry of the Deployment would win over the ConfigMap: reported, not patched
    deployment = k8s_api.get("apps/v1/deployments", "orchestrator")
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "DB_POOL_SIZE", "value": "3"})
    k8s_api.seed([deployment])
    diagnosis = dck.diagnose(evidence_with(k8s_api, tmp_path, pool={"in_use": 8, "max": 8, "leaked": 0}), SETTINGS)
    report = by_id(dck.plan(diagnosis, {**SETTINGS, "approve": True}))["database_connections.A.report_pool_env"]
    assert report["status"] == "report" and report["change"]["overrides"] == {"DB_POOL_SIZE": "3"}
    assert k8s_api.writes() == []


def test_b_terminates_idle_sessions_or_raises_max_connections_with_a_statefulset_restart(
        k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections as dbc
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections_kubernetes as dck

    old = [{"pid": 100 + i, "application_name": "batch", "usename": "octollm", "state_age_s": 900} for i in range(9)]
    evidence = evidence_with(k8s_api, tmp_path, total=34, oldest_idle=old)
    diagnosis = dck.diagnose(evidence, SETTINGS)
    assert by_check(diagnosis["findings"])["pg.connections"]["scenario"] == "B"
    terminate = by_id(dck.plan(diagnosis, {**SETTINGS, "approve": True, "idle_terminate_after_seconds": 300}))[
        "database_connections.B.terminate_idle"]
    assert terminate["_apply"] == "terminate_sessions" and terminate["change"]["sql"] == dbc.TERMINATE_IDLE_SQL
    assert terminate["change"]["rows"] == 9

    diagnosis = dck.diagnose(evidence_with(k8s_api, tmp_path, total=34), SETTINGS)
    planned = by_id(dck.plan(diagnosis, {**SETTINGS, "max_connections_target": 80}))
    raise_max = planned["database_connections.B.raise_max_connections"]
    assert raise_max["status"] == "awaiting_approval" and raise_max["_apply"] == "raise_max_connections"
    assert raise_max["change"]["new"] == 80 and raise_max["change"]["restart"] == "StatefulSet/postgres"
    assert raise_max["change"]["op"] == "ALTER SYSTEM SET + rollout restart (kubectl.kubernetes.io/restartedAt)"


def test_c_a_leak_is_terminated_and_the_application_reported(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections_kubernetes as dck

    leaked = [{"pid": 200 + i, "application_name": "orchestrator", "usename": "octollm", "state_age_s": 120,
               "query": "SELECT 1"} for i in range(5)]
    diagnosis = dck.diagnose(evidence_with(k8s_api, tmp_path, total=12, idle_in_tx=leaked,
                                           pool={"in_use": 10, "max": 10, "leaked": 5}), SETTINGS)
    assert {s["id"] for s in diagnosis["scenarios"] if s["holds"]} == {"C"}
    actions = by_id(dck.plan(diagnosis, SETTINGS))
    assert actions["database_connections.C.terminate_leaked_orchestrator"]["status"] == "awaiting_approval"
    report = actions["database_connections.C.report_leak_orchestrator"]
    assert report["status"] == "report" and report["change"]["workload"] == "Deployment/orchestrator"


def test_d_a_blocking_network_policy_and_the_dns_exec(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections_kubernetes as dck

    k8s_api.seed([DENY_POSTGRES])
    evidence = evidence_with(k8s_api, tmp_path, health_pg="error: connection timed out")
    diagnosis = dck.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    policy = found["k8s.network_policy"]
    assert policy["status"] == "problem" and policy["scenario"] == "D"
    assert policy["evidence"]["blocking"] == ["postgres-ingress (ingress to postgres)"]
    assert found["app.connectivity"]["scenario"] == "D"
    assert "exec_probe" not in found["app.connectivity"]["evidence"]  # no Docker exec on Kubernetes
    assert {s["id"] for s in diagnosis["scenarios"] if s["holds"]} == {"D"}
    actions = by_id(dck.plan(diagnosis, SETTINGS))
    report = actions["database_connections.D.report_network"]
    assert report["status"] == "report" and report["change"]["blocking_policies"] == policy["evidence"]["blocking"]
    assert "postgres-ingress" in report["outcome"]
    dns = actions["database_connections.D.check_dns"]
    assert dns["status"] == "planned" and dns["disruptive"] is False and dns["_apply"] == "check_dns"
    pods = sorted(p["metadata"]["name"] for p in k8s_api.objects_of("v1/pods", "app=orchestrator"))
    assert dns["change"] == {"namespace": "octollm", "pod": pods[0], "container": "orchestrator",
                             "argv": ["getent", "hosts", "postgres", "postgres.octollm.svc"],
                             "command": "getent hosts postgres postgres.octollm.svc"}
    # what kubernetes.core.k8s_exec runs: shlex.split(command) - the plan's argv exactly
    import shlex

    assert shlex.split(dns["change"]["command"]) == dns["change"]["argv"]
    task = task_args(REPO / "roles/database_connections/tasks/kubernetes/actions/check_dns.yml",
                     "kubernetes.core.k8s_exec")
    assert {key: task[key] for key in ("namespace", "pod", "container", "command")} == {
        key: "{{ _common_action.change.%s }}".replace("%s", key)
        for key in ("namespace", "pod", "container", "command")}

    # an ingress rule that admits the orchestrator on the postgres port clears the finding
    allow = json.loads(json.dumps(DENY_POSTGRES))
    allow["spec"]["ingress"].append({"from": [{"podSelector": {"matchLabels": {"app": "orchestrator"}}}],
                                     "ports": [{"port": 5432}]})
    k8s_api.seed([allow])
    found = by_check(dck.diagnose(evidence_with(k8s_api, tmp_path), SETTINGS)["findings"])
    assert found["k8s.network_policy"]["status"] == "ok"

    # the Service without ready pods behind it (postgres-0 not ready): D, as the name routes nowhere
    pod = k8s_api.objects_of("v1/pods", "app=postgres")[0]
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    k8s_api.seed([pod])
    found = by_check(dck.diagnose(evidence_with(k8s_api, tmp_path), SETTINGS)["findings"])
    assert found["k8s.postgres_service"]["status"] == "problem"
    assert found["k8s.postgres_service"]["evidence"]["not_ready_addresses"] == ["postgres-0"]
    assert found["k8s.postgres_pods"]["status"] == "problem"
    assert k8s_api.writes() == []


# --- two runs of the role: a PostgreSQL and a /health stand-in ------------------------------------------
@pytest.fixture(scope="module")
def postgres_port() -> Iterator[int]:
    """A throwaway PostgreSQL standing in for `kubectl port-forward svc/postgres` (postgres_standin.py)."""
    with postgres() as port:
        yield port


@pytest.fixture
def health_server() -> Iterator[dict[str, Any]]:
    """The orchestrator's /health (the port-forward to svc/orchestrator): answers ``state['body']``."""
    state: dict[str, Any] = {"body": {"status": "ok", "checks": {"postgres": "ok",
                                                                 "db_pool": {"in_use": 1, "max": 10, "leaked": 0}}}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            payload = json.dumps(state["body"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()


def test_resolve_with_approval_raises_the_pool_in_the_configmap_and_restarts_the_orchestrator(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, postgres_port: int, health_server: dict[str, Any]) -> None:
    import datetime

    health_server["body"]["checks"]["db_pool"] = {"in_use": 10, "max": 10, "leaked": 0}
    env = {"OCTOLLM_POSTGRES_PORT": str(postgres_port), "OCTOLLM_ORCHESTRATOR_URL": health_server["url"]}
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    result = run_k8s("database_connections", "resolve", env=env, octollm_approve=True, **FAST)

    found = by_check(result["findings"])
    assert found["pg.up"]["status"] == "ok" and found["pg.connections"]["status"] == "ok"
    assert found["app.pool"]["status"] == "problem" and found["app.pool"]["scenario"] == "A"
    raise_pool = by_id(result["actions"])["database_connections.A.raise_pool"]
    assert raise_pool["status"] == "applied", raise_pool["outcome"]
    assert "rollout not awaited" in raise_pool["outcome"]
    data = raise_pool["change"]["data"]
    assert int(data["DB_POOL_SIZE"]) > 5 and int(data["DB_POOL_MAX_OVERFLOW"]) >= 5

    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [("PATCH", CONFIGMAP_PATH), ("PATCH", DEPLOYMENT_PATH)]
    patch = writes[0]
    assert patch.content_type in ("application/strategic-merge-patch+json", "application/merge-patch+json")
    assert set(patch.body) <= {"apiVersion", "kind", "metadata", "data"}
    assert patch.body["data"] == data  # the two pool keys, nothing else
    configmap = k8s_api.get("v1/configmaps", "octollm-config")
    assert configmap["data"]["DB_POOL_SIZE"] == data["DB_POOL_SIZE"] and configmap["data"]["LOG_LEVEL"] == "info"
    restart = writes[1]
    assert restart.content_type == "application/strategic-merge-patch+json"
    assert set(restart.body) <= {"apiVersion", "kind", "metadata", "spec"}
    stamp = restart.body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert restart.body["spec"] == {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": stamp}}}}
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert started - datetime.timedelta(seconds=5) <= when <= datetime.datetime.now(datetime.UTC)
    # the stand-in /health still reports a full pool (no new pods behind the emulator): left as a problem
    assert result["verification"]["healthy"] is False
    out = json.dumps(result)
    for secret in ("octollm-lab-dev", "octollm-lab-admin-dev", "octollm-redis-dev", "sk-lab-dev"):
        assert secret not in out


def test_resolve_without_approval_waits_and_writes_nothing(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, postgres_port: int, health_server: dict[str, Any]) -> None:
    """A full pool (A, disruptive: awaits approval) and a NetworkPolicy that blocks the orchestrator (D: report,
    and the DNS exec, which the emulator cannot serve: its outcome says so)."""
    k8s_api.seed([DENY_POSTGRES])
    health_server["body"]["checks"] = {"postgres": "error: timeout expired",
                                       "db_pool": {"in_use": 10, "max": 10, "leaked": 0}}
    env = {"OCTOLLM_POSTGRES_PORT": str(postgres_port), "OCTOLLM_ORCHESTRATOR_URL": health_server["url"]}
    result = run_k8s("database_connections", "resolve", env=env, **FAST)

    found = by_check(result["findings"])
    assert found["k8s.network_policy"]["status"] == "problem" and found["k8s.network_policy"]["scenario"] == "D"
    assert found["app.connectivity"]["scenario"] == "D"
    actions = by_id(result["actions"])
    assert actions["database_connections.A.raise_pool"]["status"] == "awaiting_approval"
    assert actions["database_connections.D.report_network"]["status"] == "report"
    dns = actions["database_connections.D.check_dns"]
    assert dns["status"] == "failed" and dns["outcome"].startswith("exec failed")  # no exec behind the emulator
    assert k8s_api.writes() == []
    assert result["escalation"]["level"] in ("L1", "L2")


# --- issue 15: a PostgreSQL StatefulSet scaled to 0 is started (k8s_scale), not disruptive --------------------
def test_a_postgres_scaled_to_zero_is_started_before_any_scenario(k8s_api: KubernetesAPIEmulator,
                                                                  tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections_kubernetes as dck

    stateful = k8s_api.get("apps/v1/statefulsets", "postgres")
    stateful["spec"]["replicas"] = 0
    stateful["status"] = {"replicas": 0, "readyReplicas": 0}
    k8s_api.seed([stateful])
    evidence = evidence_with(k8s_api, tmp_path)
    refused = {"kind": "unreachable", "message": "PostgreSQL (postgres): connection refused", "source": "postgres"}
    evidence["postgres"] = {"ok": False, "error": refused, "ping": {"ok": False, "error": refused}}
    diagnosis = dck.diagnose(evidence, SETTINGS)
    running = by_check(diagnosis["findings"])["pg.running"]
    assert running["status"] == "problem" and running["observed"] == "StatefulSet/postgres scaled to 0 replicas"
    [start] = dck.plan(diagnosis, SETTINGS)
    assert (start["id"], start["status"], start["disruptive"], start["_apply"]) == (
        "database_connections.start_postgres", "planned", False, "start_database")
    assert start["change"] == {"workload": "StatefulSet/postgres", "kind": "StatefulSet", "name": "postgres",
                               "namespace": "octollm", "old": 0, "new": 1, "op": "scale (kubernetes.core.k8s_scale)"}


def test_resolve_without_approval_scales_postgres_up(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, postgres_port: int, health_server: dict[str, Any]) -> None:
    stateful = k8s_api.get("apps/v1/statefulsets", "postgres")
    stateful["spec"]["replicas"] = 0
    k8s_api.seed([stateful])
    env = {"OCTOLLM_POSTGRES_PORT": str(postgres_port), "OCTOLLM_ORCHESTRATOR_URL": health_server["url"]}
    result = run_k8s("database_connections", "resolve", env=env, **FAST)
    start = by_id(result["actions"])["database_connections.start_postgres"]
    assert start["status"] == "applied" and "from 0 to 1 replicas" in start["outcome"], start
    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", "/apis/apps/v1/namespaces/octollm/statefulsets/postgres/scale")]
    assert writes[0].body["spec"] == {"replicas": 1}
    # the verification reads the StatefulSet again: it has its replica
    assert by_check(result["verification"]["findings"])["pg.running"]["status"] == "ok"
