"""The lab's minimal profile (`octoctl lab up --profile minimal`, marker `minimal`): the same services laid out as a
deployment this project did not write (lab/profiles/minimal.yaml: the seed's endpoints only, the orchestrator's
settings under ORCHESTRATOR_ with a database URL and its metrics under orchestrator_, /ready, another Compose
project), described to octoctl by inventory/lab-minimal. A diagnosis of every procedure on it is clean but for the
checks that need an optional probe it does not offer; the cache-eviction fix runs here (moved from
test_octoctl_cache.py)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from octoctl_runs import actions, change_of, config_file_policy, live_policy, octoctl

from octoctl.catalog import load_catalog
from octollm_labctl import faults

pytestmark = pytest.mark.minimal

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ("-i", str(ROOT / "inventory" / "lab-minimal"))
# The checks that may be unknown on the healthy minimal lab, and only as not offered (error kind not_offered): they
# need an optional probe (docs/deployment.md "Optional probes") the minimal profile does not offer.
NOT_OFFERED = {"app.pool", "arms.registered", "arms.capabilities", "routing.scores", "memory.in_process",
               "network.hops"}


def test_the_lab_is_its_minimal_profile(healthy_lab: Any) -> None:
    """The profile is what inventory/lab-minimal says: its own Compose project, the seed's endpoints only, /ready."""
    import urllib.error
    import urllib.request

    assert healthy_lab.profile.name == "minimal" and healthy_lab.project == "llmstack"
    assert {c.get("Project") for c in healthy_lab.containers()} == {"llmstack"}
    with urllib.request.urlopen("http://127.0.0.1:8000/ready", timeout=5) as answer:
        assert answer.status == 200
    with urllib.request.urlopen("http://127.0.0.1:8000/health", timeout=5) as answer:
        assert b"db_pool" not in answer.read()
    for url in ("http://127.0.0.1:8000/debug/memory", "http://127.0.0.1:8000/api/v1/arms",
                "http://127.0.0.1:8103/debug/memory"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 404, url
    with urllib.request.urlopen("http://127.0.0.1:8000/metrics", timeout=5) as answer:
        exported = answer.read().decode()
    assert "orchestrator_http_request_duration_seconds_bucket" in exported
    assert "\nhttp_request_duration_seconds_bucket" not in exported


def test_fix_cache_dry_run_then_approve_then_nothing_left(healthy_lab: Any) -> None:
    faults.inject(healthy_lab, "redis-eviction")
    assert live_policy(healthy_lab) == "noeviction"

    code, diagnosis, _ = octoctl("diagnose", "cache", *MINIMAL)
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

    code, plan, _ = octoctl("fix", "cache", "--dry-run", *MINIMAL)
    assert code == 1
    planned = actions(plan)
    # the policy change is disruptive (keys without TTL become evictable): the plan says it needs approval; no
    # re-warm follows it, as this deployment offers no cache-warm endpoint (the full lab's plan has one)
    assert [(a["id"], a["status"], a["disruptive"]) for a in planned] == [
        ("cache_performance.A.set_eviction_policy", "awaiting_approval", True),
    ]
    assert change_of(planned[0])[2:] == ("maxmemory-policy", "noeviction", "allkeys-lru")
    code, approved_plan, _ = octoctl("fix", "cache", "--dry-run", "--approve", *MINIMAL)
    assert code == 1
    assert [a["status"] for a in actions(approved_plan)] == ["planned"]
    assert live_policy(healthy_lab) == "noeviction"  # the dry run changed nothing

    code, waiting, _ = octoctl("fix", "cache", *MINIMAL)  # no terminal, no --approve: the disruptive step waits
    assert code == 1
    assert [a["status"] for a in actions(waiting)] == ["awaiting_approval"]
    assert live_policy(healthy_lab) == "noeviction"

    code, fixed, _ = octoctl("fix", "cache", "--approve", *MINIMAL)
    assert code == 0, fixed
    applied = actions(fixed)
    assert [a["status"] for a in applied] == ["applied"]
    assert [change_of(a) for a in applied] == [change_of(a) for a in actions(approved_plan)]
    assert live_policy(healthy_lab) == "allkeys-lru"
    assert applied[0]["change"] == {**actions(approved_plan)[0]["change"], "file_new": "maxmemory-policy allkeys-lru"}
    assert config_file_policy(healthy_lab) == "allkeys-lru"  # persisted: survives a restart

    code, again, _ = octoctl("fix", "cache", "--approve", *MINIMAL)
    assert code == 0, json.dumps(
        [f for t in again["targets"] for p in t["procedures"] for f in p["findings"] if f["status"] != "ok"], indent=1
    )
    assert actions(again) == []
    # healthy again once the fault's filler keys are gone (the fix leaves them: keys without TTL are a person's call):
    # without a cache-warm endpoint the evicted cache refills from traffic, and its hit rate recovers
    faults.heal(healthy_lab, "redis-eviction")
    deadline = time.monotonic() + 150
    while True:
        code, after, _ = octoctl("diagnose", "cache", *MINIMAL)
        not_ok = [(f["check"], f["status"], f["observed"]) for t in after["targets"] for p in t["procedures"]
                  for f in p["findings"] if f["status"] != "ok"]
        if (code == 0 and not not_ok) or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert code == 0 and not not_ok, not_ok


def test_diagnose_everything_on_a_healthy_minimal_lab_exits_0(healthy_lab: Any) -> None:
    """Last in this file (a data store warms its buffers for minutes after the profile starts). Every procedure in one
    run on the minimal lab: exit 0, no escalation, and nothing but ok - except the checks of
    NOT_OFFERED, which may be unknown only as not offered by this deployment."""
    code, report, _ = octoctl("diagnose", *MINIMAL)
    procedures = {p["procedure"]: p for t in report["targets"] for p in t["procedures"]}
    assert set(procedures) == {p.name for p in load_catalog().procedures}
    not_ok = [(p["procedure"], f["check"], f["status"], (f.get("error") or {}).get("kind"), f["observed"])
              for p in procedures.values() for f in p["findings"] if f["status"] != "ok"]
    unexpected = [row for row in not_ok if not (row[1] in NOT_OFFERED and row[2:4] == ("unknown", "not_offered"))]
    assert code == 0 and not unexpected, unexpected
    assert all(p["findings"] and p["escalation"]["level"] is None for p in procedures.values())
    assert not [check for check, count in Counter(row[1] for row in not_ok).items() if count > 1]
