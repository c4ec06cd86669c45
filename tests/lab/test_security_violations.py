"""The security_violations role against the running lab, through ansible-runner and playbooks/run.yml.

The fault (octollm_labctl.faults "guardian-violations") sends real requests to guardian-arm's /api/v1/check: a
blocked command three times, an e-mail, a card number and an API key, all from one source; guardian-arm logs the
raw PII (GUARDIAN_REDACT_LOGS is off in the lab). With it, "orchestrator-pii" sends the orchestrator a task whose
goal holds an e-mail and a card number and whose optional constraint no arm meets: the orchestrator relaxes it and
logs the goal, so PII is in a second service's log. Run under the lab lock: flock /tmp/octollm-lab.lock pytest ..."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playbook_runs import by_check, run_procedure

pytestmark = pytest.mark.lab

PROCEDURE = "security_violations"


def run(tmp_path: Path, phase: str, **extravars: Any) -> dict[str, Any]:
    return run_procedure(PROCEDURE, tmp_path, phase, **extravars)


def holding(result: dict[str, Any]) -> set[str]:
    return {scenario["id"] for scenario in result["scenarios"] if scenario["holds"]}


def guardian_log(service: str = "guardian-arm") -> str:
    proc = subprocess.run(["docker", "logs", f"octollm-{service}-1"], capture_output=True, text=True, check=True)
    return proc.stdout + proc.stderr


def pii_values() -> list[str]:
    from octollm_labctl.faults.app import ORCHESTRATOR_PII
    from octollm_labctl.faults.guardian import GUARDIAN_FAULT_PII

    return [*GUARDIAN_FAULT_PII, GUARDIAN_FAULT_PII[1].replace(" ", ""), *ORCHESTRATOR_PII,
            ORCHESTRATOR_PII[1].replace(" ", "")]


def files_state(lab: Any) -> dict[str, Any]:
    guardian = lab.state / "guardian"
    return {name: (guardian / name).read_text() for name in ("blocked_commands.txt", "blocked_sources.txt")} | {
        "evidence": sorted(p.name for p in (lab.state / "security").rglob("*"))
        if (lab.state / "security").exists()
        else []
    }


def test_healthy_lab_has_no_security_finding(healthy_lab: Any, tmp_path: Path) -> None:
    result = run(tmp_path, "diagnose")
    not_ok = {f["check"]: (f["status"], f["observed"]) for f in result["findings"] if f["status"] != "ok"}
    assert not_ok == {}
    assert holding(result) == set()  # none of A-D fires on a healthy lab
    assert result["escalation"]["level"] is None


def test_violations_are_blocked_quarantined_and_escalated(healthy_lab: Any, tmp_path: Path) -> None:
    from octollm_labctl import faults

    record = faults.inject(healthy_lab, "guardian-violations")
    faults.inject(healthy_lab, "orchestrator-pii")
    source = record["source"]
    before, log_before = files_state(healthy_lab), guardian_log()
    diagnosis = run(tmp_path, "diagnose")
    # the diagnosis changes nothing: lists, evidence dir and the guardian's log as they were, raw PII still there
    assert files_state(healthy_lab) == before
    assert guardian_log().startswith(log_before.rstrip("\n").rsplit("\n", 1)[0])
    assert any(value in guardian_log() for value in pii_values())
    assert any(value in guardian_log("orchestrator") for value in pii_values())
    found = by_check(diagnosis["findings"])
    assert holding(diagnosis) == {"A", "B", "C", "D"}
    assert found["security.violations"]["evidence"]["new_events_by_type"]["blocked_command"] == 3
    assert found["security.sources"]["observed"] == source
    # PII in any service's log: both services named, with redacted samples only (the orchestrator's relaxed goal)
    pii = found["security.pii_in_logs"]["evidence"]
    assert set(pii["matches_by_kind"]) == {"email", "card", "api_key"}
    assert sorted(pii["services"]) == ["guardian-arm", "orchestrator"], pii["services"]
    assert pii["services"]["orchestrator"]["matches_by_kind"] == {"email": 1, "card": 1}
    assert "[REDACTED:email]" in pii["services"]["orchestrator"]["samples"][-1]
    assert len(pii["scanned"]) >= 18  # every service of the stack
    assert diagnosis["escalation"]["level"] == "L3"
    report = json.dumps(diagnosis)
    assert not any(value in report for value in pii_values())  # only redacted samples

    # without approval: B, C and A are applied; D (restart of guardian-arm) waits
    first = run(tmp_path, "resolve", octollm_run_id="sectest")
    statuses = {a["id"]: a["status"] for a in first["actions"]}
    assert statuses == {
        "security_violations.B.block_commands": "applied",
        "security_violations.C.block_sources": "applied",
        "security_violations.D.quarantine_logs": "awaiting_approval",
        "security_violations.A.bundle_evidence": "applied",
        "security_violations.escalate": "report",
    }
    assert "rm -rf / --no-preserve-root" in (healthy_lab.state / "guardian/blocked_commands.txt").read_text()
    assert source in (healthy_lab.state / "guardian/blocked_sources.txt").read_text().split()
    bundle = healthy_lab.state / "security/evidence/sectest.json"
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    assert not any(value in bundle.read_text() for value in pii_values())
    assert first["escalation"]["level"] == "L3"
    # the disruptive step: its dry run lists exactly what the approved run does
    dry = run(tmp_path, "resolve", octollm_approve=True, octollm_dry_run=True)
    fixed = run(tmp_path, "resolve", octollm_approve=True, octollm_run_id="sectest2")

    def plan(actions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        # the change as planned (the apply adds what it produced, e.g. the bundle's file name)
        return [
            (
                a["id"],
                a["resource"],
                json.dumps({k: v for k, v in a["change"].items() if k != "bundle"}, sort_keys=True),
                a["disruptive"],
            )
            for a in actions
        ]

    assert plan(dry["actions"]) == plan(fixed["actions"])
    assert [(a["id"], a["status"]) for a in fixed["actions"]] == [
        ("security_violations.D.quarantine_logs", "applied"),
        ("security_violations.escalate", "report"),
    ]
    assert fixed["actions"][0]["change"]["services"] == ["guardian-arm", "orchestrator"]
    assert fixed["verification"]["healthy"] is True
    assert fixed["escalation"]["level"] == "L3"  # always the engineering lead
    for service in ("guardian-arm", "orchestrator"):
        log = guardian_log(service)
        assert not any(value in log for value in pii_values()), service
        assert "[REDACTED:email]" in log
    quarantined = list((healthy_lab.state / "security/quarantine").iterdir())
    assert quarantined and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in quarantined)
    assert any(pii_values()[0] in p.read_text() for p in quarantined)  # the originals, kept aside
    assert any(pii_values()[4] in p.read_text() for p in quarantined)

    again = run(tmp_path, "resolve", octollm_approve=True)
    assert again["actions"] == []
    assert again["escalation"]["level"] is None

    # the reloaded guardian refuses the source (a new attempt: the next diagnosis reports it)
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        "http://127.0.0.1:8104/api/v1/check",
        method="POST",
        data=json.dumps({"text": "ls", "source": source}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403


def test_prevent_reads_the_live_guardian(healthy_lab: Any, tmp_path: Path) -> None:
    result = run(tmp_path, "prevent")
    checks = {f["check"]: f["status"] for f in result["prevention"]["findings"]}
    assert checks["prevent.guardian.audit_log"] == "ok"
    assert checks["prevent.guardian.blocked_list"] == "ok"
    assert checks["prevent.prometheus.violation_rule"] == "ok"
    # the lab runs guardian-arm with GUARDIAN_REDACT_LOGS off: prevention says so
    assert checks["prevent.guardian.redact_logs"] == "warning"
