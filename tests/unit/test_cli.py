"""The command line: output, formats and every exit status reachable without the lab."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner, Result

from octoctl import cli as cli_module
from octoctl.cli import cli
from octoctl.config import PACKAGE_DIR
from octoctl.models import RunReport, run_report_schema
from octoctl.render import FORMATS, render_report
from octoctl.store import Store

SCHEMA = json.loads((PACKAGE_DIR / "schema" / "run-report-v1.json").read_text())


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    tasks = tmp_path / "c" / "ansible_collections" / "octollm" / "remediation" / "roles" / "cache_performance" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "diagnose.yml").write_text("[]\n")
    return {"OCTOCTL_STATE_DIR": str(tmp_path / "state"), "OCTOCTL_COLLECTIONS_PATH": str(tmp_path / "c"),
            "OCTOCTL_DEBUG": ""}


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env)


def _save_sample(env: dict[str, str]) -> RunReport:
    store = Store(Path(env["OCTOCTL_STATE_DIR"]) / "runs")
    run_id = store.create()
    data: dict[str, Any] = {
        "run_id": run_id, "command": "fix", "argv": ["cache"], "phase": "resolve",
        "procedures": ["cache_performance"], "inventory": "inventory/lab", "dry_run": False, "approve": True,
        "start": "2026-11-28T18:00:00Z", "end": "2026-11-28T18:00:07Z", "status": "needs_human", "exit_code": 1,
        "notes": ["disruptive steps need --approve (no terminal to ask on)"],
        "targets": [{
            "target": "lab", "status": "needs_human", "exit_code": 1,
            "procedures": [{
                "procedure": "cache_performance", "platform": "compose", "phase": "resolve",
                "findings": [
                    {"check": "redis.eviction_policy", "title": "policy suits a cache", "status": "problem",
                     "observed": "noeviction", "expected": ["allkeys-lru", "allkeys-lfu"], "scenario": "A"},
                    {"check": "redis.hit_rate", "status": "warning", "observed": 0.42, "expected": ">= 0.5"},
                    {"check": "redis.info", "status": "unknown",
                     "error": {"kind": "timeout", "message": "no answer in 5s"}},
                    {"check": "redis.keys", "status": "ok", "observed": 1200},
                ],
                "scenarios": [{"id": "A", "title": "Cache eviction policy issues", "holds": True,
                               "reason": "noeviction with maxmemory set"},
                              {"id": "B", "title": "Inefficient cache keys", "holds": False}],
                "actions": [
                    {"id": "cache_performance.A.set_eviction_policy", "scenario": "A", "title": "set policy",
                     "resource": "redis:maxmemory-policy", "status": "applied",
                     "change": {"key": "maxmemory-policy", "old": "noeviction", "new": "allkeys-lru"}},
                    {"id": "x.sql", "title": "delete orphans", "status": "awaiting_approval", "destructive": True,
                     "change": {"sql": "DELETE FROM r WHERE x", "rows": 3}},
                    {"id": "x.restart", "title": "restart | redis", "status": "report",
                     "change": {"container": "octollm-redis-1", "op": "restart"}},
                ],
                "verification": {"healthy": False, "findings": [{"check": "redis.hit_rate", "status": "problem"}]},
                "escalation": {"level": "L2", "reason": "problems remain after the fix"},
                "verdict": {"status": "needs_human", "exit_code": 1, "reasons": ["the fix failed verification"]},
            }],
        }, {
            "target": "far", "reachable": False, "status": "environment", "exit_code": 3,
            "errors": [{"kind": "unreachable", "message": "ssh: connect to host 127.0.0.1 port 1: refused"}],
        }],
    }
    report = RunReport.model_validate(data)
    store.save(report)
    return report


# --- commands that need no Ansible ---------------------------------------------------------------


def test_help_documents_exit_statuses(env: dict[str, str]) -> None:
    for args in (["--help"], ["fix", "--help"], ["diagnose", "-h"]):
        result = invoke(args, env)
        assert result.exit_code == 0
        assert "Exit statuses" in result.stdout and "4  octoctl's own error" in result.stdout
    assert "--inventory" in invoke(["symptoms", "--help"], env).stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_symptoms(env: dict[str, str], fmt: str) -> None:
    result = invoke(["symptoms", "--format", fmt], env)
    assert result.exit_code == 0, result.output
    assert "cache_performance" in result.stdout and "CacheMissRate" in result.stdout
    if fmt == "json":
        rows = json.loads(result.stdout)
        assert [r["rank"] for r in rows] == list(range(1, 11))
        available = {r["procedure"]: r["available"] for r in rows}
        assert available["cache_performance"] is True and available["llm_api"] is False
    if fmt == "table":
        assert "llm_api - LLM API Failures [L1]  (not yet available)" in result.stdout


def test_plan_shows_the_choice_and_why(env: dict[str, str]) -> None:
    result = invoke(["plan", "redis hit rate low", "--format", "json"], env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["selected"] == ["cache_performance"]
    assert data["matches"][0]["selected"] and data["matches"][0]["reasons"]
    table = invoke(["plan", "HTTP 503 from API", "CacheMissRate"], env)
    assert table.exit_code == 0
    assert "runs in this order (root causes first): cache_performance, service_unavailable" in table.stdout
    for fmt in ("yaml", "markdown"):
        assert invoke(["plan", "db", "--format", fmt], env).exit_code == 0


def test_schema_prints_the_published_schema(env: dict[str, str]) -> None:
    result = invoke(["schema"], env)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == SCHEMA == run_report_schema()
    assert yaml.safe_load(invoke(["schema", "--format", "yaml"], env).stdout) == SCHEMA


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_renders_a_stored_run(env: dict[str, str], fmt: str) -> None:
    report = _save_sample(env)
    result = invoke(["report", report.run_id, "--format", fmt], env)
    assert result.exit_code == 0, result.output
    out = result.stdout
    if fmt == "json":
        data = json.loads(out)
        jsonschema.validate(data, SCHEMA)
        assert RunReport.model_validate(data) == report
    elif fmt == "yaml":
        jsonschema.validate(yaml.safe_load(out), SCHEMA)
    else:
        assert "maxmemory-policy noeviction -> allkeys-lru" in out
        assert "DELETE FROM r WHERE x (rows 3)" in out
        assert "octollm-redis-1 restart" in out
        assert "L2" in out and "unreachable" in out
    if fmt == "table":
        assert "✖ redis.eviction_policy" in out and "⚠ redis.hit_rate" in out and "? redis.info" in out
        assert "✔ redis.keys" in out
        assert "A  Cache eviction policy issues - noeviction with maxmemory set" in out
        assert "Inefficient cache keys" not in out, "only the scenarios that hold are listed"
        assert "verification: NOT healthy" in out
        assert "result: needs human (exit 1" in out
    if fmt == "markdown":
        assert "| problem | redis.eviction_policy | noeviction |" in out
        assert "restart \\| redis" in out


def test_ascii_table_when_the_terminal_cannot_show_symbols(env: dict[str, str]) -> None:
    report = _save_sample(env)
    text = render_report(report, "table", unicode=False)
    assert "XX redis.eviction_policy" in text and "!! redis.hit_rate" in text
    text.encode("ascii")


def test_report_latest(env: dict[str, str]) -> None:
    report = _save_sample(env)
    result = invoke(["report", "latest"], env)
    assert result.exit_code == 0 and report.run_id in result.stdout


# --- exit status 2 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["fix", "cahce"],
        ["plan"],
        ["frobnicate"],
        ["symptoms", "--format", "xml"],
        ["diagnose", "cache", "--all"],
        ["report"],
    ],
)
def test_usage_errors_exit_2(env: dict[str, str], args: list[str]) -> None:
    result = invoke(args, env)
    assert result.exit_code == 2, result.output
    assert "Error" in result.stderr or "error" in result.stderr
    assert "Traceback" not in result.output


def test_a_misspelt_procedure_name_exits_2_with_the_suggestion(env: dict[str, str]) -> None:
    for command in (["plan"], ["diagnose"], ["fix"], ["prevent"]):
        result = invoke([*command, "cahce"], env)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("octoctl: error: no procedure is named 'cahce'; did you mean 'cache'?")
        assert result.stdout == ""


def test_text_that_selects_nothing_with_confidence_plans_every_procedure(env: dict[str, str]) -> None:
    result = invoke(["plan", "banana smoothie", "--format", "json"], env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["confident"] is False and data["unmatched"] == ["banana smoothie"] and len(data["selected"]) == 10
    text = invoke(["plan", "banana smoothie"], env).stdout
    assert "with confidence: every procedure is diagnosed" in text


def test_unknown_run_id_exits_2(env: dict[str, str]) -> None:
    result = invoke(["report", "20261128T180102-abcdef"], env)
    assert result.exit_code == 2 and "no report for run" in result.stderr


def test_missing_inventory_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    result = invoke(["diagnose", "cache", "-i", str(tmp_path / "nowhere")], env)
    assert result.exit_code == 2, result.output
    expected = f"octoctl: error: inventory {tmp_path / 'nowhere'} does not exist (pass -i/--inventory)"
    assert result.stderr.strip() == expected
    assert not (tmp_path / "state" / "runs").exists() or not any((tmp_path / "state" / "runs").iterdir())


def test_unparsable_inventory_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "hosts.yml"
    bad.write_text("all:\n  hosts: [unclosed\n")
    result = invoke(["fix", "cache", "-i", str(bad)], env)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"octoctl: error: cannot read inventory {bad}:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_limit_matching_nothing_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    lab:\n      ansible_connection: local\n")
    result = invoke(["diagnose", "cache", "-i", str(inventory), "--limit", "nosuchhost"], env)
    assert result.exit_code == 2, result.output
    assert "matches no host" in result.stderr


# --- exit status 3 -------------------------------------------------------------------------------


def test_missing_collection_exits_3(env: dict[str, str], tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    lab:\n      ansible_connection: local\n")
    result = invoke(["diagnose", "cache", "-i", str(inventory)], {**env, "OCTOCTL_COLLECTIONS_PATH": str(tmp_path)})
    assert result.exit_code == 3, result.output
    assert "collection octollm.remediation not found" in result.stderr


def test_missing_ansible_exits_3(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import octoctl.runner

    monkeypatch.setattr(octoctl.runner.shutil, "which", lambda name, path=None: None)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    lab: {}\n")
    result = invoke(["diagnose", "cache", "-i", str(inventory)], env)
    assert result.exit_code == 3, result.output
    assert result.stderr.strip() == (
        "octoctl: error: ansible-inventory not found on PATH: install ansible-core (scripts/setup.sh)")


# --- exit status 4 -------------------------------------------------------------------------------


def _explode() -> None:
    raise RuntimeError("the catalog exploded")


def test_internal_error_exits_4_without_traceback(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "_catalog", _explode)
    result = invoke(["symptoms"], env)
    assert result.exit_code == 4
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == ("octoctl: error: internal error: RuntimeError: the catalog exploded "
                    "(run with --debug for the traceback)")


@pytest.mark.parametrize("args", [["symptoms", "--debug"], ["--debug", "symptoms"]])
def test_internal_error_with_debug_shows_the_traceback(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                       args: list[str]) -> None:
    monkeypatch.setattr(cli_module, "_catalog", _explode)
    result = invoke(args, env)
    assert result.exit_code == 4
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "octoctl: error: internal error: RuntimeError: the catalog exploded")


def test_debug_from_the_environment(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "_catalog", _explode)
    result = invoke(["symptoms"], {**env, "OCTOCTL_DEBUG": "1"})
    assert result.exit_code == 4 and "Traceback" in result.stderr


def test_main_exits_with_the_status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["octoctl", "plan", "cahce"])
    with pytest.raises(SystemExit) as caught:
        cli_module.main()
    assert caught.value.code == 2
    assert capsys.readouterr().err.startswith("octoctl: error: no procedure is named 'cahce'")
