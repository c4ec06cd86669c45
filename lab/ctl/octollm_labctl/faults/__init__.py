"""Faults injected into the lab through the real component, and how to undo each: a registry of small modules.

Each component module (:mod:`.containers`, :mod:`.redis`, :mod:`.postgres`, :mod:`.app`, :mod:`.llm`,
:mod:`.guardian`, :mod:`.disk`) registers its faults once, in its ``FAULTS``: a :class:`Fault` with its name, the
component it breaks, a summary, how to inject it and how to heal it. Every fault acts on the running system the way
an incident would: a killed process, a stopped process, Redis configuration and memory, PostgreSQL sessions held by
another client. Active faults are recorded in ``<state>/faults.json`` so that ``octoctl lab status`` shows them and
``heal --all`` undoes them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from octollm_labctl.errors import Kind, LabError
from octollm_labctl.faults import app, containers, disk, guardian, llm, postgres, redis
from octollm_labctl.faults.base import Fault
from octollm_labctl.lab import Lab

COMPONENTS = (containers, redis, postgres, app, llm, guardian, disk)

# The order `octoctl lab faults` lists them in: the order they were added to the lab (a fault not named here is
# listed after these, in the order of COMPONENTS).
LISTED = (
    "crash", "unhealthy-arm", "redis-bloat", "redis-eviction", "cache-cold", "pg-connections", "memory-leak",
    "arm-unregistered", "arm-capabilities-wrong", "stuck-tasks", "oom", "no-memory-limit", "cpu-hog",
    "data-corruption", "disk-fill", "pg-missing-index", "slow-hop", "llm-cache-off", "db-pool-exhausted",
    "pg-partition", "bad-config", "llm-ratelimit", "llm-unavailable", "llm-slow", "llm-auth", "guardian-violations",
    "stuck-running", "orchestrator-pii",
)


def _collect() -> dict[str, Fault]:
    found: dict[str, Fault] = {}
    for module in COMPONENTS:
        for fault in module.FAULTS:
            if fault.name in found:
                raise LabError(f"fault {fault.name!r} is registered twice", Kind.INTERNAL)
            found[fault.name] = fault
    position = {name: index for index, name in enumerate(LISTED)}
    return dict(sorted(found.items(), key=lambda item: position.get(item[0], len(position))))


FAULTS: dict[str, Fault] = _collect()


def get(name: str) -> Fault:
    if name not in FAULTS:
        raise LabError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}", Kind.USAGE)
    return FAULTS[name]


# ---- records ----------------------------------------------------------------------------------------
def _records_path(lab: Lab) -> Path:
    return lab.state / "faults.json"


def active(lab: Lab) -> dict[str, dict[str, Any]]:
    path = _records_path(lab)
    return json.loads(path.read_text()) if path.exists() else {}


def _save(lab: Lab, records: dict[str, dict[str, Any]]) -> None:
    _records_path(lab).write_text(json.dumps(records, indent=2, sort_keys=True))


def inject(lab: Lab, name: str, target: str | None = None) -> dict[str, Any]:
    fault = get(name)
    record = fault.inject(lab, target)
    record["since"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    records = active(lab)
    records[name] = record
    _save(lab, records)
    return record


def heal(lab: Lab, name: str) -> bool:
    """Undo a fault; True when it was recorded as active."""
    fault = get(name)
    records = active(lab)
    record = records.pop(name, None)
    fault.heal(lab, record or {"service": fault.default_target})
    _save(lab, records)
    return record is not None


def heal_all(lab: Lab) -> list[str]:
    """Heal every recorded fault, then close the tasks the faults' outages left running (``postgres``)."""
    names = list(active(lab))
    for name in names:
        heal(lab, name)
    postgres.close_lost_tasks(lab)
    return names


def forget(lab: Lab, name: str) -> None:
    """Drop a fault's record without healing it (when what it broke was put back another way)."""
    records = active(lab)
    records.pop(name, None)
    _save(lab, records)


__all__ = ["COMPONENTS", "FAULTS", "Fault", "active", "forget", "get", "heal", "heal_all", "inject"]
