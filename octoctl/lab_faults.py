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
from octollm_labctl.lab import ARMS, LAB_DIR, OVERRIDE_HEADER, REDIS_BASELINE, Lab, run

FILL_PREFIX = "fill:session:"
PG_HOLDER = "octollm-fault-pg-connections"


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
    """Fill Redis with keys without TTL, then lower maxmemory under what is used, with noeviction.

    While used memory stays above maxmemory, Redis refuses every write (OOM) and, under noeviction, frees
    nothing: expiring cache entries cannot be stored again, so the hit rate falls as their TTLs run out.
    """
    import redis

    client = redis_client(lab)
    before = {k: v for k, v in client.config_get("maxmemory*").items() if k in REDIS_BASELINE}
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "32mb")
    value = b"x" * 4096
    filled = 0
    try:
        while filled < 100_000:
            pipe = client.pipeline(transaction=False)
            for i in range(filled, filled + 500):
                pipe.set(f"{FILL_PREFIX}{i}", value)  # no TTL: a session store that never expires
            pipe.execute()
            filled += 500
    except redis.exceptions.ResponseError as exc:  # OutOfMemoryError in redis-py 5+, a plain OOM reply before
        if "OOM" not in str(exc) and "maxmemory" not in str(exc):
            raise
    # The stack keeps reading its warm entries (arm capabilities, entities): they are recently used, so an
    # LRU policy, once set, evicts the idle session keys first, not them. Redis' LRU clock ticks once a
    # second: read them in a later tick than the last write of the filler.
    time.sleep(2.1)
    pipe = client.pipeline(transaction=False)
    for pattern in ("arm:capability:*", "entity:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            pipe.get(key)
    pipe.execute()
    client.config_set("maxmemory", "24mb")
    client.config_rewrite()  # a misconfiguration lives in the config file, so it survives a restart
    return {"previous": before, "filled_keys": filled}


def _redis_eviction_heal(lab: Lab, record: dict[str, Any]) -> None:
    run(["docker", "rm", "-f", "octollm-fault-redis-filler"], check=False)  # helper of earlier versions
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


# ---- Redis bloat: the cache grows to its container's memory limit (maxmemory lifted at runtime) --------
BLOAT_PREFIX = "bloat:llm:"
BLOAT_TARGET = 0.92  # of the container's memory limit, in working set: over the procedure's 90%, under the OOM kill


def _working_set(container_id: str) -> int:
    """The container's memory working set as the procedure reads it (cgroup usage minus inactive file pages)."""
    candidates = [  # cgroup v1 (cgroupfs driver), v2 (systemd driver), v2 (cgroupfs driver)
        (f"/sys/fs/cgroup/memory/docker/{container_id}", "memory.usage_in_bytes", "total_inactive_file"),
        (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope", "memory.current", "inactive_file"),
        (f"/sys/fs/cgroup/docker/{container_id}", "memory.current", "inactive_file"),
    ]
    for base, usage_file, inactive_key in candidates:
        if os.path.exists(os.path.join(base, usage_file)):
            with open(os.path.join(base, usage_file)) as handle:
                usage = int(handle.read())
            with open(os.path.join(base, "memory.stat")) as handle:
                stat = dict(line.split() for line in handle if len(line.split()) == 2)
            return usage - int(stat.get(inactive_key, 0))
    raise OctoctlError(f"the memory cgroup of container {container_id[:12]} was not found", ExitCode.ENVIRONMENT)


def _redis_bloat_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    """Lift maxmemory (runtime only, as an operator's CONFIG SET would) and fill Redis with cached answers until
    the container's working set reaches BLOAT_TARGET of its memory limit: memory exhaustion of the cache. The
    working set is read from the cgroup after each batch, and the batches shrink near the target, so the kernel
    never OOM-kills it."""
    client = redis_client(lab)
    before = client.config_get("maxmemory")["maxmemory"]
    [cid] = _containers_of(lab, "redis")
    inspect = _inspect(cid)
    limit = int(inspect["HostConfig"].get("Memory") or 0)
    if not limit:
        raise OctoctlError("the redis container has no memory limit: nothing to exhaust", ExitCode.USAGE)
    run_id = client.info("server")["run_id"]
    client.config_set("maxmemory", "0")
    value = b"x" * 65536
    filled = 0
    while (working := _working_set(inspect["Id"])) < BLOAT_TARGET * limit:
        batch = 40 if BLOAT_TARGET * limit - working > 8 * 2**20 else 1
        pipe = client.pipeline(transaction=False)
        for i in range(filled, filled + batch):
            pipe.set(f"{BLOAT_PREFIX}{i}", value)
        pipe.execute()
        filled += batch
    if client.info("server")["run_id"] != run_id:
        raise OctoctlError("Redis restarted while it was filled (OOM kill?): the fault is not in place",
                           ExitCode.INTERNAL)
    return {"previous_maxmemory": before, "filled_keys": filled, "limit_bytes": limit, "working_set": working}


def _redis_bloat_heal(lab: Lab, record: dict[str, Any]) -> None:
    client = redis_client(lab)
    _unlink_pattern(client, BLOAT_PREFIX + "*")
    client.config_set("maxmemory", record.get("previous_maxmemory") or REDIS_BASELINE["maxmemory"])
    client.execute_command("MEMORY", "PURGE")
    lab.warm_cache()  # a flush (the fix) took the warm keys with it


# ---- cold cache: the warm keys are gone (as after a Redis restart without persistence) -----------
def _cache_cold_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    client = redis_client(lab)
    removed = sum(_unlink_pattern(client, p) for p in ("arm:capability:*", "entity:*", "llm:*"))
    return {"removed_keys": removed}


def _cache_cold_heal(lab: Lab, record: dict[str, Any]) -> None:
    lab.warm_cache()


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


# ---- oom: a service's memory limit lowered under what it needs; the kernel OOM-kills it -------------
OOM_HEADROOM_BYTES = 24 * 1024 * 1024
OOM_LEAK_MB_PER_SECOND = 16


def _inspect(container: str) -> dict[str, Any]:
    return json.loads(run(["docker", "inspect", container]).stdout)[0]


def _oom_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import urllib.request

    from octollm_labctl.lab import PORTS

    service = target or "judge-arm"
    if service != "orchestrator" and service not in ARMS:
        raise OctoctlError("oom targets the orchestrator or an arm (they have POST /debug/leak)", ExitCode.USAGE)
    cid = _containers_of(lab, service)[0]
    info = _inspect(cid)
    host = info["HostConfig"]
    stats = json.loads(run(["docker", "stats", "--no-stream", "--no-trunc", "--format", "{{json .}}", cid]).stdout)
    usage = _parse_size(stats["MemUsage"].split("/")[0])
    # docker update cannot set a limit under the current usage; the leak then pushes it over the limit
    limit = (usage + OOM_HEADROOM_BYTES) // (1024 * 1024) * 1024 * 1024
    record = {"service": service, "container": cid, "memory": host.get("Memory") or 0,
              "memory_swap": host.get("MemorySwap") or 0, "limit": limit, "restarts_before": info["RestartCount"],
              "override": (lab.state / "compose.override.yaml").read_text()}
    run(["docker", "update", "--memory", str(limit), "--memory-swap", str(limit), cid])
    req = urllib.request.Request(f"http://127.0.0.1:{PORTS[service]}/debug/leak", method="POST",
                                 data=json.dumps({"mb_per_second": OOM_LEAK_MB_PER_SECOND, "enabled": True}).encode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10):
        pass
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = _inspect(cid)
        if state["State"].get("OOMKilled") and state["State"].get("Running"):
            record["oom_killed"] = True
            return record
        time.sleep(0.5)
    raise OctoctlError(f"{service} was not OOM-killed within 60s under a {limit} byte limit", ExitCode.INTERNAL)


def _parse_size(text: str) -> int:
    units = {"B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
    text = text.strip().upper()
    number = text.rstrip("KMGIB")
    return int(float(number) * units.get(text[len(number):] or "B", 1))


def _recreate_from_baseline(lab: Lab, record: dict[str, Any]) -> None:
    """The Compose override as it was before the fault (a fix may have written a limit there), and a fresh
    container from it: the declared limit, no OOMKilled flag, no restart count."""
    service = record["service"]
    override = lab.state / "compose.override.yaml"
    if record.get("override") is not None and override.read_text() != record["override"]:
        override.write_text(record["override"])
    lab.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", service, timeout=180)


# ---- no-memory-limit: a deployment override that drops a service's memory limit ----------------------------
def _no_memory_limit_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    """``mem_limit: 0`` (no limit, as Docker reads it) for the service in the Compose override, and recreate it:
    the misconfiguration lives where deployments change limits, so a restart keeps it."""
    service = target or "retriever-arm"
    if service != "orchestrator" and service not in ARMS:
        raise OctoctlError("no-memory-limit targets the orchestrator or an arm", ExitCode.USAGE)
    original = (lab.state / "compose.override.yaml").read_text()
    _edit_override(lab, service, lambda entry: entry.__setitem__("mem_limit", 0))
    record = {"service": service, "override": original}
    lab.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", service, timeout=180)
    limits = [_inspect(cid)["HostConfig"].get("Memory") or 0 for cid in _containers_of(lab, service)]
    if any(limits):
        raise OctoctlError(f"{service} still has a memory limit after the override: {limits}", ExitCode.INTERNAL)
    return record


# ---- cpu-hog: a runaway process inside a service's container burns its CPU quota --------------------
# The quota is lowered to CPU_HOG_CPUS for the fault: on a busy 2-core host CFS gives a container's group only its
# share of the cores (measured: under a 0.5 quota a hog got 66% of it at load 9), under 0.2 it sits at its limit
# (93-98% of it, throttled in 75-81% of the periods at load 11), and the fault adds at most a fifth of a core.
CPU_HOG_MARKER = "octollm-cpu-hog"
CPU_HOG_PROCESSES = 4
CPU_HOG_CPUS = "0.2"


def _cpu_hog_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    service = target or "executor-arm"
    containers = [c for c in _containers_of(lab, service) if _main_pid(c)]
    nano_cpus = {cid: _inspect(cid)["HostConfig"].get("NanoCpus") or 0 for cid in containers}
    for cid in containers:
        run(["docker", "update", "--cpus", CPU_HOG_CPUS, cid])
        for _ in range(CPU_HOG_PROCESSES):  # more runnable threads than the quota: it stays at its limit under load
            run(["docker", "exec", "-d", cid, "python3", "-c", "while True: pass", CPU_HOG_MARKER])
    time.sleep(3)  # until the hog has used its quota for a few CFS periods
    return {"service": service, "containers": containers, "nano_cpus": nano_cpus}


def _cpu_hog_heal(lab: Lab, record: dict[str, Any]) -> None:
    service = record.get("service") or "executor-arm"
    pattern = f"{CPU_HOG_MARKER[:-1]}[{CPU_HOG_MARKER[-1]}]"  # does not match this shell's own command line
    kill = (f"for p in /proc/[0-9]*; do if grep -q '{pattern}' $p/cmdline 2>/dev/null; "
            "then kill -9 ${p#/proc/}; fi; done; true")
    for cid in _containers_of(lab, service):
        run(["docker", "exec", cid, "sh", "-c", kill], check=False)
    for cid, nano in (record.get("nano_cpus") or {}).items():
        if nano:
            run(["docker", "update", "--cpus", str(nano / 1e9), cid], check=False)


# ---- disk-fill: the backups volume (a sized tmpfs) fills up with backups older than the retention -------
DISK_FILL_MB = 48
DISK_FILL_OLD = 7  # files of 6 MB, 30 days old
DISK_FILL_DEVICE = "octollm-fault-disk"


def _disk_fill_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    path = lab.state / "backups"
    path.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(path):
        raise OctoctlError(f"{path} is already a mount point (disk-fill active?)", ExitCode.USAGE)
    run(["mount", "-t", "tmpfs", "-o", f"size={DISK_FILL_MB}m,mode=0755", DISK_FILL_DEVICE, str(path)])
    now = time.time()
    files = []
    for index in range(DISK_FILL_OLD + 1):
        old = index < DISK_FILL_OLD
        when = now - (30 - index) * 86400 if old else now - 3600
        name = time.strftime("octollm-%Y%m%dT%H%M%S.dump", time.gmtime(when))
        file = path / name
        with open(file, "wb") as handle:
            handle.write(os.urandom((6 if old else 2) * 1024 * 1024))
        os.utime(file, (when, when))
        files.append(name)
    return {"path": str(path), "files": files, "size_mb": DISK_FILL_MB}


def _disk_fill_heal(lab: Lab, record: dict[str, Any]) -> None:
    path = record.get("path") or str(lab.state / "backups")
    if os.path.ismount(path):
        run(["umount", "--lazy", path])


# ---- memory leak: a service's in-process cache grows without bound (the app's POST /debug/leak) ----------
LEAK_MB_PER_SECOND = 2


def _post_json(url: str, body: dict[str, Any], timeout: float = 10) -> Any:
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as answer:
        return json.loads(answer.read() or b"null")


def _memory_leak_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    from octollm_labctl.lab import PORTS

    service = target or "coder-arm"
    if service not in ("orchestrator", *ARMS):
        raise OctoctlError(f"memory-leak target is the orchestrator or an arm, not {service!r}", ExitCode.USAGE)
    status = _post_json(f"http://127.0.0.1:{PORTS[service]}/debug/leak",
                        {"mb_per_second": LEAK_MB_PER_SECOND, "enabled": True})
    return {"service": service, "leak": status}


def _memory_leak_heal(lab: Lab, record: dict[str, Any]) -> None:
    from octollm_labctl.lab import PORTS

    service = record.get("service") or "coder-arm"
    with contextlib.suppress(OSError, ValueError):  # restarted meanwhile (the fix): nothing leaks any more
        _post_json(f"http://127.0.0.1:{PORTS[service]}/debug/leak", {"enabled": False, "clear": True})
    lab.compose("restart", service, timeout=120)
    lab.compose("up", "-d", "--no-deps", "--wait", service, timeout=180)


# ---- arm not registered: the orchestrator restarted and forgot an arm that registers only once ---------
ARM_REGISTRY_HASH = "octollm:arms"


def _edit_override(lab: Lab, service: str, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Apply ``edit`` to a service's entry in the state dir's Compose override (an entry left empty is dropped)."""
    import yaml

    path = lab.state / "compose.override.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    services = doc.get("services") or {}
    doc["services"] = services
    entry = services.get(service) or {}
    edit(entry)
    if entry:
        services[service] = entry
    else:
        services.pop(service, None)
    path.write_text(OVERRIDE_HEADER + yaml.safe_dump(doc, sort_keys=False))


def _override_env(lab: Lab, service: str, env: dict[str, str] | None) -> None:
    """Set (or with None remove) a service's extra environment in the state dir's Compose override."""
    if env:
        _edit_override(lab, service, lambda entry: entry.setdefault("environment", {}).update(env))
    else:
        _edit_override(lab, service, lambda entry: entry.pop("environment", None))


def _arm_unregistered_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    arm = target or "judge-arm"
    if arm not in ARMS:
        raise OctoctlError(f"unknown arm {arm!r}; one of {', '.join(ARMS)}", ExitCode.USAGE)
    # the arm registers once at start-up and never again (ARM_REGISTER_INTERVAL=0) ...
    _override_env(lab, arm, {"ARM_REGISTER_INTERVAL": "0"})
    lab.compose("up", "-d", "--no-deps", "--wait", arm, timeout=180)
    # ... then the orchestrator restarts: its in-memory registry is gone, the Redis mirror no longer has the arm
    redis_client(lab).hdel(ARM_REGISTRY_HASH, arm)
    lab.compose("restart", "orchestrator", timeout=120)
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)
    return {"service": arm}


def _restore_arm_environment(lab: Lab, record: dict[str, Any]) -> None:
    arm = record.get("service") or "judge-arm"
    _override_env(lab, arm, None)
    lab.compose("up", "-d", "--no-deps", "--wait", arm, timeout=180)  # recreated: registers at start-up


# ---- arm-capabilities-wrong: an arm registers capabilities that match none of its goals ------------------------
MISCAPABLE_ENV = {"ARM_DOMAIN": "misc", "ARM_KEYWORDS": "misc"}


def _arm_capabilities_wrong_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    arm = target or "coder-arm"
    if arm not in ARMS or arm == "planner-arm":
        raise OctoctlError("arm-capabilities-wrong targets an arm but planner-arm (the fallback)", ExitCode.USAGE)
    # the arm's configuration, recreated: it registers the wrong domain and keywords at start-up, and every goal
    # meant for it scores 0 and falls back to planner-arm
    _override_env(lab, arm, MISCAPABLE_ENV)
    lab.compose("up", "-d", "--no-deps", "--wait", arm, timeout=180)
    return {"service": arm}


# ---- stuck tasks: pending tasks whose constraints exclude every arm (SQL, as an older router left them) ---
STUCK_PREFIX = "task-fault-stuck-"
STUCK_CONSTRAINTS = ["must be handled by the coder-arm", "only the judge-arm may see it"]


def _pg_admin(lab: Lab) -> Any:
    import psycopg2

    return psycopg2.connect(host="127.0.0.1", port=5432, dbname="octollm", user="postgres",
                            password=lab.secret("postgres_admin_password"), connect_timeout=5)


def _stuck_tasks_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    count = int(target or 3)
    conn = _pg_admin(lab)
    try:
        with conn, conn.cursor() as cur:
            for number in range(count):
                task_id = f"{STUCK_PREFIX}{number}"
                cur.execute(
                    "INSERT INTO tasks (task_id, goal, constraints, priority, status, created_at, updated_at)"
                    " VALUES (%s, %s, %s::jsonb, 'high', 'pending', now() - interval '10 minutes',"
                    " now() - interval '10 minutes') ON CONFLICT (task_id) DO NOTHING",
                    (task_id, f"Write a Python function to deduplicate records (batch {number})",
                     json.dumps(STUCK_CONSTRAINTS)),
                )
                cur.execute(
                    "INSERT INTO action_log (task_id, action, arm, details, timestamp) VALUES"
                    " (%s, 'failed', NULL, %s::jsonb, now() - interval '10 minutes')",
                    (task_id, json.dumps({"reason": "no arm satisfies the constraints", "task_status": "pending"})),
                )
    finally:
        conn.close()
    return {"tasks": count, "prefix": STUCK_PREFIX}


def _stuck_tasks_heal(lab: Lab, record: dict[str, Any]) -> None:
    conn = _pg_admin(lab)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM action_log WHERE task_id LIKE %s", (STUCK_PREFIX + "%",))
            cur.execute("DELETE FROM tasks WHERE task_id LIKE %s", (STUCK_PREFIX + "%",))
    finally:
        conn.close()


# ---- data corruption: entities that relationships point at are deleted (orphans at both ends) and some ------
# entities.properties are not JSON objects (arrays, strings, numbers, JSON null, SQL NULL) - through real SQL. The
# record keeps every row it touched, so that heal puts back exactly what was there (whether or not a fix ran).
CORRUPT_INVALID = ["'[1, 2, 3]'::jsonb", "'\"a string\"'::jsonb", "'42'::jsonb", "'null'::jsonb", "NULL",
                   "'[]'::jsonb", "'true'::jsonb"]
CORRUPT_REL_COLUMNS = "relationship_id, from_entity_id, to_entity_id, relationship_type, properties, created_at"
CORRUPT_ENT_COLUMNS = "entity_id, entity_type, name, properties, access_count, created_at"


def _rows(cur: Any, sql: str, params: Any) -> list[dict[str, Any]]:
    cur.execute(f"SELECT coalesce(json_agg(row_to_json(x)), '[]') FROM ({sql}) x", params)
    return list(cur.fetchone()[0])


def _data_corruption_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    conn = _pg_admin(lab)
    try:
        return corrupt_data(conn, int(target or 6))
    finally:
        conn.close()


def corrupt_data(conn: Any, count: int) -> dict[str, Any]:
    """The data-corruption fault on any database with the lab's schema (bench/data_corruption.py uses its own)."""
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM entities), (SELECT count(*) FROM relationships)")
            total, relationships_before = cur.fetchone()
            if total < 10 * count:
                raise OctoctlError(f"the lab has {total} entities: seed it first", ExitCode.USAGE)
            # entities spread over the table that are both the source and the target of relationships
            cur.execute(
                "SELECT e.entity_id FROM entities e WHERE e.entity_id %% %s = 7"
                " AND EXISTS (SELECT 1 FROM relationships r WHERE r.from_entity_id = e.entity_id)"
                " AND EXISTS (SELECT 1 FROM relationships r WHERE r.to_entity_id = e.entity_id)"
                " ORDER BY e.entity_id LIMIT %s",
                (max(1, total // (2 * count)), count),
            )
            doomed = [row[0] for row in cur.fetchall()]
            entities = _rows(cur, f"SELECT {CORRUPT_ENT_COLUMNS} FROM entities WHERE entity_id = ANY(%s)", (doomed,))
            orphans = _rows(
                cur,
                f"SELECT {CORRUPT_REL_COLUMNS} FROM relationships"
                " WHERE from_entity_id = ANY(%s) OR to_entity_id = ANY(%s)",
                (doomed, doomed),
            )
            cur.execute(
                "SELECT entity_id FROM entities WHERE entity_id %% %s = 3 AND NOT entity_id = ANY(%s)"
                " ORDER BY entity_id LIMIT %s",
                (max(1, total // (3 * len(CORRUPT_INVALID))), doomed, 2 * len(CORRUPT_INVALID)),
            )
            spoiled_ids = [row[0] for row in cur.fetchall()]
            spoiled = _rows(cur, "SELECT entity_id, properties FROM entities WHERE entity_id = ANY(%s)",
                            (spoiled_ids,))
            cur.execute("DELETE FROM entities WHERE entity_id = ANY(%s)", (doomed,))
            for index, entity_id in enumerate(spoiled_ids):
                value = CORRUPT_INVALID[index % len(CORRUPT_INVALID)]
                cur.execute(f"UPDATE entities SET properties = {value} WHERE entity_id = %s", (entity_id,))
    except Exception as exc:
        if "violates foreign key constraint" in str(exc) or "violates check constraint" in str(exc):
            raise OctoctlError(f"the lab's constraints refuse the corruption (prevention applied?): {exc}",
                               ExitCode.USAGE) from exc
        raise
    from_missing = sum(1 for r in orphans if r["from_entity_id"] in doomed)
    to_missing = sum(1 for r in orphans if r["to_entity_id"] in doomed)
    return {"deleted_entities": entities, "orphaned_relationships": orphans, "invalid_properties": spoiled,
            "summary": {"entities_deleted": len(entities), "orphans": len(orphans), "from_missing": from_missing,
                        "to_missing": to_missing, "invalid_properties": len(spoiled),
                        "entities_before": total, "relationships_before": relationships_before}}


def _data_corruption_heal(lab: Lab, record: dict[str, Any]) -> None:
    conn = _pg_admin(lab)
    try:
        uncorrupt_data(conn, record)
    finally:
        conn.close()


def uncorrupt_data(conn: Any, record: dict[str, Any]) -> None:
    """Put back exactly the rows corrupt_data's record names (whether or not a fix ran meanwhile)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO entities ({CORRUPT_ENT_COLUMNS}) SELECT {CORRUPT_ENT_COLUMNS}"
            " FROM json_populate_recordset(NULL::entities, %s::json) ON CONFLICT (entity_id) DO NOTHING",
            (json.dumps(record.get("deleted_entities") or []),),
        )
        cur.execute(
            f"INSERT INTO relationships ({CORRUPT_REL_COLUMNS}) SELECT {CORRUPT_REL_COLUMNS}"
            " FROM json_populate_recordset(NULL::relationships, %s::json)"
            " ON CONFLICT (relationship_id) DO NOTHING",
            (json.dumps(record.get("orphaned_relationships") or []),),
        )
        cur.execute(
            "UPDATE entities e SET properties = s.properties"
            " FROM json_populate_recordset(NULL::entities, %s::json) s WHERE e.entity_id = s.entity_id",
            (json.dumps(record.get("invalid_properties") or []),),
        )


# ---- High Latency: missing indexes on large tables, a slow hop, the LLM response cache off ---------------
SEQSCAN_LOAD = "octollm-fault-pg-seqscan-load"
SEED_TASK_PREFIX = "task-fault-history-"
LATENCY_INDEXES = {"idx_tasks_created_at": "tasks (created_at)", "idx_entities_type": "entities (entity_type)"}


def _missing_index_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    rows = int(target or 150000)
    conn = _pg_admin(lab)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            # enough history that a sequential scan of tasks is measurably slow (completed tasks, last 30 days)
            cur.execute(
                "INSERT INTO tasks (task_id, goal, status, assigned_arm, created_at, updated_at) "
                "SELECT %s || g, 'historical task ' || g, 'completed', 'planner-arm', "
                "now() - make_interval(secs => 600 + g * 17), now() - make_interval(secs => 600 + g * 17) "
                "FROM generate_series(1, %s) AS g ON CONFLICT (task_id) DO NOTHING",
                (SEED_TASK_PREFIX, rows),
            )
            for name in LATENCY_INDEXES:
                cur.execute(f"DROP INDEX IF EXISTS {name}")
            cur.execute("ANALYZE tasks")
            cur.execute("ANALYZE entities")
    finally:
        conn.close()
    _run_helper(lab, SEQSCAN_LOAD, "pg-missing-index", "pg_seqscan_load.py", {})
    _wait_helper_line(SEQSCAN_LOAD, "running", timeout=60)
    return {"dropped": sorted(LATENCY_INDEXES), "seeded_tasks": rows}


def _missing_index_heal(lab: Lab, record: dict[str, Any]) -> None:
    run(["docker", "rm", "-f", SEQSCAN_LOAD], check=False)
    conn = _pg_admin(lab)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("DELETE FROM tasks WHERE task_id LIKE %s", (SEED_TASK_PREFIX + "%",))
            for name, definition in LATENCY_INDEXES.items():
                cur.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")
            cur.execute("ANALYZE tasks")
            cur.execute("ANALYZE entities")
            # the load's statistics (slow while the indexes were missing) go too, as before the fault
            cur.execute(
                "SELECT pg_stat_statements_reset(userid, dbid, queryid) FROM pg_stat_statements "
                "WHERE query LIKE '%%FROM tasks WHERE created_at > now()%%' "
                "OR query LIKE '%%FROM entities WHERE entity_type =%%'"
            )
    finally:
        conn.close()


def _slow_hop_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    arm = target or "planner-arm"
    if arm not in ARMS:
        raise OctoctlError(f"unknown arm {arm!r}; one of {', '.join(ARMS)}", ExitCode.USAGE)
    # the orchestrator's application-level delay before each call to the arm (the slow hop)
    status = _post_json("http://127.0.0.1:8000/debug/delay", {"target": arm, "ms": 500})
    return {"service": arm, "delays_ms": status.get("delays_ms")}


def _slow_hop_heal(lab: Lab, record: dict[str, Any]) -> None:
    arm = record.get("service") or "planner-arm"
    with contextlib.suppress(OSError, ValueError):  # the orchestrator restarted meanwhile: no delay any more
        _post_json("http://127.0.0.1:8000/debug/delay", {"target": arm, "ms": 0})


def set_lab_env(lab: Lab, key: str, value: str) -> str | None:
    """Set KEY=value in the services' env file (lab.env); return the previous value."""
    path = lab.state / "lab.env"
    lines = path.read_text().splitlines()
    previous = None
    for index, line in enumerate(lines):
        if line.startswith(key + "="):
            previous = line.split("=", 1)[1]
            lines[index] = f"{key}={value}"
            break
    else:
        lines.append(f"{key}={value}")
    path.write_text("\n".join(lines) + "\n")
    return previous


def _llm_cache_off_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    previous = set_lab_env(lab, "RESPONSE_CACHE_ENABLED", "false")
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)
    return {"previous": previous}


def _llm_cache_off_heal(lab: Lab, record: dict[str, Any]) -> None:
    set_lab_env(lab, "RESPONSE_CACHE_ENABLED", "true")
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)


# ---- db-pool-exhausted: the orchestrator's pool is too small for a burst of slow requests ------------------
# The pool shrinks to one connection (DB_POOL_SIZE=1, DB_POOL_MAX_OVERFLOW=0 in lab.env, orchestrator recreated);
# while a transaction holds a SHARE lock on tasks (a slow batch job), a burst of tasks arrives: the first holds the
# only connection waiting on the lock, the others wait DB_POOL_TIMEOUT and log "database pool exhausted" (503).
POOL_BURST = 6
POOL_LOCK_SECONDS = 7


def _pool_exhausted_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import threading
    import urllib.error

    previous = {key: set_lab_env(lab, key, value) for key, value in (("DB_POOL_SIZE", "1"),
                                                                   ("DB_POOL_MAX_OVERFLOW", "0"))}
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)
    answers: list[str] = []

    def task(index: int) -> None:
        try:
            _post_json("http://127.0.0.1:8000/api/v1/tasks", {"goal": f"pool burst {index}"}, timeout=30)
            answers.append("ok")
        except urllib.error.HTTPError as exc:
            answers.append(str(exc.code))
        except OSError as exc:
            answers.append(type(exc).__name__)

    conn = _pg_admin(lab)
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE tasks IN SHARE MODE")  # held until the rollback below
            threads = [threading.Thread(target=task, args=(i,)) for i in range(POOL_BURST)]
            for thread in threads:
                thread.start()
            time.sleep(POOL_LOCK_SECONDS)
        conn.rollback()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        conn.close()
    return {"previous": previous, "answers": sorted(answers)}


def _pool_exhausted_heal(lab: Lab, record: dict[str, Any]) -> None:
    for key, value in (record.get("previous") or {}).items():
        set_lab_env(lab, key, value or "5")
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)


# ---- pg-partition: the orchestrator cannot reach PostgreSQL while PostgreSQL answers everyone else -------------
# Host networking has no Compose network to cut: the orchestrator's route to the database goes to another loopback
# address where nothing listens (POSTGRES_HOST in its override environment, container recreated): every connection
# is refused, as behind a partition.
PARTITION_HOST = "127.0.0.2"


def _pg_partition_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    _override_env(lab, "orchestrator", {"POSTGRES_HOST": PARTITION_HOST})
    lab.compose("up", "-d", "--no-deps", "orchestrator", timeout=180)  # not --wait: its /health answers 503 now
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen("http://127.0.0.1:8000/health", timeout=5).close()
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                break
        except OSError:
            pass
        time.sleep(1)
    return {"service": "orchestrator", "postgres_host": PARTITION_HOST}


def _pg_partition_heal(lab: Lab, record: dict[str, Any]) -> None:
    _override_env(lab, "orchestrator", None)
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)


# ---- bad-config: a setting in lab.env that a service cannot parse; it crash-loops at start -----------------
BAD_CONFIG_KEY = "DB_POOL_SIZE"
BAD_CONFIG_VALUE = "ten"


def _bad_config_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    service = target or "orchestrator"
    previous = set_lab_env(lab, BAD_CONFIG_KEY, BAD_CONFIG_VALUE)
    lab.compose("up", "-d", "--no-deps", service, timeout=180)  # recreated with the bad setting; no --wait
    cid = _containers_of(lab, service)[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the restart policy has restarted it at least twice
        state = _inspect(cid)
        if state["RestartCount"] >= 2:
            return {"service": service, "key": BAD_CONFIG_KEY, "previous": previous}
        time.sleep(0.5)
    raise OctoctlError(f"{service} did not crash-loop on {BAD_CONFIG_KEY}={BAD_CONFIG_VALUE}", ExitCode.INTERNAL)


def _bad_config_heal(lab: Lab, record: dict[str, Any]) -> None:
    set_lab_env(lab, BAD_CONFIG_KEY, record.get("previous") or "5")
    lab.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", record.get("service") or "orchestrator",
                timeout=180)


# ---- LLM provider: 429 / 503 / slow / 401, through the mock's mode and key files --------------------------
# The orchestrator's LLM settings as `octoctl lab up` writes them to lab.env; heal puts them back.
LLM_BASELINE = {"LLM_MAX_CONCURRENCY": "8", "LLM_RATE_PER_MINUTE": "600", "LLM_READ_TIMEOUT": "30",
                "LLM_FALLBACK_ENABLED": "false"}


def _llm_mode(lab: Lab, text: str) -> None:
    (lab.state / "llm" / "primary.mode").write_text(text + "\n")


def _llm_set_env(lab: Lab, values: dict[str, str]) -> bool:
    """Set variables in lab.env (one line each); True when the file changed."""
    path = lab.state / "lab.env"
    lines = path.read_text().splitlines()
    changed = False
    for name, value in values.items():
        wanted = f"{name}={value}"
        index = next((i for i, line in enumerate(lines) if line.startswith(name + "=")), None)
        if index is None:
            lines.append(wanted)
            changed = True
        elif lines[index] != wanted:
            lines[index] = wanted
            changed = True
    if changed:
        path.write_text("\n".join(lines) + "\n")
    return changed


def _llm_inject(mode: str, env: dict[str, str] | None = None) -> Callable[[Lab, str | None], dict[str, Any]]:
    def inject(lab: Lab, target: str | None) -> dict[str, Any]:
        _llm_mode(lab, mode)
        if env and _llm_set_env(lab, env):
            lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)
        return {"mode": mode, "env": env or {}}

    return inject


def _llm_heal(lab: Lab, record: dict[str, Any]) -> None:
    _llm_mode(lab, "normal")
    # the provider accepts the deployment's key again (whatever a fix rotated it to)
    (lab.state / "llm" / "primary.key").write_text(lab.secret("llm_api_key") + "\n")
    if _llm_set_env(lab, LLM_BASELINE):
        lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)


# llm-ratelimit: the provider enforces a real quota (LLM_PROVIDER_RPM in lab.env, llm-provider recreated) below the
# load generator's ~30 LLM calls per minute, so it answers 429 with its limit in x-ratelimit-limit-requests; a
# client brought under that limit gets no 429 any more.
LLM_RATELIMIT_RPM = "20"


def _llm_ratelimit_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    rpm = target or LLM_RATELIMIT_RPM
    if _llm_set_env(lab, {"LLM_PROVIDER_RPM": rpm}):
        lab.compose("up", "-d", "--no-deps", "--wait", "llm-provider", timeout=180)
    return {"rpm": rpm}


def _llm_ratelimit_heal(lab: Lab, record: dict[str, Any]) -> None:
    path = lab.state / "lab.env"
    lines = path.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("LLM_PROVIDER_RPM=")]
    if kept != lines:
        path.write_text("\n".join(kept) + "\n")
        lab.compose("up", "-d", "--no-deps", "--wait", "llm-provider", timeout=180)
    _llm_heal(lab, record)


def _llm_auth_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import secrets as _secrets

    # the provider rotated the key (as after a leak): the deployment's key is refused with 401. The new key is in
    # llm/primary.key, where the provider's console would show it; it is never recorded here.
    (lab.state / "llm" / "primary.key").write_text("sk-lab-rotated-" + _secrets.token_urlsafe(24) + "\n")
    return {"provider_key": "rotated"}


# ---- guardian: a blocked command, PII and a source that keeps trying, as real requests --------------------
GUARDIAN_URL = "http://127.0.0.1:8104"
GUARDIAN_FAULT_SOURCE = "203.0.113.77"
GUARDIAN_FAULT_COMMAND = "rm -rf / --no-preserve-root"
# PII the fault sends (test values: a reserved domain, the Visa test card, a fake key).
GUARDIAN_FAULT_PII = ("alice.fault@example.com", "4111 1111 1111 1111", "sk-faultKEY0123456789abcdefXYZ")


def _guardian_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import urllib.error

    source = target or GUARDIAN_FAULT_SOURCE
    texts = [GUARDIAN_FAULT_COMMAND] * 3 + [
        f"contact {GUARDIAN_FAULT_PII[0]} about the invoice",
        f"charge card {GUARDIAN_FAULT_PII[1]} now",
        f"use the key {GUARDIAN_FAULT_PII[2]} for the export",
    ]
    answered = 0
    for text in texts:
        with contextlib.suppress(urllib.error.HTTPError):
            _post_json(GUARDIAN_URL + "/api/v1/check", {"text": text, "source": source})
            answered += 1
    guardian = lab.state / "guardian"
    return {"source": source, "requests": len(texts), "answered": answered,
            "blocked_commands": (guardian / "blocked_commands.txt").read_text(),
            "blocked_sources": (guardian / "blocked_sources.txt").read_text()}


def _guardian_heal(lab: Lab, record: dict[str, Any]) -> None:
    import shutil

    guardian = lab.state / "guardian"
    if "blocked_commands" in record:
        (guardian / "blocked_commands.txt").write_text(record["blocked_commands"])
        (guardian / "blocked_sources.txt").write_text(record["blocked_sources"])
    shutil.rmtree(lab.state / "security" / "quarantine", ignore_errors=True)
    # a new container: a fresh log (no raw PII left), the lists read at start-up
    lab.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", "guardian-arm", timeout=180)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault("crash", "kill a service's process; the container stays exited (default orchestrator)",
              _crash_inject, _crash_heal, "orchestrator"),
        Fault("unhealthy-arm", "stop an arm's process (SIGSTOP): running but failing health checks",
              _unhealthy_inject, _unhealthy_heal, "coder-arm"),
        Fault("redis-bloat", "maxmemory lifted at runtime and Redis filled with cached answers up to 92% of its "
              "container's memory limit (memory exhaustion of the cache)", _redis_bloat_inject, _redis_bloat_heal),
        Fault("redis-eviction", "Redis filled with keys without TTL, maxmemory lowered under what is used, "
              "policy noeviction",
              _redis_eviction_inject, _redis_eviction_heal),
        Fault("cache-cold", "delete the cache's warm keys (arm capabilities, entities, LLM answers)",
              _cache_cold_inject, _cache_cold_heal),
        Fault("pg-connections", "another client holds every non-reserved PostgreSQL connection (idle or idle in tx)",
              _pg_connections_inject, _pg_connections_heal, "idle"),
        Fault("memory-leak", "a service's in-process cache grows without bound (POST /debug/leak, default coder-arm)",
              _memory_leak_inject, _memory_leak_heal, "coder-arm"),
        Fault("arm-unregistered", "an arm registers only once (ARM_REGISTER_INTERVAL=0) and the orchestrator restarts "
              "and forgets it (default judge-arm)",
              _arm_unregistered_inject, _restore_arm_environment, "judge-arm"),
        Fault("arm-capabilities-wrong", "an arm registers capabilities that match none of its goals "
              "(ARM_DOMAIN=misc, ARM_KEYWORDS=misc in the Compose override): routing falls back to planner-arm "
              "(default coder-arm)",
              _arm_capabilities_wrong_inject, _restore_arm_environment, "coder-arm"),
        Fault("stuck-tasks", "pending tasks older than the threshold whose constraints exclude every arm (SQL; "
              "target: how many, default 3)",
              _stuck_tasks_inject, _stuck_tasks_heal),
        Fault("oom", "lower a service's memory limit (docker update) under its usage plus a leak (POST /debug/leak): "
              "the kernel OOM-kills it and the restart policy restarts it (default judge-arm)",
              _oom_inject, _recreate_from_baseline, "judge-arm"),
        Fault("no-memory-limit", "mem_limit: 0 (no limit) for a service in the Compose override of the state dir, "
              "and the service recreated (default retriever-arm)",
              _no_memory_limit_inject, _recreate_from_baseline, "retriever-arm"),
        Fault("cpu-hog", "a runaway process inside a service's container burns its CPU quota (default executor-arm)",
              _cpu_hog_inject, _cpu_hog_heal, "executor-arm"),
        Fault("data-corruption", "delete entities that relationships point at (orphans at both ends) and write "
              "entities.properties that are not objects (array, string, number, null, NULL); target: how many "
              "entities, default 6",
              _data_corruption_inject, _data_corruption_heal),
        Fault("disk-fill", f"a {DISK_FILL_MB} MB tmpfs on the state dir's backups/ filled to 92% with backups, most "
              "older than 7 days",
              _disk_fill_inject, _disk_fill_heal),
        Fault("pg-missing-index", "drop idx_tasks_created_at and idx_entities_type, seed historical tasks (target: how "
              "many, default 150000) and run a read load that sequential-scans them",
              _missing_index_inject, _missing_index_heal),
        Fault("slow-hop", "the orchestrator waits 500 ms before each call to an arm (POST /debug/delay, default "
              "planner-arm)",
              _slow_hop_inject, _slow_hop_heal, "planner-arm"),
        Fault("llm-cache-off", "RESPONSE_CACHE_ENABLED=false in lab.env and the orchestrator recreated: every task "
              "calls the LLM",
              _llm_cache_off_inject, _llm_cache_off_heal),
        Fault("db-pool-exhausted", "the orchestrator's DB pool shrunk to 1 (lab.env, recreated) and a burst of tasks "
              "while a transaction locks tasks: 'database pool exhausted' (503)",
              _pool_exhausted_inject, _pool_exhausted_heal),
        Fault("pg-partition", "the orchestrator's database host points at a loopback address where nothing listens "
              "(override environment, recreated): it cannot reach PostgreSQL, which answers everyone else",
              _pg_partition_inject, _pg_partition_heal),
        Fault("bad-config", f"{BAD_CONFIG_KEY}={BAD_CONFIG_VALUE} in lab.env and a service recreated: it cannot parse "
              "it and crash-loops (default orchestrator)",
              _bad_config_inject, _bad_config_heal, "orchestrator"),
        Fault("llm-ratelimit", "the LLM provider (mock) enforces a quota below the load (LLM_PROVIDER_RPM, target: "
              f"requests per minute, default {LLM_RATELIMIT_RPM}): 429 with its limit in the rate-limit headers",
              _llm_ratelimit_inject, _llm_ratelimit_heal, LLM_RATELIMIT_RPM),
        Fault("llm-unavailable", "the LLM provider (mock) answers 503 to every call",
              _llm_inject("unavailable"), _llm_heal),
        Fault("llm-slow", "the LLM provider (mock) answers after 4 s while the orchestrator's read timeout is 2 s",
              _llm_inject("slow slow_ms=4000", {"LLM_READ_TIMEOUT": "2"}), _llm_heal),
        Fault("llm-auth", "the LLM provider (mock) rotated its key: the deployment's key gets 401; the new key is in "
              "the state dir's llm/primary.key",
              _llm_auth_inject, _llm_heal),
        Fault("guardian-violations", "real guardian-arm checks: a blocked command 3 times, an e-mail, a card number "
              "and an API key, all from one source (target: the source)",
              _guardian_inject, _guardian_heal),
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
