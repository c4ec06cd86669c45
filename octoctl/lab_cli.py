"""`octoctl lab`: bring the bundled lab up, check it, break it, heal it, take it down.

A thin command line over the lab's own tooling, ``octollm_labctl`` (``lab/ctl/``), which never imports octoctl:
its errors (``LabError``) become octoctl's exit statuses here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from octoctl.errors import ExitCode, OctoctlError
from octollm_labctl import Kind, Lab, LabError, faults
from octollm_labctl.lab import DEFAULT_PROFILE, PROFILES, row_healthy

# The inventory that describes each profile of the lab to octoctl.
PROFILE_INVENTORIES = {"full": "lab", "minimal": "lab-minimal"}

EXIT_CODES = {
    Kind.USAGE: ExitCode.USAGE,
    Kind.ENVIRONMENT: ExitCode.ENVIRONMENT,
    Kind.UNHEALTHY: ExitCode.HUMAN_NEEDED,
    Kind.INTERNAL: ExitCode.INTERNAL,
}


class LabGroup(click.Group):
    """Turns the lab tooling's errors into octoctl's: the message, and the exit status of its kind."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabError as exc:
            raise OctoctlError(exc.message, EXIT_CODES[exc.kind]) from exc


@click.group(cls=LabGroup)
def lab() -> None:
    """The bundled OctoLLM lab (Docker Compose, 127.0.0.1, state outside the checkout)."""


def _take_down(the_lab: Lab, volumes: bool = False) -> None:
    """Stop the listener, check Docker, heal every fault, then stop the containers of the lab's profile."""
    from octoctl.listener import lab_listener_down

    lab_listener_down(the_lab.state)
    the_lab.require_docker()
    faults.heal_all(the_lab)
    the_lab.down(volumes=volumes)


@lab.command()
@click.option("--timeout", default=300, show_default=True, help="Seconds to wait for every service to be healthy.")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default=DEFAULT_PROFILE, show_default=True,
              help="full: the lab with its own endpoints; minimal: laid out as another deployment (the seed's "
              "endpoints only, the orchestrator's settings and metrics under a prefix, another Compose project). "
              "Another profile that is up is healed and taken down first.")
def up(timeout: int, profile: str) -> None:
    """Render the state directory, start every service and wait until healthy."""
    started = time.monotonic()
    the_lab = Lab(profile=profile)
    the_lab.require_docker()
    for other in the_lab.others_running():
        click.echo(f"switching the lab from its {other} profile to {profile}: {other} is healed and taken down",
                   err=True)
        _take_down(Lab(profile=other))
    the_lab.up(timeout=timeout)
    the_lab.wait_healthy(timeout=timeout)
    # the alert listener (octoctl listen) as a service: Alertmanager posts to it (octoctl/listener.py)
    from octoctl.listener import lab_listener_up

    # the profile's inventory: inventory/<lab or lab-minimal> of this checkout
    inventory = Path(__file__).resolve().parents[1] / "inventory" / PROFILE_INVENTORIES[profile]
    lab_listener_up(the_lab.state, lambda line: click.echo(line, err=True),
                    inventory if profile != DEFAULT_PROFILE else None)
    click.echo(f"lab up in {time.monotonic() - started:.1f}s (profile {the_lab.profile.name}, Compose project "
               f"{the_lab.project}, state: {the_lab.state})", err=True)


@lab.command()
@click.option("--volumes", is_flag=True, help="Also remove the lab's volumes (Prometheus and Alertmanager data).")
def down(volumes: bool) -> None:
    """Undo active faults and stop the lab (whichever profile is up)."""
    _take_down(Lab(), volumes=volumes)


@lab.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(fmt: str) -> None:
    """Each service's container state, health and HTTP answer; active faults. Exit 1 when unhealthy."""
    the_lab = Lab()
    rows = the_lab.status()
    active = faults.active(the_lab)
    if fmt == "json":
        click.echo(json.dumps({"profile": the_lab.profile.name, "project": the_lab.project, "services": rows,
                               "faults": active}, indent=2))
    else:
        click.echo(f"profile {the_lab.profile.name} (Compose project {the_lab.project})")
        click.echo(f"{'SERVICE':24} {'PORT':>5}  {'STATE':10} {'HEALTH':10} HTTP")
        for r in rows:
            click.echo(f"{r['service']:24} {r['port']:>5}  {r['state']:10} {r['health']:10} {r['http'] or '-'}")
        for name, record in active.items():
            click.echo(f"fault active: {name} since {record.get('since')}")
    if active or not all(row_healthy(r) for r in rows):
        raise OctoctlError("the lab is not healthy", ExitCode.HUMAN_NEEDED)


@lab.command(name="break")
@click.argument("fault", type=click.Choice(sorted(faults.FAULTS)))
@click.argument("target", required=False)
def break_(fault: str, target: str | None) -> None:
    """Inject FAULT (optionally at TARGET, e.g. a service name)."""
    record = faults.inject(Lab(), fault, target)
    click.echo(f"injected {fault}: {json.dumps(record, sort_keys=True)}")


@lab.command()
@click.argument("fault", type=click.Choice(sorted(faults.FAULTS)), required=False)
@click.option("--all", "heal_all", is_flag=True, help="Undo every active fault.")
def heal(fault: str | None, heal_all: bool) -> None:
    """Undo FAULT (or every active fault with --all)."""
    the_lab = Lab()
    if heal_all:
        click.echo(f"healed: {', '.join(faults.heal_all(the_lab)) or 'nothing was active'}")
        return
    if fault is None:
        raise OctoctlError("name a fault or pass --all", ExitCode.USAGE)
    faults.heal(the_lab, fault)
    click.echo(f"healed {fault}")


@lab.command(name="faults")
def list_faults() -> None:
    """List the faults the lab can inject."""
    width = max(len(name) for name in faults.FAULTS)
    for fault in faults.FAULTS.values():
        target = f" [target, default {fault.default_target}]" if fault.default_target else ""
        click.echo(f"{fault.name:{width}} {fault.summary}{target}")
