"""The task_routing role against the running lab, through ansible-runner and playbooks/run.yml (what octoctl
runs). Faults: unhealthy-arm (A, for the approval gate), stuck-running (A: the orchestrator killed mid-dispatch,
tasks left running, re-queued with approval), arm-capabilities-wrong (B, a report); arm-unregistered (C) and
stuck-tasks (D) are the Molecule scenarios molecule/task_routing_unregistered_compose and
task_routing_stuck_compose (tests/lab/test_molecule.py).
Run under the lab lock: flock /tmp/octollm-lab.lock pytest tests/lab/test_task_routing.py"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from playbook_runs import by_check, run_procedure

pytestmark = pytest.mark.lab

PROCEDURE = "task_routing"


def run(tmp_path: Path, phase: str, **extravars: Any) -> dict[str, Any]:
    return run_procedure(PROCEDURE, tmp_path, phase, **extravars)


def registered() -> list[str]:
    with urllib.request.urlopen("http://127.0.0.1:8000/api/v1/arms", timeout=5) as answer:
        return sorted(arm["name"] for arm in json.load(answer)["arms"])


def sql(lab: Any, query: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1", dbname="octollm", user="postgres", password=lab.secret("postgres_admin_password")
    )
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


def plan(actions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(a["id"], a["resource"], a["disruptive"], json.dumps(a["change"], sort_keys=True)) for a in actions]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def test_tasks_left_pending_for_want_of_an_arm_are_dispatched_again(healthy_lab: Any) -> None:
    """No fixture re-queues leftovers before these tests: a healthy lab has no stuck task, because the
    orchestrator's own deferral (the rows _leave_pending writes when no arm is registered, as at start-up)
    does not stay: an arm's registration wakes the dispatch round, which routes and runs the task."""
    task_id = f"task-test-waiting-{uuid.uuid4().hex[:8]}"
    sql(
        healthy_lab,
        "WITH t AS (INSERT INTO tasks (task_id, goal, status, created_at, updated_at) VALUES"
        " (%s, 'Plan the steps to back up the analytics database', 'pending', now() - interval '5 minutes',"
        " now() - interval '5 minutes') RETURNING task_id) INSERT INTO action_log (task_id, action, arm, details)"
        " SELECT task_id, 'failed', 'planner-arm', %s::jsonb FROM t RETURNING task_id",
        task_id,
        json.dumps({"reason": "arm not registered", "task_status": "pending"}),
    )
    try:
        capabilities = get_json("http://127.0.0.1:8100/capabilities")  # what the arm sends when it registers
        post_json("http://127.0.0.1:8000/api/v1/arms/register", capabilities)
        deadline = time.monotonic() + 15  # the wake-up, else the next round (PENDING_RETRY_INTERVAL 10 s)
        status = "SELECT status FROM tasks WHERE task_id = %s"
        while time.monotonic() < deadline and sql(healthy_lab, status, task_id)[0][0] in ("pending", "running"):
            time.sleep(0.5)
        task = get_json(f"http://127.0.0.1:8000/api/v1/tasks/{task_id}")
        assert task["status"] == "completed" and task["assigned_arm"] == "planner-arm"
        assert [a["action"] for a in task["actions"]] == ["failed", "retried", "routed", "executed", "completed"]
    finally:
        sql(healthy_lab, "DELETE FROM action_log WHERE task_id = %s RETURNING id", task_id)
        sql(healthy_lab, "DELETE FROM tasks WHERE task_id = %s RETURNING task_id", task_id)


def test_healthy_lab_has_no_routing_finding_and_diagnosis_changes_nothing(healthy_lab: Any, tmp_path: Path) -> None:
    arms = registered()
    probe_tasks = sql(healthy_lab, "SELECT count(*) FROM tasks WHERE goal = %s", "Write a Python function")
    result = run(tmp_path, "diagnose")
    not_ok = {f["check"]: (f["status"], f["observed"]) for f in result["findings"] if f["status"] != "ok"}
    assert not_ok == {}
    assert len(result["findings"]) == 6
    assert not any(scenario["holds"] for scenario in result["scenarios"])
    assert result["escalation"]["level"] is None
    # the scoring probe is read-only: no task was created for it; the registry is unchanged
    assert sql(healthy_lab, "SELECT count(*) FROM tasks WHERE goal = %s", "Write a Python function") == probe_tasks
    assert registered() == arms


def test_scoring_that_misses_a_routable_arm_is_reported_with_its_cause(healthy_lab: Any, tmp_path: Path) -> None:
    """Scenario B may end as escalation: the planner fallback is confirmed and the report names the cause (here
    coder-arm's registered capabilities, which match none of its goals), nothing is changed."""
    from octollm_labctl import faults

    faults.inject(healthy_lab, "arm-capabilities-wrong", "coder-arm")
    diagnosis = run(tmp_path, "diagnose")
    scores = by_check(diagnosis["findings"])["routing.scores"]
    assert scores["status"] == "problem" and scores["scenario"] == "B"
    assert scores["evidence"]["decision"]["selected"] == "planner-arm" and scores["evidence"]["decision"]["fallback"]
    assert scores["evidence"]["expected_arm"]["cause"] == "registration"
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]} == {"A": False, "B": True, "C": False, "D": False}

    fixed = run(tmp_path, "resolve", octollm_approve=True)
    assert [(a["id"], a["status"]) for a in fixed["actions"]] == [("task_routing.B.report_scoring", "report")]
    outcome = fixed["actions"][0]["outcome"]
    assert "planner fallback works" in outcome and "registered with domain 'misc'" in outcome
    assert fixed["escalation"]["level"] == "L1"
    assert "coder-arm" in registered()  # a report changes nothing


def test_arm_down_restart_waits_for_approval_then_restarts(healthy_lab: Any, tmp_path: Path) -> None:
    from octollm_labctl import faults

    record = faults.inject(healthy_lab, "unhealthy-arm", "retriever-arm")
    waiting = run(tmp_path, "resolve", octollm_scenario="A")
    assert by_check(waiting["findings"])["arms.health"]["status"] == "problem"
    actions = {a["id"]: a["status"] for a in waiting["actions"]}
    assert actions["task_routing.A.restart_arms"] == "awaiting_approval"
    assert waiting["escalation"]["level"] == "L1"
    # still stopped: nothing was restarted
    with open(f"/proc/{record['pids'][0]}/status", encoding="ascii") as status:
        assert any(line.startswith("State:") and "T (stopped)" in line for line in status)

    dry = run(tmp_path, "resolve", octollm_approve=True, octollm_dry_run=True)
    assert dry["escalation"]["level"] == "L1"  # a dry run applied nothing: the arm is still down
    fixed = run(tmp_path, "resolve", octollm_approve=True)
    assert plan(dry["actions"]) == plan(fixed["actions"])
    assert [(a["id"], a["status"]) for a in fixed["actions"]] == [("task_routing.A.restart_arms", "applied")]
    assert fixed["actions"][0]["change"]["container"] == "retriever-arm"
    assert fixed["verification"]["healthy"] is True and fixed["escalation"]["level"] is None
    assert "retriever-arm" in registered()
    assert run(tmp_path, "resolve", octollm_approve=True)["actions"] == []


def test_tasks_left_running_by_a_dispatcher_that_died_are_requeued_with_approval(healthy_lab: Any,
                                                                                  tmp_path: Path) -> None:
    """The orchestrator killed while it dispatched tasks (issue 15): they stay "running", dispatched before the
    orchestrator's container started again. Found (a short grace: the threshold is a setting), re-queued only with
    approval, then each old task cancelled with requeued_as and its new one completed."""
    from octollm_labctl import faults

    record = faults.inject(healthy_lab, "stuck-running")
    grace = {"task_routing_running_grace_seconds": 3}
    time.sleep(3)
    waiting = run(tmp_path, "resolve", **grace)
    stuck = by_check(waiting["findings"])["tasks.stuck_running"]
    assert stuck["status"] == "problem" and stuck["scenario"] == "A", stuck
    causes = {t["task_id"]: t["cause"] for t in stuck["evidence"]["sample"]}
    assert {causes[task] for task in record["tasks"]} == {"orchestrator restarted after the dispatch"}
    (requeue,) = [a for a in waiting["actions"] if a["id"] == "task_routing.A.requeue_running"]
    assert requeue["status"] == "awaiting_approval" and requeue["disruptive"] is True
    assert set(record["tasks"]) <= {t["task_id"] for t in requeue["change"]["tasks"]}
    assert waiting["escalation"]["level"] == "L1"
    still = "SELECT count(*) FROM tasks WHERE task_id = ANY(%s) AND status = 'running'"
    assert sql(healthy_lab, still, record["tasks"]) == [(len(record["tasks"]),)]  # nothing was re-queued

    fixed = run(tmp_path, "resolve", octollm_approve=True, **grace)
    (applied,) = [a for a in fixed["actions"] if a["id"] == "task_routing.A.requeue_running"]
    assert applied["status"] == "applied", applied["outcome"]
    rows = sql(healthy_lab, "SELECT t.status, t.result->>'previous_status', n.status, n.assigned_arm FROM tasks t"
                            " JOIN tasks n ON n.task_id = t.result->>'requeued_as' WHERE t.task_id = ANY(%s)",
               record["tasks"])
    assert rows == [("cancelled", "running", "completed", "coder-arm")] * len(record["tasks"])
    assert by_check(fixed["verification"]["findings"])["tasks.stuck_running"]["status"] == "ok"
    assert fixed["verification"]["healthy"] is True and fixed["escalation"]["level"] is None
