"""The orchestrator: routes tasks to arms, keeps them in PostgreSQL, asks the LLM through a Redis cache.

Run: python3 -m octollm_lab.orchestrator

| variable | default | meaning |
|---|---|---|
| ORCHESTRATOR_PORT | 8000 | |
| REDIS_HOST | 127.0.0.1 | |
| REDIS_PORT | 6379 | |
| REDIS_PASSWORD (or REDIS_PASSWORD_FILE) | "" | |
| REDIS_DB | 0 | |
| REDIS_TIMEOUT | 2 | seconds (connect and socket) |
| ARM_EXECUTE_TIMEOUT | 30 | seconds for an arm's POST /execute |
| ARM_CALL_DELAY_MS | "" | FAULT slow hop: `arm=ms,...` added before calls to those arms (also POST /debug/delay) |
| CACHE_WARM_ON_STARTUP | true | warm the cache at start-up (best effort) |
| CACHE_WARM_TTL | 3600 | seconds a warm entry (arm capability, entity) lives |
| CACHE_WARM_INTERVAL | 900 | seconds between background re-warms (0 disables) |
| HEALTH_CACHE_SECONDS | 2 | how long a PostgreSQL health probe result is reused |
| PENDING_RETRY_INTERVAL | 10 | seconds between dispatches of the tasks left pending for want of an arm (0 disables) |
| PENDING_RETRY_BATCH | 20 | tasks dispatched again per round, oldest first |

Also: db.py (POSTGRES_*, DB_POOL_*, LEAK_DB_CONNECTIONS), llm_client.py (LLM_*, OPENAI_API_KEY),
cache.py (CACHE_TTL, RESPONSE_CACHE_ENABLED, ENTITY_WARM_COUNT), registry.py (ARM_HEALTH_*,
EXPECTED_ARMS, ARM_REGISTRATION_TTL), debug.py and web.py (shared).

Endpoints: GET /health, GET /ready, GET /metrics, POST /api/v1/arms/register, GET /api/v1/arms,
POST /api/v1/tasks, GET /api/v1/tasks/{task_id}, POST /api/v1/route/score, POST /api/v1/cache/warm,
and the shared /debug/leak, /debug/memory, /debug/delay. With LAB_ENDPOINTS=seed (common.py) only the seed's:
/health (without the pool figures), /ready, /metrics, the arms' registration and the tasks.

Metrics (besides the shared ones): octollm_tasks_total{status}, octollm_routing_decisions_total{arm,fallback},
octollm_task_retries_total{status}, and those of llm_client.py, cache.py and db.py; all under METRICS_PREFIX when
set (common.metric_name).

Pending tasks: a task whose arm is not registered, unhealthy or unreachable when it arrives is left `pending`
(answer 202), as a queue keeps work no worker can take yet. A background round (every PENDING_RETRY_INTERVAL
seconds, and at once when an arm registers) dispatches those tasks again as soon as routing finds a registered,
healthy arm for them: at start-up the first tasks arrive before the arms have registered, and an arm's outage
must not leave its tasks behind for ever. Only tasks this orchestrator deferred for want of an arm are taken (the
reason of their last action_log entry); a task left pending for any other reason stays for an operator. Replicas
claim a task with a conditional UPDATE, so each is dispatched once.
"""

import json
import threading
import time
import uuid

import psycopg2
import psycopg2.extras
import redis
import requests
from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import debug
from .cache import ResponseCache, llm_cache_key, warm_cache
from .common import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
    metric_name,
    seed_endpoints_only,
    service_name,
)
from .db import Database, DatabaseUnavailable
from .llm_client import LLMClient, LLMError
from .registry import ArmRegistry
from .routing import DEFAULT_ARMS, ArmCapability, ArmRouter
from .web import App, HttpError, Response

TASKS = Counter(metric_name("octollm_tasks_total"), "Tasks by final status of the request", ["status"])
ROUTING = Counter(metric_name("octollm_routing_decisions_total"), "Routing decisions", ["arm", "fallback"])
RETRIES = Counter(metric_name("octollm_task_retries_total"), "Pending tasks dispatched again, by their new status",
                  ["status"])

TASK_COLUMNS = "task_id, goal, constraints, priority, status, assigned_arm, result, created_at, updated_at"
# _leave_pending's reasons: the task waits for an arm, and is dispatched again once routing finds one
WAITING_FOR_ARM = ("arm not registered", "arm unhealthy", "arm unreachable")
PENDING_FOR_ARM_SQL = (
    "SELECT t.task_id, t.goal, t.constraints, last.reason FROM tasks t"
    " JOIN LATERAL (SELECT a.details->>'reason' AS reason FROM action_log a WHERE a.task_id = t.task_id"
    " ORDER BY a.id DESC LIMIT 1) last ON true"
    " WHERE t.status = 'pending' AND last.reason = ANY(%s) ORDER BY t.created_at LIMIT %s")


def redis_from_env():
    # No client-side retries (newer redis-py retries by default): a Redis outage shows at once.
    return redis.Redis(host=env_str("REDIS_HOST", "127.0.0.1"), port=env_int("REDIS_PORT", 6379),
                       password=env_secret("REDIS_PASSWORD") or None, db=env_int("REDIS_DB", 0),
                       socket_timeout=env_float("REDIS_TIMEOUT", 2),
                       socket_connect_timeout=env_float("REDIS_TIMEOUT", 2), decode_responses=True,
                       retry=Retry(NoBackoff(), 0))


def llm_prompt(goal):
    return "Plan the steps to accomplish this goal: " + goal


class Orchestrator:
    def __init__(self, app, db, redis_client, llm, registry):
        self.app = app
        self.log = app.log
        self.db = db
        self.redis = redis_client
        self.llm = llm
        self.registry = registry
        self.router = ArmRouter(is_healthy=registry.is_healthy)
        self.warm_ttl = env_int("CACHE_WARM_TTL", 3600)  # warm entries live as long as the seed's (1 h)
        self.cache = ResponseCache(redis_client, env_int("CACHE_TTL", 300),
                                   env_bool("RESPONSE_CACHE_ENABLED", True), self.log)
        self.session = requests.Session()
        self.execute_timeout = env_float("ARM_EXECUTE_TIMEOUT", 30)
        self.health_cache_seconds = env_float("HEALTH_CACHE_SECONDS", 2)
        self._pg_health = (0.0, "unknown")
        self.retry_batch = env_int("PENDING_RETRY_BATCH", 20)
        self.retry_wakeup = threading.Event()
        for target, ms in debug.parse_delays(env_str("ARM_CALL_DELAY_MS", "")).items():
            app.delays.set(target, ms)
        self.seed_only = seed_endpoints_only()
        app.add("GET", "/health", self.health)
        app.add("GET", "/ready", self.health)
        app.add("POST", "/api/v1/arms/register", self.register_arm)
        app.add("POST", "/api/v1/tasks", self.create_task)
        app.add("GET", "/api/v1/tasks/{task_id}", self.get_task)
        if not self.seed_only:
            app.add("GET", "/api/v1/arms", lambda req: {"arms": self.registry.describe()})
            app.add("POST", "/api/v1/route/score", self.route_score)
            app.add("POST", "/api/v1/cache/warm", self.warm)

    # health

    def _postgres_status(self):
        checked_at, status = self._pg_health
        if time.monotonic() - checked_at < self.health_cache_seconds:
            return status
        try:
            self.db.ping()
            status = "ok"
        except psycopg2.Error as exc:
            status = "error: " + str(exc).strip().splitlines()[0]
        self._pg_health = (time.monotonic(), status)
        return status

    def _redis_status(self):
        try:
            self.redis.ping()
            return "ok"
        except Exception as exc:
            return f"error: {exc}"

    def health(self, request):
        checks = {"postgres": self._postgres_status(), "redis": self._redis_status(),
                  "arms": self.registry.health_summary(),
                  "db_pool": {"in_use": self.db.in_use(), "max": self.db.maxconn,
                              "leaked": len(self.db.leaked)},
                  "llm_circuit": self.llm.primary.breaker.state}
        if self.seed_only:
            del checks["db_pool"]
        healthy = checks["postgres"] == "ok" and checks["redis"] == "ok"
        if not healthy:
            self.log.warning("health degraded", postgres=checks["postgres"], redis=checks["redis"])
        body = {"status": "ok" if healthy else "degraded", "service": self.app.service, "checks": checks}
        return Response(body, 200 if healthy else 503)

    # arms and routing

    def register_arm(self, request):
        try:
            capability = ArmCapability.from_dict(request.json())
        except ValueError as exc:
            raise HttpError(400, str(exc)) from exc
        self.registry.register(capability)
        self.retry_wakeup.set()  # its tasks that wait for an arm can go now
        # A (re-)registration refreshes the arm's warm cache entry, as the seed's start-up warming does.
        try:
            warm_cache(self.redis, [capability.to_dict()], [], self.warm_ttl, self.log)
        except redis.RedisError as exc:
            self.log.warning("cache write failed", error=exc)
        return {"registered": capability.name}

    def _route(self, request):
        body = request.json()
        goal = body.get("goal")
        if not isinstance(goal, str) or not goal.strip():
            raise HttpError(400, "goal is required")
        constraints = body.get("constraints") or []
        if not isinstance(constraints, list):
            raise HttpError(400, "constraints must be a list")
        constraints = [str(c) for c in constraints]
        return body, goal, constraints, self.router.route(self.registry.arms(), goal, constraints)

    def route_score(self, request):
        _, _, _, decision = self._route(request)
        return decision.to_dict()

    # tasks

    def _action(self, conn, task_id, action, arm, **details):
        with conn.cursor() as cur:
            cur.execute("INSERT INTO action_log (task_id, action, arm, details) VALUES (%s, %s, %s, %s)",
                        (task_id, action, arm, psycopg2.extras.Json(details)))

    def _update(self, task_id, status, arm, action, result=None, **details):
        with self.db.connection() as conn:
            with conn.cursor() as cur:
                cur.execute("UPDATE tasks SET status = %s, assigned_arm = %s, updated_at = now(),"
                            " result = COALESCE(%s, result) WHERE task_id = %s",
                            (status, arm, psycopg2.extras.Json(result) if result is not None else None,
                             task_id))
            self._action(conn, task_id, action, arm, **details)

    def _fetch_task(self, task_id, with_actions=False):
        with self.db.connection() as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = %s", (task_id,))
            task = cur.fetchone()
            if task is not None and with_actions:
                cur.execute("SELECT action, arm, details, timestamp FROM action_log"
                            " WHERE task_id = %s ORDER BY id", (task_id,))
                task["actions"] = cur.fetchall()
        return task

    def _answer(self, task_id, status, http_status, decision):
        TASKS.labels(status).inc()
        task = self._fetch_task(task_id)
        task["routing"] = decision.to_dict()
        return Response(task, http_status)

    def create_task(self, request):
        body, goal, constraints, decision = self._route(request)
        task_id = "task-" + uuid.uuid4().hex[:12]
        try:
            with self.db.connection(leak=True) as conn, conn.cursor() as cur:  # kept by LEAK_DB_CONNECTIONS
                cur.execute("INSERT INTO tasks (task_id, goal, constraints, priority) VALUES (%s, %s, %s, %s)",
                            (task_id, goal, psycopg2.extras.Json(constraints), body.get("priority") or "medium"))
            status, http_status = self._dispatch(task_id, goal, decision)
            return self._answer(task_id, status, http_status, decision)
        except DatabaseUnavailable as exc:
            TASKS.labels("rejected").inc()
            raise HttpError(503, str(exc)) from exc

    def _dispatch(self, task_id, goal, decision):
        """Send a stored task to the arm the decision selected: (task status, HTTP status)."""
        arm_name = decision.selected
        self.log.info("routing", task_id=task_id, arm=arm_name, score=decision.score,
                      fallback=decision.fallback, relaxed=decision.relaxed)
        self.log.debug("routing scores", task_id=task_id, scores=json.dumps(decision.scores))
        if decision.relaxed:
            # the seed's router (Task Routing Failures, Scenario D) logs the goal when it drops the optional
            # constraints: user data in the orchestrator's log (Security Violations D)
            self.log.warning("no good arm match, relaxing constraints", task_id=task_id, original_goal=goal,
                             kept=json.dumps(decision.constraints))
        ROUTING.labels(arm_name, str(decision.fallback).lower()).inc()
        arm = self.registry.get(arm_name)
        if arm is None or not self.registry.is_healthy(arm_name):
            return self._leave_pending(task_id, arm_name, "arm not registered" if arm is None else "arm unhealthy")
        self._update(task_id, "running", arm_name, "routed", score=decision.score,
                     scores=decision.scores, fallback=decision.fallback, relaxed=decision.relaxed)
        try:
            plan, cached = self.cache.get_or_compute(llm_cache_key(self.llm.model, llm_prompt(goal)),
                                                     lambda: self.llm.complete(llm_prompt(goal)).text)
        except LLMError as exc:
            return self._fail(task_id, arm_name, "llm error", provider=exc.provider, code=exc.code)
        return self._execute(task_id, arm, goal, plan, cached)

    def _execute(self, task_id, arm, goal, plan, cached):
        started = time.perf_counter()
        self.app.delays.sleep_for(arm.name)
        try:
            response = self.session.post(arm.url + "/execute", timeout=self.execute_timeout,
                                         json={"task_id": task_id, "goal": goal, "plan": plan})
        except requests.RequestException as exc:
            self.registry.set_health(arm.name, "unhealthy")
            return self._leave_pending(task_id, arm.name, "arm unreachable", error=str(exc))
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        try:
            output = response.json()["result"] if response.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            output = None
        if output is None:
            return self._fail(task_id, arm.name, "arm error",
                              http_status=response.status_code, body=response.text[:200])
        result = {"arm": arm.name, "output": output, "plan": plan, "llm_cached": cached}
        with self.db.connection() as conn:
            self._action(conn, task_id, "executed", arm.name, duration_ms=duration_ms)
        self._update(task_id, "completed", arm.name, "completed", result=result)
        self.log.info("task completed", task_id=task_id, arm=arm.name, duration_ms=duration_ms,
                      llm_cached=cached)
        return "completed", 200

    def _leave_pending(self, task_id, arm_name, reason, **details):
        self.log.warning("task pending", task_id=task_id, arm=arm_name, reason=reason)
        with self.db.connection() as conn:
            with conn.cursor() as cur:
                cur.execute("UPDATE tasks SET status = 'pending', assigned_arm = NULL, updated_at = now()"
                            " WHERE task_id = %s", (task_id,))
            self._action(conn, task_id, "failed", arm_name, reason=reason, task_status="pending", **details)
        return "pending", 202

    def _fail(self, task_id, arm_name, reason, **details):
        self.log.error("task failed", task_id=task_id, arm=arm_name, reason=reason, **details)
        self._update(task_id, "failed", arm_name, "failed", result={"error": reason, **details},
                     reason=reason, **details)
        return "failed", 502

    # tasks left pending for want of an arm

    def retry_pending(self):
        """Dispatch again the tasks left pending for want of an arm, where routing now finds one; how many."""
        with self.db.connection() as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(PENDING_FOR_ARM_SQL, (list(WAITING_FOR_ARM), self.retry_batch))
            waiting = cur.fetchall()
        dispatched = 0
        for task in waiting:
            constraints = [str(c) for c in task["constraints"]] if isinstance(task["constraints"], list) else []
            decision = self.router.route(self.registry.arms(), task["goal"], constraints)
            if self.registry.get(decision.selected) is None or not self.registry.is_healthy(decision.selected):
                continue  # still no arm for it: it waits for the next round, with no new trace
            with self.db.connection() as conn:
                with conn.cursor() as cur:  # claim it: another replica may be dispatching it too
                    cur.execute("UPDATE tasks SET status = 'running', updated_at = now()"
                                " WHERE task_id = %s AND status = 'pending' RETURNING task_id", (task["task_id"],))
                    claimed = cur.fetchone() is not None
                if claimed:
                    self._action(conn, task["task_id"], "retried", decision.selected, previous=task["reason"])
            if not claimed:
                continue
            self.log.info("pending task dispatched again", task_id=task["task_id"], arm=decision.selected,
                          waited_for=task["reason"])
            status, _ = self._dispatch(task["task_id"], task["goal"], decision)
            RETRIES.labels(status).inc()
            dispatched += 1
        return dispatched

    def retry_forever(self, interval):
        while True:
            self.retry_wakeup.wait(interval)
            self.retry_wakeup.clear()
            try:
                self.retry_pending()
            except Exception as exc:  # the database may be away: the next round tries again
                self.log.warning("pending task retry failed", error=str(exc).strip())

    def get_task(self, request):
        try:
            task = self._fetch_task(request.params["task_id"], with_actions=True)
        except DatabaseUnavailable as exc:
            raise HttpError(503, str(exc)) from exc
        if task is None:
            raise HttpError(404, "task not found")
        return task

    # cache warming

    def warm(self, request=None):
        arms = [arm.to_dict() for arm in self.registry.arms().values()]
        entities = []
        try:
            with self.db.connection() as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SELECT entity_id, entity_type, name, properties, access_count FROM entities"
                            " ORDER BY access_count DESC LIMIT %s", (env_int("ENTITY_WARM_COUNT", 100),))
                entities = cur.fetchall()
        except (DatabaseUnavailable, psycopg2.Error) as exc:
            self.log.warning("cache warm without entities", error=str(exc).strip())
        try:
            warmed = warm_cache(self.redis, arms, entities, self.warm_ttl, self.log)
        except redis.RedisError as exc:
            self.log.error("cache warm failed", error=exc)
            raise HttpError(503, f"cache warm failed: {exc}") from exc
        return {"warmed": warmed}


def main():
    app = App(service_name("orchestrator"))
    redis_client = redis_from_env()
    db = Database.from_env(app.log)
    registry = ArmRegistry(app.log, redis_client, expected=env_list("EXPECTED_ARMS", DEFAULT_ARMS),
                           health_timeout=env_float("ARM_HEALTH_TIMEOUT", 2),
                           registration_ttl=env_float("ARM_REGISTRATION_TTL", 120))
    if env_bool("DB_CONNECT_AT_STARTUP", False):
        try:
            db.ping()
        except psycopg2.Error as exc:  # as many deployments do: no database at start-up, no service
            app.log.error("database connection failed at startup", host=db.dsn["host"], port=db.dsn["port"],
                          error=str(exc).strip())
            raise SystemExit(1) from exc
    orchestrator = Orchestrator(app, db, redis_client, LLMClient.from_env(app.log), registry)
    registry.start(env_float("ARM_HEALTH_INTERVAL", 10))
    if env_bool("CACHE_WARM_ON_STARTUP", True):
        threading.Thread(target=lambda: _best_effort(orchestrator.warm, app.log), daemon=True).start()
    refresh = env_float("CACHE_WARM_INTERVAL", 900)
    if refresh > 0:  # warm entries outlive this interval (CACHE_WARM_TTL), so a healthy cache stays warm
        def _refresh_forever():
            while True:
                time.sleep(refresh)
                _best_effort(orchestrator.warm, app.log)
        threading.Thread(target=_refresh_forever, daemon=True).start()
    retry_interval = env_float("PENDING_RETRY_INTERVAL", 10)
    if retry_interval > 0:
        threading.Thread(target=orchestrator.retry_forever, args=(retry_interval,), name="pending-retry",
                         daemon=True).start()
    app.shutdown_hooks.append(db.close)
    app.serve(env_int("ORCHESTRATOR_PORT", 8000))


def _best_effort(func, log):
    try:
        func()
    except Exception as exc:
        log.warning("start-up cache warm failed", error=exc)


if __name__ == "__main__":
    main()
