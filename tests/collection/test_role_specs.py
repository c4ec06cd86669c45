"""The keys of each role's defaults and of its argument spec stay identical (CONVENTIONS.md, "Roles")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
PROCEDURE_ENTRY_POINTS = {"main", "diagnose", "resolve", "prevent"}
EXTRA_ENTRY_POINTS = {"data_corruption": {"restore"}}
# every role on disk: common has its own entry points, each procedure role the four of the contract (and extras)
ENTRY_POINTS = {
    role.name: ({"main", "detect_platform", "gather", "report"} if role.name == "common"
                else PROCEDURE_ENTRY_POINTS | EXTRA_ENTRY_POINTS.get(role.name, set()))
    for role in sorted(ROLES.iterdir()) if (role / "meta" / "argument_specs.yml").exists()
}


@pytest.mark.parametrize("role", sorted(ENTRY_POINTS))
def test_defaults_and_argument_specs_agree(role):
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert set(specs) == ENTRY_POINTS[role]
    for entry, spec in specs.items():
        assert set(spec["options"]) == set(defaults), f"{role}:{entry}"
        for name, option in spec["options"].items():
            assert option.get("description"), f"{role}:{entry}:{name} has no description"
            if "default" in option:
                assert option["default"] == defaults[name], f"{role}:{entry}:{name}"


@pytest.mark.parametrize("role", sorted(ENTRY_POINTS))
def test_public_variables_are_prefixed_and_commented(role):
    lines = (ROLES / role / "defaults" / "main.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith((" ", "#", "-", "---")):
            name = line.split(":", 1)[0]
            assert name.startswith(f"{role}_"), name
            assert lines[index - 1].startswith("#"), f"{name} has no comment line"
    private = yaml.safe_load((ROLES / role / "vars" / "main.yml").read_text()) or {}
    assert all(name.startswith(f"__{role}_") for name in private), sorted(private)


def test_task_names_carry_the_phase():
    for path in (ROLES / "cache_performance" / "tasks").rglob("*.yml"):
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            name = task.get("name", "")
            assert name.startswith("Cache | "), f"{path.name}: {name!r}"
            assert name.split(" | ")[1] in {"MAIN", "DIAGNOSE", "RESOLVE", "PREVENT", "APPLY", "NEEDS"}, name


def _tasks(items):
    for task in items:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key) or [])
