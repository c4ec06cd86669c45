"""Unit tests of the task_routing judgement (plugins/plugin_utils/task_routing.py) on synthetic evidence shaped
like stack_evidence's: healthy gives only ok, arms down are A (disruptive restart), a missing registration is C,
stuck tasks with conflicting constraints are D (re-queued with their must constraints, the plan naming what it
drops), tasks stuck in running are A, every re-queue waits for approval, a stuck task with no identified cause is
reported and never re-queued, a scoring that ignores a routable arm is B (report)."""

from __future__ import annotations

import json
import time

import deployments
from ansible_collections.octollm.remediation.plugins.filter.procedure import FilterModule
from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing as tr
from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import describe
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings

ARMS = {
    "planner-arm": ("planning", ["plan", "steps"]),
    "coder-arm": ("coding", ["code", "python", "function", "write"]),
    "judge-arm": ("validation", ["validate", "check"]),
}
# what the orchestrator's scoring answers when no arm scores: the planner fallback
FALLBACK_DECISION = {
    "scores": {"coder-arm": 0, "planner-arm": 100, "judge-arm": 0},
    "selected": "planner-arm",
    "score": 100,
    "fallback": True,
    "relaxed": False,
    "constraints": [],
}
ARM_PORTS = {name: {"port": 8100 + i} for i, name in enumerate(ARMS)}
# the full lab as inventory/lab describes it (the orchestrator's registry and scoring are offered)
SETTINGS = procedure_settings("task_routing", {"arms": ARM_PORTS}, inventory=deployments.inventory("lab"))


STARTED = "2026-12-07T10:00:00.123456789Z"  # every container's StartedAt (Docker: nanoseconds)


def evidence(down=(), unregistered=(), stuck=(), score=None, rules=("TaskRoutingFailures",), running=(), starts=None):
    now = time.time()
    probes = {}
    for name, (domain, keywords) in ARMS.items():
        ok = name not in down
        probes[f"task_routing_health_{name}"] = {
            "ok": ok,
            "status": 200 if ok else None,
            "error": None if ok else {"kind": "unreachable", "message": "refused"},
        }
        probes[f"task_routing_capabilities_{name}"] = {
            "ok": ok,
            "body": {"name": name, "domain": domain, "keywords": keywords, "url": f"u/{name}"},
        }
    registry = [
        {
            "name": n,
            "domain": d,
            "keywords": k,
            "url": f"u/{n}",
            "registered_at": now,
            "health": "unhealthy" if n in down else "healthy",
        }
        for n, (d, k) in ARMS.items()
        if n not in unregistered
    ]
    probes["task_routing_registry"] = {"ok": True, "status": 200, "body": {"arms": registry}}
    probes["task_routing_score"] = {
        "ok": True,
        "status": 200,
        "body": score
        or {
            "scores": {"coder-arm": 30, "planner-arm": 0, "judge-arm": 0},
            "selected": "coder-arm",
            "score": 30,
            "fallback": False,
            "relaxed": False,
            "constraints": [],
        },
    }
    return {
        "http": {"ok": True, "error": None, "probes": probes},
        "postgres": {
            "ok": True,
            "error": None,
            "tasks": {
                "stuck_count": len(stuck),
                "stuck_sample": list(stuck),
                "stuck_oldest_age_s": 600 if stuck else None,
                "running_count": len(running),
                "running_sample": list(running),
            },
        },
        "containers": {
            "ok": True,
            "error": None,
            "containers": [
                {
                    "service": n,
                    "name": f"octollm-{n}-1",
                    "healthcheck": True,
                    "running": True,
                    "started_at": (starts or {}).get(n, STARTED),
                }
                for n in [*ARMS, "orchestrator"]
            ],
            "logs": {},
        },
        "prometheus": {"ok": True, "error": None, "rules": {"names": list(rules), "alerts": {}, "error": None}},
    }


def task(task_id, constraints, reason, arm=None):
    return {
        "task_id": task_id,
        "goal": "Write a Python function",
        "priority": "high",
        "status": "pending",
        "updated_at": "2026-12-07T09:50:00.000001+00:00",
        "age_s": 600,
        "constraints": constraints,
        "actions": [{"action": "failed", "arm": arm, "details": json.dumps({"reason": reason})}],
    }


def running(task_id, idle_s, dispatched_at="2026-12-07T10:05:00.5+00:00", arm="coder-arm"):
    """A task in running as the postgres collector's running_sample gives it (idle: seconds without progress)."""
    return {
        "task_id": task_id,
        "status": "running",
        "assigned_arm": arm,
        "priority": "medium",
        "goal": "Write a Python function to merge invoices",
        "constraints": [],
        "updated_at": dispatched_at,
        "dispatched_at": dispatched_at,
        "progress_at": dispatched_at,
        "idle_s": idle_s,
        "running_s": idle_s,
        "actions": [{"action": "routed", "arm": arm}],
    }


def statuses(diagnosis):
    return {f["check"]: f["status"] for f in diagnosis["findings"]}


def test_healthy_evidence_gives_only_ok():
    diagnosis = tr.diagnose(evidence(), SETTINGS)
    assert set(statuses(diagnosis).values()) == {"ok"}
    assert not any(s["holds"] for s in diagnosis["scenarios"])
    assert tr.plan(diagnosis, SETTINGS) == []


def test_arms_down_are_a_and_their_restart_waits_for_approval():
    stuck = [task("t1", [], "arm unhealthy")]
    diagnosis = tr.diagnose(evidence(down=("judge-arm",), stuck=stuck), SETTINGS)
    assert statuses(diagnosis)["arms.health"] == "problem"
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]}["A"] is True
    actions = tr.plan(diagnosis, SETTINGS)
    # the re-queue is disruptive too: the task runs again
    assert [(a["id"], a["status"], a["disruptive"]) for a in actions] == [
        ("task_routing.A.restart_arms", "awaiting_approval", True),
        ("task_routing.A.requeue_tasks", "awaiting_approval", True),
    ]
    assert actions[0]["change"]["container"] == "judge-arm"
    approved = tr.plan(diagnosis, dict(SETTINGS, approve=True))
    assert [a["status"] for a in approved] == ["planned", "planned"]


def test_missing_registration_is_c_and_registers_without_approval():
    diagnosis = tr.diagnose(evidence(unregistered=("judge-arm",)), SETTINGS)
    found = {f["check"]: f for f in diagnosis["findings"]}
    assert found["arms.registered"]["status"] == "problem" and found["arms.registered"]["scenario"] == "C"
    actions = tr.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"], a["change"]["arms"]) for a in actions] == [
        ("task_routing.C.register_arms", "planned", ["judge-arm"])
    ]


def test_strict_constraints_are_d_requeued_with_must_only_and_reported():
    strict = ["must be handled by the coder-arm", "only the judge-arm may see it"]
    diagnosis = tr.diagnose(evidence(stuck=[task("t1", strict, "no arm")]), SETTINGS)
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]}["D"] is True
    (requeue,) = tr.plan(diagnosis, SETTINGS)
    assert (requeue["id"], requeue["status"], requeue["disruptive"]) == (
        "task_routing.D.requeue_tasks", "awaiting_approval", True)
    change = requeue["change"]
    assert change["rows"] == 1 and "jsonb_to_recordset" in change["sql"]
    # the plan says which constraints it drops: in the change, the title and the text a person approves
    assert change["tasks"] == [
        {"task_id": "t1", "constraints_old": strict, "constraints_new": ["must be handled by the coder-arm"],
         "constraints_dropped": ["only the judge-arm may see it"]}
    ]
    assert change["drops_constraints"] == ["only the judge-arm may see it"]
    assert "without their optional constraints 'only the judge-arm may see it'" in requeue["title"]
    assert "DROPS constraints the submitters set: t1: 'only the judge-arm may see it'" in requeue["outcome"]
    # the apply reads each task as the plan saw it (same status and updated_at) and submits its whole goal
    assert change["_moves"] == [{"task_id": "t1", "priority": "high", "status": "pending",
                                 "updated_at": "2026-12-07T09:50:00.000001+00:00", "old": strict,
                                 "new": ["must be handled by the coder-arm"],
                                 "dropped": ["only the judge-arm may see it"]}]
    assert "goal" not in json.dumps(change["_moves"]) and "t.goal" in change["_select_sql"]


def test_a_requeue_that_keeps_every_constraint_names_none_dropped():
    diagnosis = tr.diagnose(evidence(down=("judge-arm",), stuck=[task("t1", ["use the coder"], "arm unhealthy")]),
                            SETTINGS)
    requeue = tr.plan(diagnosis, dict(SETTINGS, approve=True))[1]
    assert requeue["change"]["drops_constraints"] == [] and "DROPS" not in requeue["outcome"]
    assert requeue["change"]["tasks"] == [
        {"task_id": "t1", "constraints_old": ["use the coder"], "constraints_new": ["use the coder"]}]


def test_stuck_tasks_without_an_identified_cause_are_reported_not_requeued():
    """Every arm up and registered, constraints some arm meets, no failure naming an arm: nothing says why the
    tasks wait, so a re-queue would only hide it."""
    stuck = [task("t1", [], "timeout"), task("t2", ["use the coder"], "")]
    diagnosis = tr.diagnose(evidence(stuck=stuck), SETTINGS)
    found = {f["check"]: f for f in diagnosis["findings"]}
    assert found["tasks.stuck_pending"]["status"] == "problem" and found["tasks.stuck_pending"]["scenario"] is None
    assert [t["cause"] for t in found["tasks.stuck_pending"]["evidence"]["sample"]] == [None, None]
    for settings in (SETTINGS, dict(SETTINGS, approve=True)):
        (report,) = tr.plan(diagnosis, settings)
        assert (report["id"], report["status"]) == ("task_routing.report_unexplained_tasks", "report")
        assert report["change"] == {"tasks": ["t1", "t2"]} and "not re-queued" in report["outcome"]
    assert diagnosis["escalation"]["level"] == "L1"
    # with a cause for one of them (its failure names an arm that is down), that one alone is re-queued
    stuck[0]["actions"][0]["arm"] = "judge-arm"
    diagnosis = tr.diagnose(evidence(down=("judge-arm",), stuck=stuck), SETTINGS)
    planned = {a["id"]: a for a in tr.plan(diagnosis, SETTINGS)}
    assert [t["task_id"] for t in planned["task_routing.A.requeue_tasks"]["change"]["tasks"]] == ["t1"]
    assert planned["task_routing.report_unexplained_tasks"]["change"] == {"tasks": ["t2"]}


def test_tasks_stuck_in_running_are_a_and_requeued_with_approval():
    """No progress for the threshold, or an arm (or the orchestrator) started after the dispatch: the dispatch
    is lost. Younger, or with no restart since, a running task is left alone."""
    s = SETTINGS
    late = "2026-12-07T10:06:00.000000001Z"  # coder-arm started after the dispatch at 10:05:00.5
    tasks = [
        running("old", s["running_stuck_after_seconds"] + 5),
        running("lost", s["running_grace_seconds"] + 1),
        running("young", s["running_grace_seconds"] - 1),
        running("busy", s["running_grace_seconds"] + 1, arm="judge-arm"),
    ]
    diagnosis = tr.diagnose(evidence(running=tasks, starts={"coder-arm": late}), s)
    found = {f["check"]: f for f in diagnosis["findings"]}
    stuck = found["tasks.stuck_running"]
    assert stuck["status"] == "problem" and stuck["scenario"] == "A"
    assert {t["task_id"]: t["cause"] for t in stuck["evidence"]["sample"]} == {
        "old": "coder-arm restarted after the dispatch",
        "lost": "coder-arm restarted after the dispatch",
    }
    assert {sc["id"]: sc["holds"] for sc in diagnosis["scenarios"]}["A"] is True
    (requeue,) = tr.plan(diagnosis, s)
    assert (requeue["id"], requeue["status"], requeue["disruptive"], requeue["resource"]) == (
        "task_routing.A.requeue_running", "awaiting_approval", True, "postgres:tasks:running")
    assert [m["status"] for m in requeue["change"]["_moves"]] == ["running", "running"]
    assert requeue["change"]["drops_constraints"] == []
    # without the restart only the one past the threshold is stuck; the orchestrator's restart counts as well
    diagnosis = tr.diagnose(evidence(running=tasks), s)
    sample = {t["task_id"]: t["cause"] for t in diagnosis["findings"][1]["evidence"]["sample"]}
    assert sample == {"old": f"no progress for {s['running_stuck_after_seconds'] + 5}s"}
    diagnosis = tr.diagnose(evidence(running=tasks, starts={"orchestrator": late}), s)
    assert {t["task_id"] for t in diagnosis["findings"][1]["evidence"]["sample"]} == {"old", "lost", "busy"}
    # an arm that is down holds its tasks no more
    diagnosis = tr.diagnose(evidence(down=("judge-arm",), running=tasks), s)
    sample = {t["task_id"]: t["cause"] for t in diagnosis["findings"][1]["evidence"]["sample"]}
    assert sample["busy"] == "judge-arm is down"
    planned = [a["id"] for a in tr.plan(diagnosis, dict(s, approve=True))]
    assert planned == ["task_routing.A.restart_arms", "task_routing.A.requeue_running"]


def test_running_tasks_without_restart_times_are_a_warning_not_healthy():
    ev = evidence(running=[running("lost", SETTINGS["running_grace_seconds"] + 1)])
    ev["containers"] = {"ok": False, "error": {"kind": "unreachable", "message": "Docker API unreachable"}}
    found = {f["check"]: f for f in tr.diagnose(ev, SETTINGS)["findings"]}
    assert found["tasks.stuck_running"]["status"] == "warning"
    assert "start times are unknown" in found["tasks.stuck_running"]["evidence"]["note"]


def test_times_from_docker_postgres_and_kubernetes():
    assert tr.epoch("2026-12-07T10:00:00Z") == 1796637600
    assert tr.epoch("2026-12-07T10:00:00.123456789Z") == 1796637600.123456789
    assert tr.epoch("2026-12-07T11:00:00.5+01:00") == 1796637600.5
    assert tr.epoch("2026-12-07 05:00:00-05") == 1796637600
    assert tr.epoch(None) is None and tr.epoch("0001-01-01") is None
    records = [{"service": "coder-arm", "running": True, "started_at": "2026-12-07T10:00:05Z"},
               {"service": "coder-arm", "running": True, "started_at": "2026-12-07T10:00:00Z"},
               {"service": "judge-arm", "running": False, "started_at": "2026-12-07T10:00:00Z"}]
    assert tr.service_starts(records) == {"coder-arm": 1796637600}


def test_scoring_that_ignores_a_routable_arm_is_b_report():
    diagnosis = tr.diagnose(evidence(score=FALLBACK_DECISION), SETTINGS)
    assert statuses(diagnosis)["routing.scores"] == "problem"
    actions = tr.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"]) for a in actions] == [("task_routing.B.report_scoring", "report")]
    assert "fallback works" in actions[0]["outcome"]
    # coder-arm's registration matches the goal (write, python, function): the scoring is at fault
    assert actions[0]["change"]["expected_arm"]["cause"] == "scoring"
    assert actions[0]["change"]["expected_arm"]["score_by_the_rules"] == 30
    assert "Fix ArmRouter.score_arms" in actions[0]["outcome"]


def test_a_registration_that_cannot_match_the_goal_is_b_with_the_capabilities_named():
    broken = evidence(score=FALLBACK_DECISION)
    for arm in broken["http"]["probes"]["task_routing_registry"]["body"]["arms"]:
        if arm["name"] == "coder-arm":
            arm.update(domain="misc", keywords=["misc"])
    diagnosis = tr.diagnose(broken, SETTINGS)
    found = {f["check"]: f for f in diagnosis["findings"]}
    assert found["routing.scores"]["status"] == "problem" and found["routing.scores"]["scenario"] == "B"
    assert found["routing.scores"]["evidence"]["expected_arm"]["cause"] == "registration"
    (report,) = tr.plan(diagnosis, SETTINGS)
    assert report["status"] == "report"
    assert "registered with domain 'misc' and keywords ['misc']" in report["outcome"]
    assert "ARM_DOMAIN / ARM_KEYWORDS" in report["outcome"]


def test_allowed_arms_follow_the_lab_router_rule():
    arms = {name: {"domain": d} for name, (d, _k) in ARMS.items()}
    assert tr.allowed_arms(["finish in 5 minutes"], arms) == set(arms)
    assert tr.allowed_arms(["use the coder"], arms) == {"coder-arm"}
    assert tr.allowed_arms(["must be coding", "only validation"], arms) == set()
    assert tr.must_only(["must be coding", "only validation"]) == ["must be coding"]


def test_prevention_reports_missing_rule_and_stale_registration():
    assert {f["status"] for f in tr.prevention(evidence(), SETTINGS)["findings"]} == {"ok"}
    bad = evidence(rules=())
    bad["http"]["probes"]["task_routing_registry"]["body"]["arms"][0]["registered_at"] = time.time() - 3600
    result = tr.prevention(bad, SETTINGS)
    found = {f["check"]: f["status"] for f in result["findings"]}
    assert found["prevent.prometheus.routing_rule"] == "problem"
    assert found["prevent.arms.registration"] == "problem"
    assert {a["status"] for a in result["actions"]} == {"report"}


def test_the_flow_filters_judge_plan_and_report():
    filters = FilterModule().filters()
    run = {
        "procedures": ["task_routing"],
        "context": {"platform": "compose", "phase": "resolve",
                    # the lab's orchestrator (its registry and scoring), described as procedure_run describes it
                    "inventory": describe({"services": {"orchestrator": {
                        "url": "http://orchestrator:8000/",
                        "probes": deployments.inventory("lab")["services"]["orchestrator"]["probes"]}}},
                        role_settings("_common"))},
        "settings": {"task_routing": role_settings("task_routing", {"arms": ARM_PORTS})},
    }
    request = filters["procedure_request"](run)
    assert set(request) == {"postgres", "http", "containers", "prometheus"}
    # the procedure's probes (the run adds the stack's own service checks: plugin_utils/stack.py)
    names = [probe["name"] for probe in request["http"]["probes"] if probe["name"].startswith("task_routing_")]
    assert names[:3] == [f"task_routing_health_{name}" for name in ARMS]
    assert names[-2:] == ["task_routing_registry", "task_routing_score"]
    assert request["postgres"]["stuck_after_seconds"] == 60 and request["postgres"]["sample_limit"] == 50
    assert request["postgres"]["running_after_seconds"] == 120  # the grace: the threshold is judged in Python
    state = filters["procedure_judgement"](evidence(), run)
    assert state["task_routing"]["actions"] == [] and state["_followup"] == {}
    result = filters["procedure_results"](evidence(), run, state)["task_routing"]
    assert result["phase"] == "resolve" and result["verification"]["healthy"] is True
    assert result["escalation"]["level"] is None
    # C registers from the arm's own URL and at the orchestrator's address of the inventory (internal keys)
    broken = evidence(unregistered=("judge-arm",))
    (todo,) = filters["procedure_actions"](filters["procedure_judgement"](broken, run), run)
    change = todo["action"]["change"]
    assert todo["action"]["_apply"] == "register_arms"
    assert change["_urls"] == {"judge-arm": "http://127.0.0.1:8102"}
    assert change["_orchestrator_url"] == "http://orchestrator:8000"
    reported = filters["procedure_results"](broken, run, filters["procedure_judgement"](broken, run))
    assert reported["task_routing"]["actions"][0]["change"] == {
        "op": "GET <arm>/capabilities, POST http://orchestrator:8000/api/v1/arms/register", "arms": ["judge-arm"]}
