"""Judgement of service_unavailable on synthetic evidence shaped like stack_evidence's (no lab needed)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from ansible_collections.octollm.remediation.plugins.filter.service_unavailable import FilterModule
from ansible_collections.octollm.remediation.plugins.module_utils import collector_containers as cc
from ansible_collections.octollm.remediation.plugins.plugin_utils import service_unavailable as su
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings

NOW = time.time()
OLD = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(NOW - 3600))
SETTINGS = procedure_settings(
    "service_unavailable", {"override_file": "/state/compose.override.yaml", "env_files": ["/state/lab.env"]}
)


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


def evidence(*records, deps="postgres:5432 ok\nredis:6379 ok\nqdrant:6333 ok", logs=None, http=None, config=None):
    """The evidence; ``config`` is the raw answer of ``docker compose config`` ({rc, stdout, stderr}), reduced here
    as the containers collector reduces it (against the log lines it collected)."""
    names = [r["service"] for r in records]
    compose = (
        {"compose_config": cc.reduce_compose_config(config["rc"], config["stdout"], config["stderr"], logs or {})}
        if config
        else {}
    )
    return {
        "containers": {
            "ok": True,
            "project": "octollm",
            "containers": list(records),
            "logs": logs or {},
            **compose,
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
    result = su.diagnose(evidence(*HEALTHY, config=DECLARED), SETTINGS)
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
    result = su.diagnose(evidence(HEALTHY[0], crashed, HEALTHY[2], HEALTHY[3], config=DECLARED), SETTINGS)
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
        evidence(orch, HEALTHY[1], pg, HEALTHY[3], deps="postgres:5432 fail\nredis:6379 ok", config=DECLARED), SETTINGS
    )
    # the orchestrator runs and fails only because postgres (which it depends on) is down: C, not a crash of its own
    assert {s["id"]: s["holds"] for s in result["scenarios"]} == {"A": False, "B": False, "C": True, "D": False}
    actions = su.plan(result, dict(SETTINGS, approve=True))
    assert [a["id"] for a in actions] == ["service_unavailable.C.up_postgres"]
    assert actions[0]["change"]["then_wait"] == ["orchestrator"]  # not restarted: waited for after postgres
    assert "orchestrator" in actions[0]["outcome"]  # its dependents are named
    # a dependent that exited is started on its own, after the database
    stopped = record("orchestrator", running=False, state="exited", exit_code=1)
    broken = evidence(stopped, HEALTHY[1], pg, HEALTHY[3], deps="postgres:5432 fail\nredis:6379 ok", config=DECLARED)
    result = su.diagnose(broken, SETTINGS)
    assert [a["id"] for a in su.plan(result, dict(SETTINGS, approve=True))] == [
        "service_unavailable.C.up_postgres",
        "service_unavailable.A.up_orchestrator",
    ]



def test_a_stopped_database_is_started_without_approval_a_running_one_restarted_with_it():
    """Issue 15: a start of a database that is down loses nothing (not disruptive; its container is started as it
    is, never recreated); a restart of one that runs and fails is disruptive."""
    declared = config({"orchestrator": {"depends_on": {"postgres": {}, "redis": {}}}, "judge-arm": {
        "depends_on": {"postgres": {}, "redis": {}}}})
    redis = record("redis", running=False, state="exited", exit_code=0, health="unhealthy")
    orch = record("orchestrator", health="unhealthy")
    result = su.diagnose(evidence(orch, HEALTHY[1], HEALTHY[2], redis, deps="postgres:5432 ok\nredis:6379 fail",
                                  config=declared), SETTINGS)
    [start] = su.plan(result, SETTINGS)
    assert (start["id"], start["status"], start["disruptive"]) == ("service_unavailable.C.up_redis", "planned", False)
    assert start["change"] == {"container": "octollm-redis-1", "service": "redis", "op": "up",
                               "then_wait": ["orchestrator"], "then_wait_containers": ["octollm-orchestrator-1"],
                               "recreate": "never"}
    assert start["title"].startswith("start the database redis") and "--no-recreate" in start["outcome"]
    # running but failing (unhealthy): a restart, which waits for approval
    sick = record("postgres", health="unhealthy")
    result = su.diagnose(evidence(HEALTHY[0], HEALTHY[1], sick, HEALTHY[3], config=declared), SETTINGS)
    [restart] = su.plan(result, SETTINGS)
    assert (restart["id"], restart["status"], restart["disruptive"]) == (
        "service_unavailable.C.restart_postgres", "awaiting_approval", True)
    assert "recreate" not in restart["change"]
    # a stopped service that is no database keeps the approval (scenario A)
    crashed = record("judge-arm", running=False, state="exited", exit_code=137)
    result = su.diagnose(evidence(HEALTHY[0], crashed, HEALTHY[2], HEALTHY[3], config=declared), SETTINGS)
    assert [(a["id"], a["disruptive"]) for a in su.plan(result, SETTINGS)] == [("service_unavailable.A.up_judge_arm",
                                                                                 True)]

def test_oom_kill_raises_the_limit_by_a_bounded_step():
    killed = record("judge-arm", oom_killed=True, restart_count=1, memory_limit=46137344)
    result = su.diagnose(evidence(HEALTHY[0], killed, HEALTHY[2], HEALTHY[3], config=DECLARED), SETTINGS)
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
    result = su.diagnose(evidence(HEALTHY[0], looping, HEALTHY[2], HEALTHY[3], logs=logs, config=DECLARED), SETTINGS)
    [act] = su.plan(result, SETTINGS)
    assert act["status"] == "report" and act["scenario"] == "D" and act["change"]["setting"] == "DB_POOL_SIZE"
    assert "/state/lab.env" in act["outcome"]
    invalid = su.diagnose(evidence(*HEALTHY, config={"rc": 1, "stdout": "", "stderr": "yaml: line 3: bad"}), SETTINGS)
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
    result = su.diagnose(evidence(looping, *HEALTHY[1:], logs=logs, config=env), SETTINGS)
    [act] = su.plan(result, SETTINGS)
    assert act["change"]["setting"] == "DB_POOL_SIZE" and "ten" not in json.dumps(act["change"]["setting"])
    # without the environment: the quoted names in the traceback's source line
    result = su.diagnose(evidence(looping, *HEALTHY[1:], logs=logs, config=DECLARED), SETTINGS)
    assert su.plan(result, SETTINGS)[0]["change"]["setting"] == "DB_POOL_SIZE or DB_POOL_MAX_OVERFLOW"


def test_docker_unreachable_is_unknown_with_its_kind_and_probe_down_is_not_environment():
    down = {
        "containers": {"ok": False, "error": {"kind": "unreachable", "message": "Docker API unreachable"}},
        "http": {"ok": True, "probes": {}},
    }
    result = su.diagnose(down, SETTINGS)
    running = {f["check"]: f for f in result["findings"]}["containers.running"]
    assert running["status"] == "unknown" and running["error"]["kind"] == "unreachable"
    nodeps = su.diagnose(evidence(*HEALTHY, deps=None, config=DECLARED), SETTINGS)
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


def test_the_override_filter_is_registered_and_the_needs_name_every_probe():
    assert set(FilterModule().filters()) == {"service_unavailable_override"}  # the action file's only filter
    settings = procedure_settings(
        "service_unavailable", {"pg_isready_cmd": "pg_isready", "redis_ping_cmd": "redis-cli ping"}
    )
    context = Context(
        platform="compose",
        inventory={
            "services": {"orchestrator": {"url": "http://x"}, "postgres": {"port": 5432}, "qdrant": {"url": "http://q"}},
            "compose": {"project": "octollm", "project_dir": "/lab", "files": ["/lab/compose.yaml"], "env_file": None},
        },
    )
    needs = su.PROCEDURE.needs(settings, context)
    probes = {"http_probes": needs["http"]["probes"], "exec_probes": needs["containers"]["exec_probes"]}
    assert [p["name"] for p in probes["http_probes"]] == [
        "service_unavailable_health_orchestrator",
        "service_unavailable_health_qdrant",
    ]
    assert probes["http_probes"][1]["path"] == "/healthz"
    assert [p["service"] for p in probes["exec_probes"]] == ["orchestrator", "planner-arm", "postgres", "redis"]
    assert probes["exec_probes"][0]["cmd"] == (
        "for t in postgres:5432 redis:6379 qdrant:6333; do "
        'if nc -z -w 2 "${t%:*}" "${t##*:}" >/dev/null 2>&1; then echo "$t ok"; else echo "$t fail"; fi; done'
    )
    assert needs["containers"]["compose_config"] == {"project_dir": "/lab", "files": ["/lab/compose.yaml"],
                                                     "env_file": None}
    assert set(su.PROCEDURE.needs(settings, Context(platform="kubernetes", inventory={}))) == {"kubernetes"}


SECRET = "s3cr3t-Value-Never-Shown-42"


def _compose_project(tmp_path: Path, env_text: str) -> dict:
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  app:\n    image: busybox\n    env_file: [app.env]\n    mem_limit: 64m\n    depends_on: [db]\n"
        f"  db:\n    image: busybox\n    environment: {{DB_PASSWORD: '{SECRET}'}}\n"
    )
    (tmp_path / "app.env").write_text(env_text)
    return {"project_dir": str(tmp_path), "files": [str(tmp_path / "compose.yaml")], "env_file": None}


@pytest.mark.skipif(
    shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode,
    reason="no docker compose CLI",
)
def test_compose_config_evidence_never_holds_an_environment_value(tmp_path: Path) -> None:
    """The containers collector's compose_config (docker compose config, no Docker engine needed) keeps mem_limit,
    depends_on and the names of the variables a log line quotes: never a value, even when the env file is broken."""
    options = _compose_project(tmp_path, f"GOOD=1\nSECRET_TOKEN={SECRET}\nDB_POOL_SIZE=ten\n")
    logs = {"app": {"lines": ["Traceback ...", "ValueError: invalid literal for int() with base 10: 'ten'"],
                    "matches": []}}
    reduced = cc.reduce_compose_config(*cc.run_compose_config("sutest", options), logs)
    assert SECRET not in json.dumps(reduced)
    assert reduced["rc"] == 0 and reduced["services"] == {
        "app": {"mem_limit": "67108864", "depends_on": ["db"], "env_quoted_in_logs": {"DB_POOL_SIZE": [1]}},
        "db": {"mem_limit": None, "depends_on": [], "env_quoted_in_logs": {}},
    }
    # the judgement names the variable from the reduced structure alone
    looping = record("app", running=False, restarting=True, state="restarting", restart_count=5, exit_code=1)
    ev = evidence(looping, *HEALTHY, logs=logs)
    ev["containers"]["compose_config"] = reduced
    result = su.diagnose(ev, SETTINGS)
    assert {f["check"]: f["status"] for f in result["findings"]}["compose.config"] == "ok"
    [act] = su.plan(result, SETTINGS)
    assert act["change"]["setting"] == "DB_POOL_SIZE" and SECRET not in json.dumps(result)

    # an env file docker compose cannot parse: the file and line are named, the value is not shown
    options = _compose_project(tmp_path, f"A=1\nB='unterminated {SECRET}\n")
    reduced = cc.reduce_compose_config(*cc.run_compose_config("sutest", options), logs)
    assert reduced["rc"] != 0 and reduced["services"] is None
    assert "app.env" in reduced["stderr"] and "[value hidden]" in reduced["stderr"]
    assert SECRET not in json.dumps(reduced)
    ev["containers"]["compose_config"] = reduced
    invalid = su.diagnose(ev, SETTINGS)
    assert {f["check"]: f["status"] for f in invalid["findings"]}["compose.config"] == "problem"
    assert SECRET not in json.dumps(invalid) and SECRET not in json.dumps(su.plan(invalid, SETTINGS))


@pytest.mark.lab
def test_compose_config_evidence_holds_no_secret_of_the_lab(lab) -> None:
    """The containers collector's compose_config on the lab (docker compose config with the inventory's files and env
    file): the services' dependencies and limits, never a value of the lab's secrets (secrets.env)."""
    from ansible_collections.octollm.remediation.plugins.module_utils.evidence import run_collector

    repo = Path(__file__).resolve().parents[2]
    options = {
        "project": "octollm",
        "logs": {"tail": 50},
        "compose_config": {
            "project_dir": str(repo / "lab"),
            "files": [str(repo / "lab" / "compose.yaml"), str(lab.state / "compose.override.yaml")],
            "env_file": str(lab.state / "compose.env"),
        },
    }
    answer = run_collector("containers", options, time.monotonic() + 30)
    config = answer["compose_config"]
    assert config["rc"] == 0 and "postgres" in config["services"]["orchestrator"]["depends_on"], config
    assert config["services"]["orchestrator"]["mem_limit"] == str(256 * 1024 * 1024)
    text = json.dumps(answer)
    secrets = [line.split("=", 1)[1] for line in (lab.state / "secrets.env").read_text().splitlines() if "=" in line]
    assert secrets and not [value for value in secrets if len(value) >= 6 and value in text]


def test_compose_stderr_hides_values():
    for text in (
        f'failed to read /x/app.env: line 1: unexpected character "$" in variable name "$X={SECRET}"',
        f'failed to read /x/.env: Invalid template: "${{{SECRET}"',
        f'invalid interpolation format for services.app.environment.X: "${{{SECRET}". You may need',
        f"TOKEN={SECRET} rejected",
    ):
        assert SECRET not in cc.compose_stderr(text), text
    kept = 'service "orchestrator" depends on undefined service "postgress": invalid compose project'
    assert cc.compose_stderr(kept) == kept


def test_compose_config_that_cannot_run_is_not_checked():
    from concurrent.futures import Future

    job: Future = Future()
    job.set_exception(FileNotFoundError(2, "No such file or directory", "docker"))
    answer = cc.ContainersCollector._compose_config(job, time.monotonic() + 5, {})
    assert answer["services"] is None and answer["error"]["kind"] == "missing_tool"
    ev = evidence(*HEALTHY)
    ev["containers"]["compose_config"] = answer
    config = {f["check"]: f for f in su.diagnose(ev, SETTINGS)["findings"]}["compose.config"]
    assert (config["status"], config["observed"]) == ("ok", "not checked")
    assert "docker CLI" in config["evidence"]["note"]
