"""An arm: one generic service configured by name (planner, executor, coder, judge, guardian, retriever).

Run: ARM_NAME=coder-arm python3 -m octollm_lab.arm

| variable | default | meaning |
|---|---|---|
| ARM_NAME | planner-arm | |
| ARM_PORT | by name: 8100 planner .. 8105 retriever | |
| ARM_DOMAIN | by name (routing.DEFAULT_ARMS) | |
| ARM_KEYWORDS | by name | comma list |
| ARM_URL | http://127.0.0.1:<ARM_PORT> | URL registered with the orchestrator |
| ARM_VERSION | 0.1.0 | |
| ORCHESTRATOR_URL | http://127.0.0.1:8000 | |
| ARM_REGISTER_INTERVAL | 30 | seconds between re-registrations (0: register once) |
| ARM_REGISTER_MAX_BACKOFF | 30 | seconds, cap of the start-up retry backoff |
| ARM_EXECUTE_DELAY_MS | 0 | FAULT slow hop: latency added to POST /execute (also POST /debug/delay target=<ARM_NAME>) |
| GUARDIAN_ENABLED | false | run the guardian checks on an arm not named guardian-arm |

guardian-arm also reads the GUARDIAN_* variables of guardian.py.

Endpoints: GET /health, GET /capabilities, GET /metrics, POST /execute {task_id, goal} -> {"result": ...},
the shared /debug/*; guardian-arm also POST /api/v1/check {text, source} and POST /api/v1/reload (not with
LAB_ENDPOINTS=seed, common.py: SIGHUP reloads).
"""

import signal
import threading
import time
from dataclasses import dataclass, field

import requests

from .common import Logger, env_bool, env_float, env_int, env_list, env_str, seed_endpoints_only, service_name
from .guardian import Guardian
from .routing import DEFAULT_ARMS
from .web import App, HttpError, Response

VERBS = {"planning": "planned", "execution": "executed", "coding": "wrote code for",
         "validation": "validated", "security": "scanned", "retrieval": "retrieved results for"}


@dataclass
class ArmConfig:
    name: str = "planner-arm"
    port: int = 8100
    domain: str = "planning"
    keywords: list = field(default_factory=list)
    url: str = ""
    version: str = "0.1.0"
    orchestrator_url: str = "http://127.0.0.1:8000"
    register_interval: float = 30
    register_max_backoff: float = 30
    execute_delay_ms: float = 0

    @classmethod
    def for_name(cls, name, **overrides):
        domain, keywords, port = DEFAULT_ARMS.get(name, ("general", [], 8100))
        config = cls(name=name, port=port, domain=domain, keywords=list(keywords))
        for key, value in overrides.items():
            setattr(config, key, value)
        config.url = config.url or f"http://127.0.0.1:{config.port}"
        return config

    @classmethod
    def from_env(cls):
        name = env_str("ARM_NAME", "planner-arm")
        domain, keywords, port = DEFAULT_ARMS.get(name, ("general", [], 8100))
        port = env_int("ARM_PORT", port)
        return cls.for_name(name, port=port, domain=env_str("ARM_DOMAIN", domain),
                            keywords=env_list("ARM_KEYWORDS", keywords),
                            url=env_str("ARM_URL", f"http://127.0.0.1:{port}"),
                            version=env_str("ARM_VERSION", "0.1.0"),
                            orchestrator_url=env_str("ORCHESTRATOR_URL", "http://127.0.0.1:8000").rstrip("/"),
                            register_interval=env_float("ARM_REGISTER_INTERVAL", 30),
                            register_max_backoff=env_float("ARM_REGISTER_MAX_BACKOFF", 30),
                            execute_delay_ms=env_float("ARM_EXECUTE_DELAY_MS", 0))

    def capabilities(self):
        return {"name": self.name, "domain": self.domain, "keywords": self.keywords,
                "url": self.url, "version": self.version}


def create_app(config, guardian=None, log=None):
    app = App(config.name, log)

    @app.route("GET", "/health")
    def health(request):
        return {"status": "ok", "arm": config.name, "domain": config.domain, "version": config.version}

    @app.route("GET", "/capabilities")
    def capabilities(request):
        return config.capabilities()

    @app.route("POST", "/execute")
    def execute(request):
        body = request.json()
        goal = str(body.get("goal") or "")
        task_id = str(body.get("task_id") or "")
        app.delays.sleep_for(config.name, config.execute_delay_ms)
        answer = {"task_id": task_id, "arm": config.name}
        if guardian is not None:
            source = str(body.get("source") or "orchestrator")
            if guardian.source_blocked(source):
                raise HttpError(403, "unauthorized source")
            answer.update(guardian.check(goal, source))
        verb = VERBS.get(config.domain, "handled")
        answer["result"] = f"{config.name} {verb}: {goal}"
        app.log.info("task executed", task_id=task_id, arm=config.name)
        return answer

    if guardian is not None:
        add_guardian_routes(app, guardian)
    return app


def add_guardian_routes(app, guardian):
    @app.route("POST", "/api/v1/check")
    def check(request):
        body = request.json()
        source = str(body.get("source") or request.client)
        if guardian.source_blocked(source):
            return Response({"error": "unauthorized source", "source": source}, 403)
        return guardian.check(str(body.get("text") or ""), source)

    if not seed_endpoints_only():
        @app.route("POST", "/api/v1/reload")
        def reload(request):
            return guardian.reload()

    app.signal_hooks[signal.SIGHUP] = guardian.reload


def guardian_from_env(log):
    return Guardian(log, env_str("GUARDIAN_BLOCKED_FILE", "/etc/octollm/guardian/blocked_commands.txt"),
                    sources_file=env_str("GUARDIAN_BLOCKED_SOURCES_FILE",
                                         "/etc/octollm/guardian/blocked_sources.txt"),
                    sources=env_list("GUARDIAN_BLOCKED_SOURCES"), audit=env_bool("GUARDIAN_AUDIT_LOG", False),
                    redact_logs=env_bool("GUARDIAN_REDACT_LOGS", False))


class Registrar:
    """Registers the arm with the orchestrator: retries with backoff, then re-registers periodically."""

    def __init__(self, config, log, session=None):
        self.config = config
        self.log = log
        self.session = session or requests.Session()

    def register_once(self):
        try:
            response = self.session.post(self.config.orchestrator_url + "/api/v1/arms/register",
                                         json=self.config.capabilities(), timeout=5)
        except requests.RequestException as exc:
            self.log.warning("failed to register", orchestrator=self.config.orchestrator_url, error=exc)
            return False
        if response.status_code != 200:
            self.log.warning("failed to register", orchestrator=self.config.orchestrator_url,
                             status=response.status_code, error=response.text[:200])
            return False
        self.log.info("registered with orchestrator", orchestrator=self.config.orchestrator_url,
                      name=self.config.name, url=self.config.url)
        return True

    def run(self):
        delay = 1.0
        while not self.register_once():
            time.sleep(delay)
            delay = min(delay * 2, self.config.register_max_backoff)
        while self.config.register_interval > 0:
            time.sleep(self.config.register_interval)
            self.register_once()

    def start(self):
        threading.Thread(target=self.run, name="register", daemon=True).start()


def main():
    config = ArmConfig.from_env()
    log = Logger(service_name(config.name))
    guardian = guardian_from_env(log) if config.name == "guardian-arm" or env_bool("GUARDIAN_ENABLED") else None
    app = create_app(config, guardian, log)
    Registrar(config, log).start()
    app.serve(config.port)


if __name__ == "__main__":
    main()
