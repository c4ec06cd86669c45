"""`octoctl` end to end on the lab, as an on-call engineer runs it: a diagnosis of every procedure on the healthy
lab is clean; `octoctl approve RUN_ID` applies the plan a dry run showed only while the evidence still gives it, and
holds back what was not shown. (A broken Redis eviction policy planned with --dry-run, refused without approval, fixed
with --approve and then left with nothing to do runs on the lab's minimal profile: tests/lab/test_minimal_profile.py.)
Reports validate against the published schema."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from octoctl_runs import actions, live_policy, octoctl

from octoctl.catalog import load_catalog
from octollm_labctl import faults
from octollm_labctl.faults.common import redis_client

pytestmark = pytest.mark.lab


def test_diagnose_everything_on_a_healthy_lab_exits_0_without_a_warning(healthy_lab: Any) -> None:
    """Every procedure in one run, as on-call starts: their evidence is gathered together, so one procedure's
    narrow need must not starve another (the union once dropped postgres and redis from the containers)."""
    code, report, _ = octoctl("diagnose")
    procedures = {p["procedure"]: p for t in report["targets"] for p in t["procedures"]}
    assert set(procedures) == {p.name for p in load_catalog().procedures}
    not_ok = [(f["check"], f["status"], f["observed"]) for p in procedures.values() for f in p["findings"]
              if f["status"] != "ok"]
    assert code == 0 and not not_ok, not_ok
    assert all(p["findings"] and p["escalation"]["level"] is None for p in procedures.values())


def test_approve_applies_the_shown_plan_only_while_the_evidence_gives_it(healthy_lab: Any) -> None:
    """The evidence moves between the dry run and the approval (someone set another unsuitable policy): the whole plan
    is refused (exit 1) and nothing is applied. Then a disruptive action that was not in the shown plan appears at
    apply time (an arm crashed meanwhile): the shown plan is applied, the new action is held back awaiting approval."""
    faults.inject(healthy_lab, "redis-eviction")
    code, shown, _ = octoctl("fix", "cache", "--dry-run")
    assert code == 1 and shown["approve_with"] == f"octoctl approve {shown['run_id']}"
    assert actions(shown)[0]["id"] == "cache_performance.A.set_eviction_policy"
    assert actions(shown)[0]["change"]["old"] == "noeviction"
    redis_client(healthy_lab).config_set("maxmemory-policy", "allkeys-random")
    code, refused, _ = octoctl("approve", shown["run_id"])
    assert code == 1 and refused["approves"] == shown["run_id"]
    assert any("no longer holds" in note for note in refused["notes"]), refused["notes"]
    assert not [a for a in actions(refused) if a["status"] == "applied"]
    assert live_policy(healthy_lab) == "allkeys-random"  # untouched

    faults.heal(healthy_lab, "redis-eviction")
    faults.inject(healthy_lab, "redis-eviction")
    code, shown, _ = octoctl("fix", "cache", "service_unavailable", "--dry-run")
    assert code == 1 and not [a for a in actions(shown) if a["id"].startswith("service_unavailable.")]
    faults.inject(healthy_lab, "crash", "judge-arm")
    code, applied, _ = octoctl("approve", shown["run_id"])
    by_id = {a["id"]: a for a in actions(applied)}
    assert by_id["cache_performance.A.set_eviction_policy"]["status"] == "applied"
    assert live_policy(healthy_lab) == "allkeys-lru"
    extra = [a for a in by_id.values() if a["id"].startswith("service_unavailable.")]
    assert extra and all(a["status"] == "awaiting_approval" and a["disruptive"] for a in extra), extra
    assert all("not in the approved plan" in a["outcome"] for a in extra), extra
    assert code == 1  # the held-back action awaits a person
    running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", f"{healthy_lab.project}-judge-arm-1"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert running == "false"  # the held-back start did not run
