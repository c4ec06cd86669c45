"""Unit tests of the task_routing judgement (plugins/plugin_utils/task_routing.py) on synthetic evidence shaped
like stack_evidence's: healthy gives only ok, arms down are A (disruptive restart), a missing registration is C,
stuck tasks with conflicting constraints are D (re-queued with their must constraints, reported), a scoring that
ignores a routable arm is B (report)."""

from __future__ import annotations

import json
import time

from ansible_collections.octollm.remediation.plugins.filter.procedure import FilterModule
from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing as tr
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
SETTINGS = procedure_settings("task_routing", {"arms": ARM_PORTS})


def evidence(down=(), unregistered=(), stuck=(), score=None, rules=("TaskRoutingFailures",)):
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
            },
        },
        "containers": {
            "ok": True,
            "error": None,
            "containers": [{"service": n, "name": f"octollm-{n}-1", "healthcheck": True} for n in ARMS],
            "logs": {},
        },
        "prometheus": {"ok": True, "error": None, "rules": {"names": list(rules), "alerts": {}, "error": None}},
    }


def task(task_id, constraints, reason):
    return {
        "task_id": task_id,
        "goal": "Write a Python function",
        "priority": "high",
        "age_s": 600,
        "constraints": constraints,
        "actions": [{"action": "failed", "details": json.dumps({"reason": reason})}],
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
    assert [(a["id"], a["status"]) for a in actions] == [
        ("task_routing.A.restart_arms", "awaiting_approval"),
        ("task_routing.A.requeue_tasks", "planned"),
    ]
    assert actions[0]["change"]["container"] == "judge-arm"


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
    actions = tr.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"]) for a in actions] == [
        ("task_routing.D.requeue_tasks", "planned"),
        ("task_routing.D.report_dropped_constraints", "report"),
    ]
    change = actions[0]["change"]
    assert change["rows"] == 1 and "jsonb_to_recordset" in change["sql"]
    assert change["tasks"] == [
        {"task_id": "t1", "constraints_old": strict, "constraints_new": ["must be handled by the coder-arm"]}
    ]


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
                    "inventory": {"services": {"orchestrator": {"url": "http://orchestrator:8000/"}}}},
        "settings": {"task_routing": role_settings("task_routing", {"arms": ARM_PORTS})},
    }
    request = filters["procedure_request"](run)
    assert set(request) == {"postgres", "http", "containers", "prometheus"}
    names = [probe["name"] for probe in request["http"]["probes"]]
    assert names[:3] == [f"task_routing_health_{name}" for name in ARMS]
    assert names[-2:] == ["task_routing_registry", "task_routing_score"]
    assert request["postgres"]["stuck_after_seconds"] == 60 and request["postgres"]["sample_limit"] == 50
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
