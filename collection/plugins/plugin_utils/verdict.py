# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The exit status a host's results would give, read inside the play (docs/design.md "Exit statuses").

octoctl judges a run's results after the play (``octoctl/exitstatus.py``, with its models); a job that Ansible runs
by itself (AWX, a scheduler) has no octoctl after it. With ``octollm_fail_when_human_needed`` the shared flow reads
its own report with this module and fails the play after reporting when a human is needed, so that AWX marks the job
failed and its failure notifications fire. The rules are octoctl's, on the plain result dicts of the contract;
tests/collection/test_fail_when_human_needed.py keeps the two equal on many results.

0: healthy or fixed; 1: a human is needed; 3: the environment (octoctl could not reach or log into the runtime's API,
a tool is missing, credentials rejected).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

HEALTHY, HUMAN_NEEDED, ENVIRONMENT = 0, 1, 3
# the finding error kinds of the environment, and the evidence kinds through which octoctl reaches the runtime
ENVIRONMENT_ERROR_KINDS = frozenset(("unreachable", "auth", "missing_tool"))
RUNTIME_SOURCES = frozenset(("containers", "kubernetes"))


def _list(value):
    return value if isinstance(value, list) else []


def is_environment_error(error):
    if not isinstance(error, dict) or error.get("kind") not in ENVIRONMENT_ERROR_KINDS:
        return False
    return error["kind"] != "unreachable" or error.get("source") is None or error["source"] in RUNTIME_SOURCES


def _checks(findings):
    return ", ".join(str(f.get("check")) for f in findings)


def procedure_verdict(result, dry_run=False):
    """(exit status, reasons) of one procedure's RESULT, as octoctl's judge_procedure reads it."""
    findings = _list(result.get("findings"))
    verification = result.get("verification") if isinstance(result.get("verification"), dict) else None
    prevention = result.get("prevention") if isinstance(result.get("prevention"), dict) else None
    every = findings + (_list(verification.get("findings")) if verification else []) + (
        _list(prevention.get("findings")) if prevention else [])
    environment = [f for f in every if is_environment_error(f.get("error"))]
    reasons = ["%s: %s" % (f.get("check"), f["error"]["kind"]) for f in environment]

    def undecided(some):
        return [f for f in some if f.get("status") == "unknown" and f not in environment
                and (f.get("error") is None or (f.get("error") or {}).get("kind") != "not_offered")]

    actions = _list(result.get("actions")) + (_list(prevention.get("actions")) if prevention else [])
    count = {}
    for action in actions:
        count[action.get("status")] = count.get(action.get("status"), 0) + 1
    if result.get("phase") == "resolve" and verification is not None and not dry_run:
        remaining = [f for f in _list(verification.get("findings")) if f.get("status") == "problem"]
        if not verification.get("healthy"):
            reasons.append("the fix failed verification")
        elif remaining:
            reasons.append("problems remain after the fix: " + _checks(remaining))
        if undecided(_list(verification.get("findings"))):
            reasons.append("checks could not be verified")
    else:
        judged = findings + (_list(prevention.get("findings")) if prevention else [])
        problems = [f for f in judged if f.get("status") == "problem"]
        if problems and not (dry_run and count.get("planned")):
            reasons.append("problems found: " + _checks(problems))
        if undecided(judged):
            reasons.append("checks could not be evaluated: " + _checks(undecided(judged)))
    for status, text in (("planned", "dry run: actions to do" if dry_run else "planned actions not applied"),
                         ("awaiting_approval", "steps await approval"), ("failed", "actions failed"),
                         ("report", "steps for a human (report only)")):
        if count.get(status):
            reasons.append("%s (%d)" % (text, count[status]))
    escalation = result.get("escalation") if isinstance(result.get("escalation"), dict) else {}
    if escalation.get("level") is not None:
        reasons.append("escalates to %s" % escalation["level"])
    if environment:
        return ENVIRONMENT, reasons
    return (HUMAN_NEEDED if reasons else HEALTHY), reasons


def host_verdict(report, procedures, dry_run=False):
    """{exit_code, reasons} of one host: its procedures' results and its stack check (the highest status wins; a
    procedure of the run without a result is octoctl's own error, 4)."""
    report = report if isinstance(report, dict) else {}
    code, reasons = HEALTHY, []
    for name in procedures:
        result = report.get(name)
        if not isinstance(result, dict):
            code = max(code, 4)
            reasons.append("%s: no result" % name)
            continue
        status, why = procedure_verdict(result, dry_run)
        code = max(code, status)
        reasons += ["%s: %s" % (name, reason) for reason in why]
    stack = report.get("stack")
    if isinstance(stack, dict):
        if any(is_environment_error(f.get("error")) for f in _list(stack.get("findings"))):
            code = max(code, ENVIRONMENT)
            reasons.append("stack: the runtime could not be checked")
        elif _list(stack.get("down")):
            code = max(code, HUMAN_NEEDED)
            reasons.append("stack: down: " + ", ".join(str(s) for s in stack["down"]))
    return {"exit_code": code, "reasons": reasons}


def approved_plan(report):
    """``{host: {action id: change}}`` of the actions a dry run planned or left awaiting approval, from
    ``octollm_report`` (every host): the plan a person approved in an AWX workflow's approval node, as octoctl's
    plan_of makes it from a stored dry run (``octoctl approve``)."""
    plan = {}
    for host, results in (report or {}).items():
        for name, result in (results or {}).items():
            if name == "stack" or not isinstance(result, dict):
                continue
            for action in _list(result.get("actions")):
                if action.get("status") in ("planned", "awaiting_approval"):
                    change = action.get("change") or {}
                    plan.setdefault(host, {})[action["id"]] = {k: v for k, v in change.items() if v is not None}
    return plan
