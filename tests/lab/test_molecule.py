"""Every Molecule scenario under molecule/ runs against the lab (inject, diagnose, fix, idempotence, verify).

Molecule finds the shared configuration, .config/molecule/config.yml, without -c: its sequence runs the shared
playbooks of molecule/shared/ (inject, diagnosis, resolve, resolve again, health, heal), which take the fault and
the procedure from the scenario's molecule.yml and include its expectation files. A scenario whose molecule.yml links
inventory/lab-minimal runs on the lab's minimal profile (marker minimal), the others on the full lab (marker lab)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
# What a scenario's directory holds: its statement and its expectations (molecule/shared/tasks/scenario.yml).
REQUIRED = {"molecule.yml", "tasks/diagnosis.yml", "tasks/resolved.yml", "tasks/health.yml"}
OPTIONAL = {"tasks/injected.yml", "tasks/before_resolve.yml"}
OWN_STEPS = {"high_latency_hop_compose": {"human_fix.yml", "tasks/planner_calls.yml"}}  # D ends with a human's fix
# Scenarios that run on the lab's minimal profile: the fixes proven on a deployment laid out as this project's is not.
ON_MINIMAL = {"service_unavailable_crash_compose", "service_unavailable_oom_compose",
              "database_connections_leak_compose", "llm_api_ratelimit_compose"}


def inventory_of(scenario: str) -> str:
    """The inventory a scenario links (the shared configuration's inventory/lab unless its molecule.yml says)."""
    links = (yaml.safe_load((ROOT / "molecule" / scenario / "molecule.yml").read_text())["provisioner"]
             .get("inventory") or {}).get("links") or {"hosts": "inventory/lab/hosts.yml"}
    return Path(links["hosts"]).parent.name


def scenario_param(scenario: str) -> Any:
    return pytest.param(scenario, marks=pytest.mark.minimal if inventory_of(scenario) == "lab-minimal"
                        else pytest.mark.lab)


def failure_excerpt(output: str, head: int = 5000, tail: int = 1500) -> str:
    """The failed task from its header (its assertion comes first), then the tail: CI shows only a part of the log."""
    at = max(output.rfind("fatal: ["), output.rfind("failed: ["))
    if at < 0:
        return output[-(head + tail):]
    start = output.rfind("TASK [", 0, at)
    start = at if start < 0 else start
    return output[start:start + head] + "\n[...]\n" + output[-tail:]


def test_scenarios_state_their_fault_and_keep_only_their_expectations() -> None:
    """Lab-free: the shared configuration is where Molecule looks for it; each scenario names a procedure role and a
    fault of the lab's registry, and its directory holds nothing but its statement and its expectations."""
    from octollm_labctl.faults import FAULTS

    assert (ROOT / ".config" / "molecule" / "config.yml").is_file()
    assert not (ROOT / "molecule" / "base.yml").exists()
    assert "cache_performance_compose" in SCENARIOS
    for scenario in SCENARIOS:
        directory = ROOT / "molecule" / scenario
        files = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
        assert files >= REQUIRED, (scenario, REQUIRED - files)
        assert not files - REQUIRED - OPTIONAL - OWN_STEPS.get(scenario, set()), (scenario, files)
        statement = yaml.safe_load((directory / "molecule.yml").read_text())["provisioner"]["octollm"]
        assert (ROOT / "roles" / statement["procedure"] / "meta" / "argument_specs.yml").is_file(), scenario
        assert statement["fault"] in FAULTS, scenario
        assert inventory_of(scenario) == ("lab-minimal" if scenario in ON_MINIMAL else "lab"), scenario


@pytest.mark.parametrize("scenario", [scenario_param(s) for s in SCENARIOS])
@pytest.mark.molecule
def test_molecule_scenario(healthy_lab, scenario: str) -> None:  # type: ignore[no-untyped-def]
    """A scenario starts from the healed, settled lab (its sequence begins with the fault) and leaves it so."""
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1", NO_COLOR="1")
    proc = subprocess.run(
        [str(Path(venv_bin) / "molecule"), "test", "-s", scenario],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"molecule test -s {scenario} failed:\n{failure_excerpt(proc.stdout + proc.stderr)}"
