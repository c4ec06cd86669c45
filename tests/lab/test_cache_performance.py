"""The cache_performance role against the running lab, through ansible-runner and playbooks/run.yml (what octoctl
runs), reading the RESULT from the playbook_on_stats event's artifact_data.

These tests inject faults into the shared lab: run them holding the lab lock,
``flock /tmp/octollm-lab.lock .venv/bin/python -m pytest -m lab tests/lab/test_cache_performance.py`` (about 3 min).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playbook_runs import by_check, run_procedure

pytestmark = pytest.mark.lab

PROCEDURE = "cache_performance"


def run(tmp_path: Path, phase: str, **extravars: Any) -> dict[str, Any]:
    return run_procedure(PROCEDURE, tmp_path, phase, **extravars)


def redis_client(lab: Any) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, password=lab.secret("redis_password"), socket_timeout=5,
                       decode_responses=True)


def config_file_policy(lab: Any) -> str | None:
    policy = None
    for line in (lab.state / "redis" / "redis.conf").read_text().splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "maxmemory-policy":
            policy = words[1]
    return policy


def test_healthy_lab_has_no_cache_finding(healthy_lab: Any, tmp_path: Path) -> None:
    result = run(tmp_path, "diagnose")
    assert result["procedure"] == PROCEDURE and result["platform"] == "compose" and result["phase"] == "diagnose"
    not_ok = {f["check"]: (f["status"], f["observed"]) for f in result["findings"] if f["status"] != "ok"}
    assert not_ok == {}
    assert not any(scenario["holds"] for scenario in result["scenarios"])
    assert result["escalation"]["level"] is None


def test_diagnosis_changes_nothing(healthy_lab: Any, tmp_path: Path) -> None:
    client = redis_client(healthy_lab)
    before = client.config_get("*")
    file_before = (healthy_lab.state / "redis" / "redis.conf").read_text()
    run(tmp_path, "diagnose")
    assert client.config_get("*") == before
    assert (healthy_lab.state / "redis" / "redis.conf").read_text() == file_before


def test_redis_eviction_is_found_fixed_and_verified(healthy_lab: Any, tmp_path: Path) -> None:
    from octoctl import lab_faults

    lab_faults.inject(healthy_lab, "redis-eviction")

    # the diagnosis finds scenario A, with the hit rate measured by Prometheus and by Redis
    diagnosis = run(tmp_path, "diagnose")
    found = by_check(diagnosis["findings"])
    assert found["redis.eviction_policy"]["status"] == "problem"
    assert found["redis.eviction_policy"]["observed"] == "noeviction"
    assert found["redis.eviction_policy"]["scenario"] == "A"
    assert found["redis.memory"]["status"] == "problem"
    rate = found["cache.hit_rate"]
    assert isinstance(rate["evidence"]["prometheus"]["hit_rate"], float)
    assert rate["evidence"]["redis"]["seconds"] > 0
    assert rate["status"] == "ok" or rate["scenario"] == "A"
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]}["A"] is True
    assert diagnosis["escalation"]["level"] == "L1"

    # without approval the disruptive policy change waits
    waiting = run(tmp_path, "resolve")
    assert [(a["id"], a["status"]) for a in waiting["actions"]] == [
        ("cache_performance.A.set_eviction_policy", "awaiting_approval"),
        ("cache_performance.A.rewarm_after_eviction", "skipped")]

    # a dry run lists exactly what the real run then does
    dry = run(tmp_path, "resolve", octollm_dry_run=True, octollm_approve=True)
    assert [a["status"] for a in dry["actions"]] == ["planned", "planned"]
    fixed = run(tmp_path, "resolve", octollm_approve=True)

    def plan(actions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(a["id"], a["resource"], a["change"].get("key"), a["change"].get("old"), a["change"].get("new"),
                 a["change"].get("file"), a["change"].get("op"), a["disruptive"]) for a in actions]

    assert plan(dry["actions"]) == plan(fixed["actions"])
    action, rewarm = fixed["actions"]
    assert action["status"] == "applied" and rewarm["status"] == "applied"
    assert action["change"] == {**dry["actions"][0]["change"], "file_new": "maxmemory-policy allkeys-lru"}
    assert "warm keys present: 6/6" in rewarm["outcome"]
    assert fixed["verification"]["healthy"] is True
    assert fixed["escalation"]["level"] is None
    after = by_check(fixed["verification"]["findings"])
    assert after["redis.eviction_policy"]["status"] == "ok"
    assert after["redis.write_errors"]["status"] == "ok"

    # live and persisted
    assert redis_client(healthy_lab).config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert config_file_policy(healthy_lab) == "allkeys-lru"

    # idempotence: nothing left to do
    again = run(tmp_path, "resolve", octollm_approve=True)
    assert again["actions"] == []
    assert again["verification"]["healthy"] is True


def test_cold_cache_is_warmed(healthy_lab: Any, tmp_path: Path) -> None:
    from octoctl import lab_faults

    lab_faults.inject(healthy_lab, "cache-cold")
    diagnosis = run(tmp_path, "diagnose")
    warm = by_check(diagnosis["findings"])["cache.warm_keys"]
    assert warm["status"] == "problem" and warm["scenario"] == "C"

    fixed = run(tmp_path, "resolve")
    assert [(a["id"], a["status"]) for a in fixed["actions"]] == [("cache_performance.C.warm_cache", "applied")]
    assert "warm keys present: 6/6" in fixed["actions"][0]["outcome"]
    assert by_check(fixed["verification"]["findings"])["cache.warm_keys"]["status"] == "ok"
    assert fixed["verification"]["healthy"] is True
    assert run(tmp_path, "resolve")["actions"] == []


def test_prevent_on_the_healthy_lab_finds_every_safeguard(healthy_lab: Any, tmp_path: Path) -> None:
    result = run(tmp_path, "prevent")
    checks = {f["check"]: f["status"] for f in result["prevention"]["findings"]}
    assert checks == {
        "prevent.redis.maxmemory": "ok",
        "prevent.redis.eviction_policy": "ok",
        "prevent.cache.key_ttl": "ok",
        "prevent.prometheus.cache_miss_rule": "ok",
        "prevent.prometheus.cache_metrics": "ok",
    }
    assert result["prevention"]["actions"] == []
    assert result["escalation"]["level"] is None
