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


def test_health_of_the_healthy_lab(lab: Any) -> None:
    start = time.monotonic()
    proc = subprocess.run([OCTOCTL, "health", "--format", "json"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    took = time.monotonic() - start
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
