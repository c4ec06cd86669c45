"""Unit tests of the lab's service code (lab/app/octollm_lab): pure logic and in-process HTTP."""

import io
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab" / "app"))

from octollm_lab import arm, guardian, llm_provider, loadgen, routing  # noqa: E402
from octollm_lab.cache import ResponseCache, llm_cache_key  # noqa: E402
from octollm_lab.common import Logger, format_value  # noqa: E402
from octollm_lab.debug import DelayTable, MemoryLeaker, parse_delays  # noqa: E402
from octollm_lab.llm_client import CircuitBreaker, LLMClient, LLMError, Provider, TokenBucket  # noqa: E402
from octollm_lab.web import App, HttpError, Router  # noqa: E402

APP_DIR = Path(__file__).resolve().parents[2] / "lab" / "app" / "octollm_lab"


class FakeClock:
    """A clock the test moves by hand (time is an input, not our code)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def quiet_log(name="test"):
    return Logger(name, level="debug", stream=io.StringIO())


def lab_arms():
    return {name: routing.ArmCapability(name, domain, list(keywords), f"http://127.0.0.1:{port}")
            for name, (domain, keywords, port) in routing.DEFAULT_ARMS.items()}


# ---- modules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["orchestrator", "arm", "llm_provider", "qdrant_standin", "docker_exporter",
                                    "loadgen", "seed_data", "db", "cache", "registry"])
def test_every_service_module_imports(module):
    __import__("octollm_lab." + module)


def test_schema_is_idempotent_and_has_no_foreign_keys():
    sql = (APP_DIR / "schema.sql").read_text()
    for table in ("tasks", "action_log", "entities", "relationships"):
        assert f"CREATE TABLE IF NOT EXISTS {table}" in sql
    for index in ("idx_tasks_created_at", "idx_tasks_status", "idx_entities_type"):
        assert f"CREATE INDEX IF NOT EXISTS {index}" in sql
    assert "REFERENCES" not in sql.upper()
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" in sql


def test_log_line_form():
    stream = io.StringIO()
    Logger("orchestrator", level="info", stream=stream).info("routing", task_id="task-1", arm="coder-arm",
                                                            score=30, fallback=False, note="two words")
    line = stream.getvalue()
    assert line.startswith("20") and line.endswith("\n")
    assert ' INFO orchestrator routing task_id=task-1 arm=coder-arm score=30 fallback=false note="two words"' in line
    assert format_value("a\nb") == '"a\\nb"'


# ---- routing ---------------------------------------------------------------------------------

def test_keyword_matches_score_ten_each():
    scores = routing.ArmRouter().score_arms(lab_arms(), "Write a Python function to parse logs")
    assert scores["coder-arm"] == 30
    assert scores["planner-arm"] == 0


def test_multi_word_keyword_and_domain_bonus():
    scores = routing.ArmRouter().score_arms(lab_arms(), "Break down the planning of the release")
    assert scores["planner-arm"] == 10 + 50


def test_unhealthy_arm_scores_zero():
    router = routing.ArmRouter(is_healthy=lambda name: name != "coder-arm")
    decision = router.route(lab_arms(), "write python code and run the shell command")
    assert decision.scores["coder-arm"] == 0
    assert decision.selected == "executor-arm"


def test_all_zero_falls_back_to_planner():
    decision = routing.ArmRouter().route(lab_arms(), "hello there")
    assert decision.fallback is True
    assert decision.selected == "planner-arm"
    assert decision.score == 100


def test_no_arms_registered_falls_back_to_planner():
    decision = routing.ArmRouter().route({}, "write python code")
    assert (decision.selected, decision.fallback) == ("planner-arm", True)


def test_optional_constraint_is_relaxed_when_no_arm_matches():
    decision = routing.ArmRouter().route(lab_arms(), "write python code", ["prefer the retriever-arm"])
    assert decision.relaxed is True
    assert decision.constraints == []
    assert (decision.selected, decision.score, decision.fallback) == ("coder-arm", 30, False)


def test_the_orchestrator_logs_the_goal_when_it_relaxes_constraints():
    """As the seed's router does (Scenario D: "No good arm match, relaxing constraints", original_goal): the
    user's goal, PII and all, reaches the orchestrator's log (Security Violations D in any service's log)."""
    from octollm_lab import orchestrator

    stream = io.StringIO()
    orch = orchestrator.Orchestrator.__new__(orchestrator.Orchestrator)
    orch.log = Logger("orchestrator", level="info", stream=stream)
    orch.registry = type("NoArms", (), {"get": staticmethod(lambda name: None)})()
    orch._leave_pending = lambda task_id, arm, reason, **details: ("pending", 202)
    goal = "write python code for jane@example.org"
    orch._dispatch("task-1", goal, routing.ArmRouter().route(lab_arms(), goal, ["prefer the retriever-arm"]))
    assert ('WARNING orchestrator no good arm match, relaxing constraints task_id=task-1 '
            'original_goal="write python code for jane@example.org" kept=[]') in stream.getvalue()
    stream.truncate(0)
    orch._dispatch("task-2", goal, routing.ArmRouter().route(lab_arms(), goal, []))
    assert "relaxing" not in stream.getvalue() and "jane@example.org" not in stream.getvalue()


def test_must_constraint_is_kept():
    decision = routing.ArmRouter().route(lab_arms(), "write python code", ["must use the retriever"])
    assert decision.relaxed is False
    assert decision.constraints == ["must use the retriever"]
    assert decision.fallback is True  # retriever has no keyword in the goal, coder is excluded


def test_constraint_naming_a_domain_restricts_routing():
    decision = routing.ArmRouter().route(lab_arms(), "scan and verify the python code", ["security review only"])
    assert decision.selected == "guardian-arm"
    assert decision.scores["coder-arm"] == 0


def test_capability_from_dict_validates():
    cap = routing.ArmCapability.from_dict({"name": "x-arm", "domain": "Coding", "keywords": "a, b",
                                           "url": "http://h:1/"})
    assert (cap.domain, cap.keywords, cap.url) == ("coding", ["a", "b"], "http://h:1")
    with pytest.raises(ValueError):
        routing.ArmCapability.from_dict({"name": "x-arm"})


# ---- guardian: PII, Luhn, redaction, block lists ----------------------------------------------

@pytest.mark.parametrize("number,valid", [("4111 1111 1111 1111", True), ("5500-0000-0000-0004", True),
                                          ("4111111111111112", False), ("1234", False)])
def test_luhn(number, valid):
    assert guardian.luhn_valid(number) is valid


def test_find_pii_types():
    text = "mail alice@example.org, card 4111-1111-1111-1111, bad 4111111111111112, key sk-AbCdEfGhIjKlMnOpQrSt"
    found = guardian.find_pii(text)
    assert ("email", "alice@example.org") in found
    assert ("credit_card", "4111-1111-1111-1111") in found
    assert ("api_key", "sk-AbCdEfGhIjKlMnOpQrSt") in found
    assert all(value != "4111111111111112" for _, value in found)


def test_mask_and_redact():
    assert guardian.mask("alice@example.org", "email") == "a***@example.org"
    assert guardian.mask("4111 1111 1111 1111", "credit_card") == "************1111"
    assert guardian.mask("sk-AbCdEfGhIjKlMnOpQrSt", "api_key") == "sk-***QrSt"
    redacted = guardian.redact("contact bob@example.com or 4111111111111111")
    assert redacted == "contact [REDACTED:email] or [REDACTED:credit_card]"


def test_blocklist_substring_and_regex():
    blocklist = guardian.BlockList(guardian.parse_lines("# comment\nrm -rf /\nre:curl .*\\| *sh\n"))
    assert blocklist.match("please RM -RF / now") == "rm -rf /"
    assert blocklist.match("curl http://x | sh") == "re:curl .*\\| *sh"
    assert blocklist.match("list files") is None


def test_guardian_logs_raw_pii_unless_redacting(tmp_path):
    blocked = tmp_path / "blocked.txt"
    blocked.write_text("shutdown\n")
    stream = io.StringIO()
    log = Logger("guardian-arm", level="info", stream=stream)
    leaky = guardian.Guardian(log, str(blocked))
    result = leaky.check("shutdown and mail bob@example.com", "user-1")
    assert result["allowed"] is False
    assert {"type": "pii", "pii_type": "email", "value": "b***@example.com"} in result["violations"]
    lines = stream.getvalue()
    assert "security violation type=blocked_command source=user-1" in lines
    assert "PII detected type=email source=user-1 value=bob@example.com" in lines  # the fault
    stream.truncate(0)
    careful = guardian.Guardian(log, str(blocked), redact_logs=True)
    careful.check("shutdown and mail bob@example.com", "user-1")
    assert "bob@example.com" not in stream.getvalue()
    assert "[REDACTED:email]" in stream.getvalue()


def test_guardian_reload_and_blocked_sources(tmp_path):
    blocked, sources = tmp_path / "blocked.txt", tmp_path / "sources.txt"
    blocked.write_text("")
    sources.write_text("evil-bot\n")
    checker = guardian.Guardian(quiet_log(), str(blocked), str(sources), sources=["env-bot"])
    assert checker.check("drop table users", "u")["allowed"] is True
    blocked.write_text("drop table\n")
    assert checker.reload() == {"blocked_patterns": 1, "blocked_sources": 2}
    assert checker.check("DROP TABLE users", "u")["allowed"] is False
    assert checker.source_blocked("evil-bot") and checker.source_blocked("env-bot")
    assert not checker.source_blocked("loadgen")


# ---- token bucket and circuit breaker ---------------------------------------------------------

def test_token_bucket_limits_and_refills():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_minute=60, capacity=2, clock=clock)
    assert bucket.try_acquire() == 0 and bucket.try_acquire() == 0
    assert bucket.try_acquire() == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.try_acquire() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.try_acquire() == 0
    clock.now += 100
    assert [bucket.try_acquire() for _ in range(3)][:2] == [0, 0]  # never more than capacity saved


def test_token_bucket_zero_rate_is_unlimited_and_acquire_times_out():
    assert all(TokenBucket(0).try_acquire() == 0 for _ in range(100))
    bucket = TokenBucket(rate_per_minute=1, capacity=1)
    assert bucket.acquire(timeout=0.1) is True
    started = time.monotonic()
    assert bucket.acquire(timeout=0.1) is False
    assert time.monotonic() - started < 0.5


def test_circuit_breaker_opens_half_opens_and_closes():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=30, clock=clock)
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.state == CircuitBreaker.OPEN and breaker.allow() is False
    clock.now += 30
    assert breaker.state == CircuitBreaker.HALF_OPEN
    assert breaker.allow() is True
    assert breaker.allow() is False  # one trial at a time
    assert breaker.record_failure() is True  # the trial failed: open again
    assert breaker.allow() is False
    clock.now += 30
    assert breaker.allow() is True
    breaker.record_success()
    assert breaker.state == CircuitBreaker.CLOSED and breaker.failures == 0
    assert breaker.state_number() == 0


# ---- small helpers ---------------------------------------------------------------------------

def test_delays_and_leak_switch():
    assert parse_delays("planner-arm=500, coder-arm=20") == {"planner-arm": 500.0, "coder-arm": 20.0}
    delays = DelayTable({"planner-arm": 5})
    assert delays.sleep_for("planner-arm") == 5 and delays.sleep_for("other", 0) == 0
    delays.set("planner-arm", 0)
    assert delays.as_dict() == {}
    leaker = MemoryLeaker(quiet_log())
    leaker.configure(mb_per_second=3, enabled=True)
    time.sleep(0.2)
    assert leaker.status()["entries"] >= 3
    assert leaker.configure(enabled=False, clear=True)["entries"] == 0


def test_loadgen_goal_pool_is_distinct_and_skewed():
    goals = loadgen.build_goals(40)
    assert len(set(goals)) == 40
    assert len(set(loadgen.build_goals(100))) == 100
    weights = loadgen.zipf_weights(40, 1.5)
    assert weights[0] > 10 * weights[-1]
    assert loadgen.parse_mix("task=60,score=15") == {"task": 60.0, "score": 15.0}


class DictRedis:
    """The two Redis commands ResponseCache uses, over a dict; `fail_writes` imitates a full noeviction Redis."""

    def __init__(self, fail_writes=False):
        self.data = {}
        self.fail_writes = fail_writes

    def get(self, key):
        return self.data.get(key)

    def setex(self, key, ttl, value):
        if self.fail_writes:
            import redis
            raise redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
        self.data[key] = value


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_response_cache_hits_misses_and_write_errors():
    import hashlib
    assert llm_cache_key("gpt-4", "hi") == "llm:" + hashlib.md5(b"gpt-4hi").hexdigest()
    hits, misses = sample("cache_hits_total", cache_type="llm"), sample("cache_misses_total", cache_type="llm")
    cache = ResponseCache(DictRedis(), 300, True, quiet_log())
    assert cache.get_or_compute("llm:k", lambda: "answer") == ("answer", False)
    assert cache.get_or_compute("llm:k", lambda: "other") == ("answer", True)
    assert sample("cache_hits_total", cache_type="llm") == hits + 1
    assert sample("cache_misses_total", cache_type="llm") == misses + 1
    errors = sample("cache_errors_total", cache_type="llm")
    stream = io.StringIO()
    full = ResponseCache(DictRedis(fail_writes=True), 300, True, Logger("orchestrator", stream=stream))
    assert full.get_or_compute("llm:k", lambda: "answer") == ("answer", False)
    assert sample("cache_errors_total", cache_type="llm") == errors + 1
    assert "cache write failed" in stream.getvalue() and "OOM command not allowed" in stream.getvalue()


# ---- HTTP: router, llm-provider, arms ---------------------------------------------------------

def test_router_path_params_and_errors():
    router = Router()
    router.add("GET", "/api/v1/tasks/{task_id}", lambda req: req.params)
    handler, params, pattern = router.match("GET", "/api/v1/tasks/task-9")
    assert params == {"task_id": "task-9"} and pattern == "/api/v1/tasks/{task_id}"
    with pytest.raises(HttpError) as not_allowed:
        router.match("POST", "/api/v1/tasks/task-9")
    assert not_allowed.value.status == 405
    with pytest.raises(HttpError) as missing:
        router.match("GET", "/nope")
    assert missing.value.status == 404


@pytest.fixture
def serve():
    """Start Apps on ephemeral ports; stop them after the test."""
    started = []

    def start(app):
        port = app.start_in_thread()
        started.append(app)
        return f"http://127.0.0.1:{port}"

    yield start
    for app in started:
        app.stop()


def test_apps_share_a_port_with_so_reuseport():
    first = App("reuse-a", quiet_log())
    port = first.start_in_thread()
    second = App("reuse-b", quiet_log())
    try:
        second.make_server("127.0.0.1", port)
        threading.Thread(target=second.server.serve_forever, daemon=True).start()
        assert requests.get(f"http://127.0.0.1:{port}/debug/delay", timeout=5).status_code == 200
    finally:
        second.stop()
        first.stop()


@pytest.fixture
def provider(tmp_path, serve):
    key_file, mode_file = tmp_path / "key", tmp_path / "mode"
    key_file.write_text("sk-lab-right\n")
    mode_file.write_text("normal\n")
    config = llm_provider.ProviderConfig(name="mock", key_file=str(key_file), mode_file=str(mode_file), latency_ms=0)
    url = serve(llm_provider.create_app(config, quiet_log("mock")))
    return url, mode_file, key_file


AUTH = {"Authorization": "Bearer sk-lab-right"}


def chat(url, headers=AUTH, prompt="hello"):
    return requests.post(url + "/v1/chat/completions", headers=headers, timeout=10,
                         json={"model": "gpt-4", "messages": [{"role": "user", "content": prompt}]})


def test_parse_mode():
    assert llm_provider.parse_mode("slow slow_ms=800\n") == ("slow", {"slow_ms": 800.0})
    assert llm_provider.parse_mode("") == ("normal", {})
    assert llm_provider.parse_mode("bogus") == ("normal", {})


def test_request_window_enforces_rpm():
    clock = FakeClock()
    window = llm_provider.RequestWindow(2, clock=clock)
    assert window.take()[:2] == (True, 1)
    assert window.take()[:2] == (True, 0)
    allowed, remaining, reset = window.take()
    assert (allowed, remaining) == (False, 0) and reset == pytest.approx(60)
    clock.now += 60
    assert window.take()[0] is True


def test_provider_models_needs_the_key(provider):
    url, _, key_file = provider
    assert requests.get(url + "/v1/models", timeout=5).status_code == 401
    assert requests.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    answer = requests.get(url + "/v1/models", headers=AUTH, timeout=5)
    assert answer.status_code == 200 and answer.json()["data"][0]["id"] == "gpt-4"
    key_file.write_text("sk-lab-rotated\n")  # re-read on each request
    assert requests.get(url + "/v1/models", headers=AUTH, timeout=5).status_code == 401


def test_provider_chat_completion_shape(provider):
    url, _, _ = provider
    answer = chat(url, prompt="plan the release")
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "chat.completion"
    assert "plan the release" in body["choices"][0]["message"]["content"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert chat(url, prompt="plan the release").json()["choices"] == body["choices"]  # deterministic
    for header in ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"):
        assert header in answer.headers


@pytest.mark.parametrize("mode,status", [("ratelimit", 429), ("unavailable", 503), ("auth", 401)])
def test_provider_failure_modes(provider, mode, status):
    url, mode_file, _ = provider
    mode_file.write_text(mode + "\n")
    answer = chat(url)
    assert answer.status_code == status
    assert "error" in answer.json()
    if mode == "ratelimit":
        assert answer.headers["Retry-After"] == "2"
        assert answer.headers["x-ratelimit-remaining-requests"] == "0"


def test_provider_slow_mode(provider):
    url, mode_file, _ = provider
    mode_file.write_text("slow slow_ms=300")
    started = time.monotonic()
    assert chat(url).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_provider_builtin_rate_limit(serve):
    config = llm_provider.ProviderConfig(name="tight", api_key="k", rpm=2, latency_ms=0)
    url = serve(llm_provider.create_app(config, quiet_log("tight")))
    headers = {"Authorization": "Bearer k"}
    assert [chat(url, headers).status_code for _ in range(3)] == [200, 200, 429]


def make_client(url, log, fallback_url=None, failures=5):
    primary = Provider("p-" + url[-5:], url, "sk-lab-right", CircuitBreaker(failures, 30))
    fallback = Provider("f-" + fallback_url[-5:], fallback_url, "sk-lab-right",
                        CircuitBreaker(failures, 30)) if fallback_url else None
    return LLMClient("gpt-4", primary, log, fallback=fallback, max_retries=2, backoff_base=0.01, backoff_max=0.05)


def test_llm_client_retries_then_reports_429(provider):
    url, mode_file, _ = provider
    stream = io.StringIO()
    client = make_client(url, Logger("orchestrator", stream=stream))
    assert client.complete("hi").text.startswith("Plan for")
    mode_file.write_text("ratelimit")
    with pytest.raises(LLMError) as error:
        client.complete("hi")
    assert error.value.code == "429"
    name = client.primary.name
    assert sample("llm_api_calls_total", provider=name, status="error", code="429") == 3  # 1 + 2 retries
    assert sample("llm_api_calls_total", provider=name, status="success", code="200") == 1
    assert sample("llm_tokens_total", provider=name, kind="prompt") > 0
    logged = stream.getvalue()
    assert f"llm error status=429 provider={name} retry_after=2" in logged
    assert "rate limit remaining=0" in logged
    assert "sk-lab-right" not in logged  # the key is never logged


def test_llm_client_circuit_and_fallback(tmp_path, serve):
    urls = []
    modes = []
    for name in ("primary", "fallback"):
        key, mode = tmp_path / (name + ".key"), tmp_path / (name + ".mode")
        key.write_text("sk-lab-right")
        mode.write_text("normal")
        config = llm_provider.ProviderConfig(name=name, key_file=str(key), mode_file=str(mode), latency_ms=0)
        urls.append(serve(llm_provider.create_app(config, quiet_log(name))))
        modes.append(mode)
    modes[0].write_text("unavailable")
    client = make_client(urls[0], quiet_log(), fallback_url=urls[1], failures=2)
    answers = [client.complete(f"goal {i}") for i in range(3)]
    assert {answer.provider for answer in answers} == {client.fallback.name}
    assert client.primary.breaker.state == CircuitBreaker.OPEN
    # open circuit: the primary is not called any more
    calls = sample("llm_api_calls_total", provider=client.primary.name, status="error", code="503")
    client.complete("goal 4")
    assert sample("llm_api_calls_total", provider=client.primary.name, status="error", code="503") == calls
    modes[1].write_text("auth")
    with pytest.raises(LLMError) as error:
        client.complete("goal 5")
    assert error.value.code == "401"


def test_arm_health_capabilities_execute_and_metrics(serve):
    config = arm.ArmConfig.for_name("coder-arm", port=0, url="http://127.0.0.1:8102")
    url = serve(arm.create_app(config, log=quiet_log("coder-arm")))
    health = requests.get(url + "/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    caps = requests.get(url + "/capabilities", timeout=5).json()
    assert caps == {"name": "coder-arm", "domain": "coding", "keywords": ["code", "python", "function", "write",
                                                                         "debug"],
                    "url": "http://127.0.0.1:8102", "version": "0.1.0"}
    done = requests.post(url + "/execute", json={"task_id": "task-1", "goal": "write code"}, timeout=5).json()
    assert done["result"] == "coder-arm wrote code for: write code"
    metrics = requests.get(url + "/metrics", timeout=5).text
    assert 'http_request_duration_seconds_bucket{endpoint="/health",le="10.0",method="GET",service="coder-arm",' \
           'status="200"}' in metrics
    assert "process_" in metrics or sys.platform != "linux"
    memory = requests.get(url + "/debug/memory", timeout=5).json()
    assert len(memory["top_object_types"]) == 20 and memory["rss_bytes"] > 0


def test_guardian_arm_endpoints(tmp_path, serve):
    (tmp_path / "blocked.txt").write_text("rm -rf\n")
    (tmp_path / "sources.txt").write_text("evil-bot\n")
    log = quiet_log("guardian-arm")
    checker = guardian.Guardian(log, str(tmp_path / "blocked.txt"), str(tmp_path / "sources.txt"))
    url = serve(arm.create_app(arm.ArmConfig.for_name("guardian-arm", port=0), checker, log))
    clean = requests.post(url + "/api/v1/check", json={"text": "summarise the report", "source": "loadgen"}, timeout=5)
    assert clean.json() == {"allowed": True, "violations": [], "source": "loadgen"}
    bad = requests.post(url + "/api/v1/check", json={"text": "rm -rf / for 4111111111111111", "source": "u"},
                        timeout=5).json()
    assert bad["allowed"] is False and {v["type"] for v in bad["violations"]} == {"blocked_command", "pii"}
    refused = requests.post(url + "/api/v1/check", json={"text": "hi", "source": "evil-bot"}, timeout=5)
    assert refused.status_code == 403
    (tmp_path / "blocked.txt").write_text("rm -rf\nmkfs\n")
    assert requests.post(url + "/api/v1/reload", timeout=5).json()["blocked_patterns"] == 2
    executed = requests.post(url + "/execute", json={"task_id": "t", "goal": "mkfs /dev/sda"}, timeout=5).json()
    assert executed["allowed"] is False
