"""Faults of Redis, the stack's cache: its memory policy and limit, and its warm keys.

Each acts through Redis itself (CONFIG SET and REWRITE, writes and deletes of keys), as an operator or an
incident would.
"""

from __future__ import annotations

import os
import time
from typing import Any

from octollm_labctl.errors import Kind, LabError
from octollm_labctl.faults.base import Fault
from octollm_labctl.faults.common import containers_of, inspect, redis_client
from octollm_labctl.lab import REDIS_BASELINE, Lab, run

COMPONENT = "redis"
FILL_PREFIX = "fill:session:"


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
    raise LabError(f"the memory cgroup of container {container_id[:12]} was not found", Kind.ENVIRONMENT)


def _redis_bloat_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    """Lift maxmemory (runtime only, as an operator's CONFIG SET would) and fill Redis with cached answers until
    the container's working set reaches BLOAT_TARGET of its memory limit: memory exhaustion of the cache. The
    working set is read from the cgroup after each batch, and the batches shrink near the target, so the kernel
    never OOM-kills it."""
    client = redis_client(lab)
    before = client.config_get("maxmemory")["maxmemory"]
    [cid] = containers_of(lab, "redis")
    info = inspect(cid)
    limit = int(info["HostConfig"].get("Memory") or 0)
    if not limit:
        raise LabError("the redis container has no memory limit: nothing to exhaust", Kind.USAGE)
    run_id = client.info("server")["run_id"]
    client.config_set("maxmemory", "0")
    value = b"x" * 65536
    filled = 0
    while (working := _working_set(info["Id"])) < BLOAT_TARGET * limit:
        batch = 40 if BLOAT_TARGET * limit - working > 8 * 2**20 else 1
        pipe = client.pipeline(transaction=False)
        for i in range(filled, filled + batch):
            pipe.set(f"{BLOAT_PREFIX}{i}", value)
        pipe.execute()
        filled += batch
    if client.info("server")["run_id"] != run_id:
        raise LabError("Redis restarted while it was filled (OOM kill?): the fault is not in place", Kind.INTERNAL)
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


FAULTS = (
    Fault("redis-bloat", COMPONENT, "maxmemory lifted at runtime and Redis filled with cached answers up to 92% of "
          "its container's memory limit (memory exhaustion of the cache)", _redis_bloat_inject, _redis_bloat_heal),
    Fault("redis-eviction", COMPONENT, "Redis filled with keys without TTL, maxmemory lowered under what is used, "
          "policy noeviction",
          _redis_eviction_inject, _redis_eviction_heal),
    Fault("cache-cold", COMPONENT, "delete the cache's warm keys (arm capabilities, entities, LLM answers)",
          _cache_cold_inject, _cache_cold_heal),
)
