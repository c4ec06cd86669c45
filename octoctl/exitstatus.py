"""The exit status, computed from the results (design.md "Exit statuses", "Errors inside results").

| status | when |
|---|---|
| 0 | healthy, or fixed and verified, and no human needed |
| 1 | a human is needed: problems remain, a fix failed verification, steps await approval, a dry run found
|   | something to do, an action failed or is report-only, or the procedure escalates; a stack a rollout in
|   | batches (``--serial``) did not reach because an earlier batch failed |
| 2 | usage error, unknown symptom, unreadable inventory (raised before anything runs) |
| 3 | environment: what octoctl itself cannot reach or log into: a target host, the Docker or Kubernetes API, a
|   | tool, its credentials (finding error kinds ``auth``, ``missing_tool``, and ``unreachable`` of the runtime's
|   | API); a component of the stack that does not answer is a problem (1), not the environment |
| 4 | octoctl's own error, including a result that breaks the contract |

With several targets or procedures the highest wins.
"""

from __future__ import annotations

from collections.abc import Iterable

from octoctl.errors import ExitCode
from octoctl.models import (
    Finding,
    ProcedureResult,
    ProcedureStatus,
    RunStatus,
    TargetError,
    TargetResult,
    Verdict,
    is_environment_error,
)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _checks(findings: Iterable[Finding]) -> str:
    return ", ".join(f.check for f in findings)


def judge_procedure(result: ProcedureResult, *, dry_run: bool = False) -> Verdict:
    """Exit status and reasons for one procedure's result on one target."""
    reasons: list[str] = []
    environment = [f for f in result.all_findings() if is_environment_error(f.error)]
    for finding in environment:
        assert finding.error is not None
        reasons.append(f"{finding.check}: {finding.error.kind}: {finding.error.message}".rstrip(": "))

    def undecided(findings: list[Finding]) -> list[Finding]:
        # an optional probe the deployment does not offer is not a check that could not be made
        return [f for f in findings if f.status == "unknown" and f not in environment
                and (f.error is None or f.error.kind != "not_offered")]

    actions = result.all_actions()
    by_status: dict[str, int] = {}
    for action in actions:
        by_status[action.status] = by_status.get(action.status, 0) + 1

    # a dry run verifies nothing: a role's "verification" of an unchanged target is the diagnosis again
    if result.phase == "resolve" and result.verification is not None and not dry_run:
        remaining = [f for f in result.verification.findings if f.status == "problem"]
        if not result.verification.healthy:
            detail = f": {_checks(remaining)}" if remaining else ""
            reasons.append("the fix failed verification" + detail)
        elif remaining:
            verb = "remains" if len(remaining) == 1 else "remain"
            reasons.append(f"{_plural(len(remaining), 'problem')} {verb} after the fix: {_checks(remaining)}")
        if unknown := undecided(result.verification.findings):
            reasons.append(f"{_plural(len(unknown), 'check')} could not be verified: {_checks(unknown)}")
    else:
        findings = list(result.findings) + (list(result.prevention.findings) if result.prevention else [])
        problems = [f for f in findings if f.status == "problem"]
        planned = by_status.get("planned", 0)
        if problems and not (dry_run and planned):
            reasons.append(f"{_plural(len(problems), 'problem')} found: {_checks(problems)}")
        if unknown := undecided(findings):
            reasons.append(f"{_plural(len(unknown), 'check')} could not be evaluated: {_checks(unknown)}")

    if count := by_status.get("planned", 0):
        if dry_run:
            reasons.append(f"dry run: {_plural(count, 'action')} to do")
        else:
            reasons.append(f"{_plural(count, 'planned action')} not applied")
    if count := by_status.get("awaiting_approval", 0):
        reasons.append(f"{_plural(count, 'step')} {'awaits' if count == 1 else 'await'} approval (--approve)")
    if count := by_status.get("failed", 0):
        reasons.append(f"{_plural(count, 'action')} failed")
    if count := by_status.get("report", 0):
        reasons.append(f"{_plural(count, 'step')} for a human (report only)")
    if result.escalation.level is not None:
        why = f": {result.escalation.reason}" if result.escalation.reason else ""
        reasons.append(f"escalates to {result.escalation.level}{why}")

    status: ProcedureStatus
    if environment:
        status, code = "environment", ExitCode.ENVIRONMENT
    elif reasons:
        status, code = "needs_human", ExitCode.HUMAN_NEEDED
    elif by_status.get("applied", 0) and result.phase in ("resolve", "prevent"):
        status, code = "fixed", ExitCode.HEALTHY
    else:
        status, code = "healthy", ExitCode.HEALTHY
    return Verdict(status=status, exit_code=int(code), reasons=reasons)


def target_error_code(error: TargetError) -> ExitCode:
    if error.kind in ("unreachable", "missing_tool"):
        return ExitCode.ENVIRONMENT
    if error.kind == "not_run":  # the rollout stopped at an earlier batch: a human decides whether to go on
        return ExitCode.HUMAN_NEEDED
    return ExitCode.INTERNAL


_STATUS_BY_CODE: dict[int, ProcedureStatus] = {
    ExitCode.HEALTHY: "healthy",
    ExitCode.HUMAN_NEEDED: "needs_human",
    ExitCode.ENVIRONMENT: "environment",
    ExitCode.INTERNAL: "error",
}


def judge_target(target: TargetResult, *, dry_run: bool = False) -> TargetResult:
    """Fill in the verdict of each procedure and the target's exit status (the highest)."""
    code = ExitCode.HEALTHY
    fixed = False
    for procedure in target.procedures:
        procedure.verdict = judge_procedure(procedure, dry_run=dry_run)
        code = max(code, ExitCode(procedure.verdict.exit_code))
        fixed = fixed or procedure.verdict.status == "fixed"
    for error in target.errors:
        code = max(code, target_error_code(error))
    if target.stack is not None:
        if any(is_environment_error(f.error) for f in target.stack.findings):
            code = max(code, ExitCode.ENVIRONMENT)
        elif target.stack.down:
            # never healthy while a service of the stack is down, whatever the procedures found
            code = max(code, ExitCode.HUMAN_NEEDED)
    target.exit_code = int(code)
    target.status = "fixed" if code == ExitCode.HEALTHY and fixed else _STATUS_BY_CODE[code]
    return target


def run_exit_code(targets: Iterable[TargetResult]) -> int:
    return max((t.exit_code for t in targets), default=int(ExitCode.HEALTHY))


def run_status(targets: list[TargetResult]) -> RunStatus:
    code = run_exit_code(targets)
    if code == ExitCode.HEALTHY:
        return "fixed" if any(t.status == "fixed" for t in targets) else "healthy"
    return status_for_code(code)


def status_for_code(code: int) -> RunStatus:
    statuses: dict[int, RunStatus] = {
        ExitCode.HEALTHY: "healthy",
        ExitCode.HUMAN_NEEDED: "needs_human",
        ExitCode.USAGE: "usage_error",
        ExitCode.ENVIRONMENT: "environment",
        ExitCode.INTERNAL: "error",
    }
    return statuses[ExitCode(code)]
