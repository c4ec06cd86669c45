"""From an alert to a fix: what ``octoctl alert`` does with one event of the rulebook, and the listener's tick.

A firing alert:

1. the catalog picks the procedures by the alert's name (``HighMemoryUsage`` may concern two);
2. the incident store records it: a new incident, or a duplicate delivery that joins the open one (and stops here);
3. during a maintenance window (``octoctl pause --until``) or in record-only mode the incident is recorded, nothing
   runs;
4. a known alert: ``fix`` of those procedures with nobody to ask, inside the stack's run lock: what needs no
   approval is applied, disruptive steps stop at awaiting approval with their plan stored (``octoctl approve
   RUN_ID``). An alert the catalog does not know is diagnosed (every procedure), never fixed;
5. the incident takes the run, its state and level, and the sinks are told (with the graph of the alert's metric).

A resolved alert marks its incident resolved. The tick applies the escalation clock to every open incident and
notifies each rise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from octoctl.alertconfig import AlertSettings
from octoctl.catalog import Catalog, Procedure, load_catalog
from octoctl.config import Settings
from octoctl.errors import ExitCode, OctoctlError
from octoctl.incidents import CLOSED_STATES, LEVELS, Incident, IncidentStore, escalate, iso, level_max, parse_time
from octoctl.models import RunReport

ProgressFn = Callable[[str], None]


def _quiet(line: str) -> None:
    return None


@dataclass
class AlertHandler:
    settings: Settings
    alerts: AlertSettings
    catalog: Catalog
    inventory: Any
    progress: ProgressFn = _quiet
    record_only: bool = False

    @classmethod
    def create(cls, inventory: Any = None, progress: ProgressFn = _quiet, record_only: bool = False,
               settings: Settings | None = None) -> AlertHandler:
        settings = settings or Settings.from_env()
        alerts = AlertSettings.load(settings.state_dir, settings.env)
        record = record_only or settings.env.get("OCTOCTL_RECORD_ONLY", "") not in ("", "0")
        return cls(settings, alerts, load_catalog(), inventory or settings.inventory, progress, record)

    # --- plumbing ----------------------------------------------------------------------------------

    def store(self) -> IncidentStore:
        return IncidentStore(self.alerts.incidents_url)

    def levels(self) -> dict[str, str]:
        return {p.name: p.level for p in self.catalog.procedures}

    def engine(self) -> Any:
        from octoctl.runlock import LockedEngine
        from octoctl.runner import Runner
        from octoctl.store import Store

        runner = Runner(self.settings, progress=self.progress,
                        procedures_by_prefix={p.short: p.name for p in self.catalog.procedures})
        store = Store(self.settings.runs_dir, self.settings.retention_days, self.settings.max_runs)
        return LockedEngine(self.settings, self.catalog, store, runner, confirm=None, progress=self.progress)

    def load_report(self, run_id: str | None) -> RunReport | None:
        if not run_id:
            return None
        from octoctl.store import Store

        try:
            return Store(self.settings.runs_dir).load(run_id)
        except OctoctlError:
            return None

    # --- one event ---------------------------------------------------------------------------------

    def handle(self, event: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
        alert = event.get("alert", event) if isinstance(event, dict) else None
        if not isinstance(alert, dict) or not alert.get("fingerprint") or not (alert.get("labels") or {}).get(
                "alertname"):
            raise OctoctlError("the event carries no alert (labels.alertname and fingerprint are needed)",
                               ExitCode.USAGE)
        store = self.store()
        try:
            if alert.get("status", "firing") == "resolved":
                return self.resolved(store, alert, now)
            return self.firing(store, alert, now)
        finally:
            store.close()

    def procedures_for(self, alertname: str) -> list[Procedure]:
        return self.catalog.in_rank_order(list(self.catalog.by_alert(alertname)))

    def firing(self, store: IncidentStore, alert: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        labels = alert["labels"]
        procedures = self.procedures_for(labels["alertname"])
        names = [p.name for p in procedures]
        base = level_max(*(p.level for p in procedures)) if procedures else "L1"
        incident, new = store.open_or_join(alert, labels.get("stack") or "default", names, base,
                                           f"{base}: procedure level" if base != "L1" else "L1: on-call engineer",
                                           now)
        result: dict[str, Any] = {"incident": incident.key, "new": new, "procedures": names}
        if not new:
            self.progress(f"{incident.key}: duplicate delivery of {incident.alertname} joined the open incident")
            return {**result, "action": "joined"}
        incident = self.reassess(store, incident, now)
        paused = store.paused_until(now)
        if paused is not None or self.record_only:
            why = f"paused until {iso(paused)}" if paused else "record-only listener"
            store.add_event(incident.id, "paused", {"reason": why}, now)
            self.progress(f"{incident.key}: recorded, not fixed ({why})")
            return {**result, "action": "recorded", "reason": why}
        report, note = self.run(store, incident, procedures)
        incident = store.get(incident.id)
        notified = self.notify("opened", incident, report, note)
        return {**result, "action": "fixed" if procedures else "diagnosed", "run_id": report.run_id if report else None,
                "state": incident.state, "level": incident.level, "notified": notified}

    def run(self, store: IncidentStore, incident: Incident,
            procedures: list[Procedure]) -> tuple[RunReport | None, str]:
        from octoctl.engine import Request

        engine = self.engine()
        note = ""
        if procedures:
            allowed = [p.role for p in procedures if p.name in self.alerts.allow_disruptive]
            request = Request(command="alert", procedures=procedures, inventory=self.inventory,
                              argv=[incident.alertname],
                              extra_vars={f"{role}_allow_disruptive": True for role in allowed})
            call = engine.fix
        else:
            chosen = self.guess(incident)
            note = (f"the catalog knows no procedure for alert {incident.alertname}: diagnosed "
                    f"({', '.join(p.name for p in chosen) if chosen else 'every procedure'}), not fixed")
            request = Request(command="alert", procedures=chosen or list(self.catalog.procedures),
                              inventory=self.inventory, argv=[incident.alertname], every_procedure=not chosen)
            call = engine.diagnose
        self.progress(f"{incident.key}: {incident.alertname} -> {request.command} "
                      f"{'fix' if procedures else 'diagnose'} {', '.join(p.name for p in request.procedures)}")
        try:
            report = call(request)
        except OctoctlError as exc:
            store.add_event(incident.id, "run_failed", {"error": exc.message})
            return None, f"{note + '; ' if note else ''}the run failed: {exc.message}"
        self.record_run(store, incident, report, fixed=bool(procedures))
        return report, note

    def guess(self, incident: Incident) -> list[Procedure]:
        """Procedures the alert's words point to (for a diagnosis only); none when nothing matches well."""
        from octoctl.routing import Router

        try:
            return Router(self.catalog).plan([f"{incident.alertname} {incident.summary}"]).selected
        except OctoctlError:
            return []

    def record_run(self, store: IncidentStore, incident: Incident, report: RunReport, fixed: bool,
                   kind: str = "run") -> Incident:
        actions = [(t.target, p.procedure, a) for t in report.targets for p in t.procedures for a in p.actions]
        run_level = None
        for target in report.targets:
            for result in target.procedures:
                if result.escalation.level in LEVELS:
                    run_level = level_max(run_level, result.escalation.level)
        healthy_after = all(
            p.verification.healthy for t in report.targets for p in t.procedures if p.verification is not None)
        store.add_event(incident.id, "run", {
            "run_id": report.run_id, "command": report.command, "phase": report.phase, "status": report.status,
            "exit_code": report.exit_code, "approve_with": report.approve_with, "approves": report.approves,
            "procedures": report.procedures,
            "applied": [f"{p}:{a.id}" for _, p, a in actions if a.status == "applied"],
            "failed": [f"{p}:{a.id}" for _, p, a in actions if a.status == "failed"],
            "awaiting": [f"{p}:{a.id}" for _, p, a in actions if a.status == "awaiting_approval"],
            "findings": [f"{p.procedure}:{f.check}={f.status}" for t in report.targets for p in t.procedures
                         for f in p.findings if f.status != "ok"],
            "verified_healthy": healthy_after if any(p.verification for t in report.targets for p in t.procedures)
            else None,
            "escalation": run_level,
        })
        if not fixed:
            state = "open"
        elif any(a.status == "awaiting_approval" for _, _, a in actions):
            state = "awaiting_approval"
        elif report.exit_code == 0:
            state = "remediated"
        else:
            state = "open"
        current = store.get(incident.id)  # the alert may have resolved while the run went on
        if current.state in CLOSED_STATES:
            store.update(incident.id, last_run_id=report.run_id)
            return store.get(incident.id)
        if current.state in ("acknowledged",) and state == "open":
            state = current.state
        store.update(incident.id, state=state, last_run_id=report.run_id)
        return self.reassess(store, store.get(incident.id), datetime.now(UTC), run_level)

    def reassess(self, store: IncidentStore, incident: Incident, now: datetime,
                 run_level: str | None = None) -> Incident:
        """Apply the escalation rules; returns the incident as stored (a rise is an ``escalated`` event)."""
        if run_level is None:
            levels = [e.data.get("escalation") for e in incident.events if e.kind == "run"]
            run_level = level_max(*levels) if any(lv in LEVELS for lv in levels) else None
        others = store.find(states=("open", "awaiting_approval", "remediated", "acknowledged"), limit=500)
        level, reason = escalate(incident, now, others, self.alerts.escalation_l2_after, self.levels(), run_level)
        if level != incident.level or reason != incident.level_reason:
            store.update(incident.id, level=level, level_reason=reason)
            if level != incident.level:
                store.add_event(incident.id, "escalated", {"from": incident.level, "to": level, "reason": reason},
                                now)
            incident = store.get(incident.id)
        return incident

    def resolved(self, store: IncidentStore, alert: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
        incident = store.open_for(alert["fingerprint"])
        if incident is None:
            return {"incident": None, "action": "ignored", "reason": "no open incident for this alert"}
        ended = parse_time(alert.get("endsAt")) or now or datetime.now(UTC)
        incident = store.set_state(incident.id, "resolved", now, resolved_at=ended, by="alertmanager")
        self.progress(f"{incident.key}: {incident.alertname} resolved")
        notified = self.notify("resolved", incident, self.load_report(incident.last_run_id))
        return {"incident": incident.key, "action": "resolved", "notified": notified}

    # --- the clock ---------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Escalate the open incidents that must rise; notify each rise."""
        now = now or datetime.now(UTC)
        store = self.store()
        risen = []
        try:
            for incident in store.find(states=("open", "awaiting_approval", "remediated", "acknowledged"),
                                       limit=500):
                before = incident.level
                after = self.reassess(store, incident, now)
                if LEVELS.index(after.level) > LEVELS.index(before):
                    self.progress(f"{after.key}: escalated {before} -> {after.level} ({after.level_reason})")
                    notified = self.notify("escalated", after, self.load_report(after.last_run_id))
                    risen.append({"incident": after.key, "from": before, "to": after.level, "notified": notified})
        finally:
            store.close()
        return risen

    # --- telling people ----------------------------------------------------------------------------

    def notify(self, event: str, incident: Incident, report: RunReport | None, note: str = "") -> list[dict[str, Any]]:
        if event not in self.alerts.notify_on or not self.alerts.sinks:
            return []
        from octoctl.notify import build_message, send_all

        message = build_message(event, incident, report, self.graph(incident, report), note)
        results = send_all(self.alerts.sinks, message, dict(self.settings.env), self.progress)
        store = self.store()
        try:
            store.add_event(incident.id, "notified", {"event": event, "sinks": results,
                                                      "run_id": message.get("run_id")})
        finally:
            store.close()
        return results

    def graph(self, incident: Incident, report: RunReport | None, end: datetime | None = None) -> dict[str, Any] | None:
        from octoctl.graph import fetch_graph

        started = incident.starts_at or incident.first_seen
        marks = [(started, "alert")]
        if report is not None and report.end is not None:
            marks.append((report.end, "fix"))
        found = fetch_graph(self.alerts.prometheus_url, incident.generator_url, started - self.alerts.graph_before,
                            end or datetime.now(UTC), marks)
        return found.to_dict() if found is not None else None


def record_approval(settings: Settings, report: RunReport, source_run_id: str) -> None:
    """``octoctl approve`` of a run that belongs to an incident: the approval run joins its timeline."""
    alerts = AlertSettings.load(settings.state_dir, settings.env)
    store = IncidentStore(alerts.incidents_url)
    try:
        incident = store.for_run(source_run_id)
        if incident is None:
            return
        handler = AlertHandler(settings, alerts, load_catalog(), settings.inventory)
        incident = handler.record_run(store, incident, report, fixed=True, kind="approve")
        handler.notify("approved", incident, report)
    finally:
        store.close()


# --- metrics --------------------------------------------------------------------------------------


def metrics_text(store: IncidentStore, now: datetime | None = None) -> str:
    """The listener's ``/metrics`` (Prometheus text format), computed from the incident store."""
    now = now or datetime.now(UTC)
    incidents = store.find(limit=100000)
    by_key: dict[tuple[str, str, str], int] = {}
    applied: dict[str, int] = {}
    failed: dict[str, int] = {}
    recover: list[float] = []
    for incident in incidents:
        for procedure in incident.procedures or ["unknown"]:
            key = (procedure, incident.level, incident.state)
            by_key[key] = by_key.get(key, 0) + 1
        for event in incident.events:
            if event.kind != "run":
                continue
            for item in event.data.get("applied") or []:
                name = item.split(":", 1)[0]
                applied[name] = applied.get(name, 0) + 1
            for item in event.data.get("failed") or []:
                name = item.split(":", 1)[0]
                failed[name] = failed.get(name, 0) + 1
        if incident.state == "resolved" and incident.resolved_at:
            recover.append(incident.age(now).total_seconds())
    lines = ["# HELP octoctl_incidents Incidents by procedure, level and state.", "# TYPE octoctl_incidents gauge"]
    lines += [f'octoctl_incidents{{procedure="{p}",level="{lv}",state="{s}"}} {n}'
              for (p, lv, s), n in sorted(by_key.items())]
    lines += ["# HELP octoctl_remediations_total Remediation actions by procedure and result.",
              "# TYPE octoctl_remediations_total counter"]
    lines += [f'octoctl_remediations_total{{procedure="{p}",result="applied"}} {n}' for p, n in sorted(applied.items())]
    lines += [f'octoctl_remediations_total{{procedure="{p}",result="failed"}} {n}' for p, n in sorted(failed.items())]
    lines += ["# HELP octoctl_time_to_recover_seconds From the alert's start to its resolution.",
              "# TYPE octoctl_time_to_recover_seconds summary",
              f"octoctl_time_to_recover_seconds_sum {sum(recover):.3f}",
              f"octoctl_time_to_recover_seconds_count {len(recover)}",
              "# HELP octoctl_open_incidents Incidents not resolved or closed.", "# TYPE octoctl_open_incidents gauge",
              f"octoctl_open_incidents {sum(1 for i in incidents if i.is_open)}"]
    return "\n".join(lines) + "\n"


# --- the post-incident timeline --------------------------------------------------------------------


def timeline_markdown(incident: Incident, load_report: Callable[[str], RunReport | None]) -> str:
    """The post-incident timeline (alert start, each run, findings, actions, verification, time to recover)."""
    lines = [f"# {incident.key}: {incident.alertname} on {incident.stack}", "",
             f"- summary: {incident.summary}",
             f"- state: {incident.state}; level: {incident.level} ({incident.level_reason or '-'})",
             f"- procedures: {', '.join(incident.procedures) or 'none known'}",
             f"- alert started: {iso(incident.starts_at) or '-'}; first seen: {iso(incident.first_seen)}; "
             f"deliveries: {incident.deliveries}"]
    if incident.resolved_at:
        recover = incident.resolved_at - (incident.starts_at or incident.first_seen)
        lines.append(f"- resolved: {iso(incident.resolved_at)}; time to recover: {_duration(recover)}")
    lines += ["", "## Timeline", "", "| time | event | details |", "|---|---|---|"]
    if incident.starts_at:
        lines.append(f"| {iso(incident.starts_at)} | alert starts | {incident.alertname} fires in Prometheus |")
    for event in incident.events:
        lines.append(f"| {iso(event.at)} | {event.kind} | {_event_details(event.kind, event.data)} |")
    for run_id in incident.runs():
        report = load_report(run_id)
        lines += ["", f"## Run {run_id}", ""]
        if report is None:
            lines.append("(the run's report is not on this machine)")
            continue
        lines.append(f"`octoctl {report.command}` {report.phase or ''}: **{report.status}** (exit {report.exit_code})"
                     + (f"; approve with `{report.approve_with}`" if report.approve_with else ""))
        for target in report.targets:
            for result in target.procedures:
                lines += ["", f"### {target.target} / {result.procedure}", "", "Findings:"]
                lines += [f"- {f.check}: {f.status} (observed {_cell(f.observed)}, expected {_cell(f.expected)})"
                          for f in result.findings] or ["- none"]
                lines += ["", "Actions:"]
                lines += [f"- {a.id}: {a.status}{' - ' + a.outcome if a.outcome else ''}" for a in result.actions] \
                    or ["- none"]
                if result.verification is not None:
                    lines += ["", f"Verification: {'healthy' if result.verification.healthy else 'NOT healthy'}"]
                    lines += [f"- {f.check}: {f.status}" for f in result.verification.findings if f.status != "ok"]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|")[:120]


def _event_details(kind: str, data: dict[str, Any]) -> str:
    if kind == "run":
        parts = [f"run {data.get('run_id')} ({data.get('command')}): {data.get('status')}"]
        for key in ("applied", "awaiting", "failed"):
            if data.get(key):
                parts.append(f"{key} {', '.join(data[key])}")
        if data.get("approve_with"):
            parts.append(f"`{data['approve_with']}`")
        return _cell("; ".join(parts)) if len("; ".join(parts)) < 400 else "; ".join(parts)[:400]
    if kind == "notified":
        sinks = ", ".join(f"{s['sink']}{'' if s.get('ok') else ' (failed)'}" for s in data.get("sinks") or [])
        return f"{data.get('event')} via {sinks or 'no sink'}"
    return _cell(", ".join(f"{k}={v}" for k, v in sorted(data.items())))


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def read_event(text: str) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise OctoctlError(f"the event is not JSON: {exc}", ExitCode.USAGE) from exc
    if not isinstance(event, dict):
        raise OctoctlError("the event must be a JSON object", ExitCode.USAGE)
    # ansible-rulebook hands the whole ansible_eda variable to some actions: take its event
    if "event" in event and "alert" not in event and isinstance(event["event"], dict):
        event = event["event"]
    return event


# What ansible-runner sets for the playbook it runs (the rulebook's playbook that runs `octoctl alert`): left in place,
# octoctl's own ansible-runner run would load the outer run's callback plugins and fail.
OUTER_RUNNER_VARIABLES = (
    "AD_HOC_COMMAND_ID", "ANSIBLE_CACHE_PLUGIN", "ANSIBLE_CACHE_PLUGIN_CONNECTION", "ANSIBLE_CALLBACK_PLUGINS",
    "ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_LOAD_CALLBACK_PLUGINS", "ANSIBLE_RETRY_FILES_ENABLED", "ANSIBLE_ROLES_PATH",
    "ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_UNSAFE_WRITES", "AWX_ISOLATED_DATA_DIR", "ORIGINAL_STDOUT_CALLBACK",
    "RUNNER_OMIT_EVENTS", "RUNNER_ONLY_FAILED_EVENTS",
)


def scrub_outer_runner(environ: Any) -> list[str]:
    """Remove the variables of an enclosing ansible-runner run (when ``AWX_ISOLATED_DATA_DIR`` says there is one)."""
    if not environ.get("AWX_ISOLATED_DATA_DIR"):
        return []
    removed = [name for name in OUTER_RUNNER_VARIABLES if name in environ]
    for name in removed:
        del environ[name]
    return removed


def environment_record_only(env: dict[str, str] | None = None) -> bool:
    return (env or dict(os.environ)).get("OCTOCTL_RECORD_ONLY", "") not in ("", "0")
