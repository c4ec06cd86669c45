# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The shared procedure flow's filters: every procedure and platform through one set, over ``plugin_utils/flow.py``.

Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

flow = LazyPluginUtils("flow")
requests = LazyPluginUtils("evidence_requests")


def procedure_request(run, cached_spec=None, refresh=False, needs=None):
    try:
        return flow.request(run, cached_spec, refresh, needs)
    except requests.NeedConflict as exc:
        raise AnsibleFilterError(str(exc)) from exc


def procedure_judgement(evidence, run):
    return flow.judge(evidence or {}, run)


def procedure_actions(state, run):
    return flow.to_apply(state or {}, run)


def procedure_second_look(evidence, run, state, outcomes=None):
    return flow.second_look(evidence or {}, run, state or {}, outcomes)


def procedure_second_look_actions(state, run):
    return flow.second_look_actions(state or {}, run)


def procedure_followup(evidence, run, state, outcomes=None):
    return flow.verification_followup(evidence or {}, run, state or {}, outcomes)


def procedure_finishers(state, run, outcomes=None):
    return flow.finishers(state or {}, run, outcomes)


def procedure_note(outcomes, action_ids, text, status=None):
    return flow.note(outcomes, action_ids, text, status)


def procedure_results(evidence, run, state, outcomes=None):
    return flow.report(evidence or {}, run, state or {}, outcomes)


def evidence_merge(cached, request, result):
    """The cached evidence with a stack_evidence result merged in (or, when the module could not run at all,
    one error per requested kind: a failure to gather is evidence too)."""
    merged = dict(cached or {})
    result = result or {}
    if isinstance(result.get("evidence"), dict) and result["evidence"]:
        merged.update(result["evidence"])
        return merged
    message = str(result.get("msg") or result.get("module_stderr") or "stack_evidence did not run")
    lowered = message.lower()
    markers = ("import", "no module named", "interpreter", "not found")
    kind = "missing_tool" if any(marker in lowered for marker in markers) else "other"
    for name in request or {}:
        merged[name] = {"ok": False, "error": {"kind": kind, "message": " ".join(message.split())[:300]}}
    return merged


class FilterModule(object):
    """octollm.remediation: the shared procedure flow."""

    def filters(self):
        return {
            "procedure_request": wrap(procedure_request),
            "procedure_judgement": wrap(procedure_judgement),
            "procedure_actions": wrap(procedure_actions),
            "procedure_followup": wrap(procedure_followup),
            "procedure_second_look": wrap(procedure_second_look),
            "procedure_second_look_actions": wrap(procedure_second_look_actions),
            "procedure_finishers": wrap(procedure_finishers),
            "procedure_note": wrap(procedure_note),
            "procedure_results": wrap(procedure_results),
            "evidence_merge": wrap(evidence_merge),
        }
