"""Many stacks in batches (issue 18, item 7), without Ansible: what octoctl passes to the playbook for --serial and
--max-fail-percentage, how it reads a stack failed only by "fail when a human is needed" (its results judge it) and a
stack the rollout never reached (not run, exit status 1), and the play keywords AWX can set through the same variables.
tests/lab/test_lab_serial.py runs it against real stacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from test_engine_flows import CATALOG, ScriptedRunner, cache_result, make_engine, request, stats_event
from test_engine_flows import settings as settings  # noqa: F401 - the fixture

from octoctl.cli import cli
from octoctl.config import Settings
from octoctl.engine import build_targets
from octoctl.exitstatus import judge_target, run_exit_code
from octoctl.runner import HUMAN_NEEDED_TASK, outcome_from_events

REPO = Path(__file__).resolve().parents[2]


def _human_needed_failure(host: str) -> dict[str, Any]:
    return {"event": "runner_on_failed", "event_data": {
        "host": host, "task": HUMAN_NEEDED_TASK + " (octollm_fail_when_human_needed)",
        "res": {"msg": "exit status 1 (a human is needed): cache_performance: 1 problem found"}}}


def test_a_stack_failed_only_by_the_human_needed_task_is_judged_by_its_results() -> None:
    broken = cache_result("diagnose", dry_run=False, approve=False, disruptive=False)
    events = [_human_needed_failure("broken"),
              stats_event({"lab": {}, "broken": {"cache_performance": broken}}, failures={"broken": 1})]
    outcome = outcome_from_events(events, 2, "failed")
    assert not outcome.hosts["broken"].failed and outcome.hosts["broken"].human_needed
    targets = {t.target: judge_target(t)
               for t in build_targets(outcome, ["broken", "lab"], [CATALOG.get("cache_performance")], "diagnose")}
    # without the distinction the failure would be octoctl's own error (4)
    assert not targets["broken"].errors and targets["broken"].exit_code == 1


def test_stacks_a_stopped_rollout_never_reached_are_not_run() -> None:
    events = [stats_event({"lab": {}}, failures={"broken": 1})]
    outcome = outcome_from_events(events, 2, "failed")
    targets = {t.target: judge_target(t) for t in build_targets(outcome, ["broken", "lab", "later"], [], "diagnose",
                                                                   rollout=True)}
    assert [e.kind for e in targets["later"].errors] == ["not_run"] and targets["later"].exit_code == 1
    assert [e.kind for e in targets["broken"].errors] == ["failed"] and targets["broken"].exit_code == 4
    assert targets["lab"].exit_code == 0
    assert run_exit_code(targets.values()) == 4  # the highest wins
    # without a rollout a host without any result stays octoctl's own error (missing result)
    plain = build_targets(outcome, ["later"], [], "diagnose")
    assert not plain[0].errors  # no procedure asked for: nothing missing, and not "not run"


def test_serial_and_max_fail_percentage_reach_the_playbook(settings: Settings) -> None:
    def answer(xv: dict[str, Any]) -> list[dict[str, Any]]:
        return [stats_event({host: {"cache_performance": cache_result(xv["octollm_phase"], dry_run=True,
                                                                      approve=False, disruptive=False)}
                             for host in ("lab", "broken")})]

    runner = ScriptedRunner(answer, hosts=["broken", "lab", "later"])
    engine = make_engine(settings, runner)
    report = engine.fix(request("fix", "cache_performance", dry_run=True, serial=2, max_fail_percentage=40))
    extravars = runner.specs[0].extravars
    assert (extravars["octollm_serial"], extravars["octollm_max_fail_percentage"]) == (2, 40)
    assert extravars["octollm_fail_when_human_needed"] is True
    by_target = {t.target: t for t in report.targets}
    assert [e.kind for e in by_target["later"].errors] == ["not_run"]
    assert report.exit_code == 1
    # without --serial nothing of it is passed
    engine.prevent(request("prevent", "cache_performance", dry_run=True))
    assert not {"octollm_serial", "octollm_max_fail_percentage", "octollm_fail_when_human_needed"} \
        & set(runner.specs[-1].extravars)


def test_on_a_terminal_the_plan_covers_every_stack_and_the_apply_run_goes_in_batches(settings: Settings) -> None:
    def answer(xv: dict[str, Any]) -> list[dict[str, Any]]:
        result = cache_result(xv["octollm_phase"], dry_run=xv["octollm_dry_run"], approve=xv["octollm_approve"],
                              disruptive=True)
        return [stats_event({"lab": {"cache_performance": result}, "lab2": {"cache_performance": result}})]

    runner = ScriptedRunner(answer, hosts=["lab", "lab2"])
    engine = make_engine(settings, runner, confirm=lambda items: True)
    report = engine.fix(request("fix", "cache_performance", serial=1))
    plan, apply = (spec.extravars for spec in runner.specs)
    assert "octollm_serial" not in plan and "octollm_fail_when_human_needed" not in plan
    assert apply["octollm_serial"] == 1 and apply["octollm_fail_when_human_needed"] is True
    assert report.exit_code == 0


def test_max_fail_percentage_needs_serial() -> None:
    done = CliRunner().invoke(cli, ["prevent", "cache", "--max-fail-percentage", "30"])
    assert done.exit_code == 2 and "--max-fail-percentage needs --serial" in done.output
    done = CliRunner().invoke(cli, ["fix", "cache", "--serial", "0"])
    assert done.exit_code == 2


@pytest.mark.parametrize("playbook", ["run.yml", "prevent_all.yml"])
def test_the_playbooks_roll_out_in_batches_from_variables(playbook: str) -> None:
    [play] = yaml.safe_load((REPO / "playbooks" / playbook).read_text())
    assert play["serial"] == "{{ octollm_serial | default(0) }}"  # 0: every stack in one batch
    assert play["max_fail_percentage"] == "{{ octollm_max_fail_percentage | default(100) }}"
