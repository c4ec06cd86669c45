"""The keys of each role's defaults and of its argument spec stay identical (CONVENTIONS.md, "Roles")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
PROCEDURE_ENTRY_POINTS = {"main", "diagnose", "resolve", "prevent"}
EXTRA_ENTRY_POINTS = {"data_corruption": {"restore"}}
# the shared flow's phases, and the helpers a Kubernetes action file enters (rollout restart, wait for rollouts)
COMMON_ENTRY_POINTS = {"main", "diagnose", "resolve", "prevent", "rollout_restart", "wait_rollout"}
# every role on disk: common has its own entry points, each procedure role the four of the contract (and extras)
ENTRY_POINTS = {
    role.name: (COMMON_ENTRY_POINTS if role.name == "_common"
                else PROCEDURE_ENTRY_POINTS | EXTRA_ENTRY_POINTS.get(role.name, set()))
    for role in sorted(ROLES.iterdir()) if (role / "meta" / "argument_specs.yml").exists()
}
# every procedure role: it holds only what is its own and enters the shared flow (octollm.remediation._common)
ON_THE_FLOW = sorted(role for role in ENTRY_POINTS if role != "_common")


def test_every_procedure_has_a_role() -> None:
    assert sorted([
        "cache_performance", "data_corruption", "database_connections", "high_latency", "llm_api", "memory_leaks",
        "resource_exhaustion", "security_violations", "service_unavailable", "task_routing"]) == ON_THE_FLOW


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
            # the shared flow also holds the run-wide octollm_* switches a job sets (octollm_fail_when_human_needed)
            assert name.startswith(f"{role}_") or (role == "_common" and name.startswith("octollm_")), name
            assert lines[index - 1].startswith("#"), f"{name} has no comment line"
    private_file = ROLES / role / "vars" / "main.yml"
    private = (yaml.safe_load(private_file.read_text()) or {}) if private_file.exists() else {}
    assert all(name.startswith(f"__{role}_") for name in private), sorted(private)


@pytest.mark.parametrize("role", ON_THE_FLOW)
def test_a_procedure_role_holds_only_what_is_its_own(role):
    """Defaults, argument specs, README, entry files of a few lines that enter the shared flow, and the task files
    of its actions (tasks/<platform>/actions/); no vars/, no flow of its own."""
    base = ROLES / role
    files = {str(path.relative_to(base)) for path in base.rglob("*") if path.is_file()}
    allowed_fixed = {"README.md", "defaults/main.yml", "meta/main.yml", "meta/argument_specs.yml"}
    entries = {f"tasks/{entry}.yml" for entry in ENTRY_POINTS[role]}
    actions = {name for name in files if name.startswith(("tasks/compose/actions/", "tasks/kubernetes/actions/"))}
    assert files - allowed_fixed - entries - actions == set()
    for entry in entries:
        tasks = yaml.safe_load((base / entry).read_text())
        assert len(tasks) == 1 and tasks[0]["ansible.builtin.include_role"]["name"] == "octollm.remediation._common"
        assert tasks[0]["vars"]["_common_procedures"] == [role]


@pytest.mark.parametrize("role", ON_THE_FLOW)
def test_action_task_names_carry_the_action_id(role):
    for path in (ROLES / role / "tasks").glob("*/actions/*.yml"):
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            assert task.get("name", "").startswith("{{ _common_action.id }} | APPLY | "), f"{path}: {task.get('name')}"


def _tasks(items):
    for task in items:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key) or [])
