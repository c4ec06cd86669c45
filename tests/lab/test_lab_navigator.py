"""The execution environment at work (issue 18, item 2): ansible-navigator runs the playbooks the way AWX runs jobs,
ansible-runner starting ansible-playbook inside the EE image (octollm/ee:<tag>, built by scripts/build-images.sh from
ee/Containerfile.debian and the EE's dependency files), against the lab: the diagnosis of every procedure (the "OctoLLM
diagnose all" job template's variables, failing when a human is needed) and playbooks/prevent_all.yml as a dry run in
check mode (so that the shared lab is left as it is).

The container reaches the lab on loopback (--network host) and its Docker engine through the socket; the lab's state
directory is mounted read-only with its secrets/ hidden (an empty tmpfs over it): the inventory's secrets come as the
extra vars octollm_secret_*, the way AWX's credential injects them (awx/octollm.yml)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IMAGE = f"octollm/ee:{os.environ.get('OCTOLLM_LAB_TAG', 'dev')}"
SECRETS = ("postgres_password", "postgres_admin_password", "redis_password", "llm_api_key", "llm_fallback_api_key")
PROCEDURES = sorted(role.name for role in (REPO / "collection" / "roles").iterdir()
                    if (role / "tasks" / "prevent.yml").is_file() and not role.name.startswith("_"))
# ansible-runner's event markers around each line of the stdout (ESC[K <base64> ESC[<n>D ESC[K)
EVENT_MARKER = re.compile(r"\x1b\[K[A-Za-z0-9+/=]*\x1b\[\d+D\x1b\[K")


def navigator(lab: Any, tmp_path: Path, playbook: str, *args: str) -> tuple[int, str, dict[str, Any]]:
    """ansible-navigator run PLAYBOOK in the EE against inventory/lab: its exit status, its stdout and the run's
    octollm_report (the custom stats the play published, printed by the stdout callback)."""
    secrets = tmp_path / "secrets.yml"
    secrets.touch(mode=0o600)
    secrets.write_text(yaml.safe_dump({f"octollm_secret_{name}": lab.secret(name) for name in SECRETS}))
    state = str(lab.state)
    argv = [
        str(Path(sys.executable).parent / "ansible-navigator"), "run", str(REPO / "playbooks" / playbook),
        "--ee", "true", "--ce", "docker", "--eei", IMAGE, "--pp", "never", "-m", "stdout",
        "--pae", "false", "--lf", str(tmp_path / "navigator.log"),
        "-i", str(REPO / "inventory" / "lab"), "-e", f"@{secrets}",
        "--senv", "ANSIBLE_SHOW_CUSTOM_STATS=true", "--senv", f"OCTOLLM_LAB_STATE={state}",
        "--eev", f"{state}:{state}:ro",  # (the working directory, tmp_path, navigator mounts itself)
        "--eev", "/var/run/docker.sock:/var/run/docker.sock",
        "--co=--network=host", f"--co=--tmpfs={state}/secrets", *args,
    ]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = EVENT_MARKER.sub("", done.stdout) + done.stderr[-2000:]
    for name in SECRETS:
        assert lab.secret(name) not in done.stdout + done.stderr, f"the {name} secret is in the output"
    stats = re.findall(r"^\s*RUN: (\{.*\})\s*$", out, re.M)
    report = json.loads(stats[-1]).get("octollm_report", {}) if stats else {}
    return done.returncode, out, report


@pytest.mark.lab
def test_navigator_runs_the_diagnosis_and_prevent_all_in_the_ee(healthy_lab: Any, tmp_path: Path) -> None:
    lab = healthy_lab  # settled: no earlier fault's window left for the diagnosis to find
    inspect = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE], capture_output=True, text=True)
    assert inspect.returncode == 0, f"{IMAGE} is missing: scripts/build-images.sh builds it"

    # the diagnosis of every procedure, as the "OctoLLM diagnose all" job template runs it
    started = time.monotonic()
    rc, out, report = navigator(lab, tmp_path, "run.yml", "-e", json.dumps({
        "octollm_phase": "diagnose", "octollm_procedures": PROCEDURES, "octollm_fail_when_human_needed": True}))
    diagnosis_s = time.monotonic() - started
    assert rc == 0, out[-4000:]  # octollm_fail_when_human_needed: 0 is the verdict "healthy", not just a run
    assert re.search(r"^lab\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", out, re.M), out[-3000:]
    results = report["lab"]
    assert sorted(name for name in results if name != "stack") == PROCEDURES
    stack = results["stack"]  # every service up and answering, checked from inside the EE
    assert stack["findings"] and not stack.get("down"), stack
    assert {finding["status"] for finding in stack["findings"]} == {"ok"}, stack["findings"]
    for name in PROCEDURES:
        result = results[name]
        assert (result["procedure"], result["phase"], result["platform"]) == (name, "diagnose", "compose")
        assert not [s["id"] for s in result["scenarios"] if s["holds"]], (name, result["scenarios"])
        assert not result.get("actions"), (name, result["actions"])

    # every procedure's prevention (playbooks/prevent_all.yml): a dry run in check mode
    started = time.monotonic()
    rc, out, report = navigator(lab, tmp_path, "prevent_all.yml", "--check", "-e", "octollm_dry_run=true")
    prevent_s = time.monotonic() - started
    assert rc == 0, out[-4000:]
    results = report["lab"]
    assert sorted(name for name in results if name != "stack") == PROCEDURES
    checked = 0
    for name in PROCEDURES:
        result = results[name]
        assert (result["procedure"], result["phase"], result["platform"]) == (name, "prevent", "compose")
        prevention = result.get("prevention") or {}
        checked += len(prevention.get("findings") or [])
        for action in (result.get("actions") or []) + (prevention.get("actions") or []):
            assert action["status"] != "applied", (name, action)
    assert checked >= len(PROCEDURES), checked  # the EE reached the lab: prevention checks were made
    print(f"ansible-navigator in {IMAGE}: diagnosis {diagnosis_s:.1f} s, prevent_all {prevent_s:.1f} s")
