"""Faults injected into the lab through the real component, and how to undo each.

Every fault acts on the running system the way an incident would: a killed process, a stopped process,
Redis configuration and memory, PostgreSQL sessions held by another client. Active faults are recorded in
``<state>/faults.json`` so that ``octoctl lab status`` shows them and ``heal --all`` undoes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from octoctl.errors import ExitCode, OctoctlError
from octoctl.lab import ARMS, LAB_DIR, REDIS_BASELINE, Lab, run

FILL_PREFIX = "fill:session:"
PG_HOLDER = "octollm-fault-pg-connections"
REDIS_FILLER = "octollm-fault-redis-filler"


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    inject: Callable[[Lab, str | None], dict[str, Any]]
    heal: Callable[[Lab, dict[str, Any]], None]
    default_target: str | None = None


# ---- helpers ----------------------------------------------------------------------------------
def _containers_of(lab: Lab, service: str) -> list[str]:
    out = lab.compose("ps", "--all", "--quiet", service, check=False).stdout.split()
    if not out:
        raise OctoctlError(f"no container for service {service!r} (is the lab up?)", ExitCode.USAGE)
    return out


def _main_pid(container: str) -> int:
    pid = int(run(["docker", "inspect", "-f", "{{.State.Pid}}", container]).stdout.strip() or 0)
    if pid <= 0:
        raise OctoctlError(f"container {container[:12]} is not running", ExitCode.HUMAN_NEEDED)
    return pid


def redis_client(lab: Lab) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, password=lab.secret("redis_password"), socket_timeout=5)


# ---- crash: the service's process is killed and stays down -----------------------------------
def _crash_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    service = target or "orchestrator"
    # `docker kill` does not trigger the restart policy: the container stays exited (137), as after a
    # crash that Docker gave up on.
    for cid in _containers_of(lab, service):
        run(["docker", "kill", "--signal", "KILL", cid])
    return {"service": service}


def _crash_heal(lab: Lab, record: dict[str, Any]) -> None:
    lab.compose("up", "-d", "--no-deps", "--wait", record["service"], timeout=180)


# ---- unhealthy arm: the process hangs (SIGSTOP), the container runs, health checks fail --------
def _unhealthy_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    arm = target or "coder-arm"
    if arm not in ARMS:
        raise OctoctlError(f"unknown arm {arm!r}; one of {', '.join(ARMS)}", ExitCode.USAGE)
    pids = [_main_pid(cid) for cid in _containers_of(lab, arm)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return {"service": arm, "pids": pids}


def _unhealthy_heal(lab: Lab, record: dict[str, Any]) -> None:
    for pid in record.get("pids", []):
        with contextlib.suppress(ProcessLookupError):  # the container was restarted meanwhile
            os.kill(pid, signal.SIGCONT)


# ---- Redis: noeviction under memory pressure -----------------------------------------------------
def _redis_eviction_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    client = redis_client(lab)
    before = {k: v for k, v in client.config_get("maxmemory*").items() if k in REDIS_BASELINE}
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "24mb")
    client.config_rewrite()  # a misconfiguration lives in the config file, so it survives a restart
    # A writer of keys without TTL keeps memory at maxmemory, as a session store that never expires would.
    _run_helper(lab, REDIS_FILLER, "redis-eviction", "redis_fill.py", {"FILL_PREFIX": FILL_PREFIX})
    _wait_helper_line(REDIS_FILLER, "full", timeout=60)
    return {"previous": before, "filled_keys": client.dbsize()}


def _redis_eviction_heal(lab: Lab, record: dict[str, Any]) -> None:
    run(["docker", "rm", "-f", REDIS_FILLER], check=False)
    client = redis_client(lab)
    _unlink_pattern(client, FILL_PREFIX + "*")
    for key, value in REDIS_BASELINE.items():
        client.config_set(key, value)
    client.config_rewrite()


def _unlink_pattern(client: Any, pattern: str) -> int:
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            removed += client.unlink(*batch)
            batch = []
    if batch:
        removed += client.unlink(*batch)
    return removed


# ---- cold cache: the warm keys are gone (as after a Redis restart without persistence) -----------
def _cache_cold_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    client = redis_client(lab)
    removed = sum(_unlink_pattern(client, p) for p in ("arm:capability:*", "entity:*", "llm:*"))
    return {"removed_keys": removed}


def _cache_cold_heal(lab: Lab, record: dict[str, Any]) -> None:
    import urllib.request

    req = urllib.request.Request("http://127.0.0.1:8000/api/v1/cache/warm", data=b"{}", method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30):
        pass


# ---- PostgreSQL: every non-reserved connection held by another client ----------------------------
def _pg_connections_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    mode = target or "idle"
    if mode not in ("idle", "idle-in-transaction"):
        raise OctoctlError("pg-connections target is 'idle' or 'idle-in-transaction'", ExitCode.USAGE)
    _run_helper(lab, PG_HOLDER, "pg-connections", "pg_hold.py", {"HOLD_MODE": mode})
    line = _wait_helper_line(PG_HOLDER, "holding ", timeout=60)
    return {"mode": mode, "held": int(line.split()[1])}


def _pg_connections_heal(lab: Lab, record: dict[str, Any]) -> None:
    run(["docker", "rm", "-f", PG_HOLDER], check=False)


def _run_helper(lab: Lab, name: str, fault: str, script: str, env: dict[str, str]) -> None:
    """Start a fault's helper process in its own container (host network, the lab's image and settings)."""
    run(["docker", "rm", "-f", name], check=False)
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    run(
        [
            "docker", "run", "-d", "--name", name, "--network", "host", "--label", f"octollm.fault={fault}",
            "--env-file", str(lab.state / "lab.env"), "--env-file", str(lab.state / "secrets.env"), *env_args,
            "-v", f"{LAB_DIR / 'faults'}:/faults:ro", lab.settings.image, "python3", f"/faults/{script}",
        ]
    )


def _wait_helper_line(name: str, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = run(["docker", "logs", name], check=False)
        for line in (proc.stdout + proc.stderr).splitlines():
            if line.startswith(prefix):
                return line
        time.sleep(0.5)
    message = f"fault helper {name} did not report {prefix.strip()!r} within {timeout:.0f}s"
    raise OctoctlError(message, ExitCode.INTERNAL)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault("crash", "kill a service's process; the container stays exited (default orchestrator)",
              _crash_inject, _crash_heal, "orchestrator"),
        Fault("unhealthy-arm", "stop an arm's process (SIGSTOP): running but failing health checks",
              _unhealthy_inject, _unhealthy_heal, "coder-arm"),
        Fault("redis-eviction", "Redis maxmemory lowered, policy noeviction, a writer keeps memory full of keys "
              "without TTL",
              _redis_eviction_inject, _redis_eviction_heal),
        Fault("cache-cold", "delete the cache's warm keys (arm capabilities, entities, LLM answers)",
              _cache_cold_inject, _cache_cold_heal),
        Fault("pg-connections", "another client holds every non-reserved PostgreSQL connection (idle or idle in tx)",
              _pg_connections_inject, _pg_connections_heal, "idle"),
    ]
}


# ---- records ----------------------------------------------------------------------------------------
def _records_path(lab: Lab) -> Any:
    return lab.state / "faults.json"


def active(lab: Lab) -> dict[str, dict[str, Any]]:
    path = _records_path(lab)
    return json.loads(path.read_text()) if path.exists() else {}


def _save(lab: Lab, records: dict[str, dict[str, Any]]) -> None:
    _records_path(lab).write_text(json.dumps(records, indent=2, sort_keys=True))


def get(name: str) -> Fault:
    if name not in FAULTS:
        raise OctoctlError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}", ExitCode.USAGE)
    return FAULTS[name]


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
    names = list(active(lab))
    for name in names:
        heal(lab, name)
    return names
