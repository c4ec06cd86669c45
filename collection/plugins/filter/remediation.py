# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation shared by every procedure: the result contract, escalation, evidence requests.

Each procedure's own filters live in ``plugins/filter/<procedure>.py``. Each filter is documented in
``plugins/filter/<name>.yml`` (``ansible-doc -t filter octollm.remediation.<name>``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.octollm.remediation.plugins.plugin_utils import evidence_requests, results
from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import wrap


def escalation(findings, level="L1", actions=None, verification=None, phase="diagnose"):
    if isinstance(findings, dict) and "findings" in findings:
        findings = findings["findings"]
    return results.escalation(findings, level, actions, verification, phase)


def escalate(level):
    return results.up(level)


def action_outcomes(actions, outcomes):
    return results.apply_outcomes(actions, outcomes)


def procedure_result(data, procedure, platform, phase):
    """RESULT from a dict holding findings, scenarios, actions, verification, prevention and escalation."""
    data = data or {}
    return results.procedure_result(
        procedure,
        platform,
        phase,
        data.get("findings"),
        data.get("scenarios"),
        data.get("actions"),
        data.get("verification"),
        data.get("prevention"),
        data.get("escalation"),
    )


def evidence_request(needs, cached_spec=None, refresh=False):
    try:
        return evidence_requests.request(needs, cached_spec, refresh)
    except evidence_requests.NeedConflict as exc:
        raise AnsibleFilterError(str(exc)) from exc


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


def healthy(findings):
    return results.healthy(findings)


class FilterModule(object):
    """octollm.remediation shared filters."""

    def filters(self):
        return {
            "escalation": wrap(escalation),
            "escalate": wrap(escalate),
            "action_outcomes": wrap(action_outcomes),
            "procedure_result": wrap(procedure_result),
            "evidence_request": wrap(evidence_request),
            "evidence_merge": wrap(evidence_merge),
            "healthy": wrap(healthy),
        }
