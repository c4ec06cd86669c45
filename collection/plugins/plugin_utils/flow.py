# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The one flow every procedure shares, as pure functions over the run (``procedure_run`` lookup) and evidence.

    diagnose: request -> gather -> judge (-> follow-up gather -> judge) -> results
    resolve:  request -> gather -> judge + plan + gate -> apply (role task files) -> gather again -> results
    prevent:  request -> gather -> prevention + gate -> apply -> gather again -> results

The internal role ``_common`` runs these steps as a handful of tasks for every selected procedure at once: one
``stack_evidence`` call gathers the union of their needs, one filter call judges them all. ``run`` is the fact the
``procedure_run`` lookup builds: ``{procedures, phase, context, settings: {procedure: role settings}}``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.octollm.remediation.plugins.plugin_utils import evidence_requests, results, stack
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context, get, in_rank_order

FOLLOWUP = "_followup"
# a procedure's actions added by its judgement of the evidence gathered after the run's changes (second_look)
SECOND_LOOK = "second_look"


def _selected(run):
    """``[(procedure, settings)]`` of the run, in rank order, and the run's Context."""
    context = Context(run.get("context") or {})
    selected = []
    for name in in_rank_order(run.get("procedures") or []):
        procedure = get(name)
        procedure.check_platform(context)
        role_settings = (run.get("settings") or {}).get(name) or {}
        selected.append((procedure, procedure.settings(role_settings, context)))
    return selected, context


def request(run, cached_spec=None, refresh=False, needs=None):
    """What ``stack_evidence`` must collect now: the union of the procedures' needs (or of ``needs``,
    ``{procedure: {kind: options}}``) minus what ``cached_spec`` already answers."""
    if needs is None:
        selected, context = _selected(run)
        needs = {procedure.name: procedure.needs(settings, context) for procedure, settings in selected}
        if _checks_stack(context):
            needs[stack.KEY] = stack.needs(context)
    return evidence_requests.request(needs, cached_spec, refresh)


def _checks_stack(context):
    """Diagnoses and fixes also check that every service of the stack is up (``stack.py``)."""
    return (context.get("phase") or "diagnose") in ("diagnose", "resolve")


def evidence_timeout(run, default=None):
    """Seconds one evidence gathering of the run may take: the longest its procedures ask
    (``Procedure.evidence_timeout``), at least ``default``."""
    selected, context = _selected(run)
    wanted = [procedure.evidence_timeout(settings, context) for procedure, settings in selected]
    wanted = [int(value) for value in wanted + [default] if value]
    return max(wanted) if wanted else None


def judge(evidence, run):
    """The state of the phase, per procedure: ``{procedure: {diagnosis, actions} | {prevention}}``, plus
    ``_followup``: ``{procedure: needs}`` of the procedures that ask for more evidence (judge again after)."""
    selected, context = _selected(run)
    phase = context.get("phase") or "diagnose"
    state = {}
    followups = {}
    for procedure, settings in selected:
        if phase == "prevent":
            state[procedure.name] = {"prevention": procedure.prevention(evidence, settings, context)}
            continue
        diagnosis = procedure.diagnose(evidence, settings, context)
        more = procedure.followup(diagnosis, settings, context)
        if more:
            followups[procedure.name] = more
        item = {"diagnosis": diagnosis}
        if phase == "resolve":
            item["actions"] = skip_actions(procedure.plan(diagnosis, evidence, settings, context), settings)
        state[procedure.name] = item
    state[FOLLOWUP] = followups
    if phase == "resolve" and context.get("approved") is not None:
        hold_to_approved(state, context["approved"], bool(context.get("dry_run")))
    return state


def change_key(change, volatile=()):
    """An action's change as compared with an approved one: canonical JSON without empty keys and without the keys
    the action calls volatile (``_volatile``: information that moves while the change stays the same, such as the
    size of the database a backup copies)."""
    return json.dumps(
        {key: value for key, value in (change or {}).items() if value is not None and key not in volatile},
        sort_keys=True,
        default=str,
    )


def hold_to_approved(state, approved, dry_run=False):
    """Apply exactly an approved plan (``{action id: change}``, the plan a person saw): an approved action runs
    (disruptive or not), with the actions that follow it; anything else is held back awaiting approval. When an
    approved action is no longer planned or its change differs from the approved one, the evidence no longer supports
    the plan: nothing of it runs (``state['_approval']['refused']`` says why)."""
    actions = [
        action for name, item in state.items() if not name.startswith("_") for action in item.get("actions") or []
    ]
    fresh = {action["id"]: action for action in actions}
    refused = []
    for action_id, change in approved.items():
        action = fresh.get(action_id)
        if action is None or action["status"] not in ("planned", "awaiting_approval"):
            refused.append("%s is no longer planned (%s)" % (action_id, (action or {}).get("status", "absent")))
        elif change_key(action.get("change"), action.get("_volatile") or ()) != change_key(
            change, action.get("_volatile") or ()
        ):
            refused.append(
                "%s changed since it was approved: %s, now %s"
                % (action_id, change_key(change), change_key(action.get("change")))
            )
    released = set()
    for action in actions:
        if action["status"] not in ("planned", "awaiting_approval", "skipped"):
            continue
        follows = action.get("_after") in released
        if action["status"] == "skipped" and not (follows and action.get("_apply")):
            continue  # skipped by skip_actions or another action on its resource: stays skipped
        if not refused and (action["id"] in approved or follows):
            action["status"] = "planned"
            action["outcome"] = ("dry run: would apply (approved). " if dry_run else "approved: ") + (
                action.get("outcome") or ""
            )
            released.add(action["id"])
        else:
            action.pop("_apply", None)
            action["status"] = "awaiting_approval"
            action["outcome"] = "not applied: %s" % (
                "the approved plan no longer holds (%s)" % "; ".join(refused)
                if refused
                else "not in the approved plan; approve it separately"
            )
    state["_approval"] = {"approved": sorted(approved), "refused": refused}
    return state


def skip_actions(actions, settings):
    """Actions listed in ``<role>_skip_actions`` (and those that follow them) are skipped, not applied."""
    skip = set(settings.get("skip_actions") or [])
    if not skip:
        return actions
    done = []
    skipped = set()
    for item in actions:
        item = dict(item)
        after = item.get("_after")
        if item["status"] in ("planned", "awaiting_approval") and (item["id"] in skip or after in skipped):
            item["status"] = "skipped"
            item["outcome"] = (
                "not applied: listed in skip_actions" if item["id"] in skip else "not applied: it follows %s" % after
            )
            item.pop("_apply", None)
            skipped.add(item["id"])
        done.append(item)
    return done


def verification_followup(evidence, run, state, outcomes=None):
    """``{procedure: needs}``: what the judgement after the applied actions asks for besides the fresh evidence
    (``Procedure.followup`` of that judgement, e.g. a CPU profile of the service still slow); the flow gathers it
    before the verification is judged. Empty outside resolve, and for procedures that applied nothing."""
    selected, context = _selected(run)
    if (context.get("phase") or "diagnose") != "resolve":
        return {}
    needs = {}
    for procedure, settings in selected:
        item = state.get(procedure.name) or {}
        applied = _applied(results.apply_outcomes(item.get("actions") or [], outcomes or {}))
        if not applied:
            continue
        scenarios = tuple(dict.fromkeys(action.get("scenario") for action in applied))
        previous = (item.get("diagnosis") or {}).get("findings")
        after = procedure.diagnose(evidence, settings, context, previous=previous, applied=scenarios)
        more = procedure.followup(after, settings, context)
        if more:
            needs[procedure.name] = more
    return needs


def finishers(state, run, outcomes=None):
    """``[{procedure, action}]``, in rank order: the finishing task file (``Procedure.finish``) of each procedure
    that applied an action, as a pseudo-action ``{id: <procedure>.finish.<file>, title, _apply: file, actions:
    the applied action ids}`` (the flow runs it like an action, then notes its outcome on those actions)."""
    selected, context = _selected(run)
    todo = []
    for procedure, settings in selected:
        item = state.get(procedure.name) or {}
        actions = item.get("actions") if "actions" in item else (item.get("prevention") or {}).get("actions")
        applied = _applied(results.apply_outcomes(actions or [], outcomes or {}))
        finish = procedure.finish(applied, settings, context) if applied else None
        if finish:
            todo.append(
                {
                    "procedure": procedure.name,
                    "action": {
                        "id": "%s.finish.%s" % (procedure.name, finish["file"]),
                        "title": finish.get("title") or finish["file"],
                        "_apply": finish["file"],
                        "actions": [action["id"] for action in applied],
                    },
                }
            )
    return todo


def note(outcomes, action_ids, text, status=None):
    """The ``outcomes`` with ``text`` appended to the outcome of each applied action of ``action_ids`` (and their
    status set to ``status`` when given, e.g. failed)."""
    noted = dict(outcomes or {})
    for action_id in action_ids or []:
        done = dict(noted.get(action_id) or {})
        if done.get("status") != "applied":
            continue
        done["outcome"] = "%s; %s" % (done.get("outcome") or "", text) if done.get("outcome") else text
        if status:
            done["status"] = status
        noted[action_id] = done
    return noted


def second_look(evidence, run, state, outcomes=None):
    """The state with, for each procedure that applied nothing in a resolve that changed the stack, the actions its
    judgement of the fresh ``evidence`` adds (under ``second_look``): those that were not in its first plan and need no
    approval. A procedure that could not read its component (a stopped Redis that another procedure started) acts
    on what it reads now, e.g. it warms the cache that the restart left cold. Never in a dry run, never under an
    approved plan (only what a person saw runs), never twice, never a disruptive or destructive step."""
    selected, context = _selected(run)
    outcomes = outcomes or {}
    if (
        (context.get("phase") or "diagnose") != "resolve"
        or context.get("dry_run")
        or context.get("approved") is not None
        or not any((done or {}).get("status") == "applied" for done in outcomes.values())
    ):
        return state
    looked = dict(state)
    for procedure, settings in selected:
        item = state.get(procedure.name) or {}
        if "actions" not in item or SECOND_LOOK in item:
            continue
        if _applied(results.apply_outcomes(item.get("actions") or [], outcomes)):
            continue
        first = {action["id"] for action in item.get("actions") or []}
        diagnosis = procedure.diagnose(evidence, settings, context)
        added = []
        for action in skip_actions(procedure.plan(diagnosis, evidence, settings, context), settings):
            if action["id"] in first or action.get("status") != "planned" or not action.get("_apply"):
                continue
            if action.get("disruptive") or action.get("destructive"):
                continue
            if action.get("_after") and action["_after"] not in {a["id"] for a in added}:
                continue
            added.append(dict(action, outcome="judged after the run's changes: %s" % (action.get("outcome") or "")))
        looked[procedure.name] = dict(item, **{SECOND_LOOK: added})
    return looked


def second_look_actions(state, run):
    """``[{procedure, action}]`` to apply after the second look, in rank order."""
    context = Context(run.get("context") or {})
    if context.get("dry_run"):
        return []
    return [
        {"procedure": name, "action": action}
        for name in in_rank_order([key for key in state if not key.startswith("_")])
        for action in (state[name] or {}).get(SECOND_LOOK) or []
        if action.get("status") == "planned" and action.get("_apply")
    ]


def to_apply(state, run):
    """``[{procedure, action}]`` to apply, in rank order: the planned actions that have a task file."""
    context = Context(run.get("context") or {})
    if context.get("dry_run"):
        return []
    todo = []
    for name in in_rank_order([key for key in state if not key.startswith("_")]):
        item = state[name]
        actions = item.get("actions") if "actions" in item else (item.get("prevention") or {}).get("actions")
        for action in actions or []:
            if action.get("status") == "planned" and action.get("_apply"):
                todo.append({"procedure": name, "action": action})
    return todo


def report(evidence, run, state, outcomes=None):
    """``{procedure: RESULT}`` (docs/design.md): the diagnosis, the actions with their outcomes and, when something
    was applied, the verification judged on the fresh ``evidence``; and ``stack``: ``{findings, down}``, whether
    every service of the stack is up (diagnose and resolve)."""
    selected, context = _selected(run)
    phase = context.get("phase") or "diagnose"
    outcomes = outcomes or {}
    # the evidence was gathered afresh after the changes: every procedure's verification reads it
    refreshed = any((done or {}).get("status") == "applied" for done in outcomes.values())
    reports = {}
    for procedure, settings in selected:
        item = state.get(procedure.name) or {}
        level = settings.get("escalation_level") or "L1"
        if phase == "diagnose":
            diagnosis = item["diagnosis"]
            data = {
                "findings": diagnosis.get("findings"),
                "scenarios": diagnosis.get("scenarios"),
                "escalation": diagnosis.get("escalation")
                or results.escalation(diagnosis.get("findings"), level, phase="diagnose"),
            }
        elif phase == "resolve":
            data = _resolved(procedure, settings, context, evidence, item, outcomes, level, refreshed)
        else:
            data = _prevented(procedure, settings, context, evidence, item, outcomes, level)
        extra = procedure.result_extra(item.get("diagnosis"), settings, context)
        reports[procedure.name] = results.procedure_result(
            procedure.name,
            context.platform,
            phase,
            data.get("findings"),
            data.get("scenarios"),
            data.get("actions"),
            data.get("verification"),
            data.get("prevention"),
            data.get("escalation"),
            extra,
        )
    if _checks_stack(context):
        reports[stack.KEY] = stack.judge(evidence, context)
    return reports


def _applied(actions):
    return [action for action in actions if action.get("status") == "applied"]


def _resolved(procedure, settings, context, evidence, item, outcomes, level, refreshed=False):
    diagnosis = item["diagnosis"]
    final = results.apply_outcomes(list(item.get("actions") or []) + list(item.get(SECOND_LOOK) or []), outcomes)
    applied = _applied(final)
    if applied or refreshed:
        # judged again on the fresh evidence, also when another procedure of the run made the change (a stopped
        # Redis that service_unavailable started is what cache_performance could not read before)
        scenarios = []
        for action in applied:
            if action.get("scenario") not in scenarios:
                scenarios.append(action.get("scenario"))
        after = procedure.diagnose(
            evidence, settings, context, previous=diagnosis.get("findings"), applied=tuple(scenarios)
        )["findings"]
    else:
        after = diagnosis.get("findings")
    after = procedure.verification(after, final, settings, context)
    verification = {"findings": after, "healthy": results.healthy(after)}
    return {
        "findings": diagnosis.get("findings"),
        "scenarios": diagnosis.get("scenarios"),
        "actions": final,
        "verification": verification,
        "escalation": results.escalation(diagnosis.get("findings"), level, final, verification, "resolve"),
    }


def _prevented(procedure, settings, context, evidence, item, outcomes, level):
    before = item["prevention"]
    final = results.apply_outcomes(before.get("actions") or [], outcomes)
    changed = bool(_applied(final))
    after = procedure.prevention(evidence, settings, context)["findings"] if changed else before.get("findings")
    verification = {"findings": after, "healthy": results.healthy(after)}
    return {
        "prevention": {
            "findings": after,
            "actions": final,
            "findings_before": before.get("findings") if changed else None,
        },
        "escalation": results.escalation(
            before.get("findings"), level, final, verification if changed else None, "prevent"
        ),
    }
