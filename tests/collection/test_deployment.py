"""A deployment as the inventory describes it, over the seed's names (plugin_utils/deployment.py)."""

from __future__ import annotations

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils import deployment, results
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import role_settings

COMMON = role_settings("_common")


def context(services, **inventory):
    return Context(platform="compose", inventory=deployment.describe(dict(inventory, services=services), COMMON))


def test_the_seeds_names_apply_where_the_inventory_says_nothing() -> None:
    ctx = context({"orchestrator": {"url": "http://o:8000"}, "redis": {"port": 6379}})
    assert ctx.service("orchestrator")["health_path"] == "/health"  # the seed's endpoint
    assert ctx.service("redis")["health_path"] == ""  # the seed gives Redis none: nothing is guessed
    assert ctx.service("redis")["compose_service"] == "redis" and ctx.service("redis")["k8s_selector"] == "app=redis"
    assert ctx.setting_name("orchestrator", "db_pool_size") == "DB_POOL_SIZE"
    assert ctx.metric("http_request_duration", "orchestrator") == "http_request_duration_seconds"
    assert ctx.probe("orchestrator", "debug_memory") is None  # optional probes: not offered unless named
    assert ctx.table("tasks") == "tasks" and ctx.task_status("running") == "running"
    assert ctx.container_metrics["service_label"] == "compose_service" and ctx.container_metrics["preset"] == "lab"


def test_a_differently_named_stack_is_described_in_the_inventory() -> None:
    ctx = context(
        {"api": {"url": "http://api:8080", "ready_path": "/ready", "compose_service": "octollm-api",
                 "settings": {"database_url": "ORCHESTRATOR_DATABASE_URL", "db_pool_size": "ORCHESTRATOR_POOL",
                              "response_cache": None},
                 "metrics": {"http_request_duration": "orchestrator_http_request_duration_seconds"},
                 "probes": {"route_score": "/internal/score"}}},
        postgres={"schema": {"search_path": "octollm", "task_statuses": {"running": "in_progress"}}},
        metrics={"containers": "cadvisor"},
    )
    api = ctx.service("api")
    assert (api["ready_path"], api["compose_service"]) == ("/ready", "octollm-api")
    assert ctx.setting_name("api", "db_pool_size") == "ORCHESTRATOR_POOL"
    assert ctx.setting_name("api", "response_cache") is None  # the deployment has no such switch
    assert ctx.setting_name("api", "llm_api_key") == "OPENAI_API_KEY"  # the rest stays the seed's
    assert ctx.metric("http_request_duration") == "orchestrator_http_request_duration_seconds"
    assert ctx.probe("api", "route_score") == "/internal/score"
    assert ctx.schema["search_path"] == "octollm" and ctx.task_status("running") == "in_progress"
    assert ctx.task_status("pending") == "pending" and ctx.table("action_log") == "action_log"
    assert ctx.container_metrics["service_label"] == "container_label_com_docker_compose_service"


def test_a_service_the_inventory_does_not_describe_has_the_seeds_names() -> None:
    ctx = context({"api": {"settings": {"llm_timeout": "API_LLM_TIMEOUT"}, "metrics": {"llm_calls": "api_llm_calls"}}})
    assert ctx.service("orchestrator") == {}
    assert ctx.setting_name("orchestrator", "llm_timeout") == "LLM_READ_TIMEOUT"  # the seed's, not api's
    assert ctx.setting_name("api", "llm_timeout") == "API_LLM_TIMEOUT"
    assert ctx.metric("llm_calls", "orchestrator") == "api_llm_calls"  # the stack's own name wins over the seed's
    assert context({}).metric("llm_circuit_state") == "llm_circuit_state"  # no service described: the seed's
    assert context({}).setting_name("orchestrator", "llm_api_key") == "OPENAI_API_KEY"


def test_a_context_whose_inventory_was_not_described_answers_the_seeds_names() -> None:
    """A test or a tool builds a Context without the procedure_run lookup: the seed's names still answer (read from
    _common's defaults, never a copy in Python)."""
    ctx = Context(platform="compose", inventory={"services": {"orchestrator": {"url": "http://o:8000"}}})
    assert ctx.setting_name("orchestrator", "llm_timeout") == "LLM_READ_TIMEOUT"
    assert ctx.metric("cache_hits", "orchestrator") == "cache_hits_total"
    assert Context(platform="compose").metric("llm_circuit_state") == COMMON["metric_names"]["llm_circuit_state"]


def test_dependents_are_the_services_that_name_one_in_depends_on() -> None:
    ctx = context({"gateway": {"depends_on": ["llm-provider", "redis"]}, "orchestrator": {"depends_on": ["postgres"]},
                   "llm-provider": {}})
    assert ctx.dependents("llm-provider") == ["gateway"] and ctx.dependents("qdrant") == []
    assert ctx.dependencies_described() and not context({"orchestrator": {}}).dependencies_described()


def test_an_unknown_metrics_preset_is_an_error() -> None:
    with pytest.raises(ValueError, match="octollm_metrics.containers"):
        context({}, metrics={"containers": "datadog"})


def test_a_probe_not_offered_neither_escalates_nor_fails_verification() -> None:
    item = deployment.not_offered("memory.in_process", "In-process memory", "answered", "GET /debug/memory")
    assert item["status"] == "unknown" and item["error"]["kind"] == "not_offered"
    assert "not offered by this deployment" in item["error"]["message"]
    ok = results.finding("memory.growth", "growth", "ok", "none", "none")
    assert results.healthy([ok, item])
    assert results.escalation([ok, item], "L2")["level"] is None
    unchecked = results.unknown("memory.growth", "growth", "none", {"kind": "timeout", "message": "slow"})
    assert results.escalation([unchecked], "L2")["level"] == "L2"  # a check that could not be made still counts
