"""Scheduling without AWX (issue 18, item 6): the systemd service and timer of a Compose host pass
`systemd-analyze verify`, and the service runs the collection's prevent_all with octollm_fail_when_human_needed (the
lab run of its ExecStart is tests/lab/test_lab_scheduling.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze (package systemd) is needed"
    done = subprocess.run([tool, "verify", str(UNITS / "octollm-prevent.service"),
                           str(UNITS / "octollm-prevent.timer")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    calendar = re.search(r"^OnCalendar=(.+)$", (UNITS / "octollm-prevent.timer").read_text(), re.M)
    assert calendar
    daily = subprocess.run([tool, "calendar", "--iterations=2", calendar.group(1)], capture_output=True, text=True)
    assert daily.returncode == 0, daily.stderr
    assert "03:00:00 UTC" in daily.stdout


def test_the_service_runs_prevent_all_and_fails_when_a_human_is_needed() -> None:
    text = (UNITS / "octollm-prevent.service").read_text()
    [command] = re.findall(r"^ExecStart=(.+)$", text, re.M)
    assert "octollm.remediation.prevent_all" in command and "octollm_fail_when_human_needed=true" in command
    assert (REPO / "collection" / "playbooks" / "prevent_all.yml").is_file()
    assert re.search(r"^Type=oneshot$", text, re.M) and re.search(r"^EnvironmentFile=-", text, re.M)
