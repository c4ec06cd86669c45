"""Issue 15 on the lab, as an on-call engineer meets it: a component broken through itself, the page's real text given
to `octoctl fix`, then the component and the exit status checked.

- PostgreSQL stopped (`crash postgres`, paged once the orchestrator is unhealthy) + `octoctl fix PostgreSQLDown
  --approve`: database_connections starts it (not disruptive), waits until the orchestrator is healthy again, the
  stack is healthy, exit 0.
- Redis stopped (`crash redis`, likewise) + `octoctl fix "Error 111 connecting to redis:6379. Connection refused."
  --approve`: service_unavailable starts it (scenario C), waits for the orchestrator; cache_performance, which could
  not read Redis before, warms the cache the restart left cold (the shared flow's second look); exit 0.
- `pg-connections idle` (another client holds every non-reserved connection with sessions seconds old, far under
  the idle threshold) + `octoctl fix "FATAL: sorry, too many clients already"`: the outage overrides the idle-age
  rule, the plan offers terminating that client's sessions awaiting approval (exit 1); `--approve` applies it, the
  application logs in again, exit 0, and the stack's own sessions (the orchestrator's) are untouched.

Run under the lab lock: flock /tmp/octollm-lab.lock .venv/bin/python -m pytest tests/lab/test_outages.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from playbook_runs import REPO, by_check, pg_admin

pytestmark = pytest.mark.lab


def octoctl(state: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """`octoctl ARGS -i inventory/lab --format json` without a terminal; (exit status, report)."""
    env = dict(os.environ, OCTOCTL_STATE_DIR=str(state),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "octoctl", *args, "-i", str(REPO / "inventory" / "lab"),
                           "--format", "json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.stdout.strip(), f"no report (exit {proc.returncode}): {proc.stderr[-3000:]}"
    return proc.returncode, json.loads(proc.stdout)


def results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [target] = report["targets"]
    return {result["procedure"]: result for result in target["procedures"]}


def actions(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {action["id"]: action for action in result["actions"]}


def state_of(service: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", f"octollm-{service}-1"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]["State"]


def until_unhealthy(service: str, timeout: float = 40) -> None:
    """Wait until Docker marks ``service`` unhealthy (its healthcheck failed its retries): the outage as a page
    finds it, not seconds old."""
    import time

    deadline = time.monotonic() + timeout
    while (state_of(service).get("Health") or {}).get("Status") != "unhealthy":
        assert time.monotonic() < deadline, f"{service} never became unhealthy"
        time.sleep(1)


def stack_down(report: dict[str, Any]) -> list[str]:
    [target] = report["targets"]
    return list((target.get("stack") or {}).get("down") or [])


def test_a_stopped_postgresql_is_started_from_its_alert(healthy_lab: Any, tmp_path: Path) -> None:
    from octollm_labctl import faults

    faults.inject(healthy_lab, "crash", "postgres")
    assert state_of("postgres")["Status"] == "exited"
    until_unhealthy("orchestrator")  # its /health answers 503 without PostgreSQL
    code, report = octoctl(tmp_path, "fix", "PostgreSQLDown", "--approve")
    result = results(report)["database_connections"]
    assert by_check(result["findings"])["pg.running"]["status"] == "problem"
    start = actions(result)["database_connections.start_postgres"]
    assert start["status"] == "applied" and start["disruptive"] is False, start
    assert start["change"]["then_wait"] == ["orchestrator"] and "healthy again: orchestrator" in start["outcome"], start
    assert code == 0, json.dumps(report)[-3000:]
    assert result["verification"]["healthy"] is True
    assert {f["status"] for f in result["verification"]["findings"]} == {"ok"}
    assert stack_down(report) == []
    assert state_of("postgres")["Health"]["Status"] == "healthy"
    with pg_admin(healthy_lab) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    faults.heal(healthy_lab, "crash")  # PostgreSQL already runs: this only clears the fault's record


def test_a_stopped_redis_is_started_from_its_error_text(healthy_lab: Any, tmp_path: Path) -> None:
    from octollm_labctl import faults
    from octollm_labctl.faults.common import redis_client

    faults.inject(healthy_lab, "crash", "redis")
    assert state_of("redis")["Status"] == "exited"
    until_unhealthy("orchestrator")
    code, report = octoctl(tmp_path, "fix", "Error 111 connecting to redis:6379. Connection refused.", "--approve")
    found = results(report)
    start = actions(found["service_unavailable"])["service_unavailable.C.up_redis"]
    assert start["status"] == "applied" and start["disruptive"] is False, start
    assert "healthy again: orchestrator" in start["outcome"], start
    # cache_performance could not read the stopped Redis; once started, it finds the cache its restart left cold and
    # warms it (no approval needed): the second look of the shared flow
    warm = actions(found["cache_performance"])["cache_performance.C.warm_cache"]
    assert warm["status"] == "applied", warm
    assert code == 0, json.dumps(report)[-3000:]
    # every procedure the text selected reads the started Redis in its verification
    assert all(result["verification"]["healthy"] for result in found.values())
    assert stack_down(report) == []
    assert state_of("redis")["Health"]["Status"] == "healthy"
    assert redis_client(healthy_lab).ping()
    faults.heal(healthy_lab, "crash")


def test_refused_logins_terminate_the_top_idle_client_whatever_its_age(healthy_lab: Any, tmp_path: Path) -> None:
    import psycopg2

    from octollm_labctl import faults

    held = faults.inject(healthy_lab, "pg-connections", "idle")["held"]
    try:
        def sessions() -> dict[str, set[int]]:
            with pg_admin(healthy_lab) as conn, conn.cursor() as cur:
                cur.execute("SELECT application_name, pid FROM pg_stat_activity WHERE backend_type = 'client backend'")
                found: dict[str, set[int]] = {}
                for name, pid in cur.fetchall():
                    found.setdefault(name, set()).add(pid)
                return found

        before = sessions()
        assert len(before["batch-worker"]) == held
        # the held sessions are seconds old, far under database_connections_idle_terminate_after_seconds (300)
        code, report = octoctl(tmp_path, "fix", "FATAL: sorry, too many clients already")
        assert code == 1
        result = results(report)["database_connections"]
        waiting = actions(result)["database_connections.B.terminate_idle"]
        assert waiting["status"] == "awaiting_approval", waiting
        assert waiting["change"]["params"]["clients"] == ["batch-worker"]
        assert waiting["change"]["by_application"] == {"batch-worker": held}
        assert {"orchestrator", "orchestrator-health"} <= set(waiting["change"]["params"]["protected"])
        assert sessions()["batch-worker"] == before["batch-worker"]  # nothing terminated without approval

        code, report = octoctl(tmp_path, "fix", "FATAL: sorry, too many clients already", "--approve")
        result = results(report)["database_connections"]
        done = actions(result)["database_connections.B.terminate_idle"]
        assert done["status"] == "applied" and done["change"]["rows_terminated"] == held, done
        assert code == 0, json.dumps(report)[-3000:]
        assert by_check(result["verification"]["findings"])["pg.app_login"]["status"] == "ok"
        after = sessions()
        assert "batch-worker" not in after
        assert before["orchestrator"] <= after["orchestrator"]  # the stack's own sessions are untouched
        # the application logs in again
        conn = psycopg2.connect(host="127.0.0.1", port=5432, dbname="octollm", user="octollm",
                                password=healthy_lab.secret("postgres_password"), connect_timeout=5)
        conn.close()
    finally:
        faults.heal(healthy_lab, "pg-connections")
