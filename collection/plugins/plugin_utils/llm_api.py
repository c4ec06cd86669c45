# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "LLM API Failures": findings, scenarios, plan and prevention checks.

Input is the evidence of ``stack_evidence`` (kinds ``prometheus``, ``http`` and ``containers`` with the
orchestrator's log tail and ``docker exec`` probes: its LLM settings, and the status the provider gives the key of
each service that depends on the provider) and the role's settings. The key itself is never part of the evidence:
the key probe returns a status code. Settings and metrics are named as the deployment names them
(``context.setting_name`` / ``context.metric`` by meaning, docs/deployment.md); a setting that is not set is "not
set", never the client's own default.

- A  rate limiting (429): lower the client's concurrency and request rate (lab.env) under the provider's advertised
     limit (its rate-limit headers, as the orchestrator logs them) and recreate the orchestrator.
- B  provider unavailable (503, refused): enable the configured fallback provider and recreate.
- C  timeouts: raise the read timeout within bounds and recreate.
- D  authentication (401/403): rotate the key from the operator's source into the deployment's secret and
     recreate; revoking the old key stays with a human.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import not_offered
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import (
    evidence_kind,
    exec_probes,
    gated,
    number,
    rule_loaded,
    scenario_table,
)
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure, ProcedureError
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    unknown,
)

PROCEDURE = "llm_api"

Q_RATIO = "llm_api_error_ratio"
Q_CALLS = "llm_api_calls_per_s"
Q_BY_CODE = "llm_api_errors_by_code"
Q_BY_PROVIDER_STATUS = "llm_api_calls_by_provider_status"
Q_TOKENS = "llm_api_tokens_by_provider"
Q_CIRCUIT = "llm_api_circuit_state"
Q_AGE = "llm_api_client_age_s"

PROBE_PRIMARY = "llm_api_primary_models"
PROBE_FALLBACK = "llm_api_fallback_models"
EXEC_SETTINGS = "llm_api_settings"
EXEC_KEY = "llm_api_key_check"

# names of the log patterns (the role's llm_api_log_patterns, counted by the collector over the orchestrator's log)
LOG_PATTERN_NAMES = ("llm_api_429", "llm_api_503", "llm_api_timeout", "llm_api_auth")

SCENARIOS = {
    "A": "Rate limiting (429 errors)",
    "B": "Service unavailable (503 errors)",
    "C": "Timeout errors",
    "D": "Authentication errors",
}
CHECK_SCENARIO = {
    "llm.rate_limit": "A",
    "llm.provider_available": "B",
    "llm.timeouts": "C",
    "llm.api_key": "D",
}
CODE_SCENARIO = {
    "429": "A",
    "503": "B",
    "502": "B",
    "500": "B",
    "connection_error": "B",
    "timeout": "C",
    "401": "D",
    "403": "D",
}
# The client's settings the judgement reads and changes, by meaning (their names are the deployment's:
# context.setting_name of llm_api_service). The key is never read here: only inside the containers.
SETTING_MEANINGS = (
    "llm_base_url",
    "llm_max_concurrency",
    "llm_rate_per_minute",
    "llm_timeout",
    "llm_fallback_enabled",
    "llm_fallback_url",
    "llm_circuit_failures",
    "llm_circuit_reset_seconds",
    "llm_provider_name",
    "llm_fallback_provider_name",
)
# The LLM metrics, by meaning (context.metric of llm_api_service).
METRIC_MEANINGS = ("llm_calls", "llm_tokens", "llm_circuit_state")
# What the key probe prints when the container has no key under the deployment's name.
KEY_UNSET = "unset"
# The seed's provider, where the inventory gives the primary provider no URL (its key check: /v1/models there).
SEED_PROVIDER_URL = "https://api.openai.com"
# the limit the provider advertises when it enforces none (llm_provider.py NOMINAL_LIMIT): not a real quota
PROVIDER_NOMINAL_LIMIT = 10000
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHELL_UNSAFE = re.compile(r"""["'`$\\\s;|&<>()]""")


def _settings(settings):
    return dict(settings or {})


def _truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def setting_names(s):
    """``{meaning: name or None}`` of the client's settings in this deployment (``LlmApi.named``)."""
    return s.get("setting_names") or {}


def name_of(s, meaning):
    """The deployment's name of a setting, or None: it has no such setting."""
    return setting_names(s).get(meaning)


def label_of(s, meaning):
    """How evidence names a setting: the deployment's name, or the meaning where it has none."""
    return name_of(s, meaning) or meaning


def parse_env(text, names):
    """``NAME=value`` lines, only those of ``names`` (the settings the judgement reads; anything else, secrets
    above all, is dropped)."""
    wanted = {name for name in names if name}
    found = {}
    for line in (text or "").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name in wanted:
            found[name] = value.strip()
    return found


_KV = re.compile(r"(\w+)=(\S+)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def window_seconds(window):
    """A Prometheus duration ("30s", "1m", "2h") in seconds, or None."""
    match = re.match(r"^\s*(\d+)\s*([smh])\s*$", str(window or ""))
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else None


def accepted_answer(line):
    """Whether a "rate limit" line of the orchestrator reports an answer the provider accepted (remaining > 0)."""
    if " rate limit " not in (" " + line + " "):
        return False
    remaining = dict(_KV.findall(line)).get("remaining", "")
    return remaining.isdigit() and int(remaining) > 0


def split_429_lines(lines, refused_pattern):
    """(429 lines before the client's first accepted answer, 429 lines after it) in a container's log.

    A client started with a lower rate still meets the provider's window full of its predecessor's requests: its
    first calls are refused until that window frees a slot. 429s after an accepted answer mean the rate is still
    too high.
    """
    refused = re.compile(refused_pattern)
    before = after = 0
    accepted = False
    for line in lines or []:
        if refused.search(line):
            if accepted:
                after += 1
            else:
                before += 1
        elif not accepted and accepted_answer(line):
            accepted = True
    return (before, after) if accepted else (0, before)


def last_rate_limit(lines):
    """The newest "rate limit remaining=.. reset=.. limit=.." line of the orchestrator, parsed."""
    for line in reversed(lines or []):
        if " rate limit " in (" " + line + " ") and "remaining=" in line:
            fields = dict(_KV.findall(line))
            return {key: fields.get(key) for key in ("remaining", "limit", "reset", "provider")}
    return None


class Facts:
    def __init__(self, evidence, settings):
        self.s = settings
        self.prom, self.prom_error = evidence_kind(evidence, "prometheus")
        self.http, self.http_error = evidence_kind(evidence, "http")
        self.containers, self.containers_error = evidence_kind(evidence, "containers")
        queries = (self.prom or {}).get("queries") or {}
        self.queries = queries
        self.ratio = number((queries.get(Q_RATIO) or {}).get("value"))
        self.calls_per_s = number((queries.get(Q_CALLS) or {}).get("value"))
        self.by_code = {}
        for series in (queries.get(Q_BY_CODE) or {}).get("series") or []:
            code = (series.get("labels") or {}).get("code", "?")
            self.by_code[code] = round((number(series.get("value")) or 0.0), 4)
        # calls/s by (provider, status): the request rate per provider, and what the fallback recovered of the
        # primary's errors
        self.by_provider_status = {}
        for series in (queries.get(Q_BY_PROVIDER_STATUS) or {}).get("series") or []:
            labels = series.get("labels") or {}
            key = (labels.get("provider", "?"), labels.get("status", "?"))
            self.by_provider_status[key] = number(series.get("value")) or 0.0
        per_s = {}
        for (provider, _status), value in self.by_provider_status.items():
            per_s[provider] = per_s.get(provider, 0.0) + value
        self.per_provider = {provider: round(value * 60, 2) for provider, value in per_s.items()}
        self.tokens = {
            (series.get("labels") or {}).get("provider", "?"): number(series.get("value"))
            for series in (queries.get(Q_TOKENS) or {}).get("series") or []
        }
        self.circuit = {
            (series.get("labels") or {}).get("provider", "?"): number(series.get("value"))
            for series in (queries.get(Q_CIRCUIT) or {}).get("series") or []
        }
        self.rules = (self.prom or {}).get("rules") or {}
        # how long the client's process has run: younger than the window, the window still counts its predecessor
        self.client_age = number((queries.get(Q_AGE) or {}).get("value"))
        span = window_seconds(settings["prometheus_window"])
        self.fresh = self.client_age is not None and span is not None and self.client_age < span
        probes = (self.http or {}).get("probes") or {}
        self.primary = probes.get(PROBE_PRIMARY)
        self.fallback = probes.get(PROBE_FALLBACK)
        service = settings["service"]
        logs = ((self.containers or {}).get("logs") or {}).get(service) or {}
        self.logs = logs
        self.log_counts = logs.get("pattern_counts") or {}
        self.log_lines = logs.get("lines") or []
        execs = exec_probes(self.containers)
        self.exec_settings = execs.get(EXEC_SETTINGS)
        self.exec_key = execs.get(EXEC_KEY)
        self.live = None
        if self.exec_settings and self.exec_settings.get("exit_code") in (0, 1):
            # only what the container sets: a setting it does not set is "not set", never the client's default
            self.live = parse_env(self.exec_settings.get("output"), setting_names(settings).values())
        # the status the provider gives the key of each service that depends on it (KEY_UNSET: no key set)
        self.key_probes = {}
        self.key_statuses = {}
        for name, probe in execs.items():
            if name != EXEC_KEY and not name.startswith(EXEC_KEY + ":"):
                continue
            client = service if name == EXEC_KEY else name[len(EXEC_KEY) + 1 :]
            self.key_probes[client] = probe
            self.key_statuses[client] = key_status(probe)
        self.key_status = self.key_statuses.get(service)

    def served_error_ratio(self):
        """Errors no provider recovered, per request, while the fallback is enabled and took calls; else None.

        With the fallback on, a request either succeeds at the primary or goes on to the fallback, so requests =
        primary successes + fallback calls, and only the fallback's errors reach the caller. A primary that is down
        (or probed half-open by the circuit breaker) adds errors to llm_api_calls_total that nobody saw.
        """
        if not self.live or not _truthy(self.setting("llm_fallback_enabled")):
            return None
        # the provider label of the metrics: the client's setting, else the role's
        primary = self.setting("llm_provider_name") or self.s["provider_label"]
        fallback = self.setting("llm_fallback_provider_name") or self.s["fallback_provider_label"]
        fallback_ok = self.by_provider_status.get((fallback, "success"), 0.0)
        fallback_errors = self.by_provider_status.get((fallback, "error"), 0.0)
        requests = self.by_provider_status.get((primary, "success"), 0.0) + fallback_ok + fallback_errors
        if fallback_ok + fallback_errors <= 0 or requests <= 0:
            return None
        return round(fallback_errors / requests, 4)

    def code_rate(self, *codes):
        return round(sum(self.by_code.get(code, 0.0) for code in codes), 4)

    def log_count(self, name):
        return int(self.log_counts.get(name, 0) or 0)

    def setting(self, meaning):
        """The value the client's container sets for a setting (by meaning), or None: not set, or no such
        setting."""
        name = name_of(self.s, meaning)
        return (self.live or {}).get(name) if name else None


def key_status(probe):
    """The HTTP status the provider gave a key probe (``"401"``), ``KEY_UNSET``, or None (no answer)."""
    if not probe or not probe.get("ok"):
        return None
    output = str(probe.get("output") or "").strip()
    if output.endswith(KEY_UNSET):
        return KEY_UNSET
    return output[-3:] if output[-3:].isdigit() else None


def _signal(f, codes, log_name, scenario, recovering):
    """(holds, evidence): errors of these codes in the Prometheus window or in the orchestrator's log."""
    s = f.s
    rate = f.code_rate(*codes)
    lines = f.log_count(log_name)
    evidence = {"errors_per_s": rate, "log_lines": lines, "window": s["prometheus_window"]}
    in_prom = rate >= s["code_min_per_s"]
    in_logs = lines >= s["log_min_lines"]
    if scenario in recovering or f.fresh:
        # the window still counts the errors from before the fix (or the client's restart); the new container's
        # log is what counts now
        evidence["note"] = (
            "recovering: scenario %s was fixed; judged on the new container's log" % scenario
            if scenario in recovering
            else "the client started %ss ago, within the window: judged on its log" % int(f.client_age)
        )
        return in_logs, evidence, in_prom
    return in_prom or in_logs, evidence, False


def _signal_finding(check, title, expected, evidence, holds, stale, scenario, unit):
    """The finding of a ``_signal``: a problem when it holds, a warning while recovering, else ok ("no <unit>")."""
    if holds:
        observed = "%s %s/s, %s log lines" % (evidence["errors_per_s"], unit, evidence["log_lines"])
        return finding(check, title, "problem", observed, expected, evidence, scenario)
    if stale:
        return finding(check, title, "warning", "recovering", expected, evidence, scenario)
    return finding(check, title, "ok", "no %s" % unit, expected, evidence)


def check_error_rate(f):
    s = f.s
    title = "LLM API error rate is at most %.0f%%" % (100 * s["error_ratio_max"])
    expected = "<= %s" % s["error_ratio_max"]
    if f.prom is None:
        return unknown("llm.error_rate", title, expected, f.prom_error)
    evidence = {"calls_per_s": f.calls_per_s, "errors_by_code_per_s": f.by_code, "window": s["prometheus_window"]}
    if f.calls_per_s is None or f.calls_per_s < s["min_calls_per_s"]:
        evidence["note"] = "too few LLM calls to judge an error rate"
        return finding("llm.error_rate", title, "ok", "no traffic", expected, evidence)
    ratio = round(f.ratio or 0.0, 4)
    if ratio <= s["error_ratio_max"]:
        return finding("llm.error_rate", title, "ok", ratio, expected, evidence)
    served = f.served_error_ratio()
    if served is not None and served <= s["error_ratio_max"]:
        # the primary's failures were all answered by the fallback: llm.provider_available reports the outage
        evidence.update(
            all_calls_error_ratio=ratio,
            served_error_ratio=served,
            note="the fallback provider recovered the primary's errors; the callers saw %s" % served,
        )
        return finding("llm.error_rate", title, "ok", served, expected, evidence)
    worst = max(f.by_code.items(), key=lambda item: item[1])[0] if f.by_code else None
    return finding("llm.error_rate", title, "problem", ratio, expected, evidence, CODE_SCENARIO.get(worst))


def check_rate_limit(f, recovering):
    title = "The provider does not rate-limit the client (no 429)"
    expected = "no 429 answers"
    if f.prom is None and f.containers is None:
        return unknown("llm.rate_limit", title, expected, f.prom_error, "A")
    holds, evidence, stale = _signal(f, ("429",), "llm_api_429", "A", recovering)
    if "A" in recovering or f.fresh:
        # judged on the new client's log: its first refusals are its predecessor's requests in the provider's window
        carried, refused = split_429_lines(f.log_lines, f.s["refused_pattern"])
        if carried:
            evidence.update(log_lines=refused, log_lines_before_first_accepted_answer=carried)
            holds = refused >= f.s["log_min_lines"]
    evidence.update(
        headers=last_rate_limit(f.log_lines),
        calls_per_min_by_provider=f.per_provider,
        client={
            label_of(f.s, "llm_max_concurrency"): f.setting("llm_max_concurrency"),
            label_of(f.s, "llm_rate_per_minute"): f.setting("llm_rate_per_minute"),
        },
    )
    return _signal_finding("llm.rate_limit", title, expected, evidence, holds, stale, "A", "429")


def check_provider(f, recovering):
    title = "The LLM provider answers (or the fallback serves)"
    expected = "primary /v1/models answers, no 503"
    primary = f.primary or {}
    if f.http is None:
        return unknown("llm.provider_available", title, expected, f.http_error, "B")
    status = primary.get("status")
    error_kind = (primary.get("error") or {}).get("kind")
    evidence = {
        "primary": {"status": status, "elapsed_ms": primary.get("elapsed_ms"), "error": error_kind},
        "fallback": {
            "status": (f.fallback or {}).get("status"),
            "enabled": f.setting("llm_fallback_enabled"),
            "url": f.setting("llm_fallback_url"),
        },
        "errors_per_s": f.code_rate("503", "502", "500", "connection_error"),
        "log_lines": f.log_count("llm_api_503"),
        "circuit_state": f.circuit,
    }
    down = status in (500, 502, 503, 504) or error_kind in ("unreachable", "timeout")
    if not down:
        holds, _ignored, _stale = _signal(f, ("503", "502", "500", "connection_error"), "llm_api_503", "B", ())
        down = holds and "B" not in recovering
    if not down:
        return finding("llm.provider_available", title, "ok", status, expected, evidence)
    observed = "primary %s" % (status or error_kind)
    fallback_ok = (f.fallback or {}).get("ok") and _truthy(f.setting("llm_fallback_enabled"))
    if fallback_ok:
        evidence["note"] = "the primary is down; the enabled fallback provider serves"
        return finding(
            "llm.provider_available", title, "warning", observed + ", fallback serving", expected, evidence, "B"
        )
    return finding("llm.provider_available", title, "problem", observed, expected, evidence, "B")


def check_timeouts(f, recovering):
    title = "LLM calls finish within the read timeout"
    expected = "no timeouts"
    if f.prom is None and f.containers is None:
        return unknown("llm.timeouts", title, expected, f.prom_error, "C")
    holds, evidence, stale = _signal(f, ("timeout",), "llm_api_timeout", "C", recovering)
    evidence["read_timeout"] = f.setting("llm_timeout")
    return _signal_finding("llm.timeouts", title, expected, evidence, holds, stale, "C", "timeouts")


def check_api_key(f, recovering):
    """The key of every service that depends on the provider (``key_checks``), as the provider answers it; a
    deployment whose services name no such dependency holds no key to check (not offered)."""
    title = "The deployment's API key is valid at the provider (/v1/models)"
    expected = "200 (key accepted)"
    checks = f.s.get("key_checks")
    if checks is not None and not checks:
        return not_offered(
            "llm.api_key",
            title,
            expected,
            "a service that depends on %s (depends_on) and names its API key setting" % f.s["primary_service"],
            scenario="D",
        )
    statuses = f.key_statuses
    answered = {client: status for client, status in statuses.items() if status and status != KEY_UNSET}
    unset = sorted(client for client, status in statuses.items() if status == KEY_UNSET)
    if not answered and not unset:
        probe = f.key_probes.get(f.s["service"]) or next(iter(f.key_probes.values()), None)
        error = (probe or {}).get("error") or f.containers_error or {"kind": "other", "message": "no probe"}
        return unknown("llm.api_key", title, expected, error, "D")
    holds, evidence, stale = _signal(f, ("401", "403"), "llm_api_auth", "D", recovering)
    status = f.key_status if f.key_status != KEY_UNSET else None
    evidence.update(deployment_key_status=status, inventory_key_status=(f.primary or {}).get("status"))
    if len(statuses) > 1 or f.s["service"] not in statuses:
        evidence["key_status_by_service"] = dict(sorted(statuses.items()))
    if unset:
        evidence["key_not_set"] = {
            client: next((c["key"] for c in checks or [] if c["service"] == client), None) for client in unset
        }
    if not answered:
        return unknown(
            "llm.api_key",
            title,
            expected,
            {
                "kind": "other",
                "message": "no API key is set in %s under %s (octollm_services.<service>.settings.llm_api_key)"
                % (", ".join(unset), ", ".join(sorted({str(v) for v in evidence["key_not_set"].values()}))),
            },
            "D",
            evidence,
        )
    refused = {client: code for client, code in answered.items() if code in ("401", "403")}
    if refused:
        if list(refused) == [f.s["service"]] and len(answered) == 1:
            observed = "provider answers %s to the deployment's key" % refused[f.s["service"]]
        else:
            observed = "provider answers %s" % ", ".join(
                "%s to the key of %s" % (code, client) for client, code in sorted(refused.items())
            )
        return finding("llm.api_key", title, "problem", observed, expected, evidence, "D")
    if status == "200" and stale:
        return finding("llm.api_key", title, "ok", "200", expected, evidence)
    if holds and status != "200":
        return finding("llm.api_key", title, "problem", "auth errors in the log", expected, evidence, "D")
    if status != "200":
        evidence["note"] = "the provider did not answer the key check with 200; see llm.provider_available"
    return finding("llm.api_key", title, "ok", status or ", ".join(sorted(set(answered.values()))), expected, evidence)


def check_request_rate(f):
    title = "Current LLM request rate (per provider) and the client's limit"
    expected = "below %s" % label_of(f.s, "llm_rate_per_minute")
    if f.prom is None:
        return unknown("llm.request_rate", title, expected, f.prom_error)
    limit = number(f.setting("llm_rate_per_minute"))
    total = round(sum(f.per_provider.values()), 2)
    evidence = {"calls_per_min_by_provider": f.per_provider, "client_rate_per_minute": limit}
    return finding("llm.request_rate", title, "ok", "%s calls/min" % total, expected, evidence)


def diagnose(evidence, settings=None, previous=None, recovering=()):
    """``{findings, scenarios, escalation, context}``; ``context`` feeds the plan and is never reported."""
    s = _settings(settings)
    f = Facts(evidence, s)
    recovering = tuple(recovering or ())
    checks = [
        check_rate_limit(f, recovering),
        check_provider(f, recovering),
        check_timeouts(f, recovering),
        check_api_key(f, recovering),
        check_request_rate(f),
    ]
    rate = check_error_rate(f)
    if rate["status"] != "ok":
        explained = [c for c in checks if c["status"] in ("problem", "warning") and c["scenario"]]
        if explained:
            rate["scenario"] = explained[0]["scenario"]
        if (recovering or f.fresh) and not any(c["status"] == "problem" for c in checks):
            rate["status"] = "warning"
            rate["evidence"]["note"] = (
                "recovering: scenario(s) %s fixed; the window still counts the errors from before the fix"
                % ", ".join(recovering)
                if recovering
                else "the client restarted within the window; its log shows no error of any scenario"
            )
    findings = [rate] + checks
    scenarios = scenario_table(SCENARIOS, checks, CHECK_SCENARIO)
    context = {
        "live": f.live,
        "fallback_ok": bool((f.fallback or {}).get("ok")),
        "key_status": f.key_status,
        "rate_limit": last_rate_limit(f.log_lines),
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _env_action(s, action_id, scenario, title, changes, why):
    files = s["env_file"] or "lab.env"
    return action(
        action_id,
        scenario,
        title,
        "%s:%s" % (files, ",".join(sorted(changes))),
        {"file": files, "settings": changes, "container": s["service"], "op": "recreate"},
        "planned",
        "%s; set %s in %s and recreate %s"
        % (
            why,
            ", ".join(
                "%s %s -> %s" % (k, "(not set)" if v["old"] is None else v["old"], v["new"])
                for k, v in sorted(changes.items())
            ),
            files,
            s["service"],
        ),
        disruptive=True,
        apply="set_env",
    )


def _lower_rate(s, ctx, value):
    """Scenario A: the client's concurrency and request rate lowered (both, when the client sets both), under the
    limit the provider advertises; a report when the client has no such setting or sets none."""
    names = (name_of(s, "llm_max_concurrency"), name_of(s, "llm_rate_per_minute"))
    current = (number(value("llm_max_concurrency")), number(value("llm_rate_per_minute")))
    limit = (ctx.get("rate_limit") or {}).get("limit")
    if not any(name and now is not None for name, now in zip(names, current)):
        missing = [
            "%s (%s)" % (label_of(s, meaning), "not set" if name else "no such setting")
            for meaning, name in zip(("llm_max_concurrency", "llm_rate_per_minute"), names)
        ]
        return action(
            "llm_api.A.report_client_limits",
            "A",
            "report: the client's limits are not set",
            "provider:quota",
            {"settings": missing},
            "report",
            "L1: the provider answers 429 (its limit: %s requests/min) and the client's concurrency and rate are "
            "not set where octoctl can lower them (%s): limit the client's concurrency and rate below the "
            "provider's limit, or raise the quota with the provider" % (limit or "unknown", ", ".join(missing)),
        )
    concurrency, rate = current
    changes = {}
    if names[0] and concurrency is not None:
        new_c = max(int(s["min_concurrency"]), int(concurrency * s["reduce_factor"]))
        changes[names[0]] = {"old": str(int(concurrency)), "new": str(new_c)}
    if names[1] and rate is not None:
        new_r = int(rate * s["reduce_factor"])
        provider_limit = number(limit)
        if provider_limit and provider_limit < PROVIDER_NOMINAL_LIMIT:
            # the provider's own limit (x-ratelimit-limit-requests, per minute): stay well under it
            new_r = min(new_r, int(provider_limit * s["rate_headroom"]))
        new_r = max(int(s["min_rate_per_minute"]), min(new_r, int(rate)))
        changes[names[1]] = {"old": str(int(rate)), "new": str(new_r)}
    if all(change["old"] == change["new"] for change in changes.values()):
        return action(
            "llm_api.A.report_quota",
            "A",
            "report the provider's rate limit",
            "provider:quota",
            {},
            "report",
            "L1: the client is at its lowest limits and still rate-limited: raise the quota with the provider",
        )
    return _env_action(
        s,
        "llm_api.A.lower_rate",
        "A",
        "lower LLM concurrency and request rate",
        changes,
        "the provider answers 429 (its limit: %s requests/min)" % (limit or "unknown"),
    )


def _raise_timeout(s, value):
    """Scenario C: the read timeout raised within bounds (from the target when the client does not set it); a
    report at the bound or when the client has no timeout setting."""
    name = name_of(s, "llm_timeout")
    if not name:
        return action(
            "llm_api.C.report_timeouts",
            "C",
            "report timeouts: the client has no timeout setting",
            "provider:latency",
            {"read_timeout": None},
            "report",
            "L1: LLM calls time out and the client has no read-timeout setting octoctl knows "
            "(octollm_services.%s.settings.llm_timeout): stream responses or raise the client's timeout" % s["service"],
        )
    current = number(value("llm_timeout"))
    new = min(float(s["read_timeout_max"]), max((current or 0) * 2, float(s["read_timeout_target"])))
    if current is not None and new <= current:
        return action(
            "llm_api.C.report_timeouts",
            "C",
            "report timeouts at the bound",
            "provider:latency",
            {"read_timeout": current},
            "report",
            "L1: the read timeout is at its bound (%ss): stream responses or ask the provider" % s["read_timeout_max"],
        )
    return _env_action(
        s,
        "llm_api.C.raise_read_timeout",
        "C",
        "raise the LLM read timeout",
        {name: {"old": "%g" % current if current is not None else None, "new": "%g" % new}},
        "LLM calls time out",
    )


def plan(diagnosis, settings=None):
    """The actions for the scenarios that hold (or the forced ``scenario``), gated by approval."""
    s = _settings(settings)
    ctx = diagnosis.get("context") or {}
    live = ctx.get("live") or {}
    forced = s.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    selected = [sid for sid in ("D", "B", "A", "C") if (sid == forced if forced else sid in holding)]
    actions = []

    def value(meaning):
        name = name_of(s, meaning)
        return live.get(name) if name else None

    if selected and ctx.get("live") is None:
        actions.append(
            action(
                "llm_api.settings_unknown",
                selected[0],
                "read the orchestrator's LLM settings",
                "%s:env" % s["service"],
                {},
                "report",
                "L1: the orchestrator's settings could not be read (is it running?); fix by hand",
            )
        )
        selected = []
    for sid in selected:
        if sid == "A":
            actions.append(_lower_rate(s, ctx, value))
        elif sid == "B":
            url = value("llm_fallback_url") or ""
            enabled = name_of(s, "llm_fallback_enabled")
            if _truthy(value("llm_fallback_enabled")):
                actions.append(
                    action(
                        "llm_api.B.report_outage",
                        "B",
                        "report the provider outage",
                        "provider:primary",
                        {},
                        "report",
                        "L1: the fallback is already enabled; follow the provider's status page",
                    )
                )
            elif not url or not ctx.get("fallback_ok") or not enabled:
                actions.append(
                    action(
                        "llm_api.B.report_no_fallback",
                        "B",
                        "report: no usable fallback provider",
                        "provider:fallback",
                        {"fallback_url": url or None},
                        "report",
                        "L1: the primary is down and no configured fallback answers%s; configure "
                        "%s or wait for the provider"
                        % (
                            "" if enabled else " (the client has no fallback switch)",
                            label_of(s, "llm_fallback_url"),
                        ),
                    )
                )
            else:
                actions.append(
                    _env_action(
                        s,
                        "llm_api.B.enable_fallback",
                        "B",
                        "switch to the fallback provider",
                        {enabled: {"old": value("llm_fallback_enabled") or "false", "new": "true"}},
                        "the primary provider is unavailable; the fallback %s answers" % url,
                    )
                )
        elif sid == "C":
            actions.append(_raise_timeout(s, value))
        elif sid == "D":
            source = s.get("new_key_source")
            if not s.get("key_name"):
                actions.append(
                    action(
                        "llm_api.D.report_need_key",
                        "D",
                        "report: a new API key is needed",
                        "secret:%s" % s["service"],
                        {},
                        "report",
                        "L1: the provider refuses the key and %s names no API key setting octoctl can write "
                        "(octollm_services.%s.settings.llm_api_key): rotate the key by hand"
                        % (s["service"], s["service"]),
                    )
                )
                continue
            if not source:
                actions.append(
                    action(
                        "llm_api.D.report_need_key",
                        "D",
                        "report: a new API key is needed",
                        "secret:%s" % s["key_name"],
                        {},
                        "report",
                        "L1: the provider refuses the key; put a new key in a file or environment "
                        "variable and name it with llm_api_new_key_file / llm_api_new_key_env",
                    )
                )
                continue
            files = s["secrets_file"] or "secrets.env"
            actions.append(
                action(
                    "llm_api.D.rotate_key",
                    "D",
                    "rotate the LLM API key",
                    "%s:%s" % (files, s["key_name"]),
                    {
                        "file": files,
                        "key": s["key_name"],
                        "old": "(current key, refused; not shown)",
                        "new": "(new key from %s; not shown)" % source,
                        "also": s["key_file"] or None,
                        "container": s["service"],
                        "op": "recreate",
                    },
                    "planned",
                    "check the new key at the provider, write it to %s%s and recreate %s"
                    % (files, " and %s" % s["key_file"] if s["key_file"] else "", s["service"]),
                    disruptive=True,
                    apply="rotate_key",
                )
            )
            actions.append(
                action(
                    "llm_api.D.revoke_old_key",
                    "D",
                    "revoke the old API key",
                    "provider:old-key",
                    {},
                    "report",
                    "L1: revoke the old key in the provider's console and check where else it was used",
                )
            )
    return gated(actions, s)


def prevention(evidence, settings=None):
    """Prevention checks from the live system: the orchestrator's settings, metrics, rules, the fallback."""
    s = _settings(settings)
    f = Facts(evidence, s)
    findings = []
    live = f.live
    settings_error = (f.exec_settings or {}).get("error") or f.containers_error
    if live is None:
        findings.append(unknown("prevent.llm.rate_limits", "Client rate limits are set", "> 0", settings_error))
    else:
        meanings = ("llm_max_concurrency", "llm_rate_per_minute")
        limits = {label_of(s, meaning): f.setting(meaning) for meaning in meanings}
        good = all((number(value) or 0) > 0 for value in limits.values())
        findings.append(
            finding(
                "prevent.llm.rate_limits",
                "Client rate limits are set",
                "ok" if good else "warning",
                limits,
                " and ".join("%s > 0" % label_of(s, meaning) for meaning in meanings),
                {"live": limits},
            )
        )
        fallback = {
            label_of(s, "llm_fallback_url"): f.setting("llm_fallback_url"),
            label_of(s, "llm_fallback_enabled"): f.setting("llm_fallback_enabled"),
            "fallback_status": (f.fallback or {}).get("status"),
        }
        good = bool(f.setting("llm_fallback_url")) and bool((f.fallback or {}).get("ok"))
        findings.append(
            finding(
                "prevent.llm.fallback",
                "A fallback provider is configured and answers",
                "ok" if good else "warning",
                fallback,
                "%s set, its /v1/models 200" % label_of(s, "llm_fallback_url"),
                {"note": "scenario B switches to it (%s)" % label_of(s, "llm_fallback_enabled")},
            )
        )
    breaker = {
        label_of(s, "llm_circuit_failures"): f.setting("llm_circuit_failures"),
        label_of(s, "llm_circuit_reset_seconds"): f.setting("llm_circuit_reset_seconds"),
        "llm_circuit_state": f.circuit,
    }
    if f.prom is None:
        findings.append(
            unknown("prevent.llm.circuit_breaker", "Circuit breaker active", "llm_circuit_state", f.prom_error)
        )
        findings.append(
            unknown("prevent.llm.cost_tracking", "Cost tracking exported", "llm_tokens_total", f.prom_error)
        )
    else:
        findings.append(
            finding(
                "prevent.llm.circuit_breaker",
                "Circuit breaker active (llm_circuit_state exported)",
                "ok" if f.circuit else "warning",
                breaker,
                "llm_circuit_state per provider",
                {"live": breaker},
            )
        )
        cost = {"tokens_by_provider": f.tokens, "calls_per_min_by_provider": f.per_provider}
        findings.append(
            finding(
                "prevent.llm.cost_tracking",
                "Cost tracking exported (llm_tokens_total and calls per provider)",
                "ok" if f.tokens and f.per_provider else "warning",
                sorted(f.tokens),
                "llm_tokens_total and llm_api_calls_total by provider",
                cost,
            )
        )
    findings.append(rule_loaded("prevent.prometheus.llm_error_rule", s["error_rule"], f.prom, f.prom_error))
    return {"findings": findings, "actions": []}


# --- the procedure ------------------------------------------------------------------------------------
# The Deployment the Kubernetes side reads (its envFrom) and restarts.
WORKLOAD_KIND = "Deployment"
def settings_cmd(s):
    """In the client's container: its LLM settings, the named non-secret variables only."""
    names = sorted({name for name in setting_names(s).values() if name})
    if not names:
        return "true"
    return "env | grep -E -e '^(%s)=' | sort" % "|".join(names)


def key_cmd(check):
    """In a client's container: the status the provider gives the key the container holds (expanded by the
    container's shell, never leaving it), or ``unset`` when it holds none under that name."""
    url = check["url"].rstrip("/")
    base = "${%s:-%s}" % (check["url_setting"], url) if check.get("url_setting") else url
    return (
        '[ -n "${%(key)s:-}" ] || { echo %(unset)s; exit 0; }; '
        "curl -s -o /dev/null -m 5 -w '%%{http_code}' -H \"Authorization: Bearer $%(key)s\" \"%(base)s/v1/models\""
        % {"key": check["key"], "unset": KEY_UNSET, "base": base}
    )


def key_probe_name(s, service):
    return EXEC_KEY if service == s["service"] else "%s:%s" % (EXEC_KEY, service)


def queries(s):
    """The named PromQL queries of the judgement, built from the settings and the deployment's metric names."""
    window = s["prometheus_window"]
    names = s["metric_names"]
    calls = "%s[%s]" % (names["llm_calls"], window)
    errors = '%s{status="error"}[%s]' % (names["llm_calls"], window)
    return {
        Q_RATIO: "sum(rate(%s)) / sum(rate(%s))" % (errors, calls),
        Q_CALLS: "sum(rate(%s))" % calls,
        Q_BY_CODE: "sum by (code) (rate(%s))" % errors,
        Q_BY_PROVIDER_STATUS: "sum by (provider, status) (rate(%s))" % calls,
        Q_TOKENS: "sum by (provider) (%s)" % names["llm_tokens"],
        Q_CIRCUIT: "max by (provider) (%s)" % names["llm_circuit_state"],
        Q_AGE: 'min(time() - process_start_time_seconds{service="%s"})' % s["service"],
    }


def new_key_source(s):
    """Where the new key for scenario D comes from, as a description (never the key): the operator's file when it
    exists on the controller, else the controller's environment variable when it is set and not empty."""
    if s["new_key_file"] and os.path.isfile(s["new_key_file"]):
        return "file %s" % s["new_key_file"]
    if s["new_key_env"] and os.environ.get(s["new_key_env"], ""):
        return "environment variable %s" % s["new_key_env"]
    return None


def _safe(value, what):
    if not _ENV_NAME.match(str(value)):
        raise ProcedureError("%s is %r: not a variable name" % (what, value))
    return value


def named(settings, context):
    """The settings with the deployment's names (once): ``setting_names`` and ``metric_names`` of the client
    (``llm_api_service``), ``key_name`` (its API key's variable) and ``key_checks``: one per service that depends on
    the primary provider (``depends_on``; the client alone where the inventory names no dependencies), with its
    key's and base URL's variable names and the URL the check falls back on (the provider's in the inventory)."""
    if "setting_names" in settings:
        return settings
    s = dict(settings)
    service = s["service"]
    s["setting_names"] = {
        meaning: (_safe(name, "the %s of %s" % (meaning, service)) if name else None)
        for meaning, name in ((m, context.setting_name(service, m)) for m in SETTING_MEANINGS)
    }
    s["metric_names"] = {meaning: context.metric(meaning, service) for meaning in METRIC_MEANINGS}
    key = context.setting_name(service, "llm_api_key")
    s["key_name"] = _safe(key, "the API key of %s" % service) if key else None
    url = (context.service_url(s["primary_service"]) or SEED_PROVIDER_URL).rstrip("/")
    if _SHELL_UNSAFE.search(url):
        raise ProcedureError("the URL of %s is not a plain URL: %r" % (s["primary_service"], url))
    clients = context.dependents(s["primary_service"]) if context.dependencies_described() else [service]
    checks = []
    for client in sorted(clients, key=lambda name: (name != service, name)):
        key = context.setting_name(client, "llm_api_key")
        if not key:
            continue  # the service names no key setting: there is no key of its to check
        base = context.setting_name(client, "llm_base_url")
        checks.append(
            {
                "service": client,
                "key": _safe(key, "the API key of %s" % client),
                "url_setting": _safe(base, "the base URL of %s" % client) if base else None,
                "url": url,
            }
        )
    s["key_checks"] = checks
    return s


class LlmApi(Procedure):
    name = PROCEDURE
    title = "LLM API Failures"
    scenarios = SCENARIOS
    modules = {"compose": "llm_api", "kubernetes": "llm_api_kubernetes"}

    def settings(self, role_settings, context):
        s = super(LlmApi, self).settings(role_settings, context)
        missing = [name for name in LOG_PATTERN_NAMES if not (s["log_patterns"] or {}).get(name)]
        if missing:
            raise ProcedureError("llm_api_log_patterns has no pattern named %s" % ", ".join(missing))
        # the role's llm_api_429 log pattern: the 429 lines before and after the new client's first accepted answer
        s["refused_pattern"] = s["log_patterns"]["llm_api_429"]
        s["new_key_source"] = new_key_source(s)
        if context.kubernetes:
            s["namespace"] = context.inventory["k8s"]["namespace"]
        return named(s, context)

    def needs(self, settings, context):
        s = named(settings, context)
        logs = {"tail": s["log_tail"], "since_seconds": s["log_seconds"], "patterns": dict(s["log_patterns"])}
        need = {
            "prometheus": {"queries": queries(s), "rules": True},
            "http": {
                "probes": [
                    {"name": name, "service": service, "path": "/v1/models", "header_set": service}
                    for name, service in (
                        (PROBE_PRIMARY, s["primary_service"]),
                        (PROBE_FALLBACK, s["fallback_service"]),
                    )
                ]
            },
        }
        if context.kubernetes:
            # the settings, the log and the key come from the cluster (the providers' probes use the header sets the
            # inventory builds from the deployment's Secret)
            need["kubernetes"] = {
                "objects": {
                    "llm_api_configmap": {"kind": "ConfigMap", "name": s["k8s_configmap"]},
                    "llm_api_workload": {"kind": WORKLOAD_KIND, "api_version": "apps/v1", "name": s["k8s_workload"]},
                    "llm_api_pods": {"kind": "Pod", "label_selector": "app=%s" % s["k8s_app"], "logs": logs},
                    "llm_api_events": {"kind": "Event", "field_selector": "type=Warning"},
                }
            }
            return need
        need["containers"] = {
            "services": [s["service"]],
            "logs": dict(logs, services=[s["service"]]),
            "exec_probes": [{"name": EXEC_SETTINGS, "service": s["service"], "cmd": settings_cmd(s)}]
            + [
                {"name": key_probe_name(s, check["service"]), "service": check["service"], "cmd": key_cmd(check)}
                for check in s["key_checks"]
            ],
        }
        return need

    def diagnose(self, evidence, settings, context, previous=None, applied=()):
        return super(LlmApi, self).diagnose(evidence, named(settings, context), context, previous, applied)

    def plan(self, diagnosis, evidence, settings, context):
        return super(LlmApi, self).plan(diagnosis, evidence, named(settings, context), context)

    def prevention(self, evidence, settings, context):
        return super(LlmApi, self).prevention(evidence, named(settings, context), context)

    def finish(self, applied, settings, context):
        """The client reads its settings and key on start: recreate it (Compose) or roll out the consumers
        (Kubernetes) once after the changes, then let traffic reach it before the verification."""
        if context.kubernetes:
            return {"file": "restart", "title": "rollout restart of the consumers"}
        return {"file": "recreate", "title": "recreate %s" % settings["service"]}


PROCEDURE = LlmApi()
