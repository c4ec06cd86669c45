"""Routing free text to procedures."""

from __future__ import annotations

import pytest

from octoctl.errors import ExitCode, OctoctlError
from octoctl.routing import Router, plan, split_camel, tokenize


@pytest.fixture(scope="module")
def router() -> Router:
    return Router()


def _top(router: Router, text: str) -> list[str]:
    return [m.procedure.name for m in router.select(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis hit rate low", "cache_performance"),
        ("CacheMissRate", "cache_performance"),
        ("HTTP 503 from API", "service_unavailable"),
        ("cache", "cache_performance"),
        ("db", "database_connections"),
        ("latency", "high_latency"),
        ("data-corruption", "data_corruption"),
        ("database_connections", "database_connections"),
        ("Memory Leaks", "memory_leaks"),
        ("tasks stuck in pending", "task_routing"),
        ("429 Too Many Requests", "llm_api"),
        ("disk full", "resource_exhaustion"),
        ("PII detected in logs", "security_violations"),
        ("orphaned records", "data_corruption"),
        ("too many connections", "database_connections"),
        ("alert ServiceDown is firing", "service_unavailable"),
        ("latncy", "high_latency"),
        ("cahce", "cache_performance"),
    ],
)
def test_examples(router: Router, text: str, expected: str) -> None:
    assert _top(router, text) == [expected]


def test_exact_alert_is_decisive_even_when_shared(router: Router) -> None:
    assert sorted(_top(router, "HighMemoryUsage")) == ["memory_leaks", "resource_exhaustion"]
    assert _top(router, "highrequestlatency") == ["high_latency"]
    (match,) = router.select("CacheMissRate")
    assert match.score == 95 and match.reasons == ["alert CacheMissRate"]


def test_scores_explain_themselves(router: Router) -> None:
    best = router.score("redis hit rate low")[0]
    assert best.procedure.name == "cache_performance"
    assert any("redi" in reason and "hit" in reason for reason in best.reasons)
    runner_up = router.score("redis hit rate low")[1]
    assert runner_up.score < best.score - 20


def test_unknown_input_is_a_usage_error_with_suggestions(router: Router) -> None:
    with pytest.raises(OctoctlError) as caught:
        router.select("banana smoothie")
    assert caught.value.exit_code == ExitCode.USAGE
    assert "closest:" in caught.value.message
    assert caught.value.message.count("(") >= 3
    assert "\n" not in caught.value.message


def test_plan_runs_selected_procedures_in_rank_order() -> None:
    result = plan(["slow api responses", "redis hit rate low", "disk full"])
    assert [p.name for p in result.selected] == ["resource_exhaustion", "cache_performance", "high_latency"]
    selected = [m for m in result.matches if m.selected]
    assert {m.procedure.name for m in selected} == {p.name for p in result.selected}
    assert all(m.reasons for m in selected)


def test_plan_fails_on_any_unknown_text() -> None:
    with pytest.raises(OctoctlError) as caught:
        plan(["cache", "qwertyuiop"])
    assert caught.value.exit_code == ExitCode.USAGE and "qwertyuiop" in caught.value.message


def test_plan_needs_text() -> None:
    with pytest.raises(OctoctlError) as caught:
        plan(["  "])
    assert caught.value.exit_code == ExitCode.USAGE


def test_tokenizer() -> None:
    assert split_camel("PostgreSQLDown") == "Postgre SQL Down"
    assert tokenize("CacheMissRate") == ["cache", "miss", "rate"]
    assert tokenize("the queries are slow") == ["query", "slow"]
