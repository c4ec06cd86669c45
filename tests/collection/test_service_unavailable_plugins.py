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


# --- a deployment described differently (issue 14) ---------------------------------------------------------------
from ansible_collections.octollm.remediation.plugins.plugin_utils import deployment  # noqa: E402
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import role_settings  # noqa: E402

# the stack of another team: the orchestrator runs outside Compose (container "prod-orchestrator"), with its
# settings under ORCHESTRATOR_ and the database as one URL, and a readiness path; its planner runs under another
# Compose project; postgres and redis are the project llmstack's; the orchestrator does not use qdrant
OTHER = {
    "services": {
        "orchestrator": {
            "port": 8000, "url": "http://127.0.0.1:8000", "ready_path": "/ready",
            "container_names": ["prod-orchestrator"], "depends_on": ["postgres", "redis", "llm-provider"],
            "settings": {"database_url": "ORCHESTRATOR_DATABASE_URL", "db_host": None, "db_port": None,
                         "db_pool_size": "ORCHESTRATOR_DB_POOL_SIZE", "redis_host": "ORCHESTRATOR_REDIS_HOST"},
        },
        "planner-arm": {"port": 8100, "url": "http://127.0.0.1:8100", "compose_project": "acme",
                        "compose_service": "planner", "depends_on": ["postgres"]},
        "postgres": {"port": 5432, "compose_service": "db"},
        "redis": {"port": 6379},
        "qdrant": {"port": 6333, "url": "http://127.0.0.1:6333"},
        "llm-provider": {"url": "https://api.openai.example"},
    },
    "compose": {"project": "llmstack", "project_dir": "/srv/llmstack", "files": ["/srv/llmstack/compose.yaml"]},
}
OTHER_SETTINGS = procedure_settings(
    "service_unavailable", {"override_file": "/srv/llmstack/compose.override.yaml", "env_files": ["/srv/.env"]},
    inventory=OTHER,
)
DB_URL = "postgresql://octollm:[REDACTED:api_key]@pg-old.internal:5432/octollm"


def other(service, **extra):
    """A container of the other stack, as the containers evidence names it."""
    found = {"orchestrator": ("prod-orchestrator", "name", None, None), "planner-arm": ("acme-planner-1", "compose",
             "acme", "planner"), "postgres": ("llmstack-db-1", "compose", "llmstack", "db"),
             "redis": ("llmstack-redis-1", "compose", "llmstack", "redis")}[service]
    item = record(service, name=found[0], found_by=found[1], project=found[2], compose_service=found[3],
                  id=(found[0] * 4).replace("-", "")[:12], image=f"ghcr.io/acme/{service}:2.3",
                  image_id="sha256:" + "ab" * 32)
    item.update(extra)
    return item


def other_evidence(*records, logs=None, http=None, deps="postgres:5432 ok\nredis:6379 ok\nllm-provider:443 ok"):
    found = evidence(*records, deps=deps, logs=logs, http=http)
    found["containers"]["project"] = "llmstack"
    return found


def test_the_needs_follow_the_deployments_description():
    context = Context(platform="compose", inventory=deployment.describe(OTHER, role_settings("_common")))
    needs = su.PROCEDURE.needs(OTHER_SETTINGS, context)
    http = {p["name"]: p["path"] for p in needs["http"]["probes"]}
    assert http["service_unavailable_ready_orchestrator"] == "/ready"  # probed where the inventory names it
    assert http["service_unavailable_health_orchestrator"] == "/health"
    assert http["service_unavailable_health_qdrant"] == "/healthz"
    # each probe service's own dependencies, by the name they resolve at inside the stack: no qdrant, which the
    # orchestrator does not use; a dependency without a port is not probed
    deps = {p["service"]: p["cmd"] for p in needs["containers"]["exec_probes"] if p["name"].startswith(
        su.DEPENDENCY_PROBE_PREFIX)}
    assert deps["orchestrator"].startswith("for t in db:5432 redis:6379; do ")
    assert deps["planner-arm"].startswith("for t in db:5432; do ")
    # the values of the described settings, read (masked) from the containers' environment
    names = needs["containers"]["environment"]["names"]
    assert {"ORCHESTRATOR_DATABASE_URL", "ORCHESTRATOR_DB_POOL_SIZE", "ORCHESTRATOR_REDIS_HOST"} <= set(names)
    assert "POSTGRES_PASSWORD" not in names  # only the described settings (their values masked by the collector)


def test_a_fallback_probe_service_without_dependencies_probes_those_of_the_service_it_stands_in_for():
    """The minimal lab's layout: only the orchestrator's dependencies are described. When it is down, the database
    is still probed from inside the stack, from the fallback (planner-arm), and the finding says from where."""
    inventory = {**OTHER, "services": {**OTHER["services"], "planner-arm": {
        k: v for k, v in OTHER["services"]["planner-arm"].items() if k != "depends_on"}}}
    settings = procedure_settings("service_unavailable", {}, inventory=inventory)
    context = Context(platform="compose", inventory=deployment.describe(inventory, role_settings("_common")))
    deps = {p["service"]: p["cmd"] for p in su.PROCEDURE.needs(settings, context)["containers"]["exec_probes"]
            if p["name"].startswith(su.DEPENDENCY_PROBE_PREFIX)}
    assert deps["planner-arm"] == deps["orchestrator"]
    assert deps["planner-arm"].startswith("for t in db:5432 redis:6379;")
    down = other("orchestrator", state="exited", status="exited", exit_code=137, running=False)
    found = evidence(down, other("planner-arm"), other("postgres"), other("redis"), deps=None)
    found["containers"]["project"] = "llmstack"
    found["containers"]["exec_probes"].append(
        {"name": su.DEPENDENCY_PROBE_PREFIX + "planner-arm", "container": "acme-planner-1", "exit_code": 0,
         "output": "db:5432 ok\nredis:6379 ok", "ok": True, "error": None})
    (dependencies,) = [f for f in su.diagnose(found, settings)["findings"] if f["check"] == "dependencies.reachable"]
    assert dependencies["status"] == "ok", dependencies
    assert dependencies["evidence"]["targets"] == {"db:5432": True, "redis:6379": True}
    assert dependencies["evidence"]["from"] == "acme-planner-1"


def test_readiness_503_is_a_problem_where_the_inventory_names_it():
    healthy = [other("orchestrator"), other("planner-arm"), other("postgres"), other("redis")]
    http = {"service_unavailable_health_orchestrator": {"ok": True, "status": 200},
            "service_unavailable_ready_orchestrator": {"ok": False, "status": 503, "body": {"ready": False}}}
    result = su.diagnose(other_evidence(*healthy, http=http), OTHER_SETTINGS)
    ready = {f["check"]: f for f in result["findings"]}["http.ready"]
    assert ready["status"] == "problem" and "orchestrator /ready 503" in ready["observed"]
    http["service_unavailable_ready_orchestrator"] = {"ok": True, "status": 200}
    result = su.diagnose(other_evidence(*healthy, http=http), OTHER_SETTINGS)
    assert {f["check"]: f["status"] for f in result["findings"]}["http.ready"] == "ok"
    # a deployment that names no readiness path has no such check
    assert "http.ready" not in {f["check"] for f in su.diagnose(evidence(*HEALTHY), SETTINGS)["findings"]}


STARTUP_LOG = [
    "INFO orchestrator starting, version 2.3.1",
    "Traceback (most recent call last):",
    '  File "/app/db.py", line 41, in connect',
    "    return psycopg2.connect(dsn)",
    'psycopg2.OperationalError: could not translate host name "pg-old.internal" to address: '
    "Name or service not known",
]


def test_a_startup_failure_is_read_from_the_log_setting_value_and_line():
    """Issue 14, item 4: a service that exits at start on a database host that does not resolve is a configuration
    error (D), not a crash: the report names the setting and its value from the container's environment (the
    password masked) and quotes the log line."""
    looping = other("orchestrator", running=False, restarting=True, state="restarting", restart_count=6, exit_code=1,
                    environment={"ORCHESTRATOR_DATABASE_URL": DB_URL, "ORCHESTRATOR_REDIS_HOST": "redis",
                                 "ORCHESTRATOR_DB_POOL_SIZE": "10"})
    logs = {"orchestrator": {"lines": STARTUP_LOG, "matches": STARTUP_LOG[-1:]}}
    result = su.diagnose(other_evidence(looping, other("planner-arm"), other("postgres"), other("redis"), logs=logs),
                         OTHER_SETTINGS)
    assert {s["id"]: s["holds"] for s in result["scenarios"]} == {"A": False, "B": False, "C": False, "D": True}
    running = {f["check"]: f for f in result["findings"]}["containers.running"]
    assert "at start: a host it connects to does not resolve" in running["observed"]
    [act] = su.plan(result, OTHER_SETTINGS)
    assert (act["id"], act["status"], act["scenario"]) == ("service_unavailable.D.report_config_orchestrator",
                                                           "report", "D")
    change = act["change"]
    assert change["kind"] == "dns" and change["setting"] == "ORCHESTRATOR_DATABASE_URL"
    assert change["settings"] == {"ORCHESTRATOR_DATABASE_URL": DB_URL}
    assert change["line"] == STARTUP_LOG[-1]  # the line that says why, not the traceback's boilerplate
    assert "ORCHESTRATOR_DATABASE_URL=" + DB_URL in act["outcome"] and "pg-old.internal" in act["outcome"]
    assert "docker start prod-orchestrator" in act["outcome"]  # not under the inventory's Compose files


@pytest.mark.parametrize("line, kind, setting", [
    ("redis.exceptions.ConnectionError: Error 111 connecting to cache.internal:6380. Connection refused.",
     "connection_refused", "ORCHESTRATOR_REDIS_HOST"),
    ('sqlalchemy.exc.OperationalError: connection to server at "10.0.0.7", port 5432 failed: FATAL:  password '
     'authentication failed for user "octollm"', "database", "ORCHESTRATOR_DATABASE_URL"),
    ("ValueError: invalid literal for int() with base 10: 'ten'", "configuration", "ORCHESTRATOR_DB_POOL_SIZE"),
])
def test_startup_failures_by_kind_name_their_setting(line, kind, setting):
    env = {"ORCHESTRATOR_DATABASE_URL": "postgresql://octollm:[REDACTED:api_key]@10.0.0.7:5432/octollm",
           "ORCHESTRATOR_REDIS_HOST": "cache.internal", "ORCHESTRATOR_DB_POOL_SIZE": "ten"}
    looping = other("orchestrator", running=False, restarting=True, state="restarting", restart_count=3,
                    exit_code=1, environment=env)
    declared = {"services": {"orchestrator": {"env_quoted_in_logs": {"ORCHESTRATOR_DB_POOL_SIZE": [0]}}}}
    found = other_evidence(looping, other("postgres"), other("redis"), logs={"orchestrator": {"lines": [line]}})
    found["containers"]["compose_config"] = dict(declared, rc=0, stderr="")
    result = su.diagnose(found, OTHER_SETTINGS)
    [act] = su.plan(result, OTHER_SETTINGS)
    assert act["scenario"] == "D" and act["change"]["kind"] == kind and act["change"]["setting"] == setting
    assert act["change"]["settings"] == {setting: env[setting]} and act["change"]["line"] == line


def test_a_startup_failure_on_a_database_that_is_down_waits_for_it_and_a_long_run_killed_is_a_crash():
    down_db = other("postgres", running=False, state="exited", exit_code=0)
    exited = other("orchestrator", running=False, state="exited", exit_code=1, restart_count=0,
                   started_at=time.strftime("%Y-%m-%dT%H:%M:%S.0Z", time.gmtime(NOW - 20)),
                   finished_at=time.strftime("%Y-%m-%dT%H:%M:%S.0Z", time.gmtime(NOW - 12)))
    logs = {"orchestrator": {"lines": ["psycopg2.OperationalError: connection to server at \"db\" (10.0.0.9), port "
                                       "5432 failed: Connection refused"]}}
    result = su.diagnose(other_evidence(exited, other("planner-arm"), down_db, other("redis"), logs=logs,
                                        deps="db:5432 fail\nredis:6379 ok"), OTHER_SETTINGS)
    assert [a["id"] for a in su.plan(result, dict(OTHER_SETTINGS, approve=True))] == [
        "service_unavailable.C.up_postgres", "service_unavailable.A.up_orchestrator"]
    # killed after an hour of work (docker kill): the refused connections it logged before are history, not a
    # failure at start - it is a crash, started again
    killed = other("orchestrator", running=False, state="exited", exit_code=137,
                   finished_at=time.strftime("%Y-%m-%dT%H:%M:%S.0Z", time.gmtime(NOW - 30)))
    result = su.diagnose(other_evidence(killed, other("planner-arm"), other("postgres"), other("redis"), logs=logs),
                         OTHER_SETTINGS)
    [start] = su.plan(result, dict(OTHER_SETTINGS, approve=True))
    assert start["id"] == "service_unavailable.A.up_orchestrator"
    # killed (SIGKILL, no OOM) a minute after it started: killed from outside, not a failure to start either
    young = other("orchestrator", running=False, state="exited", exit_code=137, restart_count=0,
                  started_at=time.strftime("%Y-%m-%dT%H:%M:%S.0Z", time.gmtime(NOW - 70)),
                  finished_at=time.strftime("%Y-%m-%dT%H:%M:%S.0Z", time.gmtime(NOW - 10)))
    result = su.diagnose(other_evidence(young, other("planner-arm"), other("postgres"), other("redis"), logs=logs),
                         OTHER_SETTINGS)
    [start] = su.plan(result, dict(OTHER_SETTINGS, approve=True))
    assert start["id"] == "service_unavailable.A.up_orchestrator" and start["disruptive"]


def test_a_fix_acts_on_the_deployment_compose_project_or_runtime():
    """The action file is told how to reach the service (``_target``, internal): the deployment's own Compose project
    and Compose service name, or the container runtime on the containers the inventory names."""
    stopped = {"running": False, "state": "exited", "exit_code": 137, "health": None}
    records = [other("orchestrator", **stopped), other("planner-arm", **stopped), other("postgres", **stopped),
               other("redis")]
    result = su.diagnose(other_evidence(*records, deps=None), OTHER_SETTINGS)
    actions = {a["id"]: a for a in su.plan(result, dict(OTHER_SETTINGS, approve=True))}
    db = actions["service_unavailable.C.up_postgres"]
    assert db["_target"]["runtime"] == "compose" and db["_target"]["compose_service"] == "db"
    assert db["_target"]["project"] == "llmstack" and "docker compose -p llmstack up -d --no-deps --no-recreate db" in (
        db["outcome"])
    orch = actions["service_unavailable.A.up_orchestrator"]
    assert (orch["_target"]["runtime"], orch["_target"]["containers"]) == ("docker", ["prod-orchestrator"])
    assert orch["_target"]["before"] == [{"name": "prod-orchestrator", "id": records[0]["id"],
                                          "image": "ghcr.io/acme/orchestrator:2.3", "image_id": "sha256:" + "ab" * 32}]
    planner = actions["service_unavailable.A.up_planner_arm"]
    assert planner["_target"]["runtime"] == "docker"  # another project, whose files the inventory does not name
    # internal: the report never shows it
    from ansible_collections.octollm.remediation.plugins.plugin_utils import results
    assert "_target" not in results.public(orch)


def test_a_container_the_inventory_names_that_does_not_exist_is_a_problem_and_a_report():
    result = su.diagnose(other_evidence(other("planner-arm"), other("postgres"), other("redis")), OTHER_SETTINGS)
    running = {f["check"]: f for f in result["findings"]}["containers.running"]
    assert running["status"] == "problem" and "no container (container prod-orchestrator)" in running["observed"]
    [act] = su.plan(result, dict(OTHER_SETTINGS, approve=True))
    assert act["id"] == "service_unavailable.A.report_missing_orchestrator" and act["status"] == "report"


def test_a_port_that_answers_while_the_service_is_down_is_not_health():
    """Something else answers 200 on the orchestrator's port while the deployment's orchestrator is stopped."""
    dead = other("orchestrator", running=False, state="exited", exit_code=137)
    http = {"service_unavailable_health_orchestrator": {"ok": True, "status": 200},
            "service_unavailable_ready_orchestrator": {"ok": True, "status": 200}}
    result = su.diagnose(other_evidence(dead, other("planner-arm"), other("postgres"), other("redis"), http=http),
                         OTHER_SETTINGS)
    health = {f["check"]: f for f in result["findings"]}["http.health"]
    assert health["status"] == "problem" and "another process answers" in health["observed"]


def test_the_verification_checks_the_identity_of_what_runs_after_the_fix():
    """After a start, the container that runs must be the one the fix started, with the image the service ran
    before; a healthy answer on the port is not enough."""
    stopped = other("orchestrator", running=False, state="exited", exit_code=137)
    before = su.diagnose(other_evidence(stopped, other("planner-arm"), other("postgres"), other("redis")),
                         OTHER_SETTINGS)
    [start] = su.plan(before, dict(OTHER_SETTINGS, approve=True))
    started = {"name": "prod-orchestrator", "id": stopped["id"], "image": stopped["image"],
               "image_id": stopped["image_id"]}
    from ansible_collections.octollm.remediation.plugins.plugin_utils import results
    done = results.apply_outcomes([start], {start["id"]: {"status": "applied", "outcome": "started",
                                                          "change": {"fixed": [started]}}})
    up = other_evidence(other("orchestrator"), other("planner-arm"), other("postgres"), other("redis"))
    after = su.diagnose(up, OTHER_SETTINGS, previous=before["findings"], applied=("A",))["findings"]
    context = Context(platform="compose", inventory=deployment.describe(OTHER, role_settings("_common")))
    checked = {f["check"]: f for f in su.PROCEDURE.verification(after, done, OTHER_SETTINGS, context)}
    assert checked["fix.identity"]["status"] == "ok", checked["fix.identity"]
    # the fix "worked", yet what runs now is another container (the port answers all the same)
    impostor = other("orchestrator", id="0123456789ab", name="lab-orchestrator-1")
    after = su.diagnose(other_evidence(impostor, other("planner-arm"), other("postgres"), other("redis")),
                        OTHER_SETTINGS, previous=before["findings"], applied=("A",))["findings"]
    identity = {f["check"]: f for f in su.PROCEDURE.verification(after, done, OTHER_SETTINGS, context)}[
        "fix.identity"]
    assert identity["status"] == "problem" and "is not the container that runs now" in identity["observed"]
    assert not results.healthy([identity])
    # the same container, but started from another image than the service ran
    moved = dict(started, image="octollm/lab-runtime:dev")
    done = results.apply_outcomes([start], {start["id"]: {"status": "applied", "change": {"fixed": [moved]}}})
    after = su.diagnose(other_evidence(other("orchestrator", image="octollm/lab-runtime:dev"), other("postgres"),
                                       other("redis")), OTHER_SETTINGS, previous=before["findings"])["findings"]
    identity = {f["check"]: f for f in su.PROCEDURE.verification(after, done, OTHER_SETTINGS, context)}[
        "fix.identity"]
    assert identity["status"] == "problem" and "before the fix it ran ghcr.io/acme/orchestrator:2.3" in (
        identity["observed"])


# --- the emergency restart (issue 19) -----------------------------------------------------------------------------
def test_the_emergency_restart_backs_up_then_stops_tiers_in_order_and_starts_them_in_reverse():
    """One plan, one approval: the verified backup first, arms -> orchestrator -> data stores stopped (each stop only
    once the backup is verified), then started in reverse as they are (never recreated), each healthy before the
    next; services without a container are left out."""
    emergency = dict(SETTINGS, emergency_restart=True)
    result = su.diagnose(evidence(*HEALTHY, config=DECLARED), emergency)
    waiting = su.plan(result, emergency)
    assert {a["status"] for a in waiting} == {"awaiting_approval"}
    actions = su.plan(result, dict(emergency, approve=True))
    assert [(a["id"], a["status"]) for a in actions] == [
        ("service_unavailable.E.backup_postgres", "planned"),
        ("service_unavailable.E.stop_1", "planned"),
        ("service_unavailable.E.stop_2", "planned"),
        ("service_unavailable.E.stop_3", "planned"),
        ("service_unavailable.E.start_postgres", "planned"),
        ("service_unavailable.E.start_redis", "planned"),
        ("service_unavailable.E.start_orchestrator", "planned"),
        ("service_unavailable.E.start_judge_arm", "planned"),
    ]
    backup, arms, orchestrator, stores = actions[:4]
    assert backup["change"]["count_tables"] == ["tasks", "action_log", "entities", "relationships"]
    assert backup["change"]["database"] == "octollm" and backup["change"]["directory"]
    assert [arms["change"]["services"], orchestrator["change"]["services"], stores["change"]["services"]] == [
        ["judge-arm"], ["orchestrator"], ["postgres", "redis"]]
    assert all(a["change"]["after"] == backup["id"] for a in (arms, orchestrator, stores))
    assert arms["outcome"].startswith("docker compose -p ") and "stop judge-arm" in arms["outcome"]
    assert all(a["change"]["recreate"] == "never" and a["_apply"] == "compose_service" for a in actions[4:])
    assert all(a["disruptive"] for a in actions)
    # the diagnosis' own fixes are not part of it
    crashed = record("judge-arm", running=False, state="exited", exit_code=137, health="unhealthy", stats=None)
    result = su.diagnose(evidence(HEALTHY[0], crashed, HEALTHY[2], HEALTHY[3], config=DECLARED), emergency)
    assert not [a for a in su.plan(result, dict(emergency, approve=True)) if ".A." in a["id"]]


def test_the_emergency_restart_with_volumes_backs_up_once_the_writers_stop_then_removes_and_restores():
    """--volumes (the seed's down -v): the writers stop first, so that the backup holds every committed row; the data
    goes only after the data stores stop (destructive), and PostgreSQL is restored right after it starts, before
    anything writes to it. Without data described: a report, nothing removed, nothing restored."""
    emergency = dict(SETTINGS, emergency_restart=True, emergency_volumes=True, approve=True,
                     emergency_data_paths=["/state/postgres"])
    result = su.diagnose(evidence(*HEALTHY, config=DECLARED), emergency)
    actions = su.plan(result, emergency)
    assert [a["id"].split(".", 2)[2] for a in actions] == [
        "stop_1", "stop_2", "backup_postgres", "stop_3", "remove_data", "start_postgres", "restore_postgres",
        "start_redis", "start_orchestrator", "start_judge_arm"]
    stops = {a["id"].rsplit(".", 1)[1]: a["change"]["after"] for a in actions if ".stop_" in a["id"]}
    assert stops == {"stop_1": None, "stop_2": None, "stop_3": "service_unavailable.E.backup_postgres"}
    remove = next(a for a in actions if a["id"].endswith("remove_data"))
    assert remove["destructive"] and remove["change"]["paths"] == ["/state/postgres"]
    assert remove["change"]["after"] == "service_unavailable.E.backup_postgres"
    restore = next(a for a in actions if a["id"].endswith("restore_postgres"))
    assert restore["change"]["tables"] == ["tasks", "action_log", "entities", "relationships"]
    undescribed = su.plan(result, dict(emergency, emergency_data_paths=[]))
    assert [(a["id"].rsplit(".", 1)[1], a["status"]) for a in undescribed if "data" in a["id"] or "restore" in a[
        "id"]] == [("remove_data", "report")]


def test_the_emergency_restart_on_kubernetes_without_a_running_postgres_pod_scales_nothing():
    """No pod to take the verified backup in: one report, no scale-down; --volumes there is a report too."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import service_unavailable_kubernetes as suk

    s = dict(SETTINGS, emergency_restart=True, approve=True, namespace="octollm", database="octollm",
             k8s_backup_exec={"container": "postgres", "user": "postgres", "password_env": "P"})
    workloads = [{"ref": "Deployment/judge-arm", "kind": "Deployment", "name": "judge-arm", "app": "judge-arm",
                  "replicas": 1}, {"ref": "StatefulSet/postgres", "kind": "StatefulSet", "name": "postgres",
                                   "app": "postgres", "replicas": 1}]
    none = suk.plan({"context": {"emergency": {"workloads": workloads, "postgres_pods": []}}}, s)
    assert [(a["id"], a["status"]) for a in none] == [("service_unavailable.E.report_no_backup", "report")]
    some = suk.plan({"context": {"emergency": {"workloads": workloads, "postgres_pods": ["postgres-0"]}}},
                    dict(s, emergency_volumes=True))
    assert [a["id"].split(".", 2)[2] for a in some] == [
        "backup_postgres", "scale_down_1", "scale_down_2", "scale_up_postgres", "scale_up_judge_arm", "remove_data"]
    assert some[0]["change"]["exec"] == {"container": "postgres", "user": "postgres", "password_env": "P",
                                         "namespace": "octollm", "pod": "postgres-0"}
    assert some[-1]["status"] == "report"
