"""Judgement of service_unavailable on synthetic evidence shaped like stack_evidence's (no lab needed)."""

from __future__ import annotations

import copy
import json
import time

from ansible_collections.octollm.remediation.plugins.filter.service_unavailable import FilterModule
from ansible_collections.octollm.remediation.plugins.plugin_utils import service_unavailable as su

NOW = time.time()
OLD = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(NOW - 3600))
SETTINGS = {"override_file": "/state/compose.override.yaml", "env_files": ["/state/lab.env"]}


def record(service, **extra):
    item = {
        "service": service,
        "name": f"octollm-{service}-1",
        "running": True,
        "state": "running",
        "restarting": False,
        "health": "healthy",
        "exit_code": 0,
        "oom_killed": False,
        "restart_count": 0,
        "started_at": OLD,
        "memory_limit": 268435456,
        "memory_reservation": 67108864,
        "nano_cpus": 10**9,
        "healthcheck": True,
        "restart_policy": {"name": "unless-stopped", "max_retries": 0},
        "stats": {"memory_percent": 10.0, "oom_kills": 0},
        "health_log": {"output": "OK"},
    }
    item.update(extra)
    return item


def evidence(*records, deps="postgres:5432 ok\nredis:6379 ok\nqdrant:6333 ok", logs=None, http=None):
    names = [r["service"] for r in records]
    return {
        "containers": {
            "ok": True,
            "project": "octollm",
            "containers": list(records),
            "logs": logs or {},
            "exec_probes": [
                {
                    "name": "service_unavailable_dependencies_orchestrator",
                    "container": "octollm-orchestrator-1",
                    "exit_code": 0 if deps else None,
                    "output": deps,
                    "ok": bool(deps),
                    "error": None if deps else {"kind": "unreachable", "message": "no running container"},
                },
                {"name": "service_unavailable_pg_isready", "exit_code": 0, "ok": True, "output": "accepting"},
                {"name": "service_unavailable_redis_ping", "exit_code": 0, "ok": True, "output": "PONG"},
            ],
        },
        "http": {
            "ok": True,
            "probes": http
            if http is not None
            else {f"service_unavailable_health_{n}": {"ok": True, "status": 200} for n in names if n.endswith("arm")},
        },
    }


def config(services):
    return {"rc": 0, "stdout": json.dumps({"services": services}), "stderr": ""}


HEALTHY = [record("orchestrator"), record("judge-arm"), record("postgres"), record("redis")]
DECLARED = config(
    {
        "judge-arm": {"mem_limit": "268435456", "depends_on": {"postgres": {}, "redis": {}}},
        "orchestrator": {"mem_limit": "268435456", "depends_on": {"postgres": {}}},
        "postgres": {"mem_limit": "536870912"},
    }
)


def test_healthy_evidence_gives_only_ok():
    result = su.diagnose(evidence(*HEALTHY), SETTINGS, DECLARED)
    assert {f["check"]: f["status"] for f in result["findings"]} == {
        "containers.running": "ok",
        "containers.health": "ok",
        "containers.restarts": "ok",
        "containers.oom": "ok",
        "http.health": "ok",
        "dependencies.reachable": "ok",
        "compose.config": "ok",
    }
    assert su.plan(result, SETTINGS) == []
    assert result["escalation"]["level"] is None


def test_crash_is_a_and_its_start_waits_for_approval():
    crashed = record("judge-arm", running=False, state="exited", exit_code=137, health="unhealthy", stats=None)
    result = su.diagnose(evidence(HEALTHY[0], crashed, HEALTHY[2], HEALTHY[3]), SETTINGS, DECLARED)
    running = {f["check"]: f for f in result["findings"]}["containers.running"]
    assert running["status"] == "problem" and running["scenario"] == "A" and "exit 137" in running["observed"]
    actions = su.plan(result, SETTINGS)
    assert [(a["id"], a["status"], a["change"]["op"]) for a in actions] == [
        ("service_unavailable.A.up_judge_arm", "awaiting_approval", "up")
    ]
    assert su.plan(result, dict(SETTINGS, approve=True))[0]["status"] == "planned"


def test_database_down_is_fixed_before_the_services_that_need_it():
    pg = record("postgres", running=False, state="exited", exit_code=1)
    orch = record("orchestrator", health="unhealthy")
    result = su.diagnose(
        evidence(orch, HEALTHY[1], pg, HEALTHY[3], deps="postgres:5432 fail\nredis:6379 ok"), SETTINGS, DECLARED
    )
    # the orchestrator runs and fails only because postgres (which it depends on) is down: C, not a crash of its own
    assert {s["id"]: s["holds"] for s in result["scenarios"]} == {"A": False, "B": False, "C": True, "D": False}
    actions = su.plan(result, dict(SETTINGS, approve=True))
    assert [a["id"] for a in actions] == ["service_unavailable.C.up_postgres"]
    assert actions[0]["change"]["then_wait"] == ["orchestrator"]  # not restarted: waited for after postgres
    assert "orchestrator" in actions[0]["outcome"]  # its dependents are named
    # a dependent that exited is started on its own, after the database
    stopped = record("orchestrator", running=False, state="exited", exit_code=1)
    result = su.diagnose(
        evidence(stopped, HEALTHY[1], pg, HEALTHY[3], deps="postgres:5432 fail\nredis:6379 ok"), SETTINGS, DECLARED
    )
    assert [a["id"] for a in su.plan(result, dict(SETTINGS, approve=True))] == [
        "service_unavailable.C.up_postgres",
        "service_unavailable.A.up_orchestrator",
    ]


def test_oom_kill_raises_the_limit_by_a_bounded_step():
    killed = record("judge-arm", oom_killed=True, restart_count=1, memory_limit=46137344)
    result = su.diagnose(evidence(HEALTHY[0], killed, HEALTHY[2], HEALTHY[3]), SETTINGS, DECLARED)
    assert {f["check"]: f for f in result["findings"]}["containers.oom"]["scenario"] == "B"
    [act] = su.plan(result, dict(SETTINGS, approve=True))
    assert act["change"] == {
        "service": "judge-arm",
        "key": "services.judge-arm.mem_limit",
        "old": "44m",
        "declared": "256m",
        "new": "384m",
        "file": "/state/compose.override.yaml",
        "op": "up (recreate)",
    }
    assert act["disruptive"] and act["_apply"] == "raise_memory"
    # capped: at the cap there is nothing left to raise, a human decides
    capped = su.plan(result, dict(SETTINGS, approve=True, memory_limit_max="256m"))
    assert capped[0]["status"] == "report"


def test_configuration_error_is_a_report_naming_the_setting():
    looping = record("judge-arm", running=False, restarting=True, state="restarting", restart_count=5, exit_code=1)
    logs = {
        "judge-arm": {
            "lines": ["Traceback ...", "ValueError: invalid literal for int() with base 10: 'x' (DB_POOL_SIZE)"],
            "matches": [],
        }
    }
    result = su.diagnose(evidence(HEALTHY[0], looping, HEALTHY[2], HEALTHY[3], logs=logs), SETTINGS, DECLARED)
    [act] = su.plan(result, SETTINGS)
    assert act["status"] == "report" and act["scenario"] == "D" and act["change"]["setting"] == "DB_POOL_SIZE"
    assert "/state/lab.env" in act["outcome"]
    invalid = su.diagnose(evidence(*HEALTHY), SETTINGS, {"rc": 1, "stdout": "", "stderr": "yaml: line 3: bad"})
    assert {f["check"]: f["status"] for f in invalid["findings"]}["compose.config"] == "problem"


def test_configuration_error_names_the_setting_from_the_environment_or_the_traceback():
    looping = record("orchestrator", running=False, restarting=True, state="restarting", restart_count=4, exit_code=1)
    traceback = [
        'Traceback (most recent call last):',
        '    pool_size=env_int("DB_POOL_SIZE", 5), max_overflow=env_int("DB_POOL_MAX_OVERFLOW", 5),',
        "ValueError: invalid literal for int() with base 10: 'ten'",
    ]
    logs = {"orchestrator": {"lines": traceback, "matches": []}}
    env = config({"orchestrator": {"environment": {"DB_POOL_SIZE": "ten", "DB_POOL_MAX_OVERFLOW": "5"}}})
    result = su.diagnose(evidence(looping, *HEALTHY[1:], logs=logs), SETTINGS, env)
    [act] = su.plan(result, SETTINGS)
    assert act["change"]["setting"] == "DB_POOL_SIZE" and "ten" not in json.dumps(act["change"]["setting"])
    # without the environment: the quoted names in the traceback's source line
    result = su.diagnose(evidence(looping, *HEALTHY[1:], logs=logs), SETTINGS, DECLARED)
    assert su.plan(result, SETTINGS)[0]["change"]["setting"] == "DB_POOL_SIZE or DB_POOL_MAX_OVERFLOW"


def test_docker_unreachable_is_unknown_with_its_kind_and_probe_down_is_not_environment():
    down = {
        "containers": {"ok": False, "error": {"kind": "unreachable", "message": "Docker API unreachable"}},
        "http": {"ok": True, "probes": {}},
    }
    result = su.diagnose(down, SETTINGS)
    running = {f["check"]: f for f in result["findings"]}["containers.running"]
    assert running["status"] == "unknown" and running["error"]["kind"] == "unreachable"
    nodeps = su.diagnose(evidence(*HEALTHY, deps=None), SETTINGS, DECLARED)
    deps = {f["check"]: f for f in nodeps["findings"]}["dependencies.reachable"]
    assert deps["status"] == "unknown" and deps["error"]["kind"] == "other"


def test_old_restarts_are_history_recent_ones_a_warning_and_a_loop_a_problem():
    recent = time.strftime("%Y-%m-%dT%H:%M:%S.0Z", time.gmtime(NOW - 30))
    result = su.diagnose(evidence(record("judge-arm", restart_count=1)), SETTINGS)
    assert result["findings"][2]["status"] == "ok"
    result = su.diagnose(evidence(record("judge-arm", restart_count=1, started_at=recent)), SETTINGS)
    assert result["findings"][2]["status"] == "warning"
    result = su.diagnose(evidence(record("judge-arm", restart_count=4, started_at=recent)), SETTINGS)
    assert result["findings"][2]["status"] == "problem"


def test_override_keeps_other_keys_and_prevention_reads_live_containers():
    doc = su.override_with({"services": {"redis": {"mem_limit": "128m"}}, "x-note": 1}, "judge-arm", "384m")
    assert doc == {
        "services": {"redis": {"mem_limit": "128m"}, "judge-arm": {"mem_limit": "384m", "memswap_limit": "384m"}},
        "x-note": 1,
    }
    loose = copy.deepcopy(HEALTHY)
    loose[1].update(healthcheck=False, memory_reservation=None, restart_policy={"name": "no"})
    result = su.prevention(evidence(*loose), SETTINGS)
    statuses = {f["check"]: f["status"] for f in result["findings"]}
    assert statuses == {
        "prevent.containers.healthcheck": "warning",
        "prevent.containers.restart_policy": "warning",
        "prevent.containers.memory_limit": "ok",
        "prevent.containers.memory_reservation": "warning",
        "prevent.containers.cpu_limit": "ok",
    }
    assert all(a["status"] == "report" and "judge-arm" in a["outcome"] for a in result["actions"])


def test_filters_are_registered():
    filters = FilterModule().filters()
    for name in (
        "service_unavailable_diagnosis",
        "service_unavailable_plan",
        "service_unavailable_prevention",
        "service_unavailable_override",
        "service_unavailable_probes",
    ):
        assert name in filters
    probes = filters["service_unavailable_probes"](
        {"orchestrator": {"url": "http://x"}, "postgres": {"port": 5432}, "qdrant": {"url": "http://q"}},
        {"qdrant": "/healthz"},
        ["orchestrator", "planner-arm"],
        "nc",
        "pg_isready",
        "redis-cli ping",
    )
    assert [p["name"] for p in probes["http_probes"]] == [
        "service_unavailable_health_orchestrator",
        "service_unavailable_health_qdrant",
    ]
    assert probes["http_probes"][1]["path"] == "/healthz"
    assert [p["service"] for p in probes["exec_probes"]] == ["orchestrator", "planner-arm", "postgres", "redis"]
