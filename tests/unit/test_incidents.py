"""Incidents: the escalation rules (time, breadth, security, procedure level), the store (SQLite and PostgreSQL,
duplicate deliveries, resolution, the maintenance window) and the per-stack run lock (file and advisory lock)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from octoctl.errors import OctoctlError
from octoctl.incidents import (
    Incident,
    IncidentStore,
    escalate,
    parse_duration,
    parse_incident_id,
    parse_time,
    redact_url,
)
from octoctl.runlock import stack_lock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kubernetes"))
from postgres_standin import postgres  # noqa: E402

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
L2_AFTER = timedelta(minutes=15)
LEVELS = {"service_unavailable": "L1", "memory_leaks": "L2", "resource_exhaustion": "L2",
          "security_violations": "L3", "database_connections": "L1"}


def incident(procedures: list[str], *, service: str | None = "orchestrator", state: str = "open",
             level: str = "L1", alertname: str = "ServiceDown", stack: str = "lab", ident: int = 1) -> Incident:
    labels = {"alertname": alertname, **({"service": service} if service else {})}
    return Incident(id=ident, fingerprint=f"f{ident}", alertname=alertname, stack=stack, state=state, level=level,
                    level_reason="", procedures=procedures, labels=labels, annotations={}, generator_url="",
                    starts_at=T0, first_seen=T0, last_seen=T0)


def alert(fingerprint: str = "abc", name: str = "ServiceDown", status: str = "firing", **labels: str) -> dict:
    return {"status": status, "fingerprint": fingerprint, "labels": {"alertname": name, **labels},
            "annotations": {"summary": f"{name} fires"}, "startsAt": "2026-12-07T10:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://p:9090/graph?g0.expr=up+%3D%3D+0"}


# --- escalation ------------------------------------------------------------------------------------


def test_l1_stays_l1_before_the_clock_and_rises_to_l2_after_it() -> None:
    one = incident(["service_unavailable"])
    assert escalate(one, T0 + timedelta(minutes=14, seconds=59), [one], L2_AFTER, LEVELS)[0] == "L1"
    level, reason = escalate(one, T0 + L2_AFTER, [one], L2_AFTER, LEVELS)
    assert level == "L2" and "unresolved after 15 min" in reason


def test_the_clock_is_a_setting() -> None:
    one = incident(["service_unavailable"])
    assert escalate(one, T0 + timedelta(seconds=20), [one], timedelta(seconds=20), LEVELS)[0] == "L2"


def test_an_acknowledged_or_resolved_incident_does_not_rise_with_time() -> None:
    for state in ("acknowledged", "remediated", "resolved", "closed"):
        one = incident(["service_unavailable"], state=state)
        assert escalate(one, T0 + timedelta(hours=2), [], L2_AFTER, LEVELS)[0] == "L1"


def test_each_procedure_keeps_its_own_level() -> None:
    level, reason = escalate(incident(["memory_leaks", "resource_exhaustion"]), T0, [], L2_AFTER, LEVELS)
    assert level == "L2" and "procedure level" in reason


def test_a_security_violation_is_l3() -> None:
    assert escalate(incident(["security_violations"]), T0, [], L2_AFTER, LEVELS)[0] == "L3"
    unknown = incident([], alertname="SecurityViolationDetected")
    assert escalate(unknown, T0, [], L2_AFTER, LEVELS)[0] == "L3"


def test_more_than_one_failing_service_on_the_stack_is_l3() -> None:
    one = incident(["service_unavailable"], service="orchestrator", ident=1)
    two = incident(["service_unavailable"], service="planner-arm", ident=2)
    level, reason = escalate(one, T0, [one, two], L2_AFTER, LEVELS)
    assert level == "L3" and "multi-service failure (orchestrator, planner-arm)" in reason


def test_an_alert_that_names_no_service_is_not_part_of_a_multi_service_failure() -> None:
    one = incident(["service_unavailable"], service="orchestrator", ident=1)
    two = incident(["service_unavailable"], service="planner-arm", ident=2)
    cache = incident(["cache_performance"], service=None, alertname="CacheMissRate", ident=3)
    assert escalate(cache, T0, [one, two, cache], L2_AFTER, LEVELS)[0] == "L1"


def test_breadth_counts_open_incidents_of_the_same_stack_only() -> None:
    one = incident(["service_unavailable"], service="orchestrator", ident=1)
    other_stack = incident(["service_unavailable"], service="planner-arm", ident=2, stack="prod")
    resolved = incident(["service_unavailable"], service="coder-arm", ident=3, state="resolved")
    assert escalate(one, T0, [one, other_stack, resolved], L2_AFTER, LEVELS)[0] == "L1"


def test_a_run_that_leaves_problems_raises_the_level() -> None:
    assert escalate(incident(["service_unavailable"]), T0, [], L2_AFTER, LEVELS, run_level="L2")[0] == "L2"


def test_a_level_never_falls() -> None:
    one = incident(["service_unavailable"], level="L3")
    one.level_reason = "L3: multi-service failure"
    assert escalate(one, T0, [one], L2_AFTER, LEVELS) == ("L3", "L3: multi-service failure")


def test_parsers() -> None:
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("20s") == timedelta(seconds=20)
    assert parse_duration("90") == timedelta(seconds=90)
    with pytest.raises(OctoctlError):
        parse_duration("soon")
    assert parse_time("2026-12-07T10:00:00.123456789Z") == datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_incident_id("INC-12") == parse_incident_id("inc-12") == parse_incident_id(12) == 12
    assert redact_url("postgresql://octoctl:s3cret@db/incidents") == "postgresql://octoctl:***@db/incidents"


# --- the store (both back ends) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres() as port:
        yield f"postgresql://postgres@127.0.0.1:{port}/octollm"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IncidentStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'incidents.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        import psycopg2

        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS octoctl_incident_events, octoctl_incidents, octoctl_control")
        conn.close()
    found = IncidentStore(url)
    yield found
    found.close()


def test_duplicate_deliveries_join_one_incident(store: IncidentStore) -> None:
    first, new = store.open_or_join(alert(), "lab", ["service_unavailable"], "L1", "", T0)
    again, new_again = store.open_or_join(alert(), "lab", ["service_unavailable"], "L1", "", T0 + timedelta(seconds=5))
    assert new and not new_again
    assert again.id == first.id and again.deliveries == 2
    assert [e.kind for e in again.events] == ["alert", "delivery"]
    assert again.key == f"INC-{first.id}"
    assert again.starts_at == datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)  # kept to the second
    assert len(store.find()) == 1


def test_concurrent_deliveries_make_one_incident(store: IncidentStore) -> None:
    results: list[bool] = []
    url = store.url

    def deliver() -> None:
        mine = IncidentStore(url)
        results.append(mine.open_or_join(alert("race"), "lab", [], "L1", "")[1])
        mine.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert store.open_for("race") is not None and store.open_for("race").deliveries == 4  # type: ignore[union-attr]


def test_a_resolved_incident_lets_the_next_firing_open_a_new_one(store: IncidentStore) -> None:
    first, _ = store.open_or_join(alert(), "lab", ["service_unavailable"], "L1", "", T0)
    resolved = store.set_state(first.id, "resolved", T0 + timedelta(minutes=3), resolved_at=T0 + timedelta(minutes=2))
    assert resolved.state == "resolved" and resolved.resolved_at == T0 + timedelta(minutes=2)
    assert store.open_for("abc") is None
    second, new = store.open_or_join(alert(), "lab", ["service_unavailable"], "L1", "", T0 + timedelta(minutes=10))
    assert new and second.id != first.id


def test_updates_runs_and_lookups(store: IncidentStore) -> None:
    one, _ = store.open_or_join(alert(), "lab", ["service_unavailable"], "L1", "", T0)
    store.add_event(one.id, "run", {"run_id": "20261207T100102-abcdef", "status": "fixed"})
    store.update(one.id, state="remediated", level="L2", level_reason="L2: test", last_run_id="20261207T100102-abcdef")
    found = store.for_run("20261207T100102-abcdef")
    assert found is not None and found.id == one.id and found.runs() == ["20261207T100102-abcdef"]
    assert (found.state, found.level, found.level_reason) == ("remediated", "L2", "L2: test")
    assert store.for_run("20261207T100102-000000") is None
    acked = store.set_state(one.id, "acknowledged", by="alice")
    assert acked.acked_by == "alice" and acked.is_open
    assert [i.id for i in store.find(("acknowledged",))] == [one.id]
    with pytest.raises(OctoctlError, match="no incident"):
        store.get("INC-999")


def test_the_maintenance_window(store: IncidentStore) -> None:
    assert store.paused_until(T0) is None
    store.pause(T0 + timedelta(minutes=30), by="bob")
    assert store.paused_until(T0) == T0 + timedelta(minutes=30)
    assert store.paused_until(T0 + timedelta(minutes=31)) is None
    store.pause(None)
    assert store.paused_until(T0) is None


# --- the run lock ----------------------------------------------------------------------------------


def _hold_twice(state_dir: Path, url: str | None) -> list[tuple[str, float]]:
    log: list[tuple[str, float]] = []

    def run(name: str) -> None:
        with stack_lock(state_dir, url, ["lab"], timeout=20):
            log.append((f"{name}-in", time.monotonic()))
            time.sleep(0.6)
            log.append((f"{name}-out", time.monotonic()))

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    return log


def test_runs_on_one_stack_never_overlap_file_lock(tmp_path: Path) -> None:
    log = _hold_twice(tmp_path, None)
    assert [name for name, _ in log] == ["a-in", "a-out", "b-in", "b-out"]


def test_runs_on_one_stack_never_overlap_advisory_lock(tmp_path: Path, pg_url: str) -> None:
    log = _hold_twice(tmp_path, pg_url)
    assert [name for name, _ in log] == ["a-in", "a-out", "b-in", "b-out"]
    assert not (tmp_path / "locks").exists()  # the PostgreSQL store's lock is in the database


def test_a_busy_stack_gives_up_after_the_timeout(tmp_path: Path) -> None:
    with stack_lock(tmp_path, None, ["lab"], timeout=5):
        done: list[BaseException] = []

        def other() -> None:
            try:
                with stack_lock(tmp_path, None, ["lab"], timeout=0.3):
                    pass
            except OctoctlError as exc:
                done.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert done and "stack lab is busy" in str(done[0]) and '"pid"' in str(done[0])
    with stack_lock(tmp_path, None, ["lab", "other"], timeout=1):  # free again
        pass


def test_other_stacks_do_not_wait(tmp_path: Path) -> None:
    with stack_lock(tmp_path, None, ["lab"], timeout=1), stack_lock(tmp_path, None, ["prod"], timeout=0.2):
        pass
