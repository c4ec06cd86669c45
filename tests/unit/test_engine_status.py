"""Exit statuses computed from ProcedureResult combinations (design.md, "Exit statuses")."""

from __future__ import annotations

from typing import Any

import pytest

from octoctl.errors import ExitCode
from octoctl.exitstatus import judge_procedure, judge_target, run_exit_code, run_status
from octoctl.models import ProcedureResult, TargetError, TargetResult

OK = {"check": "redis.policy", "status": "ok", "observed": "allkeys-lru"}
WARN = {"check": "redis.memory", "status": "warning", "observed": "85%"}
PROBLEM = {"check": "redis.policy", "status": "problem", "observed": "noeviction", "scenario": "A"}


def unknown(kind: str, source: str | None = None) -> dict[str, Any]:
    error = {"kind": kind, "message": f"{kind} happened", **({"source": source} if source else {})}
    return {"check": "redis.info", "status": "unknown", "error": error}


def action(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"cache_performance.A.{status}", "status": status, **extra}


def result(phase: str = "diagnose", **fields: Any) -> ProcedureResult:
    return ProcedureResult.model_validate({"procedure": "cache_performance", "phase": phase, **fields})


CASES = [
    # (name, result, dry_run, exit code, status)
    ("healthy diagnosis", result(findings=[OK]), False, 0, "healthy"),
    ("warnings alone need nobody", result(findings=[OK, WARN]), False, 0, "healthy"),
    ("a problem needs a human", result(findings=[PROBLEM]), False, 1, "needs_human"),
    ("an undecided check needs a human", result(findings=[OK, unknown("timeout")]), False, 1, "needs_human"),
    ("other probe errors need a human", result(findings=[unknown("other")]), False, 1, "needs_human"),
    ("a probe the deployment does not offer needs nobody", result(findings=[OK, unknown("not_offered")]), False, 0,
     "healthy"),
    ("unreachable probe is environment", result(findings=[unknown("unreachable")]), False, 3, "environment"),
    ("rejected credentials are environment", result(findings=[PROBLEM, unknown("auth")]), False, 3, "environment"),
    ("missing tool is environment", result(findings=[unknown("missing_tool")]), False, 3, "environment"),
    # the component octoctl came to check does not answer: a problem of the stack, not octoctl's environment
    ("a stopped PostgreSQL is not the environment", result(findings=[unknown("unreachable", "postgres")]), False, 1,
     "needs_human"),
    ("a stopped Redis is not the environment", result(findings=[unknown("unreachable", "redis")]), False, 1,
     "needs_human"),
    ("the Docker API unreachable is", result(findings=[unknown("unreachable", "containers")]), False, 3,
     "environment"),
    ("the Kubernetes API unreachable is", result(findings=[unknown("unreachable", "kubernetes")]), False, 3,
     "environment"),
    ("octoctl's credentials rejected are", result(findings=[unknown("auth", "postgres")]), False, 3, "environment"),
    ("escalation needs a human", result(findings=[OK], escalation={"level": "L3", "reason": "PII"}), False, 1,
     "needs_human"),
    ("fixed and verified", result("resolve", findings=[PROBLEM], actions=[action("applied")],
                                  verification={"healthy": True, "findings": [OK]}), False, 0, "fixed"),
    ("fix failed verification", result("resolve", findings=[PROBLEM], actions=[action("applied")],
                                       verification={"healthy": False, "findings": [PROBLEM]}), False, 1,
     "needs_human"),
    ("verified but a problem remains", result("resolve", findings=[PROBLEM], actions=[action("applied")],
                                              verification={"healthy": True, "findings": [PROBLEM]}), False, 1,
     "needs_human"),
    ("fixed but escalates", result("resolve", findings=[PROBLEM], actions=[action("applied")],
                                   verification={"healthy": True, "findings": [OK]},
                                   escalation={"level": "L2", "reason": "code fix needed"}), False, 1, "needs_human"),
    ("awaiting approval", result("resolve", findings=[PROBLEM], actions=[action("awaiting_approval",
                                                                              disruptive=True)]),
     False, 1, "needs_human"),
    ("failed action", result("resolve", findings=[PROBLEM], actions=[action("failed")],
                             verification={"healthy": False, "findings": [PROBLEM]}), False, 1, "needs_human"),
    ("report-only step", result("resolve", findings=[PROBLEM], actions=[action("report")]), False, 1, "needs_human"),
    ("dry run with work to do", result("resolve", findings=[PROBLEM], actions=[action("planned")]), True, 1,
     "needs_human"),
    ("dry run with nothing to do", result("resolve", findings=[OK]), True, 0, "healthy"),
    ("a dry run's verification is ignored", result("resolve", findings=[PROBLEM], actions=[action("planned")],
                                                   verification={"healthy": False, "findings": [PROBLEM]}),
     True, 1, "needs_human"),
    ("resolve on a healthy target", result("resolve", findings=[OK]), False, 0, "healthy"),
    ("prevention applied", result("prevent", prevention={"findings": [OK], "actions": [action("applied")]}), False,
     0, "fixed"),
    ("prevention found a gap", result("prevent", prevention={"findings": [PROBLEM]}), False, 1, "needs_human"),
    ("prevention dry run", result("prevent", prevention={"findings": [PROBLEM], "actions": [action("planned")]}),
     True, 1, "needs_human"),
    ("unverifiable fix", result("resolve", findings=[PROBLEM], actions=[action("applied")],
                                verification={"healthy": True, "findings": [unknown("timeout")]}), False, 1,
     "needs_human"),
    ("environment beats human", result("resolve", findings=[PROBLEM], actions=[action("failed")],
                                       verification={"healthy": False, "findings": [unknown("unreachable")]}),
     False, 3, "environment"),
]


@pytest.mark.parametrize(("name", "res", "dry_run", "code", "status"), CASES, ids=[c[0] for c in CASES])
def test_procedure_verdicts(name: str, res: ProcedureResult, dry_run: bool, code: int, status: str) -> None:
    verdict = judge_procedure(res, dry_run=dry_run)
    assert (verdict.exit_code, verdict.status) == (code, status)
    assert bool(verdict.reasons) == (code != 0)


def test_reasons_name_the_checks() -> None:
    verdict = judge_procedure(result(findings=[PROBLEM], escalation={"level": "L1", "reason": "twice this week"}))
    assert verdict.reasons == ["1 problem found: redis.policy", "escalates to L1: twice this week"]


def test_dry_run_reasons_speak_of_the_plan_not_of_verification() -> None:
    res = result("resolve", findings=[PROBLEM], actions=[action("planned")],
                 verification={"healthy": False, "findings": [PROBLEM]})
    assert judge_procedure(res, dry_run=True).reasons == ["dry run: 1 action to do"]
    assert "the fix failed verification" in judge_procedure(res, dry_run=False).reasons[0]


def _target(*procedures: ProcedureResult, errors: list[TargetError] | None = None) -> TargetResult:
    return TargetResult(target="lab", procedures=list(procedures), errors=errors or [], status="healthy", exit_code=0)


def test_highest_wins_across_procedures_and_targets() -> None:
    fixed = result("resolve", findings=[PROBLEM], actions=[action("applied")],
                   verification={"healthy": True, "findings": [OK]})
    human = result(findings=[PROBLEM])
    a = judge_target(_target(fixed))
    assert (a.exit_code, a.status) == (0, "fixed")
    b = judge_target(_target(fixed, human))
    assert (b.exit_code, b.status) == (1, "needs_human")
    c = judge_target(_target(errors=[TargetError(kind="unreachable", message="ssh refused")]))
    assert (c.exit_code, c.status) == (3, "environment")
    assert run_exit_code([a, b, c]) == ExitCode.ENVIRONMENT
    assert run_status([a]) == "fixed" and run_status([a, b]) == "needs_human"
    assert run_exit_code([]) == 0


@pytest.mark.parametrize(
    ("kind", "code"), [("unreachable", 3), ("missing_tool", 3), ("failed", 4), ("missing_result", 4),
                       ("invalid_result", 4)],
)
def test_target_errors(kind: str, code: int) -> None:
    target = judge_target(_target(result(findings=[PROBLEM]), errors=[TargetError(kind=kind, message="x")]))
    assert target.exit_code == code


def test_never_healthy_while_a_service_of_the_stack_is_down() -> None:
    """The stack check (every diagnosis and fix): a procedure that is healthy does not make the target healthy."""
    healthy = result(findings=[OK])
    down = {"findings": [{"check": "stack.redis", "status": "problem", "observed": "exited"}], "down": ["redis"]}
    target = judge_target(TargetResult.model_validate(
        {"target": "lab", "status": "healthy", "exit_code": 0, "procedures": [healthy.model_dump()], "stack": down}))
    assert (target.exit_code, target.status) == (1, "needs_human")
    up = {"findings": [{"check": "stack.redis", "status": "ok"}], "down": []}
    target = judge_target(TargetResult.model_validate(
        {"target": "lab", "status": "healthy", "exit_code": 0, "procedures": [healthy.model_dump()], "stack": up}))
    assert (target.exit_code, target.status) == (0, "healthy")
    blind = {"findings": [{"check": "stack.redis", "status": "unknown",
                           "error": {"kind": "unreachable", "message": "docker", "source": "containers"}}], "down": []}
    target = judge_target(TargetResult.model_validate(
        {"target": "lab", "status": "healthy", "exit_code": 0, "procedures": [healthy.model_dump()], "stack": blind}))
    assert target.exit_code == 3
