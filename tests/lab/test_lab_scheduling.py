"""Scheduling without AWX on a Compose host (issue 18, item 6): octollm-prevent.service's ExecStart, read as systemd
runs it (its Environment=, the EnvironmentFile's settings over them, ${VAR} as one word and $VAR split), run once
against the lab. The EnvironmentFile here points it at inventory/lab and the development collections and adds a dry
run in check mode (OCTOLLM_PREVENT_ARGS), so that the shared lab is left as it is."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "deploy" / "systemd" / "octollm-prevent.service"


def exec_start(path: Path, environment_file: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    text = path.read_text()
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    env.update(environment_file)
    [command] = [line.removeprefix("ExecStart=") for line in text.splitlines() if line.startswith("ExecStart=")]
    argv: list[str] = []
    for word in shlex.split(command):
        if re.fullmatch(r"\$\{\w+\}", word):
            argv.append(env[word[2:-1]])
        elif re.fullmatch(r"\$\w+", word):
            argv.extend(env[word[1:]].split())
        else:
            argv.append(word)
    return argv, env


@pytest.mark.lab
def test_the_prevention_service_runs_once_against_the_lab(lab: Any) -> None:
    argv, env = exec_start(SERVICE, {
        "OCTOLLM_INVENTORY": str(REPO / "inventory" / "lab"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OCTOLLM_PREVENT_ARGS": "-e octollm_dry_run=true --check",
    })
    assert argv[:2] == ["/usr/bin/env", "ansible-playbook"] and "octollm.remediation.prevent_all" in argv
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    out = done.stdout
    assert "PLAY RECAP" in out and re.search(r"^lab\s+: ok=\d+", out, re.M), out[-3000:] + done.stderr[-2000:]
    # octollm_fail_when_human_needed: the job ends failed (2) exactly when the run needs a human, and says why
    failed = "Run | REPORT | fail when a human is needed" in out and "exit status" in out
    assert (done.returncode, failed) in ((0, False), (2, True)), (done.returncode, out[-3000:])
