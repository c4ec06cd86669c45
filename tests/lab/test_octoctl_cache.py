"""`octoctl` end to end on the lab, as an on-call engineer runs it: a diagnosis of every procedure on the healthy
lab is clean. (A broken Redis eviction policy planned with --dry-run, refused without approval, fixed with --approve
and then left with nothing to do runs on the lab's minimal profile: tests/lab/test_minimal_profile.py.) Reports
validate against the published schema."""

from __future__ import annotations

from typing import Any

import pytest
from octoctl_runs import octoctl

from octoctl.catalog import load_catalog

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
