# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The result contract of docs/design.md, shared by every procedure: findings, actions, escalation, RESULT.

Pure functions on plain data (no Ansible objects), so that filters and unit tests call them directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

STATUSES = ("ok", "warning", "problem", "unknown")
ACTION_STATUSES = ("planned", "applied", "skipped", "awaiting_approval", "failed", "report")
LEVELS = ("L1", "L2", "L3")
PHASES = ("diagnose", "resolve", "prevent")
SEVERITY = {"ok": 0, "unknown": 1, "warning": 2, "problem": 3}


def finding(check, title, status, observed, expected, evidence=None, scenario=None, error=None):
    """One finding, exactly the keys of the contract (``error`` only when a probe failed)."""
    if status not in STATUSES:
        raise ValueError("finding %s: status %r is not one of %s" % (check, status, ", ".join(STATUSES)))
    item = {
        "check": check,
        "title": title,
        "status": status,
        "observed": observed,
        "expected": expected,
        "evidence": evidence or {},
        "scenario": scenario,
    }
    if error:
        item["error"] = {"kind": error.get("kind", "other"), "message": error.get("message", "")}
        if error.get("source"):
            item["error"]["source"] = error["source"]
    return item


def unknown(check, title, expected, error, scenario=None, evidence=None):
    """A finding whose evidence could not be had (a failed probe)."""
    error = error or {"kind": "other", "message": "no evidence"}
    return finding(check, title, "unknown", None, expected, evidence, scenario, error)


def action(
    action_id, scenario, title, resource, change, status, outcome, disruptive=False, destructive=False, apply=None
):
    """One action. ``apply`` (the task file that applies it) is internal and stripped from the report."""
    if status not in ACTION_STATUSES:
        raise ValueError("action %s: status %r is not one of %s" % (action_id, status, ", ".join(ACTION_STATUSES)))
    item = {
        "id": action_id,
        "scenario": scenario,
        "title": title,
        "resource": resource,
        "change": change,
        "disruptive": bool(disruptive),
        "destructive": bool(destructive),
        "status": status,
        "outcome": outcome,
    }
    if apply:
        item["_apply"] = apply
    return item


def gate(actions, dry_run=False, approve=False, allow_disruptive=False):
    """Decide each applicable action's status: planned, or awaiting_approval; one action per resource.

    ``report`` actions stay reports. With ``dry_run`` nothing will be applied but the plan is the same
    (the statuses a real run would start from), so that a dry run lists exactly what a run would do.
    """
    seen = {}
    status_of = {}
    gated = []
    for item in actions:
        item = dict(item)
        resource = item.get("resource")
        after = item.get("_after")
        if after and status_of.get(after) != "planned":
            # a follow-up runs only when the action it follows will run
            item["status"] = "skipped"
            item["outcome"] = "not applied: it follows %s, which is %s" % (after, status_of.get(after, "not planned"))
            item.pop("_apply", None)
            gated.append(item)
            status_of[item["id"]] = item["status"]
            continue
        if resource in seen:
            item["status"] = "skipped"
            item["outcome"] = "not applied: %s already changes %s in this run" % (seen[resource], resource)
            item.pop("_apply", None)
            gated.append(item)
            status_of[item["id"]] = item["status"]
            continue
        seen[resource] = item["id"]
        if item["status"] == "report":
            gated.append(item)
            status_of[item["id"]] = item["status"]
            continue
        risky = item.get("disruptive") or item.get("destructive")
        if risky and not (approve or allow_disruptive):
            item["status"] = "awaiting_approval"
            item["outcome"] = (
                "not applied: %s; approve it (octollm_approve=true, octoctl --approve) or allow "
                "disruptive fixes for this role" % (item.get("outcome") or "disruptive change")
            )
        else:
            item["status"] = "planned"
            if dry_run:
                item["outcome"] = "dry run: would apply. " + (item.get("outcome") or "")
        gated.append(item)
        status_of[item["id"]] = item["status"]
    return gated


def apply_outcomes(actions, outcomes):
    """Merge ``{action_id: {status, outcome, ...}}`` collected while applying into the action list."""
    outcomes = outcomes or {}
    merged = []
    for item in actions or []:
        item = dict(item)
        done = outcomes.get(item["id"])
        if done:
            item["status"] = done.get("status", item["status"])
            if done.get("outcome") is not None:
                item["outcome"] = done["outcome"]
            if done.get("elapsed_s") is not None:
                item["elapsed_s"] = done["elapsed_s"]
            if done.get("change"):
                change = dict(item.get("change") or {})
                change.update(done["change"])
                item["change"] = change
        merged.append(item)
    return merged


def up(level):
    """One escalation level up (L3 stays L3)."""
    if level not in LEVELS:
        return "L1"
    return LEVELS[min(LEVELS.index(level) + 1, len(LEVELS) - 1)]


def worst(findings):
    statuses = [item.get("status", "ok") for item in findings or []]
    return max(statuses, key=lambda status: SEVERITY.get(status, 0)) if statuses else "ok"


def offered(item):
    """False for a finding on an optional probe the deployment does not offer (error kind ``not_offered``)."""
    return (item.get("error") or {}).get("kind") != "not_offered"


def healthy(findings):
    """No problem and no unknown (a check that could not be made is not a verified health); a probe the deployment
    does not offer is neither."""
    return not any(item.get("status") in ("problem", "unknown") and offered(item) for item in findings or [])


def _names(findings, status):
    return [item["check"] for item in findings or [] if item.get("status") == status and offered(item)]


def escalation(findings, level="L1", actions=None, verification=None, phase="diagnose"):
    """The escalation of a result (docs/design.md, "Escalation levels").

    - problems still present after applied fixes: one level above ``level``;
    - report-only actions, actions awaiting approval or failed, problems no action addresses, findings that
      could not be checked: ``level``;
    - otherwise ``None`` (nothing is left for a human).
    """
    level = level if level in LEVELS else "L1"
    actions = actions or []
    fixed = {item.get("scenario") for item in actions if item.get("status") == "applied"}
    pending = {item.get("scenario") for item in actions if item.get("status") != "applied"}
    if verification is not None and fixed and not verification.get("healthy", True):
        # a problem that the applied fixes should have removed (or one no scenario explains) is still there;
        # problems of a scenario with an action still pending (approval, report, failure) are that action's
        remaining = [
            item["check"]
            for item in verification.get("findings") or []
            if item.get("status") == "problem"
            and (item.get("scenario") in fixed or item.get("scenario") is None)
            and item.get("scenario") not in pending
        ]
        if remaining:
            return {
                "level": up(level),
                "reason": "problems remain after the fix (%s): escalate to the next level" % ", ".join(remaining),
            }
    reasons = []
    failed = [item["id"] for item in actions if item.get("status") == "failed"]
    if failed:
        reasons.append("actions failed: %s" % ", ".join(failed))
    waiting = [item["id"] for item in actions if item.get("status") == "awaiting_approval"]
    if waiting:
        reasons.append("awaiting approval: %s" % ", ".join(waiting))
    planned = [item["id"] for item in actions if item.get("status") == "planned"]
    if planned:
        # still planned when the result is made: a dry run (or check mode) applied nothing, the problems remain
        reasons.append("not applied (dry run): %s" % ", ".join(planned))
    reports = [item for item in actions if item.get("status") == "report"]
    for item in reports:
        reasons.append("%s: %s" % (item["id"], item.get("outcome") or "a human must act"))
    final = verification.get("findings") if verification is not None else findings
    if phase == "diagnose":
        problems = _names(final, "problem")
        if problems:
            reasons.append("problems found: %s" % ", ".join(problems))
    elif phase in ("resolve", "prevent"):
        addressed = {
            item.get("scenario")
            for item in actions
            if item.get("status") in ("applied", "planned", "awaiting_approval", "failed", "report")
        }
        left = [
            item["check"]
            for item in final or []
            if item.get("status") == "problem" and item.get("scenario") not in addressed
        ]
        if left and not (verification is not None and verification.get("healthy")):
            reasons.append("problems no action fixes: %s" % ", ".join(left))
    missing = _names(final, "unknown")
    if missing:
        reasons.append("could not check: %s" % ", ".join(missing))
    if not reasons:
        return {"level": None, "reason": "nothing left for a human"}
    return {"level": level, "reason": "; ".join(reasons)}


def public(value):
    """Drop internal keys (leading underscore) at any depth."""
    if isinstance(value, dict):
        return {key: public(item) for key, item in value.items() if not str(key).startswith("_")}
    if isinstance(value, list):
        return [public(item) for item in value]
    return value


def procedure_result(
    procedure,
    platform,
    phase,
    findings=None,
    scenarios=None,
    actions=None,
    verification=None,
    prevention=None,
    escalation=None,
    extra=None,
):
    """RESULT of docs/design.md; keys that do not apply to the phase are left out."""
    if phase not in PHASES:
        raise ValueError("phase %r is not one of %s" % (phase, ", ".join(PHASES)))
    result = {
        "procedure": procedure,
        "platform": platform,
        "phase": phase,
        "findings": findings or [],
        "scenarios": scenarios or [],
    }
    if phase == "resolve":
        result["actions"] = actions or []
        result["verification"] = verification or {"findings": [], "healthy": True}
    if phase == "prevent":
        result["prevention"] = {
            key: value for key, value in (prevention or {"findings": [], "actions": []}).items() if value is not None
        }
    result["escalation"] = escalation or {"level": None, "reason": "nothing left for a human"}
    if extra:
        result.update(extra)
    return public(copy.deepcopy(result))


# --- small parsers --------------------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def redis_bytes(value):
    """Redis memory notation ("24mb", "1g", "67108864") as bytes, or None."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    match = re.match(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        return None
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def human_bytes(value):
    if value is None:
        return None
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return None


def percent(value):
    return None if value is None else "%.0f%%" % (100.0 * value)
