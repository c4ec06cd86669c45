"""The per-stack run lock: runs that change a stack (fix, approve, restore, prevent, the listener's fixes) never run
on one stack at once.

A stack is an inventory host (``lab`` in ``inventory/lab``). With the default SQLite incident store the lock is a
file lock (``flock``) in ``<state>/locks/``, which serialises the processes of one machine; with a PostgreSQL store
(``OCTOCTL_INCIDENTS_URL=postgresql://...``) it is a PostgreSQL advisory lock on that database, which serialises
several listeners and AWX jobs on different machines. A run waits for the lock up to ``lock_timeout`` (30 min),
saying on stderr who holds it, then gives up with exit 3.

:class:`LockedEngine` is the engine every entry point uses (``octoctl fix/approve/prevent/restore`` and
``octoctl alert``): the same flows, each inside the lock of the stacks it targets.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from octoctl.engine import Engine, Request
from octoctl.errors import ExitCode, OctoctlError
from octoctl.models import RunReport

ADVISORY_NAMESPACE = 7241  # the first key of pg_advisory_lock(int, int): octoctl's run locks
POLL = 0.5


def _holder() -> str:
    return json.dumps({"pid": os.getpid(), "since": datetime.now(UTC).isoformat(timespec="seconds"),
                       "command": os.environ.get("OCTOCTL_LOCK_HOLDER", "octoctl")})


@contextmanager
def file_lock(directory: Path, key: str, timeout: float,
              progress: Callable[[str], None] | None = None) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:60]
    path = directory / f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = Path(path).read_text(encoding="utf-8", errors="replace").strip() or "another run"
                    raise OctoctlError(f"stack {key} is busy: the run lock is held by {holder}",
                                       ExitCode.ENVIRONMENT) from None
                if not told and progress is not None:
                    progress(f"waiting for the run lock of stack {key} ({path})")
                    told = True
                time.sleep(POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder().encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def advisory_key(key: str) -> int:
    """A stable signed 32-bit number for the key (the second key of pg_advisory_lock(int, int))."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)


@contextmanager
def postgres_lock(url: str, key: str, timeout: float,
                  progress: Callable[[str], None] | None = None) -> Iterator[None]:
    import psycopg2

    conn = psycopg2.connect(url, connect_timeout=10)
    conn.autocommit = True
    try:
        deadline = time.monotonic() + timeout
        told = False
        with conn.cursor() as cur:
            while True:
                cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_NAMESPACE, advisory_key(key)))
                row = cur.fetchone()
                if row and row[0]:
                    break
                if time.monotonic() >= deadline:
                    raise OctoctlError(f"stack {key} is busy: another run holds its PostgreSQL advisory lock",
                                       ExitCode.ENVIRONMENT)
                if not told and progress is not None:
                    progress(f"waiting for the run lock of stack {key} (PostgreSQL advisory lock)")
                    told = True
                time.sleep(POLL)
        try:
            yield
        finally:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", (ADVISORY_NAMESPACE, advisory_key(key)))
    finally:
        conn.close()


@contextmanager
def stack_lock(state_dir: Path, incidents_url: str | None, stacks: list[str], timeout: float,
               progress: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the run lock of every stack (in sorted order, so that two runs never wait on each other)."""
    with ExitStack() as stack:
        for key in sorted(set(stacks)):
            if incidents_url and incidents_url.startswith(("postgresql://", "postgres://")):
                stack.enter_context(postgres_lock(incidents_url, key, timeout, progress))
            else:
                stack.enter_context(file_lock(state_dir / "locks", key, timeout, progress))
        yield


class LockedEngine(Engine):
    """The engine, with every run that may change a stack inside that stack's run lock."""

    def _locked(self, request: Request, call: Callable[[], RunReport]) -> RunReport:
        from octoctl.alertconfig import AlertSettings

        alerts = AlertSettings.load(self.settings.state_dir, self.settings.env)
        stacks = self.runner.check_inventory(request.inventory, request.limit)
        with stack_lock(self.settings.state_dir, alerts.incidents_url, stacks, alerts.lock_timeout.total_seconds(),
                        self.progress):
            return call()

    def fix(self, request: Request) -> RunReport:
        return self._locked(request, lambda: super(LockedEngine, self).fix(request))

    def prevent(self, request: Request) -> RunReport:
        return self._locked(request, lambda: super(LockedEngine, self).prevent(request))

    def approve(self, request: Request, source_run_id: str) -> RunReport:
        report = self._locked(request, lambda: super(LockedEngine, self).approve(request, source_run_id))
        _record_approval(self, report, source_run_id)
        return report


def _record_approval(engine: Any, report: RunReport, source_run_id: str) -> None:
    """When the approved plan came from an incident's run, the approval joins that incident's timeline."""
    try:
        from octoctl.alerts import record_approval

        record_approval(engine.settings, report, source_run_id)
    except OctoctlError as exc:  # the run itself is done and reported; say why the incident did not learn of it
        if engine.progress is not None:
            engine.progress(f"the incident of run {source_run_id} was not updated: {exc.message}")
