"""The seed's quick reference on the lab (issue 19), short: `octoctl health` on the healthy lab exits 0 with a row
for every service of the inventory, each up and answering, with the key metrics the lab offers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
OCTOCTL = str(Path(sys.executable).parent / "octoctl")


def inventory_services() -> list[str]:
    data = yaml.safe_load((ROOT / "inventory" / "lab" / "group_vars" / "octollm.yml").read_text())
    return sorted(data["octollm_services"])


def test_health_of_the_healthy_lab(healthy_lab: Any) -> None:
    # settled, and past the error-rate window of an earlier test's outage (5xx while a data store was stopped)
    deadline = time.monotonic() + 120
    while True:
        start = time.monotonic()
        proc = subprocess.run([OCTOCTL, "health", "--format", "json"], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        took = time.monotonic() - start
        if proc.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (target,) = json.loads(proc.stdout)["targets"]
    rows = {row["service"]: row for row in target["services"]}
    assert sorted(rows) == inventory_services()
    assert {row["status"] for row in rows.values()} == {"ok"}
    assert all(str(row["state"]).startswith("running") for row in rows.values())
    assert rows["orchestrator"]["health"] == 200 and rows["orchestrator"]["requests_per_s"] > 0
    assert isinstance(rows["postgres"]["db_connections"], str) and "/" in rows["postgres"]["db_connections"]
    assert rows["redis"]["cache_hit_rate"] is not None and rows["orchestrator"]["memory_percent"] is not None
    assert took < 30, f"octoctl health took {took:.1f}s"


def _secret(lab: Any, name: str) -> str:
    return (lab.state / "secrets" / name).read_text().strip()


def test_shells_pass_the_credentials_in_the_environment_only(lab: Any) -> None:
    from octoctl.services import load_stack, shell_command

    stack = load_stack(ROOT / "inventory" / "lab", None)
    secrets = {"postgres": _secret(lab, "postgres_password"), "redis": _secret(lab, "redis_password")}
    for which, args, answer in (("postgres", ("-tAc", "select 1"), "1"), ("redis", ("PING",), "PONG")):
        command = shell_command(stack, which, args)
        assert secrets[which] and secrets[which] not in " ".join(command.argv)
        assert secrets[which] in command.secret_env.values()
        proc = subprocess.run([OCTOCTL, "shell", which, *args], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == answer
        assert all(secret not in proc.stdout + proc.stderr for secret in secrets.values())


def test_logs_are_masked_and_filtered(lab: Any) -> None:
    proc = subprocess.run([OCTOCTL, "logs", "orchestrator", "--since", "5m", "--tail", "200", "--grep", "task"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines and all("task" in line for line in lines) and len(lines) <= 200
    secrets = [_secret(lab, name) for name in ("postgres_password", "redis_password", "llm_api_key")]
    assert not any(secret in proc.stdout for secret in secrets)


def started_at(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_restart_awaits_approval_then_restarts_and_verifies(lab: Any) -> None:
    container = "octollm-judge-arm-1"
    before = started_at(container)
    proc = subprocess.run([OCTOCTL, "restart", "judge-arm", "--format", "json"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    (action,) = report["targets"][0]["procedures"][0]["actions"]
    assert (action["id"], action["status"]) == ("service_unavailable.A.restart_judge_arm", "awaiting_approval")
    assert report["approve_with"] and started_at(container) == before
    proc = subprocess.run([OCTOCTL, "restart", "judge-arm", "--approve", "--format", "json"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    (result,) = report["targets"][0]["procedures"]
    assert [a["status"] for a in result["actions"]] == ["applied"] and result["verification"]["healthy"] is True
    assert started_at(container) != before and report["targets"][0]["stack"]["down"] == []
