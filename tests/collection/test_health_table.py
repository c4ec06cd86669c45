"""octoctl health's table (plugin_utils/health.py): every service with its state, restarts, health, readiness and
key metrics, judged with the thresholds of the procedures' settings (their roles' defaults, never copies)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils import cache_performance, health
from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import describe
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import role_settings

SERVICES = {
    "orchestrator": {"url": "http://127.0.0.1:8000", "ready_path": "/ready"},
    "planner-arm": {"url": "http://127.0.0.1:8100"},
    "postgres": {"port": 5432},
    "redis": {"port": 6379},
}


def run(platform: str = "compose", **overrides: Any) -> dict[str, Any]:
    inventory = describe({"services": SERVICES, "k8s": {"namespace": "octollm"} if platform == "kubernetes" else {}},
                         role_settings("_common"))
    settings = {name: role_settings(name, overrides.get(name)) for name in health.PROCEDURES}
    return {"context": Context(platform=platform, phase="diagnose", inventory=inventory), "settings": settings}


def series(**values: float) -> dict[str, Any]:
    return {"series": [{"labels": {"service": name.replace("_", "-")}, "value": value}
                       for name, value in values.items()], "error": None}


def container(service: str, restarts: int = 0, memory: float = 10.0, cpu: float = 5.0, **more: Any) -> dict[str, Any]:
    return {"service": service, "name": f"octollm-{service}-1", "running": True, "state": "running",
            "health": "healthy", "restart_count": restarts, "started_at": more.pop("started_at", None),
            "stats": {"memory_percent": memory, "cpu_limit_percent": cpu}, **more}


def evidence() -> dict[str, Any]:
    return {
        "containers": {"ok": True, "containers": [container(name) for name in SERVICES]},
        "http": {"ok": True, "probes": {"stack_health_orchestrator": {"status": 200},
                                        "stack_health_planner-arm": {"status": 200},
                                        "health_ready_orchestrator": {"status": 200}}},
        "prometheus": {"ok": True, "queries": {
            health.Q_REQUESTS: series(orchestrator=4.0, planner_arm=1.0),
            health.Q_ERRORS: series(orchestrator=0.0),
            health.Q_P95: series(orchestrator=0.08, planner_arm=0.01),
            cache_performance.Q_HIT_RATE: {"value": 0.82, "series": [], "error": None},
            cache_performance.Q_LOOKUPS: {"value": 2.4, "series": [], "error": None},
        }},
        "postgres": {"ok": True, "connections": {"total": 7, "max_connections": 40}},
    }


def rows(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["service"]: row for row in table["services"]}


def test_needs_ask_readiness_stats_metrics_and_connections() -> None:
    need = health.needs(run())
    assert [p["path"] for p in need["http"]["probes"]] == ["/ready"]
    assert need["containers"]["stats"] is True
    # the sample is resource_exhaustion's setting, the window high_latency's
    assert need["containers"]["stats_sample_seconds"] == role_settings("resource_exhaustion")["stats_sample_seconds"]
    window = role_settings("high_latency")["prometheus_window"]
    assert f"[{window}]" in need["prometheus"]["queries"][health.Q_P95]
    assert need["postgres"] == {"connections": True}
    assert "containers" not in health.needs(run("kubernetes"))


def test_a_healthy_stack_has_one_ok_row_per_service_with_its_metrics() -> None:
    table = health.judge(evidence(), run())
    found = rows(table)
    assert sorted(found) == sorted(SERVICES)
    assert {row["status"] for row in found.values()} == {"ok"}
    assert found["orchestrator"]["requests_per_s"] == 4.0 and found["orchestrator"]["error_ratio"] == 0.0
    assert found["orchestrator"]["ready"] == 200 and found["orchestrator"]["health"] == 200
    assert found["redis"]["cache_hit_rate"] == 0.82
    assert found["postgres"]["db_connections"] == "7/40"
    assert table["thresholds"]["p95_max_seconds"] == role_settings("high_latency")["p95_max_seconds"]


@pytest.mark.parametrize("procedure, setting, breaks, service, words", [
    ("high_latency", "p95_max_seconds", lambda e, t: e["prometheus"]["queries"][health.Q_P95]["series"][0].update(
        value=t + 1), "orchestrator", "P95"),
    ("service_unavailable", "error_ratio_max", lambda e, t: e["prometheus"]["queries"].update(
        {health.Q_ERRORS: series(orchestrator=4.0 * (t + 0.1))}), "orchestrator", "error rate"),
    ("cache_performance", "hit_rate_min", lambda e, t: e["prometheus"]["queries"][cache_performance.Q_HIT_RATE]
        .update(value=t / 2), "redis", "cache hit rate"),
    ("database_connections", "usage_ratio_max", lambda e, t: e["postgres"]["connections"].update(
        total=int(40 * t) + 1), "postgres", "connections"),
    ("resource_exhaustion", "memory_high_percent", lambda e, t: e["containers"]["containers"][1]["stats"].update(
        memory_percent=t + 1), "planner-arm", "memory"),
    ("resource_exhaustion", "cpu_high_percent", lambda e, t: e["containers"]["containers"][0]["stats"].update(
        cpu_limit_percent=t + 1), "orchestrator", "CPU"),
    ("service_unavailable", "restart_max", lambda e, t: e["containers"]["containers"][3].update(
        restart_count=t, started_at=None), "redis", "restarted"),
])
def test_a_metric_past_its_procedures_threshold_is_a_problem(procedure, setting, breaks, service, words) -> None:
    threshold = role_settings(procedure)[setting]
    broken = copy.deepcopy(evidence())
    breaks(broken, threshold)
    found = rows(health.judge(broken, run()))
    assert found[service]["status"] == "problem"
    assert any(words in note for note in found[service]["notes"])
    assert {row["status"] for name, row in found.items() if name != service} == {"ok"}
    # the threshold is the setting's: the same evidence under a looser setting is ok
    if setting not in ("restart_max",):
        loose = {"hit_rate_min": 0.0}.get(setting, threshold * 100 if setting != "usage_ratio_max" else 1.0)
        again = rows(health.judge(broken, run(**{procedure: {setting: loose}})))
        assert again[service]["status"] == "ok", again[service]["notes"]


def test_a_failed_readiness_and_a_stopped_container_are_problems() -> None:
    broken = evidence()
    broken["http"]["probes"]["health_ready_orchestrator"] = {"status": 503}
    broken["containers"]["containers"][1].update(running=False, state="exited", health=None, exit_code=137)
    found = rows(health.judge(broken, run()))
    assert found["orchestrator"]["status"] == "problem" and "/ready answered 503" in found["orchestrator"]["notes"]
    assert found["planner-arm"]["status"] == "problem" and "exited" in found["planner-arm"]["state"]


def test_metrics_that_cannot_be_read_are_unknown_not_ok() -> None:
    broken = evidence()
    broken["prometheus"] = {"ok": False, "error": {"kind": "unreachable", "message": "connection refused"}}
    broken["postgres"] = {"ok": False, "error": {"kind": "unreachable", "message": "connection refused"}}
    found = rows(health.judge(broken, run()))
    assert found["orchestrator"]["status"] == "unknown" and found["redis"]["status"] == "unknown"
    assert found["postgres"]["db_connections"] == "unknown"


def test_kubernetes_rows_come_from_the_pods() -> None:
    pods = [{"metadata": {"name": "orchestrator-1", "labels": {"app": "orchestrator"}},
             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                        "containerStatuses": [{"name": "orchestrator", "restartCount": 7, "ready": False,
                                               "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}]
    kube = evidence()
    del kube["containers"]
    kube["kubernetes"] = {"ok": True, "objects": {"stack_pods": {"items": pods}}}
    found = rows(health.judge(kube, run("kubernetes")))
    assert found["orchestrator"]["restarts"] == 7 and found["orchestrator"]["status"] == "problem"
