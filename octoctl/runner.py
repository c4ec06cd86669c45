"""Runs the collection's playbook with ansible-runner. The only module that imports ansible_runner.

How a run is set up
-------------------
* playbook: ``octollm.remediation.run`` (``playbooks/run.yml`` of the collection), found by Ansible on
  ``ANSIBLE_COLLECTIONS_PATH``, which octoctl sets to ``OCTOCTL_COLLECTIONS_PATH`` if set, else to
  ``<repo>/.collections`` when that exists, else leaves Ansible's own setting alone (design.md).
* inventory: checked first with ``ansible-inventory --list`` (unparsable -> exit 2), then passed by path;
  ``--limit`` as given.
* extra vars (design.md): ``octollm_procedures``, ``octollm_phase``, ``octollm_dry_run``, ``octollm_approve``,
  ``octollm_scenario`` (only when forced), ``octollm_run_id``; for a rollout in batches ``octollm_serial``,
  ``octollm_max_fail_percentage`` and ``octollm_fail_when_human_needed`` (HUMAN_NEEDED_TASK). Never a secret:
  credentials come from the inventory (file lookups, Vault, environment lookups) inside Ansible.
* environment: the caller's, plus ``ANSIBLE_COLLECTIONS_PATH`` (above), ``ANSIBLE_NOCOLOR=1``, ``PATH`` with the
  interpreter's bin directory first when it holds ansible-playbook, ``ANSIBLE_CONFIG=<repo>/ansible.cfg`` when
  that file exists and ``ANSIBLE_CONFIG`` is unset. octoctl does not set ``ANSIBLE_PYTHON_INTERPRETER`` (the
  inventory decides) nor ``ANSIBLE_STDOUT_CALLBACK`` (ansible-runner wraps the default one in its
  ``awx_display`` callback to produce events).
* verbosity: ``-v`` count -> ``ansible-playbook -v...``; with ``-v`` Ansible's own output is copied to stderr.
* progress: task names ``"cache | DIAGNOSE | read Redis INFO"`` become stderr lines
  ``cache_performance | <target> | DIAGNOSE read Redis INFO``; unreachable targets are always reported, failed
  tasks only with ``-v`` (a failed probe inside a block/rescue is evidence, not an error).

What ansible-runner writes to disk (checked against ansible-runner 2.4.3)
-------------------------------------------------------------------------
All of it under ``<run dir>/runner/`` (the private data dir; directories mode 700, files mode 600):

* ``env/envvars``, ``env/extravars``, ``env/settings``, ``env/cmdline``, ``env/passwords``, ``env/ssh_key``: the
  inputs, written by ansible-runner unless ``suppress_env_files=True``. octoctl sets it, so ``env/`` is never
  written; the extra vars go on the ansible-playbook command line instead (so they are visible in the process
  list and in ``artifacts/<ident>/command``, which is why they must never hold secrets).
* ``artifacts/<ident>/command``: JSON of the command line, the working directory **and the complete process
  environment** (the caller's environment plus octoctl's variables). ansible-runner 2.4.3 has no switch to
  stop it: any secret exported in the caller's shell (cloud tokens, ``*_PASSWORD``...) lands there for the
  duration of the run. octoctl rewrites the file when the run ends, keeping the command, the working
  directory and only the variables octoctl itself set.
* ``artifacts/<ident>/job_events/*.json``: one file per Ansible event, including module results (``res``) and,
  with ``DISPLAY_ARGS_TO_STDOUT``, task arguments. Results of ``no_log: true`` tasks are censored by the
  callback; everything else is kept in clear. At verbosity 0 octoctl's event handler drops ``res`` from
  successful and skipped task events and ``res.invocation`` (module arguments) from every event before it is
  written; with ``-v`` and more, events are kept whole for debugging.
* ``artifacts/<ident>/stdout`` and ``stderr``: Ansible's text output (module results appear there with ``-v``).
* ``artifacts/<ident>/job_events/<uuid>-partial.json``: transient copies written by the callback and removed
  by ansible-runner once read.
* ``artifacts/<ident>/fact_cache/``: gathered facts (which include ``ansible_env``, the environment of the
  target's Python) when ansible-runner's default ``jsonfile`` fact cache is used; octoctl uses the in-memory
  cache, so nothing is written.
* ``artifacts/<ident>/ssh_key_data``: a FIFO for an SSH key passed to ansible-runner; octoctl passes none.
* ``artifacts/<ident>/rc``, ``status``: the exit code and the final status.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from octoctl.config import Settings
from octoctl.errors import ExitCode, OctoctlError

ProgressFn = Callable[[str], None]

TASK_NAME_RE = re.compile(r"^\s*(?P<prefix>[^|]+?)\s*\|\s*(?P<phase>[A-Z][A-Z_ ]*?)\s*\|\s*(?P<step>.+?)\s*$")
MISSING_TOOL_MARKERS = (
    "failed to import the required python library",
    "no module named",
    "command not found",
    "no such file or directory",
    "couldn't resolve module/action",
)
NOT_FOUND_MARKERS = ("could not be found", "couldn't resolve module/action", "unable to find", "was not found")
KEEP_RESULT_EVENTS = frozenset(
    {"runner_on_failed", "runner_on_unreachable", "runner_item_on_failed", "runner_on_async_failed"}
)
DROP_RESULT_EVENTS = frozenset({"runner_on_ok", "runner_item_on_ok", "runner_on_skipped", "runner_item_on_skipped"})
ENV_KEEP = ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_CONFIG", "ANSIBLE_NOCOLOR", "PATH")
#: The report's last task (roles/_common/tasks/report.yml): with octollm_fail_when_human_needed it fails a host whose
#: results need a human, after they were published. octoctl sets it for rollouts in batches (``--serial``), so that
#: such a stack counts as failed for Ansible's serial/max_fail_percentage; its results, not this failure, judge it.
HUMAN_NEEDED_TASK = "Run | REPORT | fail when a human is needed"


@dataclass
class RunSpec:
    """One ansible-playbook invocation."""

    playbook: str
    inventory: Path
    extravars: dict[str, Any]
    private_data_dir: Path
    ident: str
    limit: str | None = None
    verbosity: int = 0
    # Diagnosis and dry runs run in check mode: a second guard, beside the roles' own, that nothing changes.
    check_mode: bool = False


@dataclass
class HostOutcome:
    """What Ansible said about one host."""

    name: str
    unreachable: bool = False
    failed: bool = False
    human_needed: bool = False
    """Failed only by the report's HUMAN_NEEDED_TASK: its results are complete, it is not an error."""
    messages: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return self.messages[0] if self.messages else ""


@dataclass
class RunOutcome:
    """The result of one ansible-playbook run."""

    rc: int
    status: str
    report: dict[str, dict[str, Any]]
    """``octollm_report`` from the custom stats: {host: {procedure: RESULT}}."""
    hosts: dict[str, HostOutcome]
    stats_seen: bool
    errors: list[str] = field(default_factory=list)
    """``ERROR`` lines of Ansible's output (why a run stopped before the stats)."""
    artifact_dir: Path | None = None


# --- pure helpers (unit-tested on real ansible-runner output) ---------------------------------------


def outcome_from_events(
    events: Iterable[dict[str, Any]], rc: int, status: str, artifact_dir: Path | None = None
) -> RunOutcome:
    """Fold ansible-runner events into a RunOutcome."""
    hosts: dict[str, HostOutcome] = {}
    report: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    stats: dict[str, Any] | None = None
    for event in events:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        if kind == "runner_on_failed" and host and str(data.get("task") or "").startswith(HUMAN_NEEDED_TASK):
            hosts.setdefault(host, HostOutcome(host)).human_needed = True
        elif kind in ("runner_on_unreachable", "runner_on_failed") and host and not data.get("ignore_errors"):
            outcome = hosts.setdefault(host, HostOutcome(host))
            # a failure inside a block's rescue is not a failed host: the stats decide below
            if kind == "runner_on_unreachable":
                outcome.unreachable = True
            else:
                outcome.failed = True
            result = data.get("res") or {}
            message = _one_line(str(result.get("msg") or result.get("stderr") or result.get("reason") or kind))
            outcome.messages.append(f"{data.get('task')}: {message}" if data.get("task") else message)
        elif kind == "playbook_on_stats":
            stats = data
            found = (data.get("artifact_data") or {}).get("octollm_report") or {}
            if isinstance(found, dict):
                report = {str(h): v for h, v in found.items() if isinstance(v, dict)}
        elif kind in ("error", "verbose") or not kind:
            for line in str(event.get("stdout", "")).splitlines():
                clean = _strip_ansi(line).strip()
                if clean.startswith(("[ERROR]", "ERROR!")):
                    errors.append(clean.removeprefix("[ERROR]:").removeprefix("ERROR!").strip())
    if stats is not None:
        dark, failures = stats.get("dark") or {}, stats.get("failures") or {}
        for name in {*hosts, *dark, *failures, *(stats.get("processed") or {})}:
            outcome = hosts.setdefault(name, HostOutcome(name))
            outcome.unreachable = name in dark
            outcome.failed = name in failures and not outcome.human_needed
    return RunOutcome(rc, status, report, hosts, stats is not None, errors, artifact_dir)


def outcome_from_artifacts(artifact_dir: Path) -> RunOutcome:
    """Rebuild a RunOutcome from ``artifacts/<ident>/`` (job events, rc, status) as ansible-runner left them."""
    events = []
    for path in (artifact_dir / "job_events").glob("*.json"):
        if path.name.endswith("-partial.json"):
            continue
        events.append(json.loads(path.read_text(encoding="utf-8")))
    events.sort(key=lambda e: e.get("counter", 0))
    rc_file, status_file = artifact_dir / "rc", artifact_dir / "status"
    rc = int(rc_file.read_text().strip() or 0) if rc_file.is_file() else -1
    status = status_file.read_text().strip() if status_file.is_file() else "unknown"
    return outcome_from_events(events, rc, status, artifact_dir)


def check_outcome(outcome: RunOutcome, targets: list[str], playbook: str, collections: str) -> None:
    """Raise the run-level errors: the playbook did not run at all, or no target could be reached."""
    if not outcome.stats_seen:
        detail = outcome.errors[0] if outcome.errors else f"ansible-playbook ended with rc {outcome.rc}"
        lowered = detail.lower()
        if any(marker in lowered for marker in NOT_FOUND_MARKERS):
            raise OctoctlError(
                f"{detail} (collections path: {collections}; run scripts/setup.sh or set OCTOCTL_COLLECTIONS_PATH)",
                ExitCode.ENVIRONMENT,
            )
        raise OctoctlError(f"ansible-playbook failed before any result: {detail}", ExitCode.INTERNAL)
    wanted = targets or list(outcome.hosts)
    unreachable = [h for h in wanted if h in outcome.hosts and outcome.hosts[h].unreachable]
    if wanted and len(unreachable) == len(wanted) and not any(h in outcome.report for h in wanted):
        detail = "; ".join(f"{h}: {outcome.hosts[h].message}" for h in unreachable)
        raise OctoctlError(f"unreachable: {detail}", ExitCode.ENVIRONMENT)


def looks_like_missing_tool(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in MISSING_TOOL_MARKERS)


def progress_line(event: dict[str, Any], procedures_by_prefix: dict[str, str]) -> str | None:
    """``procedure | target | step`` for a task start whose name follows "prefix | PHASE | step"."""
    if event.get("event") != "runner_on_start":
        return None
    data = event.get("event_data") or {}
    match = TASK_NAME_RE.match(str(data.get("task") or ""))
    if match is None:
        return None
    role = str(data.get("role") or "")
    procedure = role if role in procedures_by_prefix.values() else procedures_by_prefix.get(
        match["prefix"].lower(), match["prefix"]
    )
    return f"{procedure} | {data.get('host', '?')} | {match['phase']} {match['step']}"


def scrub_event(event: dict[str, Any]) -> dict[str, Any]:
    """Drop module results of successful/skipped tasks and module arguments everywhere (verbosity 0)."""
    data = event.get("event_data")
    if not isinstance(data, dict):
        return event
    result = data.get("res")
    if event.get("event") in DROP_RESULT_EVENTS and "res" in data:
        data["res"] = {"changed": result.get("changed", False)} if isinstance(result, dict) else {}
    elif isinstance(result, dict):
        result.pop("invocation", None)
        for item in result.get("results") or []:
            if isinstance(item, dict):
                item.pop("invocation", None)
    return event


def scrub_command_file(artifact_dir: Path, keep: dict[str, str]) -> None:
    """Rewrite ``artifacts/<ident>/command`` without the process environment, except ``keep``."""
    path = artifact_dir / "command"
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        data = {}
    data["env"] = dict(keep)
    data["env_note"] = "environment removed by octoctl; only the variables octoctl set are kept"
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def _one_line(text: str) -> str:
    return " ".join(_strip_ansi(text).split())


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


# --- the runner ------------------------------------------------------------------------------------


class Runner:
    """Checks the inventory and runs the playbook through ansible-runner."""

    def __init__(
        self,
        settings: Settings,
        progress: ProgressFn | None = None,
        procedures_by_prefix: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress or (lambda line: None)
        self.procedures_by_prefix = procedures_by_prefix or {}

    # environment ---------------------------------------------------------------------------------

    def envvars(self) -> dict[str, str]:
        env = {"ANSIBLE_NOCOLOR": "1", "PATH": self.settings.tool_path()}
        if self.settings.collections_path is not None:
            env["ANSIBLE_COLLECTIONS_PATH"] = self.settings.collections_path
        config = self.settings.repo_root / "ansible.cfg"
        if "ANSIBLE_CONFIG" not in self.settings.env and config.is_file():
            env["ANSIBLE_CONFIG"] = str(config)
        return env

    def collections_description(self) -> str:
        return os.pathsep.join(str(p) for p in self.settings.effective_collections_paths()) or "(Ansible default)"

    def require_tool(self, name: str) -> str:
        found = shutil.which(name, path=self.settings.tool_path())
        if found is None:
            raise OctoctlError(
                f"{name} not found on PATH: install ansible-core (scripts/setup.sh)", ExitCode.ENVIRONMENT
            )
        return found

    # inventory -------------------------------------------------------------------------------------

    def check_inventory(self, inventory: Path, limit: str | None = None) -> list[str]:
        """The hosts the run will target. Exit 2 when the inventory is missing or does not parse, or the
        limit matches nothing."""
        if not inventory.exists():
            raise OctoctlError(f"inventory {inventory} does not exist (pass -i/--inventory)", ExitCode.USAGE)
        tool = self.require_tool("ansible-inventory")
        command = [tool, "-i", str(inventory), "--list"]
        if limit:
            command += ["--limit", limit]
        env = dict(self.settings.env)
        env.update(self.envvars())
        env.update({"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"})
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
        except subprocess.TimeoutExpired as exc:
            raise OctoctlError(f"ansible-inventory timed out reading {inventory}", ExitCode.ENVIRONMENT) from exc
        if done.returncode != 0:
            raise OctoctlError(
                f"cannot read inventory {inventory}: {_first_error(done.stderr)}", ExitCode.USAGE
            )
        try:
            data = json.loads(done.stdout)
        except ValueError as exc:
            raise OctoctlError(
                f"cannot read inventory {inventory}: ansible-inventory gave no JSON", ExitCode.USAGE
            ) from exc
        hosts = sorted(_inventory_hosts(data))
        if not hosts:
            what = f"--limit {limit!r} matches no host in" if limit else "no host in"
            raise OctoctlError(f"{what} inventory {inventory}", ExitCode.USAGE)
        return hosts

    # run -------------------------------------------------------------------------------------------

    def run(self, spec: RunSpec, targets: list[str] | None = None) -> RunOutcome:
        """Run the playbook; raise OctoctlError for a missing tool (3), a missing collection (3), no target
        reachable (3) or a playbook that stopped before any result (4)."""
        self.require_tool("ansible-playbook")
        spec.private_data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        envvars = self.envvars()
        verbose = spec.verbosity > 0

        events: list[dict[str, Any]] = []

        def on_event(event: dict[str, Any]) -> bool:
            events.append(event)
            line = progress_line(event, self.procedures_by_prefix)
            if line:
                self.progress(line)
            kind = event.get("event")
            data = event.get("event_data") or {}
            # failures inside a block/rescue are evidence, not errors: only -v shows them
            if kind == "runner_on_unreachable" or (kind == "runner_on_failed" and verbose
                                                   and not data.get("ignore_errors")):
                res = data.get("res") or {}
                word = "UNREACHABLE" if kind == "runner_on_unreachable" else "FAILED"
                self.progress(f"{data.get('role') or '-'} | {data.get('host', '?')} | {word} {data.get('task', '')}: "
                              f"{_one_line(str(res.get('msg', '')))}")
            if verbose:
                text = _strip_ansi(str(event.get("stdout", ""))).rstrip()
                if text:
                    self.progress(text)
            else:
                scrub_event(event)
            return True

        try:
            result = ansible_runner.run(
                private_data_dir=str(spec.private_data_dir),
                ident=spec.ident,
                playbook=spec.playbook,
                inventory=str(spec.inventory.resolve()),
                limit=spec.limit,
                extravars=spec.extravars,
                envvars=envvars,
                verbosity=spec.verbosity or None,
                cmdline="--check" if spec.check_mode else None,
                quiet=True,
                suppress_env_files=True,
                fact_cache_type="memory",
                event_handler=on_event,
            )
        finally:
            scrub_command_file(spec.private_data_dir / "artifacts" / spec.ident, {
                k: v for k, v in envvars.items() if k in ENV_KEEP
            })
        artifact_dir = Path(result.config.artifact_dir)
        outcome = outcome_from_events(events, int(result.rc or 0), str(result.status), artifact_dir)
        if result.status == "timeout":
            raise OctoctlError("ansible-playbook timed out", ExitCode.ENVIRONMENT)
        check_outcome(outcome, targets or [], spec.playbook, self.collections_description())
        return outcome


def _inventory_hosts(data: dict[str, Any]) -> set[str]:
    hosts = set((data.get("_meta") or {}).get("hostvars") or {})
    for name, group in data.items():
        if name != "_meta" and isinstance(group, dict):
            hosts.update(group.get("hosts") or [])
    return hosts


def _first_error(stderr: str) -> str:
    lines = [_strip_ansi(line).strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("[ERROR]", "ERROR!")):
            return line.removeprefix("[ERROR]:").removeprefix("ERROR!").strip()
    for line in lines:
        if line.startswith("[WARNING]"):
            return line.removeprefix("[WARNING]:").strip()
    return lines[0] if lines else "ansible-inventory failed"
