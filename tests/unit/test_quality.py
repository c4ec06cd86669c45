"""Quality gates: ruff, mypy, yamllint and ansible-lint (production profile, offline) stay clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))


def check(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_ruff() -> None:
    check(run(str(BIN / "ruff"), "check", "octoctl", "tests", "bench", "lab/app", "lab/ctl"))
    check(run(str(BIN / "ruff"), "check", "--config", "collection/ruff.toml", "collection/plugins"))


def test_mypy_on_octoctl_and_the_lab_tooling() -> None:
    check(run(str(BIN / "mypy"), "octoctl", "lab/ctl/octollm_labctl"))


def test_yamllint() -> None:
    check(run(str(BIN / "yamllint"), "-c", ".yamllint", "roles", "playbooks", "molecule", "inventory",
              "collection/galaxy.yml", "collection/meta", "lab/compose.yaml"))


@pytest.mark.skipif(not (ROOT / ".collections").is_dir(), reason="scripts/setup.sh installs the collections")
def test_ansible_lint_production_profile() -> None:
    env = {"ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    check(run(str(BIN / "ansible-lint"), "--offline", "--profile", "production", "roles", "playbooks", env=env))
