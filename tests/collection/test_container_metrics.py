"""The container metrics' presets (``octollm_metrics.containers``: lab, cadvisor, kube-state-metrics) checked on
recorded samples of each exporter (tests/fixtures/container_metrics/<preset>.prom, text exposition format), since
neither cAdvisor nor kube-state-metrics runs here: the selectors the procedures build from the deployment's
description (``context.container_selectors``, memory_leaks' growth query) are evaluated against the samples in
Python, and the series they select must be exactly the deployment's containers, named by the preset's labels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils import deployment
from ansible_collections.octollm.remediation.plugins.plugin_utils import memory_leaks as ml
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings
from prometheus_client.parser import text_string_to_metric_families

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "container_metrics"
COMMON = role_settings("_common")
MIB = 1048576


def samples(preset: str) -> list[tuple[str, dict[str, str], float]]:
    text = (FIXTURES / f"{preset}.prom").read_text()
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def select(selector: str, series: list[tuple[str, dict[str, str], float]]) -> list[dict[str, str]]:
    """The series an instant-vector selector (``name{l="v",l!="v",l=~"re",l!~"re"}``) selects, as PromQL does:
    a missing label is the empty string, regexes are anchored."""
    name, _, rest = selector.partition("{")
    matchers = []
    inner = rest.rstrip("}")
    position = 0
    while position < len(inner):
        found = _MATCHER.match(inner, position)
        assert found, f"cannot parse {selector!r} at {inner[position:]!r}"
        label, op, value = found.groups()
        matchers.append((label, op, re.sub(r"\\(.)", r"\1", value)))
        position = found.end()

    def holds(labels: dict[str, str]) -> bool:
        for label, op, value in matchers:
            have = labels.get(label, "")
            ok = {"=": have == value, "!=": have != value,
                  "=~": re.fullmatch(value, have) is not None, "!~": re.fullmatch(value, have) is None}[op]
            if not ok:
                return False
        return True

    return [labels for metric, labels, _ in series if metric == name.strip() and holds(labels)]


def selectors_of(query: str) -> list[str]:
    """The selectors of ``deriv(<selector>[w]) or deriv(<selector>[w])``."""
    return [re.sub(r"^deriv\((.*)\[[^\]]+\]\)$", r"\1", part.strip()) for part in query.split(" or ")]


def context(services: dict[str, Any], preset: str, project: str = "octollm", **extra: Any) -> Context:
    inventory = dict({"services": services, "compose": {"project": project}, "metrics": {"containers": preset}},
                     **extra)
    return Context(platform="compose", inventory=deployment.describe(inventory, COMMON))


LAB = {"orchestrator": {"url": "http://127.0.0.1:8000"}, "coder-arm": {"url": "http://127.0.0.1:8102"},
       "postgres": {"port": 5432}}
# a stack this project did not write, on Docker with cAdvisor: the Compose project llmstack (the orchestrator is
# its service "api", the coder arm "worker-coder"), PostgreSQL outside Compose found by its Docker label
RENAMED = {"orchestrator": {"compose_service": "api"}, "coder-arm": {"compose_service": "worker-coder"},
           "postgres": {"labels": {"com.example.role": "database"}}}


def test_the_lab_preset_selects_the_lab_projects_containers() -> None:
    ctx = context(LAB, "lab")
    assert ctx.container_selectors("memory") == ['container_memory_working_set_bytes{compose_project="octollm"}']
    query = ml.queries(procedure_settings("memory_leaks"), ctx)[ml.Q_GROWTH]
    assert query == 'deriv(container_memory_working_set_bytes{compose_project="octollm"}[1m])'  # as before
    found = [labels["name"] for selector in selectors_of(query) for labels in select(selector, samples("lab"))]
    assert sorted(found) == ["octollm-coder-arm-1", "octollm-orchestrator-1", "octollm-postgres-1"]


def test_the_cadvisor_preset_selects_the_deployments_containers_by_project_name_and_label() -> None:
    services = dict(RENAMED, qdrant={"container_names": ["vectors-1"]})
    ctx = context(services, "cadvisor", project="llmstack")
    query = ml.queries(procedure_settings("memory_leaks"), ctx)[ml.Q_GROWTH]
    selectors = selectors_of(query)
    assert selectors == [
        'container_memory_working_set_bytes{container_label_com_docker_compose_project="llmstack"}',
        'container_memory_working_set_bytes{name=~"vectors\\\\-1"}',
        'container_memory_working_set_bytes{container_label_com_example_role="database"}',
    ]
    label = ctx.container_metrics["container_label"]
    found = sorted(labels[label] for selector in selectors for labels in select(selector, samples("cadvisor")))
    # the stack's containers only: not the host's cgroups, not another project's container
    assert found == ["llmstack-api-1", "llmstack-worker-coder-1", "pg-main"]
    limits = [labels[label] for selector in ctx.container_selectors("memory_limit")
              for labels in select(selector, samples("cadvisor"))]
    assert sorted(limits) == ["llmstack-api-1", "pg-main"]  # pg-main's is 0: no limit


def test_memory_leaks_judges_cadvisor_series_by_the_presets_container_label() -> None:
    """The growth history (memory_leaks' query answered with the cAdvisor samples' labels) is matched to the
    containers by the preset's container label: the sustained growth corroborates the sample of the api container."""
    ctx = context(RENAMED, "cadvisor", project="llmstack")
    settings = procedure_settings("memory_leaks", inventory=ctx.inventory)
    assert settings["container_metrics"]["container_label"] == "name"
    selectors = selectors_of(ml.queries(settings, ctx)[ml.Q_GROWTH])
    series = [{"labels": labels, "value": 2.0 * MIB if labels["name"] == "llmstack-api-1" else 0.0}
              for selector in selectors for labels in select(selector, samples("cadvisor"))]

    def record(service: str, name: str, growth: float) -> dict[str, Any]:
        last = 120 * MIB
        return {"service": service, "name": name, "running": True, "memory_limit": 512 * MIB, "restart_count": 0,
                "oom_killed": False, "stats": {"memory_working_set_bytes": last,
                                               "memory_working_set_first_bytes": int(last - growth * 3 * MIB),
                                               "memory_growth_bytes_per_s": growth * MIB, "memory_percent": 23.4,
                                               "memory_limit_bytes": 512 * MIB, "sample_seconds": 3.0}}

    records = [record("orchestrator", "llmstack-api-1", 2.0), record("coder-arm", "llmstack-worker-coder-1", 2.0)]
    evidence = {"containers": {"ok": True, "containers": records, "host": {"memory": {"swap_total_bytes": 0}}},
                "prometheus": {"ok": True, "queries": {ml.Q_GROWTH: {"series": series, "error": None}},
                               "rules": {"names": ["HighMemoryUsage"]}}}
    diagnosis = ml.diagnose(evidence, settings)
    growth = {f["check"]: f for f in diagnosis["findings"]}["memory.growth"]
    # both grow over the sample; only the api container's growth is sustained in cAdvisor's history
    assert growth["status"] == "problem" and sorted(growth["evidence"]["leaking"]) == ["orchestrator"]


def test_the_kube_state_metrics_preset_selects_the_namespaces_containers() -> None:
    ctx = context({"orchestrator": {}, "coder-arm": {}}, "kube-state-metrics")
    preset = ctx.container_metrics
    [usage] = ctx.container_selectors("memory", namespace="llm-prod")
    assert usage == 'container_memory_working_set_bytes{namespace="llm-prod",container!="",container!="POD"}'
    found = select(usage, samples("kube-state-metrics"))
    # each container once: not the pod's own cgroup, not the pause container, not another namespace's
    assert sorted((labels[preset["service_label"]], labels[preset["container_label"]]) for labels in found) == [
        ("coder-arm", "coder-arm-5d8f7c9b8-q7w2e"), ("orchestrator", "orchestrator-7c9d5b6f4-x2k8q")]
    [limit] = ctx.container_selectors("memory_limit", namespace="llm-prod")
    assert limit == ('kube_pod_container_resource_limits{resource="memory",namespace="llm-prod",container!="",'
                     'container!="POD"}')
    assert sorted(labels["container"] for labels in select(limit, samples("kube-state-metrics"))) == [
        "coder-arm", "orchestrator"]


@pytest.mark.parametrize("preset", ["lab", "cadvisor", "kube-state-metrics"])
def test_every_preset_names_what_the_selectors_use(preset: str) -> None:
    names = {"project_label", "service_label", "container_label", "matchers", "memory", "memory_limit", "cpu_seconds"}
    assert names <= set(COMMON["container_metric_presets"][preset])
    metrics = {metric for metric, _, _ in samples(preset)}
    assert COMMON["container_metric_presets"][preset]["memory"] in metrics
