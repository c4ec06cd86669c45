"""The symptom catalog: complete, consistent with design.md, validated on load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from octoctl.catalog import load_catalog, parse_catalog
from octoctl.config import PACKAGE_DIR
from octoctl.errors import ExitCode, OctoctlError

ROLES = {
    "service_unavailable", "high_latency", "database_connections", "memory_leaks", "task_routing",
    "llm_api", "cache_performance", "resource_exhaustion", "security_violations", "data_corruption",
}
RANK_ORDER = [
    "resource_exhaustion", "database_connections", "data_corruption", "cache_performance", "llm_api",
    "service_unavailable", "task_routing", "memory_leaks", "high_latency", "security_violations",
]
LEVELS = {
    "L1": {"service_unavailable", "high_latency", "database_connections", "cache_performance", "task_routing",
           "llm_api"},
    "L2": {"memory_leaks", "resource_exhaustion", "data_corruption"},
    "L3": {"security_violations"},
}
SEED_ALERTS = {
    "ServiceDown": {"service_unavailable"}, "ArmDown": {"service_unavailable"},
    "HighRequestLatency": {"high_latency"}, "PostgreSQLDown": {"database_connections"},
    "HighDatabaseConnections": {"database_connections"}, "HighMemoryUsage": {"memory_leaks", "resource_exhaustion"},
    "HighLLMAPIErrorRate": {"llm_api"}, "CacheMissRate": {"cache_performance"},
    "HighCPUUsage": {"resource_exhaustion"}, "DiskSpaceLow": {"resource_exhaustion"},
    "SecurityViolationDetected": {"security_violations"},
}


def test_all_ten_procedures_with_their_roles() -> None:
    catalog = load_catalog()
    assert {p.name for p in catalog.procedures} == ROLES
    assert {p.role for p in catalog.procedures} == ROLES
    assert all(p.fqcn == f"octollm.remediation.{p.name}" for p in catalog.procedures)


def test_rank_is_root_cause_first() -> None:
    assert load_catalog().names() == RANK_ORDER


def test_levels_follow_design() -> None:
    catalog = load_catalog()
    for level, names in LEVELS.items():
        assert {p.name for p in catalog.procedures if p.level == level} == names


def test_seed_alerts_map_to_their_procedures() -> None:
    catalog = load_catalog()
    for alert, names in SEED_ALERTS.items():
        assert {p.name for p in catalog.by_alert(alert)} == names, alert


def test_scenarios_have_titles_and_a_fix_mode() -> None:
    catalog = load_catalog()
    for procedure in catalog.procedures:
        assert procedure.symptoms and procedure.scenarios
        for scenario in procedure.scenarios:
            assert scenario.title and scenario.fix in ("auto", "disruptive", "report")
            assert scenario.auto_fixable != scenario.report_only
    cache = catalog.get("cache_performance")
    assert [s.id for s in cache.scenarios] == ["A", "B", "C", "D"]
    assert cache.scenario("a") is not None and cache.scenario("a").title == "Cache eviction policy issues"
    assert cache.scenario("A").auto_fixable and not cache.scenario("A").disruptive
    assert cache.scenario("B").report_only
    assert catalog.get("security_violations").scenario("A").report_only


def _catalog_text(mutate) -> str:  # type: ignore[no-untyped-def]
    data = yaml.safe_load((PACKAGE_DIR / "catalog.yml").read_text())
    mutate(data)
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d["procedures"][1].update(rank=1), "ranks"),
        (lambda d: d["procedures"][0]["scenarios"][0].update(fix="maybe"), "fix"),
        (lambda d: d["procedures"][0]["aliases"].append("cache"), "selects both"),
        (lambda d: d["procedures"][0].update(colour="red"), "colour"),
        (lambda d: d["procedures"][0].update(alerts=["high cpu"]), "alert"),
        (lambda d: d.update(version=1), "version"),
        (lambda d: d["procedures"][0].update(messages=["(unclosed"]), "regex"),
        (lambda d: d["procedures"][0].update(components=["mainframe"]), "unknown components"),
    ],
)
def test_invalid_catalogs_are_rejected(mutate, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OctoctlError) as caught:
        parse_catalog(_catalog_text(mutate))
    assert caught.value.exit_code == ExitCode.INTERNAL
    assert words in caught.value.message


def test_unparsable_catalog_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yml"
    path.write_text("version: 2\nprocedures: [\n")
    with pytest.raises(OctoctlError, match="not valid YAML"):
        load_catalog(path)


def test_lookup_by_names_and_aliases() -> None:
    catalog = load_catalog()
    assert catalog.by_name("Data-Corruption").name == "data_corruption"
    assert catalog.by_name("cache performance").name == "cache_performance"
    assert catalog.by_name("db").name == "database_connections"
    assert catalog.by_name("nothing") is None
    ordered = catalog.in_rank_order([catalog.get("high_latency"), catalog.get("resource_exhaustion")])
    assert [p.name for p in ordered] == ["resource_exhaustion", "high_latency"]


def test_the_collection_ranks_procedures_as_the_catalog_does() -> None:
    """The shared flow applies actions in the registry's order: the same root-cause-first order as octoctl's."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "collection/plugins/plugin_utils/procedure.py").read_text()
    names = re.findall(r'^    "([a-z_]+)",$', text.split("NAMES = (")[1].split(")")[0], re.M)
    assert names == [p.name for p in load_catalog().procedures]
