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


def test_cold_cache_is_warmed(healthy_lab: Any, tmp_path: Path) -> None:
    from octollm_labctl import faults

    faults.inject(healthy_lab, "cache-cold")
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
