"""The service_unavailable role against the running lab, through ansible-runner and playbooks/run.yml (what octoctl
runs), reading the RESULT from the playbook_on_stats event's artifact_data. Faults: crash of postgres (C), bad-config
(D, a report). Crash (A) and oom (B) are the Molecule scenarios molecule/service_unavailable_crash_compose and
molecule/service_unavailable_oom_compose (tests/lab/test_molecule.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
PROCEDURE = "service_unavailable"


def run(tmp_path: Path, phase: str, inventory_extra: dict[str, Any] | None = None, **extravars: Any) -> dict[str, Any]:
    """Run playbooks/run.yml for the procedure; return its RESULT for the lab host."""
    import ansible_runner

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    private = tmp_path / f"runner-{phase}-{len(list(tmp_path.iterdir()))}"
    private.mkdir()
    runner = ansible_runner.run(
        private_data_dir=str(private),
        playbook=str(REPO / "playbooks" / "run.yml"),
        inventory=str(REPO / "inventory" / "lab"),
        extravars={"octollm_procedures": [PROCEDURE], "octollm_phase": phase, **(inventory_extra or {}), **extravars},
        envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")},
        quiet=True,
    )
    assert runner.rc == 0, f"{runner.status}: {runner.stdout.read()[-3000:]}"
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    data = stats[-1]["event_data"].get("artifact_data") or {}
    return data["octollm_report"]["lab"][PROCEDURE]


def by_check(findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {finding["check"]: finding for finding in findings}


def inspect(name: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def test_healthy_lab_has_no_finding(healthy_lab: Any, tmp_path: Path) -> None:
    result = run(tmp_path, "diagnose")
    assert result["procedure"] == PROCEDURE and result["platform"] == "compose" and result["phase"] == "diagnose"
    assert {f["check"] for f in result["findings"]} == {
        "containers.running",
        "containers.health",
        "containers.restarts",
        "containers.oom",
        "http.health",
        "dependencies.reachable",
        "compose.config",
    }
    not_ok = {f["check"]: (f["status"], f["observed"]) for f in result["findings"] if f["status"] != "ok"}
    assert not_ok == {}
    assert not any(scenario["holds"] for scenario in result["scenarios"])
    assert result["escalation"]["level"] is None
    # the dependency probes really ran inside the stack
    deps = by_check(result["findings"])["dependencies.reachable"]["evidence"]
    # the orchestrator's dependencies as the lab's inventory describes them (depends_on)
    assert deps["targets"] == {"postgres:5432": True, "redis:6379": True, "qdrant:6333": True,
                               "llm-provider:8200": True, "llm-provider-fallback:8201": True}
    assert deps["pg_isready"]["ok"] and "PONG" in deps["redis_ping"]["output"]


def test_diagnosis_changes_nothing(healthy_lab: Any, tmp_path: Path) -> None:
    def states() -> dict[str, tuple[Any, ...]]:
        names = [c["Name"] for c in healthy_lab.containers()]
        out = subprocess.run(["docker", "inspect", *names], capture_output=True, text=True, check=True).stdout
        return {c["Name"]: (c["Id"], c["State"]["StartedAt"], c["RestartCount"]) for c in json.loads(out)}

    before = states()
    override = (healthy_lab.state / "compose.override.yaml").read_text()
    run(tmp_path, "diagnose")
    assert states() == before
    assert (healthy_lab.state / "compose.override.yaml").read_text() == override


def test_database_down_is_restarted_and_connectivity_verified(healthy_lab: Any, tmp_path: Path) -> None:
    from octollm_labctl import faults

    faults.inject(healthy_lab, "crash", "postgres")
    diagnosis = run(tmp_path, "diagnose")
    found = by_check(diagnosis["findings"])
    assert found["containers.running"]["status"] == "problem" and found["containers.running"]["scenario"] == "C"
    deps = found["dependencies.reachable"]
    assert deps["status"] == "problem" and deps["scenario"] == "C"
    assert deps["evidence"]["targets"]["postgres:5432"] is False and "pg_isready" in deps["evidence"]["unreachable"]
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]}["C"] is True

    fixed = run(tmp_path, "resolve", octollm_approve=True)
    assert fixed["actions"][0]["id"] == "service_unavailable.C.up_postgres"
    assert {a["status"] for a in fixed["actions"]} == {"applied"}
    assert inspect("octollm-postgres-1")["State"]["Health"]["Status"] == "healthy"
    # the verification checked that the container which runs now is the one the fix started (issue 14)
    [started] = fixed["actions"][0]["change"]["fixed"]
    assert started["id"] == inspect("octollm-postgres-1")["Id"][:12]
    assert by_check(fixed["verification"]["findings"])["fix.identity"]["status"] == "ok"
    after = by_check(fixed["verification"]["findings"])["dependencies.reachable"]
    assert after["status"] == "ok" and after["evidence"]["pg_isready"]["ok"] is True
    assert fixed["verification"]["healthy"] is True and fixed["escalation"]["level"] is None
    assert run(tmp_path, "resolve", octollm_approve=True)["actions"] == []


def test_configuration_error_ends_as_a_report_naming_the_setting(healthy_lab: Any, tmp_path: Path) -> None:
    """D may end as escalation: `octoctl fix --approve` exits 1 at L1, names DB_POOL_SIZE and the env file, and
    changes nothing (the orchestrator keeps crash-looping until a person fixes lab.env)."""
    from octollm_labctl import faults

    faults.inject(healthy_lab, "bad-config", "orchestrator")
    restarts = inspect("octollm-orchestrator-1")["RestartCount"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "octoctl",
            "fix",
            PROCEDURE,
            "--approve",
            "-i",
            str(REPO / "inventory/lab"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "OCTOCTL_COLLECTIONS_PATH": str(REPO / ".collections")},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    [result] = [p for target in json.loads(proc.stdout)["targets"] for p in target["procedures"]]
    assert {s["id"]: s["holds"] for s in result["scenarios"]}["D"] is True
    [act] = result["actions"]
    assert act["id"] == "service_unavailable.D.report_config_orchestrator" and act["status"] == "report"
    assert act["change"]["setting"] == "DB_POOL_SIZE" and "lab.env" in act["outcome"]
    assert any("invalid literal" in line for line in act["change"]["lines"])  # the error line as evidence
    assert result["escalation"]["level"] == "L1"
    assert inspect("octollm-orchestrator-1")["RestartCount"] >= restarts  # not restarted by the fix: a report


def test_docker_unreachable_is_unknown_with_an_environment_error(lab: Any, tmp_path: Path) -> None:
    """A target whose Docker API does not answer: `unknown` findings with error kind unreachable, octoctl exit 3.
    (Stopping Docker is not possible on the shared lab: a bogus docker_host gives the same collector error.)"""
    import yaml

    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "group_vars" / "octollm.yml").write_text((REPO / "inventory/lab/group_vars/octollm.yml").read_text())
    hosts = yaml.safe_load((REPO / "inventory/lab/hosts.yml").read_text())
    hosts["octollm"]["hosts"]["lab"].update(
        octollm_docker_host="unix:///nonexistent/docker.sock",
        octollm_compose_project_dir=str(REPO / "lab"),
        octollm_compose_files=[str(REPO / "lab/compose.yaml"), "{{ octollm_lab_state_dir }}/compose.override.yaml"],
    )
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    proc = subprocess.run(
        [sys.executable, "-m", "octoctl", "diagnose", PROCEDURE, "-i", str(inventory), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "OCTOCTL_COLLECTIONS_PATH": str(REPO / ".collections")},
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    text = json.dumps(report)
    assert '"containers.running"' in text and '"unreachable"' in text
    findings = [f for target in report["targets"] for p in target["procedures"] for f in p["findings"]]
    running = by_check(findings)["containers.running"]
    assert running["status"] == "unknown" and running["error"]["kind"] == "unreachable"
    assert "No such file" in running["error"]["message"]


def test_a_container_outside_compose_is_found_by_name_and_started_through_the_runtime(
    healthy_lab: Any, tmp_path: Path
) -> None:
    """Issue 14: a service of the deployment that no Compose project runs, described by its container name, is
    found (a problem when stopped, not "unreachable"), started through the container runtime (not `docker compose
    up` of a lab service), and the verification checks that the container running afterwards is that one."""
    import yaml

    name = f"octoctl-sidecar-{os.getpid()}"
    image = inspect("octollm-orchestrator-1")["Config"]["Image"]
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "host", "--entrypoint", "sleep", image,
                    "3600"], capture_output=True, check=True)
    try:
        cid = inspect(name)["Id"]
        subprocess.run(["docker", "stop", "-t", "0", name], capture_output=True, check=True)
        services = yaml.safe_load((REPO / "inventory/lab/group_vars/octollm.yml").read_text())["octollm_services"]
        services["sidecar"] = {"container_names": [name]}
        fixed = run(tmp_path, "resolve", octollm_approve=True, octollm_services=services)
        running = by_check(fixed["findings"])["containers.running"]
        assert running["status"] == "problem" and running["observed"].startswith("sidecar exited")
        [start] = fixed["actions"]
        assert (start["id"], start["status"]) == ("service_unavailable.A.up_sidecar", "applied"), start
        assert inspect(name)["State"]["Running"] and inspect(name)["Id"] == cid  # started as it was, not recreated
        assert start["change"]["fixed"] == [{"name": name, "id": cid[:12], "image": image,
                                             "image_id": inspect(name)["Image"]}]
        after = by_check(fixed["verification"]["findings"])
        assert after["fix.identity"]["status"] == "ok" and after["containers.running"]["status"] == "ok"
        assert fixed["verification"]["healthy"] is True
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
