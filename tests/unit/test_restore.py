"""`octoctl restore RUN_ID`, `prevent --approve` and the run directory octoctl hands to the roles (no Ansible)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from octoctl import cli as cli_module
from octoctl.catalog import load_catalog
from octoctl.cli import cli
from octoctl.config import Settings
from octoctl.engine import Engine, Request, backups_of
from octoctl.models import RunReport
from octoctl.runner import RunOutcome, RunSpec, check_outcome, outcome_from_events
from octoctl.store import Store

CATALOG = load_catalog()


def fixed_report(store: Store, backup: str | None = "/runs/x/backups/a.dump", status: str = "applied") -> RunReport:
    run_id = store.create()
    actions = [{"id": "data_corruption.A.delete_orphans", "status": "applied", "change": {"sql": "DELETE", "rows": 3}}]
    if backup:
        actions.insert(0, {"id": "data_corruption.backup", "status": status,
                           "change": {"backup": backup, "format": "custom"}})
    report = RunReport.model_validate({
        "run_id": run_id, "command": "fix", "phase": "resolve", "procedures": ["data_corruption"],
        "inventory": "/inv/lab", "start": datetime.now(UTC), "status": "fixed", "exit_code": 0,
        "targets": [{"target": "lab", "status": "fixed", "exit_code": 0, "procedures": [
            {"procedure": "data_corruption", "phase": "resolve", "actions": actions,
             "escalation": {"level": None}}]}],
    })
    store.save(report)
    return report


def test_backups_of_finds_applied_backups_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs")
    assert backups_of(fixed_report(store)) == {"data_corruption": {"lab": "/runs/x/backups/a.dump"}}
    assert backups_of(fixed_report(store, status="failed")) == {}
    assert backups_of(fixed_report(store, backup=None)) == {}


class FakeEngine:
    def __init__(self) -> None:
        self.requests: list[Request] = []

    def fix(self, request: Request) -> RunReport:
        self.requests.append(request)
        return RunReport.model_validate({"run_id": "20260101T000000-abcdef", "command": request.command,
                                         "inventory": str(request.inventory), "start": datetime.now(UTC),
                                         "status": "fixed", "exit_code": 0})

    def prevent(self, request: Request) -> RunReport:
        return self.fix(request)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # a collection in which data_corruption has a restore entry point and resource_exhaustion has none
    roles = tmp_path / "c" / "ansible_collections" / "octollm" / "remediation" / "roles"
    for role, phases in {"data_corruption": ("resolve", "restore"), "resource_exhaustion": ("resolve",)}.items():
        (roles / role / "tasks").mkdir(parents=True)
        for phase in phases:
            (roles / role / "tasks" / f"{phase}.yml").write_text("[]\n")
    return {"OCTOCTL_STATE_DIR": str(tmp_path / "state"), "OCTOCTL_COLLECTIONS_PATH": str(tmp_path / "c"),
            "OCTOCTL_DEBUG": ""}


def test_restore_refuses_a_run_whose_backups_have_no_restore(env: dict[str, str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """resource_exhaustion copies Redis' RDB file before it flushes the cache; it has no restore entry point, so
    `octoctl restore` says so (exit 2) instead of running another resource_exhaustion fix."""
    fake = FakeEngine()
    monkeypatch.setattr(cli_module, "_engine", lambda settings, catalog: fake)
    store = Store(Path(env["OCTOCTL_STATE_DIR"]) / "runs")
    run_id = store.create()
    store.save(RunReport.model_validate({
        "run_id": run_id, "command": "fix", "phase": "resolve", "procedures": ["resource_exhaustion"],
        "inventory": "/inv/lab", "start": datetime.now(UTC), "status": "fixed", "exit_code": 0,
        "targets": [{"target": "lab", "status": "fixed", "exit_code": 0, "procedures": [
            {"procedure": "resource_exhaustion", "phase": "resolve", "escalation": {"level": None}, "actions": [
                {"id": "resource_exhaustion.A.flush_cache", "status": "applied", "destructive": True,
                 "change": {"op": "FLUSHDB", "backup": "/runs/y/backups/redis-dump.rdb"}}]}]}],
    }))
    result = CliRunner().invoke(cli, ["restore", run_id, "--approve"], env=env)
    assert result.exit_code == 2, result.output
    assert "no restore entry point" in result.output and "/runs/y/backups/redis-dump.rdb" in result.output
    assert fake.requests == []  # no fix of resource_exhaustion ran


def test_restore_runs_the_fix_flow_with_the_backups_of_the_run(env: dict[str, str], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine()
    monkeypatch.setattr(cli_module, "_engine", lambda settings, catalog: fake)
    source = fixed_report(Store(Path(env["OCTOCTL_STATE_DIR"]) / "runs"))
    result = CliRunner().invoke(cli, ["restore", source.run_id, "--approve", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    (request,) = fake.requests
    assert request.command == "restore" and request.approve and not request.dry_run
    assert [p.role for p in request.procedures] == ["data_corruption"]
    assert request.extra_vars == {"data_corruption_restore_from": {"lab": "/runs/x/backups/a.dump"}}
    assert request.limit == "lab" and request.inventory == Path("/inv/lab")


def test_restore_of_a_run_without_backup_is_a_usage_error(env: dict[str, str]) -> None:
    source = fixed_report(Store(Path(env["OCTOCTL_STATE_DIR"]) / "runs"), backup=None)
    result = CliRunner().invoke(cli, ["restore", source.run_id], env=env)
    assert result.exit_code == 2 and "took no backup" in result.output


def test_prevent_passes_approve(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine()
    monkeypatch.setattr(cli_module, "_engine", lambda settings, catalog: fake)
    result = CliRunner().invoke(cli, ["prevent", "data-corruption", "--approve"], env=env)
    assert result.exit_code == 0, result.output
    assert fake.requests[0].approve is True


class Recorder:
    def __init__(self) -> None:
        self.specs: list[RunSpec] = []

    def check_inventory(self, inventory: Path, limit: str | None = None) -> list[str]:
        return ["lab"]

    def run(self, spec: RunSpec, targets: list[str] | None = None) -> RunOutcome:
        self.specs.append(spec)
        xv = spec.extravars
        result = {"procedure": "data_corruption", "platform": "compose", "phase": xv["octollm_phase"],
                  "findings": [], "escalation": {"level": None}}
        event = {"event": "playbook_on_stats", "event_data": {
            "artifact_data": {"octollm_report": {"lab": {"data_corruption": result}}}, "dark": {}, "failures": {},
            "processed": {"lab": 1}, "ok": {"lab": 1}, "changed": {}, "skipped": {}, "ignored": {}, "rescued": {}}}
        outcome = outcome_from_events([event], 0, "successful")
        check_outcome(outcome, targets or [], spec.playbook, "test")
        return outcome


def test_the_run_directory_extra_vars_and_prevent_approval_reach_the_playbook(tmp_path: Path) -> None:
    for phase in ("diagnose", "resolve", "prevent"):
        tasks = tmp_path / "c" / "ansible_collections" / "octollm" / "remediation" / "roles" / "data_corruption"
        (tasks / "tasks").mkdir(parents=True, exist_ok=True)
        (tasks / "tasks" / f"{phase}.yml").write_text("[]\n")
    settings = Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_COLLECTIONS_PATH": str(tmp_path / "c"),
                                  "OCTOCTL_STATE_DIR": str(tmp_path / "state")})
    runner = Recorder()
    engine = Engine(settings, CATALOG, Store(settings.runs_dir), runner)
    procedures = [CATALOG.get("data_corruption")]
    report = engine.prevent(Request(command="prevent", procedures=procedures, inventory=Path("inv"), approve=True))
    spec = runner.specs[-1]
    assert spec.extravars["octollm_approve"] is True
    assert spec.extravars["octollm_run_dir"] == str(settings.runs_dir / report.run_id)
    engine.diagnose(Request(command="diagnose", procedures=procedures, inventory=Path("inv"), approve=True))
    assert runner.specs[-1].extravars["octollm_approve"] is False  # diagnose never approves anything
    engine.fix(Request(command="restore", procedures=procedures, inventory=Path("inv"), dry_run=True,
                       extra_vars={"data_corruption_restore_from": {"lab": "/b.dump"}}))
    assert runner.specs[-1].extravars["data_corruption_restore_from"] == {"lab": "/b.dump"}
