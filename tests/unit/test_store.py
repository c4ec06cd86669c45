"""Run storage, retention, and the settings that place it."""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from octoctl.config import DEFAULT_PLAYBOOK, REPO_ROOT, Settings
from octoctl.errors import ExitCode, OctoctlError
from octoctl.models import RunReport
from octoctl.store import Store, new_run_id, run_id_time

NOW = datetime(2026, 11, 28, 18, 0, 0, tzinfo=UTC)


def _report(run_id: str) -> RunReport:
    return RunReport(run_id=run_id, command="diagnose", inventory="inv", start=NOW, status="healthy", exit_code=0)


def test_run_id_format_and_time() -> None:
    run_id = new_run_id(NOW)
    assert re.fullmatch(r"20261128T180000-[0-9a-f]{6}", run_id)
    assert run_id_time(run_id) == NOW
    assert run_id_time("nonsense") is None


def test_save_and_load(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs")
    run_id = store.create(NOW)
    assert store.runner_dir(run_id).is_dir()
    path = store.save(_report(run_id))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.run_dir(run_id).stat().st_mode) == 0o700
    assert store.load(run_id) == _report(run_id)
    assert store.load("latest").run_id == run_id
    assert store.list_runs() == [run_id]


@pytest.mark.parametrize("run_id", ["20261128T180000-abcdef", "../../etc/passwd", "yesterday"])
def test_unknown_or_malformed_run_ids_are_usage_errors(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(OctoctlError) as caught:
        Store(tmp_path / "runs").load(run_id)
    assert caught.value.exit_code == ExitCode.USAGE


def test_latest_without_runs(tmp_path: Path) -> None:
    with pytest.raises(OctoctlError, match="no run saved yet"):
        Store(tmp_path / "runs").load("latest")


def test_corrupt_report_is_octoctls_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs")
    run_id = store.create(NOW)
    (store.run_dir(run_id) / "report.json").write_text("{not json")
    with pytest.raises(OctoctlError) as caught:
        store.load(run_id)
    assert caught.value.exit_code == ExitCode.INTERNAL


def test_prune_by_age(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs", retention_days=30, max_runs=0)
    old = store.create(NOW - timedelta(days=31))
    recent = store.create(NOW - timedelta(days=29))
    (store.runs_dir / "not-a-run").mkdir()
    assert store.prune(NOW) == [old]
    assert not store.run_dir(old).exists() and store.run_dir(recent).exists()
    assert (store.runs_dir / "not-a-run").exists()


def test_prune_by_count_at_each_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs", retention_days=0, max_runs=3)
    made = [store.create(NOW + timedelta(seconds=i)) for i in range(5)]
    remaining = sorted(p.name for p in store.runs_dir.iterdir())
    assert remaining == made[-3:]


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs", retention_days=0, max_runs=0)
    store.create(NOW - timedelta(days=3650))
    assert store.prune(NOW) == []


def test_settings_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path)})
    assert settings.inventory == REPO_ROOT / "inventory" / "lab"
    assert settings.runs_dir == tmp_path / ".local" / "state" / "octoctl" / "runs"
    assert settings.retention_days == 30 and settings.max_runs == 200
    assert settings.playbook == DEFAULT_PLAYBOOK == "octollm.remediation.run"


def test_settings_from_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "xdg"),
        "OCTOCTL_RETENTION_DAYS": "7", "OCTOCTL_MAX_RUNS": "0",
        "OCTOCTL_COLLECTIONS_PATH": str(tmp_path / "c"), "OCTOCTL_INVENTORY": str(tmp_path / "inv"),
    })
    assert settings.runs_dir == tmp_path / "xdg" / "octoctl" / "runs"
    assert (settings.retention_days, settings.max_runs) == (7, 0)
    assert settings.collections_path == str(tmp_path / "c")
    assert settings.inventory == tmp_path / "inv"
    explicit = Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_STATE_DIR": str(tmp_path / "s")})
    assert explicit.runs_dir == tmp_path / "s" / "runs"


def test_collections_path_falls_back_to_repo_dot_collections(tmp_path: Path) -> None:
    (tmp_path / ".collections").mkdir()
    assert Settings.from_env({"HOME": str(tmp_path)}, repo_root=tmp_path).collections_path == str(
        tmp_path / ".collections"
    )
    other = tmp_path / "bare"
    other.mkdir()
    assert Settings.from_env({"HOME": str(tmp_path)}, repo_root=other).collections_path is None


def test_role_lookup_through_the_collections_path(tmp_path: Path) -> None:
    tasks = tmp_path / "ansible_collections" / "octollm" / "remediation" / "roles" / "llm_api" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "diagnose.yml").write_text("[]\n")
    settings = Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_COLLECTIONS_PATH": str(tmp_path)})
    assert settings.role_has_phase("llm_api", "diagnose")
    assert not settings.role_has_phase("llm_api", "resolve")
    assert not settings.role_has_phase("cache_performance", "diagnose")


@pytest.mark.parametrize("value", ["-1", "thirty"])
def test_bad_retention_is_a_usage_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(OctoctlError) as caught:
        Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_RETENTION_DAYS": value})
    assert caught.value.exit_code == ExitCode.USAGE
