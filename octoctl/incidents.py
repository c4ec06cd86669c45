"""Incidents: what octoctl records about each alert it handles, where, and the escalation clock.

An incident is one alert (by its Alertmanager fingerprint) from the first delivery that fires until it resolves or a
person closes it; further deliveries of the same alert while it is open join it. It holds the procedures the catalog
picked, the runs octoctl made for it, its escalation level and its state, and a timeline of events (deliveries, runs,
escalations, notifications, acknowledgement, resolution) for the post-incident report.

The store is a SQLite file in octoctl's state directory by default (``<state>/incidents.db``), or a PostgreSQL
database for shared use (several listeners, AWX jobs whose containers keep no state): ``OCTOCTL_INCIDENTS_URL`` (or
``incidents_url`` in the alerts configuration) ``postgresql://user@host/db`` (the password from ``PGPASSWORD`` or
``~/.pgpass``, never in the URL of a log line). Both take the same SQL.

Escalation (the seed's table, "Escalation Procedures"; :func:`escalate`):

- each procedure's own level stands (L1 on-call, L2 senior, L3 lead; an alert no procedure knows starts at L1);
- an incident unresolved for ``escalation_l2_after`` (15 minutes by default) rises from L1 to L2 (not while it is
  acknowledged, nor once its fix was verified and the alert is about to clear);
- more than one failing service on the same stack (open incidents naming different services) makes each of them L3
  (an alert that names no service is not counted), as does a security violation;
- a run that reports a higher level (a fix that did not remove the problem) raises it to that level;
- a level never falls while the incident is open.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from octoctl.errors import ExitCode, OctoctlError

LEVELS = ("L1", "L2", "L3")
LEVEL_WHO = {"L1": "on-call engineer", "L2": "senior engineer", "L3": "engineering lead"}
OPEN_STATES = ("open", "awaiting_approval", "remediated", "acknowledged")
CLOSED_STATES = ("resolved", "closed")
STATES = OPEN_STATES + CLOSED_STATES
SERVICE_LABELS = ("service", "compose_service", "container", "pod")
DEFAULT_L2_AFTER = timedelta(minutes=15)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``15m``, ``20s``, ``1h``, ``90`` (seconds) -> timedelta; OctoctlError (exit 2) otherwise."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float):
        return timedelta(seconds=float(text))
    match = _DURATION.match(str(text))
    if match is None:
        raise OctoctlError(f"{text!r} is not a duration (e.g. 15m, 20s, 1h)", ExitCode.USAGE)
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time (Alertmanager's, with nanoseconds or Z) -> aware datetime; ``0001-...`` and empty -> None."""
    if not text or text.startswith("0001-"):
        return None
    value = text.strip().replace("Z", "+00:00")
    # Python takes at most microseconds
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise OctoctlError(f"{text!r} is not a time (RFC 3339)", ExitCode.USAGE) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat(timespec="seconds") if when else None


def level_max(*levels: str | None) -> str:
    known = [lv for lv in levels if lv in LEVELS]
    return max(known, key=LEVELS.index) if known else "L1"


@dataclass
class Event:
    """One line of an incident's timeline."""

    at: datetime
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Incident:
    id: int
    fingerprint: str
    alertname: str
    stack: str
    state: str
    level: str
    level_reason: str
    procedures: list[str]
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    starts_at: datetime | None
    first_seen: datetime
    last_seen: datetime
    deliveries: int = 1
    resolved_at: datetime | None = None
    acked_by: str | None = None
    last_run_id: str | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"INC-{self.id}"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def service(self) -> str | None:
        for name in SERVICE_LABELS:
            if self.labels.get(name):
                return self.labels[name]
        return None

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.annotations.get("description") or self.alertname

    def age(self, now: datetime | None = None) -> timedelta:
        end = self.resolved_at if not self.is_open and self.resolved_at else (now or datetime.now(UTC))
        return end - (self.starts_at or self.first_seen)

    def runs(self) -> list[str]:
        return [e.data["run_id"] for e in self.events if e.kind == "run" and e.data.get("run_id")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.key, "fingerprint": self.fingerprint, "alertname": self.alertname, "stack": self.stack,
            "state": self.state, "level": self.level, "level_reason": self.level_reason,
            "procedures": self.procedures, "labels": self.labels, "annotations": self.annotations,
            "generator_url": self.generator_url, "starts_at": iso(self.starts_at), "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen), "deliveries": self.deliveries, "resolved_at": iso(self.resolved_at),
            "acked_by": self.acked_by, "last_run_id": self.last_run_id, "runs": self.runs(),
            "events": [{"at": iso(e.at), "kind": e.kind, **e.data} for e in self.events],
        }


# --- escalation ------------------------------------------------------------------------------------


def escalate(incident: Incident, now: datetime, open_incidents: Iterable[Incident], l2_after: timedelta,
             procedure_levels: dict[str, str] | None = None, run_level: str | None = None) -> tuple[str, str]:
    """The level the incident must have now and why (never below its current level)."""
    levels = procedure_levels or {}
    level, reasons = "L1", []
    for name in incident.procedures:
        if name in levels and LEVELS.index(levels[name]) > LEVELS.index(level):
            level = levels[name]
    if level != "L1":
        reasons.append(f"{level}: procedure level")
    if "security_violations" in incident.procedures or incident.alertname.lower().startswith("security"):
        level = "L3"
        reasons.append("L3: security violation")
    services = {i.service for i in open_incidents if i.is_open and i.stack == incident.stack and i.service}
    if incident.service:  # an alert that names a service, one of several failing on the stack
        services.add(incident.service)
    if incident.service and len(services) > 1:
        level = "L3"
        reasons.append("L3: multi-service failure (" + ", ".join(sorted(services)) + ")")
    if run_level in LEVELS and LEVELS.index(run_level) > LEVELS.index(level):
        level = run_level
        reasons.append(f"{run_level}: the run left problems for a human")
    unresolved = now - (incident.starts_at or incident.first_seen)
    # the clock stops for an incident a person has (acknowledged) and for one whose fix was verified (remediated:
    # waiting for the alert to clear)
    if incident.state not in ("acknowledged", "remediated", *CLOSED_STATES) and unresolved >= l2_after \
            and level == "L1":
        level = "L2"
        reasons.append(f"L2: unresolved after {_human(l2_after)}")
    if LEVELS.index(incident.level) > LEVELS.index(level):
        return incident.level, incident.level_reason
    reason = "; ".join(reasons) or "L1: on-call engineer"
    if level == incident.level and incident.level_reason:
        return level, incident.level_reason
    return level, reason


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# --- the store -------------------------------------------------------------------------------------

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS octoctl_incidents (
        id {serial} PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        alertname TEXT NOT NULL,
        stack TEXT NOT NULL,
        state TEXT NOT NULL,
        level TEXT NOT NULL,
        level_reason TEXT NOT NULL DEFAULT '',
        procedures TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        generator_url TEXT NOT NULL DEFAULT '',
        starts_at TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        deliveries INTEGER NOT NULL DEFAULT 1,
        resolved_at TEXT,
        acked_by TEXT,
        last_run_id TEXT
    )""",
    # one open incident per alert: a duplicate delivery that races the first one fails here and joins it
    """CREATE UNIQUE INDEX IF NOT EXISTS octoctl_incidents_open
        ON octoctl_incidents (fingerprint) WHERE state NOT IN ('resolved', 'closed')""",
    """CREATE TABLE IF NOT EXISTS octoctl_incident_events (
        id {serial} PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES octoctl_incidents (id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS octoctl_control (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
]

COLUMNS = ("id", "fingerprint", "alertname", "stack", "state", "level", "level_reason", "procedures", "labels",
           "annotations", "generator_url", "starts_at", "first_seen", "last_seen", "deliveries", "resolved_at",
           "acked_by", "last_run_id")


def redact_url(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


class IncidentStore:
    """Incidents in SQLite (a file path or ``sqlite:///path``) or PostgreSQL (``postgresql://...``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._conn: Any = None

    @classmethod
    def from_settings(cls, state_dir: Path, url: str | None = None) -> IncidentStore:
        return cls(url or f"sqlite:///{state_dir / 'incidents.db'}")

    # --- connection ----------------------------------------------------------------------------

    def connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        try:
            if self.postgres:
                import psycopg2

                self._conn = psycopg2.connect(self.url, connect_timeout=10)
                self._conn.autocommit = True
            else:
                path = Path(self.url.removeprefix("sqlite:///") if self.url.startswith("sqlite:///") else self.url)
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
                self._conn.execute("PRAGMA journal_mode=WAL")
        except Exception as exc:
            raise OctoctlError(f"cannot open the incident store {redact_url(self.url)}: {exc}",
                               ExitCode.ENVIRONMENT) from exc
        serial = "BIGSERIAL" if self.postgres else "INTEGER"
        self._execute("BEGIN")
        try:
            if self.postgres:  # CREATE ... IF NOT EXISTS races with another process doing the same
                self._execute("SELECT pg_advisory_xact_lock(7241, 0)")
            for statement in SCHEMA:
                self._execute(statement.format(serial=serial))
        except BaseException:
            self._execute("ROLLBACK")
            raise
        self._execute("COMMIT")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        conn = self._conn if self._conn is not None else self.connect()
        if self.postgres:
            sql = sql.replace("?", "%s")
            cur = conn.cursor()
            cur.execute(sql, params)
            return cur
        return conn.execute(sql, params)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self._execute(sql, params)
        return list(cur.fetchall())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.connect()
        self._execute("BEGIN")
        try:
            yield
        except BaseException:
            self._execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    def _integrity_errors(self) -> tuple[type[BaseException], ...]:
        if self.postgres:
            import psycopg2

            return (psycopg2.IntegrityError,)
        return (sqlite3.IntegrityError,)

    # --- reading -------------------------------------------------------------------------------

    def _incident(self, row: tuple[Any, ...], events: bool = False) -> Incident:
        data = dict(zip(COLUMNS, row, strict=True))
        incident = Incident(
            id=int(data["id"]), fingerprint=data["fingerprint"], alertname=data["alertname"], stack=data["stack"],
            state=data["state"], level=data["level"], level_reason=data["level_reason"] or "",
            procedures=json.loads(data["procedures"]), labels=json.loads(data["labels"]),
            annotations=json.loads(data["annotations"]), generator_url=data["generator_url"] or "",
            starts_at=parse_time(data["starts_at"]), first_seen=_time(data["first_seen"]),
            last_seen=_time(data["last_seen"]), deliveries=int(data["deliveries"]),
            resolved_at=parse_time(data["resolved_at"]), acked_by=data["acked_by"], last_run_id=data["last_run_id"],
        )
        if events:
            incident.events = self.events(incident.id)
        return incident

    def events(self, incident_id: int) -> list[Event]:
        rows = self._rows("SELECT at, kind, data FROM octoctl_incident_events WHERE incident_id = ? ORDER BY id",
                          (incident_id,))
        return [Event(_time(at), kind, json.loads(data)) for at, kind, data in rows]

    def get(self, ident: str | int) -> Incident:
        number = parse_incident_id(ident)
        rows = self._rows(f"SELECT {', '.join(COLUMNS)} FROM octoctl_incidents WHERE id = ?", (number,))
        if not rows:
            raise OctoctlError(f"no incident {ident} in {redact_url(self.url)}", ExitCode.USAGE)
        return self._incident(rows[0], events=True)

    def open_for(self, fingerprint: str) -> Incident | None:
        rows = self._rows(f"SELECT {', '.join(COLUMNS)} FROM octoctl_incidents WHERE fingerprint = ? "
                          "AND state NOT IN ('resolved', 'closed') ORDER BY id DESC", (fingerprint,))
        return self._incident(rows[0], events=True) if rows else None

    def find(self, states: Iterable[str] | None = None, limit: int = 100) -> list[Incident]:
        wanted = tuple(states or STATES)
        marks = ", ".join("?" for _ in wanted)
        rows = self._rows(f"SELECT {', '.join(COLUMNS)} FROM octoctl_incidents WHERE state IN ({marks}) "
                          f"ORDER BY id DESC LIMIT {int(limit)}", wanted)
        return [self._incident(row, events=True) for row in rows]

    def for_run(self, run_id: str) -> Incident | None:
        pattern = f'%"run_id": "{run_id}"%'
        rows = self._rows("SELECT DISTINCT incident_id FROM octoctl_incident_events WHERE kind = 'run' "
                          "AND data LIKE ? ORDER BY incident_id DESC", (pattern,))
        return self.get(rows[0][0]) if rows else None

    # --- writing -------------------------------------------------------------------------------

    def open_or_join(self, alert: dict[str, Any], stack: str, procedures: list[str], level: str, level_reason: str,
                     now: datetime | None = None) -> tuple[Incident, bool]:
        """The open incident of this alert (a duplicate delivery joins it: ``(incident, False)``) or a new one
        (``(incident, True)``)."""
        now = now or datetime.now(UTC)
        labels = alert.get("labels") or {}
        fingerprint = alert["fingerprint"]
        for _ in range(3):
            current = self.open_for(fingerprint)
            if current is not None:
                self._execute("UPDATE octoctl_incidents SET deliveries = deliveries + 1, last_seen = ? WHERE id = ?",
                              (iso(now), current.id))
                self.add_event(current.id, "delivery", {"status": alert.get("status", "firing")}, now)
                return self.get(current.id), False
            try:
                values = (fingerprint, labels.get("alertname", ""), stack, "open", level, level_reason,
                          json.dumps(procedures), json.dumps(labels, sort_keys=True),
                          json.dumps(alert.get("annotations") or {}, sort_keys=True), alert.get("generatorURL") or "",
                          iso(parse_time(alert.get("startsAt"))), iso(now), iso(now))
                cur = self._execute(
                    "INSERT INTO octoctl_incidents (fingerprint, alertname, stack, state, level, level_reason, "
                    "procedures, labels, annotations, generator_url, starts_at, first_seen, last_seen) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" + (" RETURNING id" if self.postgres else ""),
                    values)
                number = int(cur.fetchone()[0]) if self.postgres else int(cur.lastrowid)
            except self._integrity_errors():
                continue  # another delivery opened it a moment ago: join that one
            self.add_event(number, "alert", {"status": "firing", "alertname": labels.get("alertname", ""),
                                             "starts_at": alert.get("startsAt") or "", "summary":
                                             (alert.get("annotations") or {}).get("summary", "")}, now)
            return self.get(number), True
        raise OctoctlError(f"could not record alert {fingerprint}", ExitCode.INTERNAL)

    def add_event(self, incident_id: int, kind: str, data: dict[str, Any], now: datetime | None = None) -> None:
        self._execute("INSERT INTO octoctl_incident_events (incident_id, at, kind, data) VALUES (?, ?, ?, ?)",
                      (incident_id, iso(now or datetime.now(UTC)), kind, json.dumps(data, sort_keys=True,
                                                                                      default=str)))

    def update(self, incident_id: int, **values: Any) -> None:
        allowed = {"state", "level", "level_reason", "procedures", "resolved_at", "acked_by", "last_run_id",
                   "last_seen"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        sets, params = [], []
        for name, value in values.items():
            if isinstance(value, datetime):
                value = iso(value)
            elif isinstance(value, list):
                value = json.dumps(value)
            sets.append(f"{name} = ?")
            params.append(value)
        self._execute(f"UPDATE octoctl_incidents SET {', '.join(sets)} WHERE id = ?", (*params, incident_id))

    def set_state(self, incident_id: int, state: str, now: datetime | None = None, **data: Any) -> Incident:
        if state not in STATES:
            raise ValueError(state)
        now = now or datetime.now(UTC)
        values: dict[str, Any] = {"state": state}
        if state in CLOSED_STATES:
            values["resolved_at"] = data.pop("resolved_at", None) or now
        if state == "acknowledged" and data.get("by"):
            values["acked_by"] = data["by"]
        self.update(incident_id, **values)
        self.add_event(incident_id, state, data, now)
        return self.get(incident_id)

    # --- the maintenance window ----------------------------------------------------------------

    def pause(self, until: datetime | None, by: str = "") -> None:
        """Until ``until`` the listener records alerts but fixes nothing (None lifts the pause)."""
        self._execute("DELETE FROM octoctl_control WHERE name = 'paused_until'")
        if until is not None:
            self._execute("INSERT INTO octoctl_control (name, value) VALUES ('paused_until', ?)",
                          (json.dumps({"until": iso(until), "by": by}),))

    def paused_until(self, now: datetime | None = None) -> datetime | None:
        rows = self._rows("SELECT value FROM octoctl_control WHERE name = 'paused_until'")
        if not rows:
            return None
        until = parse_time(json.loads(rows[0][0])["until"])
        return until if until and until > (now or datetime.now(UTC)) else None


def _time(text: str) -> datetime:
    parsed = parse_time(text)
    if parsed is None:
        raise ValueError(f"no time in {text!r}")
    return parsed


def parse_incident_id(ident: str | int) -> int:
    text = str(ident).strip().upper().removeprefix("INC-")
    if not text.isdigit():
        raise OctoctlError(f"{ident!r} is not an incident id (INC-<n> or <n>)", ExitCode.USAGE)
    return int(text)
