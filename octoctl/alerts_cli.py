"""The alert commands: ``octoctl alert``, ``listen``, ``incidents [show]``, ``ack``, ``close``, ``pause``.

Registered on the main group by cli.py (``register``); thin commands over alerts.py, incidents.py, listener.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

if TYPE_CHECKING:
    from octoctl.alerts import AlertHandler
    from octoctl.incidents import IncidentStore

from octoctl.errors import ExitCode, OctoctlError


def _handler(inventory: Path | None = None, record_only: bool = False) -> AlertHandler:
    from octoctl.alerts import AlertHandler

    return AlertHandler.create(inventory, progress=lambda line: click.echo(line, err=True), record_only=record_only)


def _store() -> IncidentStore:
    from octoctl.alertconfig import AlertSettings
    from octoctl.config import Settings
    from octoctl.incidents import IncidentStore

    settings = Settings.from_env()
    return IncidentStore(AlertSettings.load(settings.state_dir, settings.env).incidents_url)


def _age(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def parse_until(text: str, now: datetime | None = None) -> datetime:
    """``2026-12-07T15:00:00Z``, ``15:00`` (today, UTC), ``+30m`` / ``30m`` (from now)."""
    from octoctl.incidents import parse_duration, parse_time

    now = now or datetime.now(UTC)
    value = text.strip()
    if value.startswith("+") or value[-1:] in ("s", "m", "h", "d") and value[:-1].replace(".", "").isdigit():
        return now + parse_duration(value.lstrip("+"))
    if len(value) == 5 and value[2] == ":":
        hour, minute = int(value[:2]), int(value[3:])
        return now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    parsed = parse_time(value)
    if parsed is None:
        raise OctoctlError(f"{text!r} is not a time", ExitCode.USAGE)
    return parsed


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("event_file", type=click.File("r"), default="-", metavar="[EVENT_JSON|-]")
    @click.option("-i", "--inventory", type=click.Path(path_type=Path), default=None,
                  help="Inventory (default: $OCTOCTL_INVENTORY or <repo>/inventory/lab).")
    @click.option("--record-only", is_flag=True, help="Record the incident; run nothing.")
    def alert(event_file: IO[str], inventory: Path | None, record_only: bool) -> int:
        """Handle one alert event (the rulebook's; JSON on stdin or in a file): pick the procedures from the catalog,
        record the incident, fix (non-disruptive steps applied, disruptive ones left for `octoctl approve RUN_ID`)
        or, for an alert the catalog does not know, diagnose; notify. A duplicate delivery joins its incident; a
        resolved alert resolves it. Prints the outcome as JSON."""
        import os

        from octoctl.alerts import read_event, scrub_outer_runner

        scrub_outer_runner(os.environ)
        outcome = _handler(inventory, record_only).handle(read_event(event_file.read()))
        click.echo(json.dumps(outcome, indent=2, default=str))
        return int(ExitCode.HEALTHY)

    @cli.command()
    @click.option("-i", "--inventory", type=click.Path(path_type=Path), default=None,
                  help="Inventory the rulebook and the fixes run against.")
    @click.option("--rulebook", default="octollm.remediation.octollm", show_default=True,
                  help="Rulebook (a path or a collection's FQCN).")
    @click.option("--record-only", is_flag=True, help="Record incidents; fix nothing (a standing maintenance window).")
    def listen(inventory: Path | None, rulebook: str, record_only: bool) -> int:
        """Run ansible-rulebook with the collection's rulebook: Alertmanager posts to 127.0.0.1:5000/alerts, each
        alert goes to `octoctl alert`. Also runs the escalation clock and serves /metrics (port 5001)."""
        from octoctl.listener import listen as run_listener

        return run_listener(_handler(inventory, record_only), rulebook,
                            log=lambda line: click.echo(line, err=True))

    @cli.group(invoke_without_command=True)
    @click.option("--all", "all_", is_flag=True, help="Also resolved and closed incidents.")
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    @click.pass_context
    def incidents(ctx: click.Context, all_: bool, fmt: str) -> int:
        """List incidents (level, age, last run); `octoctl incidents show ID` for one."""
        if ctx.invoked_subcommand is not None:
            return 0
        from octoctl.incidents import OPEN_STATES

        store = _store()
        try:
            found = store.find(None if all_ else OPEN_STATES)
        finally:
            store.close()
        if fmt == "json":
            click.echo(json.dumps([i.to_dict() for i in found], indent=2))
            return 0
        click.echo(f"{'ID':8} {'LEVEL':5} {'STATE':17} {'AGE':8} {'ALERT':26} {'PROCEDURES':28} LAST RUN")
        for i in found:
            click.echo(f"{i.key:8} {i.level:5} {i.state:17} {_age(i.age().total_seconds()):8} {i.alertname[:26]:26} "
                       f"{','.join(i.procedures)[:28] or '-':28} {i.last_run_id or '-'}")
        return 0

    @incidents.command()
    @click.argument("ident", metavar="ID")
    @click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
    def show(ident: str, fmt: str) -> int:
        """One incident: its post-incident timeline (alert start, runs, findings, actions, verification, time to
        recover) in Markdown, or JSON."""
        from octoctl.alerts import AlertHandler, timeline_markdown

        store = _store()
        try:
            incident = store.get(ident)
        finally:
            store.close()
        if fmt == "json":
            click.echo(json.dumps(incident.to_dict(), indent=2))
        else:
            handler = AlertHandler.create()
            click.echo(timeline_markdown(incident, handler.load_report), nl=False)
        return 0

    @cli.command()
    @click.argument("ident", metavar="ID")
    @click.option("--by", default="", help="Who takes it (recorded).")
    def ack(ident: str, by: str) -> int:
        """Acknowledge an incident: a person has it; the clock stops raising it (breadth and security still do)."""
        store = _store()
        try:
            incident = store.get(ident)
            if not incident.is_open:
                raise OctoctlError(f"{incident.key} is {incident.state}", ExitCode.USAGE)
            incident = store.set_state(incident.id, "acknowledged", by=by or _user())
        finally:
            store.close()
        click.echo(f"{incident.key} acknowledged")
        return 0

    @cli.command()
    @click.argument("ident", metavar="ID")
    @click.option("--reason", default="", help="Why (recorded in the timeline).")
    def close(ident: str, reason: str) -> int:
        """Close an incident (it will not escalate or join deliveries any more)."""
        store = _store()
        try:
            incident = store.get(ident)
            incident = store.set_state(incident.id, "closed", by=_user(), reason=reason)
        finally:
            store.close()
        click.echo(f"{incident.key} closed")
        return 0

    @cli.command()
    @click.option("--until", "until", metavar="TIME", help="End of the window: +30m, 15:00 (UTC), or RFC 3339.")
    @click.option("--off", is_flag=True, help="End the maintenance window now.")
    def pause(until: str | None, off: bool) -> int:
        """A maintenance window: until TIME the listener records alerts but fixes nothing."""
        if bool(until) == off:
            raise click.UsageError("give --until TIME or --off")
        store = _store()
        try:
            if off:
                store.pause(None)
                click.echo("not paused")
            else:
                when = parse_until(str(until))
                store.pause(when, by=_user())
                click.echo(f"paused until {when.isoformat(timespec='seconds')}")
        finally:
            store.close()
        return 0


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is fine
        return "unknown"


def report_html(run_id_report: object) -> str:
    """``octoctl report RUN --format html``: the notification page of the run's incident with the graph, or of the run
    alone when it belongs to no incident."""
    from octoctl.alerts import AlertHandler
    from octoctl.incidents import IncidentStore
    from octoctl.models import RunReport
    from octoctl.notify import build_message, render_html

    assert isinstance(run_id_report, RunReport)
    report = run_id_report
    handler = AlertHandler.create()
    store = IncidentStore(handler.alerts.incidents_url)
    try:
        incident = store.for_run(report.run_id)
    except OctoctlError:
        incident = None
    finally:
        store.close()
    if incident is None:
        from octoctl.incidents import Incident

        now = report.start
        incident = Incident(id=0, fingerprint="", alertname=report.command, stack=",".join(
            t.target for t in report.targets) or "-", state="-", level="L1", level_reason="", procedures=list(
            report.procedures), labels={}, annotations={"summary": " ".join(report.argv)}, generator_url="",
            starts_at=now, first_seen=now, last_seen=now)
        graph = None
    else:
        graph = handler.graph(incident, report, end=_graph_end(report))
    message = build_message("report", incident, report, graph)
    return render_html(message, report.model_dump_json(indent=2))


def _graph_end(report: object) -> datetime:
    end = getattr(report, "end", None) or datetime.now(UTC)
    # after the fix: as much again as the alert took to be fixed, at most 10 minutes, never in the future
    from datetime import timedelta

    return min(datetime.now(UTC), end + timedelta(minutes=10))

