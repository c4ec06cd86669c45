"""The containers, postgres, http and logs evidence kinds of ``octollm.remediation.stack_evidence``.

The ``lab`` tests run the module through ``ansible-playbook`` (the venv's, with the development collections
path) against the running lab, read-only: no fault is injected, nothing is restarted. The other tests are unit
tests of the PII redaction helper, of the option documentation and of the error kinds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.octollm.remediation.plugins.module_utils import redact as pii
from ansible_collections.octollm.remediation.plugins.module_utils.collector_postgres import INTEGRITY_SQL
from ansible_collections.octollm.remediation.plugins.module_utils.collectors import COLLECTORS, run_all
from ansible_collections.octollm.remediation.plugins.module_utils.evidence import run_collector
from ansible_collections.octollm.remediation.plugins.plugin_utils import evidence_requests

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".collections"
VENV_BIN = REPO / ".venv" / "bin"
PROJECT = "octollm"
ARM_PORTS = range(8100, 8106)


# --- running the module --------------------------------------------------------------------------------------
def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = VENV_BIN if VENV_BIN.exists() else Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
    env["ANSIBLE_STDOUT_CALLBACK"] = "minimal"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_LOCALHOST_WARNING"] = "false"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "false"
    return env


def run_module(tmp_path: Path, args: dict[str, Any], extra_vars: dict[str, str] | None = None) -> tuple[dict, str]:
    """Run stack_evidence once on localhost; return its result and the whole stdout+stderr (for leak checks)."""
    link = COLLECTIONS / "ansible_collections" / "octollm" / "remediation"
    if not link.exists():
        subprocess.run([str(REPO / "collection" / "dev-link.sh"), str(COLLECTIONS)], check=True, capture_output=True)
    playbook = [
        {
            "name": "stack_evidence",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [{"name": "evidence", "octollm.remediation.stack_evidence": args}],
        }
    ]
    path = tmp_path / "evidence.yml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    python = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
    command = ["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={python}"]
    for name, value in (extra_vars or {}).items():
        command += ["-e", f"{name}={value}"]
    proc = subprocess.run(
        command + ["-vvv", str(path)], capture_output=True, text=True, env=ansible_env(), timeout=180, cwd=tmp_path
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    start = proc.stdout.index(" => {") + len(" => ")
    result, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
    return result, output


def file_lookup(path: Path) -> str:
    """A lookup of a file, so that the secret itself never lands in the playbook."""
    return "{{ lookup('ansible.builtin.file', '" + str(path) + "') }}"


def state_file(lab: Any, name: str) -> str:
    return file_lookup(lab.state / "secrets" / name)


def docker_ps() -> dict[str, dict[str, str]]:
    proc = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {row["Names"]: row for row in rows}


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- containers ----------------------------------------------------------------------------------------------
@pytest.mark.lab
def test_containers_lists_every_lab_container_healthy(lab: Any, tmp_path: Path) -> None:
    port = closed_port()
    marker = f"octoctl-attempt-{os.getpid()}-{time.monotonic_ns()}"
    args = {
        "containers": {
            "project": PROJECT,
            "stats": True,
            "stats_sample_seconds": 0.5,
            "host": True,
            "system_df": True,
            "logs": {"tail": 20, "services": ["orchestrator"], "patterns": {"routing": "routing"}},
            "exec_probes": [
                {"name": "to_postgres", "service": "orchestrator", "cmd": "nc -z -w 2 postgres 5432"},
                {"name": "to_closed", "service": "orchestrator", "cmd": f"nc -z -w 2 127.0.0.1 {port}"},
                {"name": "no_such_service", "service": "no-such-service", "cmd": "true"},
                # fails on its first run only (a marker file in the container's /tmp, removed by the second run)
                {"name": "second_try", "service": "orchestrator", "attempts": 3, "cmd": (
                    f"if [ -e /tmp/{marker} ]; then rm /tmp/{marker}; else touch /tmp/{marker}; exit 3; fi")},
                {"name": "never", "service": "orchestrator", "attempts": 2, "cmd": f"nc -z -w 2 127.0.0.1 {port}"},
            ],
        }
    }
    deadline = time.monotonic() + 90
    while True:  # another helper may be healing the shared lab: wait for a healthy picture, do not touch it
        result, _ = run_module(tmp_path, args)
        evidence = result["evidence"]["containers"]
        assert evidence["ok"], evidence["error"]
        unhealthy = [c["name"] for c in evidence["containers"] if c["healthcheck"] and c["health"] != "healthy"]
        if not unhealthy or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert not unhealthy, unhealthy
    listed = {c["name"]: c for c in evidence["containers"]}
    assert set(listed) == set(docker_ps()), "the module and docker ps disagree on the project's containers"
    assert {c["service"] for c in listed.values()} >= {"orchestrator", "postgres", "redis", "planner-arm"}
    for container in listed.values():
        assert container["state"] == "running" and container["running"]
        assert container["project"] == PROJECT
        assert container["log_config"] == {"type": "json-file", "max_size": "10m", "max_file": "3"}
        assert container["restart_policy"]["name"] == "unless-stopped"
        assert container["oom_killed"] is False
        stats = container["stats"]
        assert stats["memory_working_set_bytes"] > 0 and stats["cpu_seconds"] > 0
        assert stats["cpu_percent"] is not None and stats["cpu_percent"] >= 0
    orchestrator = next(c for c in listed.values() if c["service"] == "orchestrator")
    assert orchestrator["health"] == "healthy" and orchestrator["healthcheck"] is True
    assert orchestrator["memory_limit"] == 256 * 1024 * 1024
    assert orchestrator["memory_reservation"] == 64 * 1024 * 1024
    assert orchestrator["nano_cpus"] == 1_000_000_000 and orchestrator["cpus"] == 1.0
    assert orchestrator["stats"]["memory_limit_bytes"] == 256 * 1024 * 1024
    assert orchestrator["health_log"]["exit_code"] == 0
    loadgen = next(c for c in listed.values() if c["service"] == "loadgen")
    assert loadgen["healthcheck"] is False and loadgen["health"] is None
    assert evidence["summary"]["total"] == len(listed)
    assert evidence["summary"]["without_healthcheck"] == [loadgen["name"]]
    # this machine has cgroup v1 files readable: no container needs the slow API stats
    assert evidence["stats_sources"].get("cgroup") == len(listed)

    logs = evidence["logs"]["orchestrator"]
    assert logs["error"] is None and 0 < len(logs["lines"]) <= 20
    assert logs["pattern_counts"]["routing"] >= 0
    probes = {probe["name"]: probe for probe in evidence["exec_probes"]}
    assert probes["to_postgres"]["exit_code"] == 0 and probes["to_postgres"]["ok"]
    assert probes["to_closed"]["exit_code"] not in (0, None) and not probes["to_closed"]["ok"]
    assert probes["no_such_service"]["error"]["kind"] == "unreachable"
    assert probes["to_postgres"]["attempts"] == 1 and probes["to_closed"]["attempts"] == 1
    assert probes["second_try"]["ok"] and probes["second_try"]["attempts"] == 2
    assert not probes["never"]["ok"] and probes["never"]["attempts"] == 2

    host = evidence["host"]
    assert host["ncpu"] == os.cpu_count() and host["local"] is True
    assert host["docker_root_dir"] and host["df"][0]["path"] == host["docker_root_dir"]
    assert 0 < host["df"][0]["used_percent"] < 100
    assert host["memory"]["total_bytes"] > 0
    df = evidence["system_df"]
    assert df["containers"]["total"] >= len(listed)
    assert df["images"]["project"], "the project's image is in use"


def test_containers_unreachable_docker_api() -> None:
    pytest.importorskip("docker", reason="[needs-install] the docker Python package")
    options = {"docker_host": "unix:///nonexistent/docker.sock", "timeout": 2}
    answer = run_collector("containers", options, time.monotonic() + 5)
    assert answer["ok"] is False
    assert answer["error"]["kind"] == "unreachable", answer["error"]


# --- postgres ------------------------------------------------------------------------------------------------
def postgres_args(lab: Any, **extra: Any) -> dict[str, Any]:
    args = {
        "host": "127.0.0.1",
        "port": 5432,
        "database": "octollm",
        "user": "octollm",
        "password": state_file(lab, "postgres_password"),
        "admin_user": "postgres",
        "admin_password": state_file(lab, "postgres_admin_password"),
    }
    args.update(extra)
    return args


@pytest.mark.lab
def test_postgres_every_concern(lab: Any, tmp_path: Path) -> None:
    args = postgres_args(
        lab,
        settings=["max_connections", "superuser_reserved_connections", "no_such_setting"],
        statements=5,
        tables=["tasks", "entities", "public.relationships", "no_such_table"],
        integrity=True,
        tasks=True,
        sample_limit=3,
    )
    result, output = run_module(tmp_path, {"postgres": args})
    assert lab.secret("postgres_admin_password") not in output
    assert lab.secret("postgres_password") not in output
    evidence = result["evidence"]["postgres"]
    assert evidence["ok"], evidence["error"]
    assert "probe_errors" not in evidence, evidence.get("probe_errors")
    assert evidence["server"]["version_num"] >= 150000 and evidence["server"]["superuser"] is True
    assert {"pg_stat_statements", "amcheck"} <= set(evidence["server"]["extensions"])
    assert 0 < evidence["rtt_ms"] < 1000

    connections = evidence["connections"]
    assert connections["max_connections"] == 40
    assert connections["superuser_reserved_connections"] == 5
    assert connections["total"] >= 1 and connections["by_user"].get("octollm", 0) >= 1
    assert sum(connections["by_state"].values()) == connections["total"]
    assert sum(app["count"] for app in connections["by_application"]) == connections["total"]
    assert connections["usage_ratio"] == round(connections["total"] / 40, 4)

    settings = evidence["settings"]
    assert settings["settings"]["max_connections"]["value"] == "40"
    assert settings["settings"]["max_connections"]["context"] == "postmaster"
    assert settings["missing"] == ["no_such_setting"]
    assert evidence["statements"]["available"] is True
    assert all("mean_ms" in row for row in evidence["statements"]["top"])

    tables = evidence["tables"]
    assert tables["missing"] == ["no_such_table"]
    assert {"tasks", "entities", "public.relationships"} == set(tables["tables"])
    task_indexes = {index["name"] for index in tables["tables"]["tasks"]["indexes"]}
    assert {"tasks_pkey", "idx_tasks_status", "idx_tasks_created_at"} <= task_indexes

    integrity = evidence["integrity"]
    assert integrity["tables_missing"] == []
    assert isinstance(integrity["orphans_from"], int) and isinstance(integrity["invalid_properties"], int)
    assert len(integrity["orphan_sample"]) <= 3
    assert any(c["name"] == "tasks_pkey" for c in integrity["constraints"]["tasks"])
    assert integrity["amcheck"]["available"] is True
    assert set(integrity["amcheck"]["checked"]) == set(integrity["btree_indexes"])

    tasks = evidence["tasks"]
    assert sum(tasks["by_status"].values()) > 0
    assert len(tasks["stuck_sample"]) <= 3

    assert evidence["ping"]["ok"] is True and evidence["ping"]["user"] == "octollm"


@pytest.mark.lab
def test_postgres_wrong_password_is_auth(lab: Any, tmp_path: Path) -> None:
    wrong = state_file(lab, "postgres_admin_password") + "-wrong"
    args = postgres_args(lab, admin_password=wrong, password=wrong)
    result, output = run_module(tmp_path, {"postgres": args})
    evidence = result["evidence"]["postgres"]
    assert evidence["ok"] is False
    assert evidence["error"]["kind"] == "auth", evidence["error"]
    assert evidence["ping"]["error"]["kind"] == "auth"
    assert lab.secret("postgres_admin_password") not in output


@pytest.mark.lab
def test_postgres_unreachable_port(lab: Any, tmp_path: Path) -> None:
    result, _ = run_module(tmp_path, {"postgres": postgres_args(lab, port=closed_port())})
    evidence = result["evidence"]["postgres"]
    assert evidence["ok"] is False and evidence["error"]["kind"] == "unreachable", evidence["error"]
    assert evidence["ping"]["error"]["kind"] == "unreachable"


@pytest.mark.lab
def test_integrity_sql_counts_orphans_and_bad_properties(lab: Any) -> None:
    """The integrity query on session-private temporary tables that shadow the lab's (nothing shared changes)."""
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1",
        port=5432,
        dbname="octollm",
        user="postgres",
        password=lab.secret("postgres_admin_password"),
        connect_timeout=5,
    )
    try:
        cursor = connection.cursor()
        cursor.execute(
            "CREATE TEMP TABLE entities (entity_id bigint PRIMARY KEY, entity_type text, name text, properties jsonb);"
            "CREATE TEMP TABLE relationships (relationship_id bigint PRIMARY KEY, from_entity_id bigint,"
            " to_entity_id bigint);"
            "INSERT INTO entities VALUES (1, 't', 'a', '{}'), (2, 't', 'b', '[1]'), (3, 't', 'c', NULL),"
            " (4, 't', 'd', '\"x\"');"
            "INSERT INTO relationships VALUES (10, 1, 2), (11, 1, 99), (12, 98, 1), (13, 97, 96), (14, NULL, 1);"
        )
        cursor.execute(INTEGRITY_SQL, {"limit": 10})
        answer = cursor.fetchone()[0]
    finally:
        connection.rollback()
        connection.close()
    assert answer["orphans_from"] == 3  # 12, 13 and 14 (a NULL end is an orphan too: NOT EXISTS, not NOT IN)
    assert answer["orphans_to"] == 2  # 11 and 13
    assert answer["orphans_total"] == 4
    sample = {row["relationship_id"]: row["missing"] for row in answer["orphan_sample"]}
    assert sample == {11: ["to"], 12: ["from"], 13: ["from", "to"], 14: ["from"]}
    assert answer["invalid_properties"] == 3
    assert answer["invalid_properties_by_type"] == {"array": 1, "null": 1, "string": 1}
    assert answer["invalid_properties_sample"] == [2, 3, 4]


# --- http ----------------------------------------------------------------------------------------------------
@pytest.mark.lab
def test_http_probes(lab: Any, tmp_path: Path) -> None:
    port = closed_port()
    key_file = lab.state / "secrets" / "llm_api_key"
    probes = [{"name": "orchestrator_health", "service": "orchestrator", "path": "/health"}]
    probes += [{"name": f"arm_{p}", "url": f"http://127.0.0.1:{p}/health"} for p in ARM_PORTS]
    probes += [
        {"name": "closed", "url": f"http://127.0.0.1:{port}/health", "timeout": 2},
        {"name": "models", "service": "llm-provider", "path": "/v1/models", "header_set": "llm"},
        {
            "name": "models_bad_key",
            "service": "llm-provider",
            "path": "/v1/models",
            "headers": {"Authorization": "Bearer sk-not-the-right-key-0000000000"},
        },
        {"name": "capabilities", "url": "http://127.0.0.1:8100/capabilities", "expect_status": [200]},
    ]
    args = {
        "http": {
            "services": {
                "orchestrator": {"port": 8000, "url": "http://127.0.0.1:8000"},
                "llm-provider": {"port": 8200},
            },
            "header_sets": {"llm": {"Authorization": "Bearer " + file_lookup(key_file)}},
            "probes": probes,
        }
    }
    result, output = run_module(tmp_path, args)
    assert key_file.read_text().strip() not in output
    evidence = result["evidence"]["http"]
    assert evidence["ok"] is True  # services that do not answer are evidence, not a failed kind
    answers = evidence["probes"]
    health = answers["orchestrator_health"]
    assert health["status"] == 200 and health["ok"] and health["error"] is None
    assert health["body"]["status"] == "ok" and health["url"] == "http://127.0.0.1:8000/health"
    assert health["headers"]["content-type"].startswith("application/json")
    for port_ in ARM_PORTS:
        assert answers[f"arm_{port_}"]["status"] == 200, answers[f"arm_{port_}"]
    assert answers["closed"]["error"]["kind"] == "unreachable" and answers["closed"]["status"] is None
    assert answers["models"]["status"] == 200, answers["models"]
    assert answers["models_bad_key"]["status"] == 401 and answers["models_bad_key"]["error"]["kind"] == "auth"
    assert answers["capabilities"]["body"]["name"] == "planner-arm"
    assert set(evidence["failed"]) == {"closed", "models_bad_key"}


# --- logs ----------------------------------------------------------------------------------------------------
def test_logs_on_files_redacts_pii(tmp_path: Path) -> None:
    """Files on the module's host (localhost here), through ansible-playbook like the lab tests."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    lines = [f"2026-11-28T10:00:{i % 60:02d}Z INFO request {i} ok" for i in range(1, 5001)]
    lines[2999] = (
        "2026-11-28T10:50:00Z WARNING guardian-arm PII detected type=email value=jane.doe@example.org "
        "card=4111 1111 1111 1111 key=sk-abcdefghijklmnopqrstuvwx"
    )
    lines[3999] = "2026-11-28T10:51:00Z ERROR guardian-arm security violation type=blocked_command"
    (log_dir / "guardian.log").write_text("\n".join(lines) + "\n")
    (log_dir / "other.log").write_text("ERROR one\n")
    args = {
        "logs": {
            "sources": [
                {"name": "guardian", "path": str(log_dir / "guardian*.log"), "pattern": "PII detected|violation"},
                {"name": "errors", "path": str(log_dir / "*.log"), "pattern": "ERROR", "max_lines": 1},
                {"name": "missing", "path": str(log_dir / "nothing*.log")},
            ],
            "patterns": {"pii": "PII detected", "info": r"\bINFO\b"},
            "max_bytes": 50_000,  # only the tail (about the last 1200 lines): line numbers stay absolute
        }
    }
    result, output = run_module(tmp_path, args)
    for raw in ("jane.doe@example.org", "4111 1111 1111 1111", "sk-abcdefghijklmnopqrstuvwx"):
        assert raw not in output
    evidence = result["evidence"]["logs"]
    assert evidence["ok"], evidence["error"]
    guardian = evidence["sources"]["guardian"]
    assert [line["line"] for line in guardian["lines"]] == [4000]  # line 3000 is before the scanned tail
    args["logs"]["max_bytes"] = 1 << 20
    result, output = run_module(tmp_path, args)
    evidence = result["evidence"]["logs"]
    guardian = evidence["sources"]["guardian"]
    assert [line["line"] for line in guardian["lines"]] == [3000, 4000]
    text = guardian["lines"][0]["text"]
    assert "[REDACTED:email]" in text and "[REDACTED:card]" in text and "[REDACTED:api_key]" in text
    assert evidence["redactions"] == {"email": 1, "card": 1, "api_key": 1}
    assert evidence["pattern_counts"]["pii"] == 2  # guardian.log is scanned by two sources
    assert evidence["sources"]["errors"]["match_count"] == 2 and len(evidence["sources"]["errors"]["lines"]) == 1
    assert evidence["sources"]["errors"]["truncated"] is True
    assert evidence["sources"]["missing"]["error"]["kind"] == "other"


@pytest.mark.lab
def test_collector_times(lab: Any) -> None:
    """Each kind's own time against the lab (printed with -s; loose bounds catch a regression to serial probes)."""
    secret = lab.secret
    requests = {
        "containers": {"project": PROJECT},
        "postgres": {
            "password": secret("postgres_password"),
            "admin_user": "postgres",
            "admin_password": secret("postgres_admin_password"),
            "settings": ["max_connections"],
            "statements": 10,
            "tables": ["tasks"],
            "tasks": True,
        },
        "http": {"probes": [{"name": f"arm_{p}", "url": f"http://127.0.0.1:{p}/health"} for p in ARM_PORTS]},
    }
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    timings = {}
    for kind, options in requests.items():
        validated = ArgumentSpecValidator(COLLECTORS[kind].OPTIONS).validate(options).validated_parameters
        answer = run_collector(kind, validated, time.monotonic() + 20)
        assert answer["ok"], answer.get("error")
        timings[kind] = answer["elapsed_ms"]
    print("collector times (ms):", timings)
    assert timings["containers"] < 5000 and timings["postgres"] < 3000 and timings["http"] < 3000


# --- the shared flow's wiring --------------------------------------------------------------------------------
@pytest.mark.lab
def test_common_gather_wires_the_inventory(lab: Any, tmp_path: Path) -> None:
    """roles/_common gather.yml adds the connection details (and secrets) of inventory/lab to the needs."""
    needs = {
        "service_unavailable": {
            "containers": {
                "logs": {"tail": 20, "services": ["orchestrator"]},
                "exec_probes": [{"name": "orch_pg", "service": "orchestrator", "cmd": "nc -z -w 2 postgres 5432"}],
            },
            "http": {"probes": [{"name": "orchestrator_health", "service": "orchestrator", "path": "/health"}]},
            "postgres": {"settings": ["max_connections"]},
        },
        "llm_api": {
            "containers": {"logs": {"tail": 30, "patterns": {"llm_api_errors": "(?i)llm.*error"}}},
            "http": {
                "probes": [
                    {
                        "name": "llm_models",
                        "service": "llm-provider",
                        "path": "/v1/models",
                        "header_set": "llm-provider",
                    }
                ]
            },
        },
    }
    playbook = [
        {
            "hosts": "octollm",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "the run",
                    "ansible.builtin.include_role": {"name": "octollm.remediation._common", "tasks_from": "settings"},
                    "vars": {"_common_procedures": ["service_unavailable"], "_common_phase": "diagnose"},
                },
                {
                    "name": "gather",
                    "ansible.builtin.include_role": {"name": "octollm.remediation._common", "tasks_from": "gather"},
                    "vars": {"_common_needs": needs},
                },
                {"name": "show", "ansible.builtin.debug": {"var": "_common_evidence"}},
            ],
        }
    ]
    path = tmp_path / "gather.yml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(REPO / "inventory" / "lab"), "-vvv", str(path)],
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=180,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    for name in ("postgres_password", "postgres_admin_password", "llm_api_key"):
        assert lab.secret(name) not in output, name
    start = proc.stdout.rindex('"_common_evidence": {') + len('"_common_evidence": ')
    evidence, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
    assert set(evidence) == {"containers", "http", "postgres"}
    assert all(kind["ok"] for kind in evidence.values()), {k: v.get("error") for k, v in evidence.items()}
    assert evidence["containers"]["project"] == PROJECT
    assert len(evidence["containers"]["logs"]["orchestrator"]["lines"]) <= 30
    assert evidence["containers"]["exec_probes"][0]["exit_code"] == 0
    assert evidence["postgres"]["settings"]["settings"]["max_connections"]["value"] == "40"
    assert evidence["postgres"]["ping"]["ok"] is True
    assert evidence["http"]["probes"]["orchestrator_health"]["status"] == 200
    assert evidence["http"]["probes"]["llm_models"]["status"] == 200  # the key came from octollm_http_header_sets


# --- unit: errors without the lab ----------------------------------------------------------------------------
def test_missing_python_packages_give_missing_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # import docker -> ImportError
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    answers = run_all({"containers": {}, "postgres": {"password": "s3cret-value"}}, 5)
    assert answers["containers"]["error"]["kind"] == "missing_tool"
    assert answers["postgres"]["error"]["kind"] == "missing_tool"
    assert "s3cret-value" not in json.dumps(answers)


def test_http_unreachable_without_lab() -> None:
    options = {"probes": [{"name": "x", "url": f"http://127.0.0.1:{closed_port()}/", "timeout": 1}]}
    answer = run_collector("http", options, time.monotonic() + 5)
    assert answer["ok"] is True and answer["failed"] == ["x"]
    assert answer["probes"]["x"]["error"]["kind"] == "unreachable"


def test_http_header_values_never_in_messages() -> None:
    options = {
        "header_sets": {"k": {"Authorization": "Bearer tok-1234567890"}},
        "probes": [{"name": "x", "url": "http://tok-1234567890.invalid/", "header_set": "k", "timeout": 2}],
    }
    answer = run_collector("http", options, time.monotonic() + 5)
    assert "tok-1234567890" not in json.dumps(answer)


# --- unit: cgroup files -------------------------------------------------------------------------------------
def write_files(base: Path, files: dict[str, str]) -> None:
    base.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (base / name).write_text(text)


def test_cgroup_v2_files(tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.module_utils import collector_containers as cc

    container_id = "ab" * 32
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    scope = tmp_path / "system.slice" / f"docker-{container_id}.scope"
    write_files(
        scope,
        {
            "memory.current": "104857600\n",
            "memory.max": "268435456\n",
            "memory.stat": "anon 83886080\nfile 20971520\ninactive_file 4194304\n",
            "memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\n",
            "cpu.stat": "usage_usec 5000000\nuser_usec 4000000\n",
            "pids.current": "12\n",
        },
    )
    dirs = cc.cgroup_dirs(str(tmp_path), container_id)
    assert dirs == {"unified": str(scope)}
    first = cc.read_cgroup(dirs)
    second = dict(first, cpu_ns=first["cpu_ns"] + 250_000_000, t=first["t"] + 0.5)
    stats = cc.finish_stats(first, second, nano_cpus=500_000_000)
    assert stats["cgroup_version"] == 2 and stats["source"] == "cgroup"
    assert stats["memory_working_set_bytes"] == 104857600 - 4194304
    assert stats["memory_limit_bytes"] == 268435456 and stats["memory_percent"] == 37.5
    assert stats["oom_kills"] == 1 and stats["memory_failcnt"] == 7 and stats["pids"] == 12
    assert stats["cpu_seconds"] == 5.25 and stats["cpu_percent"] == 50.0 and stats["cpu_limit_percent"] == 100.0
    (scope / "memory.max").write_text("max\n")
    assert cc.read_cgroup(dirs)["memory_limit_bytes"] is None


def test_cgroup_v1_files(tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.module_utils import collector_containers as cc

    container_id = "cd" * 32
    write_files(
        tmp_path / "memory" / "docker" / container_id,
        {
            "memory.usage_in_bytes": "50000000\n",
            "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.max_usage_in_bytes": "60000000\n",
            "memory.failcnt": "0\n",
            "memory.stat": "cache 100\nrss 200\ntotal_cache 1000000\ntotal_rss 40000000\ntotal_inactive_file 2000000\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        },
    )
    write_files(tmp_path / "cpuacct" / "docker" / container_id, {"cpuacct.usage": "123000000000\n"})
    dirs = cc.cgroup_dirs(str(tmp_path), container_id)
    assert set(dirs) == {"memory", "cpuacct"}
    stats = cc.finish_stats(cc.read_cgroup(dirs), None, nano_cpus=None)
    assert stats["memory_limit_bytes"] is None and stats["memory_percent"] is None  # unlimited
    assert stats["memory_working_set_bytes"] == 48000000 and stats["memory_rss_bytes"] == 40000000
    assert stats["oom_kills"] == 3 and stats["cpu_seconds"] == 123.0 and stats["cpu_percent"] is None
    assert cc.cgroup_dirs(str(tmp_path), "ef" * 32) == {}  # another container's cgroup is never read


def test_cpu_throttling_is_read_from_cpu_stat(tmp_path: Path) -> None:
    """The share of CFS periods in which the quota ran out, from the cpu controller's cpu.stat (cgroup v1)."""
    from ansible_collections.octollm.remediation.plugins.module_utils import collector_containers as cc

    container_id = "ab" * 32
    write_files(tmp_path / "memory" / "docker" / container_id,
                {"memory.usage_in_bytes": "1000\n", "memory.limit_in_bytes": "4000\n", "memory.stat": "",
                 "memory.max_usage_in_bytes": "2000\n", "memory.failcnt": "0\n"})
    write_files(tmp_path / "cpuacct" / "docker" / container_id, {"cpuacct.usage": "1000000000\n"})
    cpu = tmp_path / "cpu" / "docker" / container_id
    write_files(cpu, {"cpu.stat": "nr_periods 100\nnr_throttled 10\nthrottled_time 5000000\n"})
    dirs = cc.cgroup_dirs(str(tmp_path), container_id)
    assert dirs["cpu"] == str(cpu)
    first = cc.read_cgroup(dirs)
    (cpu / "cpu.stat").write_text("nr_periods 120\nnr_throttled 25\nthrottled_time 9000000\n")
    (tmp_path / "cpuacct" / "docker" / container_id / "cpuacct.usage").write_text("1400000000\n")
    second = dict(cc.read_cgroup(dirs), t=first["t"] + 2.0)
    stats = cc.finish_stats(first, second, nano_cpus=250_000_000)
    assert stats["cpu_throttled_percent"] == 75.0  # 15 of 20 periods
    assert stats["cpu_percent"] == 20.0 and stats["cpu_limit_percent"] == 80.0
    assert "cpu_periods" not in stats and "cpu_throttled_periods" not in stats
    assert cc.finish_stats(first, None, nano_cpus=None)["cpu_throttled_percent"] is None
    api = cc.api_sample({"cpu_stats": {"cpu_usage": {"total_usage": 5}, "throttling_data": {
        "periods": 7, "throttled_periods": 3}}})
    assert (api["cpu_periods"], api["cpu_throttled_periods"]) == (7, 3)


# --- unit: redaction -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number, valid",
    [
        ("4111 1111 1111 1111", True),
        ("4111-1111-1111-1112", False),
        ("5500 0000 0000 0004", True),
        ("378282246310005", True),
        ("1732818522123", False),
        ("", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert pii.luhn_valid(number) is valid


def test_redact_each_kind_and_counts() -> None:
    text = (
        "user=jane.doe@example.org paid with 4111 1111 1111 1111 (not 4111-1111-1111-1112), "
        "Authorization: Bearer abcdef0123456789xyz, key sk-proj-abcdefghijklmnopqrstu, aws AKIAABCDEFGHIJKLMNOP, "
        "password='hunter2hunter2' at 2026-11-28T18:28:40.726Z id 1732818522123"
    )
    clean, counts = pii.redact_pii(text)
    for raw in (
        "jane.doe@example.org",
        "4111 1111 1111 1111",
        "abcdef0123456789xyz",
        "sk-proj-",
        "AKIAABCD",
        "hunter2hunter2",
    ):
        assert raw not in clean
    assert "4111-1111-1111-1112" in clean  # fails Luhn: not a card
    assert "2026-11-28T18:28:40.726Z" in clean and "1732818522123" in clean
    assert "Authorization: Bearer [REDACTED:api_key]" in clean and "password='[REDACTED:api_key]'" in clean
    assert counts == {"email": 1, "card": 1, "api_key": 4}


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("POSTGRES_PASSWORD=s3cr3t-pg-pass", "s3cr3t-pg-pass", "POSTGRES_PASSWORD="),
        ("REDIS_PASSWORD: 'r3d1s-pass'", "r3d1s-pass", "REDIS_PASSWORD"),
        ("env PGPASSWORD=pgpass9 psql", "pgpass9", "PGPASSWORD"),
        ("LLM_API_KEY=abcd1234efgh5678", "abcd1234efgh5678", "LLM_API_KEY="),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI", "AWS_SECRET_ACCESS_KEY="),
        ("GITHUB_TOKEN=tok_0123456789", "tok_0123456789", "GITHUB_TOKEN="),
        ("CLIENT_SECRET=x", "=x", "CLIENT_SECRET="),
        ("dsn postgresql://octollm:p4ss-w0rd@postgres:5432/octollm", "p4ss-w0rd", "postgresql://octollm:"),
        ("redis://:r3d1spw@redis:6379/0", "r3d1spw", "@redis:6379"),
        ("ALTER USER octollm PASSWORD 'n3w-p4ss''word';", "n3w-p4ss", "ALTER USER octollm PASSWORD '"),
        ("create role app with password $$dollar-quoted$$", "dollar-quoted", "with password '"),
    ],
)
def test_redact_credentials_in_assignments_urls_and_sql(text: str, secret: str, kept: str) -> None:
    clean, counts = pii.redact_pii(text)
    assert secret not in clean and kept in clean and counts.get("api_key", 0) >= 1, clean
    assert pii.redact_pii(clean)[0] == clean  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "cache key: llm:answer:42",  # a key that is not a credential
        "maxmemory-policy allkeys-lru",
        "DB_POOL_SIZE=20 and CACHE_KEY_PREFIX_LEN=3",
        "GET http://orchestrator:8000/api/v1/tasks",
        "connected to postgresql://postgres:5432/octollm",  # host:port, no credentials
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert pii.redact_pii(text) == (text, {})


def test_redact_is_idempotent_and_selective() -> None:
    once, _ = pii.redact_pii("mail a@b.io card 4111111111111111 key sk-abcdefghijklmnopqrstuv")
    twice, counts = pii.redact_pii(once)
    assert twice == once and counts == {}
    only_mail, counts = pii.redact_pii("a@b.io 4111111111111111", kinds=["email"])
    assert only_mail == "[REDACTED:email] 4111111111111111" and counts == {"email": 1}
    assert pii.redact_pii("ssn 123-45-6789", kinds=["ssn"])[0] == "ssn [REDACTED:ssn]"
    assert pii.redact_pii("ssn 123-45-6789")[0] == "ssn 123-45-6789"  # not in the default set


def test_redact_value_walks_structures() -> None:
    counts: dict[str, int] = {}
    value = pii.redact_value(
        {"goal": "mail bob@example.com", "n": 3, "items": ["x", "card 4111111111111111"]}, counts=counts
    )
    assert value == {"goal": "mail [REDACTED:email]", "n": 3, "items": ["x", "card [REDACTED:card]"]}
    assert counts == {"email": 1, "card": 1}
    assert pii.redact_pii(None) == (None, {})


def test_validate_kinds() -> None:
    assert pii.validate_kinds(None) == list(pii.DEFAULT_PII)
    with pytest.raises(ValueError):
        pii.validate_kinds(["email", "passport"])


# --- unit: documentation and needs ---------------------------------------------------------------------------
def test_documentation_matches_the_argument_spec() -> None:
    from ansible_collections.octollm.remediation.plugins.modules import stack_evidence

    documented = yaml.safe_load(stack_evidence.DOCUMENTATION)["options"]

    def compare(doc: dict, spec: dict, path: str = "") -> list[str]:
        problems = []
        for name in set(doc) | set(spec):
            if name not in doc or name not in spec:
                problems.append(f"{path}{name}: only in {'the spec' if name in spec else 'the documentation'}")
                continue
            for attribute in ("type", "default", "elements", "required", "choices"):
                doc_value, spec_value = doc[name].get(attribute), spec[name].get(attribute)
                if attribute == "type":
                    spec_value = spec_value or "str"
                if attribute == "required":
                    doc_value, spec_value = bool(doc_value), bool(spec_value)
                if doc_value != spec_value:
                    problems.append(f"{path}{name}.{attribute}: documented {doc_value!r}, spec {spec_value!r}")
            if "options" in spec[name] or "suboptions" in doc[name]:
                problems += compare(doc[name].get("suboptions", {}), spec[name].get("options", {}), f"{path}{name}.")
        return problems

    assert compare(documented, stack_evidence.argument_spec()) == []
    assert {"containers", "postgres", "http", "logs"} <= set(COLLECTORS)


def test_secret_options_are_no_log() -> None:
    assert COLLECTORS["postgres"].OPTIONS["password"]["no_log"] is True
    assert COLLECTORS["postgres"].OPTIONS["admin_password"]["no_log"] is True
    assert COLLECTORS["http"].OPTIONS["header_sets"]["no_log"] is True
    assert COLLECTORS["http"].OPTIONS["probes"]["options"]["headers"]["no_log"] is True


def test_nested_needs_merge() -> None:
    needs = {
        "service_unavailable": {"containers": {"logs": {"tail": 100, "services": ["orchestrator"]}}},
        "llm_api": {"containers": {"logs": {"tail": 50, "services": ["guardian-arm"],
                                            "patterns": {"llm_api_errors": "(?i)llm.*error"}}}},
    }
    merged = evidence_requests.union(needs)
    assert merged["containers"]["logs"] == {
        "tail": 100,
        "services": ["orchestrator", "guardian-arm"],
        "patterns": {"llm_api_errors": "(?i)llm.*error"},
    }
    assert evidence_requests.request(needs, merged) == {}
    with pytest.raises(evidence_requests.NeedConflict):
        evidence_requests.union(
            {"a": {"containers": {"logs": {"pattern": "x"}}}, "b": {"containers": {"logs": {"pattern": "y"}}}}
        )


def test_a_need_without_a_service_selector_wants_every_service() -> None:
    """The full diagnosis once lost postgres and redis: memory_leaks' and llm_api's selectors narrowed the union,
    so service_unavailable's pg_isready found no container to run in."""
    narrow = {"containers": {"services": ["orchestrator"], "logs": {"services": ["orchestrator"], "tail": 50}}}
    wide = {"containers": {"stats": True, "logs": {"tail": 100}}}
    for needs in ({"llm_api": narrow, "service_unavailable": wide}, {"service_unavailable": wide, "llm_api": narrow}):
        assert evidence_requests.union(needs) == {"containers": {"stats": True, "logs": {"tail": 100}}}
    # evidence of every service answers a narrow need; narrow evidence does not answer a need for every service
    assert evidence_requests.request({"llm_api": narrow}, wide) == {}
    assert evidence_requests.request({"llm_api": narrow}, {"containers": {"services": [], "logs": {"tail": 50}}}) == {}
    assert evidence_requests.request({"service_unavailable": wide}, narrow) == {
        "containers": {"stats": True, "logs": {"tail": 100}}
    }
    # two selections make their union; an empty list means every service, as in stack_evidence
    assert evidence_requests.union(
        {"a": {"containers": {"services": ["planner-arm"]}}, "b": {"containers": {"services": ["orchestrator"]}}}
    ) == {"containers": {"services": ["planner-arm", "orchestrator"]}}
    assert evidence_requests.union(
        {"a": {"containers": {"services": ["planner-arm"]}}, "b": {"containers": {"services": []}}}
    ) == {"containers": {}}
