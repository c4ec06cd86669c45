"""Run storage: one directory per run, named by its run id, holding ``report.json`` and ansible-runner's
private data dir (``runner/``, with ``artifacts/<ident>/``).

Layout (``<runs>`` is ``$OCTOCTL_STATE_DIR/runs`` or ``${XDG_STATE_HOME:-~/.local/state}/octoctl/runs``)::

    <runs>/20261128T180102-a1b2c3/report.json       the RunReport (mode 600)
    <runs>/20261128T180102-a1b2c3/runner/artifacts/1-diagnose/{command,stdout,stderr,rc,status,job_events/}

Directories are created with mode 700. Retention is applied each time a run starts: runs older than
``OCTOCTL_RETENTION_DAYS`` (default 30, 0 keeps all) go, then the oldest beyond ``OCTOCTL_MAX_RUNS``
(default 200, 0 means no limit).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from octoctl.errors import ExitCode, OctoctlError
from octoctl.models import RunReport

RUN_ID_RE = re.compile(r"^(?P<stamp>\d{8}T\d{6})-[0-9a-f]{6}$")
REPORT_FILE = "report.json"
PLAN_FILE = "plan.json"
RUNNER_DIR = "runner"
LATEST = ("latest", "last")


def new_run_id(now: datetime | None = None) -> str:
    """``YYYYmmddTHHMMSS-<6 hex>`` in UTC, so that names sort by time."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def run_id_time(run_id: str) -> datetime | None:
    match = RUN_ID_RE.match(run_id)
    if match is None:
        return None
    return datetime.strptime(match["stamp"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


class Store:
    """Saves and loads run reports; prunes old runs."""

    def __init__(self, runs_dir: Path, retention_days: int = 30, max_runs: int = 200) -> None:
        self.runs_dir = runs_dir
        self.retention_days = retention_days
        self.max_runs = max_runs

    def _ensure_root(self) -> None:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise OctoctlError(
                f"cannot create the run directory {self.runs_dir}: {exc.strerror}", ExitCode.ENVIRONMENT
            ) from exc

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def runner_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / RUNNER_DIR

    def create(self, now: datetime | None = None) -> str:
        """Prune, then make a new run directory; returns its run id."""
        self._ensure_root()
        self.prune(now, reserve=1)
        for _ in range(10):
            run_id = new_run_id(now)
            try:
                self.run_dir(run_id).mkdir(mode=0o700)
            except FileExistsError:
                continue
            self.runner_dir(run_id).mkdir(mode=0o700)
            return run_id
        raise OctoctlError("could not allocate a run id", ExitCode.INTERNAL)

    def save(self, report: RunReport) -> Path:
        run_dir = self.run_dir(report.run_id)
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = run_dir / REPORT_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(report.model_dump_json(indent=2))
            handle.write("\n")
        os.replace(tmp, path)
        return path

    def save_plan(self, run_id: str, plan: dict[str, Any]) -> Path:
        """The plan a run stopped at (``plan.json``, mode 600): what ``octoctl approve RUN_ID`` applies."""
        path = self.run_dir(run_id) / PLAN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(plan, handle, indent=2, sort_keys=True)
            handle.write("\n")
        return path

    def load_plan(self, run_id: str) -> dict[str, Any]:
        run_id = self.resolve(run_id)
        path = self.run_dir(run_id) / PLAN_FILE
        if not path.is_file():
            raise OctoctlError(f"run {run_id} stored no plan to approve (only a fix that stopped at awaiting "
                               "approval, or a fix --dry-run, stores one)", ExitCode.USAGE)
        try:
            plan: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise OctoctlError(f"the plan {path} is unreadable: {exc}", ExitCode.INTERNAL) from exc
        return plan

    def list_runs(self) -> list[str]:
        """Run ids with a saved report, oldest first."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.runs_dir.iterdir()
            if RUN_ID_RE.match(entry.name) and (entry / REPORT_FILE).is_file()
        )

    def resolve(self, run_id: str) -> str:
        if run_id in LATEST:
            runs = self.list_runs()
            if not runs:
                raise OctoctlError(f"no run saved yet in {self.runs_dir}", ExitCode.USAGE)
            return runs[-1]
        if not RUN_ID_RE.match(run_id):
            raise OctoctlError(f"{run_id!r} is not a run id (YYYYmmddTHHMMSS-xxxxxx, or 'latest')", ExitCode.USAGE)
        return run_id

    def load(self, run_id: str) -> RunReport:
        run_id = self.resolve(run_id)
        path = self.run_dir(run_id) / REPORT_FILE
        if not path.is_file():
            raise OctoctlError(f"no report for run {run_id} in {self.runs_dir}", ExitCode.USAGE)
        try:
            return RunReport.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise OctoctlError(f"the report {path} is unreadable: {first}", ExitCode.INTERNAL) from exc

    def prune(self, now: datetime | None = None, reserve: int = 0) -> list[str]:
        """Delete runs past the retention age, then the oldest beyond the maximum count (less ``reserve``
        places kept free for runs about to start)."""
        if not self.runs_dir.is_dir():
            return []
        now = now or datetime.now(UTC)
        runs = sorted(e.name for e in self.runs_dir.iterdir() if e.is_dir() and RUN_ID_RE.match(e.name))
        doomed: list[str] = []
        if self.retention_days > 0:
            limit = now - timedelta(days=self.retention_days)
            for run_id in runs:
                stamp = run_id_time(run_id)
                if stamp is not None and stamp < limit:
                    doomed.append(run_id)
        kept = [r for r in runs if r not in doomed]
        excess = len(kept) - max(self.max_runs - reserve, 0)
        if self.max_runs > 0 and excess > 0:
            doomed += kept[:excess]
        for run_id in doomed:
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
        return doomed
