"""What the lab tests that run `octoctl` as a person does share: the command, its JSON report (validated against the
published schema), and Redis' eviction policy live and in its file.

A plain module (not a conftest): the lab tests import it by name, as pytest puts their folder on sys.path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

from octollm_labctl.faults.common import redis_client

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
