"""`octoctl` end to end on the lab, as an on-call engineer runs it: a diagnosis of every procedure on the healthy
lab is clean; a broken Redis eviction policy is planned with --dry-run (nothing changes, exit 1), refused without
approval, fixed with --approve (exit 0, exactly the planned actions), and a second fix has nothing to do. Reports
validate against the published schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from octoctl.catalog import load_catalog
from octollm_labctl import faults
from octollm_labctl.faults.common import redis_client

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "octoctl" / "schema" / "run-report-v1.json").read_text())


def octoctl(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "octoctl"), *args, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout.strip(), f"no report on stdout (exit {proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    jsonschema.validate(report, SCHEMA)
    return proc.returncode, report, proc.stderr


def actions(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for t in report["targets"] for p in t["procedures"] for a in p["actions"]]


def change_of(action: dict[str, Any]) -> tuple[Any, ...]:
    change = action["change"] or {}
    return (action["id"], action["resource"], change.get("key"), change.get("old"), change.get("new"))


def live_policy(lab: Any) -> str:
    value = redis_client(lab).config_get("maxmemory-policy")
    policy = value.get(b"maxmemory-policy", value.get("maxmemory-policy"))
    return policy.decode() if isinstance(policy, bytes) else str(policy)


def config_file_policy(lab: Any) -> str | None:
    policy = None
    for line in (lab.state / "redis" / "redis.conf").read_text().splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "maxmemory-policy":
            policy = words[1]
    return policy


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


def test_fix_cache_dry_run_then_approve_then_nothing_left(healthy_lab: Any) -> None:
    faults.inject(healthy_lab, "redis-eviction")
    assert live_policy(healthy_lab) == "noeviction"

    code, diagnosis, _ = octoctl("diagnose", "cache")
    assert code == 1
    (result,) = [p for t in diagnosis["targets"] for p in t["procedures"]]
    found = {f["check"]: f for f in result["findings"]}
    assert (found["redis.eviction_policy"]["status"], found["redis.eviction_policy"]["observed"]) == (
        "problem",
        "noeviction",
    )
    assert found["redis.eviction_policy"]["scenario"] == "A" and found["redis.memory"]["status"] == "problem"
    # the hit rate is measured by Prometheus and by Redis
    rate = found["cache.hit_rate"]
    assert isinstance(rate["evidence"]["prometheus"]["hit_rate"], float) and rate["evidence"]["redis"]["seconds"] > 0
    assert rate["status"] == "ok" or rate["scenario"] == "A"
    assert {s["id"]: s["holds"] for s in result["scenarios"]}["A"] is True
    assert result["escalation"]["level"] == "L1"

    code, plan, _ = octoctl("fix", "cache", "--dry-run")
    assert code == 1
    planned = actions(plan)
    # the policy change is disruptive (keys without TTL become evictable): the plan says it needs approval
    # and the re-warm that follows it (the new policy evicts at once over a full Redis) waits with it
    assert [(a["id"], a["status"], a["disruptive"]) for a in planned] == [
        ("cache_performance.A.set_eviction_policy", "awaiting_approval", True),
        ("cache_performance.A.rewarm_after_eviction", "skipped", False),
    ]
    assert change_of(planned[0])[2:] == ("maxmemory-policy", "noeviction", "allkeys-lru")
    code, approved_plan, _ = octoctl("fix", "cache", "--dry-run", "--approve")
    assert code == 1
    assert [a["status"] for a in actions(approved_plan)] == ["planned", "planned"]
    assert live_policy(healthy_lab) == "noeviction"  # the dry run changed nothing

    code, waiting, _ = octoctl("fix", "cache")  # no terminal, no --approve: the disruptive step waits
    assert code == 1
    assert [a["status"] for a in actions(waiting)] == ["awaiting_approval", "skipped"]
    assert live_policy(healthy_lab) == "noeviction"

    code, fixed, _ = octoctl("fix", "cache", "--approve")
    assert code == 0, fixed
    applied = actions(fixed)
    assert [a["status"] for a in applied] == ["applied", "applied"]
    assert [change_of(a) for a in applied] == [change_of(a) for a in actions(approved_plan)]
    assert live_policy(healthy_lab) == "allkeys-lru"
    assert applied[0]["change"] == {**actions(approved_plan)[0]["change"], "file_new": "maxmemory-policy allkeys-lru"}
    assert config_file_policy(healthy_lab) == "allkeys-lru"  # persisted: survives a restart
    assert "warm keys present: 6/6" in applied[1]["outcome"]

    code, again, _ = octoctl("fix", "cache", "--approve")
    assert code == 0, json.dumps(
        [f for t in again["targets"] for p in t["procedures"] for f in p["findings"] if f["status"] != "ok"], indent=1
    )
    assert actions(again) == []
