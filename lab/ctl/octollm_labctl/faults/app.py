"""Faults of the application (the orchestrator and the arms): its configuration, its arms' registration, and the
few switches that live in its code (a leak, a slow hop).

Configuration goes where a deployment changes it: the services' env file (``lab.env``) or the Compose override of
the state dir, then the service is recreated. The switches are the app's own ``POST /debug/leak`` and
``POST /debug/delay``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from octollm_labctl.errors import Kind, LabError
from octollm_labctl.faults.base import Fault
from octollm_labctl.faults.common import (
    containers_of,
    inspect,
    override_env,
    pg_admin,
    post_json,
    redis_client,
    seed_endpoints_only,
    set_lab_env,
)
from octollm_labctl.lab import ARMS, PORTS, Lab, run

COMPONENT = "app"


# ---- memory leak: a service's in-process cache grows without bound (the app's POST /debug/leak) ----------
LEAK_MB_PER_SECOND = 2


def _memory_leak_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    seed_endpoints_only(lab, "memory-leak")
    service = target or "coder-arm"
    if service not in ("orchestrator", *ARMS):
        raise LabError(f"memory-leak target is the orchestrator or an arm, not {service!r}", Kind.USAGE)
    status = post_json(f"http://127.0.0.1:{PORTS[service]}/debug/leak",
                       {"mb_per_second": LEAK_MB_PER_SECOND, "enabled": True})
    return {"service": service, "leak": status}


def _memory_leak_heal(lab: Lab, record: dict[str, Any]) -> None:
    service = record.get("service") or "coder-arm"
    with contextlib.suppress(OSError, ValueError):  # restarted meanwhile (the fix): nothing leaks any more
        post_json(f"http://127.0.0.1:{PORTS[service]}/debug/leak", {"enabled": False, "clear": True})
    lab.compose("restart", service, timeout=120)
    lab.compose("up", "-d", "--no-deps", "--wait", service, timeout=180)


# ---- arm not registered: the orchestrator restarted and forgot an arm that registers only once ---------
ARM_REGISTRY_HASH = "octollm:arms"


def _arm_unregistered_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    arm = target or "judge-arm"
    if arm not in ARMS:
        raise LabError(f"unknown arm {arm!r}; one of {', '.join(ARMS)}", Kind.USAGE)
    # the arm registers once at start-up and never again (ARM_REGISTER_INTERVAL=0) ...
    override_env(lab, arm, {"ARM_REGISTER_INTERVAL": "0"})
    lab.compose("up", "-d", "--no-deps", "--wait", arm, timeout=180)
    # ... then the orchestrator restarts: its in-memory registry is gone, the Redis mirror no longer has the arm
    redis_client(lab).hdel(ARM_REGISTRY_HASH, arm)
    lab.compose("restart", "orchestrator", timeout=120)
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)
    return {"service": arm}


def _restore_arm_environment(lab: Lab, record: dict[str, Any]) -> None:
    arm = record.get("service") or "judge-arm"
    override_env(lab, arm, None)
    lab.compose("up", "-d", "--no-deps", "--wait", arm, timeout=180)  # recreated: registers at start-up


# ---- arm-capabilities-wrong: an arm registers capabilities that match none of its goals ------------------------
MISCAPABLE_ENV = {"ARM_DOMAIN": "misc", "ARM_KEYWORDS": "misc"}


def _arm_capabilities_wrong_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    arm = target or "coder-arm"
    if arm not in ARMS or arm == "planner-arm":
        raise LabError("arm-capabilities-wrong targets an arm but planner-arm (the fallback)", Kind.USAGE)
    # the arm's configuration, recreated: it registers the wrong domain and keywords at start-up, and every goal
    # meant for it scores 0 and falls back to planner-arm
    override_env(lab, arm, MISCAPABLE_ENV)
    lab.compose("up", "-d", "--no-deps", "--wait", arm, timeout=180)
    return {"service": arm}


# ---- slow hop: the orchestrator's application-level delay before each call to an arm ----------------------
def _slow_hop_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    seed_endpoints_only(lab, "slow-hop")
    arm = target or "planner-arm"
    if arm not in ARMS:
        raise LabError(f"unknown arm {arm!r}; one of {', '.join(ARMS)}", Kind.USAGE)
    # the orchestrator's application-level delay before each call to the arm (the slow hop)
    status = post_json("http://127.0.0.1:8000/debug/delay", {"target": arm, "ms": 500})
    return {"service": arm, "delays_ms": status.get("delays_ms")}


def _slow_hop_heal(lab: Lab, record: dict[str, Any]) -> None:
    arm = record.get("service") or "planner-arm"
    with contextlib.suppress(OSError, ValueError):  # the orchestrator restarted meanwhile: no delay any more
        post_json("http://127.0.0.1:8000/debug/delay", {"target": arm, "ms": 0})


# ---- llm-cache-off: the orchestrator's LLM response cache switched off in its configuration ---------------------
def _llm_cache_off_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    previous = set_lab_env(lab, "RESPONSE_CACHE_ENABLED", "false")
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)
    return {"previous": previous}


def _llm_cache_off_heal(lab: Lab, record: dict[str, Any]) -> None:
    set_lab_env(lab, "RESPONSE_CACHE_ENABLED", "true")
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)


# ---- db-pool-exhausted: the orchestrator's pool is too small for a burst of slow requests ------------------
# The pool shrinks to one connection (DB_POOL_SIZE=1, DB_POOL_MAX_OVERFLOW=0 in lab.env, orchestrator recreated);
# while a transaction holds a SHARE lock on tasks (a slow batch job), a burst of tasks arrives: the first holds the
# only connection waiting on the lock, the others wait DB_POOL_TIMEOUT and log "database pool exhausted" (503).
POOL_BURST = 6
POOL_LOCK_SECONDS = 7


def _pool_exhausted_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import threading
    import urllib.error

    previous = {key: set_lab_env(lab, key, value) for key, value in (("DB_POOL_SIZE", "1"),
                                                                   ("DB_POOL_MAX_OVERFLOW", "0"))}
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)
    answers: list[str] = []

    def task(index: int) -> None:
        try:
            post_json("http://127.0.0.1:8000/api/v1/tasks", {"goal": f"pool burst {index}"}, timeout=30)
            answers.append("ok")
        except urllib.error.HTTPError as exc:
            answers.append(str(exc.code))
        except OSError as exc:
            answers.append(type(exc).__name__)

    conn = pg_admin(lab)
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE tasks IN SHARE MODE")  # held until the rollback below
            threads = [threading.Thread(target=task, args=(i,)) for i in range(POOL_BURST)]
            for thread in threads:
                thread.start()
            time.sleep(POOL_LOCK_SECONDS)
        conn.rollback()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        conn.close()
    return {"previous": previous, "answers": sorted(answers)}


def _pool_exhausted_heal(lab: Lab, record: dict[str, Any]) -> None:
    for key, value in (record.get("previous") or {}).items():
        set_lab_env(lab, key, value or "5")
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)


# ---- bad-config: a setting in lab.env that a service cannot parse; it crash-loops at start -----------------
BAD_CONFIG_KEY = "DB_POOL_SIZE"
BAD_CONFIG_VALUE = "ten"


def _bad_config_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    service = target or "orchestrator"
    previous = set_lab_env(lab, BAD_CONFIG_KEY, BAD_CONFIG_VALUE)
    lab.compose("up", "-d", "--no-deps", service, timeout=180)  # recreated with the bad setting; no --wait
    cid = containers_of(lab, service)[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the restart policy has restarted it at least twice
        state = inspect(cid)
        if state["RestartCount"] >= 2:
            return {"service": service, "key": BAD_CONFIG_KEY, "previous": previous}
        time.sleep(0.5)
    raise LabError(f"{service} did not crash-loop on {BAD_CONFIG_KEY}={BAD_CONFIG_VALUE}", Kind.INTERNAL)


def _bad_config_heal(lab: Lab, record: dict[str, Any]) -> None:
    set_lab_env(lab, BAD_CONFIG_KEY, record.get("previous") or "5")
    lab.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", record.get("service") or "orchestrator",
                timeout=180)


# ---- stuck-running: the orchestrator dies while it dispatches tasks; they stay "running" for ever --------------
# The orchestrator's application-level delay holds its call to coder-arm (the task is already "running", routed),
# tasks arrive, then its process is killed and started again: the calls it was making are gone, and nothing
# dispatches a running task again (its retry round takes pending tasks only).
STUCK_RUNNING_GOAL = "Write a Python function to merge the invoices (stuck running {})"
STUCK_RUNNING_ARM = "coder-arm"


def _stuck_running_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import threading

    seed_endpoints_only(lab, "stuck-running")
    count = int(target or 2)
    goals = [STUCK_RUNNING_GOAL.format(number) for number in range(count)]
    post_json("http://127.0.0.1:8000/debug/delay", {"target": STUCK_RUNNING_ARM, "ms": 120000})

    def submit(goal: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # cut short by the crash below
            post_json("http://127.0.0.1:8000/api/v1/tasks", {"goal": goal}, timeout=150)

    for goal in goals:
        threading.Thread(target=submit, args=(goal,), daemon=True).start()
    conn = pg_admin(lab)
    try:
        conn.autocommit = True
        deadline, running = time.monotonic() + 30, []
        with conn.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT task_id FROM tasks WHERE goal = ANY(%s) AND status = 'running' ORDER BY goal",
                            (goals,))
                running = [row[0] for row in cur.fetchall()]
                if len(running) == count:
                    break
                time.sleep(0.2)
            if len(running) != count:
                raise LabError(f"only {len(running)} of {count} tasks reached running", Kind.INTERNAL)
            run(["docker", "kill", containers_of(lab, "orchestrator")[0]])  # mid-dispatch
            cur.execute("SELECT now()::text")
            killed_at = cur.fetchone()[0]
    finally:
        conn.close()
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)  # started again, no delay
    return {"tasks": running, "arm": STUCK_RUNNING_ARM, "killed_at": killed_at}


def _stuck_running_heal(lab: Lab, record: dict[str, Any]) -> None:
    prefix = STUCK_RUNNING_GOAL.split("(")[0] + "(stuck running %"
    conn = pg_admin(lab)
    try:
        with conn, conn.cursor() as cur:
            # the fault's tasks and those a fix submitted again; then whatever else the crash left running (the
            # load generator's tasks caught in it) marked failed, as an operator would
            cur.execute("DELETE FROM action_log WHERE task_id IN (SELECT task_id FROM tasks WHERE goal LIKE %s)",
                        (prefix,))
            cur.execute("DELETE FROM tasks WHERE goal LIKE %s", (prefix,))
            if record.get("killed_at"):
                cur.execute("UPDATE tasks SET status = 'failed', updated_at = now(),"
                            " result = '{\"error\": \"lost when the orchestrator was killed (lab fault)\"}'"
                            " WHERE status = 'running' AND updated_at <= %s::timestamptz", (record["killed_at"],))
    finally:
        conn.close()


# ---- orchestrator-pii: a user's goal with an e-mail and a card number reaches the orchestrator's log ----------
# A real task through the orchestrator's API: its optional constraint names an arm that the goal matches in no way,
# so the router drops it and, as the seed's router does, logs the original goal (test values: a reserved domain,
# a Mastercard test number).
ORCHESTRATOR_PII = ("jane.fault@example.org", "5555 5555 5555 4444")
ORCHESTRATOR_PII_GOAL = (f"Write a Python function that refunds the order of {ORCHESTRATOR_PII[0]}, paid with card "
                         f"{ORCHESTRATOR_PII[1]}")


def _orchestrator_pii_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    answer = post_json("http://127.0.0.1:8000/api/v1/tasks",
                       {"goal": ORCHESTRATOR_PII_GOAL, "constraints": ["only the judge-arm may see it"]}, timeout=60)
    if not (answer.get("routing") or {}).get("relaxed"):
        raise LabError("the orchestrator did not relax the task's constraints", Kind.INTERNAL)
    return {"task_id": answer["task_id"], "service": "orchestrator"}


def _orchestrator_pii_heal(lab: Lab, record: dict[str, Any]) -> None:
    conn = pg_admin(lab)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM action_log WHERE task_id IN (SELECT task_id FROM tasks WHERE goal = %s)",
                        (ORCHESTRATOR_PII_GOAL,))
            cur.execute("DELETE FROM tasks WHERE goal = %s", (ORCHESTRATOR_PII_GOAL,))
    finally:
        conn.close()
    # a new container: a fresh log, without the raw PII
    lab.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", "orchestrator", timeout=180)


FAULTS = (
    Fault("memory-leak", COMPONENT, "a service's in-process cache grows without bound (POST /debug/leak, default "
          "coder-arm)",
          _memory_leak_inject, _memory_leak_heal, "coder-arm"),
    Fault("arm-unregistered", COMPONENT, "an arm registers only once (ARM_REGISTER_INTERVAL=0) and the orchestrator "
          "restarts and forgets it (default judge-arm)",
          _arm_unregistered_inject, _restore_arm_environment, "judge-arm"),
    Fault("arm-capabilities-wrong", COMPONENT, "an arm registers capabilities that match none of its goals "
          "(ARM_DOMAIN=misc, ARM_KEYWORDS=misc in the Compose override): routing falls back to planner-arm "
          "(default coder-arm)",
          _arm_capabilities_wrong_inject, _restore_arm_environment, "coder-arm"),
    Fault("slow-hop", COMPONENT, "the orchestrator waits 500 ms before each call to an arm (POST /debug/delay, "
          "default planner-arm)",
          _slow_hop_inject, _slow_hop_heal, "planner-arm"),
    Fault("llm-cache-off", COMPONENT, "RESPONSE_CACHE_ENABLED=false in lab.env and the orchestrator recreated: every "
          "task calls the LLM",
          _llm_cache_off_inject, _llm_cache_off_heal),
    Fault("db-pool-exhausted", COMPONENT, "the orchestrator's DB pool shrunk to 1 (lab.env, recreated) and a burst of "
          "tasks while a transaction locks tasks: 'database pool exhausted' (503)",
          _pool_exhausted_inject, _pool_exhausted_heal),
    Fault("bad-config", COMPONENT, f"{BAD_CONFIG_KEY}={BAD_CONFIG_VALUE} in lab.env and a service recreated: it "
          "cannot parse it and crash-loops (default orchestrator)",
          _bad_config_inject, _bad_config_heal, "orchestrator"),
    Fault("stuck-running", COMPONENT, "the orchestrator is killed while it dispatches tasks to coder-arm (held by "
          "POST /debug/delay) and started again: the tasks stay running for ever (target: how many, default 2)",
          _stuck_running_inject, _stuck_running_heal),
    Fault("orchestrator-pii", COMPONENT, "a task whose goal holds an e-mail and a card number and whose optional "
          "constraint no arm meets: the orchestrator relaxes it and logs the goal (the seed's router)",
          _orchestrator_pii_inject, _orchestrator_pii_heal),
)
