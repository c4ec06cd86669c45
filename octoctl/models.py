"""Pydantic models of the result contract (docs/design.md, "The result contract") and of octoctl's run report.

Roles produce ``ProcedureResult`` through ``set_stats``; octoctl adds a ``verdict`` to each and wraps them
in ``TargetResult`` and ``RunReport``. The models a role produces accept extra keys (the contract may grow
without breaking older octoctl); the ones octoctl produces are closed. ``octoctl schema`` prints
``RunReport``'s JSON schema; a copy is published as ``octoctl/schema/run-report-v1.json``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION: Literal["1"] = "1"
RUN_ID_PATTERN = r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{6}$"

Phase = Literal["diagnose", "resolve", "prevent"]
FindingStatus = Literal["ok", "warning", "problem", "unknown"]
ErrorKind = Literal["unreachable", "auth", "missing_tool", "timeout", "not_offered", "other"]
ActionStatus = Literal["planned", "applied", "skipped", "awaiting_approval", "failed", "report"]
Level = Literal["L1", "L2", "L3"]
ProcedureStatus = Literal["healthy", "fixed", "needs_human", "environment", "error"]
RunStatus = Literal["healthy", "fixed", "needs_human", "usage_error", "environment", "error"]
#: ``not_run``: a rollout in batches (``--serial``) stopped before this target's batch (an earlier batch failed).
TargetErrorKind = Literal["unreachable", "failed", "missing_tool", "missing_result", "invalid_result", "not_run"]

#: Finding error kinds that make octoctl exit 3 (design.md, "Errors inside results").
ENVIRONMENT_ERROR_KINDS: frozenset[str] = frozenset({"unreachable", "auth", "missing_tool"})
#: Evidence kinds through which octoctl reaches the runtime itself (the Docker API, the Kubernetes API): unreachable
#: there is octoctl's environment; unreachable anywhere else is a component of the stack that is down.
RUNTIME_SOURCES: frozenset[str] = frozenset({"containers", "kubernetes"})


def is_environment_error(error: ProbeError | None) -> bool:
    """Exit 3: what octoctl itself cannot reach or log into (a tool missing, the runtime's API, credentials
    rejected), never a component of the stack it came to check (that is a problem, exit 1)."""
    if error is None or error.kind not in ENVIRONMENT_ERROR_KINDS:
        return False
    return error.kind != "unreachable" or error.source is None or error.source in RUNTIME_SOURCES


class _Open(BaseModel):
    """A model filled by a role: unknown keys are kept."""

    model_config = ConfigDict(extra="allow")


class _Closed(BaseModel):
    """A model filled by octoctl."""

    model_config = ConfigDict(extra="forbid")


class ProbeError(_Open):
    """Why a probe could not give an answer (never a secret in the message)."""

    kind: ErrorKind
    message: str = ""
    source: str | None = Field(default=None, description="the evidence kind that failed (postgres, containers, ...)")


class Finding(_Open):
    """One check of the diagnosis."""

    check: str = Field(description="stable id, e.g. redis.eviction_policy")
    title: str = ""
    status: FindingStatus
    observed: Any = None
    expected: Any = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    scenario: str | None = Field(default=None, description="the seed's scenario this finding points to")
    error: ProbeError | None = None

    @field_validator("evidence", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class ScenarioVerdict(_Open):
    """Whether one of the seed's scenarios holds."""

    id: str
    title: str = ""
    holds: bool
    reason: str = ""


class Change(_Open):
    """The exact change of an action: ``{key, old, new}``, ``{sql, rows}`` or ``{container, op}``."""

    key: str | None = None
    old: Any = None
    new: Any = None
    sql: str | None = None
    rows: int | None = None
    container: str | None = None
    op: str | None = None


class Action(_Open):
    """A step of a fix: planned, taken, skipped, or left to a human."""

    id: str
    scenario: str | None = None
    title: str = ""
    resource: str | None = None
    change: Change | None = None
    disruptive: bool = False
    destructive: bool = False
    status: ActionStatus
    outcome: str = ""
    elapsed_s: float | None = Field(default=None, description="seconds its task file ran (applied or failed)")


class Verification(_Open):
    """The findings after a fix."""

    findings: list[Finding] = Field(default_factory=list)
    healthy: bool


class Escalation(_Open):
    """Who must look next; ``level`` is null when nothing is left for a human."""

    level: Level | None = None
    reason: str = ""


class Prevention(_Open):
    """Findings of the prevention checks and their actions."""

    findings: list[Finding] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)


class Verdict(_Closed):
    """octoctl's reading of a result: its exit status and why."""

    status: ProcedureStatus
    exit_code: int = Field(ge=0, le=4)
    reasons: list[str] = Field(default_factory=list)


class ProcedureResult(_Open):
    """What one role reports for one target (RESULT in design.md), plus octoctl's verdict."""

    procedure: str
    platform: str | None = None
    phase: Phase
    findings: list[Finding] = Field(default_factory=list)
    scenarios: list[ScenarioVerdict] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    verification: Verification | None = None
    escalation: Escalation = Field(default_factory=Escalation)
    prevention: Prevention | None = None
    verdict: Verdict | None = Field(default=None, description="set by octoctl")

    @field_validator("escalation", mode="before")
    @classmethod
    def _null_escalation(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("findings", "scenarios", "actions", mode="before")
    @classmethod
    def _null_list(cls, value: Any) -> Any:
        return [] if value is None else value

    def all_findings(self) -> list[Finding]:
        found = list(self.findings)
        if self.verification is not None:
            found += self.verification.findings
        if self.prevention is not None:
            found += self.prevention.findings
        return found

    def all_actions(self) -> list[Action]:
        return list(self.actions) + (list(self.prevention.actions) if self.prevention is not None else [])


class TargetError(_Closed):
    """Why a target has no (complete) result."""

    kind: TargetErrorKind
    message: str
    procedure: str | None = None


class StackCheck(_Open):
    """Whether every service of the stack is up and answers, checked in every diagnosis and fix."""

    findings: list[Finding] = Field(default_factory=list)
    down: list[str] = Field(default_factory=list, description="services found down")


class TargetResult(_Closed):
    """The results of one inventory host (a "stack")."""

    target: str
    reachable: bool = True
    errors: list[TargetError] = Field(default_factory=list)
    stack: StackCheck | None = Field(default=None, description="every service of the stack up and answering?")
    procedures: list[ProcedureResult] = Field(default_factory=list)
    status: ProcedureStatus
    exit_code: int = Field(ge=0, le=4)


class RunReport(_Closed):
    """One octoctl run: what was asked, on which targets, what came out."""

    model_config = ConfigDict(
        extra="forbid",
        title="octoctl run report",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    schema_version: Literal["1"] = "1"
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    command: str = Field(description="the octoctl command: diagnose, fix or prevent")
    argv: list[str] = Field(default_factory=list, description="the TEXT arguments: symptoms, alerts or names")
    octoctl_version: str = ""
    phase: Phase | None = None
    procedures: list[str] = Field(default_factory=list, description="role names, in the order they ran")
    scenario: str | None = None
    dry_run: bool = False
    approve: bool = False
    inventory: str
    limit: str | None = None
    targets: list[TargetResult] = Field(default_factory=list)
    start: datetime
    end: datetime | None = None
    status: RunStatus
    exit_code: int = Field(ge=0, le=4)
    notes: list[str] = Field(default_factory=list, description="what octoctl wants the reader to know")
    approve_with: str | None = Field(
        default=None, description="the command that applies exactly this run's stored plan (octoctl approve RUN_ID)"
    )
    approves: str | None = Field(default=None, description="the run whose stored plan this run applied")
    artifacts: str | None = Field(default=None, description="directory holding ansible-runner's artifacts")


def run_report_schema() -> dict[str, Any]:
    """The JSON schema of RunReport, as published in octoctl/schema/run-report-v1.json."""
    return RunReport.model_json_schema()
