"""A bad deploy rolled back on the lab (issue 19 item 4), short: an operator changes one setting of planner-arm twice
through the lab's own Compose project (its override file, then `docker compose up`), octoctl records each revision,
`octoctl rollback planner-arm --approve` goes back to the previous revision and `--to-revision N` to the first one;
each time the service is healthy, octoctl's verification passes and the container has that revision's value. The
override file and the service are put back afterwards."""

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
SERVICE = "planner-arm"
SETTING = "ARM_NOTE"


INVENTORY: list[str] = []


def octoctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OCTOCTL, *args, *INVENTORY], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def deploy(lab: Any, original: str, value: str | None) -> None:
    """What an operator does: the setting in the project's override file, then `docker compose up` of the one
    service (not waited for: octoctl records what runs)."""
    data = yaml.safe_load(original) or {}
    if value is not None:
        data.setdefault("services", {}).setdefault(SERVICE, {}).setdefault("environment", {})[SETTING] = value
    (lab.state / "compose.override.yaml").write_text(
        "# Changes that fixes make to the deployment (limits, replicas) land here, not in git.\n"
        + yaml.safe_dump(data, sort_keys=False))
    lab.compose("up", "-d", "--no-deps", SERVICE)


def running_value(lab: Any) -> str | None:
    container = f"{lab.project}-{SERVICE}-1"
    env = subprocess.run(["docker", "inspect", "-f", "{{json .Config.Env}}", container], capture_output=True,
                         text=True, check=True).stdout
    found = [item.split("=", 1)[1] for item in json.loads(env) if item.startswith(SETTING + "=")]
    return found[0] if found else None


def revisions() -> list[dict[str, Any]]:
    proc = octoctl("history", SERVICE, "--format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return list(json.loads(proc.stdout)["revisions"])


def rolled_back(*args: str) -> dict[str, Any]:
    proc = octoctl("rollback", SERVICE, "--approve", "--format", "json", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    (result,) = report["targets"][0]["procedures"]
    (action,) = result["actions"]
    assert (action["id"], action["status"]) == ("service_unavailable.D.rollback_planner_arm", "applied"), action
    assert result["verification"]["healthy"] is True
    return dict(report, action=action)


def test_a_bad_deploy_is_rolled_back_to_the_previous_and_to_a_named_revision(lab: Any) -> None:
    started = time.monotonic()
    # the inventory of the profile that is up (the full lab's, or the minimal profile's own project)
    INVENTORY[:] = ["-i", str(ROOT / "inventory" / ("lab-minimal" if lab.profile.name == "minimal" else "lab"))]
    override = lab.state / "compose.override.yaml"
    original = override.read_text()
    try:
        # the service as its project's files say now (an earlier fault's heal may have left it on an older secret,
        # which a rollback, keeping no secret, could not bring back)
        lab.compose("up", "-d", "--no-deps", "--wait", SERVICE)
        good = revisions()[-1]
        assert running_value(lab) is None
        deploy(lab, original, "first-bad")
        revisions()  # octoctl records on every run: here, octoctl history between the two deploys
        deploy(lab, original, "second-bad")
        found = revisions()
        assert [row["revision"] for row in found[-3:]] == [good["revision"], good["revision"] + 1,
                                                          good["revision"] + 2]
        assert found[-1]["changes"] == [f"env {SETTING}"] and found[-1]["current"] is True
        assert "second-bad" not in json.dumps(found)  # the environment's values are never shown

        # --dry-run shows the exact change and changes nothing
        proc = octoctl("rollback", SERVICE, "--dry-run", "--format", "json")
        assert proc.returncode == 1, proc.stderr[-2000:]
        (action,) = json.loads(proc.stdout)["targets"][0]["procedures"][0]["actions"]
        assert action["status"] == "awaiting_approval"
        assert action["change"]["changes"] == [f"env {SETTING}: 'second-bad' -> 'first-bad'"]
        assert running_value(lab) == "second-bad"

        previous = rolled_back()
        assert previous["action"]["change"]["to_revision"] == good["revision"] + 1
        assert running_value(lab) == "first-bad"
        assert any("runs revision" in note for note in previous["notes"]), previous["notes"]

        rolled_back("--to-revision", str(good["revision"]))
        assert running_value(lab) is None  # the setting the bad deploys added is gone again
        assert revisions()[-1]["same_as"] == good["revision"]
    finally:
        override.write_text(original)
        lab.compose("up", "-d", "--no-deps", "--wait", SERVICE)
    assert time.monotonic() - started < 60
