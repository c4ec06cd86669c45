"""The octoctl command line: thin Click commands over the library objects.

Errors become exit statuses in one place, ``OctoctlGroup.main``: an ``OctoctlError`` prints
``octoctl: error: <message>`` on stderr and exits with its code; Click usage errors exit 2; anything else is
octoctl's own error (exit 4). Tracebacks are shown only with ``--debug`` (or ``OCTOCTL_DEBUG=1``).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from octoctl import __version__
from octoctl.catalog import Catalog, Procedure, load_catalog
from octoctl.config import Settings
from octoctl.errors import ExitCode, OctoctlError
from octoctl.render import FORMATS, render_catalog, render_plan, render_report

EXIT_STATUS_EPILOG = """\b
Exit statuses (with several targets or procedures the highest wins):
  0  healthy, or fixed and verified, and no human needed
  1  a human is needed: problems remain, a service of the stack is down, a fix
     failed verification, steps await approval, --dry-run found something to
     do, or it escalates
  2  usage error: bad flags, a misspelt procedure name, an unknown scenario,
     an unreadable inventory
  3  environment: what octoctl cannot reach or log into (an inventory host,
     the Docker or Kubernetes API, a tool, its credentials)
  4  octoctl's own error
"""

F = TypeVar("F", bound=Callable[..., Any])

_STATE = {"debug": False}


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _STATE["debug"] = True


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


def _fail(message: str) -> None:
    if _STATE["debug"]:
        traceback.print_exc(file=sys.stderr)
    click.echo(f"octoctl: error: {' '.join(message.split())}", err=True)


class OctoctlGroup(click.Group):
    """A Click group whose ``main`` is the one place that maps exceptions to exit statuses."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        _STATE["debug"] = os.environ.get("OCTOCTL_DEBUG", "") not in ("", "0")
        code: int
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = int(rv) if isinstance(rv, int) else 0
        except OctoctlError as exc:
            _fail(exc.message)
            code = int(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            code = int(ExitCode.USAGE)
        except (click.exceptions.Abort, KeyboardInterrupt):
            _fail("interrupted: what already ran is in the run's report (octoctl report latest)")
            code = int(ExitCode.HUMAN_NEEDED)
        except Exception as exc:  # noqa: BLE001 - this is the one place that turns bugs into exit 4
            hint = "" if _STATE["debug"] else " (run with --debug for the traceback)"
            _fail(f"internal error: {type(exc).__name__}: {exc}{hint}")
            code = int(ExitCode.INTERNAL)
        if standalone_mode:
            sys.exit(code)
        return code


def stack_options(func: F) -> F:
    """-i/--inventory, --limit, -v, --debug (the commands over one stack's services; their own --format)."""
    func = click.option(
        "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
        help="Show tracebacks of errors.",
    )(func)
    func = click.option(
        "-v", "--verbose", "verbosity", count=True, help="More detail; passed on as Ansible verbosity (-vvv...)."
    )(func)
    func = click.option("--limit", metavar="PATTERN", help="Only these inventory hosts (Ansible --limit).")(func)
    func = click.option(
        "-i", "--inventory", type=click.Path(path_type=Path), default=None,
        help="Inventory (default: $OCTOCTL_INVENTORY or <repo>/inventory/lab).",
    )(func)
    return func


def rollout_options(func: F) -> F:
    """--serial, --max-fail-percentage: many stacks (inventory hosts) in batches (fix, prevent)."""
    func = click.option(
        "--max-fail-percentage", type=click.IntRange(0, 100), metavar="P", default=None,
        help="With --serial: stop the later batches once more than P % of a batch's stacks failed "
             "(default: only a batch that fails whole stops them).",
    )(func)
    func = click.option(
        "--serial", type=click.IntRange(min=1), metavar="N", default=None,
        help="Go through the inventory's stacks N at a time; a stack whose result needs a human fails its batch, "
             "and a failed batch stops the later ones (their stacks are reported not run).",
    )(func)
    return func


def common_options(func: F) -> F:
    """-i/--inventory, --limit, --format, -v, --debug: accepted by every command."""
    func = click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Report format."
    )(func)
    return stack_options(func)


@click.group(cls=OctoctlGroup, epilog=EXIT_STATUS_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="octoctl")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show tracebacks of errors.")
def cli() -> None:
    """Diagnose and fix an OctoLLM deployment with the octollm.remediation Ansible collection.

    Say what is wrong in your words, an alert name or a procedure name: `octoctl plan "redis hit rate low"`
    shows what would run, `octoctl diagnose cache` looks, `octoctl fix cache` repairs. Reports go to stdout,
    progress to stderr, and every run is saved (`octoctl report latest`).
    """


# --- helpers --------------------------------------------------------------------------------------


def _settings() -> Settings:
    return Settings.from_env()


def _catalog() -> Catalog:
    return load_catalog()


def _emit(text: str) -> None:
    click.echo(text)


def _unicode_ok() -> bool:
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower()
    return encoding.replace("-", "") in ("utf8", "utf_8")


def _confirm_on_tty() -> Callable[[list[Any]], bool] | None:
    """An interactive yes/no when stdin and stderr are terminals; None otherwise (never prompt in pipes/CI)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def confirm(pending: list[Any]) -> bool:
        _echo_err("These steps are disruptive:")
        for item in pending:
            _echo_err(f"  - {item.describe()}")
        return click.confirm("Apply them?", default=False, err=True)

    return confirm


def _check_rollout(serial: int | None, max_fail_percentage: int | None) -> None:
    if max_fail_percentage is not None and serial is None:
        raise click.UsageError("--max-fail-percentage needs --serial")


def _select(catalog: Catalog, texts: tuple[str, ...]) -> list[Procedure]:
    return _route(catalog, texts).selected


def _route(catalog: Catalog, texts: tuple[str, ...]) -> Any:
    """The routing plan of TEXT (every procedure, not confident, without TEXT)."""
    from octoctl.routing import Plan, Router

    if not texts:
        return Plan(texts=[], matches=[], selected=list(catalog.procedures), confident=False)
    return Router(catalog).plan(list(texts))


def _engine(settings: Settings, catalog: Catalog) -> Any:
    from octoctl.runlock import LockedEngine
    from octoctl.runner import Runner
    from octoctl.store import Store

    runner = Runner(settings, progress=_echo_err, procedures_by_prefix={p.short: p.name for p in catalog.procedures})
    from octoctl.history import record_after_run, revision_images

    store = Store(settings.runs_dir, settings.retention_days, settings.max_runs)
    engine = LockedEngine(settings, catalog, store, runner, confirm=_confirm_on_tty(), progress=_echo_err)
    engine.after_run = lambda request, report: record_after_run(settings, request, report)
    engine.run_vars = lambda: revision_images(settings.state_dir)
    return engine


def _request(command: str, procedures: list[Procedure], texts: tuple[str, ...], inventory: Path | None,
             limit: str | None, verbosity: int, settings: Settings, **flags: Any) -> Any:
    from octoctl.engine import Request

    return Request(
        command=command,
        procedures=procedures,
        inventory=inventory or settings.inventory,
        limit=limit,
        verbosity=verbosity,
        argv=list(texts),
        **flags,
    )


# --- commands -------------------------------------------------------------------------------------


@cli.command(epilog=EXIT_STATUS_EPILOG)
@common_options
def symptoms(inventory: Path | None, limit: str | None, fmt: str, verbosity: int) -> int:
    """List the procedures: names, alerts, symptoms, scenarios and whether each is available."""
    settings = _settings()
    catalog = _catalog()
    available = {p.name: settings.role_has_phase(p.role, "diagnose") for p in catalog.procedures}
    _emit(render_catalog(catalog, fmt, available))
    return int(ExitCode.HEALTHY)


@cli.command(epilog=EXIT_STATUS_EPILOG)
@click.argument("texts", nargs=-1, required=True, metavar="TEXT...")
@common_options
def plan(texts: tuple[str, ...], inventory: Path | None, limit: str | None, fmt: str, verbosity: int) -> int:
    """Show which procedures TEXT (symptoms, alert names, procedure names) selects, and why."""
    from octoctl.routing import Router

    _emit(render_plan(Router(_catalog()).plan(list(texts)), fmt))
    return int(ExitCode.HEALTHY)


@cli.command(epilog=EXIT_STATUS_EPILOG)
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@click.option("--all", "all_", is_flag=True, help="Every available procedure (the default without TEXT).")
@common_options
def diagnose(texts: tuple[str, ...], all_: bool, inventory: Path | None, limit: str | None, fmt: str,
             verbosity: int) -> int:
    """Diagnose without changing anything. Without TEXT: every procedure available in the collection."""
    if texts and all_:
        raise click.UsageError("give TEXT or --all, not both")
    settings, catalog = _settings(), _catalog()
    routed = _route(catalog, texts)
    request = _request("diagnose", routed.selected, texts, inventory, limit, verbosity, settings,
                       every_procedure=not routed.confident)
    report = _engine(settings, catalog).diagnose(request)
    _emit(render_report(report, fmt, _unicode_ok()))
    return report.exit_code


@cli.command(epilog=EXIT_STATUS_EPILOG)
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@click.option("--scenario", metavar="X", help="Force one of the procedure's scenarios (A-D).")
@click.option("--dry-run", is_flag=True, help="Diagnose and plan only; report what would change.")
@click.option("--approve", is_flag=True, help="Allow disruptive steps without asking.")
@rollout_options
@common_options
def fix(texts: tuple[str, ...], scenario: str | None, dry_run: bool, approve: bool, serial: int | None,
        max_fail_percentage: int | None, inventory: Path | None, limit: str | None, fmt: str, verbosity: int) -> int:
    """Diagnose, plan and fix. Disruptive steps need --approve or a yes on a terminal.

    TEXT is a symptom, an alert name, a pasted error message or a procedure name. Without TEXT, or when TEXT
    selects no procedure with confidence, every procedure is diagnosed and only fixes that need no approval are
    applied (even with --approve); the rest wait for `octoctl approve RUN_ID` or a fix of a named procedure.
    """
    settings, catalog = _settings(), _catalog()
    routed = _route(catalog, texts)
    if not routed.confident and scenario:
        raise click.UsageError("--scenario needs a procedure named in TEXT")
    _check_rollout(serial, max_fail_percentage)
    request = _request("fix", routed.selected, texts, inventory, limit, verbosity, settings,
                       scenario=scenario, dry_run=dry_run, approve=approve and routed.confident,
                       every_procedure=not routed.confident, safe_only=not routed.confident,
                       serial=serial, max_fail_percentage=max_fail_percentage)
    report = _engine(settings, catalog).fix(request)
    _emit(render_report(report, fmt, _unicode_ok()))
    return report.exit_code


@cli.command(epilog=EXIT_STATUS_EPILOG)
@click.argument("run_id", metavar="RUN_ID")
@click.option("--dry-run", is_flag=True, help="Check that the plan still holds; apply nothing.")
@common_options
def approve(run_id: str, dry_run: bool, inventory: Path | None, limit: str | None, fmt: str, verbosity: int) -> int:
    """Apply exactly the plan that run RUN_ID stopped at (a fix awaiting approval, or a fix --dry-run).

    Only the actions of that plan run, with the changes it showed; anything else a fresh diagnosis finds is held
    back awaiting approval. When an approved action is no longer planned, or its change differs (the evidence
    moved), nothing of the plan runs and octoctl exits 1 saying what changed.
    """
    from octoctl.store import Store

    settings, catalog = _settings(), _catalog()
    store = Store(settings.runs_dir, settings.retention_days, settings.max_runs)
    source = store.resolve(run_id)
    plan = store.load_plan(source)
    procedures = [p for p in catalog.procedures if p.role in (plan.get("procedures") or [])]
    request = _request("approve", procedures, (source,), inventory or Path(plan["inventory"]),
                       limit or plan.get("limit"), verbosity, settings, scenario=plan.get("scenario"),
                       dry_run=dry_run, approve=True, extra_vars=plan.get("extra_vars") or {})
    report = _engine(settings, catalog).approve(request, source)
    _emit(render_report(report, fmt, _unicode_ok()))
    return report.exit_code


@cli.command(epilog=EXIT_STATUS_EPILOG)
@click.argument("texts", nargs=-1, required=True, metavar="TEXT...")
@click.option("--dry-run", is_flag=True, help="Check and plan only.")
@click.option("--approve", is_flag=True, help="Allow disruptive measures (e.g. ALTER TABLE on a big table).")
@rollout_options
@common_options
def prevent(texts: tuple[str, ...], dry_run: bool, approve: bool, serial: int | None, max_fail_percentage: int | None,
            inventory: Path | None, limit: str | None, fmt: str, verbosity: int) -> int:
    """Apply the procedures' prevention measures (checks, limits, alerts). Disruptive ones need --approve."""
    settings, catalog = _settings(), _catalog()
    routed = _route(catalog, texts)
    _check_rollout(serial, max_fail_percentage)
    request = _request("prevent", routed.selected, texts, inventory, limit, verbosity, settings,
                       dry_run=dry_run, approve=approve and routed.confident, every_procedure=not routed.confident,
                       serial=serial, max_fail_percentage=max_fail_percentage)
    report = _engine(settings, catalog).prevent(request)
    _emit(render_report(report, fmt, _unicode_ok()))
    return report.exit_code


@cli.command(epilog=EXIT_STATUS_EPILOG)
@click.argument("run_id", metavar="RUN_ID")
@click.option("--dry-run", is_flag=True, help="Verify the backups and plan only.")
@click.option("--approve", is_flag=True, help="Allow the restore (disruptive, destructive) without asking.")
@common_options
def restore(run_id: str, dry_run: bool, approve: bool, inventory: Path | None, limit: str | None, fmt: str,
            verbosity: int) -> int:
    """Put the data back exactly as in the backups that run RUN_ID took before its repair.

    The backups are named in that run's report; each procedure's restore verifies its backup first and runs as
    a fix (plan, approval, apply, verification). Only the targets that have a backup are touched.
    """
    from octoctl.engine import backups_of
    from octoctl.store import Store

    settings, catalog = _settings(), _catalog()
    source = Store(settings.runs_dir, settings.retention_days, settings.max_runs).load(run_id)
    taken = backups_of(source)
    found = {role: by_target for role, by_target in taken.items() if settings.role_has_phase(role, "restore")}
    if not found:
        if taken:
            kept = "; ".join(f"{role}: {', '.join(sorted(set(paths.values())))}" for role, paths in taken.items())
            raise OctoctlError(
                f"run {source.run_id} took backups only of procedures that have no restore entry point ({kept}); "
                "they are kept for a person to restore by hand", ExitCode.USAGE)
        raise OctoctlError(f"run {source.run_id} took no backup that could be restored", ExitCode.USAGE)
    procedures = [p for p in catalog.procedures if p.role in found]
    targets = sorted({target for by_target in found.values() for target in by_target})
    request = _request("restore", procedures, (source.run_id,), inventory or Path(source.inventory),
                       limit or ":".join(targets), verbosity, settings, dry_run=dry_run, approve=approve,
                       extra_vars={f"{role}_restore_from": by_target for role, by_target in found.items()})
    report = _engine(settings, catalog).fix(request)
    _emit(render_report(report, fmt, _unicode_ok()))
    return report.exit_code


@cli.command(epilog=EXIT_STATUS_EPILOG)
@click.argument("run_id", metavar="RUN_ID")
@common_options
def report(run_id: str, inventory: Path | None, limit: str | None, fmt: str, verbosity: int) -> int:
    """Show a saved run's report (RUN_ID, or 'latest'). Exits 0 when the report was shown."""
    from octoctl.store import Store

    settings = _settings()
    store = Store(settings.runs_dir, settings.retention_days, settings.max_runs)
    _emit(render_report(store.load(run_id), fmt, _unicode_ok()))
    return int(ExitCode.HEALTHY)


@cli.command(epilog=EXIT_STATUS_EPILOG)
@common_options
def schema(inventory: Path | None, limit: str | None, fmt: str, verbosity: int) -> int:
    """Print the JSON schema of the run report (YAML with --format yaml)."""
    from octoctl.models import run_report_schema

    data = run_report_schema()
    if fmt == "yaml":
        import yaml

        _emit(yaml.safe_dump(data, sort_keys=False).rstrip("\n"))
    else:
        _emit(json.dumps(data, indent=2))
    return int(ExitCode.HEALTHY)


HEALTH_EPILOG = """\b
Exit statuses:
  0  every service is up, answers and its metrics are within the thresholds
  1  something is not: a service down, a failed /health or readiness, a
     crash loop, a metric over its threshold or one that could not be read
  2  usage error
  3  the stack cannot be reached (the inventory host, the Docker or
     Kubernetes API, a tool)
  4  octoctl's own error
"""


@cli.command(epilog=HEALTH_EPILOG)
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True,
              help="Output format.")
@click.option("--watch", type=click.IntRange(min=1), metavar="SECONDS", default=None,
              help="Refresh every SECONDS until interrupted (the last exit status is returned).")
@stack_options
def health(fmt: str, watch: int | None, inventory: Path | None, limit: str | None, verbosity: int) -> int:
    """Every service of the stack in one table: container or pod state, restarts, /health and readiness, and the
    key metrics (request rate, error rate, P95 latency, cache hit rate, DB connections, memory and CPU against
    limits), each judged with the threshold of the procedure that owns it. Reads only."""
    import time

    from octoctl import health as table

    settings, catalog = _settings(), _catalog()
    procedures = [p for p in catalog.procedures if p.role in table.PROCEDURES]
    engine = _engine(settings, catalog)

    def once() -> int:
        request = _request("health", procedures, (), inventory, limit, verbosity, settings)
        report = table.judge(engine.health(request, table.PLAYBOOK))
        _emit(table.render(report, fmt))
        return report.exit_code

    if watch is None:
        return once()
    code = int(ExitCode.HEALTHY)
    try:
        while True:
            if fmt == "table" and sys.stdout.isatty():
                click.clear()
            if fmt == "table":
                _emit(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()) + f" (every {watch}s; Ctrl-C stops)")
            code = once()
            time.sleep(watch)
    except KeyboardInterrupt:
        return code


def _stack(settings: Settings, inventory: Path | None, limit: str | None) -> Any:
    from octoctl.services import load_stack

    return load_stack(inventory or settings.inventory, limit,
                      [str(p) for p in settings.effective_collections_paths()])


SERVICE_EPILOG = """\b
Exit statuses:
  0  done
  1  the service has no container or pod, or the client failed (its own
     message says why)
  2  usage error: an unknown service, a bad --since, --grep or --tail
  3  the container runtime, the Kubernetes API or a tool cannot be reached
  4  octoctl's own error
"""


@cli.command(epilog=SERVICE_EPILOG)
@click.argument("service", metavar="SERVICE")
@click.option("--since", metavar="DURATION", help="Only lines of the last 30s, 10m, 2h, 1d (or since an ISO time).")
@click.option("--grep", metavar="REGEX", help="Only lines matching REGEX (matched after secrets are masked).")
@click.option("--tail", type=click.IntRange(min=1), metavar="N", help="Only the last N lines of each container.")
@stack_options
def logs(service: str, since: str | None, grep: str | None, tail: int | None, inventory: Path | None,
         limit: str | None, verbosity: int) -> int:
    """Show a service's logs (Compose through the container runtime, Kubernetes through the API), with secrets and
    personal data (credentials, keys, e-mail addresses, card numbers) masked."""
    from octoctl.services import log_lines, since_seconds

    if since:
        since_seconds(since)  # a bad --since is a usage error before anything is read
    stack = _stack(_settings(), inventory, limit)
    for line in log_lines(stack, service, since, grep, tail):
        _emit(line)
    return int(ExitCode.HEALTHY)


@cli.command(epilog=SERVICE_EPILOG, context_settings={"ignore_unknown_options": True})
@click.argument("which", metavar="postgres|redis", type=click.Choice(("postgres", "redis")))
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[CLIENT ARGS]...")
@click.option("--admin", is_flag=True, help="PostgreSQL: log in as the inventory's admin user.")
@stack_options
def shell(which: str, args: tuple[str, ...], admin: bool, inventory: Path | None, limit: str | None,
          verbosity: int) -> int:
    """Open psql or redis-cli on the stack's PostgreSQL or Redis with the inventory's credentials (passed in the
    client's environment, never on its command line nor printed). CLIENT ARGS go to the client, e.g.
    `octoctl shell postgres -c 'select 1'` or `octoctl shell redis PING`."""
    from octoctl.services import run_shell, shell_command

    return run_shell(shell_command(_stack(_settings(), inventory, limit), which, args, admin))


@cli.command(epilog=EXIT_STATUS_EPILOG)
@click.argument("service", metavar="SERVICE")
@click.option("--approve", is_flag=True, help="Restart it (disruptive); without: show the plan and stop.")
@common_options
def restart(service: str, approve: bool, inventory: Path | None, limit: str | None, fmt: str, verbosity: int) -> int:
    """Restart SERVICE with Service Unavailable's restart (Compose: docker compose restart, then wait for its
    healthcheck; Kubernetes: a rollout restart of its workload) and verify the stack is healthy. Without --approve
    the plan is shown and stored (exit 1, awaiting approval: `octoctl approve RUN_ID` applies it)."""
    settings, catalog = _settings(), _catalog()
    stack = _stack(settings, inventory, limit)
    stack.service(service)
    procedure = catalog.get("service_unavailable")
    request = _request("restart", [procedure], (service,), inventory, limit or stack.host, verbosity, settings,
                       dry_run=not approve, approve=approve,
                       extra_vars={"service_unavailable_restart_services": [service]})
    report = _engine(settings, catalog).fix(request)
    if not approve:
        report.notes.append(f"{service} is not restarted: it awaits approval (octoctl restart {service} --approve, "
                            "or octoctl approve RUN_ID)")
    _emit(render_report(report, fmt, _unicode_ok()))
    return report.exit_code


@cli.group(epilog=EXIT_STATUS_EPILOG)
def emergency() -> None:
    """The seed's emergency procedures, done safely."""


@emergency.command("restart", epilog=EXIT_STATUS_EPILOG)
@click.option("--approve", is_flag=True, help="Restart the stack (disruptive); without: show the plan and stop.")
@click.option("--volumes", is_flag=True, help="Also remove the stack's data (the seed's down -v), then restore "
              "PostgreSQL from the backup. Needs a typed confirmation or --yes-drop-volumes.")
@click.option("--yes-drop-volumes", is_flag=True, help="The second confirmation of --volumes, for scripts.")
@common_options
def emergency_restart(approve: bool, volumes: bool, yes_drop_volumes: bool, inventory: Path | None,
                      limit: str | None, fmt: str, verbosity: int) -> int:
    """The seed's complete system restart: a verified PostgreSQL backup, then the arms, the orchestrator and the
    data stores stopped in that order and started in reverse (each healthy before the next), then a diagnosis of
    every procedure. Each step's time is in the report. Without --approve the plan is shown and stored (exit 1:
    `octoctl approve RUN_ID` applies exactly it)."""
    settings, catalog = _settings(), _catalog()
    stack = _stack(settings, inventory, limit)
    if yes_drop_volumes and not volumes:
        raise OctoctlError("--yes-drop-volumes confirms --volumes", ExitCode.USAGE)
    if volumes and approve and not yes_drop_volumes:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise OctoctlError("--volumes removes the stack's data: confirm with --yes-drop-volumes (no terminal to "
                               "ask on)", ExitCode.USAGE)
        typed = click.prompt(f"--volumes removes the data of stack {stack.host} (restored from the backup taken "
                             "first). Type the stack's name to go on", default="", show_default=False, err=True)
        if typed.strip() != stack.host:
            raise OctoctlError("not confirmed: nothing was stopped or removed", ExitCode.USAGE)
    request = _request("emergency restart", [catalog.get("service_unavailable")], (), inventory,
                       limit or stack.host, verbosity, settings, dry_run=not approve, approve=approve,
                       extra_vars={"service_unavailable_emergency_restart": True,
                                   "service_unavailable_emergency_volumes": volumes})
    report = _engine(settings, catalog).fix(request)
    if not approve:
        report.notes.append("nothing was stopped: the restart awaits approval (octoctl emergency restart --approve, "
                            "or octoctl approve RUN_ID)")
        _emit(render_report(report, fmt, _unicode_ok()))
        return report.exit_code
    after = _engine(settings, catalog).diagnose(_request(
        "diagnose", _route(catalog, ()).selected, (), inventory, limit or stack.host, verbosity, settings,
        every_procedure=True))
    after.notes.insert(0, f"the diagnosis after the emergency restart (run {report.run_id})")
    if fmt == "json":
        _emit(json.dumps({"restart": json.loads(render_report(report, fmt, False)),
                          "diagnosis": json.loads(render_report(after, fmt, False))}, indent=2))
    else:
        _emit(render_report(report, fmt, _unicode_ok()) + "\n" + render_report(after, fmt, _unicode_ok()))
    return max(report.exit_code, after.exit_code)
HISTORY_EPILOG = """\b
Exit statuses:
  0  shown
  1  no history of SERVICE yet
  2  usage error: an unknown service
  3  the container runtime or the Kubernetes API cannot be reached
  4  octoctl's own error
"""


@cli.command(epilog=HISTORY_EPILOG)
@click.argument("service", metavar="SERVICE")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True,
              help="Output format.")
@stack_options
def history(service: str, fmt: str, inventory: Path | None, limit: str | None, verbosity: int) -> int:
    """The revisions of SERVICE: on Kubernetes its Deployment's rollout history (the ReplicaSets' revisions); on
    Compose the deployment history octoctl records on every run (image, configuration, environment: names of what
    changed, never a value), the running state recorded first. `octoctl rollback SERVICE [--to-revision N]` goes
    back to one."""
    from octoctl import history as hist

    settings = _settings()
    stack = _stack(settings, inventory, limit)
    stack.service(service)
    if stack.platform == "kubernetes":
        rows = hist.kubernetes_revisions(stack, service)
    else:
        hist.record_stack(settings.state_dir, stack, only=service)
        found = hist.History(settings.state_dir, stack.host).revisions(service)
        rows = [dict(item.as_dict(), change=", ".join(item.changes) + (
            f" (same as {item.same_as})" if item.same_as else ""), current=item is found[-1]) for item in found]
        for row in rows:
            row.pop("environment")  # keyed hashes: nothing a reader needs
    if not rows:
        why = "no ReplicaSet with a revision" if stack.platform == "kubernetes" else "it has no running container"
        raise OctoctlError(f"no history of {service} yet ({why})", ExitCode.HUMAN_NEEDED)
    _emit(hist.render(service, rows, fmt))
    return int(ExitCode.HEALTHY)


@cli.command(epilog=EXIT_STATUS_EPILOG)
@click.argument("service", metavar="SERVICE")
@click.option("--to-revision", type=click.IntRange(min=1), metavar="N", default=None,
              help="The revision to go back to (octoctl history SERVICE); default: the previous one.")
@click.option("--dry-run", is_flag=True, help="Show the exact change and stop.")
@click.option("--approve", is_flag=True, help="Roll back (disruptive); without: show the plan and stop.")
@common_options
def rollback(service: str, to_revision: int | None, dry_run: bool, approve: bool, inventory: Path | None,
             limit: str | None, fmt: str, verbosity: int) -> int:
    """Bring SERVICE back to its previous revision, or to --to-revision N, with Service Unavailable's actions, then
    verify the stack is healthy. Kubernetes: `kubectl rollout undo [--to-revision N]` (the named ReplicaSet's pod
    template). Compose: the recorded revision's image, configuration and environment, brought up through the
    deployment's own Compose project with one more Compose file (mode 0600 in octoctl's state; the project's files
    keep the newer revision: the next `docker compose up` of SERVICE redeploys it), then checked against the
    revision. Without --approve (or with --dry-run) the change is shown and stored (exit 1, awaiting approval)."""
    from octoctl import history as hist
    from octoctl.services import _redactor

    settings, catalog = _settings(), _catalog()
    stack = _stack(settings, inventory, limit)
    spec = stack.service(service)
    asked: dict[str, Any] = {"service": service, "to_revision": to_revision or 0}
    planned = None
    if stack.platform != "kubernetes":
        if spec.get("container_names") or spec.get("labels"):
            raise OctoctlError(f"{service} is not a service of the inventory's Compose project (found by container "
                               "names or labels): octoctl cannot bring one of its revisions back", ExitCode.USAGE)
        recorded = hist.record_stack(settings.state_dir, stack, only=service)
        if service not in recorded:
            raise OctoctlError(f"{service} has no running container on {stack.host}: nothing to roll back (octoctl "
                               f"restart {service} starts it)", ExitCode.HUMAN_NEEDED)
        now = hist.compose_states(stack, only=service)[service]
        book = hist.History(settings.state_dir, stack.host)
        planned = hist.plan_rollback(book, service, now, to_revision, _redactor())
        if not planned.override:
            _emit(f"{service} already runs the image, configuration and environment of revision "
                  f"{planned.to_revision}: nothing to roll back")
            return int(ExitCode.HEALTHY)
        override = hist.write_override(book, spec.get("compose_service") or service, planned)
        asked.update(to_revision=planned.to_revision, compose={
            "from_revision": planned.from_revision, "override_file": str(override),
            "files": hist.compose_files(stack) + [str(override)], "changes": planned.changes})
    procedure = catalog.get("service_unavailable")
    request = _request("rollback", [procedure], (service,), inventory, limit or stack.host, verbosity, settings,
                       dry_run=dry_run or not approve, approve=approve and not dry_run,
                       extra_vars={"service_unavailable_rollback": asked})
    engine = _engine(settings, catalog)
    try:
        report = engine.fix(request)
    finally:
        if planned is not None and not request.dry_run:  # it holds the environment's values: only while it runs
            Path(asked["compose"]["override_file"]).unlink(missing_ok=True)
    if request.dry_run:
        report.notes.append(f"{service} is not rolled back: it awaits approval (octoctl rollback {service}"
                            + (f" --to-revision {to_revision}" if to_revision else "") + " --approve)")
    elif planned is not None and report.exit_code == int(ExitCode.HEALTHY):
        now = hist.compose_states(stack, only=service).get(service) or {}
        missing = hist.differences(hist.History(settings.state_dir, stack.host), service, planned.to_revision, now)
        if missing:
            report.notes.append(f"{service} does not run revision {planned.to_revision} after the rollback: "
                                + "; ".join(missing))
            report.exit_code = int(ExitCode.HUMAN_NEEDED)
        else:
            report.notes.append(f"{service} runs revision {planned.to_revision}'s image, configuration and "
                                "environment")
        engine.store.save(report)
    _emit(render_report(report, fmt, _unicode_ok()))
    return report.exit_code


def _add_lab() -> None:
    """``octoctl lab`` lives in octoctl/lab_cli.py, over the lab's tooling (``octollm_labctl``, lab/ctl); the CLI
    works without them."""
    try:
        from octoctl.lab_cli import lab
    except ImportError as exc:
        if getattr(exc, "name", None) == "octoctl.lab_cli":
            return
        problem, code = f"{type(exc).__name__}: {exc}", ExitCode.INTERNAL
        if getattr(exc, "name", None) == "octollm_labctl":  # an install from before the lab's tooling moved out
            problem, code = f"{problem} (the lab's tooling in lab/ctl: run scripts/setup.sh)", ExitCode.ENVIRONMENT

        @cli.command("lab", context_settings={"ignore_unknown_options": True}, add_help_option=False)
        @click.argument("args", nargs=-1, type=click.UNPROCESSED)
        def broken_lab(args: tuple[str, ...]) -> None:
            """The bundled lab (unavailable: its module failed to import)."""
            raise OctoctlError(f"octoctl lab cannot load: {problem}", code)

        return
    cli.add_command(lab)


_add_lab()


def _add_alerts() -> None:
    """``octoctl alert``, ``listen``, ``incidents``, ``ack``, ``close``, ``pause`` (octoctl/alerts_cli.py)."""
    from octoctl.alerts_cli import register

    register(cli)


_add_alerts()


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="octoctl")
