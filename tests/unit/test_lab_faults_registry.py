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
    assert len(registered) == len(FAULTS) == 26
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
