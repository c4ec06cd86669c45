"""The llm_api role against the running lab, through ansible-runner and playbooks/run.yml (what octoctl runs).

Faults go through octollm_labctl.faults (the LLM mock's mode and key files, lab.env); every test that injects one
heals it (healthy_lab fixture). Scenario D is tested through octoctl in test_secret_scan.py, scenarios A, B and C by
the Molecule scenarios llm_api_ratelimit_compose, llm_api_unavailable_compose and llm_api_timeout_compose. Run under
the shared lab lock: flock /tmp/octollm-lab.lock pytest ..."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playbook_runs import by_check, run_procedure

pytestmark = pytest.mark.lab

PROCEDURE = "llm_api"
# the lab's Prometheus rate window is 30 s: judge on it, so that a fault healed a moment ago is out of the window
FAST = {"llm_api_prometheus_window": "30s", "llm_api_log_seconds": 30, "llm_api_settle_seconds": 8}


def run(tmp_path: Path, phase: str, **extravars: Any) -> dict[str, Any]:
    return run_procedure(PROCEDURE, tmp_path, phase, **FAST, **extravars)


def holding(result: dict[str, Any]) -> set[str]:
    return {scenario["id"] for scenario in result["scenarios"] if scenario["holds"]}


def prometheus(query: str) -> float:
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as answer:
        result = json.loads(answer.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def wait_for(predicate: Any, timeout: float, step: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@pytest.fixture
def quiet_lab(healthy_lab: Any) -> Any:
    """The healthy lab once no LLM error is left in the 30 s window (a previous fault's errors age out)."""
    wait_for(lambda: prometheus('sum(increase(llm_api_calls_total{status="error"}[30s]))') == 0, 75)
    return healthy_lab


def snapshot(lab: Any) -> dict[str, Any]:
    import subprocess

    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=com.docker.compose.service=orchestrator"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        name: (lab.state / name).read_text()
        for name in ("lab.env", "secrets.env", "llm/primary.key", "llm/primary.mode", "secrets/llm_api_key")
    } | {"orchestrator": ids}


def test_healthy_lab_has_no_llm_finding_and_diagnosis_changes_nothing(quiet_lab: Any, tmp_path: Path) -> None:
    before = snapshot(quiet_lab)
    result = run(tmp_path, "diagnose")
    assert result["procedure"] == PROCEDURE and result["phase"] == "diagnose"
    not_ok = {f["check"]: (f["status"], f["observed"]) for f in result["findings"] if f["status"] != "ok"}
    assert not_ok == {}
    assert holding(result) == set()  # no scenario (A-D) fires on a healthy lab
    assert by_check(result["findings"])["llm.api_key"]["observed"] == "200"
    assert result["escalation"]["level"] is None
    assert snapshot(quiet_lab) == before  # files, key, mode and the orchestrator container are untouched


def test_prevent_finds_the_safeguards(quiet_lab: Any, tmp_path: Path) -> None:
    result = run(tmp_path, "prevent")
    checks = {f["check"]: f["status"] for f in result["prevention"]["findings"]}
    assert checks == {
        "prevent.llm.rate_limits": "ok",
        "prevent.llm.fallback": "ok",
        "prevent.llm.circuit_breaker": "ok",
        "prevent.llm.cost_tracking": "ok",
        "prevent.prometheus.llm_error_rule": "ok",
    }
    assert "primary" in by_check(result["prevention"]["findings"])["prevent.llm.cost_tracking"]["observed"]


# Scenario D (authentication) runs end to end through octoctl in test_secret_scan.py, which also scans every
# output of those runs for the keys.
