"""Under CI=true a skip that hides a missing install step fails the run (tests/conftest.py): lab, Docker and Molecule
tests, and any test skipped for a server binary or package that set-up installs ("[needs-install]")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
TESTS = '''
import pytest

def test_needs_a_server():
    pytest.skip("[needs-install] redis-server is not installed")

@pytest.mark.lab
def test_needs_the_lab():
    pytest.skip("no Docker engine")

def test_optional():
    pytest.skip("set OCTOLLM_CLUSTER_TESTS=1 to run the cluster suite")
'''


def run(tmp_path: Path, ci: str) -> str:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    lab: x\n    docker: x\n    molecule: x\n")
    env = dict(os.environ, CI=ci)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p", "no:kmock",
                           str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    return proc.stdout


@pytest.mark.parametrize(("ci", "failed", "skipped"), [("true", 2, 1), ("", 0, 3)])
def test_skips_that_hide_an_install_step_fail_under_ci(tmp_path: Path, ci: str, failed: int, skipped: int) -> None:
    out = run(tmp_path, ci)
    summary = out.strip().splitlines()[-1]
    assert (f"{failed} failed" in summary) == bool(failed), out
    assert f"{skipped} skipped" in summary, out
    if failed:
        assert "FAILED test_skips.py::test_needs_a_server" in out and "FAILED test_skips.py::test_needs_the_lab" in out
