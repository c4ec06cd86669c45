"""`octoctl history` and `octoctl rollback` on Compose without a lab (issue 19 item 4): a stand-in container runtime
whose one container's state the test changes, the revisions recorded and shown without a value of the environment,
usage errors as one line and exit 2, and the rollback handed to Service Unavailable (the engine stubbed) with the
masked change, the project's files and the 0600 Compose file that holds the revision's values."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from octoctl import cli as cli_module
from octoctl.cli import cli
from octoctl.engine import Request
from octoctl.errors import ExitCode
from octoctl.models import RunReport

SECRET = "hunter2-very-secret"
FAKE_DOCKER = """#!/bin/sh
case "$1" in
  ps) printf 'demo-orchestrator-1\\torchestrator\\n' ;;
  inspect) cat "$FAKE_INSPECT" ;;
esac
"""


def inspect(note: str | None, secret: str = SECRET) -> list[dict[str, Any]]:
    env = [f"DB_PASSWORD={secret}", "PATH=/usr/bin"] + ([f"NOTE={note}"] if note is not None else [])
    return [{"Name": "/demo-orchestrator-1", "Image": "sha256:" + "a" * 64, "State": {"Running": True},
             "Config": {"Image": "demo/orchestrator:1", "Env": env, "Cmd": ["serve"], "Labels": {}},
             "HostConfig": {"Memory": 0, "MemorySwap": 0, "NanoCpus": 0}}]


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    state = tmp_path / "inspect.json"
    monkeypatch.setenv("FAKE_INSPECT", str(state))
    project = tmp_path / "project"
    project.mkdir()
    (project / "compose.yaml").write_text("services: {orchestrator: {image: demo/orchestrator:1}}\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"""\
octollm:
  hosts:
    stack1:
      octollm_platform: compose
      octollm_compose_project: demo
      octollm_compose_project_dir: {project}
      octollm_services:
        orchestrator: {{url: "http://127.0.0.1:8000"}}
        legacy: {{container_names: [legacy-1]}}
""")
    return {"inventory": inventory, "state": state, "project": project, "dir": tmp_path / "state"}


def run(args: list[str], setup: dict[str, Any]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args, "-i", str(setup["inventory"])],
                                env={"OCTOCTL_STATE_DIR": str(setup["dir"]), "OCTOCTL_DEBUG": ""})
    return result.exit_code, result.output


def deploy(setup: dict[str, Any], note: str | None, secret: str = SECRET) -> None:
    setup["state"].write_text(json.dumps(inspect(note, secret)))


class FakeEngine:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.store = self
        self.saved: list[RunReport] = []

    def fix(self, request: Request) -> RunReport:
        self.requests.append(request)
        return RunReport.model_validate({"run_id": "20260101T000000-abcdef", "command": request.command,
                                         "inventory": str(request.inventory), "start": datetime.now(UTC),
                                         "status": "needs_human", "exit_code": 1})

    def save(self, report: RunReport) -> None:
        self.saved.append(report)


def test_history_records_each_change_once_and_shows_no_value(setup: dict[str, Any]) -> None:
    deploy(setup, None)
    code, out = run(["history", "orchestrator"], setup)
    assert code == 0, out
    assert "first recorded (running)" in out.splitlines()[-1]
    run(["history", "orchestrator"], setup)  # nothing changed: no new revision
    deploy(setup, "bad", secret="rotated-" + SECRET)
    code, out = run(["history", "orchestrator", "--format", "json"], setup)
    assert code == 0, out
    rows = json.loads(out)["revisions"]
    assert [(r["revision"], r["changes"], r["current"]) for r in rows] == [
        (1, ["first recorded"], False), (2, ["env DB_PASSWORD", "env NOTE"], True)]
    assert SECRET not in out and "bad" not in out.replace("bad-", "")
    index = setup["dir"] / "history" / "stack1" / "orchestrator.json"
    assert SECRET not in index.read_text() and stat.S_IMODE(index.stat().st_mode) == 0o600


@pytest.mark.parametrize("args, words", [
    (["rollback", "nosuch"], "no service 'nosuch'"),
    (["rollback", "orchestrator", "--to-revision", "9"], "orchestrator has no revision 9 (recorded: 1, 2)"),
    (["history", "nosuch"], "no service 'nosuch'"),
    (["rollback", "legacy"], "legacy is not a service of the inventory's Compose project"),
])
def test_rollback_usage_errors_are_one_line_and_exit_2(args: list[str], words: str, setup: dict[str, Any]) -> None:
    deploy(setup, None)
    run(["history", "orchestrator"], setup)
    deploy(setup, "bad")
    code, out = run(args, setup)
    assert code == ExitCode.USAGE, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("octoctl: error: ") and words in lines[0]


def test_nothing_to_roll_back_to(setup: dict[str, Any]) -> None:
    deploy(setup, None)
    code, out = run(["rollback", "orchestrator"], setup)
    assert code == ExitCode.HUMAN_NEEDED and "no previous revision" in out, out


def test_the_rollback_goes_to_service_unavailable_with_the_masked_change(
        setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine()
    monkeypatch.setattr(cli_module, "_engine", lambda settings, catalog: fake)
    deploy(setup, None)
    run(["history", "orchestrator"], setup)
    deploy(setup, "bad", secret="rotated-" + SECRET)
    # the revision ran another secret, which octoctl never wrote down: a person sets it back first
    code, out = run(["rollback", "orchestrator", "--format", "json"], setup)
    assert code == 1 and "ran other values of DB_PASSWORD" in out and not fake.requests, out
    deploy(setup, "bad")
    code, out = run(["rollback", "orchestrator", "--format", "json", "--to-revision", "1"], setup)
    assert code == 1, out
    (request,) = fake.requests
    assert (request.command, request.dry_run, request.approve, request.limit) == ("rollback", True, False, "stack1")
    asked = request.extra_vars["service_unavailable_rollback"]
    override = Path(asked["compose"]["override_file"])
    assert asked["service"] == "orchestrator" and asked["to_revision"] == 1
    assert asked["compose"]["from_revision"] == 3
    assert asked["compose"]["files"] == [str(setup["project"] / "compose.yaml"), str(override)]
    assert asked["compose"]["changes"] == ["env NOTE: 'bad' -> (unset)"]
    assert SECRET not in json.dumps(request.extra_vars)
    assert stat.S_IMODE(override.stat().st_mode) == 0o600 and f"DB_PASSWORD: {SECRET}" in override.read_text()
    assert "NOTE" not in override.read_text()
    assert "awaits approval" in json.loads(out)["notes"][-1]
    # --approve: applied, not a dry run; the override (it holds the values) is gone once the rollback ran
    run(["rollback", "orchestrator", "--approve", "--to-revision", "1"], setup)
    assert (fake.requests[-1].dry_run, fake.requests[-1].approve) == (False, True)
    assert not Path(fake.requests[-1].extra_vars["service_unavailable_rollback"]["compose"]["override_file"]).exists()


def test_a_history_that_cannot_be_read_is_a_note_of_the_run(setup: dict[str, Any]) -> None:
    """The engine's after_run: a run whose stack cannot be read keeps its report (a note says why)."""
    from octoctl.config import Settings
    from octoctl.history import record_after_run

    setup["state"].write_text("not json")
    settings = Settings.from_env({"OCTOCTL_STATE_DIR": str(setup["dir"]), "HOME": str(setup["dir"])})
    report = RunReport.model_validate({"run_id": "20260101T000000-abcdef", "command": "diagnose",
                                       "inventory": str(setup["inventory"]), "start": datetime.now(UTC),
                                       "status": "healthy", "exit_code": 0,
                                       "targets": [{"target": "stack1", "status": "healthy", "exit_code": 0}]})
    request = Request(command="diagnose", procedures=[], inventory=setup["inventory"])
    record_after_run(settings, request, report)
    assert len(report.notes) == 1 and report.notes[0].startswith("deployment history of stack1 not recorded: ")
    deploy(setup, None)
    record_after_run(settings, request, report)
    assert "new revision of orchestrator 1" in report.notes[-1]
