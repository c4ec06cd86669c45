"""Routing free text to procedures."""

from __future__ import annotations

import pytest

from octoctl.errors import ExitCode, OctoctlError
from octoctl.routing import THRESHOLD, Router, plan, split_camel, tokenize


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


# The text people paste from logs and pagers (issue: "the pager's real text routes right").
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("OOM command not allowed when used memory > 'maxmemory'.", ["cache_performance"]),
        ("redis.exceptions.ResponseError: MISCONF Redis is configured to save RDB snapshots, but it's currently "
         "unable to persist to disk", ["resource_exhaustion", "cache_performance"]),
        ("Error 111 connecting to redis:6379. Connection refused.", ["cache_performance", "service_unavailable"]),
        ("redis connection refused", ["cache_performance", "service_unavailable"]),
        ('psycopg2.OperationalError: FATAL:  sorry, too many clients already', ["database_connections"]),
        ("FATAL: remaining connection slots are reserved for non-replication superuser connections",
         ["database_connections"]),
        ('could not connect to server: Connection refused\n\tIs the server running on host "postgres" (172.1.2.3) '
         "and accepting TCP/IP connections on port 5432?", ["database_connections"]),
        ("openai.RateLimitError: Error code: 429 - {'error': {'message': 'Rate limit reached'}}", ["llm_api"]),
        ("HTTP/1.1 429 Too Many Requests", ["llm_api"]),
        ("openai.AuthenticationError: Error code: 401 - Incorrect API key provided", ["llm_api"]),
        ("LLM provider returned 503 Service Unavailable", ["llm_api"]),
        ("POST https://api.openai.com/v1/chat/completions 504 Gateway Timeout", ["llm_api", "high_latency"]),
        ("RuntimeError: No appropriate arm found for task task-123", ["task_routing"]),
        ("Back-off restarting failed container orchestrator in pod orchestrator-7d9 (CrashLoopBackOff)",
         ["service_unavailable"]),
        ("Last State: Terminated  Reason: OOMKilled  Exit Code: 137", ["service_unavailable", "memory_leaks"]),
        ("The node was low on resource: memory. Container planner-arm was using 900Mi. Evicted",
         ["resource_exhaustion"]),
        ("OSError: [Errno 28] No space left on device: '/var/lib/postgresql/data'", ["resource_exhaustion"]),
    ],
)
def test_pasted_error_messages_route_right(router: Router, text: str, expected: list[str]) -> None:
    selected = router.select(text)
    assert sorted(m.procedure.name for m in selected) == sorted(expected)
    assert all(m.reasons[0].startswith("message") for m in selected)


def test_a_named_component_weighs_in(router: Router) -> None:
    """Free text that names a component: procedures of that component gain, those of others lose."""
    assert _top(router, "postgres keeps dropping connections") == ["database_connections"]
    redis = {m.procedure.name: m.score for m in router.score("redis is slow and keeps timing out")}
    plain = {m.procedure.name: m.score for m in router.score("it is slow and keeps timing out")}
    assert redis["cache_performance"] > plain["cache_performance"]
    assert redis["database_connections"] < plain["database_connections"] or plain["database_connections"] == 0


def test_text_that_selects_nothing_with_confidence_is_not_an_error(router: Router) -> None:
    assert router.select("banana smoothie") == []
    result = plan(["banana smoothie"])
    assert not result.confident and result.unmatched == ["banana smoothie"]
    assert [p.name for p in result.selected] == [p.name for p in router.catalog.procedures]
    assert router.closest("banana smoothie").count("(") >= 1  # the closest names, with their scores


@pytest.mark.parametrize("text", ["something is wrong", "help", "the thing broke again"])
def test_below_the_threshold_is_not_confident(router: Router, text: str) -> None:
    best = router.score(text)[0]
    assert best.score < THRESHOLD and router.select(text) == []


@pytest.mark.parametrize(("typo", "name"), [("cahce", "cache"), ("latncy", "latency"), ("securty", "security")])
def test_a_misspelt_procedure_name_is_a_usage_error_with_the_suggestion(router: Router, typo: str, name: str) -> None:
    with pytest.raises(OctoctlError) as caught:
        router.select(typo)
    assert caught.value.exit_code == ExitCode.USAGE
    assert f"did you mean {name!r}" in caught.value.message and "\n" not in caught.value.message


def test_plan_runs_selected_procedures_in_rank_order() -> None:
    result = plan(["slow api responses", "redis hit rate low", "disk full"])
    assert [p.name for p in result.selected] == ["resource_exhaustion", "cache_performance", "high_latency"]
    selected = [m for m in result.matches if m.selected]
    assert {m.procedure.name for m in selected} == {p.name for p in result.selected}
    assert all(m.reasons for m in selected)


def test_plan_with_a_text_nobody_understood_looks_at_everything() -> None:
    result = plan(["cache", "qwertyuiop"])
    assert not result.confident and result.unmatched == ["qwertyuiop"]
    assert len(result.selected) == 10


def test_plan_needs_text() -> None:
    with pytest.raises(OctoctlError) as caught:
        plan(["  "])
    assert caught.value.exit_code == ExitCode.USAGE


def test_tokenizer() -> None:
    assert split_camel("PostgreSQLDown") == "Postgre SQL Down"
    assert tokenize("CacheMissRate") == ["cache", "miss", "rate"]
    assert tokenize("the queries are slow") == ["query", "slow"]
