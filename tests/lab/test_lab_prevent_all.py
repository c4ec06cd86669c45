"""playbooks/prevent_all.yml against the lab (issue 18, item 5): every procedure's prevention in one run, with
octoctl prevent's semantics. A dry run (check mode, octollm_dry_run) so that the shared lab is left as it is: every
procedure reports its prevention checks, nothing is applied, and a disruptive measure awaits approval, never planned."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PROCEDURES = sorted(role.name for role in (REPO / "collection" / "roles").iterdir()
                    if (role / "tasks" / "prevent.yml").is_file() and not role.name.startswith("_"))


@pytest.mark.lab
def test_prevent_all_checks_every_procedure_s_prevention_on_the_lab(lab: Any, tmp_path: Path) -> None:
    import ansible_runner

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    runner = ansible_runner.run(
        private_data_dir=str(tmp_path), playbook=str(REPO / "playbooks" / "prevent_all.yml"),
        inventory=str(REPO / "inventory" / "lab"), cmdline="--check", quiet=True,
        extravars={"octollm_dry_run": True},
        envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")},
    )
    assert runner.rc == 0, f"{runner.status}: {runner.stdout.read()[-3000:]}"
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    report = stats[-1]["event_data"]["artifact_data"]["octollm_report"]["lab"]
    assert sorted(name for name in report if name != "stack") == PROCEDURES
    checked = 0
    for name in PROCEDURES:
        result = report[name]
        assert result["procedure"] == name and result["phase"] == "prevent" and result["platform"] == "compose"
        prevention = result.get("prevention") or {}
        checked += len(prevention.get("findings") or [])
        for action in (result.get("actions") or []) + (prevention.get("actions") or []):
            assert action["status"] != "applied", (name, action)
            if action.get("disruptive") or action.get("destructive"):
                assert action["status"] in ("awaiting_approval", "skipped", "report"), (name, action)
    assert checked >= len(PROCEDURES), checked  # the lab answered: prevention checks were made
