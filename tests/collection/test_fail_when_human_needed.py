"""octollm_fail_when_human_needed (issue 18, item 4): a job run without octoctl (AWX, a scheduler) fails after the
results were published when octoctl would exit 1 (a human is needed) or 3 (the environment).

The play reads its own report with the collection's host_verdict (plugin_utils/verdict.py); octoctl judges the same
results with octoctl/exitstatus.py. The two are compared on many generated results, and the flow runs lab-free (as
test_report_contract.py: nothing answers, so the diagnosis leaves checks for a human)."""

from __future__ import annotations

import os
import random
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils import verdict

from octoctl.exitstatus import judge_target
from octoctl.models import ProcedureResult, StackCheck, TargetResult

REPO = Path(__file__).resolve().parents[2]
PROCEDURES = ["task_routing", "cache_performance"]


def _octoctl_code(report: dict[str, Any], procedures: list[str], dry_run: bool) -> int:
    target = TargetResult(target="stack", status="healthy", exit_code=0)
    if isinstance(report.get("stack"), dict):
        target.stack = StackCheck.model_validate(report["stack"])
    target.procedures = [ProcedureResult.model_validate(report[name]) for name in procedures]
    return judge_target(target, dry_run=dry_run).exit_code


def _finding(rng: random.Random, index: int) -> dict[str, Any]:
    status = rng.choice(["ok", "warning", "problem", "unknown", "unknown"])
    error = None
    if status == "unknown" and rng.random() < 0.8:
        error = {"kind": rng.choice(["unreachable", "auth", "missing_tool", "timeout", "not_offered", "other"]),
                 "message": "x", "source": rng.choice([None, "containers", "kubernetes", "redis", "prometheus"])}
    return {"check": f"check.{index}", "status": status, "observed": None, "expected": None, "error": error}


def _result(rng: random.Random, name: str) -> dict[str, Any]:
    phase = rng.choice(["diagnose", "resolve", "prevent"])
    actions = [{"id": f"{name}.A.{i}", "status": rng.choice(
        ["planned", "applied", "skipped", "awaiting_approval", "failed", "report", "applied", "skipped"])}
        for i in range(rng.randint(0, 3))]
    result: dict[str, Any] = {
        "procedure": name, "phase": phase, "findings": [_finding(rng, i) for i in range(rng.randint(0, 3))],
        "actions": actions, "escalation": {"level": rng.choice([None, None, None, "L1", "L2"])},
    }
    if phase == "resolve" and rng.random() < 0.7:
        result["verification"] = {"healthy": rng.random() < 0.7,
                                  "findings": [_finding(rng, 10 + i) for i in range(rng.randint(0, 2))]}
    if phase == "prevent" and rng.random() < 0.7:
        result["prevention"] = {"findings": [_finding(rng, 20 + i) for i in range(rng.randint(0, 2))],
                                "actions": [{"id": f"{name}.P.0", "status": rng.choice(["applied", "planned"])}]}
    return result


def test_host_verdict_agrees_with_octoctl_on_generated_results() -> None:
    rng = random.Random(18)
    seen: set[int] = set()
    for _ in range(3000):
        report: dict[str, Any] = {name: _result(rng, name) for name in PROCEDURES}
        if rng.random() < 0.6:
            report["stack"] = {"findings": [_finding(rng, 30)], "down": rng.choice([[], [], ["redis"]])}
        dry_run = rng.random() < 0.3
        expected = _octoctl_code(report, PROCEDURES, dry_run)
        got = verdict.host_verdict(report, PROCEDURES, dry_run)
        assert got["exit_code"] == expected, (report, dry_run, got)
        assert bool(got["reasons"]) == (expected != 0), got
        seen.add(expected)
    assert seen == {0, 1, 3}  # the cases cover every status a result can give


def test_a_missing_result_is_octoctl_s_own_error() -> None:
    assert verdict.host_verdict({"stack": {"findings": [], "down": []}}, ["cache_performance"])["exit_code"] == 4


PLAY = """
- name: Diagnose two procedures as a job would
  hosts: stacks
  gather_facts: false
  tasks:
    - name: Diagnose through the shared flow
      ansible.builtin.include_role:
        name: octollm.remediation._common
        tasks_from: diagnose
      vars:
        _common_procedures: [task_routing, cache_performance]
    - name: Reached only when the flow did not fail
      ansible.builtin.debug:
        msg: after the flow
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(tmp_path: Path, extravars: dict[str, Any], playbook_file: Path | None = None) -> Any:
    import ansible_runner

    port = _closed_port()
    inventory = f"""
stacks:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    octollm_platform: compose
    octollm_compose_project: octollm-nothing-here
    octollm_prometheus_url: http://127.0.0.1:{port}
    octollm_redis: {{host: 127.0.0.1, port: {port}}}
    octollm_postgres: {{host: 127.0.0.1, port: {port}}}
    octollm_services: {{orchestrator: {{url: "http://127.0.0.1:{port}"}}}}
  hosts:
    stack-a: {{}}
"""
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    (tmp_path / "project").mkdir(parents=True)
    (tmp_path / "project" / "play.yml").write_text(playbook_file.read_text() if playbook_file else PLAY)
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(inventory)
    return ansible_runner.run(
        private_data_dir=str(tmp_path), playbook="play.yml", quiet=True, extravars=extravars,
        envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")},
    )


def _report(runner: Any) -> dict[str, Any]:
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    return dict(stats[-1]["event_data"]["artifact_data"]["octollm_report"]["stack-a"])


@pytest.mark.parametrize("fail", [True, False])
def test_the_play_fails_after_reporting_when_a_human_is_needed(tmp_path: Path, fail: bool) -> None:
    runner = _run(tmp_path, {"octollm_fail_when_human_needed": fail} if fail else {})
    report = _report(runner)  # published in either case
    code = _octoctl_code(report, PROCEDURES, dry_run=False)
    assert code in (1, 3), code  # nothing answers: octoctl would not call this healthy
    failed = [event for event in runner.events if event.get("event") == "runner_on_failed"]
    reached = [event for event in runner.events if event.get("event") == "runner_on_ok"
               and event["event_data"].get("task") == "Reached only when the flow did not fail"]
    if fail:
        assert runner.rc != 0
        assert [event["event_data"]["task"] for event in failed] == [
            "Run | REPORT | fail when a human is needed (octollm_fail_when_human_needed)"]
        message = failed[0]["event_data"]["res"]["msg"]
        assert message.startswith(f"exit status {code} "), message
        assert not reached
    else:
        assert runner.rc == 0, runner.stdout.read()[-3000:]
        assert not failed and reached


def test_approved_plan_is_octoctl_s_plan_of_the_dry_run() -> None:
    """The AWX fix workflow's apply node (playbooks/approve.yml) applies the plan octoctl approve would."""
    from octoctl.engine import plan_of

    rng = random.Random(11)
    for _ in range(300):
        report: dict[str, Any] = {}
        targets = []
        for host in ("stack-a", "stack-b"):
            results = {name: _result(rng, name) for name in PROCEDURES}
            for result in results.values():
                for action in result["actions"]:
                    action["change"] = rng.choice([None, {"key": "maxmemory", "old": "1mb", "new": "2mb"},
                                                   {"sql": "ALTER TABLE t", "rows": None}, {"container": "x"}])
            report[host] = results
            target = TargetResult(target=host, status="healthy", exit_code=0)
            target.procedures = [ProcedureResult.model_validate(results[name]) for name in PROCEDURES]
            targets.append(target)
        assert verdict.approved_plan(report) == plan_of(targets)


@pytest.mark.parametrize("fail", [True, False])
def test_the_health_job_fails_when_a_service_is_not_well(tmp_path: Path, fail: bool) -> None:
    """playbooks/health.yml (AWX's health template) against a stack where nothing answers: the table is published
    and, with the switch, the job fails naming the services that are not well."""
    extravars: dict[str, Any] = {"octollm_hosts": "stacks"}
    if fail:
        extravars["octollm_fail_when_human_needed"] = True
    runner = _run(tmp_path, extravars, playbook_file=REPO / "collection" / "playbooks" / "health.yml")
    failed = [event["event_data"] for event in runner.events if event.get("event") == "runner_on_failed"]
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    table = stats[-1]["event_data"]["artifact_data"]["octollm_report"]["stack-a"]["stack"]["health"]["services"]
    not_well = [row["service"] for row in table if row["status"] != "ok"]
    assert "orchestrator" in not_well
    if fail:
        assert runner.rc != 0 and [e["task"] for e in failed] == ["Health | REPORT | fail when a service is not well"]
        assert failed[0]["res"]["msg"] == "not well: " + ", ".join(not_well)
    else:
        assert runner.rc == 0 and not failed
