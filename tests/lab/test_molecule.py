"""Every Molecule scenario under molecule/ runs against the lab (inject, diagnose, fix, idempotence, verify)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))

pytestmark = [pytest.mark.lab, pytest.mark.molecule]


def failure_excerpt(output: str, head: int = 5000, tail: int = 1500) -> str:
    """The failed task from its header (its assertion comes first), then the tail: CI shows only a part of the log."""
    at = max(output.rfind("fatal: ["), output.rfind("failed: ["))
    if at < 0:
        return output[-(head + tail):]
    start = output.rfind("TASK [", 0, at)
    start = at if start < 0 else start
    return output[start:start + head] + "\n[...]\n" + output[-tail:]


def test_there_are_scenarios() -> None:
    assert "cache_performance_compose" in SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(healthy_lab, scenario: str) -> None:  # type: ignore[no-untyped-def]
    """A scenario starts from the healed, settled lab (its sequence begins with the fault) and leaves it so."""
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1", NO_COLOR="1")
    proc = subprocess.run(
        [str(Path(venv_bin) / "molecule"), "-c", "molecule/base.yml", "test", "-s", scenario],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"molecule test -s {scenario} failed:\n{failure_excerpt(proc.stdout + proc.stderr)}"
