"""The lab itself: every service healthy, metrics scraped, alert rules loaded, tasks served, and each
fault, once injected through the real component, shows the seed's symptom and heals."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest

from octollm_labctl import faults
from octollm_labctl.faults.common import redis_client
from octollm_labctl.lab import ARMS, Lab, http_status

pytestmark = pytest.mark.lab

SEED_ALERTS = {
    "ServiceDown", "ArmDown", "HighRequestLatency", "PostgreSQLDown", "HighDatabaseConnections",
    "HighMemoryUsage", "HighLLMAPIErrorRate", "CacheMissRate", "HighCPUUsage", "DiskSpaceLow",
    "SecurityViolationDetected",
}


def get_json(url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def prom(query: str) -> list[dict[str, Any]]:
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = get_json(url)
    assert status == 200, body
    return body["data"]["result"]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def pg_admin(lab: Lab) -> Any:
    conn = psycopg2.connect(host="127.0.0.1", port=5432, dbname="octollm", user="postgres",
                            password=lab.secret("postgres_admin_password"), connect_timeout=5)
    conn.autocommit = True
    return conn


def service_state(lab: Lab, service: str) -> tuple[str, str]:
    rows = [c for c in lab.containers() if c.get("Service") == service]
    assert rows, service
    return rows[0].get("State", ""), rows[0].get("Health", "")


# ---- the healthy lab --------------------------------------------------------------------------------
def test_every_service_is_healthy(healthy_lab: Lab) -> None:
    rows = healthy_lab.status()
    assert {r["service"] for r in rows} >= {"orchestrator", *ARMS, "postgres", "redis", "qdrant", "prometheus"}
    for row in rows:
        assert row["state"] == "running", row
        assert row["health"] in ("healthy", "-"), row
        assert row["http"] in (None, 200), row


def test_every_prometheus_target_is_up(healthy_lab: Lab) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        _, body = get_json("http://127.0.0.1:9090/api/v1/targets?state=active")
        targets = body["data"]["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = wait_for(all_up, 30, "every target up")
    jobs = {t["labels"]["job"] for t in targets}
    assert jobs >= {"orchestrator", "arms", "postgres", "redis", "node", "containers", "llm-provider"}
    assert len([t for t in targets if t["labels"]["job"] == "arms"]) == 6


def test_seed_alert_rules_are_loaded(healthy_lab: Lab) -> None:
    _, body = get_json("http://127.0.0.1:9090/api/v1/rules")
    names = {r["name"] for g in body["data"]["groups"] for r in g["rules"]}
    assert names >= SEED_ALERTS
    assert all(r.get("health") != "err" for g in body["data"]["groups"] for r in g["rules"])


def test_seed_metrics_are_exported(healthy_lab: Lab) -> None:
    for metric in ("http_request_duration_seconds_bucket", "llm_api_calls_total", "llm_api_duration_seconds_count",
                   "cache_hits_total", "cache_misses_total", "container_memory_usage_bytes", "pg_up",
                   "redis_up", "node_filesystem_avail_bytes"):
        wait_for(lambda m=metric: prom(m), 30, f"metric {metric}")


def test_a_task_is_routed_stored_and_answered(healthy_lab: Lab) -> None:
    status, task = get_json("http://127.0.0.1:8000/api/v1/tasks",
                            {"goal": "Write a Python function to parse logs", "constraints": [], "priority": "medium"},
                            timeout=30)
    assert status in (200, 201), task
    assert task["status"] == "completed"
    assert task["assigned_arm"] == "coder-arm"
    with pg_admin(healthy_lab) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, assigned_arm FROM tasks WHERE task_id = %s", (task["task_id"],))
        assert cur.fetchone() == ("completed", "coder-arm")
        cur.execute("SELECT action FROM action_log WHERE task_id = %s", (task["task_id"],))
        actions = {row[0] for row in cur.fetchall()}
    assert "routed" in actions


def test_read_only_scoring_creates_no_task(healthy_lab: Lab) -> None:
    goal = f"plan the steps of probe {time.time_ns()}"
    status, body = get_json("http://127.0.0.1:8000/api/v1/route/score", {"goal": goal, "constraints": []})
    assert status == 200
    assert body["selected"] == "planner-arm"
    assert body["scores"]["planner-arm"] > 0
    with pg_admin(healthy_lab) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM tasks WHERE goal = %s", (goal,))
        assert cur.fetchone()[0] == 0


def test_the_qdrant_stand_in_serves_collections(healthy_lab: Lab) -> None:
    assert http_status("http://127.0.0.1:6333/healthz") == 200
    status, body = get_json("http://127.0.0.1:6333/collections")
    assert status == 200 and body["status"] == "ok"


def test_the_llm_mock_answers_like_the_api(healthy_lab: Lab) -> None:
    key = healthy_lab.secret("llm_api_key")
    req = urllib.request.Request("http://127.0.0.1:8200/v1/models", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    bad = urllib.request.Request("http://127.0.0.1:8200/v1/models", headers={"Authorization": "Bearer sk-wrong"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=5)
    assert err.value.code == 401


# ---- faults -------------------------------------------------------------------------------------------
def test_crashed_orchestrator_is_down_then_heals(healthy_lab: Lab) -> None:
    faults.inject(healthy_lab, "crash", "orchestrator")
    state, _ = service_state(healthy_lab, "orchestrator")
    assert state == "exited"
    assert http_status("http://127.0.0.1:8000/health") == 0  # nothing answers
    wait_for(lambda: prom('up{job="orchestrator"} == 0'), 30, "Prometheus to see the orchestrator down")
    faults.heal(healthy_lab, "crash")
    healthy_lab.wait_healthy(60)


def test_crashed_database_makes_the_api_answer_503(healthy_lab: Lab) -> None:
    faults.inject(healthy_lab, "crash", "postgres")
    assert service_state(healthy_lab, "postgres")[0] == "exited"
    wait_for(lambda: http_status("http://127.0.0.1:8000/health") == 503, 30, "orchestrator /health 503")
    faults.heal(healthy_lab, "crash")
    healthy_lab.wait_healthy(90)


def test_unhealthy_arm_fails_health_checks_then_heals(healthy_lab: Lab) -> None:
    faults.inject(healthy_lab, "unhealthy-arm", "coder-arm")
    wait_for(lambda: service_state(healthy_lab, "coder-arm") == ("running", "unhealthy"), 40, "coder-arm unhealthy")
    assert http_status("http://127.0.0.1:8102/health", timeout=1.0) == 0
    faults.heal(healthy_lab, "unhealthy-arm")
    wait_for(lambda: service_state(healthy_lab, "coder-arm")[1] == "healthy", 40, "coder-arm healthy again")


def _redis_hit_rate(lab: Lab, window: float) -> float:
    client = redis_client(lab)
    first = client.info("stats")
    time.sleep(window)
    second = client.info("stats")
    hits = second["keyspace_hits"] - first["keyspace_hits"]
    misses = second["keyspace_misses"] - first["keyspace_misses"]
    return hits / (hits + misses) if hits + misses else 1.0


def test_redis_noeviction_under_memory_pressure_drops_the_hit_rate(healthy_lab: Lab) -> None:
    assert _redis_hit_rate(healthy_lab, 5) > 0.5
    record = faults.inject(healthy_lab, "redis-eviction")
    client = redis_client(healthy_lab)
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert record["filled_keys"] > 0
    conf = (healthy_lab.state / "redis" / "redis.conf").read_text()
    assert "maxmemory-policy noeviction" in conf  # persisted, as a real misconfiguration would be
    # Cached answers expire (TTL) and cannot be stored again: the hit rate falls under 50%.
    wait_for(lambda: _redis_hit_rate(healthy_lab, 5) < 0.5, 90, "hit rate under 50%", interval=0)
    faults.heal(healthy_lab, "redis-eviction")
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    wait_for(lambda: _redis_hit_rate(healthy_lab, 5) > 0.5, 90, "hit rate back over 50%", interval=0)


def test_exhausted_postgres_connections_refuse_new_clients(healthy_lab: Lab) -> None:
    record = faults.inject(healthy_lab, "pg-connections")
    assert record["held"] > 0
    with pg_admin(healthy_lab) as conn, conn.cursor() as cur:  # the reserved superuser slots still work
        cur.execute("SELECT count(*), (SELECT setting::int FROM pg_settings WHERE name='max_connections'),"
                    " (SELECT setting::int FROM pg_settings WHERE name='superuser_reserved_connections')"
                    " FROM pg_stat_activity WHERE backend_type = 'client backend'")
        current, max_connections, reserved = cur.fetchone()
    assert current >= max_connections - reserved
    with pytest.raises(psycopg2.OperationalError, match="connection slots are reserved|too many clients"):
        psycopg2.connect(host="127.0.0.1", port=5432, dbname="octollm", user="octollm",
                         password=healthy_lab.secret("postgres_password"), connect_timeout=5)
    faults.heal(healthy_lab, "pg-connections")
    conn = wait_for(lambda: _try_connect(healthy_lab), 20, "a new connection to succeed")
    conn.close()


def _try_connect(lab: Lab) -> Any:
    try:
        return psycopg2.connect(host="127.0.0.1", port=5432, dbname="octollm", user="octollm",
                                password=lab.secret("postgres_password"), connect_timeout=5)
    except psycopg2.OperationalError:
        return None
