"""loadgen: light steady traffic, so that metrics, caches and logs have something to show.

Run: python3 -m octollm_lab.loadgen

| variable | default | meaning |
|---|---|---|
| LOADGEN_RPS | 2 | requests per second, all kinds together |
| LOADGEN_PROMPT_POOL | 40 | distinct task goals |
| LOADGEN_SKEW | 1.5 | Zipf exponent of goal popularity (the LLM cache hit rate is > 70% when healthy) |
| LOADGEN_MIX | task=60,score=15,check=15,health=10 | weights of the request kinds |
| LOADGEN_CONCURRENCY | 8 | requests in flight at most (a tick is skipped when all are busy) |
| LOADGEN_TIMEOUT | 30 | seconds per request |
| LOADGEN_SUMMARY_SECONDS | 60 | period of the "loadgen summary" line |
| ORCHESTRATOR_URL | http://127.0.0.1:8000 | |
| GUARDIAN_URL | http://127.0.0.1:8104 | |
| LOADGEN_ARM_URLS | the six arms at 127.0.0.1:8100-8105 | comma list for the health calls |

Kinds: task = POST /api/v1/tasks, score = POST /api/v1/route/score, check = guardian POST /api/v1/check
with clean text, health = GET /health of a random arm. Errors are logged and answered with backoff;
loadgen itself never stops on them.
"""

import random
import signal
import threading
import time

import requests

from .common import Logger, env_float, env_int, env_list, env_str, service_name
from .routing import DEFAULT_ARMS

TEMPLATES = ["Write a Python function to {}", "Plan the steps to {}", "Run the shell command to {}",
             "Validate and verify the job that will {}", "Scan for security issues before we {}",
             "Search the documentation and find how to {}"]
SUBJECTS = ["parse nginx access logs", "migrate the user table", "summarise weekly metrics",
            "rotate service credentials", "deduplicate customer records", "index product documents",
            "back up the analytics database"]
CLEAN_TEXTS = ["Please summarise the quarterly report", "List the open tickets for the web team",
               "Translate the release notes into French", "Draft a short status update"]


def build_goals(count):
    """count distinct goals, in a fixed order."""
    goals = []
    combos = len(TEMPLATES) * len(SUBJECTS)
    for index in range(count):
        goal = TEMPLATES[index % len(TEMPLATES)].format(SUBJECTS[(index // len(TEMPLATES)) % len(SUBJECTS)])
        if index >= combos:
            goal += f" (variant {index // combos})"
        goals.append(goal)
    return goals


def zipf_weights(count, exponent):
    return [1.0 / (rank + 1) ** exponent for rank in range(count)]


def parse_mix(text):
    mix = {}
    for item in text.split(","):
        kind, _, weight = item.partition("=")
        if kind.strip() and weight.strip():
            mix[kind.strip()] = float(weight)
    return mix


class LoadGenerator:
    def __init__(self, log):
        self.log = log
        self.rps = env_float("LOADGEN_RPS", 2)
        self.goals = build_goals(env_int("LOADGEN_PROMPT_POOL", 40))
        self.weights = zipf_weights(len(self.goals), env_float("LOADGEN_SKEW", 1.5))
        self.mix = parse_mix(env_str("LOADGEN_MIX", "task=60,score=15,check=15,health=10"))
        self.orchestrator = env_str("ORCHESTRATOR_URL", "http://127.0.0.1:8000").rstrip("/")
        self.guardian = env_str("GUARDIAN_URL", "http://127.0.0.1:8104").rstrip("/")
        self.arm_urls = env_list("LOADGEN_ARM_URLS", [f"http://127.0.0.1:{port}"
                                                      for _, _, port in DEFAULT_ARMS.values()])
        self.timeout = env_float("LOADGEN_TIMEOUT", 30)
        self.summary_seconds = env_float("LOADGEN_SUMMARY_SECONDS", 60)
        self.slots = threading.BoundedSemaphore(env_int("LOADGEN_CONCURRENCY", 8))
        self.session = requests.Session()
        self.running = True
        self.failures = 0
        self.counts = {"sent": 0, "ok": 0, "errors": 0, "skipped": 0}
        self._lock = threading.Lock()

    def goal(self):
        return random.choices(self.goals, weights=self.weights)[0]

    def request_for(self, kind):
        """(method, url, json body) of one request of this kind."""
        if kind == "task":
            return "POST", self.orchestrator + "/api/v1/tasks", {
                "goal": self.goal(), "constraints": [], "priority": random.choice(["low", "medium", "high"])}
        if kind == "score":
            return "POST", self.orchestrator + "/api/v1/route/score", {"goal": self.goal(), "constraints": []}
        if kind == "check":
            return "POST", self.guardian + "/api/v1/check", {"text": random.choice(CLEAN_TEXTS), "source": "loadgen"}
        return "GET", random.choice(self.arm_urls) + "/health", None

    def send(self, kind):
        try:
            self._send(kind)
        except Exception as exc:  # never let one request kill loadgen
            self.log.error("loadgen internal error", kind=kind, error=exc)
        finally:
            self.slots.release()

    def _send(self, kind):
        method, url, body = self.request_for(kind)
        try:
            response = self.session.request(method, url, json=body, timeout=self.timeout)
            reachable, error = True, None if response.status_code < 400 else f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            reachable, error = False, f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.counts["sent"] += 1
            self.counts["ok" if error is None else "errors"] += 1
            # back off only while targets are unreachable: error answers are the signal to keep
            self.failures = 0 if reachable else self.failures + 1
        if error:
            self.log.warning("loadgen request failed", kind=kind, url=url, error=error)

    def backoff(self):
        if self.failures >= 3:
            seconds = min(30.0, 0.5 * 2 ** (self.failures - 3))
            self.log.warning("loadgen backing off", seconds=seconds, failures=self.failures)
            time.sleep(seconds)

    def run(self):
        self.log.info("loadgen started", rps=self.rps, goals=len(self.goals), mix=env_str("LOADGEN_MIX", "default"))
        kinds, kind_weights = list(self.mix), list(self.mix.values())
        next_tick = last_summary = time.monotonic()
        while self.running:
            self.backoff()
            if self.slots.acquire(blocking=False):
                kind = random.choices(kinds, weights=kind_weights)[0]
                threading.Thread(target=self.send, args=(kind,), daemon=True).start()
            else:
                with self._lock:
                    self.counts["skipped"] += 1
            now = time.monotonic()
            if now - last_summary >= self.summary_seconds:
                last_summary = now
                with self._lock:
                    self.log.info("loadgen summary", **self.counts)
            next_tick = max(next_tick + 1.0 / self.rps, now - 1)  # no burst to catch up after a stall
            time.sleep(max(0.0, next_tick - time.monotonic()))
        self.log.info("loadgen stopped", **self.counts)


def main():
    generator = LoadGenerator(Logger(service_name("loadgen")))

    def stop(signum, frame):
        generator.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    generator.run()


if __name__ == "__main__":
    main()
