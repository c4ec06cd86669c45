"""The orchestrator's client of an OpenAI-compatible API (the seed's LLM API Failures).

| variable | default | meaning |
|---|---|---|
| LLM_API_URL | http://127.0.0.1:8200 | primary provider; POST {url}/v1/chat/completions |
| LLM_PROVIDER_NAME | primary | `provider` label of the primary |
| OPENAI_API_KEY (or OPENAI_API_KEY_FILE) | "" | Bearer key; never logged |
| LLM_MODEL | gpt-4 | model name sent, and part of the cache key |
| LLM_CONNECT_TIMEOUT | 5 | seconds |
| LLM_READ_TIMEOUT | 30 | seconds |
| LLM_MAX_CONCURRENCY | 8 | concurrent calls (semaphore) |
| LLM_RATE_PER_MINUTE | 600 | client-side token bucket (0: unlimited) |
| LLM_QUEUE_TIMEOUT | 30 | seconds to wait for the semaphore or a token |
| LLM_MAX_RETRIES | 2 | retries on 429/503, exponential backoff with jitter |
| LLM_BACKOFF_BASE | 0.5 | seconds; attempt n waits base*2^n + jitter (or Retry-After) |
| LLM_BACKOFF_MAX | 10 | seconds, cap of one wait |
| LLM_CIRCUIT_FAILURES | 5 | failed calls in a row that open the circuit |
| LLM_CIRCUIT_RESET_SECONDS | 30 | open time before one trial call (half-open) |
| LLM_FALLBACK_ENABLED | false | use the fallback when the primary fails or its circuit is open |
| LLM_FALLBACK_URL | "" | fallback provider (e.g. http://127.0.0.1:8201) |
| LLM_FALLBACK_PROVIDER_NAME | fallback | `provider` label of the fallback |
| LLM_FALLBACK_API_KEY (or _FILE) | OPENAI_API_KEY | Bearer key of the fallback |
| LLM_RATELIMIT_LOG_SECONDS | 10 | at most one routine "rate limit" line per this period |

Metrics: llm_api_calls_total{provider,status=success|error,code}, llm_api_duration_seconds{provider},
llm_tokens_total{provider,kind=prompt|completion}, llm_circuit_state{provider} (0 closed, 1 open,
2 half-open), under METRICS_PREFIX when set. One call counts once per HTTP attempt.
"""

import random
import threading
import time
from dataclasses import dataclass, field

import requests
from prometheus_client import Counter, Gauge, Histogram

from .common import env_bool, env_float, env_int, env_secret, env_str, metric_name

LLM_CALLS = Counter(metric_name("llm_api_calls_total"), "LLM API calls", ["provider", "status", "code"])
LLM_DURATION = Histogram(metric_name("llm_api_duration_seconds"), "LLM API call duration", ["provider"],
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60))
LLM_TOKENS = Counter(metric_name("llm_tokens_total"), "LLM tokens used", ["provider", "kind"])
CIRCUIT_STATE = Gauge(metric_name("llm_circuit_state"),
                      "LLM circuit breaker state (0 closed, 1 open, 2 half-open)",
                      ["provider"])

RETRYABLE = (429, 503)


class TokenBucket:
    """`rate_per_minute` tokens per minute, up to `capacity` saved (default: one second's worth, at least 1)."""

    def __init__(self, rate_per_minute, capacity=None, clock=time.monotonic):
        self.rate = rate_per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, self.rate)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self._lock = threading.Lock()

    def _refill(self):
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def try_acquire(self):
        """Take a token if one is there; else return the seconds until one is."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            self._refill()
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate

    def acquire(self, timeout):
        deadline = self.clock() + timeout
        while True:
            wait = self.try_acquire()
            if wait == 0:
                return True
            if self.clock() + wait > deadline:
                return False
            time.sleep(min(wait, 0.5))


class CircuitBreaker:
    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failure_threshold, reset_seconds, clock=time.monotonic):
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.failures = 0
        self.opened_at = None
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self):
        if self.opened_at is None:
            return self.CLOSED
        if self.clock() - self.opened_at >= self.reset_seconds:
            return self.HALF_OPEN
        return self.OPEN

    def state_number(self):
        return {self.CLOSED: 0, self.OPEN: 1, self.HALF_OPEN: 2}[self.state]

    def allow(self):
        """Closed: yes. Open: no. Half-open: one trial call at a time."""
        with self._lock:
            state = self.state
            if state == self.CLOSED:
                return True
            if state == self.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def record_success(self):
        with self._lock:
            self.failures = 0
            self.opened_at = None
            self._trial_running = False

    def record_failure(self):
        """Count a failure; return True when this one opened the circuit."""
        with self._lock:
            self.failures += 1
            reopened = self._trial_running
            self._trial_running = False
            if reopened or (self.opened_at is None and self.failures >= self.failure_threshold):
                self.opened_at = self.clock()
                return True
            return False


class LLMError(Exception):
    def __init__(self, message, provider="", code=""):
        super().__init__(message)
        self.provider = provider
        self.code = str(code)


@dataclass
class Provider:
    name: str
    url: str
    api_key: str
    breaker: CircuitBreaker = field(repr=False, default=None)


@dataclass
class LLMResult:
    text: str
    provider: str
    usage: dict


class LLMClient:
    def __init__(self, model, primary, log, fallback=None, max_concurrency=8, rate_per_minute=600,
                 queue_timeout=30, max_retries=2, backoff_base=0.5, backoff_max=10,
                 connect_timeout=5, read_timeout=30, ratelimit_log_seconds=10, session=None):
        self.model = model
        self.primary = primary
        self.fallback = fallback
        self.log = log
        self.semaphore = threading.BoundedSemaphore(max_concurrency)
        self.bucket = TokenBucket(rate_per_minute)
        self.queue_timeout = queue_timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = (connect_timeout, read_timeout)
        self.ratelimit_log_seconds = ratelimit_log_seconds
        self._last_ratelimit_log = 0.0
        self.session = session or requests.Session()
        for provider in (primary, fallback):
            if provider is not None:
                CIRCUIT_STATE.labels(provider.name).set_function(lambda b=provider.breaker: b.state_number())

    @classmethod
    def from_env(cls, log):
        failures = env_int("LLM_CIRCUIT_FAILURES", 5)
        reset = env_float("LLM_CIRCUIT_RESET_SECONDS", 30)
        api_key = env_secret("OPENAI_API_KEY")
        primary = Provider(env_str("LLM_PROVIDER_NAME", "primary"),
                           env_str("LLM_API_URL", "http://127.0.0.1:8200").rstrip("/"),
                           api_key, CircuitBreaker(failures, reset))
        fallback = None
        if env_bool("LLM_FALLBACK_ENABLED", False) and env_str("LLM_FALLBACK_URL"):
            fallback = Provider(env_str("LLM_FALLBACK_PROVIDER_NAME", "fallback"),
                                env_str("LLM_FALLBACK_URL").rstrip("/"),
                                env_secret("LLM_FALLBACK_API_KEY", api_key), CircuitBreaker(failures, reset))
        return cls(env_str("LLM_MODEL", "gpt-4"), primary, log, fallback=fallback,
                   max_concurrency=env_int("LLM_MAX_CONCURRENCY", 8),
                   rate_per_minute=env_float("LLM_RATE_PER_MINUTE", 600),
                   queue_timeout=env_float("LLM_QUEUE_TIMEOUT", 30),
                   max_retries=env_int("LLM_MAX_RETRIES", 2),
                   backoff_base=env_float("LLM_BACKOFF_BASE", 0.5),
                   backoff_max=env_float("LLM_BACKOFF_MAX", 10),
                   connect_timeout=env_float("LLM_CONNECT_TIMEOUT", 5),
                   read_timeout=env_float("LLM_READ_TIMEOUT", 30),
                   ratelimit_log_seconds=env_float("LLM_RATELIMIT_LOG_SECONDS", 10))

    def complete(self, prompt):
        """Answer a prompt from the primary, else the fallback; raise LLMError when neither can."""
        if not self.semaphore.acquire(timeout=self.queue_timeout):
            raise LLMError("llm concurrency limit: queue timeout", self.primary.name, "queue_timeout")
        try:
            if not self.bucket.acquire(self.queue_timeout):
                self.log.warning("llm client rate limit reached", rate_per_minute=self.bucket.rate * 60)
                raise LLMError("client-side rate limit", self.primary.name, "client_rate_limit")
            try:
                return self._call_with_breaker(self.primary, prompt)
            except LLMError as error:
                if self.fallback is None:
                    raise
                self.log.warning("llm falling back", primary=self.primary.name,
                                 fallback=self.fallback.name, error=error)
                return self._call_with_breaker(self.fallback, prompt)
        finally:
            self.semaphore.release()

    def _call_with_breaker(self, provider, prompt):
        if not provider.breaker.allow():
            self.log.warning("llm circuit open", provider=provider.name)
            raise LLMError("circuit open", provider.name, "circuit_open")
        try:
            result = self._call_with_retries(provider, prompt)
        except LLMError:
            if provider.breaker.record_failure():
                self.log.error("llm circuit opened", provider=provider.name,
                               failures=provider.breaker.failures,
                               reset_seconds=provider.breaker.reset_seconds)
            raise
        provider.breaker.record_success()
        return result

    def backoff_seconds(self, attempt, retry_after=None):
        if retry_after is not None:
            return min(self.backoff_max, retry_after + random.uniform(0, self.backoff_base))
        return min(self.backoff_max, self.backoff_base * 2 ** attempt + random.uniform(0, self.backoff_base))

    def _call_with_retries(self, provider, prompt):
        for attempt in range(self.max_retries + 1):
            response = self._post(provider, prompt)
            if response.status_code == 200:
                return self._parse(provider, response)
            if response.status_code in RETRYABLE and attempt < self.max_retries:
                time.sleep(self.backoff_seconds(attempt, parse_retry_after(response)))
                continue
            raise LLMError(f"HTTP {response.status_code}", provider.name, response.status_code)
        raise LLMError("retries exhausted", provider.name, "retries")  # not reached

    def _post(self, provider, prompt):
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}]}
        headers = {"Authorization": "Bearer " + provider.api_key}
        started = time.perf_counter()
        try:
            response = self.session.post(provider.url + "/v1/chat/completions", json=body,
                                         headers=headers, timeout=self.timeout)
        except requests.Timeout:
            self._observe(provider, started, "error", "timeout")
            self.log.error("llm timeout", provider=provider.name, read_timeout=self.timeout[1])
            raise LLMError("timeout", provider.name, "timeout") from None
        except requests.RequestException as exc:
            self._observe(provider, started, "error", "connection_error")
            self.log.error("llm error", status="connection_error", provider=provider.name, error=exc)
            raise LLMError("connection error", provider.name, "connection_error") from None
        status = response.status_code
        self._observe(provider, started, "success" if status == 200 else "error", str(status))
        self._log_rate_limit(provider, response)
        if status in (401, 403):
            self.log.error("llm auth error", status=status, provider=provider.name)
        elif status != 200:
            self.log.error("llm error", status=status, provider=provider.name,
                           retry_after=response.headers.get("Retry-After", ""))
        return response

    def _observe(self, provider, started, status, code):
        LLM_CALLS.labels(provider.name, status, code).inc()
        LLM_DURATION.labels(provider.name).observe(time.perf_counter() - started)

    def _log_rate_limit(self, provider, response):
        remaining = response.headers.get("x-ratelimit-remaining-requests")
        if remaining is None:
            return
        limit = response.headers.get("x-ratelimit-limit-requests", "")
        low = remaining.isdigit() and limit.isdigit() and int(remaining) * 5 < int(limit)
        now = time.monotonic()
        if response.status_code == 429 or low or now - self._last_ratelimit_log >= self.ratelimit_log_seconds:
            self._last_ratelimit_log = now
            self.log.info("rate limit", remaining=remaining,
                          reset=response.headers.get("x-ratelimit-reset-requests", ""),
                          limit=limit, provider=provider.name)

    def _parse(self, provider, response):
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError("malformed response", provider.name, "malformed") from None
        usage = data.get("usage") or {}
        for kind in ("prompt", "completion"):
            LLM_TOKENS.labels(provider.name, kind).inc(usage.get(kind + "_tokens", 0))
        return LLMResult(text=text, provider=provider.name, usage=usage)


def parse_retry_after(response):
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
