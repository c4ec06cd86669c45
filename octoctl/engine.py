"""The diagnose, fix and prevent flows: what to run, in which order, and what to ask.

* diagnose: one run, phase ``diagnose``.
* fix (phase ``resolve``):

  - ``--dry-run``: one plan run (``octollm_dry_run: true``, check mode); the plan is the report and is stored;
  - ``--approve``, or no terminal to ask on: one run that diagnoses, applies and verifies; without ``--approve``
    the disruptive (or destructive) steps are left ``awaiting_approval``;
  - a terminal: a plan run, one question listing every disruptive step, then an apply run that receives exactly
    the shown plan (``octollm_approved_plan``: the flow holds back anything else).

  A run that ends with steps awaiting approval stores its plan (``plan.json``: the actions and their exact
  changes, and a digest of them); the report names ``octoctl approve RUN_ID``.
* approve RUN_ID: one run with ``octollm_approve: true`` and that run's plan as ``octollm_approved_plan``: only
  those actions run, and only when a fresh diagnosis gives the same changes; otherwise the plan is refused.
* prevent: one run, phase ``prevent`` (``--dry-run`` plans only).
* many stacks (``--serial N``, ``--max-fail-percentage P``): each run goes through the inventory's stacks in batches
  of N (the play's ``serial``) with ``octollm_fail_when_human_needed``, so that a stack whose result needs a human
  counts as failed: a batch that fails whole, or more than P % of it, stops the later batches (Ansible's
  ``max_fail_percentage``); the stacks not reached are reported ``not_run`` (exit status 1). In a dry run a stack
  with something to do needs a human, so the preview stops where a rollout might; the plan a terminal is shown
  before the apply run covers every stack, and only the apply run goes in batches.

Procedures are passed to the playbook in ``rank`` order (root causes first), and reported in that order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from octoctl import __version__
from octoctl.catalog import Catalog, Procedure
from octoctl.config import Settings
from octoctl.errors import ExitCode, OctoctlError
from octoctl.exitstatus import judge_target, run_exit_code, run_status, status_for_code
from octoctl.models import (
    Action,
    Phase,
    ProcedureResult,
    RunReport,
    RunStatus,
    StackCheck,
    TargetError,
    TargetErrorKind,
    TargetResult,
)
from octoctl.runner import RunOutcome, RunSpec, looks_like_missing_tool
from octoctl.store import Store

ProgressFn = Callable[[str], None]


@dataclass
class PendingAction:
    """A disruptive action waiting for a yes."""

    target: str
    procedure: str
    action: Action

    def describe(self) -> str:
        kind = "destructive" if self.action.destructive else "disruptive"
        title = self.action.title or self.action.id
        return f"{self.procedure} on {self.target}: {title} ({kind}; {self.action.resource or self.action.id})"


ConfirmFn = Callable[[list[PendingAction]], bool]


class RunnerLike(Protocol):
    def check_inventory(self, inventory: Path, limit: str | None = None) -> list[str]: ...

    def run(self, spec: RunSpec, targets: list[str] | None = None) -> RunOutcome: ...


@dataclass
class Request:
    """What the user asked for."""

    command: str
    procedures: list[Procedure]
    inventory: Path
    limit: str | None = None
    verbosity: int = 0
    dry_run: bool = False
    approve: bool = False
    scenario: str | None = None
    argv: list[str] = field(default_factory=list)
    every_procedure: bool = False
    """True when the user named no procedure (``diagnose`` alone): unavailable ones are listed, not errors."""
    extra_vars: dict[str, Any] = field(default_factory=dict)
    """More extra vars for the playbook (``restore`` passes ``<role>_restore_from``)."""
    safe_only: bool = False
    """Apply only what needs no approval, asking nobody (no procedure was named with confidence)."""
    serial: int | None = None
    """Roll out in batches of this many stacks (the play's ``serial``); a failed batch stops the later ones."""
    max_fail_percentage: int | None = None
    """With ``serial``: the later batches stop once more than this share of a batch's stacks failed."""


class Engine:
    """Runs flows against a runner and saves one report per run."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: Store,
        runner: RunnerLike,
        *,
        confirm: ConfirmFn | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.runner = runner
        self.confirm = confirm
        self.progress = progress or (lambda line: None)
        self.after_run: Callable[[Request, RunReport], None] | None = None
        """Called with each run's report before it is saved (the CLI records the deployment history)."""
        self.run_vars: Callable[[], dict[str, Any]] | None = None
        """More extra vars of every run (the CLI passes the deployment history's images, which the prune keeps)."""

    # --- what can run ------------------------------------------------------------------------------

    def available(self, procedures: list[Procedure], phase: Phase) -> tuple[list[Procedure], list[Procedure]]:
        """Split procedures into those whose role has ``tasks/<phase>.yml`` in the collection, and the rest."""
        ready = [p for p in procedures if self.settings.role_has_phase(p.role, phase)]
        missing = [p for p in procedures if p not in ready]
        return ready, missing

    def require_available(self, procedures: list[Procedure], phase: Phase, *, all_known: bool) -> list[Procedure]:
        ready, missing = self.available(procedures, phase)
        root = self.settings.collection_root()
        if root is None:
            where = ", ".join(str(p) for p in self.settings.effective_collections_paths()) or "(none)"
            raise OctoctlError(
                f"collection octollm.remediation not found on the collections path ({where}): "
                "run scripts/setup.sh or set OCTOCTL_COLLECTIONS_PATH",
                ExitCode.ENVIRONMENT,
            )
        if missing and all_known:
            names = ", ".join(p.name for p in missing)
            self.progress(f"not yet available (no roles/<name>/tasks/{phase}.yml in {root}): {names}")
        elif missing:
            names = ", ".join(p.name for p in missing)
            raise OctoctlError(f"not yet available in the collection at {root}: {names} (no tasks/{phase}.yml)",
                               ExitCode.ENVIRONMENT)
        if not ready:
            raise OctoctlError(f"no procedure of the collection at {root} has tasks/{phase}.yml yet",
                               ExitCode.ENVIRONMENT)
        return ready

    # --- flows -------------------------------------------------------------------------------------

    def diagnose(self, request: Request) -> RunReport:
        return self._single_phase(request, "diagnose")

    def prevent(self, request: Request) -> RunReport:
        return self._single_phase(request, "prevent")

    def _single_phase(self, request: Request, phase: Phase) -> RunReport:
        run = _Run(self, request, phase)
        # prevent may change the schema (an ALTER on a big table is disruptive): only with --approve
        approve = request.approve and phase == "prevent"
        return run.execute(lambda: run.finish(run.invoke(dry_run=request.dry_run, approve=approve)))

    def health(self, request: Request, playbook: str) -> RunReport:
        """One read-only run of ``playbook`` (``octollm.remediation.health``): the stack check with the health
        table (``octollm_report.<host>.stack.health``); the procedures of the request only lend their settings (the
        thresholds), they report no result of their own."""
        run = _Run(self, request, "diagnose")
        return run.execute(lambda: run.finish(run.invoke(dry_run=False, approve=False, label="health",
                                                         playbook=playbook, results=False)))

    def fix(self, request: Request) -> RunReport:
        if request.scenario:
            self._check_scenario(request)
        run = _Run(self, request, "resolve")

        def flow() -> RunReport:
            if request.dry_run:
                return run.finish(run.invoke(dry_run=True, approve=request.approve, label="plan"), store_plan=True)
            if request.safe_only:
                run.notes.append("no procedure was named with confidence: every procedure was diagnosed and only "
                                 "fixes that need no approval were applied")
            if request.approve or self.confirm is None or request.safe_only:
                # nobody to ask: one run that applies what needs no approval (all of it with --approve) and leaves
                # the rest awaiting approval, its plan stored for `octoctl approve`
                done = run.invoke(dry_run=False, approve=request.approve, label="apply")
                if not request.approve:
                    mark_awaiting(done)
                    if any(a.status == "awaiting_approval" for t in done for p in t.procedures for a in p.actions):
                        run.notes.append(f"disruptive steps need approval (no terminal to ask on): octoctl approve "
                                         f"{run.run_id} applies exactly this plan, or rerun with --approve")
                return run.finish(done, store_plan=True)
            # a terminal: show the plan, ask once for its disruptive steps, then apply exactly what was shown (the
            # plan covers every stack: only the apply run goes in batches)
            planned = run.invoke(dry_run=True, approve=False, label="plan", rollout=False)
            pending = [
                PendingAction(t.target, p.procedure, a)
                for t in planned
                for p in t.procedures
                for a in p.actions
                if a.status in ("planned", "awaiting_approval")
            ]
            if not pending:
                run.notes.append("nothing to apply")
                return run.finish(planned)
            risky = [item for item in pending if item.action.disruptive or item.action.destructive
                     or item.action.status == "awaiting_approval"]
            if risky and not self.confirm(risky):
                run.notes.append("disruptive steps declined at the prompt")
                return run.finish(mark_awaiting(planned, dry_run=True), store_plan=True)
            run.approved = bool(risky)
            done = run.invoke(dry_run=False, approve=bool(risky), label="apply", approved_plan=plan_of(planned))
            return run.finish(done if risky else mark_awaiting(done), store_plan=True)

        return run.execute(flow)

    def approve(self, request: Request, source_run_id: str) -> RunReport:
        """Apply exactly the plan that run ``source_run_id`` stored: the approved actions with their changes, and
        nothing else (held back as awaiting approval). When a fresh diagnosis no longer gives the same changes, the
        whole plan is refused (exit 1, the report says what changed)."""
        source = self.store.resolve(source_run_id)
        plan = self.store.load_plan(source)
        approved = plan.get("targets") or {}
        # what the command asked for beside the procedures (restart's and rollback's service), as the plan had it
        request.extra_vars = {**(plan.get("extra_vars") or {}), **request.extra_vars}
        run = _Run(self, request, "resolve")
        run.approves = source

        def flow() -> RunReport:
            done = run.invoke(dry_run=request.dry_run, approve=True, label="approve", approved_plan=approved)
            refused = []
            for target in done:
                statuses = {a.id: a for p in target.procedures for a in p.actions}
                for action_id in (approved.get(target.target) or {}):
                    action = statuses.get(action_id)
                    wanted = ("planned",) if request.dry_run else ("applied",)
                    if action is None or action.status not in wanted:
                        refused.append(f"{target.target}: {action_id} "
                                       f"({action.outcome if action else 'no longer planned'})")
            if refused:
                run.notes.append(f"refused: the plan of run {source} no longer holds: " + "; ".join(refused))
            else:
                run.notes.append(f"applied the plan of run {source}" + (" (dry run)" if request.dry_run else ""))
            report = run.finish(done)
            if refused and report.exit_code == 0:
                report.exit_code = int(ExitCode.HUMAN_NEEDED)
                report.status = status_for_code(report.exit_code)
            return report

        return run.execute(flow)

    def _check_scenario(self, request: Request) -> None:
        scenario = (request.scenario or "").upper()
        if len(request.procedures) != 1:
            names = ", ".join(p.name for p in request.procedures)
            raise OctoctlError(f"--scenario needs exactly one procedure, got {names}", ExitCode.USAGE)
        procedure = request.procedures[0]
        if procedure.scenario(scenario) is None:
            known = ", ".join(f"{s.id} ({s.title})" for s in procedure.scenarios)
            raise OctoctlError(f"{procedure.name} has no scenario {request.scenario!r}; known: {known}", ExitCode.USAGE)
        request.scenario = scenario


class _Run:
    """One octoctl run: its id, its runner invocations and its report."""

    def __init__(self, engine: Engine, request: Request, phase: Phase) -> None:
        self.engine = engine
        self.request = request
        self.phase = phase
        self.start = datetime.now(UTC)
        self.notes: list[str] = []
        self.approved = request.approve
        self.approves: str | None = None
        self.count = 0
        self.run_id = ""
        self.targets: list[str] = []
        self.procedures = engine.catalog.in_rank_order(request.procedures)

    def execute(self, flow: Callable[[], RunReport]) -> RunReport:
        """Check inputs, then run the flow; a failed run still leaves a report behind."""
        engine = self.engine
        self.targets = engine.runner.check_inventory(self.request.inventory, self.request.limit)
        self.procedures = engine.require_available(
            self.procedures, self.phase, all_known=self.request.every_procedure
        )
        self.run_id = engine.store.create()
        try:
            report = flow()
            if engine.after_run is not None:
                engine.after_run(self.request, report)
        except OctoctlError as exc:
            self.save_failure(exc.message, exc.exit_code)
            raise OctoctlError(f"{exc.message} (run {self.run_id})", exc.exit_code) from exc
        except Exception as exc:
            self.save_failure(f"internal error: {type(exc).__name__}: {exc}", ExitCode.INTERNAL)
            raise
        engine.store.save(report)
        return report

    def invoke(self, *, dry_run: bool, approve: bool, label: str | None = None,
               approved_plan: dict[str, dict[str, Any]] | None = None, playbook: str | None = None,
               results: bool = True, rollout: bool = True) -> list[TargetResult]:
        """One ansible-runner run of the playbook (``playbook``: another than octoctl's entry); ``results``: the
        procedures report results (False: only the stack check is read); ``rollout``: in the request's batches
        (``--serial``), False for the plan a terminal is shown before the apply run."""
        self.count += 1
        ident = f"{self.count}-{self.phase}" + (f"-{label}" if label else "")
        extravars: dict[str, Any] = {
            "octollm_procedures": [p.role for p in self.procedures],
            "octollm_phase": self.phase,
            "octollm_dry_run": dry_run,
            "octollm_approve": approve,
            "octollm_run_id": self.run_id,
            "octollm_run_dir": str(self.engine.store.run_dir(self.run_id)),
        }
        rollout = rollout and self.request.serial is not None
        if rollout:
            extravars.update({"octollm_serial": self.request.serial, "octollm_fail_when_human_needed": True})
            if self.request.max_fail_percentage is not None:
                extravars["octollm_max_fail_percentage"] = self.request.max_fail_percentage
        if self.engine.run_vars is not None:
            extravars.update(self.engine.run_vars())
        extravars.update(self.request.extra_vars)
        if approved_plan is not None:
            extravars["octollm_approved_plan"] = approved_plan
        if self.request.scenario:
            extravars["octollm_scenario"] = self.request.scenario
        spec = RunSpec(
            playbook=playbook or self.engine.settings.playbook,
            inventory=self.request.inventory,
            extravars=extravars,
            private_data_dir=self.engine.store.runner_dir(self.run_id),
            ident=ident,
            limit=self.request.limit,
            verbosity=self.request.verbosity,
            check_mode=dry_run or self.phase == "diagnose",
        )
        outcome = self.engine.runner.run(spec, self.targets)
        return build_targets(outcome, self.targets, self.procedures if results else [], self.phase, rollout=rollout)

    def finish(self, targets: list[TargetResult], store_plan: bool = False) -> RunReport:
        for target in targets:
            judge_target(target, dry_run=self.request.dry_run)
        report = self.report(targets, run_exit_code(targets), run_status(targets))
        plan = plan_of(targets) if store_plan else {}
        if plan:
            self.engine.store.save_plan(self.run_id, {
                "run_id": self.run_id,
                "procedures": [p.role for p in self.procedures],
                "scenario": self.request.scenario,
                # what the command asked the roles for (octoctl restart's services, the emergency restart)
                "extra_vars": dict(self.request.extra_vars),
                "inventory": str(self.request.inventory),
                "limit": self.request.limit,
                "targets": plan,
                "digest": plan_digest(plan),
            })
            report.approve_with = f"octoctl approve {self.run_id}"
        return report

    def report(self, targets: list[TargetResult], exit_code: int, status: RunStatus) -> RunReport:
        return RunReport(
            run_id=self.run_id,
            command=self.request.command,
            argv=list(self.request.argv),
            octoctl_version=__version__,
            phase=self.phase,
            procedures=[p.role for p in self.procedures],
            scenario=self.request.scenario,
            dry_run=self.request.dry_run,
            approve=self.approved,
            inventory=str(self.request.inventory),
            limit=self.request.limit,
            targets=targets,
            start=self.start,
            end=datetime.now(UTC),
            status=status,
            exit_code=exit_code,
            notes=list(self.notes),
            approves=self.approves,
            artifacts=str(self.engine.store.runner_dir(self.run_id)),
        )

    def save_failure(self, message: str, exit_code: int) -> None:
        try:
            self.notes.append(message)
            self.engine.store.save(self.report([], int(exit_code), status_for_code(exit_code)))
        except Exception as exc:  # the original error matters more
            print(f"octoctl: could not save the report of run {self.run_id}: {exc}", file=sys.stderr)


def mark_awaiting(targets: list[TargetResult], dry_run: bool = False) -> list[TargetResult]:
    """Disruptive or destructive actions that did not run for want of approval are ``awaiting_approval``."""
    waiting = ("planned", "skipped") if not dry_run else ("planned",)
    for target in targets:
        for procedure in target.procedures:
            for action in procedure.actions:
                if (action.disruptive or action.destructive) and action.status in waiting:
                    action.status = "awaiting_approval"
                    action.outcome = action.outcome or "needs approval: octoctl approve RUN_ID, or rerun with --approve"
    return targets


def plan_of(targets: list[TargetResult]) -> dict[str, dict[str, Any]]:
    """``{target: {action id: change}}`` of the actions awaiting approval (a dry run: also the planned ones): the
    plan a person is shown and may approve as it is."""
    plan: dict[str, dict[str, Any]] = {}
    for target in targets:
        for procedure in target.procedures:
            for action in procedure.actions:
                if action.status in ("planned", "awaiting_approval"):
                    change = action.change.model_dump(exclude_none=True) if action.change else {}
                    plan.setdefault(target.target, {})[action.id] = change
    return plan


def plan_digest(plan: dict[str, dict[str, Any]]) -> str:
    """SHA-256 of the plan's actions and the changes they rest on (what the evidence said when it was made)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()


def backups_of(report: RunReport) -> dict[str, dict[str, str]]:
    """The backups a run took before its repairs: ``{role: {target: path}}`` from the actions whose change names a
    ``backup`` and that were applied (``octoctl restore RUN_ID`` hands them to the roles' restore)."""
    found: dict[str, dict[str, str]] = {}
    for target in report.targets:
        for procedure in target.procedures:
            for action in procedure.actions:
                path = (action.change.model_dump() if action.change else {}).get("backup")
                if action.status == "applied" and isinstance(path, str) and path:
                    found.setdefault(procedure.procedure, {})[target.target] = path
    return found


def build_targets(
    outcome: RunOutcome, targets: list[str], procedures: list[Procedure], phase: Phase, rollout: bool = False
) -> list[TargetResult]:
    """Turn a runner outcome into one TargetResult per targeted host (results validated, errors recorded).
    ``rollout``: the play ran in batches (``serial``); a host the play never reached is ``not_run``."""
    names = list(targets) or sorted({*outcome.hosts, *outcome.report})
    results: list[TargetResult] = []
    for name in names:
        host = outcome.hosts.get(name)
        data = outcome.report.get(name) or {}
        target = TargetResult(target=name, status="healthy", exit_code=0)
        if rollout and outcome.stats_seen and host is None and not data:
            target.errors.append(TargetError(kind="not_run", message="not run: an earlier batch of the rollout "
                                             "failed (--serial, --max-fail-percentage)"))
            results.append(target)
            continue
        if host is not None and host.unreachable:
            target.reachable = False
            target.errors.append(TargetError(kind="unreachable", message=host.message or "unreachable"))
        if isinstance(data.get("stack"), dict):
            try:
                target.stack = StackCheck.model_validate(data["stack"])
            except ValidationError as exc:
                message = f"stack check: {exc.errors()[0]['msg']}"
                target.errors.append(TargetError(kind="invalid_result", message=message))
        for procedure in procedures:
            raw = data.get(procedure.role)
            if raw is None:
                if host is not None and host.unreachable:
                    continue
                kind: TargetErrorKind
                if host is not None and host.failed:
                    kind = "missing_tool" if looks_like_missing_tool(host.message) else "failed"
                    message = host.message or "a task failed"
                else:
                    kind, message = "missing_result", f"the role reported no result for phase {phase}"
                target.errors.append(TargetError(kind=kind, message=message, procedure=procedure.name))
                continue
            try:
                result = ProcedureResult.model_validate(raw)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                target.errors.append(TargetError(
                    kind="invalid_result",
                    message=f"result breaks the contract ({exc.error_count()} errors), "
                    f"first at {where}: {first['msg']}",
                    procedure=procedure.name,
                ))
                continue
            target.procedures.append(result)
        if host is not None and host.failed and not any(e.kind in ("failed", "missing_tool") for e in target.errors):
            failure: TargetErrorKind = "missing_tool" if looks_like_missing_tool(host.message) else "failed"
            target.errors.append(TargetError(kind=failure, message=host.message or "a task failed"))
        results.append(target)
    return results
