"""The memory_leaks role against the running lab, through ansible-runner and playbooks/run.yml (what octoctl
runs), reading the RESULT from the playbook_on_stats event's artifact_data. Faults: no-memory-limit (B). The
memory-leak fault (A: POST /debug/leak on coder-arm, 2 MB/s) is the Molecule scenario
molecule/memory_leaks_leak_compose (tests/lab/test_molecule.py). Run under the lab lock:
flock /tmp/octollm-lab.lock pytest tests/lab/test_memory_leaks.py"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from playbook_runs import by_check, run_procedure

pytestmark = pytest.mark.lab

PROCEDURE = "memory_leaks"
TARGET = "coder-arm"


def run(tmp_path: Path, phase: str, **extravars: Any) -> dict[str, Any]:
    return run_procedure(PROCEDURE, tmp_path, phase, **extravars)


def containers(service: str) -> list[str]:
    return subprocess.run(
        [
            "docker",
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.compose.project=octollm",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def inspect(service: str, template: str) -> list[str]:
    out = subprocess.run(
        ["docker", "inspect", "-f", template, *containers(service)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def started_at(service: str) -> list[str]:
    return sorted(inspect(service, "{{.State.StartedAt}}"))


def test_healthy_lab_has_no_memory_finding_and_diagnosis_changes_nothing(healthy_lab: Any, tmp_path: Path) -> None:
    services = ["orchestrator", TARGET, "postgres", "redis"]
    before = {service: started_at(service) for service in services}
    override = (healthy_lab.state / "compose.override.yaml").read_text()
    result = run(tmp_path, "diagnose")
    assert result["procedure"] == PROCEDURE and result["phase"] == "diagnose"
    not_ok = {f["check"]: (f["status"], f["observed"]) for f in result["findings"] if f["status"] != "ok"}
    assert not_ok == {}
    assert len(result["findings"]) == 7
    assert not any(scenario["holds"] for scenario in result["scenarios"])
    assert result["escalation"]["level"] is None
    assert {service: started_at(service) for service in services} == before
    assert (healthy_lab.state / "compose.override.yaml").read_text() == override


def test_prevent_on_the_healthy_lab_finds_every_safeguard(healthy_lab: Any, tmp_path: Path) -> None:
    result = run(tmp_path, "prevent")
    checks = {f["check"]: f["status"] for f in result["prevention"]["findings"]}
    assert checks == {
        "prevent.memory.limits": "ok",
        "prevent.prometheus.high_memory_rule": "ok",
        "prevent.cache.bounded": "ok",
    }
    assert result["prevention"]["actions"] == []
    assert result["escalation"]["level"] is None


def memory_limits(service: str) -> list[int]:
    return [int(value) for value in inspect(service, "{{.HostConfig.Memory}}")]


def test_service_without_a_memory_limit_gets_one_with_approval(healthy_lab: Any, tmp_path: Path) -> None:
    from octollm_labctl import faults

    service = "retriever-arm"
    faults.inject(healthy_lab, "no-memory-limit", service)
    assert memory_limits(service) == [0]

    diagnosis = run(tmp_path, "diagnose")
    limits = by_check(diagnosis["findings"])["memory.limits"]
    assert limits["status"] == "warning" and limits["scenario"] == "B"  # a problem only when it also leaks
    assert limits["evidence"]["without_limit"] == [service]
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]} == {"A": False, "B": True}

    action_id = f"memory_leaks.B.set_memory_limit.{service}"
    waiting = run(tmp_path, "resolve")
    assert [(a["id"], a["status"], a["disruptive"]) for a in waiting["actions"]] == [
        (action_id, "awaiting_approval", True)
    ]
    assert memory_limits(service) == [0]

    dry = run(tmp_path, "resolve", octollm_dry_run=True, octollm_approve=True)
    assert [(a["id"], a["status"]) for a in dry["actions"]] == [(action_id, "planned")]
    change = dry["actions"][0]["change"]
    assert (change["key"], change["new"], change["op"]) == (f"services.{service}.mem_limit", "256m", "recreate")
    assert memory_limits(service) == [0]

    fixed = run(tmp_path, "resolve", octollm_approve=True)
    assert [(a["id"], a["status"]) for a in fixed["actions"]] == [(action_id, "applied")]
    assert [a["change"] for a in fixed["actions"]] == [a["change"] for a in dry["actions"]]
    assert memory_limits(service) == [256 * 1024 * 1024]
    assert fixed["verification"]["healthy"] is True
    assert by_check(fixed["verification"]["findings"])["memory.limits"]["status"] == "ok"

    again = run(tmp_path, "resolve", octollm_approve=True)
    assert again["actions"] == []
