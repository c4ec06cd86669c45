# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "Security Violations": findings, scenarios, plan and prevention checks.

Input is the evidence of ``stack_evidence``: guardian-arm's log tail (PII masked by the collector, which counts
what it masked), its live settings and rule files (``docker exec``), ``security_violations_total`` by type, the
rules, and the procedure's own "handled" mark (a small file listing up to which log time violations were
bundled and escalated). Scenarios follow octoctl's catalog:

- A  violations detected (blocked commands, PII, refused sources) since the last handled mark: bundle the
     redacted evidence into the run's state and escalate to L3 (always).
- B  blocked-command rules incomplete: an offending command or a baseline pattern is not in the blocked list;
     add it and reload the guardian: through its reload endpoint where the deployment offers one (the optional
     probe ``reload`` of the guardian), else by restarting it (``security_violations.reload_guardian``,
     disruptive: approval); a report where the list's file is not known to the controller.
- C  unauthorized attempts: a source keeps triggering violations and is not blocked; block it and reload (as B).
- D  PII in logs: a service's container log holds raw PII (every service's log is scanned, guardian-arm's and the
     orchestrator's as much as any other; only counts and redacted samples are kept); copy each such log to a
     quarantine dir (mode 600) and redact it in place, then restart those services so that Docker writes to the
     redacted file (disruptive).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.octollm.remediation.plugins.module_utils.redact import redact_pii
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import (
    evidence_kind,
    exec_probes,
    gated,
    rule_loaded,
    scenario_table,
)
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    unknown,
)

PROCEDURE = "security_violations"
Q_BY_TYPE = "security_violations_by_type"
EXEC_SETTINGS = "security_violations_settings"
EXEC_COMMANDS = "security_violations_blocked_commands"
EXEC_SOURCES = "security_violations_blocked_sources"
HANDLED_SOURCE = "security_violations_handled"
PII_KINDS = ("email", "card", "api_key")

SCENARIOS = {
    "A": "Security violations detected",
    "B": "Blocked-command rules incomplete",
    "C": "Unauthorized access attempts",
    "D": "PII detected in logs",
}
CHECK_SCENARIO = {
    "security.violations": "A",
    "security.blocked_commands": "B",
    "security.sources": "C",
    "security.pii_in_logs": "D",
}

# The optional endpoint that makes the guardian read its lists again (``context.probe(service, RELOAD_PROBE)``).
RELOAD_PROBE = "reload"

# The guardian's settings that prevention reads (the names its exec probe lists), and the playbook an AWX schedule
# runs for PII scanning.
AUDIT_SETTING = "GUARDIAN_AUDIT_LOG"
REDACT_SETTING = "GUARDIAN_REDACT_LOGS"
SCAN_PLAYBOOK = "octollm.remediation.security_violations"

_LINE = re.compile(r"^(?P<time>\S+)\s+(?P<level>[A-Z]+)\s+(?P<service>\S+)\s+(?P<message>.*)$")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
MESSAGES = ("security violation", "PII detected", "unauthorized attempt")


def _unquote(value):
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")
    return value


def parse_event(line):
    """A guardian log line as ``{time, message, fields}`` when it is a security event, else None."""
    match = _LINE.match(line or "")
    if not match:
        return None
    rest = match.group("message")
    message = next((m for m in MESSAGES if rest.startswith(m)), None)
    if message is None:
        return None
    fields = {key: _unquote(value) for key, value in _FIELD.findall(rest[len(message) :])}
    return {"time": match.group("time"), "message": message, "fields": fields}


def without_replica_prefix(line):
    """The log line without the ``<container> | `` prefix the collector adds when a service has replicas; a
    line's own `` | `` (a blocked ``curl ... | sh``) stays: a container name has no space."""
    head, sep, rest = (line or "").partition(" | ")
    return rest if sep and head and " " not in head else line


def redact_text(text):
    """``text`` with e-mail addresses, card numbers (Luhn) and API keys replaced by ``[REDACTED:<kind>]``."""
    return redact_pii(text, PII_KINDS)[0]


def _lines(output):
    return [line.strip() for line in (output or "").splitlines() if line.strip() and not line.strip().startswith("#")]


def _covered(command, patterns):
    lowered = command.lower()
    for pattern in patterns:
        if pattern.startswith("re:"):
            try:
                if re.search(pattern[3:], command, re.IGNORECASE):
                    return True
            except re.error:
                continue
        elif pattern.lower() in lowered:
            return True
    return False


class Facts:
    def __init__(self, evidence, settings):
        self.s = settings
        self.prom, self.prom_error = evidence_kind(evidence, "prometheus")
        self.containers, self.containers_error = evidence_kind(evidence, "containers")
        logs_kind, _ = evidence_kind(evidence, "logs")
        service = settings["service"]
        self.log = ((self.containers or {}).get("logs") or {}).get(service)
        self.log_error = (self.log or {}).get("error") or (None if self.log else self.containers_error)
        self.redactions = dict((self.log or {}).get("redactions") or {})
        # every service's log scanned for PII (None where no scan was made: the guardian's log alone answers)
        self.pii_scan = (self.containers or {}).get("pii_scan")
        execs = exec_probes(self.containers)
        self.exec = execs
        settings_probe = execs.get(EXEC_SETTINGS) or {}
        self.live = None
        if settings_probe.get("exit_code") in (0, 1):
            self.live = {}
            for line in _lines(settings_probe.get("output")):
                name, _sep, value = line.partition("=")
                if name.startswith("GUARDIAN_"):
                    self.live[name] = value
        self.blocked = (
            _lines((execs.get(EXEC_COMMANDS) or {}).get("output"))
            if (execs.get(EXEC_COMMANDS) or {}).get("ok")
            else None
        )
        self.blocked_sources = (
            _lines((execs.get(EXEC_SOURCES) or {}).get("output"))
            if (execs.get(EXEC_SOURCES) or {}).get("exit_code") in (0, 1)
            else None
        )
        handled_lines = (((logs_kind or {}).get("sources") or {}).get(HANDLED_SOURCE) or {}).get("lines") or []
        marks = [dict(_FIELD.findall(item.get("text") or "")).get("upto") for item in handled_lines]
        self.handled_upto = max([mark for mark in marks if mark] or [""])
        self.events = []
        for line in (self.log or {}).get("lines") or []:
            event = parse_event(without_replica_prefix(line))
            if event:
                self.events.append(event)
        self.new_events = [e for e in self.events if e["time"] > self.handled_upto]
        by_type = {}
        for series in ((self.prom or {}).get("queries") or {}).get(Q_BY_TYPE, {}).get("series") or []:
            by_type[(series.get("labels") or {}).get("type", "?")] = round(float(series.get("value") or 0), 1)
        self.metric_by_type = by_type
        self.rules = (self.prom or {}).get("rules") or {}

    def offending_commands(self):
        seen = []
        for event in self.events:
            if event["message"] == "security violation" and event["fields"].get("type") == "blocked_command":
                command = (event["fields"].get("command") or "").strip()
                if command and "[REDACTED:" not in command and command not in seen:
                    seen.append(command)
        return seen

    def attempts_by_source(self):
        counts = {}
        for event in self.events:
            source = event["fields"].get("source")
            if source:
                counts[source] = counts.get(source, 0) + 1
        return counts


def check_violations(f):
    """New events: those after the handled mark. In a verification the fresh evidence holds the mark the bundle of
    this run wrote (``handled.log``), so what is new then happened after the fix: violations go on, a problem."""
    title = "No new security violations in guardian-arm's log"
    expected = "0 since the last handled mark"
    if f.log is None:
        return unknown("security.violations", title, expected, f.log_error, "A")
    types = {}
    for event in f.new_events:
        key = event["fields"].get("type") or event["message"].replace(" ", "_")
        if event["message"] == "unauthorized attempt":
            key = "unauthorized_source"
        types[key] = types.get(key, 0) + 1
    evidence = {
        "new_events_by_type": types,
        "events_in_log": len(f.events),
        "handled_upto": f.handled_upto or None,
        "metric_increase_by_type": f.metric_by_type,
        "samples": [
            redact_text(
                "%s %s %s" % (e["time"], e["message"], " ".join("%s=%s" % kv for kv in sorted(e["fields"].items())))
            )
            for e in f.new_events[-5:]
        ],
    }
    if not f.new_events:
        return finding("security.violations", title, "ok", 0, expected, evidence)
    observed = "%d new events (%s)" % (len(f.new_events), ", ".join("%s %d" % kv for kv in sorted(types.items())))
    return finding("security.violations", title, "problem", observed, expected, evidence, "A")


def check_blocked_commands(f):
    s = f.s
    title = "The blocked-command list holds the baseline and every offending command"
    expected = "baseline patterns and offending commands listed"
    if f.blocked is None:
        error = (f.exec.get(EXEC_COMMANDS) or {}).get("error") or f.containers_error
        return unknown("security.blocked_commands", title, expected, error, "B")
    missing_baseline = [p for p in s["baseline_patterns"] if p not in f.blocked]
    offending = f.offending_commands()
    missing_commands = [c for c in offending if c not in f.blocked]
    evidence = {
        "patterns": len(f.blocked),
        "missing_baseline": missing_baseline,
        "offending_commands": offending[:10],
        "not_listed": missing_commands[:10],
    }
    if missing_baseline or missing_commands:
        return finding(
            "security.blocked_commands",
            title,
            "problem",
            "%d missing" % (len(missing_baseline) + len(missing_commands)),
            expected,
            evidence,
            "B",
        )
    return finding("security.blocked_commands", title, "ok", "%d patterns" % len(f.blocked), expected, evidence)


def check_sources(f):
    s = f.s
    title = "No untrusted source keeps trying without being blocked"
    expected = "< %d violations per unblocked source" % s["source_min_attempts"]
    if f.log is None or f.blocked_sources is None:
        return unknown("security.sources", title, expected, f.log_error or f.containers_error, "C")
    attempts = f.attempts_by_source()
    repeat = {src: n for src, n in attempts.items() if n >= s["source_min_attempts"]}
    to_block = sorted(src for src in repeat if src not in f.blocked_sources and src not in s["trusted_sources"])
    trusted = sorted(src for src in repeat if src in s["trusted_sources"])
    evidence = {
        "attempts_by_source": attempts,
        "blocked_sources": f.blocked_sources,
        "to_block": to_block,
        "trusted_repeat": trusted,
    }
    if to_block:
        return finding("security.sources", title, "problem", ", ".join(to_block), expected, evidence, "C")
    if trusted:
        evidence["note"] = "trusted sources are never blocked automatically; review what sends these requests"
        return finding("security.sources", title, "warning", ", ".join(trusted), expected, evidence, "C")
    return finding("security.sources", title, "ok", "none", expected, evidence)


def pii_by_service(f):
    """``({service: {matches_by_kind, samples}}, {service: error}, scanned)``: the PII in each service's log, from
    the scan of every service's log, else (no scan: Kubernetes) from the guardian's log alone."""
    if f.pii_scan is None:
        found = {kind: count for kind, count in f.redactions.items() if count}
        samples = [redact_text(e["fields"].get("value", "")) for e in f.events if e["message"] == "PII detected"][-3:]
        services = {f.s["service"]: {"matches_by_kind": found, "samples": samples}} if found else {}
        return services, {}, [f.s["service"]]
    services, unread = {}, {}
    for service, entry in sorted(f.pii_scan.items()):
        found = {kind: count for kind, count in (entry.get("redactions") or {}).items() if count}
        if found:
            services[service] = {"matches_by_kind": found, "samples": list(entry.get("samples") or [])[-3:]}
        if entry.get("error"):
            unread[service] = entry["error"]
    return services, unread, sorted(f.pii_scan)


def check_pii(f):
    title = "No service's log holds raw PII (e-mail, card numbers, API keys)"
    expected = "0 PII matches"
    if f.pii_scan is None and f.log is None:
        return unknown("security.pii_in_logs", title, expected, f.log_error, "D")
    services, unread, scanned = pii_by_service(f)
    total = {}
    for entry in services.values():
        for kind, count in entry["matches_by_kind"].items():
            total[kind] = total.get(kind, 0) + count
    evidence = {
        "matches_by_kind": total,
        "services": services,
        "scanned": scanned,
        "redacted_samples": [
            redact_text(e["fields"].get("value", "")) for e in f.events if e["message"] == "PII detected"
        ][-3:],
        "redact_setting": (f.live or {}).get(REDACT_SETTING),
    }
    if unread:
        evidence["unread"] = unread
    if services:
        observed = "%d matches in %s" % (
            sum(total.values()),
            ", ".join(
                "%s (%s)" % (name, ", ".join("%s %d" % kv for kv in sorted(entry["matches_by_kind"].items())))
                for name, entry in sorted(services.items())
            ),
        )
        return finding("security.pii_in_logs", title, "problem", observed, expected, evidence, "D")
    if unread and len(unread) == len(scanned):
        return unknown("security.pii_in_logs", title, expected, next(iter(unread.values())), "D", evidence)
    if unread:
        observed = "0 in the logs read; not read: %s" % ", ".join(sorted(unread))
        return finding("security.pii_in_logs", title, "warning", observed, expected, evidence, "D")
    return finding("security.pii_in_logs", title, "ok", 0, expected, evidence)


def diagnose(evidence, settings=None, previous=None, applied=()):
    """``{findings, scenarios, escalation, context}``; judged on the evidence alone (``previous`` and ``applied``,
    given in a verification, change nothing: a bundle verifies by the mark it wrote, read back fresh)."""
    s = settings
    f = Facts(evidence, s)
    findings = [check_violations(f), check_blocked_commands(f), check_sources(f), check_pii(f)]
    scenarios = scenario_table(SCENARIOS, findings, CHECK_SCENARIO)
    newest = max([e["time"] for e in f.events] or [""])
    context = {
        "offending": [c for c in f.offending_commands() if c not in (f.blocked or [])],
        "missing_baseline": [p for p in s["baseline_patterns"] if p not in (f.blocked or [])],
        "to_block": findings[2]["evidence"].get("to_block") or [],
        "pii": findings[3]["evidence"].get("matches_by_kind") or {},
        "pii_services": sorted(findings[3]["evidence"].get("services") or {}),
        "newest": newest or None,
        "bundle": {
            "findings": [{k: v for k, v in item.items() if k != "error"} for item in findings],
            "attempts_by_source": f.attempts_by_source(),
            "metric_increase_by_type": f.metric_by_type,
        },
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _add_lines(s, action_id, scenario, title, resource, path, lines, what):
    """B/C: append ``lines`` to one of the guardian's list files, then make it read them: POST its reload endpoint
    where the deployment offers one, else a restart of the guardian follows (``reload_guardian``); a report where
    the file is not known to the controller."""
    if not path:
        return action(
            action_id,
            scenario,
            title,
            resource,
            {"add": lines},
            "report",
            "L3: add %s to the guardian's list (security_violations_%s names no file the controller can write), "
            "then make the guardian read it again" % (what, "blocked_file" if scenario == "B" else "sources_file"),
        )
    change = {"file": path, "add": lines}
    if s.get("reload_url"):
        change.update(then="reload", _reload_url=s["reload_url"])
        outcome = "append %s to %s, then POST %s" % (what, path, s["reload_url"])
    else:
        change.update(then="restart of %s" % s["service"])
        outcome = "append %s to %s; %s reads it when it restarts (no reload endpoint)" % (what, path, s["service"])
    return action(action_id, scenario, title, resource, change, "planned", outcome, apply="add_lines")


def plan(diagnosis, settings=None):
    s = settings
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    selected = [sid for sid in ("B", "C", "D", "A") if (sid == forced if forced else sid in holding)]
    actions = []
    for sid in selected:
        if sid == "B":
            lines = ctx.get("missing_baseline", []) + [
                c for c in ctx.get("offending", []) if c not in ctx.get("missing_baseline", [])
            ]
            if lines:
                actions.append(
                    _add_lines(
                        s,
                        "security_violations.B.block_commands",
                        "B",
                        "add the offending commands to the blocked list",
                        "guardian:blocked_commands",
                        s["blocked_file"],
                        lines,
                        "%d line(s)" % len(lines),
                    )
                )
        elif sid == "C":
            if ctx.get("to_block"):
                actions.append(
                    _add_lines(
                        s,
                        "security_violations.C.block_sources",
                        "C",
                        "block the sources that keep trying",
                        "guardian:blocked_sources",
                        s["sources_file"],
                        ctx["to_block"],
                        ", ".join(ctx["to_block"]),
                    )
                )
        elif sid == "D":
            services = ctx.get("pii_services") or [s["service"]]
            actions.append(
                action(
                    "security_violations.D.quarantine_logs",
                    "D",
                    "quarantine and redact the log of %s" % ", ".join(services),
                    "%s:log" % ",".join(services),
                    {
                        "container": ", ".join(services),
                        "services": services,
                        "op": "quarantine, redact in place, restart",
                        "quarantine_dir": s["quarantine_dir"],
                        "matches_by_kind": ctx.get("pii") or {},
                    },
                    "planned",
                    "copy the containers' json-file logs to %s (mode 600), redact PII in place, restart %s"
                    % (s["quarantine_dir"], ", ".join(services)),
                    disruptive=True,
                    apply="quarantine_logs",
                )
            )
        elif sid == "A":
            actions.append(
                action(
                    "security_violations.A.bundle_evidence",
                    "A",
                    "bundle the redacted evidence into the run's state",
                    "evidence:%s" % s["evidence_dir"],
                    {"dir": s["evidence_dir"], "upto": ctx.get("newest"), "_bundle": ctx.get("bundle")},
                    "planned",
                    "write the redacted findings to %s and mark the events up to %s handled"
                    % (s["evidence_dir"], ctx.get("newest")),
                    apply="bundle_evidence",
                )
            )
    added = [item for item in actions if item.get("_apply") == "add_lines" and not item["change"].get("_reload_url")]
    guardian_restarted = any(
        item["id"] == "security_violations.D.quarantine_logs" and s["service"] in item["change"]["services"]
        for item in actions
    )
    if added and not guardian_restarted and s.get("platform") != "kubernetes":
        # no reload endpoint: the guardian reads its lists when it starts (Kubernetes rolls it out its own way)
        restart = action(
            "security_violations.reload_guardian",
            added[0]["scenario"],
            "load the new lists: restart %s" % s["service"],
            "%s:restart" % s["service"],
            {"container": s["service"], "service": s["service"], "op": "restart", "after": [a["id"] for a in added]},
            "planned",
            "restart %s so that it reads %s: this deployment offers no reload endpoint (octollm_services.%s.probes.%s)"
            % (s["service"], " and ".join(a["change"]["file"] for a in added), s["service"], RELOAD_PROBE),
            disruptive=True,
            apply="restart_guardian",
        )
        restart["_after"] = added[0]["id"]
        actions.append(restart)
    if selected:
        # whatever was fixed, security violations go to the engineering lead (seed)
        actions.append(
            action(
                "security_violations.escalate",
                selected[-1] if "A" not in selected else "A",
                "escalate to the engineering lead (L3)",
                "people:L3",
                {},
                "report",
                "L3: security violations go to the engineering lead (seed): review the bundled evidence, who sent the "
                "requests and whether PII left the system",
            )
        )
    return gated(actions, s)


def prevention(evidence, settings=None):
    s = settings
    f = Facts(evidence, s)
    findings = []
    if f.live is None:
        error = (f.exec.get(EXEC_SETTINGS) or {}).get("error") or f.containers_error
        findings.append(unknown("prevent.guardian.audit_log", "Audit logging is on", "true", error))
        findings.append(unknown("prevent.guardian.redact_logs", "The guardian masks PII in its log", "true", error))
    else:
        audit = f.live.get(AUDIT_SETTING, "false")
        findings.append(
            finding(
                "prevent.guardian.audit_log",
                "Audit logging is on (%s)" % AUDIT_SETTING,
                "ok" if audit.lower() == "true" else "warning",
                audit,
                "true",
                {},
            )
        )
        masked = f.live.get(REDACT_SETTING, "false")
        findings.append(
            finding(
                "prevent.guardian.redact_logs",
                "The guardian masks PII in its log (%s)" % REDACT_SETTING,
                "ok" if masked.lower() == "true" else "warning",
                masked,
                "true",
                {"note": "while false, scenario D recurs: set it in the services' settings and recreate guardian-arm"},
            )
        )
    if f.blocked is None:
        findings.append(
            unknown(
                "prevent.guardian.blocked_list",
                "The blocked-command list is present",
                "baseline",
                (f.exec.get(EXEC_COMMANDS) or {}).get("error") or f.containers_error,
            )
        )
    else:
        missing = [p for p in s["baseline_patterns"] if p not in f.blocked]
        findings.append(
            finding(
                "prevent.guardian.blocked_list",
                "The blocked-command list is present",
                "warning" if missing or not f.blocked else "ok",
                "%d patterns" % len(f.blocked),
                "the baseline patterns",
                {"missing": missing},
            )
        )
    findings.append(rule_loaded("prevent.prometheus.violation_rule", s["rule"], f.prom, f.prom_error))
    findings.append(
        finding(
            "prevent.guardian.pii_scan",
            "PII scanning can be scheduled (AWX playbook)",
            "ok",
            SCAN_PLAYBOOK,
            "a playbook for an AWX schedule",
            {"note": "schedule playbooks/security_violations.yml with phase=diagnose"},
        )
    )
    return {"findings": findings, "actions": []}


# --- the procedure ------------------------------------------------------------------------------------
LOG_PATTERNS = {
    "security_violation": "security violation",
    "security_pii": "PII detected",
    "security_unauthorized": "unauthorized attempt",
}


class SecurityViolations(Procedure):
    name = PROCEDURE
    title = "Security Violations"
    scenarios = SCENARIOS
    modules = {"compose": "security_violations", "kubernetes": "security_violations_kubernetes"}

    def settings(self, role_settings, context):
        s = super(SecurityViolations, self).settings(role_settings, context)
        guardian = context.service_url(s["service"], "http://127.0.0.1:8104").rstrip("/")
        # the reload endpoint where the deployment offers one (None: the lists load through a restart)
        reload_path = context.probe(s["service"], RELOAD_PROBE)
        s["reload_url"] = guardian + reload_path if reload_path else None
        if context.kubernetes:
            s["namespace"] = context.inventory["k8s"]["namespace"]
        return s

    def needs(self, settings, context):
        """The guardian's log (PII masked by the collector, which counts the matches), every service's log scanned
        for PII (counts and redacted samples), its settings and lists as the running guardian sees them, the
        metric, the rules and this procedure's "handled" mark; on Kubernetes the guardian's log, the lists and the
        settings come from the cluster instead of docker."""
        s = settings
        logs = {"tail": s["log_tail"], "since_seconds": s["log_seconds"], "patterns": dict(LOG_PATTERNS)}
        need = {
            "prometheus": {
                "queries": {
                    Q_BY_TYPE: "sum by (type) (increase(security_violations_total[%s]))" % s["prometheus_window"]
                },
                "rules": True,
            },
            "logs": {
                "sources": [{"name": HANDLED_SOURCE, "path": "%s/handled.log" % s["evidence_dir"], "max_lines": 5}]
            },
        }
        if not context.kubernetes:
            service = s["service"]
            need["containers"] = {
                "services": [service],
                "logs": dict(logs, services=[service]),
                # every service's log (or those named), for PII: counts and redacted samples only
                "pii_scan": {
                    "services": list(s["pii_services"]),
                    "tail": s["log_tail"],
                    "since_seconds": s["log_seconds"],
                    "allow": list(s["pii_allow"]),
                    "redact": list(PII_KINDS),
                },
                "exec_probes": [
                    {
                        "name": EXEC_SETTINGS,
                        "service": service,
                        "cmd": "env | grep -E '^GUARDIAN_(AUDIT_LOG|REDACT_LOGS|BLOCKED_FILE|BLOCKED_SOURCES_FILE)=' "
                        "| sort",
                    },
                    {
                        "name": EXEC_COMMANDS,
                        "service": service,
                        "cmd": 'cat "${GUARDIAN_BLOCKED_FILE:-/etc/octollm/guardian/blocked_commands.txt}"',
                    },
                    {
                        "name": EXEC_SOURCES,
                        "service": service,
                        "cmd": 'cat "${GUARDIAN_BLOCKED_SOURCES_FILE:-/etc/octollm/guardian/blocked_sources.txt}" '
                        "2>/dev/null",
                    },
                ],
            }
            return need
        need["kubernetes"] = {
            "objects": {
                "security_violations_pods": {
                    "kind": "Pod",
                    "label_selector": "app=%s" % s["k8s_guardian_app"],
                    "logs": logs,
                },
                "security_violations_guardian_configmap": {"kind": "ConfigMap", "name": s["k8s_guardian_configmap"]},
                "security_violations_settings_configmap": {"kind": "ConfigMap", "name": s["k8s_settings_configmap"]},
                "security_violations_network_policies": {
                    "kind": "NetworkPolicy",
                    "api_version": "networking.k8s.io/v1",
                },
                "security_violations_workloads": {"kind": "Deployment", "api_version": "apps/v1"},
            }
        }
        return need


PROCEDURE = SecurityViolations()
