"""llm-provider: a MOCK of an external OpenAI-compatible API, with switchable failure modes.

Run: python3 -m octollm_lab.llm_provider

| variable | default | meaning |
|---|---|---|
| LLM_PROVIDER_PORT | 8200 | |
| PROVIDER_NAME | llm-provider | name in answers and in the `service` label |
| LLM_PROVIDER_KEY_FILE | "" | file holding the accepted API key, re-read on each request |
| LLM_PROVIDER_API_KEY | "" | accepted key when there is no key file; with neither, any non-empty key passes |
| LLM_PROVIDER_MODE_FILE | "" | file holding the mode, re-read on each request |
| LLM_PROVIDER_MODE | normal | mode when there is no mode file |
| LLM_PROVIDER_RPM | 0 | real rate limit, requests per minute (0: off) |
| LLM_PROVIDER_LATENCY_MS | 20 | base answer time |
| LLM_PROVIDER_MODELS | gpt-4,gpt-3.5-turbo | listed by GET /v1/models |

Mode file content: one of `normal`, `ratelimit` (429 + Retry-After), `unavailable` (503),
`slow` (sleeps slow_ms, default 5000, then answers), `auth` (401 for every key), followed by
optional `slow_ms=N` and `retry_after=N`, e.g. `slow slow_ms=40000`.

Endpoints: GET /health, GET /v1/models (Bearer key required), POST /v1/chat/completions.
Answers carry x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests.
"""

import collections
import contextlib
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field

from .common import env_float, env_int, env_list, env_str, read_text_file
from .web import App, Response

MODES = ("normal", "ratelimit", "unavailable", "slow", "auth")
NOMINAL_LIMIT = 10000  # advertised when the real limit is off


@dataclass
class ProviderConfig:
    name: str = "llm-provider"
    port: int = 8200
    key_file: str = ""
    api_key: str = ""
    mode_file: str = ""
    default_mode: str = "normal"
    rpm: int = 0
    latency_ms: float = 20
    models: list = field(default_factory=lambda: ["gpt-4", "gpt-3.5-turbo"])

    @classmethod
    def from_env(cls):
        return cls(name=env_str("PROVIDER_NAME", "llm-provider"), port=env_int("LLM_PROVIDER_PORT", 8200),
                   key_file=env_str("LLM_PROVIDER_KEY_FILE"), api_key=env_str("LLM_PROVIDER_API_KEY"),
                   mode_file=env_str("LLM_PROVIDER_MODE_FILE"), default_mode=env_str("LLM_PROVIDER_MODE", "normal"),
                   rpm=env_int("LLM_PROVIDER_RPM", 0), latency_ms=env_float("LLM_PROVIDER_LATENCY_MS", 20),
                   models=env_list("LLM_PROVIDER_MODELS", ["gpt-4", "gpt-3.5-turbo"]))


def parse_mode(text):
    """'slow slow_ms=800' -> ('slow', {'slow_ms': 800}); unknown or empty -> 'normal'."""
    mode, options = "normal", {}
    for token in text.split():
        if "=" in token:
            key, value = token.split("=", 1)
            with contextlib.suppress(ValueError):
                options[key.strip()] = float(value)
        elif token.strip().lower() in MODES:
            mode = token.strip().lower()
    return mode, options


def current_mode(config):
    if config.mode_file and os.path.exists(config.mode_file):
        return parse_mode(read_text_file(config.mode_file))
    return parse_mode(config.default_mode)


def expected_key(config):
    if config.key_file and os.path.exists(config.key_file):
        return read_text_file(config.key_file).strip()
    return config.api_key


class RequestWindow:
    """Requests seen in the last 60 seconds: the provider's real rate limit."""

    def __init__(self, limit, clock=time.monotonic):
        self.limit = limit
        self.clock = clock
        self.times = collections.deque()
        self._lock = threading.Lock()

    def take(self):
        """Return (allowed, remaining, seconds_until_reset)."""
        with self._lock:
            now = self.clock()
            while self.times and now - self.times[0] >= 60:
                self.times.popleft()
            limit = self.limit or NOMINAL_LIMIT
            reset = 60 - (now - self.times[0]) if self.times else 0.0
            if self.limit and len(self.times) >= self.limit:
                return False, 0, reset
            self.times.append(now)
            return True, max(0, limit - len(self.times)), reset


def openai_error(status, message, error_type, code=None, headers=None):
    return Response({"error": {"message": message, "type": error_type, "param": None, "code": code}},
                    status, headers)


def create_app(config, log=None):
    app = App(config.name, log)
    window = RequestWindow(config.rpm)
    last_mode = {"mode": None}

    def limit_headers(remaining, reset):
        return {"x-ratelimit-limit-requests": config.rpm or NOMINAL_LIMIT,
                "x-ratelimit-remaining-requests": remaining,
                "x-ratelimit-reset-requests": f"{max(0, round(reset))}s"}

    def mode_now():
        mode, options = current_mode(config)
        if mode != last_mode["mode"]:
            app.log.info("mode changed", mode=mode, previous=last_mode["mode"], **options)
            last_mode["mode"] = mode
        return mode, options

    def auth_error(request, mode):
        """An OpenAI-style 401 answer, or None when the key is accepted."""
        header = request.headers.get("Authorization") or ""
        key = header[7:].strip() if header.startswith("Bearer ") else ""
        wanted = expected_key(config)
        if mode == "auth" or not key or (wanted and key != wanted):
            app.log.warning("auth failed", client=request.client, mode=mode)
            return openai_error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return None

    @app.route("GET", "/health")
    def health(request):
        return {"status": "ok", "provider": config.name, "mode": current_mode(config)[0]}

    @app.route("GET", "/v1/models")
    def models(request):
        mode, _ = mode_now()
        denied = auth_error(request, mode)
        if denied:
            return denied
        if mode == "unavailable":
            return openai_error(503, "The server is overloaded or not ready yet.", "server_error")
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": config.name}
                                           for m in config.models]}

    @app.route("POST", "/v1/chat/completions")
    def chat(request):
        mode, options = mode_now()
        denied = auth_error(request, mode)
        if denied:
            return denied
        if mode == "ratelimit":
            retry_after = int(options.get("retry_after", 2))
            headers = dict(limit_headers(0, retry_after), **{"Retry-After": retry_after})
            return openai_error(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded", headers)
        if mode == "unavailable":
            return openai_error(503, "The server is overloaded or not ready yet.", "server_error")
        allowed, remaining, reset = window.take()
        if not allowed:
            app.log.warning("rate limit exceeded", rpm=config.rpm)
            headers = dict(limit_headers(0, reset), **{"Retry-After": max(1, round(reset))})
            return openai_error(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded", headers)
        delay_ms = options.get("slow_ms", 5000) if mode == "slow" else config.latency_ms
        time.sleep(delay_ms / 1000.0)
        return Response(completion(config.name, request.json()), 200, limit_headers(remaining, reset))

    return app


def completion(provider, body):
    messages = body.get("messages") or []
    prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    text = f"Plan for: {prompt[-200:]}. 1. analyse the goal 2. choose the arm 3. execute and verify"
    digest = hashlib.md5((provider + prompt).encode("utf-8")).hexdigest()
    prompt_tokens, completion_tokens = len(prompt.split()), len(text.split())
    return {"id": "chatcmpl-" + digest[:24], "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model") or "gpt-4",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def main():
    config = ProviderConfig.from_env()
    create_app(config).serve(config.port)


if __name__ == "__main__":
    main()
