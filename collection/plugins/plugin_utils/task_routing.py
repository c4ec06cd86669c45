# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "Task Routing Failures": findings, scenarios, plan and prevention checks.

Input is the evidence of ``stack_evidence`` (``postgres`` tasks stuck in pending with their action_log,
``http`` probes of every arm's /health and /capabilities, the orchestrator's registered arms and its read-only
scoring of a probe goal, ``containers`` with the orchestrator's routing log lines, ``prometheus`` rules) and the
role's settings (``roles/task_routing/defaults/main.yml``). Scenarios (the seed's):

- A  arms down: an arm does not answer /health. Fix: restart those arms (disruptive), re-queue the tasks they
     left pending.
- B  scoring broken: the scoring endpoint fails, or scores everything 0 although the arm that matches the probe
     goal is registered and healthy. Report (a code fix), after confirming the planner fallback works.
- C  capabilities not registered: a healthy arm is missing from the orchestrator's registry. Fix: POST the arm's
     own /capabilities to the orchestrator's register endpoint, confirm.
- D  constraints too strict: a stuck task's constraints exclude every healthy arm. Fix: re-queue it with only
     its "must" constraints (the seed's rule); the plan names every constraint it drops.

Tasks stuck in ``running`` (dispatched, never finished) belong to A: a task without progress (``tasks.updated_at``
or a newer ``action_log`` entry) for ``running_stuck_after_seconds``, or one whose arm is down or whose arm or the
orchestrator (the dispatcher) started after its dispatch (container StartedAt, pod start) and that has shown no
progress for ``running_grace_seconds`` since. They are re-queued like stuck pending tasks.

Every re-queue is disruptive (approval): the new task runs the goal again, and a task an arm still works on would
run twice. A stuck pending task whose cause is not identified (no arm down or unregistered, constraints that some
arm meets, no failure naming one) is reported, never re-queued.

The deployment's names (docs/deployment.md): the orchestrator's list of registered arms (``probes.arms``) and its
read-only scoring (``probes.route_score``) are optional probes. Not offered, the checks that need them are unknown
``not_offered`` (never a routing problem), and the arms' own ``/capabilities`` (a seed interface) stand for the
registry where the constraints of stuck tasks are matched. The tables (``tasks``, ``action_log``) and the task
status values come from the schema (``octollm_postgres.schema``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import re

from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import SEED_HEALTH, not_offered, sql_name
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import evidence_kind, rule_loaded
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    gate,
    unknown,
)

PROCEDURE = "task_routing"
SCENARIOS = {
    "A": "All arms down",
    "B": "Routing scoring issues",
    "C": "Capabilities not registered",
    "D": "Task constraints too strict",
}
CHECK_SCENARIO = {
    "arms.health": "A",
    "tasks.stuck_running": "A",
    "routing.scores": "B",
    "arms.registered": "C",
    "arms.capabilities": "C",
}
# what a stuck pending task waits for, by its cause
WAITING_FOR = {"A": "an arm that was down", "C": "an unregistered arm", "D": "an arm their constraints allow"}
# the service that dispatches tasks: a restart after a dispatch loses the call it was making
ORCHESTRATOR = "orchestrator"
# the optional probes of the orchestrator this procedure reads (docs/deployment.md) and what they are
REGISTRY = "the orchestrator's list of registered arms (GET /api/v1/arms, probes.arms)"
SCORING = "the orchestrator's read-only scoring (POST /api/v1/route/score, probes.route_score)"
_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$", re.IGNORECASE
)


def epoch(value):
    """Seconds since the epoch of an ISO 8601 time (Docker's StartedAt with nanoseconds, PostgreSQL's JSON
    timestamps, Kubernetes' startedAt); None when absent or unreadable. A time without an offset is UTC."""
    match = _TIME.match(str(value or "").strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0))
    if fraction:
        seconds += float("0." + fraction[:9])
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) >= 4 else 0)
        seconds -= sign * offset
    return seconds


def service_starts(records):
    """``{service: epoch}``: when the service's running containers (or pods) started, the earliest of them: a
    task dispatched before that moment was on a process that is gone, whichever replica held it."""
    starts = {}
    for record in records or []:
        service = record.get("service")
        started = epoch(record.get("started_at"))
        if not service or not record.get("running") or started is None:
            continue
        starts[service] = min(started, starts.get(service, started))
    return starts


def _phrase(text, phrase):
    return re.search(r"\b" + re.escape(phrase.lower()) + r"\b", (text or "").lower()) is not None


def constraint_targets(constraint, arms):
    """Arms a constraint names (by name, short name or domain): the lab router's rule."""
    targets = set()
    for name, arm in arms.items():
        short = name[:-4] if name.endswith("-arm") else name
        if any(_phrase(constraint, word) for word in (name, short, arm.get("domain") or "") if word):
            targets.add(name)
    return targets


def allowed_arms(constraints, arms):
    allowed = set(arms)
    for constraint in constraints or []:
        targets = constraint_targets(str(constraint), arms)
        if targets:
            allowed &= targets
    return allowed


def must_only(constraints):
    return [c for c in constraints or [] if "must" in str(c).lower()]


class Facts(object):
    def __init__(self, evidence, s):
        self.s = s
        self.pg, self.pg_error = evidence_kind(evidence, "postgres")
        self.http, self.http_error = evidence_kind(evidence, "http")
        self.prom, self.prom_error = evidence_kind(evidence, "prometheus")
        self.containers, self.containers_error = evidence_kind(evidence, "containers")
        probes = (self.http or {}).get("probes") or {}
        self.probes = probes
        self.arm_names = sorted(s["arms"])
        self.health = {name: probes.get("task_routing_health_%s" % name) for name in self.arm_names}
        self.caps = {name: probes.get("task_routing_capabilities_%s" % name) for name in self.arm_names}
        self.registry_offered = bool(s.get("registry_path"))
        self.score_offered = bool(s.get("score_path"))
        self.registry_probe = probes.get("task_routing_registry") if self.registry_offered else None
        self.score_probe = probes.get("task_routing_score") if self.score_offered else None
        body = (self.registry_probe or {}).get("body")
        self.registered = (
            {item["name"]: item for item in body.get("arms") or [] if isinstance(item, dict) and item.get("name")}
            if isinstance(body, dict)
            else None
        )
        self.tasks = (self.pg or {}).get("tasks")
        # when each service's containers started (None: not known, e.g. no containers evidence)
        records = (self.containers or {}).get("containers")
        self.starts = service_starts(records) if self.containers is not None and records is not None else None

    def up(self, name):
        probe = self.health.get(name) or {}
        return bool(probe.get("ok"))

    def down(self):
        return [name for name in self.arm_names if self.http is not None and not self.up(name)]

    def unregistered(self):
        if self.registered is None:
            return []
        return [name for name in self.arm_names if self.up(name) and name not in self.registered]

    def routable(self):
        """Arms the orchestrator could route to now: registered, healthy in its view and answering; when the
        deployment does not offer its registry, the answering arms with what their own /capabilities say."""
        if not self.registry_offered:
            return {
                name: dict(self.caps[name]["body"], health="healthy")
                for name in self.arm_names
                if self.up(name)
                and (self.caps.get(name) or {}).get("ok")
                and isinstance(self.caps[name].get("body"), dict)
            }
        if self.registered is None:
            return {}
        return {
            name: arm
            for name, arm in self.registered.items()
            if arm.get("health") == "healthy" and (name not in self.health or self.up(name))
        }


def check_health(f):
    title = "Every arm answers /health"
    expected = "all %d healthy" % len(f.arm_names)
    if f.http is None:
        return unknown("arms.health", title, expected, f.http_error, "A")
    down = f.down()
    evidence = {
        name: {"status": (f.health[name] or {}).get("status"), "error": (f.health[name] or {}).get("error")}
        for name in down
    }
    if down:
        observed = "all %d down" % len(down) if len(down) == len(f.arm_names) else "down: %s" % ", ".join(down)
        return finding("arms.health", title, "problem", observed, expected, evidence, "A")
    return finding("arms.health", title, "ok", "all %d healthy" % len(f.arm_names), expected, {})


def check_registered(f):
    title = "Every answering arm is registered with the orchestrator"
    expected = "registered: %s" % ", ".join(f.arm_names)
    if not f.registry_offered:
        return not_offered("arms.registered", title, expected, REGISTRY, scenario="C")
    if f.http is None or f.registry_probe is None or not f.registry_probe.get("ok") or f.registered is None:
        error = (
            f.http_error or (f.registry_probe or {}).get("error") or {"kind": "other", "message": "no registry answer"}
        )
        return unknown("arms.registered", title, expected, error, "C")
    missing = f.unregistered()
    unhealthy = sorted(n for n, arm in f.registered.items() if arm.get("health") != "healthy" and f.up(n))
    evidence = {"registered": sorted(f.registered), "missing": missing, "unhealthy_in_registry": unhealthy}
    if missing:
        return finding(
            "arms.registered", title, "problem", "not registered: %s" % ", ".join(missing), expected, evidence, "C"
        )
    if unhealthy:
        return finding(
            "arms.registered",
            title,
            "warning",
            "registered but marked unhealthy: %s" % ", ".join(unhealthy),
            expected,
            evidence,
            "C",
        )
    return finding("arms.registered", title, "ok", "%d registered" % len(f.registered), expected, evidence)


def check_capabilities(f):
    title = "Each arm's /capabilities matches its registration"
    expected = "same domain, keywords and url"
    if not f.registry_offered:
        return not_offered("arms.capabilities", title, expected, REGISTRY, scenario="C")
    if f.http is None:
        return unknown("arms.capabilities", title, expected, f.http_error, "C")
    differ = {}
    for name in f.arm_names:
        probe = f.caps.get(name) or {}
        if not f.up(name) or not probe.get("ok") or f.registered is None or name not in f.registered:
            continue
        body = probe.get("body") if isinstance(probe.get("body"), dict) else {}
        reg = f.registered[name]
        diffs = [
            key
            for key in ("domain", "keywords", "url")
            if (body.get(key) or "") != (reg.get(key) or "")
            and not (key == "keywords" and sorted(body.get(key) or []) == sorted(reg.get(key) or []))
        ]
        if diffs:
            differ[name] = diffs
    if differ:
        return finding("arms.capabilities", title, "warning", differ, expected, {"differ": differ}, "C")
    return finding("arms.capabilities", title, "ok", "consistent", expected, {})


def expected_arm_score(registration, goal):
    """What the seed's scoring gives the registered arm for the goal (keywords +10 each, domain +50), and so
    whether the registration or the scoring is at fault when the arm is not selected."""
    keywords = [str(k) for k in registration.get("keywords") or []]
    domain = str(registration.get("domain") or "")
    matched = [k for k in keywords if _phrase(goal, k)]
    domain_in_goal = bool(domain) and domain.lower() in (goal or "").lower()
    score = 10 * len(matched) + (50 if domain_in_goal else 0)
    return {
        "domain": domain,
        "keywords": keywords,
        "matched_keywords": matched,
        "domain_in_goal": domain_in_goal,
        "score_by_the_rules": score,
        "cause": "registration" if score == 0 else "scoring",
    }


def check_scores(f):
    s = f.s
    title = "The orchestrator scores a probe goal (%r) for %s" % (s["probe_goal"], s["probe_expected_arm"])
    expected = "%s selected with a score >= 10, no fallback" % s["probe_expected_arm"]
    probe = f.score_probe
    if not f.score_offered:
        return not_offered("routing.scores", title, expected, SCORING, scenario="B")
    if f.http is None or probe is None:
        return unknown("routing.scores", title, expected, f.http_error, "B")
    body = probe.get("body") if isinstance(probe.get("body"), dict) else {}
    logs = ((f.containers or {}).get("logs") or {}).get("orchestrator") or {}
    evidence = {
        "decision": body or None,
        "status": probe.get("status"),
        "recent_decisions": [line for line in logs.get("lines") or [] if " routing " in line][-5:],
        "recent_pending": (logs.get("pattern_counts") or {}).get("task_routing_pending"),
    }
    if not probe.get("ok"):
        if (probe.get("error") or {}).get("kind") in ("unreachable", "timeout"):
            return unknown("routing.scores", title, expected, probe.get("error"), "B", evidence)
        return finding(
            "routing.scores", title, "problem", "scoring failed: HTTP %s" % probe.get("status"), expected, evidence, "B"
        )
    scores = body.get("scores") or {}
    selected = body.get("selected")
    routable = f.routable()
    if selected == s["probe_expected_arm"] and not body.get("fallback"):
        return finding("routing.scores", title, "ok", "%s (%s)" % (selected, body.get("score")), expected, evidence)
    if s["probe_expected_arm"] in routable:
        # the matching arm is up and registered, yet it is not chosen: either its registered capabilities do not
        # match the goal (the score is right, the registration is wrong) or the scoring itself is wrong
        evidence["expected_arm"] = expected_arm_score(routable[s["probe_expected_arm"]], s["probe_goal"])
        return finding(
            "routing.scores",
            title,
            "problem",
            "selected %s (%s), scores %s" % (selected, body.get("score"), scores),
            expected,
            evidence,
            "B",
        )
    # the expected arm is down or unregistered: that is A or C, not the scoring
    return finding(
        "routing.scores",
        title,
        "warning",
        "selected %s (fallback %s): %s is not routable" % (selected, body.get("fallback"), s["probe_expected_arm"]),
        expected,
        evidence,
        "A" if s["probe_expected_arm"] in f.down() else "C",
    )


def task_causes(f):
    """Each stuck task with its cause and re-queue plan."""
    routable = f.routable()
    out = []
    for task in (f.tasks or {}).get("stuck_sample") or []:
        constraints = task.get("constraints") or []
        allowed = sorted(allowed_arms(constraints, routable)) if routable else []
        relaxed = must_only(constraints)
        relaxed_allowed = sorted(allowed_arms(relaxed, routable)) if routable else []
        reasons = [
            ((a.get("details") or "") if isinstance(a.get("details"), str) else str(a.get("details")))
            for a in task.get("actions") or []
            if a.get("action") == "failed"
        ]
        last = reasons[0] if reasons else ""
        failed_on = [a.get("arm") for a in task.get("actions") or [] if a.get("action") == "failed" and a.get("arm")]
        if routable and not allowed and constraints:
            cause = "D"
        elif "not registered" in last or (failed_on and failed_on[0] in f.unregistered()):
            cause = "C"
        elif "unhealthy" in last or "unreachable" in last or (failed_on and failed_on[0] in f.down()):
            cause = "A"
        else:
            cause = None
        out.append(
            {
                "task_id": task.get("task_id"),
                "goal": task.get("goal"),
                "priority": task.get("priority"),
                "status": task.get("status") or "pending",
                "updated_at": task.get("updated_at"),
                "age_s": task.get("age_s"),
                "constraints": constraints,
                "allowed_arms": allowed,
                "must_constraints": relaxed,
                "allowed_after_relax": relaxed_allowed,
                "last_failure": last[:200],
                "cause": cause,
            }
        )
    return out


def check_stuck(f):
    title = "No task stays pending longer than %ss" % f.s["stuck_after_seconds"]
    expected = "0 stuck"
    if f.pg is None or f.tasks is None:
        return unknown(
            "tasks.stuck_pending", title, expected, f.pg_error or {"kind": "other", "message": "no tasks evidence"}
        )
    count = f.tasks.get("stuck_count") or 0
    causes = task_causes(f)
    evidence = {
        "stuck_count": count,
        "oldest_age_s": f.tasks.get("stuck_oldest_age_s"),
        "by_status": f.tasks.get("by_status"),
        "sample": causes,
    }
    if not count:
        return finding("tasks.stuck_pending", title, "ok", "0 stuck", expected, evidence)
    found = {item["cause"] for item in causes}
    down, unregistered = f.down(), f.unregistered()
    scenario = (
        "D"
        if "D" in found
        else "A"
        if down
        else "C"
        if unregistered
        else "A"
        if "A" in found
        else "C"
        if "C" in found
        else None
    )
    return finding(
        "tasks.stuck_pending",
        title,
        "problem",
        "%d stuck (oldest %ss)" % (count, f.tasks.get("stuck_oldest_age_s")),
        expected,
        evidence,
        scenario,
    )


def running_causes(f):
    """Each task stuck in ``running``, with why: its arm is down, its arm or the orchestrator started after the
    dispatch (and it has shown no progress for the grace period since), or no progress for the threshold."""
    s = f.s
    down = set(f.down())
    out = []
    for task in (f.tasks or {}).get("running_sample") or []:
        idle = float(task.get("idle_s") or 0)
        dispatched = epoch(task.get("dispatched_at"))
        arm = task.get("assigned_arm")
        restarted = []
        for service in (arm, ORCHESTRATOR):
            started = (f.starts or {}).get(service) if service else None
            if started is not None and dispatched is not None and started > dispatched and service not in restarted:
                restarted.append(service)
        if idle >= s["running_grace_seconds"] and arm in down:
            cause = "%s is down" % arm
        elif idle >= s["running_grace_seconds"] and restarted:
            cause = "%s restarted after the dispatch" % " and ".join(restarted)
        elif idle >= s["running_stuck_after_seconds"]:
            cause = "no progress for %ss" % int(idle)
        else:
            continue
        out.append(
            {
                "task_id": task.get("task_id"),
                "goal": task.get("goal"),
                "priority": task.get("priority"),
                "status": task.get("status") or "running",
                "updated_at": task.get("updated_at"),
                "assigned_arm": arm,
                "dispatched_at": task.get("dispatched_at"),
                "idle_s": task.get("idle_s"),
                "running_s": task.get("running_s"),
                "constraints": task.get("constraints") or [],
                "restarted": restarted,
                "cause": cause,
            }
        )
    return out


def check_stuck_running(f):
    s = f.s
    title = (
        "No task stays running without progress for %ss, nor after its arm or the orchestrator restarted"
        % s["running_stuck_after_seconds"]
    )
    expected = "0 stuck in running"
    if f.pg is None or f.tasks is None:
        return unknown(
            "tasks.stuck_running",
            title,
            expected,
            f.pg_error or {"kind": "other", "message": "no tasks evidence"},
            "A",
        )
    stuck = running_causes(f)
    candidates = f.tasks.get("running_count") or 0
    evidence = {
        "stuck_count": len(stuck),
        "without_progress": candidates,
        "oldest_idle_s": f.tasks.get("running_oldest_idle_s"),
        "starts": {
            service: started
            for service, started in sorted((f.starts or {}).items())
            if service == ORCHESTRATOR or service in f.s["arms"]
        },
        "sample": stuck,
    }
    if stuck:
        observed = "%d stuck in running (%s)" % (
            len(stuck),
            "; ".join(sorted({item["cause"] if "progress" not in item["cause"] else "no progress" for item in stuck})),
        )
        if candidates > len(f.tasks.get("running_sample") or []):
            observed += "; %d without progress in all, the oldest %d judged" % (
                candidates,
                len(f.tasks["running_sample"]),
            )
        return finding("tasks.stuck_running", title, "problem", observed, expected, evidence, "A")
    if candidates and f.starts is None:
        # tasks without progress for the grace period, and no restart times to judge them by
        evidence["note"] = "the services' start times are unknown: %s" % ((f.containers_error or {}).get("message"))
        return finding(
            "tasks.stuck_running",
            title,
            "warning",
            "%d running without progress for %ss or more" % (candidates, s["running_grace_seconds"]),
            expected,
            evidence,
            "A",
        )
    return finding("tasks.stuck_running", title, "ok", "0 stuck in running", expected, evidence)


def diagnose(evidence, settings=None):
    s = settings
    f = Facts(evidence, s)
    findings = [
        check_stuck(f),
        check_stuck_running(f),
        check_health(f),
        check_registered(f),
        check_capabilities(f),
        check_scores(f),
    ]
    stuck = findings[0]
    scores = next(item for item in findings if item["check"] == "routing.scores")
    scenarios = []
    for sid, stitle in SCENARIOS.items():
        mine = [item for item in findings if CHECK_SCENARIO.get(item["check"]) == sid or item is stuck]
        holding = [item for item in mine if item["status"] == "problem" and item["scenario"] == sid]
        if holding:
            reason = "; ".join("%s: %s" % (item["check"], item["observed"]) for item in holding)
        elif any(item["status"] == "unknown" for item in mine):
            reason = "not checked: %s" % ", ".join(item["check"] for item in mine if item["status"] == "unknown")
        else:
            reason = "checks ok: %s" % ", ".join(item["check"] for item in mine)
        scenarios.append({"id": sid, "title": stitle, "holds": bool(holding), "reason": reason})
    score_body = (f.score_probe or {}).get("body") if isinstance((f.score_probe or {}).get("body"), dict) else {}
    context = {
        "down": f.down(),
        "unregistered": f.unregistered(),
        "stuck": stuck["evidence"].get("sample") or [] if stuck["status"] == "problem" else [],
        "stuck_scenario": stuck["scenario"],
        "running": findings[1]["evidence"].get("sample") or [] if findings[1]["status"] == "problem" else [],
        "decision": score_body,
        "expected_arm": (scores["evidence"] or {}).get("expected_arm"),
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _sql_literal(value):
    return "'%s'" % str(value).replace("'", "''")


def requeue_select_sql(tables=None):
    """The tasks of a re-queue still as the plan saw them (same status, same ``updated_at``: no progress since),
    with their whole goal (the evidence holds a redacted preview) and the constraints and priority to submit."""
    tasks = sql_name((tables or {}).get("tasks") or "tasks")
    return (
        "SELECT t.task_id, t.goal, m.new AS constraints, coalesce(m.priority, t.priority, 'medium') AS priority "
        "FROM " + tasks + " t JOIN jsonb_to_recordset(%(moves)s::jsonb) "
        "AS m(task_id text, new jsonb, priority text, status text, updated_at text) "
        "ON t.task_id = m.task_id AND t.status = m.status AND t.updated_at = m.updated_at::timestamptz "
        "ORDER BY t.created_at, t.task_id"
    )


def requeue_sql(tables=None, statuses=None):
    """Cancel each old task that was submitted again (``submitted``: task_id, new_task_id) and is still as the plan
    saw it, with ``requeued_as`` and the constraints dropped; log a ``requeued`` action. One statement. ``tables``
    and ``statuses``: the schema's names by meaning (the seed's by default)."""
    tasks = sql_name((tables or {}).get("tasks") or "tasks")
    action_log = sql_name((tables or {}).get("action_log") or "action_log")
    cancelled = _sql_literal((statuses or {}).get("cancelled") or "cancelled")
    return (
        "WITH moved AS (UPDATE " + tasks + " t SET status = " + cancelled + ", updated_at = now(), "
        "result = jsonb_build_object('requeued_as', n.new_task_id, 'dropped_constraints', m.dropped, "
        "'previous_status', m.status) "
        "FROM jsonb_to_recordset(%(moves)s::jsonb) AS m(task_id text, dropped jsonb, status text, updated_at text) "
        "JOIN jsonb_to_recordset(%(submitted)s::jsonb) AS n(task_id text, new_task_id text) "
        "ON n.task_id = m.task_id "
        "WHERE t.task_id = m.task_id AND t.status = m.status AND t.updated_at = m.updated_at::timestamptz "
        "RETURNING t.task_id, n.new_task_id, m.dropped, m.status) "
        "INSERT INTO " + action_log + " (task_id, action, arm, details) SELECT task_id, 'requeued', NULL, "
        "jsonb_build_object('new_task_id', new_task_id, 'dropped_constraints', dropped, 'previous_status', status, "
        "'by', 'task_routing') FROM moved RETURNING task_id"
    )


def requeue_action(action_id, scenario, title, resource, tasks, relax, orchestrator, why, s=None):
    """A re-queue (disruptive): each task submitted again through the orchestrator, then the old one cancelled.
    ``relax``: the task ids whose optional constraints are dropped (scenario D); the plan names each one dropped.
    ``s``: the settings (the schema's tables and status values)."""
    tables, statuses = (s or {}).get("tables"), (s or {}).get("task_statuses")
    moves = []
    for task in tasks:
        new = task["must_constraints"] if task["task_id"] in relax else task["constraints"]
        moves.append(
            {
                "task_id": task["task_id"],
                "priority": task.get("priority") or "medium",
                "status": task.get("status"),
                "updated_at": task.get("updated_at"),
                "old": task["constraints"],
                "new": new,
                "dropped": [c for c in task["constraints"] if c not in new],
            }
        )
    dropped = [m for m in moves if m["dropped"]]
    drops = sorted({c for m in dropped for c in m["dropped"]})
    outcome = (
        "submit each task again through the orchestrator (its whole goal read from the tasks table), then cancel "
        "the old one with requeued_as, if it is still as seen here (one transaction); %s" % why
    )
    if dropped:
        title += " without their optional constraints %s" % "; ".join(repr(c) for c in drops)
        outcome += (
            "; DROPS constraints the submitters set: %s: approve only if those tasks may run without them"
            % "; ".join("%s: %s" % (m["task_id"], ", ".join(repr(c) for c in m["dropped"])) for m in dropped)
        )
    return action(
        action_id,
        scenario,
        title,
        resource,
        {
            "sql": requeue_sql(tables, statuses),
            "rows": len(moves),
            "op": "POST %s/api/v1/tasks per task, then the SQL above in one transaction" % orchestrator,
            "tasks": [
                dict(
                    {"task_id": m["task_id"], "constraints_old": m["old"], "constraints_new": m["new"]},
                    **({"constraints_dropped": m["dropped"]} if m["dropped"] else {}),
                )
                for m in moves
            ],
            "drops_constraints": drops,
            "_moves": moves,
            "_select_sql": requeue_select_sql(tables),
            "_orchestrator_url": orchestrator,
        },
        "planned",
        outcome,
        disruptive=True,
        apply="requeue_tasks",
    )


def arm_url(arms, name):
    """An arm's base URL: its ``url``, else its ``port`` on the controller's host."""
    arm = arms.get(name) or {}
    return (arm.get("url") or "http://127.0.0.1:%s" % arm.get("port")).rstrip("/")


def plan(diagnosis, settings=None):
    s = settings
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    selected = [sid for sid in ("A", "C", "D", "B") if (sid == forced if forced else sid in holding)]
    orchestrator = s["orchestrator_url"].rstrip("/")
    actions = []
    for sid in selected:
        if sid == "A" and ctx.get("down"):
            actions.append(
                action(
                    "task_routing.A.restart_arms",
                    "A",
                    "restart the arms that are down",
                    "arms:%s" % ",".join(ctx["down"]),
                    {
                        "container": ", ".join(ctx["down"]),
                        "op": "docker compose restart, wait for /health",
                        "_urls": {arm: arm_url(s["arms"], arm) for arm in ctx["down"]},
                        "_health_paths": {
                            arm: (s.get("health_paths") or {}).get(arm) or SEED_HEALTH for arm in ctx["down"]
                        },
                        "_orchestrator_url": orchestrator,
                        # the registry the restart waits on (None: the deployment does not offer it)
                        "_registry_url": orchestrator + s["registry_path"] if s.get("registry_path") else None,
                    },
                    "planned",
                    "restart %s (they register again on start-up)" % ", ".join(ctx["down"]),
                    disruptive=True,
                    apply="restart_arms",
                )
            )
        elif sid == "C" and ctx.get("unregistered"):
            actions.append(
                action(
                    "task_routing.C.register_arms",
                    "C",
                    "register the arms again with the orchestrator",
                    "orchestrator:registry:%s" % ",".join(ctx["unregistered"]),
                    {
                        "op": "GET <arm>/capabilities, POST %s/api/v1/arms/register" % orchestrator,
                        "arms": ctx["unregistered"],
                        "_urls": {arm: arm_url(s["arms"], arm) for arm in ctx["unregistered"]},
                        "_orchestrator_url": orchestrator,
                        "_registry_url": orchestrator + s["registry_path"] if s.get("registry_path") else None,
                    },
                    "planned",
                    "POST each arm's own capabilities (%s) to the register endpoint, then confirm"
                    % ", ".join(ctx["unregistered"]),
                    apply="register_arms",
                )
            )
        elif sid == "B":
            decision = ctx.get("decision") or {}
            registration = ctx.get("expected_arm") or {}
            if registration.get("cause") == "registration":
                human = (
                    "%s is registered with domain %r and keywords %s, none of which the goal holds: its "
                    "capabilities are wrong (ARM_DOMAIN / ARM_KEYWORDS), not the scoring; correct them and redeploy it"
                    % (s["probe_expected_arm"], registration.get("domain"), registration.get("keywords"))
                )
            else:
                human = (
                    "Fix ArmRouter.score_arms (keywords +10, domain +50, unhealthy 0: %s should score %s) and "
                    "redeploy the orchestrator" % (s["probe_expected_arm"], registration.get("score_by_the_rules"))
                )
            actions.append(
                action(
                    "task_routing.B.report_scoring",
                    "B",
                    "report the routing scoring fault",
                    "orchestrator:router",
                    {"decision": decision, "fallback_arm": s["fallback_arm"], "expected_arm": registration or None},
                    "report",
                    "%s: the scoring does not pick %s for %r although it is routable (scores %s); planner fallback %s. "
                    "%s"
                    % (
                        s["escalation_level"],
                        s["probe_expected_arm"],
                        s["probe_goal"],
                        decision.get("scores"),
                        "works"
                        if decision.get("selected") == s["fallback_arm"] or not decision.get("fallback")
                        else "did not select %s" % s["fallback_arm"],
                        human,
                    ),
                )
            )
    # stuck tasks are re-queued after the arms are back (A, C) or with their must constraints only (D); a task whose
    # cause is not identified is reported, never re-queued
    stuck = ctx.get("stuck") or []
    scenario = ctx.get("stuck_scenario")
    requeue = [task for task in stuck if task["cause"] and task["cause"] in selected]
    if requeue:
        relax = {task["task_id"] for task in requeue if task["cause"] == "D"}
        still = [t["task_id"] for t in requeue if t["cause"] == "D" and not t["allowed_after_relax"]]
        sid = scenario if scenario in selected else requeue[0]["cause"]
        why = "they wait for %s" % ", ".join(sorted({WAITING_FOR[t["cause"]] for t in requeue}))
        if still:
            why += "; no arm satisfies even the must constraints of %s" % ", ".join(still)
        title = "re-queue %d stuck pending tasks" % len(requeue)
        if relax:
            title += " with only their must constraints"
        actions.append(
            requeue_action(
                "task_routing.%s.requeue_tasks" % sid,
                sid,
                title,
                "postgres:tasks:stuck",
                requeue,
                relax,
                orchestrator,
                why,
                s,
            )
        )
    unexplained = [task for task in stuck if not task["cause"]]
    if unexplained and forced is None:
        actions.append(
            action(
                "task_routing.report_unexplained_tasks",
                None,
                "report the stuck tasks whose cause is not identified",
                "report:tasks:unexplained",
                {"tasks": [t["task_id"] for t in unexplained]},
                "report",
                "%s: %d task(s) pending for more than %ss with no identified cause (every arm they could use is up "
                "and registered, some arm meets their constraints, no failure names an arm): not re-queued; read "
                "their action_log and the orchestrator's routing log: %s"
                % (
                    s["escalation_level"],
                    len(unexplained),
                    s["stuck_after_seconds"],
                    ", ".join(t["task_id"] for t in unexplained),
                ),
            )
        )
    running = ctx.get("running") or []
    if running and "A" in selected:
        actions.append(
            requeue_action(
                "task_routing.A.requeue_running",
                "A",
                "re-queue %d tasks stuck in running" % len(running),
                "postgres:tasks:running",
                running,
                (),
                orchestrator,
                "they were dispatched and never finished (%s); an arm that still works on one runs it twice"
                % "; ".join("%s: %s" % (t["task_id"], t["cause"]) for t in running),
                s,
            )
        )
    return gate(actions, dry_run=s["dry_run"], approve=s["approve"], allow_disruptive=s["allow_disruptive"])


def prevention(evidence, settings=None):
    s = settings
    f = Facts(evidence, s)
    findings = []
    # 1. health checks on every arm (docker inspect)
    title = "Every arm container has a health check"
    if f.containers is None:
        findings.append(unknown("prevent.arms.healthcheck", title, "configured", f.containers_error))
    else:
        records = [r for r in f.containers.get("containers") or [] if r.get("service") in s["arms"]]
        without = sorted({r["service"] for r in records if not r.get("healthcheck")})
        findings.append(
            finding(
                "prevent.arms.healthcheck",
                title,
                "problem" if without else "ok",
                "without: %s" % ", ".join(without) if without else "all %d" % len(records),
                "configured",
                {"without": without},
            )
        )
    # 2. registration on start-up and re-registration: every arm registered, none stale
    title = (
        "Every arm is registered and re-registers (registration younger than %ss)" % s["registration_max_age_seconds"]
    )
    if not f.registry_offered:
        findings.append(not_offered("prevent.arms.registration", title, "fresh", REGISTRY))
    elif f.registered is None:
        findings.append(
            unknown(
                "prevent.arms.registration",
                title,
                "fresh",
                f.http_error or {"kind": "other", "message": "no registry answer"},
            )
        )
    else:
        import time

        now = time.time()
        stale = sorted(
            n
            for n, arm in f.registered.items()
            if now - float(arm.get("registered_at") or 0) > float(s["registration_max_age_seconds"])
        )
        missing = [n for n in f.arm_names if n not in f.registered]
        bad = stale + missing
        findings.append(
            finding(
                "prevent.arms.registration",
                title,
                "problem" if bad else "ok",
                "stale: %s; missing: %s" % (stale, missing) if bad else "all fresh",
                "fresh",
                {"stale": stale, "missing": missing},
                "C" if bad else None,
            )
        )
    # 3. a default arm: the fallback answers
    title = "The fallback arm (%s) is registered and healthy" % s["fallback_arm"]
    if not f.registry_offered:
        findings.append(not_offered("prevent.routing.default_arm", title, "healthy", REGISTRY))
    elif f.registered is None:
        findings.append(unknown("prevent.routing.default_arm", title, "healthy", f.http_error))
    else:
        arm = f.registered.get(s["fallback_arm"]) or {}
        ok = arm.get("health") == "healthy"
        findings.append(
            finding(
                "prevent.routing.default_arm",
                title,
                "ok" if ok else "problem",
                arm.get("health") or "not registered",
                "healthy",
                {},
                None if ok else "A",
            )
        )
    # 4. an alert on routing failures
    findings.append(rule_loaded("prevent.prometheus.routing_rule", s["routing_rule"], f.prom, f.prom_error))
    actions = []
    names = [item["check"] for item in findings if item["status"] == "problem"]
    reports = {
        "prevent.arms.healthcheck": "add a healthcheck (curl /health) to these arms' services",
        "prevent.arms.registration": "set ARM_REGISTER_INTERVAL > 0 on the arms so that they re-register "
        "(the orchestrator forgets them on restart), then run resolve",
        "prevent.routing.default_arm": "bring the fallback arm back (resolve, scenario A)",
        "prevent.prometheus.routing_rule": "add the %s rule (rate of routing fallbacks / pending tasks) to Prometheus"
        % s["routing_rule"],
    }
    for check in names:
        actions.append(
            action(
                "task_routing.%s" % check.replace(".", "_"),
                None,
                "report: %s" % check,
                check,
                {},
                "report",
                "%s: %s" % (s["escalation_level"], reports[check]),
            )
        )
    return {"findings": findings, "actions": gate(actions, dry_run=s["dry_run"]), "context": {}}


# --- the procedure ------------------------------------------------------------------------------------
PENDING_PATTERN = {"task_routing_pending": "task pending"}


def probes(s):
    """The http probes: every arm's health endpoint and /capabilities, and, where the deployment offers them, the
    orchestrator's registry and its read-only scoring of the probe goal (no task is created)."""
    names = list(s["arms"])
    health = s.get("health_paths") or {}
    found = [
        {"name": "task_routing_health_%s" % n, "service": n, "path": health.get(n) or SEED_HEALTH, "timeout": 3}
        for n in names
    ]
    found += [
        {"name": "task_routing_capabilities_%s" % n, "service": n, "path": "/capabilities", "timeout": 3} for n in names
    ]
    if s.get("registry_path"):
        found.append(
            {"name": "task_routing_registry", "service": ORCHESTRATOR, "path": s["registry_path"], "timeout": 5}
        )
    if s.get("score_path"):
        found.append(
            {
                "name": "task_routing_score",
                "service": ORCHESTRATOR,
                "path": s["score_path"],
                "method": "POST",
                "body": {"goal": s["probe_goal"], "constraints": []},
                "timeout": 5,
            }
        )
    return found


class TaskRouting(Procedure):
    name = PROCEDURE
    title = "Task Routing Failures"
    scenarios = SCENARIOS
    modules = {"compose": "task_routing", "kubernetes": "task_routing_kubernetes"}

    def settings(self, role_settings, context):
        s = super(TaskRouting, self).settings(role_settings, context)
        s["orchestrator_url"] = context.service_url(ORCHESTRATOR, "http://127.0.0.1:8000")
        # the deployment's names (docs/deployment.md): the orchestrator's optional probes (None: not offered), the
        # arms' health endpoints, the tables and task status values of the schema
        s["registry_path"] = context.probe(ORCHESTRATOR, "arms")
        s["score_path"] = context.probe(ORCHESTRATOR, "route_score")
        s["health_paths"] = {name: context.service(name).get("health_path") or SEED_HEALTH for name in s["arms"]}
        s["schema"] = dict(context.schema)
        s["tables"] = {meaning: context.table(meaning) for meaning in ("tasks", "action_log")}
        s["task_statuses"] = {meaning: context.task_status(meaning) for meaning in ("pending", "running", "cancelled")}
        if context.kubernetes:
            s["namespace"] = context.inventory["k8s"]["namespace"]
        return s

    def needs(self, settings, context):
        s = settings
        need = {
            "postgres": {
                "tasks": True,
                "stuck_after_seconds": s["stuck_after_seconds"],
                "running_after_seconds": min(s["running_grace_seconds"], s["running_stuck_after_seconds"]),
                "sample_limit": s["stuck_sample"],
                "connections": False,
            },
            "http": {"max_body": 8192, "probes": probes(s)},
            "prometheus": {"rules": True},
        }
        if s.get("schema"):
            need["postgres"]["schema"] = s["schema"]
        if not context.kubernetes:
            need["containers"] = {
                "logs": {"tail": s["log_tail"], "services": ["orchestrator"], "patterns": dict(PENDING_PATTERN)}
            }
            return need
        # On Kubernetes the arms' health and the orchestrator's log come from the API (the arms' pod addresses are
        # not reachable from the controller): the http probes keep the orchestrator's and those of arms with a url.
        without_url = {name for name, arm in s["arms"].items() if not (arm or {}).get("url")}
        need["http"]["probes"] = [
            probe
            for probe in need["http"]["probes"]
            if not probe["name"].startswith("task_routing_health_") and probe["service"] not in without_url
        ]
        selector = s["k8s_arm_selector"]
        need["kubernetes"] = {
            "objects": {
                "task_routing_deployments": {
                    "kind": "Deployment",
                    "api_version": "apps/v1",
                    "label_selector": selector,
                },
                "task_routing_pods": {"kind": "Pod", "label_selector": selector},
                "task_routing_endpoints": {"kind": "Endpoints", "label_selector": selector},
                "task_routing_events": {"kind": "Event", "field_selector": "type=Warning"},
                "task_routing_orchestrator": {
                    "kind": "Pod",
                    "label_selector": "app=%s" % s["k8s_orchestrator_app"],
                    "logs": {"tail": s["log_tail"], "patterns": dict(PENDING_PATTERN)},
                },
            }
        }
        return need

    def diagnose(self, evidence, settings, context, previous=None, applied=()):
        # the judgement reads the evidence alone: a verification is a fresh diagnosis
        return self.module(context).diagnose(evidence, settings)


PROCEDURE = TaskRouting()
