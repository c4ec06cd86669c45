"""The lab's fault registry (lab/ctl/octollm_labctl/faults) and `octoctl lab` over it, without Docker."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from octoctl.cli import cli
from octoctl.errors import ExitCode
from octoctl.lab_cli import EXIT_CODES
from octollm_labctl import Kind, LabError, faults
from octollm_labctl.faults import COMPONENTS, FAULTS, LISTED

LAB_TOOLING = Path(faults.__file__).resolve().parents[1]


def test_every_fault_is_registered_once_by_the_module_of_its_component() -> None:
    registered = [fault for module in COMPONENTS for fault in module.FAULTS]
    assert len(registered) == len(FAULTS) == 28
    for module in COMPONENTS:
        assert module.__name__ == f"octollm_labctl.faults.{module.COMPONENT}"
        assert {fault.component for fault in module.FAULTS} == {module.COMPONENT}
    assert {module.COMPONENT for module in COMPONENTS} >= {"containers", "redis", "postgres", "app", "llm"}


def test_the_listing_keeps_the_order_faults_were_added_in() -> None:
    assert len(set(LISTED)) == len(LISTED) and set(LISTED) <= set(FAULTS)
    assert list(FAULTS)[: len(LISTED)] == list(LISTED)


def test_an_unknown_fault_is_a_usage_error() -> None:
    with pytest.raises(LabError, match="unknown fault 'nope'") as err:
        faults.get("nope")
    assert err.value.kind is Kind.USAGE


def test_the_lab_tooling_never_imports_octoctl() -> None:
    for path in LAB_TOOLING.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] == "octoctl"], f"{path} imports {names}"
    code = ("import sys, octollm_labctl, octollm_labctl.faults; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'octoctl'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


def test_every_kind_of_lab_error_has_an_exit_status() -> None:
    assert set(EXIT_CODES) == set(Kind)
    assert EXIT_CODES[Kind.USAGE] == ExitCode.USAGE and EXIT_CODES[Kind.ENVIRONMENT] == ExitCode.ENVIRONMENT


def test_a_lab_error_becomes_octoctls_message_and_exit_status(tmp_path: Path) -> None:
    """An arm that does not exist is refused before the lab is touched: exit 2, octoctl's one-line error."""
    env = {"OCTOLLM_LAB_STATE": str(tmp_path / "lab"), "OCTOCTL_DEBUG": ""}
    result = CliRunner().invoke(cli, ["lab", "break", "unhealthy-arm", "no-such-arm"], env=env)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "octoctl: error: unknown arm 'no-such-arm'; one of planner-arm" in result.output
    assert not (tmp_path / "lab" / "faults.json").exists()


def test_down_checks_docker_heals_every_fault_then_stops_the_lab(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    from octollm_labctl import Lab

    calls: list[str] = []
    monkeypatch.setattr(Lab, "require_docker", lambda self: calls.append("require_docker"))
    monkeypatch.setattr(faults, "heal_all", lambda lab: calls.append("heal_all") or [])
    monkeypatch.setattr(Lab, "down", lambda self, volumes=False: calls.append(f"down volumes={volumes}"))
    result = CliRunner().invoke(cli, ["lab", "down", "--volumes"], env={"OCTOLLM_LAB_STATE": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert calls == ["require_docker", "heal_all", "down volumes=True"]


def test_healing_the_lab_closes_the_tasks_its_outages_left_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """heal --all closes the tasks whose dispatch a fault's outage or restart lost: without progress for a minute,
    or since before the orchestrator's container started; a task in flight stays (a throwaway PostgreSQL)."""
    import psycopg2

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kubernetes"))
    from postgres_standin import postgres, sql

    from octollm_labctl.faults import common
    from octollm_labctl.faults import postgres as pg_faults

    with postgres(schema=True) as port:
        sql(port, "INSERT INTO tasks (task_id, goal, status, updated_at) VALUES"
                  " ('old', 'g', 'running', now() - interval '5 minutes'),"
                  " ('before-start', 'g', 'running', now() - interval '20 seconds'),"
                  " ('in-flight', 'g', 'running', now() - interval '5 seconds'),"
                  " ('progressing', 'g', 'running', now() - interval '5 minutes'),"
                  " ('done', 'g', 'completed', now() - interval '5 minutes')",
            "INSERT INTO action_log (task_id, action, timestamp) VALUES ('progressing', 'routed', now())")
        started = sql(port, "SELECT to_char((now() - interval '10 seconds') AT TIME ZONE 'UTC',"
                            " 'YYYY-MM-DD\"T\"HH24:MI:SS.US000\"Z\"')")[0][0]  # Docker's StartedAt form
        monkeypatch.setattr(pg_faults, "pg_admin", lambda lab: psycopg2.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="octollm"))
        monkeypatch.setattr(common, "containers_of", lambda lab, service: ["c-orchestrator"])
        monkeypatch.setattr(common, "inspect", lambda container: {"State": {"StartedAt": started}})
        assert sorted(pg_faults.close_lost_tasks(object())) == ["before-start", "old"]
        assert sql(port, "SELECT task_id, status FROM tasks ORDER BY task_id") == [
            ("before-start", "failed"), ("done", "completed"), ("in-flight", "running"), ("old", "failed"),
            ("progressing", "running")]
        monkeypatch.setattr(pg_faults, "pg_admin", lambda lab: (_ for _ in ()).throw(OSError("refused")))
        assert pg_faults.close_lost_tasks(object()) == []  # PostgreSQL away: nothing, no error
