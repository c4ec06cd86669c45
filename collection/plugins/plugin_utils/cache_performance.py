# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "Cache Performance Issues": findings, scenarios, plan and prevention checks.

Input is the evidence of ``stack_evidence`` (kinds ``redis`` and ``prometheus``) and the role's settings
(every threshold comes from ``roles/cache_performance/defaults/main.yml``). Scenarios:

- A  eviction policy: ``noeviction`` (or a volatile policy with few volatile keys) while memory is full, so
     cache writes fail with OOM. Fixable: set the policy live and in the config file.
- B  inefficient keys: too specific (timestamps, several ids) or too large. Report only.
- C  missing warming: the warm keys (``arm:capability:<arm>``, ``entity:<id>``) are absent. Fixable: warm through
     the stack where the deployment offers a warming endpoint (the optional probe ``cache_warm`` of the
     orchestrator); else a report naming what a human does.
- D  stampede: bursts of misses (Prometheus) or duplicate writes of the same keys (Redis). Report only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch

from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import evidence_kind
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    gate,
    human_bytes,
    percent,
    redis_bytes,
    unknown,
)

PROCEDURE = "cache_performance"

# Names of the Prometheus queries (their PromQL is built from the settings in ``needs``).
Q_HIT_RATE = "cache_performance_hit_rate"
Q_LOOKUPS = "cache_performance_lookups_per_s"
Q_HIT_RATE_RECENT = "cache_performance_hit_rate_recent"
Q_LOOKUPS_RECENT = "cache_performance_lookups_per_s_recent"
Q_ERRORS = "cache_performance_errors_per_s"
Q_MISS_PEAK = "cache_performance_miss_peak_per_s"
Q_MISS_AVG = "cache_performance_miss_avg_per_s"
Q_METRICS = "cache_performance_metrics_present"

# The service whose cache metrics and warming endpoint the judgement reads (the seed's orchestrator).
CACHE_SERVICE = "orchestrator"
# The optional endpoint that warms the cache (``context.probe(CACHE_SERVICE, WARM_PROBE)``).
WARM_PROBE = "cache_warm"
# The cache metrics, by meaning (``context.metric``).
METRICS = ("cache_hits", "cache_misses", "cache_errors")

# The scenario each check speaks to (a finding names it only when it points there, i.e. is not ok).
CHECK_SCENARIO = {
    "redis.write_errors": "A",
    "redis.eviction_policy": "A",
    "redis.memory": "A",
    "redis.evictions": "A",
    "redis.non_cache_keys": "A",
    "cache.key_patterns": "B",
    "redis.slowlog": "B",
    "cache.warm_keys": "C",
    "cache.stampede": "D",
}

SCENARIOS = {
    "A": "Cache eviction policy issues",
    "B": "Inefficient cache keys",
    "C": "Missing cache warming",
    "D": "Cache stampede",
}



def _settings(settings):
    return dict(settings or {})


def _query(prom, name):
    """(value, answer) of a named Prometheus query; value None when it failed, was empty or NaN."""
    if prom is None:
        return None, None
    answer = (prom.get("queries") or {}).get(name)
    if not answer or answer.get("error"):
        return None, answer
    return answer.get("value"), answer


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _matches(name, globs):
    return any(fnmatch.fnmatchcase(name or "", glob) for glob in globs or [])


class Facts:
    """The numbers the checks share, read once from the evidence."""

    def __init__(self, evidence, settings):
        self.s = settings
        self.redis, self.redis_error = evidence_kind(evidence, "redis")
        self.prom, self.prom_error = evidence_kind(evidence, "prometheus")
        redis = self.redis or {}
        self.info = redis.get("info") or {}
        self.config = redis.get("config") or {}
        self.persisted = redis.get("persisted") or {}
        self.sample = redis.get("sample") or {}
        self.policy = self.config.get("maxmemory-policy") or self.info.get("maxmemory_policy")
        self.maxmemory = redis_bytes(self.config.get("maxmemory", self.info.get("maxmemory")))
        self.used = self.info.get("used_memory")
        self.used_ratio = (
            round(self.used / float(self.maxmemory), 4) if self.maxmemory and self.used is not None else None
        )
        persisted_config = self.persisted.get("config") or {}
        self.file_policy = persisted_config.get("maxmemory-policy")
        self.file_maxmemory = redis_bytes(persisted_config.get("maxmemory"))
        self.file_readable = bool(self.persisted) and not self.persisted.get("error")
        self.oom_in_sample = int((self.sample.get("errors") or {}).get("OOM", 0))
        self.oom_total = int((redis.get("errorstats") or {}).get("OOM", 0))
        keys = sum(db.get("keys", 0) for db in (redis.get("keyspace") or {}).values())
        expires = sum(db.get("expires", 0) for db in (redis.get("keyspace") or {}).values())
        self.keys_total = keys
        self.volatile_share = round(expires / float(keys), 4) if keys else None
        self.patterns = ((redis.get("keys") or {}).get("patterns")) or []

    def policy_suitable(self, policy):
        if policy not in self.s["suitable_policies"]:
            return False
        if policy.startswith("volatile-") and self.volatile_share is not None:
            return self.volatile_share >= self.s["volatile_min_share"]
        return True

    def memory_high(self):
        return self.used_ratio is not None and self.used_ratio >= self.s["memory_high_ratio"]

    def nonevictable(self):
        """Sampled patterns outside the cache that have no TTL: what an allkeys-* policy may evict."""
        found = []
        for entry in self.patterns:
            if entry.get("without_ttl") and not _matches(entry.get("example"), self.s["cache_key_patterns"]):
                found.append(
                    {
                        "pattern": entry["pattern"],
                        "keys_without_ttl": entry["without_ttl"],
                        "bytes_share": entry.get("bytes_share"),
                    }
                )
        return found


# --- checks ------------------------------------------------------------------------------------------
def _promql_seconds(duration):
    """A PromQL duration ("30s", "5m", "1h") in seconds, or None."""
    text = str(duration or "").strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * units[unit]
            except ValueError:
                return None
    return None


def check_hit_rate(f, after_fix=False):
    """The symptom. Over the Prometheus window (the alert's), or the Redis sample when Prometheus cannot answer.

    A rate low over the window may be recovering: only recent samples say so, never the fact that an action ran.
    In a diagnosis that is the Prometheus recent window. In a verification (``after_fix``) the window still counts
    the misses from before the fix, so only samples taken after it are judged: the Redis sample of the fresh
    evidence (its two INFO reads both follow the fix) once it holds ``verify_min_lookups`` lookups - a cache that
    was blocked or emptied misses each key once as it refills, so fewer lookups cannot tell refilling from still
    failing - else a good rate over the recent window; with neither, the rate is not judged yet (a warning that
    says so: the cause's own checks verify the fix, and the alert keeps watching the symptom)."""
    s = f.s
    title = "%s cache hit rate is at least %s" % (s["cache_type"].upper(), percent(s["hit_rate_min"]))
    expected = ">= %s" % s["hit_rate_min"]
    prom_rate, prom_answer = _query(f.prom, Q_HIT_RATE)
    prom_lookups, _ = _query(f.prom, Q_LOOKUPS)
    redis_rate = f.sample.get("hit_rate")
    redis_lookups = f.sample.get("lookups")
    evidence = {
        "prometheus": {
            "hit_rate": prom_rate,
            "lookups_per_s": prom_lookups,
            "window": s["prometheus_window"],
            "error": (prom_answer or {}).get("error") if f.prom else f.prom_error,
        },
        "redis": {
            "hit_rate": redis_rate,
            "lookups": redis_lookups,
            "seconds": f.sample.get("seconds"),
            "cumulative_hit_rate": (f.redis or {}).get("cumulative_hit_rate"),
            "error": f.redis_error,
        },
    }
    series, series_answer = _query(f.prom, Q_METRICS)
    no_series = series is not None and series <= 0
    if no_series:
        evidence["prometheus"]["note"] = "no series: %s" % (series_answer or {}).get("query")
    if prom_lookups is not None and prom_lookups >= s["hit_rate_min_lookups_per_s"] and prom_rate is not None:
        observed, source = round(prom_rate, 4), "prometheus"
    elif redis_lookups is not None and redis_lookups >= s["hit_rate_min_lookups"] and redis_rate is not None:
        observed, source = redis_rate, "redis"
    elif no_series:
        # the metric this deployment exports is named otherwise (octollm_services.<service>.metrics), or the
        # service exports none: nothing says there was no traffic
        return unknown(
            "cache.hit_rate",
            title,
            expected,
            {
                "kind": "other",
                "message": "no series in Prometheus (%s), and too few lookups in the Redis sample"
                % (series_answer or {}).get("query"),
            },
            None,
            evidence,
        )
    elif (f.prom and prom_answer and not prom_answer.get("error")) or f.sample:
        evidence["source"] = None
        evidence["note"] = "too few cache lookups to judge a hit rate"
        return finding("cache.hit_rate", title, "ok", "no traffic", expected, evidence, None)
    else:
        return unknown("cache.hit_rate", title, expected, f.prom_error or f.redis_error, None, evidence)
    evidence["source"] = source
    if observed >= s["hit_rate_min"]:
        return finding("cache.hit_rate", title, "ok", observed, expected, evidence, None)
    status = "problem"
    recent_rate, _ = _query(f.prom, Q_HIT_RATE_RECENT)
    recent_lookups, _ = _query(f.prom, Q_LOOKUPS_RECENT)
    recent_good = (
        recent_rate is not None
        and (recent_lookups or 0) >= s["hit_rate_min_lookups_per_s"]
        and recent_rate >= s["hit_rate_min"]
    )
    # Redis restarted within the window or its grace (an emergency restart, a crash): an empty cache refills from
    # traffic, so a low rate is a warning then (the causes have checks of their own), judged on the samples since
    uptime = f.info.get("uptime_in_seconds")
    grace = max(_promql_seconds(s["prometheus_window"]) or 0, s["restart_grace_seconds"])
    restarted = not after_fix and isinstance(uptime, (int, float)) and uptime < grace
    if restarted:
        evidence["restarted"] = {"redis_uptime_s": uptime, "window": s["prometheus_window"]}
    if after_fix or restarted:
        since = "the fix" if after_fix else "Redis restarted %ds ago" % uptime
        evidence["after_fix"] = {
            "source": "redis",
            "hit_rate": redis_rate,
            "lookups": redis_lookups,
            "seconds": f.sample.get("seconds"),
        }
        if redis_rate is not None and (redis_lookups or 0) >= s["verify_min_lookups"]:
            if redis_rate >= s["hit_rate_min"]:
                evidence["note"] = (
                    "recovering: %s over the %d lookups sampled since %s; the %s window still counts the "
                    "misses from before" % (percent(redis_rate), redis_lookups, since, s["prometheus_window"])
                )
                status = "warning"
            else:
                evidence["note"] = "still low since %s: %s over the %d lookups sampled" % (
                    since,
                    percent(redis_rate),
                    redis_lookups,
                )
                if restarted:
                    evidence["note"] += "; the cache refills (within %ds of the restart)" % grace
                    status = "warning"
            return finding("cache.hit_rate", title, status, observed, expected, evidence, None)
    if source == "prometheus" and recent_good:
        # The window still holds misses from before a change (a fix, a restart) that the last few scrapes no
        # longer show: the cache has recovered, the alert's window has not caught up yet.
        evidence["prometheus"]["recent"] = {"hit_rate": round(recent_rate, 4), "window": s["recent_window"]}
        evidence["note"] = "recovering: %s over the last %s; the %s window still counts earlier misses" % (
            percent(recent_rate),
            s["recent_window"],
            s["prometheus_window"],
        )
        status = "warning"
    elif after_fix or restarted:
        if recent_rate is not None:
            evidence["prometheus"]["recent"] = {"hit_rate": round(recent_rate, 4), "window": s["recent_window"]}
        evidence["note"] = (
            "not judged yet: %s lookups sampled since %s, fewer than the %s needed to judge a cache that "
            "refills; the %s window (and the last %s) still count the misses from before"
            % (redis_lookups if redis_lookups is not None else "no", since, s["verify_min_lookups"],
               s["prometheus_window"], s["recent_window"])
        )
        status = "warning"
    return finding("cache.hit_rate", title, status, observed, expected, evidence, None)


def check_write_errors(f):
    title = "Cache writes succeed (no OOM rejections)"
    expected = "0 OOM errors"
    prom_errors, _ = _query(f.prom, Q_ERRORS)
    if f.redis is None:
        if prom_errors:
            return finding(
                "redis.write_errors",
                title,
                "warning",
                "%.2f cache errors/s" % prom_errors,
                expected,
                {"prometheus_errors_per_s": prom_errors},
                None,
                f.redis_error,
            )
        return unknown("redis.write_errors", title, expected, f.redis_error, "A")
    evidence = {
        "oom_in_sample": f.oom_in_sample,
        "sample_seconds": f.sample.get("seconds"),
        "oom_since_start": f.oom_total,
        "prometheus_errors_per_s": prom_errors,
        "errors_in_sample": f.sample.get("errors") or {},
    }
    if f.oom_in_sample > 0:
        observed = "%d OOM errors in %ss" % (f.oom_in_sample, f.sample.get("seconds"))
        return finding("redis.write_errors", title, "problem", observed, expected, evidence, "A")
    return finding(
        "redis.write_errors", title, "ok", "0 OOM errors in %ss" % f.sample.get("seconds"), expected, evidence, None
    )


def check_eviction_policy(f):
    s = f.s
    title = "Redis eviction policy suits a cache"
    expected = " | ".join(s["suitable_policies"])
    if f.redis is None:
        return unknown("redis.eviction_policy", title, expected, f.redis_error, "A")
    evidence = {
        "live": f.policy,
        "persisted": f.file_policy,
        "config_file": f.persisted.get("file"),
        "maxmemory": f.maxmemory,
        "used_memory": f.used,
        "used_ratio": f.used_ratio,
        "volatile_share": f.volatile_share,
        "oom_in_sample": f.oom_in_sample,
        "nonevictable": f.nonevictable()[:5],
    }
    if f.persisted.get("error"):
        evidence["persisted_error"] = f.persisted["error"]
    if not f.maxmemory:
        evidence["note"] = "maxmemory is not set: the policy never applies (see the prevention checks)"
        return finding("redis.eviction_policy", title, "ok", f.policy, expected, evidence, None)
    if not f.policy_suitable(f.policy):
        pressure = f.oom_in_sample > 0 or f.memory_high()
        if f.policy and f.policy.startswith("volatile-") and f.policy in s["suitable_policies"]:
            evidence["note"] = "only %s of the keys have a TTL: a volatile policy cannot free memory" % percent(
                f.volatile_share
            )
        return finding(
            "redis.eviction_policy", title, "problem" if pressure else "warning", f.policy, expected, evidence, "A"
        )
    if f.file_readable and f.file_policy and not f.policy_suitable(f.file_policy):
        evidence["note"] = "the config file sets %s: a restart brings it back" % f.file_policy
        return finding(
            "redis.eviction_policy",
            title,
            "warning",
            "%s (file: %s)" % (f.policy, f.file_policy),
            expected,
            evidence,
            "A",
        )
    return finding("redis.eviction_policy", title, "ok", f.policy, expected, evidence, None)


def check_memory(f):
    s = f.s
    title = "Redis memory below maxmemory, or evicting"
    expected = "< %s of maxmemory, or a suitable eviction policy" % percent(s["memory_high_ratio"])
    if f.redis is None:
        return unknown("redis.memory", title, expected, f.redis_error, "A")
    evidence = {
        "used_memory": f.used,
        "used_memory_human": human_bytes(f.used),
        "maxmemory": f.maxmemory,
        "maxmemory_human": human_bytes(f.maxmemory),
        "used_ratio": f.used_ratio,
        "peak": f.info.get("used_memory_peak"),
        "dbsize": (f.redis or {}).get("dbsize"),
        "evicted_keys": f.info.get("evicted_keys"),
    }
    if not f.maxmemory:
        return finding("redis.memory", title, "ok", "%s (no maxmemory)" % human_bytes(f.used), expected, evidence)
    observed = "%s of %s (%s)" % (human_bytes(f.used), human_bytes(f.maxmemory), percent(f.used_ratio))
    if f.memory_high() and not f.policy_suitable(f.policy):
        return finding("redis.memory", title, "problem", observed, expected, evidence, "A")
    if f.memory_high():
        evidence["note"] = "full, and evicting as the policy says"
    return finding("redis.memory", title, "ok", observed, expected, evidence)


def check_evictions(f):
    s = f.s
    title = "Evictions stay below %s keys/s" % s["evictions_per_s_max"]
    expected = "<= %s/s" % s["evictions_per_s_max"]
    if f.redis is None:
        return unknown("redis.evictions", title, expected, f.redis_error)
    rate = f.sample.get("evicted_per_s")
    evidence = {"evicted_per_s": rate, "evicted_since_start": f.info.get("evicted_keys"), "used_ratio": f.used_ratio}
    if rate is not None and rate > s["evictions_per_s_max"]:
        evidence["note"] = "the working set is larger than maxmemory: raise maxmemory or cache less"
        return finding("redis.evictions", title, "warning", "%.1f/s" % rate, expected, evidence, "A")
    return finding("redis.evictions", title, "ok", "%s/s" % rate, expected, evidence)


def check_fragmentation(f):
    s = f.s
    title = "Redis memory fragmentation is moderate"
    expected = "ratio <= %s (or < %s wasted)" % (
        s["fragmentation_ratio_max"],
        human_bytes(s["fragmentation_min_bytes"]),
    )
    if f.redis is None:
        return unknown("redis.fragmentation", title, expected, f.redis_error)
    ratio = _num(f.info.get("mem_fragmentation_ratio"))
    wasted = f.info.get("mem_fragmentation_bytes")
    evidence = {"ratio": ratio, "wasted_bytes": wasted, "rss": f.info.get("used_memory_rss")}
    if ratio and ratio > s["fragmentation_ratio_max"] and (wasted or 0) >= s["fragmentation_min_bytes"]:
        evidence["note"] = "activedefrag yes, or a restart in a quiet hour, returns the memory"
        return finding("redis.fragmentation", title, "warning", ratio, expected, evidence)
    return finding("redis.fragmentation", title, "ok", ratio, expected, evidence)


def check_slowlog(f, large_patterns):
    s = f.s
    title = "No slow cache lookups recently"
    expected = "< %s commands slower than %s ms in %ss" % (
        s["slowlog_max_entries"],
        s["slowlog_slower_than_us"] / 1000.0,
        s["slowlog_window_seconds"],
    )
    if f.redis is None:
        return unknown("redis.slowlog", title, expected, f.redis_error)
    slowlog = (f.redis or {}).get("slowlog")
    if slowlog is None:
        error = ((f.redis or {}).get("probe_errors") or {}).get("slowlog")
        if error:
            return unknown("redis.slowlog", title, expected, error)
        return finding("redis.slowlog", title, "ok", "not read", expected)
    now = slowlog.get("now") or 0
    recent = [
        entry
        for entry in slowlog.get("entries") or []
        if (entry.get("start_time") or 0) >= now - s["slowlog_window_seconds"]
        and (entry.get("duration_us") or 0) >= s["slowlog_slower_than_us"]
        # the cache's own commands (and KEYS, which blocks every lookup); other writers' bulk work is not a
        # slow cache lookup
        and (_matches(entry.get("key_pattern"), s["cache_key_patterns"]) or entry.get("command") == "KEYS")
    ]
    others = len(slowlog.get("entries") or []) - len(recent)
    commands = {}
    for entry in recent:
        name = "%s %s" % (entry.get("command"), entry.get("key_pattern") or "")
        commands[name.strip()] = commands.get(name.strip(), 0) + 1
    evidence = {
        "recent": len(recent),
        "commands": commands,
        "slowest_us": max([entry.get("duration_us") or 0 for entry in recent] or [0]),
        "other_entries": others,
    }
    if len(recent) >= s["slowlog_max_entries"]:
        scenario = "B" if any(entry.get("key_pattern") in large_patterns for entry in recent) else None
        return finding(
            "redis.slowlog", title, "warning", "%d slow commands" % len(recent), expected, evidence, scenario
        )
    return finding("redis.slowlog", title, "ok", "%d slow commands" % len(recent), expected, evidence)


def inefficient_patterns(f):
    s = f.s
    flagged = []
    for entry in f.patterns:
        reasons = []
        if entry.get("count", 0) >= s["key_pattern_min_count"] and (
            entry.get("variable_segments", 0) > s["key_max_variable_segments"] or "<ts>" in entry["pattern"]
        ):
            reasons.append(
                "too specific: %d variable segments%s"
                % (entry.get("variable_segments", 0), ", one a timestamp" if "<ts>" in entry["pattern"] else "")
            )
        if (entry.get("bytes_avg") or 0) >= s["key_large_bytes"]:
            reasons.append("too large: %s per value" % human_bytes(entry.get("bytes_avg")))
        if reasons:
            flagged.append(
                {
                    "pattern": entry["pattern"],
                    "reasons": reasons,
                    "count": entry.get("count"),
                    "share": entry.get("share"),
                    "bytes_avg": entry.get("bytes_avg"),
                    "bytes_share": entry.get("bytes_share"),
                    "example": entry.get("example"),
                }
            )
    return flagged


def check_key_patterns(f, flagged):
    s = f.s
    title = "Cache keys are normalised and values small"
    expected = "<= %d variable segments, no timestamps, values < %s" % (
        s["key_max_variable_segments"],
        human_bytes(s["key_large_bytes"]),
    )
    if f.redis is None:
        return unknown("cache.key_patterns", title, expected, f.redis_error, "B")
    keys = (f.redis or {}).get("keys")
    if keys is None:
        error = ((f.redis or {}).get("probe_errors") or {}).get("keys")
        if error:
            return unknown("cache.key_patterns", title, expected, error, "B")
        return finding("cache.key_patterns", title, "ok", "not sampled", expected)
    evidence = {
        "sampled": keys.get("sampled"),
        "patterns": len(f.patterns),
        "flagged": flagged[:5],
        "top": [
            {
                "pattern": entry["pattern"],
                "share": entry.get("share"),
                "bytes_avg": entry.get("bytes_avg"),
                "with_ttl": entry.get("with_ttl"),
                "without_ttl": entry.get("without_ttl"),
            }
            for entry in f.patterns[:5]
        ],
    }
    if flagged:
        observed = ", ".join("%s (%s)" % (item["pattern"], "; ".join(item["reasons"])) for item in flagged[:3])
        return finding("cache.key_patterns", title, "warning", observed, expected, evidence, "B")
    return finding(
        "cache.key_patterns",
        title,
        "ok",
        "%d patterns in %s keys" % (len(f.patterns), keys.get("sampled")),
        expected,
        evidence,
    )


def warm_state(f):
    s = f.s
    exists = (f.redis or {}).get("exists") or {}
    counts = (f.redis or {}).get("pattern_counts") or {}
    missing = [key for key in s["warm_keys"] if not (exists.get(key) or {}).get("exists")]
    short = {}
    for pattern, minimum in (s["warm_patterns"] or {}).items():
        count = (counts.get(pattern) or {}).get("count", 0)
        if count < int(minimum):
            short[pattern] = {"count": count, "min": int(minimum)}
    return missing, short


def check_warm_keys(f):
    s = f.s
    title = "The cache is warm (arm capabilities and entities present)"
    expected = "%d warm keys%s" % (
        len(s["warm_keys"]),
        "".join(", >= %s %s" % (minimum, pattern) for pattern, minimum in (s["warm_patterns"] or {}).items()),
    )
    if f.redis is None:
        return unknown("cache.warm_keys", title, expected, f.redis_error, "C")
    if not s["warm_keys"] and not s["warm_patterns"]:
        return finding("cache.warm_keys", title, "ok", "no warm keys configured", expected)
    errors = (f.redis or {}).get("probe_errors") or {}
    if errors.get("exists") or errors.get("pattern_counts"):
        return unknown("cache.warm_keys", title, expected, errors.get("exists") or errors.get("pattern_counts"), "C")
    missing, short = warm_state(f)
    counts = (f.redis or {}).get("pattern_counts") or {}
    present = len(s["warm_keys"]) - len(missing)
    observed = "%d/%d warm keys%s" % (
        present,
        len(s["warm_keys"]),
        "".join(
            ", %s %s" % ((counts.get(pattern) or {}).get("count", 0), pattern) for pattern in (s["warm_patterns"] or {})
        ),
    )
    evidence = {
        "missing": missing[:10],
        "missing_count": len(missing),
        "short_patterns": short,
        "pattern_counts": counts,
    }
    if missing or short:
        evicting = (f.sample.get("evicted_per_s") or 0) > 0
        if evicting and f.memory_high() and f.policy_suitable(f.policy):
            # Redis is full and evicting: warm entries nobody reads go first. Warming again would not last;
            # memory is the cause (scenario A's side), not missing warming.
            evidence["note"] = (
                "evicted under memory pressure (%s evictions/s at %s of maxmemory): warming would not "
                "last; free memory or raise maxmemory first" % (f.sample.get("evicted_per_s"), percent(f.used_ratio))
            )
            return finding("cache.warm_keys", title, "warning", observed + " (evicted)", expected, evidence, "A")
        return finding("cache.warm_keys", title, "problem", observed, expected, evidence, "C")
    return finding("cache.warm_keys", title, "ok", observed, expected, evidence)


def check_non_cache_keys(f):
    s = f.s
    title = "Redis memory holds the cache, not keys without TTL from elsewhere"
    expected = "< %s of sampled memory in keys without TTL outside %s" % (
        percent(s["non_cache_memory_max_share"]),
        ", ".join(s["cache_key_patterns"]),
    )
    if f.redis is None:
        return unknown("redis.non_cache_keys", title, expected, f.redis_error, "A")
    keys = (f.redis or {}).get("keys")
    if not keys or not keys.get("sampled_bytes"):
        return finding("redis.non_cache_keys", title, "ok", "nothing sampled", expected)
    foreign = []
    held = 0.0
    for entry in f.patterns:
        if entry.get("without_ttl") and not _matches(entry.get("example"), s["cache_key_patterns"]):
            part = entry.get("bytes_total", 0) * entry["without_ttl"] / float(max(1, entry["count"]))
            held += part
            foreign.append(
                {
                    "pattern": entry["pattern"],
                    "keys_without_ttl": entry["without_ttl"],
                    "bytes_share": round(part / keys["sampled_bytes"], 4),
                }
            )
    share = round(held / keys["sampled_bytes"], 4)
    evidence = {
        "share": share,
        "patterns": foreign[:5],
        "sampled_bytes": keys["sampled_bytes"],
        "used_ratio": f.used_ratio,
    }
    observed = "%s of sampled memory" % percent(share)
    if share >= s["non_cache_memory_max_share"]:
        evidence["note"] = (
            "another writer stores keys without TTL in the cache's Redis: under noeviction they fill it, "
            "under allkeys-* they are evicted (data loss for their owner); give them a TTL or move them "
            "to their own Redis"
        )
        return finding("redis.non_cache_keys", title, "warning", observed, expected, evidence, "A")
    return finding("redis.non_cache_keys", title, "ok", observed, expected, evidence)


def check_stampede(f):
    s = f.s
    title = "No cache stampede (miss bursts, duplicate recomputation)"
    expected = "miss peak < %sx average or < %s/s; writes < %sx new keys" % (
        s["stampede_burst_ratio"],
        s["stampede_min_misses_per_s"],
        s["stampede_duplicate_write_ratio"],
    )
    peak, _ = _query(f.prom, Q_MISS_PEAK)
    avg, _ = _query(f.prom, Q_MISS_AVG)
    writes = f.sample.get("writes")
    created = f.sample.get("keys_created")
    burst = bool(
        peak is not None and avg and peak >= s["stampede_min_misses_per_s"] and peak / avg >= s["stampede_burst_ratio"]
    )
    duplicate_ratio = round(writes / float(max(1, created)), 2) if writes is not None else None
    duplicates = bool(
        writes is not None
        and writes >= s["stampede_min_writes"]
        and duplicate_ratio >= s["stampede_duplicate_write_ratio"]
    )
    evidence = {
        "miss_peak_per_s": peak,
        "miss_avg_per_s": avg,
        "burst_ratio": round(peak / avg, 2) if peak is not None and avg else None,
        "writes_in_sample": writes,
        "keys_created_in_sample": created,
        "duplicate_write_ratio": duplicate_ratio,
    }
    if f.prom is None and f.redis is None:
        return unknown("cache.stampede", title, expected, f.prom_error or f.redis_error, "D")
    # Prometheus sees minutes of history: it decides when it answers; Redis' short sample only without it.
    holds = burst if peak is not None else duplicates
    if holds:
        observed = (
            ("miss peak %.1f/s = %.1fx the average" % (peak, peak / avg))
            if burst
            else ("%d writes for %d new keys in %ss" % (writes, created, f.sample.get("seconds")))
        )
        return finding("cache.stampede", title, "warning", observed, expected, evidence, "D")
    return finding(
        "cache.stampede", title, "ok", "no burst" if peak is not None else "no duplicate writes", expected, evidence
    )


def diagnose(evidence, settings=None, previous=None, applied=()):
    """``{findings, scenarios, escalation, context}``; ``context`` feeds the plan and is never reported.

    ``previous`` (the findings before a fix) is given when verifying one: the symptom is then judged on what
    was sampled after the fix. ``applied`` (the scenarios fixed) changes no judgement: a fix is verified by
    fresh evidence, not by having run."""
    s = _settings(settings)
    f = Facts(evidence, s)
    flagged = inefficient_patterns(f) if f.redis else []
    large = {item["pattern"] for item in flagged if any(r.startswith("too large") for r in item["reasons"])}
    checks = [
        check_write_errors(f),
        check_eviction_policy(f),
        check_memory(f),
        check_evictions(f),
        check_non_cache_keys(f),
        check_fragmentation(f),
        check_slowlog(f, large),
        check_key_patterns(f, flagged),
        check_warm_keys(f),
        check_stampede(f),
    ]
    rate = check_hit_rate(f, after_fix=previous is not None)
    # the symptom points at the scenario that explains it
    for scenario in ("A", "C", "B", "D"):
        if any(item["scenario"] == scenario and item["status"] in ("problem", "warning") for item in checks):
            rate["scenario"] = scenario if rate["status"] != "ok" else None
            break
    findings = [rate] + checks
    scenarios = []
    for sid, stitle in SCENARIOS.items():
        mine = [item for item in findings if CHECK_SCENARIO.get(item["check"]) == sid]
        if sid in ("A", "C"):
            holding = [item for item in mine if item["status"] == "problem" and item["scenario"] == sid]
        else:
            holding = [item for item in mine if item["status"] in ("problem", "warning") and item["scenario"] == sid]
        if holding:
            reason = "; ".join("%s: %s" % (item["check"], item["observed"]) for item in holding)
        elif any(item["status"] == "unknown" for item in mine):
            reason = "not checked: %s" % ", ".join(item["check"] for item in mine if item["status"] == "unknown")
        else:
            reason = "checks ok: %s" % ", ".join(item["check"] for item in mine) if mine else "no check"
        scenarios.append({"id": sid, "title": stitle, "holds": bool(holding), "reason": reason})
    missing, short = warm_state(f) if f.redis else ([], {})
    context = {
        "policy": f.policy,
        "file_policy": f.file_policy,
        "file_readable": f.file_readable,
        "config_file": f.persisted.get("file") or s["config_file"],
        "maxmemory": f.maxmemory,
        "used_memory": f.used,
        "file_maxmemory": f.file_maxmemory,
        "nonevictable": f.nonevictable(),
        "flagged_patterns": flagged,
        "warm_missing": missing,
        "warm_short": short,
        "redis_ok": f.redis is not None,
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


# --- plan ----------------------------------------------------------------------------------------------
def _policy_action(ctx, s, action_id, scenario):
    target = s["eviction_policy"]
    live, persisted = ctx.get("policy"), ctx.get("file_policy")
    file_differs = ctx.get("file_readable") and persisted != target
    if live == target and not file_differs:
        return None
    change = {"key": "maxmemory-policy", "old": live, "new": target}
    if ctx.get("config_file"):
        change.update(file=ctx["config_file"], file_old=persisted)
    nonevictable = ctx.get("nonevictable") or []
    disruptive = bool(target.startswith("allkeys-") and live != target and nonevictable)
    outcome = "CONFIG SET maxmemory-policy %s, and the same line in %s" % (
        target,
        ctx.get("config_file") or "the config file (not known)",
    )
    if disruptive:
        outcome += "; %s may evict keys outside the cache that have no TTL (%s)" % (
            target,
            ", ".join(item["pattern"] for item in nonevictable[:3]),
        )
    return action(
        action_id,
        scenario,
        "set maxmemory-policy %s (live and persisted)" % target,
        "redis:maxmemory-policy",
        change,
        "planned",
        outcome,
        disruptive=disruptive,
        apply="set_redis_config",
    )


def _warm_report(ctx, s):
    """Scenario C where the deployment offers no warming endpoint: what a human does."""
    missing = ctx.get("warm_missing") or []
    short = ctx.get("warm_short") or {}
    what = ", ".join(missing[:5] + ["%s (%s < %s)" % (p, v["count"], v["min"]) for p, v in sorted(short.items())])
    return action(
        "cache_performance.C.report_warming",
        "C",
        "report the missing cache warming",
        "orchestrator:cache",
        {"missing": missing[:10], "missing_count": len(missing), "short_patterns": short, "probe": WARM_PROBE},
        "report",
        "L1: this deployment offers no cache warming endpoint (octollm_services.%s.probes.%s): warm the cache the "
        "application's own way (its warm-up job or start-up, or replay the hot requests), then check that the warm "
        "keys exist again; missing: %s" % (CACHE_SERVICE, WARM_PROBE, what or "none"),
    )


def _warm_action(ctx, s):
    if not s.get("warm_url"):
        return _warm_report(ctx, s)
    url = s["warm_url"]
    missing = ctx.get("warm_missing") or []
    return action(
        "cache_performance.C.warm_cache",
        "C",
        "warm the cache through the orchestrator",
        "orchestrator:cache",
        {
            "op": "POST %s" % url,
            "missing": missing[:10],
            "missing_count": len(missing),
            "short_patterns": ctx.get("warm_short") or {},
        },
        "planned",
        "POST %s, then check that the warm keys exist" % url,
        apply="warm_cache",
    )


def _policy_starts_eviction(ctx, policy_action):
    """Whether the new policy will evict at once: memory is over maxmemory and the new policy evicts."""
    used, maxmemory = ctx.get("used_memory"), ctx.get("maxmemory")
    new_policy = (policy_action.get("change") or {}).get("new") or ""
    return bool(maxmemory) and used is not None and used > maxmemory and new_policy != "noeviction"


def _rewarm_after_eviction(ctx, s, after):
    """Scenario A's follow-up: an evicting policy over a full Redis evicts at once, and LRU is approximate, so
    some warm entries can go with the fill. Wait until eviction is done, then warm again (idempotent). None where
    the deployment offers no warming endpoint: the verification's warm-keys check says what is missing."""
    if not s.get("warm_url"):
        return None
    url = s["warm_url"]
    item = _warm_action(ctx, s)
    item.update(
        id="cache_performance.A.rewarm_after_eviction",
        scenario="A",
        title="warm the cache again once the new policy has evicted down to maxmemory",
        outcome="wait until used_memory <= maxmemory (%s > %s now), POST %s, then check that the warm keys exist"
        % (ctx.get("used_memory"), ctx.get("maxmemory"), url),
    )
    item["change"] = dict(item["change"], wait_for_eviction=True, maxmemory=ctx.get("maxmemory"))
    item["_after"] = after
    return item


def plan(diagnosis, settings=None):
    """The actions for the scenarios that hold (or the forced ``scenario``), gated by approval."""
    s = _settings(settings)
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    selected = [sid for sid in ("A", "C", "B", "D") if (sid == forced if forced else sid in holding)]
    actions = []
    for sid in selected:
        if sid == "A":
            item = _policy_action(ctx, s, "cache_performance.A.set_eviction_policy", "A")
            if item:
                actions.append(item)
            if item and _policy_starts_eviction(ctx, item) and "C" not in selected:
                rewarm = _rewarm_after_eviction(ctx, s, after=item["id"])
                if rewarm:
                    actions.append(rewarm)
        elif sid == "C":
            actions.append(_warm_action(ctx, s))
        elif sid == "B":
            flagged = ctx.get("flagged_patterns") or []
            steps = (
                "; ".join(
                    "%s: %s (e.g. %s)" % (item["pattern"], ", ".join(item["reasons"]), item["example"])
                    for item in flagged[:5]
                )
                or "no inefficient pattern in the sample"
            )
            actions.append(
                action(
                    "cache_performance.B.report_key_patterns",
                    "B",
                    "report inefficient cache key patterns",
                    "redis:keys",
                    {"patterns": flagged[:5]},
                    "report",
                    "L1: change the code that builds these keys - drop request-specific parts (user, timestamp) from "
                    "cache keys, cache a summary or a reference instead of large values; %s" % steps,
                )
            )
        elif sid == "D":
            actions.append(
                action(
                    "cache_performance.D.report_stampede",
                    "D",
                    "report a cache stampede",
                    "orchestrator:cache-stampede",
                    {"mitigation": "lock or request coalescing per key"},
                    "report",
                    "L1: make cache misses compute once per key - a Redis lock (SET lock:<key> <id> NX EX 10, re-check "
                    "the cache after acquiring it) or in-process request coalescing (single-flight), and add TTL "
                    "jitter so hot keys do not expire together",
                )
            )
    return gate(
        actions,
        dry_run=s.get("dry_run", False),
        approve=s.get("approve", False),
        allow_disruptive=s.get("allow_disruptive", False),
    )


# --- prevention ---------------------------------------------------------------------------------------
def prevention(evidence, settings=None):
    """``{findings, actions, context}`` of the seed's prevention list, read from the live system."""
    s = _settings(settings)
    f = Facts(evidence, s)
    findings = []
    # 1. maxmemory set (live and persisted)
    title = "Redis has a memory limit (maxmemory)"
    if f.redis is None:
        findings.append(unknown("prevent.redis.maxmemory", title, "> 0", f.redis_error))
    else:
        evidence_mm = {"live": f.maxmemory, "persisted": f.file_maxmemory, "config_file": f.persisted.get("file")}
        observed = "%s (file: %s)" % (
            human_bytes(f.maxmemory) if f.maxmemory else "0",
            human_bytes(f.file_maxmemory) if f.file_maxmemory else "unset",
        )
        bad = not f.maxmemory or (f.file_readable and not f.file_maxmemory)
        findings.append(
            finding(
                "prevent.redis.maxmemory",
                title,
                "problem" if bad else "ok",
                observed,
                "> 0",
                evidence_mm,
                "A" if bad else None,
            )
        )
    # 2. eviction policy suitable (live and persisted)
    title = "Redis eviction policy suits a cache (live and in the config file)"
    expected = " | ".join(s["suitable_policies"])
    if f.redis is None:
        findings.append(unknown("prevent.redis.eviction_policy", title, expected, f.redis_error))
    else:
        bad = not f.policy_suitable(f.policy) or (f.file_readable and not f.policy_suitable(f.file_policy or ""))
        findings.append(
            finding(
                "prevent.redis.eviction_policy",
                title,
                "problem" if bad else "ok",
                "%s (file: %s)" % (f.policy, f.file_policy or "unset"),
                expected,
                {"live": f.policy, "persisted": f.file_policy, "config_file": f.persisted.get("file")},
                "A" if bad else None,
            )
        )
    # 3. TTLs on cache keys
    title = "Cache keys (%s) carry a TTL" % s["llm_key_pattern"]
    expected = "<= %s without TTL" % percent(s["ttl_missing_max_share"])
    if f.redis is None:
        findings.append(unknown("prevent.cache.key_ttl", title, expected, f.redis_error))
    else:
        entries = [entry for entry in f.patterns if _matches(entry.get("example"), [s["llm_key_pattern"]])]
        total = sum(entry["count"] for entry in entries)
        without = sum(entry.get("without_ttl", 0) for entry in entries)
        share = round(without / float(total), 4) if total else None
        evidence_ttl = {
            "sampled": total,
            "without_ttl": without,
            "share": share,
            "ttl_max_s": max([entry.get("ttl_max_s") or 0 for entry in entries] or [0]) or None,
        }
        if total == 0:
            findings.append(
                finding(
                    "prevent.cache.key_ttl",
                    title,
                    "ok",
                    "no %s key sampled" % s["llm_key_pattern"],
                    expected,
                    evidence_ttl,
                )
            )
        else:
            findings.append(
                finding(
                    "prevent.cache.key_ttl",
                    title,
                    "warning" if share > s["ttl_missing_max_share"] else "ok",
                    "%s of %d sampled keys without TTL" % (percent(share), total),
                    expected,
                    evidence_ttl,
                    "B" if share > s["ttl_missing_max_share"] else None,
                )
            )
    # 4. monitoring: the alert rule is loaded and the metrics exist
    title = "The %s alert rule is loaded in Prometheus" % s["miss_rule"]
    rules = (f.prom or {}).get("rules")
    if f.prom is None or rules is None or rules.get("error"):
        findings.append(
            unknown("prevent.prometheus.cache_miss_rule", title, "loaded", f.prom_error or (rules or {}).get("error"))
        )
    else:
        alert = (rules.get("alerts") or {}).get(s["miss_rule"])
        loaded = s["miss_rule"] in (rules.get("names") or [])
        findings.append(
            finding(
                "prevent.prometheus.cache_miss_rule",
                title,
                "ok" if loaded else "problem",
                "loaded (%s)" % (alert or {}).get("state", "?") if loaded else "not loaded",
                "loaded",
                {"rules_loaded": len(rules.get("names") or []), "alert": alert},
            )
        )
    title = "Cache hit and miss metrics reach Prometheus"
    present, answer = _query(f.prom, Q_METRICS)
    if f.prom is None or (answer or {}).get("error"):
        findings.append(
            unknown(
                "prevent.prometheus.cache_metrics", title, "> 0 series", f.prom_error or (answer or {}).get("error")
            )
        )
    else:
        findings.append(
            finding(
                "prevent.prometheus.cache_metrics",
                title,
                "ok" if present else "problem",
                "%d series" % int(present or 0),
                "> 0 series",
                {"query": (answer or {}).get("query")},
            )
        )

    # actions
    ctx = {
        "policy": f.policy,
        "file_policy": f.file_policy,
        "file_readable": f.file_readable,
        "config_file": f.persisted.get("file") or s["config_file"],
        "nonevictable": f.nonevictable(),
    }
    actions = []
    by_check = {item["check"]: item for item in findings}
    if by_check["prevent.redis.eviction_policy"]["status"] == "problem":
        item = _policy_action(ctx, s, "cache_performance.prevent.set_eviction_policy", "A")
        if item:
            actions.append(item)
    if by_check["prevent.redis.maxmemory"]["status"] == "problem":
        target = redis_bytes(s["maxmemory"]) if s["maxmemory"] else None
        if target:
            change = {"key": "maxmemory", "old": str(f.maxmemory or 0), "new": str(s["maxmemory"])}
            if ctx["config_file"]:
                change.update(file=ctx["config_file"], file_old=(f.persisted.get("config") or {}).get("maxmemory"))
            actions.append(
                action(
                    "cache_performance.prevent.set_maxmemory",
                    "A",
                    "set maxmemory %s" % s["maxmemory"],
                    "redis:maxmemory",
                    change,
                    "planned",
                    "CONFIG SET maxmemory %s, and the same line in the config file" % s["maxmemory"],
                    apply="set_redis_config",
                )
            )
        else:
            actions.append(
                action(
                    "cache_performance.prevent.report_maxmemory",
                    "A",
                    "choose a maxmemory for Redis",
                    "redis:maxmemory",
                    {"key": "maxmemory", "old": str(f.maxmemory or 0), "new": None},
                    "report",
                    "L1: set cache_performance_maxmemory (e.g. 75% of the memory Redis may use) and run prevent again",
                )
            )
    if by_check["prevent.cache.key_ttl"]["status"] == "warning":
        actions.append(
            action(
                "cache_performance.prevent.report_key_ttl",
                "B",
                "report cache keys without TTL",
                "redis:keys:ttl",
                {"pattern": s["llm_key_pattern"]},
                "report",
                "L1: write %s keys with SETEX / SET EX (a TTL matching how often the data changes)"
                % s["llm_key_pattern"],
            )
        )
    if by_check["prevent.prometheus.cache_miss_rule"]["status"] == "problem":
        actions.append(
            action(
                "cache_performance.prevent.report_rule",
                None,
                "report the missing %s rule" % s["miss_rule"],
                "prometheus:rules",
                {"rule": s["miss_rule"]},
                "report",
                "L1: add the %s alerting rule (hit rate < %s) to Prometheus and reload it"
                % (s["miss_rule"], s["hit_rate_min"]),
            )
        )
    actions = gate(
        actions,
        dry_run=s.get("dry_run", False),
        approve=s.get("approve", False),
        allow_disruptive=s.get("allow_disruptive", False),
    )
    return {"findings": findings, "actions": actions, "context": ctx}


# --- the procedure ------------------------------------------------------------------------------------
def metric_names(context):
    """The cache metrics' names in this deployment (the orchestrator's, by meaning)."""
    return {meaning: context.metric(meaning, CACHE_SERVICE) for meaning in METRICS}


def queries(s, names):
    """The named PromQL queries of the judgement, built from the settings and the deployment's metric ``names``
    (``metric_names``)."""
    selector = '{cache_type="%s"}' % s["cache_type"]
    hits, misses, errors = names["cache_hits"], names["cache_misses"], names["cache_errors"]

    def rate(metric, window):
        return "sum(rate(%s%s[%s]))" % (metric, selector, window)

    def hit_rate(window):
        return "%s / (%s + %s)" % (
            rate(hits, window),
            rate(hits, window),
            rate(misses, window),
        )

    def lookups(window):
        return "%s + %s" % (rate(hits, window), rate(misses, window))

    window, recent = s["prometheus_window"], s["recent_window"]
    return {
        Q_HIT_RATE: hit_rate(window),
        Q_LOOKUPS: lookups(window),
        Q_HIT_RATE_RECENT: hit_rate(recent),
        Q_LOOKUPS_RECENT: lookups(recent),
        Q_ERRORS: "sum(rate(%s[%s]))" % (errors, window),
        Q_MISS_PEAK: "max_over_time((%s)[%s:])"
        % (rate(misses, s["stampede_short_window"]), s["stampede_lookback"]),
        Q_MISS_AVG: rate(misses, s["stampede_lookback"]),
        Q_METRICS: "count(%s%s) or vector(0)" % (hits, selector),
    }


class CachePerformance(Procedure):
    name = PROCEDURE
    title = "Cache Performance Issues"
    scenarios = SCENARIOS
    modules = {"compose": "cache_performance", "kubernetes": "cache_performance_kubernetes"}

    def settings(self, role_settings, context):
        s = super(CachePerformance, self).settings(role_settings, context)
        s["config_file"] = (context.inventory.get("redis") or {}).get("config_file")
        s["orchestrator_url"] = context.service_url(CACHE_SERVICE, "http://127.0.0.1:8000")
        # the warming endpoint where the deployment offers one (None: scenario C is a report)
        warm = context.probe(CACHE_SERVICE, WARM_PROBE)
        s["warm_url"] = s["orchestrator_url"].rstrip("/") + warm if warm else None
        if context.kubernetes:
            s["namespace"] = context.inventory["k8s"]["namespace"]
        return s

    def needs(self, settings, context):
        s = settings
        need = {
            "redis": {
                "sample_seconds": s["redis_sample_seconds"],
                "config": ["maxmemory", "maxmemory-policy"],
                "slowlog": s["slowlog_entries"],
                "scan_count": s["key_sample"],
                "patterns": list(s["warm_patterns"]),
                "exists": list(s["warm_keys"]),
            },
            "prometheus": {"queries": queries(s, metric_names(context)), "rules": True},
        }
        if context.kubernetes:
            need["kubernetes"] = {
                "objects": {
                    "cache_performance_pods": {"kind": "Pod", "label_selector": "app=%s" % s["k8s_redis_app"]},
                    "cache_performance_configmap": {"kind": "ConfigMap", "name": s["k8s_redis_configmap"]},
                    "cache_performance_workload": {
                        "kind": s["k8s_redis_workload_kind"],
                        "api_version": "apps/v1",
                        "name": s["k8s_redis_workload"],
                    },
                    "cache_performance_events": {"kind": "Event", "field_selector": "type=Warning"},
                }
            }
        return need


PROCEDURE = CachePerformance()
