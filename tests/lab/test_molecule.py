"""Every Molecule scenario under molecule/ runs against the lab (inject, diagnose, fix, idempotence, verify)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
# Scenarios with a known, tracked defect: they still run; a failure is reported as xfail, a pass as xpass.
KNOWN_DEFECTS = {
    "cache_performance_compose": "known defect, issue 3 stays open: the eviction a policy fix triggers can take "
    "the warm entries, so the idempotence step plans scenario C",
}

pytestmark = [pytest.mark.lab, pytest.mark.molecule]


def test_there_are_scenarios() -> None:
    assert "cache_performance_compose" in SCENARIOS


@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.xfail(reason=KNOWN_DEFECTS[s], strict=False)) if s in KNOWN_DEFECTS else s
    for s in SCENARIOS
])
def test_molecule_scenario(lab, scenario: str) -> None:  # type: ignore[no-untyped-def]
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(Path(venv_bin) / "molecule"), "-c", "molecule/base.yml", "test", "-s", scenario],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    output = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"molecule test -s {scenario} failed:\n{output}"
