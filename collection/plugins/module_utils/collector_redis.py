# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ``redis`` evidence kind (redis-py).

Order matters: the probes that look keys up (SCAN sample with TYPE / MEMORY USAGE / PTTL, EXISTS) count
as keyspace hits in Redis' own statistics, so they all run *before* the two INFO samples; the hit rate
is then the rate of the clients' lookups over ``sample_seconds`` only. TYPE, PTTL and MEMORY USAGE do not
touch the LRU/LFU clock, so a diagnosis leaves the eviction order as it found it. Nothing is written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.octollm.remediation.plugins.module_utils.evidence import (
    Collector,
    CollectorError,
    error_of,
    register,
    remaining,
)
from ansible_collections.octollm.remediation.plugins.module_utils.keypatterns import (
    normalise_key,
    variable_segments,
)

# Never read back from CONFIG GET or the config file, whatever is asked.
SECRET_CONFIG = ("requirepass", "masterauth", "masteruser", "user", "tls-key-file-pass", "tls-client-key-file-pass")

INFO_FIELDS = (
    # server / clients / replication
    "redis_version",
    "redis_mode",
    "uptime_in_seconds",
    "role",
    "connected_clients",
    "blocked_clients",
    "maxclients",
    # memory
    "used_memory",
    "used_memory_human",
    "used_memory_rss",
    "used_memory_peak",
    "used_memory_dataset",
    "maxmemory",
    "maxmemory_human",
    "maxmemory_policy",
    "mem_fragmentation_ratio",
    "mem_fragmentation_bytes",
    "lazyfree_pending_objects",
    # stats
    "total_connections_received",
    "total_commands_processed",
    "instantaneous_ops_per_sec",
    "rejected_connections",
    "expired_keys",
    "evicted_keys",
    "keyspace_hits",
    "keyspace_misses",
    "total_error_replies",
    # persistence
    "loading",
    "rdb_bgsave_in_progress",
    "aof_enabled",
)

COUNTERS = (
    "keyspace_hits",
    "keyspace_misses",
    "evicted_keys",
    "expired_keys",
    "total_commands_processed",
    "total_error_replies",
    "rejected_connections",
    "total_connections_received",
)

WRITE_COMMANDS = ("set", "setex", "psetex", "setnx", "mset", "msetnx", "getset", "hset", "hmset")


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def parse_info(raw):
    """Split redis-py's parsed INFO into curated fields, error stats, command calls and keyspace."""
    info = {name: raw.get(name) for name in INFO_FIELDS if name in raw}
    errorstats = {}
    commands = {}
    keyspace = {}
    for name, value in raw.items():
        if name.startswith("errorstat_") and isinstance(value, dict):
            errorstats[name[len("errorstat_") :]] = int(value.get("count", 0))
        elif name.startswith("cmdstat_") and isinstance(value, dict):
            commands[name[len("cmdstat_") :]] = {
                "calls": int(value.get("calls", 0)),
                "usec": int(value.get("usec", 0)),
                "failed_calls": int(value.get("failed_calls", 0)),
            }
        elif name.startswith("db") and name[2:].isdigit() and isinstance(value, dict):
            keyspace[name] = {k: int(v) for k, v in value.items() if isinstance(v, (int, float))}
    return info, errorstats, commands, keyspace


def hit_rate(hits, misses):
    total = hits + misses
    return round(hits / total, 4) if total > 0 else None


def sample_deltas(first, second, seconds):
    """Rates between two INFO samples (counters are cumulative since the server started)."""
    info1, err1, cmd1, ks1 = first
    info2, err2, cmd2, ks2 = second
    deltas = {name: int(info2.get(name, 0) or 0) - int(info1.get(name, 0) or 0) for name in COUNTERS}
    restarted = any(value < 0 for value in deltas.values())
    errors = {}
    for name in set(err1) | set(err2):
        delta = err2.get(name, 0) - err1.get(name, 0)
        if delta:
            errors[name] = delta
    calls = {}
    for name in set(cmd1) | set(cmd2):
        delta = cmd2.get(name, {}).get("calls", 0) - cmd1.get(name, {}).get("calls", 0)
        if delta > 0:
            calls[name] = delta
    top_calls = dict(sorted(calls.items(), key=lambda item: -item[1])[:15])
    writes = sum(calls.get(name, 0) for name in WRITE_COMMANDS)
    keys1 = sum(db.get("keys", 0) for db in ks1.values())
    keys2 = sum(db.get("keys", 0) for db in ks2.values())
    deletes = calls.get("del", 0) + calls.get("unlink", 0)
    # keys that came into being in the window: net growth plus what left by eviction, expiry or deletion
    created = max(0, (keys2 - keys1) + deltas["evicted_keys"] + deltas["expired_keys"] + deletes)
    lookups = deltas["keyspace_hits"] + deltas["keyspace_misses"]
    per_second = (lambda n: round(n / seconds, 3)) if seconds > 0 else (lambda n: None)
    return {
        "seconds": round(seconds, 3),
        "restarted": restarted,
        "deltas": deltas,
        "hit_rate": None if restarted else hit_rate(deltas["keyspace_hits"], deltas["keyspace_misses"]),
        "lookups": lookups,
        "lookups_per_s": per_second(lookups),
        "ops_per_s": per_second(deltas["total_commands_processed"]),
        "evicted_per_s": per_second(deltas["evicted_keys"]),
        "errors": errors,
        "calls": top_calls,
        "writes": writes,
        "keys_created": created,
        "keys_before": keys1,
        "keys_after": keys2,
    }


def quiet_client_kwargs(klass):
    """Client options that keep a diagnosis out of the server's error statistics.

    redis-py 5+ sends CLIENT SETINFO on connect and redis-py 8 speaks RESP3 with maintenance notifications;
    servers before 7.2 answer those with errors, which would add to ``errorstat_ERR`` and
    ``total_error_replies`` - the very counters a diagnosis reads. RESP2 without client info avoids both.
    """
    try:
        import inspect

        params = inspect.signature(klass.__init__).parameters
    except (TypeError, ValueError):
        return {}
    extra = {}
    if "protocol" in params:
        extra["protocol"] = 2
    if "driver_info" in params:
        extra["driver_info"] = None
    elif "lib_name" in params:
        extra.update(lib_name=None, lib_version=None)
    return extra


def read_config_file(path, names):
    """The directives ``names`` as the config file sets them (last occurrence wins, like Redis)."""
    wanted = [name for name in names if name not in SECRET_CONFIG]
    found = {}
    includes = []
    with open(path, "r") as handle:
        for line in handle:
            words = line.strip().split(None, 1)
            if not words or words[0].startswith("#"):
                continue
            directive = words[0].lower()
            value = words[1].strip() if len(words) > 1 else ""
            if directive == "include":
                includes.append(value)
            elif directive in wanted:
                found[directive] = value.strip('"')
    return {"file": path, "config": found, "includes": includes, "error": None}


@register
class RedisCollector(Collector):
    kind = "redis"
    SECRETS = ("password",)
    OPTIONS = dict(
        host=dict(type="str", default="127.0.0.1"),
        port=dict(type="int", default=6379),
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        db=dict(type="int", default=0),
        tls=dict(type="bool", default=False),
        validate_certs=dict(type="bool", default=True),
        connect_timeout=dict(type="float", default=3.0),
        sample_seconds=dict(type="float", default=2.0),
        info=dict(type="bool", default=True),
        config=dict(type="list", elements="str", default=["maxmemory", "maxmemory-policy"]),
        config_file=dict(type="path"),
        slowlog=dict(type="int", default=10),
        scan_count=dict(type="int", default=200),
        scan_match=dict(type="str", default="*"),
        max_patterns=dict(type="int", default=25),
        patterns=dict(type="list", elements="str", default=[]),
        pattern_scan_limit=dict(type="int", default=100000),
        exists=dict(type="list", elements="str", default=[]),
    )

    def _opt(self, name):
        value = self.options.get(name)
        if value is None:
            value = self.OPTIONS[name].get("default")
        return value

    def _client(self, deadline):
        try:
            import redis
        except ImportError as exc:
            raise CollectorError(
                "missing_tool",
                "the Python package redis (redis-py) is not installed on the host that gathers evidence: %s" % exc,
            ) from exc
        timeout = min(float(self._opt("connect_timeout")), remaining(deadline))
        kwargs = dict(
            host=self._opt("host"),
            port=int(self._opt("port")),
            db=int(self._opt("db")),
            password=self._opt("password") or None,
            username=self._opt("username") or None,
            socket_timeout=max(timeout, 1.0),
            socket_connect_timeout=timeout,
        )
        if self._opt("tls"):
            kwargs.update(ssl=True, ssl_cert_reqs="required" if self._opt("validate_certs") else "none")
        kwargs.update(quiet_client_kwargs(redis.Redis))
        return redis.Redis(**kwargs)

    def _probe(self, result, name, func):
        """Run one probe; a failure becomes result['probe_errors'][name] (the rest goes on)."""
        try:
            return func()
        except Exception as exc:
            if type(exc).__name__ in ("ConnectionError", "TimeoutError", "AuthenticationError"):
                raise
            result.setdefault("probe_errors", {})[name] = error_of(exc, self.secrets())
            return None

    def collect(self, deadline):
        client = self._client(deadline)
        result = {"target": "%s:%s/%s" % (self._opt("host"), self._opt("port"), self._opt("db"))}
        client.ping()  # connection and AUTH errors surface here, as the kind's error
        try:
            names = [name for name in self._opt("config") if name.lower() not in SECRET_CONFIG]
            if names:
                result["config"] = self._probe(result, "config", lambda: self._config_get(client, names))
                if self._opt("config_file"):
                    result["persisted"] = self._persisted(names)
            result["dbsize"] = self._probe(result, "dbsize", client.dbsize)
            if self._opt("slowlog") > 0:
                result["slowlog"] = self._probe(result, "slowlog", lambda: self._slowlog(client))
            if self._opt("scan_count") > 0:
                result["keys"] = self._probe(result, "keys", lambda: self._key_sample(client, deadline))
            if self._opt("patterns"):
                result["pattern_counts"] = self._probe(
                    result, "pattern_counts", lambda: self._pattern_counts(client, deadline)
                )
            if self._opt("exists"):
                result["exists"] = self._probe(result, "exists", lambda: self._exists(client))
            if self._opt("info"):
                self._info(client, result, deadline)
        finally:
            client.close()
        return result

    # --- probes --------------------------------------------------------------------------------------
    @staticmethod
    def _config_get(client, names):
        found = {}
        for name in names:  # one name per call: CONFIG GET with several names needs Redis 7
            for key, value in client.config_get(name).items():
                key = _text(key)
                if key.lower() not in SECRET_CONFIG:
                    found[key] = _text(value)
        return found

    def _persisted(self, names):
        path = self._opt("config_file")
        try:
            return read_config_file(path, names)
        except Exception as exc:
            return {"file": path, "config": {}, "includes": [], "error": error_of(exc, self.secrets())}

    def _slowlog(self, client):
        entries = []
        for entry in client.slowlog_get(int(self._opt("slowlog"))):
            words = _text(entry.get("command", b"")).split()
            entries.append(
                {
                    "id": entry.get("id"),
                    "start_time": entry.get("start_time"),
                    "duration_us": entry.get("duration"),
                    "command": words[0].upper() if words else "",
                    "key_pattern": normalise_key(words[1]) if len(words) > 1 else None,
                    "args": max(0, len(words) - 1),  # arguments are never returned: values may be data
                }
            )
        return {"entries": entries, "now": int(time.time())}

    def _key_sample(self, client, deadline):
        wanted = int(self._opt("scan_count"))
        keys = []
        cursor = 0
        calls = 0
        while len(keys) < wanted and calls < 1000 and remaining(deadline, 0) > 0.5:
            cursor, batch = client.scan(cursor=cursor, match=self._opt("scan_match"), count=100)
            calls += 1
            keys.extend(batch)
            if int(cursor) == 0:
                break
        keys = keys[:wanted]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
            pipe.memory_usage(key)
            pipe.pttl(key)
        replies = pipe.execute(raise_on_error=False) if keys else []
        patterns = {}
        failures = 0
        for index, key in enumerate(keys):
            kind, size, pttl = replies[3 * index : 3 * index + 3]
            if isinstance(kind, Exception) or isinstance(pttl, Exception):
                failures += 1
                continue
            kind = _text(kind)
            if kind == "none" or pttl == -2:
                continue  # expired between SCAN and the lookup
            size = None if isinstance(size, Exception) else size
            name = _text(key)
            pattern = normalise_key(name)
            entry = patterns.setdefault(
                pattern,
                {
                    "pattern": pattern,
                    "count": 0,
                    "types": {},
                    "bytes_total": 0,
                    "bytes_max": 0,
                    "sized": 0,
                    "with_ttl": 0,
                    "without_ttl": 0,
                    "ttl_min_s": None,
                    "ttl_max_s": None,
                    "example": name[:120],
                    "variable_segments": variable_segments(pattern),
                },
            )
            entry["count"] += 1
            entry["types"][kind] = entry["types"].get(kind, 0) + 1
            if isinstance(size, int):
                entry["sized"] += 1
                entry["bytes_total"] += size
                entry["bytes_max"] = max(entry["bytes_max"], size)
            if pttl is not None and pttl >= 0:
                ttl = round(pttl / 1000.0, 1)
                entry["with_ttl"] += 1
                entry["ttl_min_s"] = ttl if entry["ttl_min_s"] is None else min(entry["ttl_min_s"], ttl)
                entry["ttl_max_s"] = ttl if entry["ttl_max_s"] is None else max(entry["ttl_max_s"], ttl)
            else:
                entry["without_ttl"] += 1
        sampled = sum(entry["count"] for entry in patterns.values())
        sampled_bytes = sum(entry["bytes_total"] for entry in patterns.values())
        ordered = sorted(patterns.values(), key=lambda entry: (-entry["bytes_total"], -entry["count"]))
        limit = int(self._opt("max_patterns"))
        kept, rest = ordered[:limit], ordered[limit:]
        for entry in kept:
            entry["share"] = round(entry["count"] / sampled, 4) if sampled else 0.0
            entry["bytes_share"] = round(entry["bytes_total"] / sampled_bytes, 4) if sampled_bytes else 0.0
            entry["bytes_avg"] = int(entry["bytes_total"] / entry["sized"]) if entry["sized"] else None
        return {
            "sampled": sampled,
            "sampled_bytes": sampled_bytes,
            "scan_calls": calls,
            "complete": int(cursor) == 0,
            "failures": failures,
            "patterns": kept,
            "other_patterns": len(rest),
            "other_count": sum(entry["count"] for entry in rest),
        }

    def _pattern_counts(self, client, deadline):
        counts = {}
        limit = int(self._opt("pattern_scan_limit"))
        for pattern in self._opt("patterns"):
            cursor, count, calls = 0, 0, 0
            while True:
                cursor, batch = client.scan(cursor=cursor, match=pattern, count=1000)
                calls += 1
                count += len(batch)
                if int(cursor) == 0 or calls * 1000 >= limit or remaining(deadline, 0) < 0.5:
                    break
            counts[pattern] = {"count": count, "complete": int(cursor) == 0}
        return counts

    def _exists(self, client):
        keys = list(self._opt("exists"))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
        found = {}
        for key, pttl in zip(keys, pipe.execute(raise_on_error=False)):
            if isinstance(pttl, Exception):
                found[key] = {"exists": None, "ttl_s": None}
            else:
                found[key] = {"exists": pttl != -2, "ttl_s": round(pttl / 1000.0, 1) if pttl >= 0 else None}
        return found

    def _info(self, client, result, deadline):
        first_raw = client.info("all")
        first = parse_info(first_raw)
        started = time.monotonic()
        seconds = max(0.0, float(self._opt("sample_seconds")))
        if seconds > 0:
            time.sleep(min(seconds, max(0.0, remaining(deadline, 0) - 0.5)))
            second_raw = client.info("all")
            elapsed = time.monotonic() - started
            second = parse_info(second_raw)
        else:
            second, elapsed = first, 0.0
        info, errorstats, commands, keyspace = second
        result["info"] = info
        result["errorstats"] = errorstats
        result["keyspace"] = keyspace
        result["cumulative_hit_rate"] = hit_rate(
            int(info.get("keyspace_hits", 0) or 0), int(info.get("keyspace_misses", 0) or 0)
        )
        result["sample"] = sample_deltas(first, second, elapsed) if seconds > 0 else None
