"""octoctl against real ansible-runner and ansible-playbook, without the lab.

A stand-in collection ``octollm.remediation`` is generated in a temporary directory: ``playbooks/run.yml``
includes the roles named in ``octollm_procedures`` like the real one, and a ``cache_performance`` role
reports through ``set_stats`` per the result contract (design.md), driven by host vars. It proves the plumbing:
FQCN playbook lookup through ANSIBLE_COLLECTIONS_PATH, extra vars, events, ``artifact_data``, progress lines,
the approval flow, unreachable targets, what lands on disk. When the real collection exists
(``playbooks/run.yml``), the unreachable-host test also runs against it.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from octoctl.cli import cli
from octoctl.config import REPO_ROOT
from octoctl.models import RunReport
from octoctl.runner import outcome_from_artifacts

RUN_YML = """\
- name: octollm remediation (test stand-in)
  hosts: all
  gather_facts: false
  tasks:
    - name: "run | RUN | include the procedures"
      ansible.builtin.include_role:
        name: "octollm.remediation.{{ __proc }}"
        tasks_from: "{{ octollm_phase }}"
      loop: "{{ octollm_procedures }}"
      loop_control:
        loop_var: __proc
"""

DIAGNOSE_YML = """\
- name: "cache | DIAGNOSE | reach the target"
  ansible.builtin.ping:
- name: "cache | DIAGNOSE | read Redis INFO"
  ansible.builtin.set_fact:
    __policy: "{{ fake_policy | default('allkeys-lru') }}"
- name: "cache | REPORT | publish"
  ansible.builtin.set_stats:
    per_host: false
    aggregate: true
    data:
      octollm_report: "{{ {inventory_hostname: {'cache_performance': __result}} }}"
  vars:
    __bad: "{{ __policy == 'noeviction' }}"
    __result:
      procedure: cache_performance
      platform: compose
      phase: diagnose
      findings:
        - check: redis.eviction_policy
          title: Redis eviction policy suits a cache
          status: "{{ 'problem' if __bad else 'ok' }}"
          observed: "{{ __policy }}"
          expected: allkeys-lru
          evidence: {run_id: "{{ octollm_run_id }}"}
          scenario: A
      scenarios:
        - {id: A, title: Cache eviction policy issues, holds: "{{ __bad }}", reason: "policy {{ __policy }}"}
      escalation: {level: null, reason: ""}
"""

RESOLVE_YML = """\
- name: "cache | DIAGNOSE | reach the target"
  ansible.builtin.ping:
- name: "cache | DIAGNOSE | read Redis INFO"
  ansible.builtin.set_fact:
    __policy: "{{ fake_policy | default('allkeys-lru') }}"
    __disruptive: "{{ fake_disruptive | default(false) | bool }}"
- name: "cache | RESOLVE | set maxmemory-policy (scenario A)"
  ansible.builtin.set_fact:
    __status: >-
      {{ 'planned' if octollm_dry_run | bool
         else ('applied' if (not __disruptive or octollm_approve | bool) else 'skipped') }}
- name: "cache | REPORT | publish"
  ansible.builtin.set_stats:
    per_host: false
    aggregate: true
    data:
      octollm_report: "{{ {inventory_hostname: {'cache_performance': __result}} }}"
  vars:
    __bad: "{{ __policy == 'noeviction' }}"
    __fixed: "{{ __bad and __status == 'applied' }}"
    __action:
      id: cache_performance.A.set_eviction_policy
      scenario: A
      title: set maxmemory-policy
      resource: redis:maxmemory-policy
      change: {key: maxmemory-policy, old: "{{ __policy }}", new: allkeys-lru}
      disruptive: "{{ __disruptive }}"
      destructive: false
      status: "{{ __status }}"
      outcome: ""
    __result:
      procedure: cache_performance
      platform: compose
      phase: resolve
      findings:
        - check: redis.eviction_policy
          title: Redis eviction policy suits a cache
          status: "{{ 'problem' if __bad else 'ok' }}"
          observed: "{{ __policy }}"
          expected: allkeys-lru
          scenario: A
      scenarios:
        - {id: A, title: Cache eviction policy issues, holds: "{{ __bad }}", reason: ""}
      actions: "{{ [__action] if __bad else [] }}"
      verification: >-
        {{ none if (octollm_dry_run | bool or not __bad)
           else {'healthy': __fixed, 'findings': [{'check': 'redis.eviction_policy',
                 'status': 'ok' if __fixed else 'problem',
                 'observed': 'allkeys-lru' if __fixed else __policy}]} }}
      escalation: {level: null, reason: ""}
"""


def make_collection(root: Path) -> Path:
    """A stand-in octollm.remediation under root/ansible_collections; returns root (a collections path)."""
    base = root / "ansible_collections" / "octollm" / "remediation"
    (base / "playbooks").mkdir(parents=True)
    (base / "playbooks" / "run.yml").write_text(RUN_YML)
    tasks = base / "roles" / "cache_performance" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "diagnose.yml").write_text(DIAGNOSE_YML)
    (tasks / "resolve.yml").write_text(RESOLVE_YML)
    (tasks / "main.yml").write_text(DIAGNOSE_YML)
    return root


def write_inventory(path: Path, *, policy: str = "noeviction", disruptive: bool = False,
                    unreachable: bool = False, local: bool = True) -> Path:
    hosts = ""
    if local:
        hosts += textwrap.dedent(f"""\
            lab:
              ansible_connection: local
              ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
              fake_policy: {policy}
              fake_disruptive: {str(disruptive).lower()}
        """)
    if unreachable:
        hosts += textwrap.dedent("""\
            gone:
              ansible_host: 127.0.0.1
              ansible_port: 1
              ansible_connection: ssh
              ansible_ssh_common_args: -o ConnectTimeout=5 -o StrictHostKeyChecking=no
        """)
    path.write_text("octollm:\n  hosts:\n" + textwrap.indent(hosts, "    "))
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    collections = make_collection(tmp_path / "collections")
    return {
        "OCTOCTL_COLLECTIONS_PATH": str(collections),
        "OCTOCTL_STATE_DIR": str(tmp_path / "state"),
        "OCTOCTL_DEBUG": "",
        "OCTOCTL_SECRET_CANARY": "s3cr3t-canary-value",
    }


def _schema() -> dict:
    return json.loads((REPO_ROOT / "octoctl" / "schema" / "run-report-v1.json").read_text())


def _invoke(args: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, args, env=env)


def test_diagnose_finds_the_problem_through_ansible(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml")
    result = _invoke(["diagnose", "redis hit rate low", "-i", str(inventory), "--format", "json"], env)
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    jsonschema.validate(data, _schema())
    report = RunReport.model_validate(data)
    (target,) = report.targets
    (procedure,) = target.procedures
    assert procedure.findings[0].status == "problem"
    assert procedure.findings[0].observed == "noeviction"
    assert procedure.findings[0].evidence == {"run_id": report.run_id}
    assert procedure.verdict is not None and procedure.verdict.exit_code == 1
    # progress: "procedure | target | step" on stderr, never on stdout
    assert "cache_performance | lab | DIAGNOSE read Redis INFO" in result.stderr
    assert "DIAGNOSE" not in result.stdout


def test_diagnose_healthy_exits_0_and_saves_the_run(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml", policy="allkeys-lru")
    result = _invoke(["diagnose", "-i", str(inventory)], env)
    assert result.exit_code == 0, result.output
    # every other procedure has no role in the stand-in collection: listed on stderr, not in the report
    assert "not yet available" in result.stderr and "database_connections" in result.stderr
    assert "HEALTHY" in result.stdout
    runs = sorted((tmp_path / "state" / "runs").iterdir())
    assert len(runs) == 1
    saved = RunReport.model_validate_json((runs[0] / "report.json").read_text())
    assert saved.procedures == ["cache_performance"] and saved.exit_code == 0
    shown = _invoke(["report", "latest", "--format", "yaml"], env)
    assert shown.exit_code == 0 and saved.run_id in shown.stdout


def test_fix_with_approve_applies_and_verifies(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml", disruptive=True)
    result = _invoke(["fix", "cache", "--approve", "-i", str(inventory), "--format", "json"], env)
    assert result.exit_code == 0, result.output
    report = RunReport.model_validate_json(result.stdout)
    action = report.targets[0].procedures[0].actions[0]
    assert action.status == "applied"
    assert report.status == "fixed" and report.approve is True
    artifacts = Path(report.artifacts or "") / "artifacts"
    # approved up front: one run diagnoses, applies and verifies
    assert sorted(p.name for p in artifacts.iterdir()) == ["1-resolve-apply"]
    applied = json.loads((artifacts / "1-resolve-apply" / "command").read_text())
    extravars = json.loads(applied["command"][applied["command"].index("-e") + 1])
    assert extravars["octollm_approve"] is True and extravars["octollm_dry_run"] is False
    assert extravars["octollm_procedures"] == ["cache_performance"]
    assert extravars["octollm_run_id"] == report.run_id


def test_fix_without_approval_leaves_disruptive_steps_awaiting(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml", disruptive=True)
    result = _invoke(["fix", "cache", "-i", str(inventory), "--format", "json"], env)
    assert result.exit_code == 1, result.output
    report = RunReport.model_validate_json(result.stdout)
    action = report.targets[0].procedures[0].actions[0]
    assert action.status == "awaiting_approval"
    assert any("--approve" in note and f"octoctl approve {report.run_id}" in note for note in report.notes)
    assert report.approve_with == f"octoctl approve {report.run_id}"
    # one run, in which the step that needs approval was not applied; its plan is stored for `octoctl approve`
    assert [p.name for p in (Path(report.artifacts or "") / "artifacts").iterdir()] == ["1-resolve-apply"]
    plan = json.loads((Path(report.artifacts or "").parent / "plan.json").read_text())
    assert plan["targets"]["lab"] == {action.id: action.change.model_dump(exclude_none=True)}


def test_fix_dry_run_reports_the_plan(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml")
    result = _invoke(["fix", "cache", "--dry-run", "-i", str(inventory)], env)
    assert result.exit_code == 1, result.output
    assert "maxmemory-policy noeviction -> allkeys-lru" in result.stdout
    assert "planned" in result.stdout


def test_unreachable_only_target_exits_3(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml", local=False, unreachable=True)
    result = _invoke(["diagnose", "cache", "-i", str(inventory)], env)
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("octoctl: error: unreachable: gone:")
    assert "Traceback" not in result.stderr
    # the failed run still has a report, and its artifacts tell the same story
    (run,) = (tmp_path / "state" / "runs").iterdir()
    saved = RunReport.model_validate_json((run / "report.json").read_text())
    assert saved.exit_code == 3 and saved.status == "environment"
    outcome = outcome_from_artifacts(run / "runner" / "artifacts" / "1-diagnose")
    assert outcome.hosts["gone"].unreachable and outcome.rc != 0


def test_one_unreachable_target_among_several_exits_3_with_a_report(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml", policy="allkeys-lru", unreachable=True)
    result = _invoke(["diagnose", "cache", "-i", str(inventory), "--format", "json"], env)
    assert result.exit_code == 3, result.output
    report = RunReport.model_validate_json(result.stdout)
    by_name = {t.target: t for t in report.targets}
    assert by_name["lab"].exit_code == 0
    assert by_name["gone"].reachable is False and by_name["gone"].exit_code == 3


REAL_RUN_YML = REPO_ROOT / ".collections" / "ansible_collections" / "octollm" / "remediation" / "playbooks" / "run.yml"


@pytest.mark.skipif(not REAL_RUN_YML.is_file(), reason="the real collection (scripts/setup.sh) with playbooks/run.yml")
def test_unreachable_host_against_the_real_playbook(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml", local=False, unreachable=True)
    env = {"OCTOCTL_STATE_DIR": str(tmp_path / "state"), "OCTOCTL_COLLECTIONS_PATH": str(REPO_ROOT / ".collections"),
           "OCTOCTL_DEBUG": ""}
    result = _invoke(["diagnose", "cache", "-i", str(inventory)], env)
    assert result.exit_code == 3, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("octoctl: error: unreachable: gone:")


def test_missing_playbook_is_an_environment_error(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml")
    env = {**env, "OCTOCTL_PLAYBOOK": "octollm.remediation.nonexistent"}
    result = _invoke(["diagnose", "cache", "-i", str(inventory)], env)
    assert result.exit_code == 3, result.output
    assert "could not be found" in result.stderr


def test_nothing_secret_or_environmental_is_left_on_disk(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = write_inventory(tmp_path / "hosts.yml")
    os.environ["OCTOCTL_SECRET_CANARY"] = env["OCTOCTL_SECRET_CANARY"]
    try:
        result = _invoke(["diagnose", "cache", "-i", str(inventory)], env)
    finally:
        del os.environ["OCTOCTL_SECRET_CANARY"]
    assert result.exit_code == 1, result.output
    (run,) = (tmp_path / "state" / "runs").iterdir()
    runner_dir = run / "runner"
    assert not (runner_dir / "env").exists(), "ansible-runner wrote env/ files"
    files = [p for p in run.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert "s3cr3t-canary-value" not in path.read_text(errors="replace"), path
    command = json.loads((runner_dir / "artifacts" / "1-diagnose" / "command").read_text())
    assert set(command["env"]) <= {"ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_CONFIG", "ANSIBLE_NOCOLOR", "PATH"}
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_IMODE((run / "report.json").stat().st_mode) == 0o600
