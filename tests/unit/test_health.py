"""octoctl health: the table, its exit statuses and the flow (a recorded lab report and a scripted runner; no lab)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from octoctl import health
from octoctl.cli import cli
from octoctl.config import Settings
from octoctl.engine import Engine, Request
from octoctl.errors import ExitCode
from octoctl.exitstatus import judge_target
from octoctl.models import RunReport
from octoctl.store import Store
from tests.unit.test_engine_flows import CATALOG, ScriptedRunner, stats_event

RECORDED = json.loads((Path(__file__).parent / "data" / "health_report.json").read_text())
SERVICES = [row["service"] for row in RECORDED["targets"][0]["stack"]["health"]["services"]]


def report(change: Any = None) -> RunReport:
    data = copy.deepcopy(RECORDED)
    if change is not None:
        change(data["targets"][0])
    parsed = RunReport.model_validate(data)
    for target in parsed.targets:  # as the engine does before the table's rows are judged
        judge_target(target)
    return health.judge(parsed)


def row(target: dict[str, Any], service: str) -> dict[str, Any]:
    return next(r for r in target["stack"]["health"]["services"] if r["service"] == service)


def test_the_recorded_healthy_lab_exits_0_with_a_row_per_service() -> None:
    healthy = report()
    assert healthy.exit_code == ExitCode.HEALTHY and len(SERVICES) >= 14
    text = health.render(healthy, "table").splitlines()
    header = next(line for line in text if line.startswith("SERVICE"))
    for heading, _ in health.COLUMNS:
        assert heading in header
    table_rows = [line.split()[0] for line in text[text.index(header) + 1:] if line.split()
                  and line.split()[0] in SERVICES]
    assert table_rows == SERVICES
    assert any(line.startswith("thresholds") for line in text)
    out = json.loads(health.render(healthy, "json"))
    assert [r["service"] for r in out["targets"][0]["services"]] == SERVICES and out["exit_code"] == 0


def test_cells_are_formatted_by_unit() -> None:
    assert health._cell("error_ratio", 0.0512) == "5.1"
    assert health._cell("cache_hit_rate", 0.82) == "82%"
    assert health._cell("p95_seconds", 0.0661) == "0.066s"
    assert health._cell("db_connections", None) == "-"


def test_a_row_that_is_not_ok_exits_1_and_says_why() -> None:
    def slow(target: dict[str, Any]) -> None:
        row(target, "orchestrator").update(status="problem", notes=["P95 7.00s > 5.0s"])

    broken = report(slow)
    assert broken.exit_code == ExitCode.HUMAN_NEEDED and broken.status == "needs_human"
    assert "  orchestrator: P95 7.00s > 5.0s" in health.render(broken, "table").splitlines()

    def unread(target: dict[str, Any]) -> None:
        row(target, "redis").update(status="unknown", notes=["cache hit rate: connection refused"])

    assert report(unread).exit_code == ExitCode.HUMAN_NEEDED


def test_a_service_down_exits_1() -> None:
    def down(target: dict[str, Any]) -> None:
        target["stack"]["down"] = ["redis"]

    assert report(down).exit_code == ExitCode.HUMAN_NEEDED


def test_a_stack_that_cannot_be_reached_exits_3() -> None:
    def unreachable(target: dict[str, Any]) -> None:
        for finding in target["stack"]["findings"]:
            finding.update(status="unknown", error={"kind": "unreachable", "message": "Docker API refused"})
        target["stack"]["health"]["services"] = []

    cut = report(unreachable)
    assert cut.exit_code == ExitCode.ENVIRONMENT
    assert "no health table" in health.render(cut, "table")


def test_no_table_at_all_is_not_healthy() -> None:
    def missing(target: dict[str, Any]) -> None:
        del target["stack"]["health"]

    assert report(missing).exit_code == ExitCode.HUMAN_NEEDED


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    for role in health.PROCEDURES:
        tasks = tmp_path / "c" / "ansible_collections" / "octollm" / "remediation" / "roles" / role / "tasks"
        tasks.mkdir(parents=True, exist_ok=True)
        (tasks / "diagnose.yml").write_text("[]\n")
    return Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_COLLECTIONS_PATH": str(tmp_path / "c"),
                              "OCTOCTL_STATE_DIR": str(tmp_path / "state")})


def test_the_engine_runs_the_health_playbook_read_only(settings: Settings) -> None:
    stack = RECORDED["targets"][0]["stack"]
    runner = ScriptedRunner(lambda xv: [stats_event({"lab": {"stack": stack}})])
    engine = Engine(settings, CATALOG, Store(settings.runs_dir, 30, 10), runner)
    procedures = [p for p in CATALOG.procedures if p.role in health.PROCEDURES]
    done = health.judge(engine.health(Request(command="health", procedures=procedures, inventory=Path("inv")),
                                      health.PLAYBOOK))
    (spec,) = runner.specs
    assert spec.playbook == "octollm.remediation.health" and spec.check_mode
    assert spec.extravars["octollm_approve"] is False
    # the procedures lend their settings only: no "missing result" for them
    assert done.targets[0].errors == [] and done.targets[0].procedures == []
    assert done.exit_code == 0 and len(health.rows_of(done.targets[0])) == len(SERVICES)
    assert Store(settings.runs_dir, 30, 10).load(done.run_id).command == "health"


@pytest.mark.parametrize("args, words", [
    (["health", "--format", "yaml"], "'yaml' is not one of"),
    (["health", "--watch", "0"], "0 is not in the range"),
    (["health", "--watch", "soon"], "'soon' is not a valid integer"),
])
def test_bad_arguments_are_usage_errors(args: list[str], words: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, args, env={"OCTOCTL_STATE_DIR": str(tmp_path)})
    assert result.exit_code == ExitCode.USAGE
    assert words in result.output and "Traceback" not in result.output


def test_watch_refreshes_until_interrupted_and_returns_the_last_status(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    import octoctl.cli as cli_module

    runs: list[Request] = []
    codes = iter([0, 1])

    class FakeEngine:
        def health(self, request: Request, playbook: str) -> RunReport:
            runs.append(request)
            code = next(codes)
            return report((lambda t: row(t, "redis").update(status="problem", notes=["down"])) if code else None)

    sleeps: list[int] = []

    def sleep(seconds: int) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_engine", lambda settings, catalog: FakeEngine())
    monkeypatch.setattr("time.sleep", sleep)
    result = CliRunner().invoke(cli, ["health", "--watch", "7"], env={"OCTOCTL_STATE_DIR": str(tmp_path)})
    assert (len(runs), sleeps) == (2, [7, 7])
    assert result.exit_code == ExitCode.HUMAN_NEEDED, result.output
    assert result.output.count("SERVICE  ") == 2 and "(every 7s; Ctrl-C stops)" in result.output
    assert "  redis: down" in result.output
