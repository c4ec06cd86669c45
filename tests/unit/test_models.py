"""The result-contract models: round trips, tolerance of extra keys, and the published schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from octoctl.config import PACKAGE_DIR
from octoctl.models import (
    SCHEMA_VERSION,
    ProcedureResult,
    RunReport,
    TargetError,
    TargetResult,
    Verdict,
    run_report_schema,
)

SCHEMA_FILE = PACKAGE_DIR / "schema" / "run-report-v1.json"

# RESULT as design.md spells it (YAML), with every section filled.
DESIGN_RESULT = yaml.safe_load("""
procedure: cache_performance
platform: compose
phase: resolve
findings:
  - check: redis.eviction_policy
    title: Redis eviction policy suits a cache
    status: problem
    observed: noeviction
    expected: [allkeys-lru, allkeys-lfu, volatile-lru]
    evidence: {maxmemory: 1048576, used_memory: 1040000}
    scenario: A
  - check: redis.hit_rate
    title: Cache hit rate above 50%
    status: unknown
    observed: null
    expected: ">= 0.5"
    evidence: {}
    scenario: null
    error: {kind: timeout, message: Prometheus did not answer in 5s}
scenarios:
  - {id: A, title: Cache eviction policy issues, holds: true, reason: "noeviction with maxmemory set"}
  - {id: B, title: Inefficient cache keys, holds: false, reason: ""}
actions:
  - id: cache_performance.A.set_eviction_policy
    scenario: A
    title: set maxmemory-policy
    resource: redis:maxmemory-policy
    change: {key: maxmemory-policy, old: noeviction, new: allkeys-lru}
    disruptive: false
    destructive: false
    status: applied
    outcome: set at run time and persisted with CONFIG REWRITE
  - id: cache_performance.A.cleanup
    scenario: A
    title: delete orphaned rows
    resource: postgres:relationships
    change: {sql: "DELETE FROM relationships WHERE ...", rows: 3}
    status: planned
  - id: service_unavailable.A.restart
    title: restart redis
    resource: container:redis
    change: {container: octollm-redis-1, op: restart}
    disruptive: true
    status: awaiting_approval
verification:
  findings:
    - {check: redis.eviction_policy, status: ok, observed: allkeys-lru}
  healthy: true
escalation: {level: null, reason: ""}
""")


def sample_report(**overrides: Any) -> RunReport:
    result = ProcedureResult.model_validate(DESIGN_RESULT)
    result.verdict = Verdict(status="fixed", exit_code=0, reasons=[])
    fields: dict[str, Any] = {
        "run_id": "20261128T180102-a1b2c3",
        "command": "fix",
        "argv": ["cache"],
        "phase": "resolve",
        "procedures": ["cache_performance"],
        "inventory": "inventory/lab",
        "targets": [
            TargetResult(target="lab", procedures=[result], status="fixed", exit_code=0),
            TargetResult(
                target="far", reachable=False, status="environment", exit_code=3,
                errors=[TargetError(kind="unreachable", message="ssh: connection refused")],
            ),
        ],
        "start": datetime(2026, 11, 28, 18, 1, 2, tzinfo=UTC),
        "end": datetime(2026, 11, 28, 18, 1, 9, tzinfo=UTC),
        "status": "environment",
        "exit_code": 3,
    }
    fields.update(overrides)
    return RunReport(**fields)


def test_design_result_round_trips() -> None:
    result = ProcedureResult.model_validate(DESIGN_RESULT)
    assert result.findings[1].error is not None and result.findings[1].error.kind == "timeout"
    assert result.actions[0].change is not None and result.actions[0].change.old == "noeviction"
    assert result.actions[1].change is not None and result.actions[1].change.rows == 3
    again = ProcedureResult.model_validate_json(result.model_dump_json())
    assert again == result
    dumped = result.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    assert dumped["findings"][0]["expected"] == ["allkeys-lru", "allkeys-lfu", "volatile-lru"]


def test_run_report_round_trips_through_json() -> None:
    report = sample_report()
    again = RunReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert again.schema_version == SCHEMA_VERSION == "1"


def test_roles_may_add_keys_octoctl_may_not() -> None:
    result = ProcedureResult.model_validate({**DESIGN_RESULT, "duration_s": 1.5})
    assert result.model_extra == {"duration_s": 1.5}
    with pytest.raises(ValidationError):
        RunReport.model_validate({**sample_report().model_dump(), "surprise": 1})


def test_null_escalation_and_lists_are_accepted() -> None:
    result = ProcedureResult.model_validate(
        {"procedure": "llm_api", "phase": "diagnose", "findings": None, "escalation": None}
    )
    assert result.findings == [] and result.escalation.level is None


@pytest.mark.parametrize(
    "bad",
    [
        {"findings": [{"check": "x", "status": "broken"}]},
        {"phase": "repair"},
        {"actions": [{"id": "a", "status": "done"}]},
        {"escalation": {"level": "L4"}},
        {"findings": [{"check": "x", "status": "unknown", "error": {"kind": "gremlins"}}]},
    ],
)
def test_contract_violations_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ProcedureResult.model_validate({**DESIGN_RESULT, **bad})


def test_run_id_format_is_enforced() -> None:
    with pytest.raises(ValidationError):
        sample_report(run_id="2026-11-28")


def test_published_schema_is_the_generated_one() -> None:
    published = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert published == run_report_schema(), "regenerate: octoctl schema > octoctl/schema/run-report-v1.json"
    jsonschema.Draft202012Validator.check_schema(published)


def test_report_dump_validates_against_the_published_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.validate(json.loads(sample_report().model_dump_json()), schema)
    broken = json.loads(sample_report().model_dump_json())
    broken["targets"][0]["procedures"][0]["findings"][0]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
