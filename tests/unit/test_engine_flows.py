"""The diagnose/fix/prevent flows against a scripted runner (no Ansible), and the outcome mapping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from octoctl.catalog import load_catalog
from octoctl.config import Settings
from octoctl.engine import Engine, PendingAction, Request, build_targets
from octoctl.errors import ExitCode, OctoctlError
from octoctl.runner import RunOutcome, RunSpec, check_outcome, outcome_from_events, progress_line, scrub_event
from octoctl.store import Store

CATALOG = load_catalog()


def stats_event(report: dict[str, Any], dark: dict[str, int] | None = None,
                failures: dict[str, int] | None = None) -> dict[str, Any]:
    """A playbook_on_stats event shaped as ansible-runner emits it."""
    hosts = {**{h: 1 for h in report}, **(dark or {}), **(failures or {})}
    return {"event": "playbook_on_stats", "event_data": {
        "artifact_data": {"octollm_report": report}, "dark": dark or {}, "failures": failures or {},
        "processed": hosts, "ok": hosts, "changed": {}, "skipped": {}, "ignored": {}, "rescued": {},
    }}


def cache_result(phase: str, *, dry_run: bool, approve: bool, disruptive: bool, broken: bool = True) -> dict[str, Any]:
    status = "planned" if dry_run else ("applied" if approve or not disruptive else "skipped")
    result: dict[str, Any] = {
        "procedure": "cache_performance", "platform": "compose", "phase": phase,
        "findings": [{"check": "redis.eviction_policy", "status": "problem" if broken else "ok"}],
        "actions": [{"id": "cache_performance.A.set_eviction_policy", "status": status, "disruptive": disruptive,
                     "title": "set maxmemory-policy", "resource": "redis:maxmemory-policy",
                     "change": {"key": "maxmemory-policy", "old": "noeviction", "new": "allkeys-lru"}}]
        if broken else [],
        "escalation": {"level": None},
    }
    if phase == "resolve" and not dry_run and broken:
        result["verification"] = {"healthy": status == "applied", "findings": [
            {"check": "redis.eviction_policy", "status": "ok" if status == "applied" else "problem"}]}
    return result


class ScriptedRunner:
    """Stands in for octoctl.runner.Runner: answers from a function of the extra vars."""

    def __init__(self, answer: Callable[[dict[str, Any]], list[dict[str, Any]]], hosts: list[str] | None = None):
        self.answer = answer
        self.hosts = hosts or ["lab"]
        self.specs: list[RunSpec] = []

    def check_inventory(self, inventory: Path, limit: str | None = None) -> list[str]:
        return list(self.hosts)

    def run(self, spec: RunSpec, targets: list[str] | None = None) -> RunOutcome:
        self.specs.append(spec)
        outcome = outcome_from_events(self.answer(spec.extravars), 0, "successful")
        check_outcome(outcome, targets or [], spec.playbook, "test")
        return outcome


def cache_answer(disruptive: bool, broken: bool = True) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    def answer(xv: dict[str, Any]) -> list[dict[str, Any]]:
        results = {name: cache_result(xv["octollm_phase"], dry_run=xv["octollm_dry_run"],
                                      approve=xv["octollm_approve"], disruptive=disruptive, broken=broken)
                   for name in xv["octollm_procedures"] if name == "cache_performance"}
        results.update({name: {"procedure": name, "phase": xv["octollm_phase"], "findings": []}
                        for name in xv["octollm_procedures"] if name != "cache_performance"})
        return [stats_event({"lab": results})]
    return answer


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    for role in ("cache_performance", "resource_exhaustion", "high_latency"):
        for phase in ("diagnose", "resolve", "prevent"):
            tasks = tmp_path / "c" / "ansible_collections" / "octollm" / "remediation" / "roles" / role / "tasks"
            tasks.mkdir(parents=True, exist_ok=True)
            (tasks / f"{phase}.yml").write_text("[]\n")
    return Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_COLLECTIONS_PATH": str(tmp_path / "c"),
                              "OCTOCTL_STATE_DIR": str(tmp_path / "state")})


def make_engine(settings: Settings, runner: ScriptedRunner, confirm: Any = None,
                progress: list[str] | None = None) -> Engine:
    store = Store(settings.runs_dir, 30, 10)
    sink = progress if progress is not None else []
    return Engine(settings, CATALOG, store, runner, confirm=confirm, progress=sink.append)


def request(command: str, *names: str, **flags: Any) -> Request:
    return Request(command=command, procedures=[CATALOG.get(n) for n in names], inventory=Path("inv"),
                   argv=list(names), **flags)


def test_fix_dry_run_plans_only(settings: Settings) -> None:
    runner = ScriptedRunner(cache_answer(disruptive=False))
    report = make_engine(settings, runner).fix(request("fix", "cache_performance", dry_run=True))
    assert len(runner.specs) == 1 and runner.specs[0].extravars["octollm_dry_run"] is True
    assert report.exit_code == ExitCode.HUMAN_NEEDED
    assert report.targets[0].procedures[0].actions[0].status == "planned"


def test_fix_non_disruptive_applies_without_asking(settings: Settings) -> None:
    asked: list[list[PendingAction]] = []
    runner = ScriptedRunner(cache_answer(disruptive=False))
    engine = make_engine(settings, runner, confirm=lambda items: asked.append(items) or True)
    report = engine.fix(request("fix", "cache_performance"))
    assert asked == []
    assert [s.extravars["octollm_dry_run"] for s in runner.specs] == [True, False]
    assert [s.ident for s in runner.specs] == ["1-resolve-plan", "2-resolve-apply"]
    assert runner.specs[1].extravars["octollm_approve"] is False
    # the apply run receives exactly the plan that was shown
    assert runner.specs[1].extravars["octollm_approved_plan"] == {"lab": {
        "cache_performance.A.set_eviction_policy": {"key": "maxmemory-policy", "old": "noeviction",
                                                    "new": "allkeys-lru"}}}
    assert (report.exit_code, report.status) == (0, "fixed")


def test_fix_asks_once_on_a_tty_then_approves(settings: Settings) -> None:
    asked: list[list[PendingAction]] = []
    runner = ScriptedRunner(cache_answer(disruptive=True), hosts=["lab", "lab2"])

    def answer(xv: dict[str, Any]) -> list[dict[str, Any]]:
        (event,) = cache_answer(disruptive=True)(xv)
        report = event["event_data"]["artifact_data"]["octollm_report"]
        report["lab2"] = report["lab"]
        return [stats_event(report)]

    runner.answer = answer
    engine = make_engine(settings, runner, confirm=lambda items: asked.append(items) or True)
    report = engine.fix(request("fix", "cache_performance"))
    assert len(asked) == 1 and len(asked[0]) == 2, "one question listing every disruptive step"
    assert "disruptive" in asked[0][0].describe()
    assert runner.specs[1].extravars["octollm_approve"] is True
    assert report.approve is True and report.exit_code == 0


def test_steps_the_role_already_marks_awaiting_approval_are_asked_about(settings: Settings) -> None:
    """The real roles mark disruptive steps awaiting_approval in the plan run (octollm_approve false)."""
    def answer(xv: dict[str, Any]) -> list[dict[str, Any]]:
        result = cache_result("resolve", dry_run=xv["octollm_dry_run"], approve=xv["octollm_approve"],
                              disruptive=True)
        if not xv["octollm_approve"]:
            result["actions"][0]["status"] = "awaiting_approval"
        return [stats_event({"lab": {"cache_performance": result}})]

    asked: list[list[PendingAction]] = []
    runner = ScriptedRunner(answer)
    engine = make_engine(settings, runner, confirm=lambda items: asked.append(items) or True)
    report = engine.fix(request("fix", "cache_performance"))
    assert len(asked) == 1 and asked[0][0].action.id == "cache_performance.A.set_eviction_policy"
    assert runner.specs[1].extravars["octollm_approve"] is True
    assert report.targets[0].procedures[0].actions[0].status == "applied" and report.exit_code == 0


def test_fix_declined_at_the_prompt(settings: Settings) -> None:
    runner = ScriptedRunner(cache_answer(disruptive=True))
    report = make_engine(settings, runner, confirm=lambda items: False).fix(request("fix", "cache_performance"))
    assert len(runner.specs) == 1
    assert report.targets[0].procedures[0].actions[0].status == "awaiting_approval"
    assert report.exit_code == 1 and "declined" in " ".join(report.notes)


def test_fix_without_tty_or_approve_leaves_steps_awaiting(settings: Settings) -> None:
    runner = ScriptedRunner(cache_answer(disruptive=True))
    report = make_engine(settings, runner, confirm=None).fix(request("fix", "cache_performance"))
    action = report.targets[0].procedures[0].actions[0]
    assert action.status == "awaiting_approval" and report.exit_code == 1
    assert report.targets[0].procedures[0].verdict is not None
    assert "await" in " ".join(report.targets[0].procedures[0].verdict.reasons)


def test_fix_with_mixed_steps_applies_the_safe_ones(settings: Settings) -> None:
    def answer(xv: dict[str, Any]) -> list[dict[str, Any]]:
        result = cache_result("resolve", dry_run=xv["octollm_dry_run"], approve=xv["octollm_approve"],
                              disruptive=False)
        risky = dict(result["actions"][0], id="cache_performance.A.restart", disruptive=True,
                     resource="container:redis",
                     status="planned" if xv["octollm_dry_run"] else ("applied" if xv["octollm_approve"] else "skipped"))
        result["actions"].append(risky)
        return [stats_event({"lab": {"cache_performance": result}})]

    runner = ScriptedRunner(answer)
    report = make_engine(settings, runner).fix(request("fix", "cache_performance"))
    statuses = [a.status for a in report.targets[0].procedures[0].actions]
    assert statuses == ["applied", "awaiting_approval"]
    # nobody to ask: one run, without approval; the step left waiting is the stored plan
    assert len(runner.specs) == 1 and runner.specs[0].extravars["octollm_approve"] is False
    assert report.exit_code == 1 and report.approve_with == f"octoctl approve {report.run_id}"
    plan = Store(settings.runs_dir, 30, 10).load_plan(report.run_id)
    assert list(plan["targets"]["lab"]) == ["cache_performance.A.restart"] and plan["digest"]


def approving_answer(applies: bool) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    """A role that applies the approved plan's action when ``applies`` (the evidence still supports it), else
    holds it back as the flow does when the change moved."""
    def answer(xv: dict[str, Any]) -> list[dict[str, Any]]:
        result = cache_result("resolve", dry_run=xv["octollm_dry_run"], approve=xv["octollm_approve"],
                              disruptive=True)
        approved = (xv.get("octollm_approved_plan") or {}).get("lab")
        if approved is not None and not applies:
            result["actions"][0].update(status="awaiting_approval", outcome="not applied: the approved plan no "
                                        "longer holds (changed since it was approved)")
        elif not xv["octollm_approve"] and not xv["octollm_dry_run"]:
            result["actions"][0]["status"] = "awaiting_approval"
        return [stats_event({"lab": {"cache_performance": result}})]
    return answer


def test_approve_applies_exactly_the_stored_plan(settings: Settings) -> None:
    runner = ScriptedRunner(approving_answer(applies=True))
    engine = make_engine(settings, runner)
    waiting = engine.fix(request("fix", "cache_performance"))
    assert waiting.exit_code == 1 and waiting.approve_with
    report = engine.approve(request("approve", "cache_performance", approve=True), waiting.run_id)
    spec = runner.specs[-1]
    assert spec.extravars["octollm_approve"] is True and spec.ident == "1-resolve-approve"
    assert spec.extravars["octollm_approved_plan"] == {"lab": {"cache_performance.A.set_eviction_policy": {
        "key": "maxmemory-policy", "old": "noeviction", "new": "allkeys-lru"}}}
    assert report.approves == waiting.run_id and report.exit_code == 0
    assert any(f"applied the plan of run {waiting.run_id}" in note for note in report.notes)


def test_approve_runs_with_the_extra_vars_of_the_plan(settings: Settings) -> None:
    """`octoctl restart SERVICE` / `rollback SERVICE` plan an action because of an extra var
    (service_unavailable_restart_services, service_unavailable_rollback): `octoctl approve RUN_ID` passes it again,
    else the approved action would no longer be planned."""
    runner = ScriptedRunner(approving_answer(applies=True))
    engine = make_engine(settings, runner)
    asked = {"service_unavailable_rollback": {"service": "planner-arm", "to_revision": 2}}
    waiting = engine.fix(request("rollback", "cache_performance", extra_vars=asked))
    assert runner.specs[-1].extravars["service_unavailable_rollback"] == asked["service_unavailable_rollback"]
    engine.approve(request("approve", "cache_performance", approve=True), waiting.run_id)
    assert runner.specs[-1].extravars["service_unavailable_rollback"] == asked["service_unavailable_rollback"]
    assert runner.specs[-1].extravars["octollm_approved_plan"]


def test_approve_refuses_a_plan_the_evidence_no_longer_supports(settings: Settings) -> None:
    runner = ScriptedRunner(approving_answer(applies=False))
    engine = make_engine(settings, runner)
    waiting = engine.fix(request("fix", "cache_performance", dry_run=True))
    report = engine.approve(request("approve", "cache_performance", approve=True), waiting.run_id)
    assert report.exit_code == 1 and report.targets[0].procedures[0].actions[0].status == "awaiting_approval"
    assert any("refused" in note and "cache_performance.A.set_eviction_policy" in note for note in report.notes)


def test_the_stored_plan_keeps_what_the_command_asked_the_roles_for(settings: Settings) -> None:
    """octoctl restart / emergency restart pass their request as extra vars: the stored plan keeps them, so that
    `octoctl approve RUN_ID` asks the roles for the same plan (without them the restart is no longer planned)."""
    runner = ScriptedRunner(approving_answer(applies=True))
    engine = make_engine(settings, runner)
    asked = {"service_unavailable_emergency_restart": True}
    waiting = engine.fix(request("fix", "cache_performance", dry_run=True, extra_vars=asked))
    plan = Store(settings.runs_dir, 30, 10).load_plan(waiting.run_id)
    assert plan["extra_vars"] == asked
    engine.approve(request("approve", "cache_performance", approve=True, extra_vars=plan["extra_vars"]),
                   waiting.run_id)
    assert runner.specs[-1].extravars["service_unavailable_emergency_restart"] is True


def test_approve_without_a_stored_plan_is_a_usage_error(settings: Settings) -> None:
    runner = ScriptedRunner(cache_answer(disruptive=False, broken=False))
    engine = make_engine(settings, runner)
    healthy = engine.fix(request("fix", "cache_performance"))
    assert healthy.approve_with is None
    with pytest.raises(OctoctlError) as caught:
        engine.approve(request("approve", "cache_performance", approve=True), healthy.run_id)
    assert caught.value.exit_code == ExitCode.USAGE and "no plan" in caught.value.message


def test_nothing_to_fix_is_one_run(settings: Settings) -> None:
    runner = ScriptedRunner(cache_answer(disruptive=False, broken=False))
    report = make_engine(settings, runner).fix(request("fix", "cache_performance"))
    assert len(runner.specs) == 1 and report.exit_code == 0 and report.status == "healthy"


def test_procedures_run_in_rank_order_and_report_is_saved(settings: Settings) -> None:
    runner = ScriptedRunner(cache_answer(disruptive=False, broken=False))
    engine = make_engine(settings, runner)
    report = engine.diagnose(request("diagnose", "high_latency", "cache_performance", "resource_exhaustion"))
    expected = ["resource_exhaustion", "cache_performance", "high_latency"]
    assert runner.specs[0].extravars["octollm_procedures"] == expected
    assert runner.specs[0].extravars["octollm_phase"] == "diagnose"
    assert runner.specs[0].extravars["octollm_run_id"] == report.run_id
    assert "octollm_scenario" not in runner.specs[0].extravars
    assert [p.procedure for p in report.targets[0].procedures] == expected
    assert engine.store.load(report.run_id) == report


def test_scenario_is_checked_and_passed(settings: Settings) -> None:
    runner = ScriptedRunner(cache_answer(disruptive=False))
    engine = make_engine(settings, runner)
    engine.fix(request("fix", "cache_performance", scenario="a", dry_run=True))
    assert runner.specs[0].extravars["octollm_scenario"] == "A"
    for bad in (request("fix", "cache_performance", scenario="Z"),
                request("fix", "cache_performance", "high_latency", scenario="A")):
        with pytest.raises(OctoctlError) as caught:
            engine.fix(bad)
        assert caught.value.exit_code == ExitCode.USAGE


def test_diagnose_everything_lists_what_is_not_available(settings: Settings) -> None:
    runner = ScriptedRunner(cache_answer(disruptive=False, broken=False))
    progress: list[str] = []
    engine = make_engine(settings, runner, progress=progress)
    report = engine.diagnose(request("diagnose", *CATALOG.names(), every_procedure=True))
    assert report.procedures == ["resource_exhaustion", "cache_performance", "high_latency"]
    assert any("not yet available" in line and "llm_api" in line for line in progress)
    assert report.notes == []


def test_named_procedure_without_a_role_is_an_environment_error(settings: Settings) -> None:
    engine = make_engine(settings, ScriptedRunner(cache_answer(disruptive=False)))
    with pytest.raises(OctoctlError) as caught:
        engine.diagnose(request("diagnose", "llm_api"))
    assert caught.value.exit_code == ExitCode.ENVIRONMENT and "llm_api" in caught.value.message


def test_missing_collection_is_an_environment_error(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_COLLECTIONS_PATH": str(tmp_path / "none"),
                                  "OCTOCTL_STATE_DIR": str(tmp_path / "s")})
    engine = make_engine(settings, ScriptedRunner(cache_answer(disruptive=False)))
    with pytest.raises(OctoctlError, match="collection octollm.remediation not found") as caught:
        engine.diagnose(request("diagnose", "cache_performance"))
    assert caught.value.exit_code == ExitCode.ENVIRONMENT


def test_unreachable_run_is_saved_then_raised(settings: Settings) -> None:
    def answer(xv: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"event": "runner_on_unreachable", "event_data": {
                "host": "lab", "task": "cache | DIAGNOSE | read Redis INFO",
                "res": {"msg": "Failed to connect to the host via ssh: Connection refused", "unreachable": True}}},
            stats_event({}, dark={"lab": 1}),
        ]

    engine = make_engine(settings, ScriptedRunner(answer))
    with pytest.raises(OctoctlError) as caught:
        engine.diagnose(request("diagnose", "cache_performance"))
    assert caught.value.exit_code == ExitCode.ENVIRONMENT
    assert "Connection refused" in caught.value.message
    (run_id,) = engine.store.list_runs()
    assert run_id in caught.value.message
    assert engine.store.load(run_id).status == "environment"


# --- outcome -> targets ---------------------------------------------------------------------------


def _outcome(events: list[dict[str, Any]]) -> RunOutcome:
    return outcome_from_events(events, 2, "failed")


def test_build_targets_records_contract_breaks_and_failures() -> None:
    cache = CATALOG.get("cache_performance")
    latency = CATALOG.get("high_latency")
    outcome = _outcome([
        {"event": "runner_on_failed", "event_data": {"host": "b", "task": "latency | DIAGNOSE | query", "res": {
            "msg": "Failed to import the required Python library (psycopg2)"}}},
        {"event": "runner_on_failed", "event_data": {"host": "a", "task": "probe", "ignore_errors": True,
                                                     "res": {"msg": "ignored"}}},
        stats_event({"a": {"cache_performance": {"procedure": "cache_performance", "phase": "diagnose",
                                                 "findings": [{"check": "x", "status": "sideways"}]}},
                     "b": {"cache_performance": {"procedure": "cache_performance", "phase": "diagnose"}}},
                    failures={"b": 1}),
    ])
    assert not outcome.hosts["a"].failed and outcome.hosts["b"].failed
    a, b = build_targets(outcome, ["a", "b"], [cache, latency], "diagnose")
    assert [e.kind for e in a.errors] == ["invalid_result", "missing_result"]
    assert [e.kind for e in b.errors] == ["missing_tool"]
    assert len(b.procedures) == 1


def test_check_outcome_without_stats() -> None:
    verbose = {"event": "verbose", "stdout": "\x1b[0;31m[ERROR]: the playbook: octollm.remediation.run could not "
               "be found\x1b[0m"}
    with pytest.raises(OctoctlError) as caught:
        check_outcome(_outcome([verbose]), ["lab"], "octollm.remediation.run", "/x")
    assert caught.value.exit_code == ExitCode.ENVIRONMENT and "could not be found" in caught.value.message
    broken = {"event": "verbose", "stdout": "[ERROR]: conflicting action statements: debug, shell"}
    with pytest.raises(OctoctlError) as caught:
        check_outcome(_outcome([broken]), ["lab"], "p", "/x")
    assert caught.value.exit_code == ExitCode.INTERNAL


def test_progress_lines_and_scrubbing() -> None:
    start = {"event": "runner_on_start", "event_data": {"host": "lab", "task": "cache | DIAGNOSE | read Redis INFO",
                                                         "role": "cache_performance"}}
    assert progress_line(start, {"cache": "cache_performance"}) == (
        "cache_performance | lab | DIAGNOSE read Redis INFO")
    no_role = {"event": "runner_on_start", "event_data": {"host": "lab", "task": "db | RESOLVE | terminate idle"}}
    assert progress_line(no_role, {"db": "database_connections"}) == (
        "database_connections | lab | RESOLVE terminate idle")
    assert progress_line({"event": "runner_on_start", "event_data": {"task": "Gathering Facts"}}, {}) is None
    ok = {"event": "runner_on_ok", "event_data": {"res": {"changed": True, "password": "x", "invocation": {}}}}
    assert scrub_event(ok)["event_data"]["res"] == {"changed": True}
    failed = {"event": "runner_on_failed", "event_data": {"res": {"msg": "boom", "invocation": {"module_args": {}}}}}
    assert scrub_event(failed)["event_data"]["res"] == {"msg": "boom"}


def test_fix_without_a_confident_procedure_applies_only_what_needs_no_approval(settings: Settings) -> None:
    """`octoctl fix` of text that named nothing with confidence: every procedure, one run, no approval even when
    the person typed --approve (the CLI clears it) and even with a terminal to ask on."""
    asked: list[list[PendingAction]] = []
    runner = ScriptedRunner(cache_answer(disruptive=True))
    engine = make_engine(settings, runner, confirm=lambda items: asked.append(items) or True)
    report = engine.fix(request("fix", "cache_performance", "high_latency", every_procedure=True, safe_only=True))
    assert asked == [] and len(runner.specs) == 1 and runner.specs[0].extravars["octollm_approve"] is False
    assert report.targets[0].procedures[0].actions[0].status == "awaiting_approval"
    assert any("with confidence" in note for note in report.notes) and report.approve_with


def test_the_stack_check_reaches_the_report_and_its_exit_status(settings: Settings) -> None:
    def answer(xv: dict[str, Any]) -> list[dict[str, Any]]:
        (event,) = cache_answer(disruptive=False, broken=False)(xv)
        report = event["event_data"]["artifact_data"]["octollm_report"]
        report["lab"]["stack"] = {"findings": [{"check": "stack.redis", "status": "problem", "observed": "exited"}],
                                  "down": ["redis"]}
        return [stats_event(report)]

    report = make_engine(settings, ScriptedRunner(answer)).diagnose(request("diagnose", "cache_performance"))
    target = report.targets[0]
    assert target.stack is not None and target.stack.down == ["redis"]
    assert target.procedures[0].verdict is not None and target.procedures[0].verdict.status == "healthy"
    assert report.exit_code == 1 and target.status == "needs_human"
