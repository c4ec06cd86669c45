# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Steps every procedure's judgement repeats: settings over defaults, one evidence kind, numbers, exec probes,
and the scenario table built from the findings.

Pure functions on plain data, as ``results.py``; a procedure module keeps only its own checks and plan.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import time

from ansible_collections.octollm.remediation.plugins.plugin_utils.results import finding, gate, unknown


def merged_settings(defaults, settings):
    """``defaults`` overridden by the ``settings`` that are not None."""
    merged = dict(defaults)
    merged.update({key: value for key, value in (settings or {}).items() if value is not None})
    return merged


def evidence_kind(evidence, kind):
    """(result, error): the kind's evidence when it answered, else None and its error."""
    result = (evidence or {}).get(kind)
    if result is None:
        return None, {"kind": "other", "message": "%s evidence was not gathered" % kind}
    if not result.get("ok", False):
        return None, result.get("error") or {"kind": "other", "message": "%s evidence failed" % kind}
    return result, None


def number(value):
    """``value`` as a float, or None when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def exec_probes(containers):
    """The containers collector's exec probes by name."""
    return {item.get("name"): item for item in (containers or {}).get("exec_probes") or []}


def scenario_table(titles, findings, check_scenario):
    """``[{id, title, holds, reason}]``: a scenario holds when one of its checks (``check_scenario``) is a problem."""
    return _scenarios(titles, findings, check_scenario, by_finding=False)


def finite_number(value):
    """``value`` as a float, or None when it is not a number or NaN (Prometheus answers NaN for 0/0)."""
    result = number(value)
    return None if result is None or result != result else result


def to_int(value, default=None):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def env_values(logs, source):
    """``KEY=value`` lines of an env file read through the logs collector's ``source``, as a dict."""
    values = {}
    entry = ((logs or {}).get("sources") or {}).get(source) or {}
    for line in entry.get("lines") or []:
        text = str(line.get("text", "")).strip()
        if "=" in text and not text.startswith("#"):
            key, value = text.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def scenarios_named(titles, findings, check_scenario):
    """As ``scenario_table``, but a scenario holds when a problem finding names it in its own ``scenario``.

    For procedures whose checks point at another scenario than the one they watch (a full pool explained by a leak
    is C, not A); ``check_scenario`` still says which checks a scenario's "checks ok / not checked" reason lists.
    """
    return _scenarios(titles, findings, check_scenario, by_finding=True)


def _scenarios(titles, findings, check_scenario, by_finding):
    scenarios = []
    for sid, title in titles.items():
        mine = [item for item in findings if check_scenario.get(item["check"]) == sid]
        if by_finding:
            holding = [item for item in findings if item["status"] == "problem" and item["scenario"] == sid]
        else:
            holding = [item for item in mine if item["status"] == "problem"]
        if holding:
            reason = "; ".join("%s: %s" % (item["check"], item["observed"]) for item in holding)
        elif any(item["status"] == "unknown" for item in mine):
            reason = "not checked: %s" % ", ".join(item["check"] for item in mine if item["status"] == "unknown")
        else:
            reason = "checks ok: %s" % ", ".join(item["check"] for item in mine)
        scenarios.append({"id": sid, "title": title, "holds": bool(holding), "reason": reason})
    return scenarios


def selected_scenarios(diagnosis, settings, order):
    """The scenarios a plan acts on, in ``order``: the forced ``settings['scenario']``, else those that hold."""
    forced = settings.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    return [sid for sid in order if (sid == forced if forced else sid in holding)]


def slug(text):
    """An identifier-safe form of a name (for action ids)."""
    return "".join(ch if ch.isalnum() else "_" for ch in (text or "none")).strip("_") or "none"


def gated(actions, settings):
    """``results.gate`` with the run's dry_run / approve / allow_disruptive from the settings."""
    return gate(
        actions,
        dry_run=settings.get("dry_run", False),
        approve=settings.get("approve", False),
        allow_disruptive=settings.get("allow_disruptive", False),
    )


def rule_loaded(check, name, prom, prom_error):
    """A prevention finding: the alert rule ``name`` is loaded in Prometheus (``prometheus`` evidence, rules)."""
    title = "The %s alert rule is loaded in Prometheus" % name
    rules = (prom or {}).get("rules")
    if prom is None or rules is None or rules.get("error"):
        return unknown(check, title, "loaded", prom_error or (rules or {}).get("error"))
    loaded = name in (rules.get("names") or [])
    alert = (rules.get("alerts") or {}).get(name)
    return finding(
        check,
        title,
        "ok" if loaded else "problem",
        "loaded (%s)" % (alert or {}).get("state", "?") if loaded else "not loaded",
        "loaded",
        {"rules_loaded": len(rules.get("names") or [])},
    )


def age_seconds(timestamp, now=None):
    """Seconds since a Docker timestamp (``2026-11-28T18:19:17.721194452Z``), or None."""
    if not timestamp:
        return None
    try:
        then = calendar.timegm(time.strptime(str(timestamp)[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return max(0.0, (time.time() if now is None else float(now)) - then)
