"""Unit tests of the collection's Python: key patterns, error kinds, evidence requests, the cache judgement,
the plan's gating and the result contract. No lab needed (a local redis-server is used when installed)."""

from __future__ import annotations

import copy
import hashlib
import shutil
import socket
import subprocess
import time

import pytest
from ansible_collections.octollm.remediation.plugins.filter import procedure as procedure_filters
from ansible_collections.octollm.remediation.plugins.module_utils import keypatterns
from ansible_collections.octollm.remediation.plugins.module_utils.collector_redis import sample_deltas
from ansible_collections.octollm.remediation.plugins.module_utils.collectors import COLLECTORS, run_all
from ansible_collections.octollm.remediation.plugins.module_utils.evidence import classify, error_of, redact
from ansible_collections.octollm.remediation.plugins.plugin_utils import cache_performance as cp
from ansible_collections.octollm.remediation.plugins.plugin_utils import deployment, evidence_requests, results
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings

WARM = [f"arm:capability:{arm}-arm" for arm in ("planner", "executor", "coder", "judge", "guardian", "retriever")]
# the lab's orchestrator, which offers the cache warming endpoint (inventory/lab)
LAB = {"services": {"orchestrator": {"url": "http://127.0.0.1:8000", "probes": {"cache_warm": "/api/v1/cache/warm"}}}}
SETTINGS = procedure_settings(
    "cache_performance",
    {
        "warm_keys": WARM,
        "warm_patterns": {"entity:*": 1},
        "config_file": "/state/redis/redis.conf",
        "orchestrator_url": "http://127.0.0.1:8000",
    },
    inventory=LAB,
)
# a deployment whose orchestrator offers no warming endpoint (only the seed's interfaces)
SEED_ONLY = procedure_settings(
    "cache_performance",
    {"warm_keys": WARM, "warm_patterns": {"entity:*": 1}, "config_file": "/state/redis/redis.conf"},
    inventory={"services": {"orchestrator": {"url": "http://orchestrator:8080"}}},
)


def pattern(name, count, bytes_avg, with_ttl, example, variable=1):
    return {
        "pattern": name,
        "count": count,
        "share": 0.0,
        "bytes_total": bytes_avg * count,
        "bytes_avg": bytes_avg,
        "bytes_max": bytes_avg,
        "bytes_share": 0.0,
        "types": {"string": count},
        "with_ttl": with_ttl,
        "without_ttl": count - with_ttl,
        "ttl_min_s": 1.0,
        "ttl_max_s": 60.0,
        "variable_segments": variable,
        "example": example,
        "sized": count,
    }


def healthy_evidence():
    return {
        "redis": {
            "ok": True,
            "error": None,
            "info": {
                "used_memory": 2_000_000,
                "maxmemory": 67108864,
                "maxmemory_policy": "allkeys-lru",
                "mem_fragmentation_ratio": 3.1,
                "mem_fragmentation_bytes": 4_000_000,
                "evicted_keys": 0,
                "keyspace_hits": 900,
                "keyspace_misses": 100,
            },
            "errorstats": {},
            "keyspace": {"db0": {"keys": 130, "expires": 129, "avg_ttl": 30000}},
            "cumulative_hit_rate": 0.9,
            "config": {"maxmemory": "67108864", "maxmemory-policy": "allkeys-lru"},
            "persisted": {
                "file": "/state/redis/redis.conf",
                "error": None,
                "config": {"maxmemory": "64mb", "maxmemory-policy": "allkeys-lru"},
            },
            "dbsize": 130,
            "sample": {
                "seconds": 2.0,
                "hit_rate": 0.85,
                "lookups": 20,
                "errors": {},
                "evicted_per_s": 0.0,
                "writes": 3,
                "keys_created": 3,
            },
            "slowlog": {"entries": [], "now": 1_000_000},
            "keys": {
                "sampled": 130,
                "sampled_bytes": 23 * 300 + 100 * 200 + 900 + 1600,
                "patterns": [
                    pattern("llm:<hash>", 23, 300, 23, "llm:5d41402abc4b2a76b9719d911017c592"),
                    pattern("entity:<n>", 100, 200, 100, "entity:7"),
                    pattern("arm:capability:coder-arm", 1, 900, 1, "arm:capability:coder-arm", 0),
                    pattern("octollm:arms", 1, 1600, 0, "octollm:arms", 0),
                ],
            },
            "pattern_counts": {"entity:*": {"count": 100, "complete": True}},
            "exists": {key: {"exists": True, "ttl_s": 50.0} for key in WARM},
        },
        "prometheus": {
            "ok": True,
            "error": None,
            "queries": {
                cp.Q_HIT_RATE: {"value": 0.82, "error": None},
                cp.Q_LOOKUPS: {"value": 2.4, "error": None},
                cp.Q_ERRORS: {"value": None, "empty": True, "error": None},
                cp.Q_MISS_PEAK: {"value": 0.9, "error": None},
                cp.Q_MISS_AVG: {"value": 0.45, "error": None},
                cp.Q_METRICS: {"value": 1.0, "error": None},
            },
            "rules": {
                "names": ["CacheMissRate", "ServiceDown"],
                "alerts": {"CacheMissRate": {"state": "inactive"}},
                "error": None,
            },
        },
    }


def eviction_fault():
    evidence = healthy_evidence()
    redis = evidence["redis"]
    redis["config"] = {"maxmemory": "25165824", "maxmemory-policy": "noeviction"}
    redis["persisted"]["config"] = {"maxmemory": "24mb", "maxmemory-policy": "noeviction"}
    redis["info"].update(used_memory=25_100_000, maxmemory_policy="noeviction")
    redis["keyspace"] = {"db0": {"keys": 5000, "expires": 25}}
    redis["sample"].update(errors={"OOM": 8}, hit_rate=0.2, lookups=10)
    redis["keys"]["patterns"].insert(0, pattern("fill:session:<n>", 190, 4200, 0, "fill:session:17"))
    redis["keys"]["sampled_bytes"] += 190 * 4200
    evidence["prometheus"]["queries"][cp.Q_HIT_RATE]["value"] = 0.31
    evidence["prometheus"]["queries"][cp.Q_ERRORS] = {"value": 1.7, "error": None}
    return evidence


def by_check(findings):
    return {item["check"]: item for item in findings}


# --- key patterns ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("llm:5d41402abc4b2a76b9719d911017c592", "llm:<hash>"),
        ("entity:42", "entity:<n>"),
        ("arm:capability:coder-arm", "arm:capability:coder-arm"),
        ("task:17:user9:1700000000", "task:<n>:user<n>:<ts>"),
        ("session:0b7c4f3e-8a9e-4a57-9d0c-6a1f8a0e2b11", "session:<uuid>"),
        ("report:2026-11-28T10:00:00Z", "report:<ts>"),
        (b"fill:session:4541", "fill:session:<n>"),
        ("octollm:arms", "octollm:arms"),
    ],
)
def test_normalise_key(key, expected):
    assert keypatterns.normalise_key(key) == expected


def test_variable_segments_and_glob():
    assert keypatterns.variable_segments("task:<n>:user<n>:<ts>") == 3
    assert keypatterns.variable_segments("arm:capability:coder-arm") == 0
    assert keypatterns.pattern_glob("task:<n>:user<n>:<ts>") == "task:*:user*:*"


# --- errors ---------------------------------------------------------------------------------------------------
def test_error_kinds_and_redaction():
    assert classify(ConnectionRefusedError("refused")) == "unreachable"
    assert classify(TimeoutError("timed out")) == "timeout"
    assert classify(ImportError("no module named redis")) == "missing_tool"

    class AuthenticationError(Exception):
        pass

    assert classify(AuthenticationError("invalid password")) == "auth"
    assert classify(ValueError("WRONGPASS invalid username-password pair")) == "auth"
    assert classify(ValueError("strange")) == "other"
    error = error_of(ValueError("failed with s3cr3t-pass inside"), ["s3cr3t-pass"])
    assert "s3cr3t-pass" not in error["message"] and "********" in error["message"]
    assert len(redact("x" * 1000, [])) <= 300


def test_unreachable_kinds_are_evidence_not_crashes():
    port = _free_port()
    found = run_all(
        {
            "redis": {"port": port, "password": "pw-not-shown", "sample_seconds": 0},
            "prometheus": {"url": f"http://127.0.0.1:{port}", "queries": {"q": "up"}, "rules": True},
        },
        timeout=10,
    )
    assert found["redis"]["ok"] is False and found["redis"]["error"]["kind"] == "unreachable"
    assert found["prometheus"]["ok"] is False and found["prometheus"]["error"]["kind"] == "unreachable"
    assert "pw-not-shown" not in str(found)
    assert set(COLLECTORS) >= {"redis", "prometheus"}


def test_sample_deltas_rates():
    first = (
        {
            "keyspace_hits": 100,
            "keyspace_misses": 50,
            "evicted_keys": 0,
            "expired_keys": 0,
            "total_commands_processed": 1000,
        },
        {"OOM": 3},
        {"setex": {"calls": 10}},
        {"db0": {"keys": 10}},
    )
    second = (
        {
            "keyspace_hits": 130,
            "keyspace_misses": 60,
            "evicted_keys": 4,
            "expired_keys": 1,
            "total_commands_processed": 1100,
        },
        {"OOM": 9},
        {"setex": {"calls": 40}},
        {"db0": {"keys": 12}},
    )
    sample = sample_deltas(first, second, 2.0)
    assert sample["hit_rate"] == 0.75 and sample["lookups"] == 40
    assert sample["errors"] == {"OOM": 6}
    assert sample["writes"] == 30 and sample["keys_created"] == 2 + 4 + 1
    assert sample["evicted_per_s"] == 2.0


# --- evidence requests ------------------------------------------------------------------------------------------
def test_evidence_union_and_cover():
    needs = {
        "a": {
            "redis": {"sample_seconds": 2.0, "exists": ["k1"], "slowlog": 10},
            "prometheus": {"queries": {"q1": "up"}, "rules": False},
        },
        "b": {
            "redis": {"sample_seconds": 1.0, "exists": ["k2"]},
            "prometheus": {"queries": {"q2": "x"}, "rules": True},
        },
    }
    union = evidence_requests.union(needs)
    assert union["redis"] == {"sample_seconds": 2.0, "exists": ["k1", "k2"], "slowlog": 10}
    assert union["prometheus"] == {"queries": {"q1": "up", "q2": "x"}, "rules": True}
    assert evidence_requests.request(needs, union) == {}
    assert evidence_requests.request({"b": needs["b"]}, union) == {}
    assert set(evidence_requests.request(needs, union, refresh=True)) == {"redis", "prometheus"}
    partial = evidence_requests.request(needs, {"redis": union["redis"]})
    assert list(partial) == ["prometheus"]
    with pytest.raises(evidence_requests.NeedConflict):
        evidence_requests.union(
            {"a": {"prometheus": {"queries": {"q": "up"}}}, "b": {"prometheus": {"queries": {"q": "down"}}}}
        )


# --- diagnosis --------------------------------------------------------------------------------------------------
def test_healthy_evidence_gives_no_warning_and_no_problem():
    diagnosis = cp.diagnose(healthy_evidence(), SETTINGS)
    statuses = {item["check"]: item["status"] for item in diagnosis["findings"]}
    assert set(statuses.values()) == {"ok"}, statuses
    assert not any(item["holds"] for item in diagnosis["scenarios"])
    assert diagnosis["escalation"]["level"] is None
    for item in diagnosis["findings"]:
        assert set(item) >= {"check", "title", "status", "observed", "expected", "evidence", "scenario"}


def test_eviction_fault_is_scenario_a():
    diagnosis = cp.diagnose(eviction_fault(), SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["redis.eviction_policy"]["status"] == "problem"
    assert found["redis.eviction_policy"]["observed"] == "noeviction"
    assert found["redis.eviction_policy"]["scenario"] == "A"
    assert found["redis.write_errors"]["status"] == "problem"
    assert found["redis.memory"]["status"] == "problem"
    assert found["redis.non_cache_keys"]["status"] == "warning"
    assert found["redis.non_cache_keys"]["evidence"]["patterns"][0]["pattern"] == "fill:session:<n>"
    assert found["cache.hit_rate"]["status"] == "problem" and found["cache.hit_rate"]["scenario"] == "A"
    assert found["cache.hit_rate"]["evidence"]["prometheus"]["hit_rate"] == 0.31
    holds = {item["id"]: item["holds"] for item in diagnosis["scenarios"]}
    assert holds == {"A": True, "B": False, "C": False, "D": False}
    assert diagnosis["escalation"]["level"] == "L1"


def test_hit_rate_falls_back_on_redis_when_prometheus_is_down():
    evidence = healthy_evidence()
    evidence["prometheus"] = {"ok": False, "error": {"kind": "unreachable", "message": "refused"}}
    found = by_check(cp.diagnose(evidence, SETTINGS)["findings"])
    assert found["cache.hit_rate"]["status"] == "ok"
    assert found["cache.hit_rate"]["evidence"]["source"] == "redis"
    assert found["cache.hit_rate"]["observed"] == 0.85


def test_warm_keys_evicted_under_pressure_point_at_memory_not_warming():
    evidence = healthy_evidence()
    evidence["redis"]["info"]["used_memory"] = 66_000_000
    evidence["redis"]["sample"]["evicted_per_s"] = 80.0
    evidence["redis"]["exists"] = {key: {"exists": False, "ttl_s": None} for key in WARM}
    found = by_check(cp.diagnose(evidence, SETTINGS)["findings"])
    assert found["cache.warm_keys"]["status"] == "warning" and found["cache.warm_keys"]["scenario"] == "A"
    assert found["redis.evictions"]["status"] == "warning"


def test_redis_down_gives_unknown_with_error_kind():
    evidence = healthy_evidence()
    evidence["redis"] = {"ok": False, "error": {"kind": "auth", "message": "WRONGPASS"}}
    found = by_check(cp.diagnose(evidence, SETTINGS)["findings"])
    assert found["redis.eviction_policy"]["status"] == "unknown"
    assert found["redis.eviction_policy"]["error"]["kind"] == "auth"
    assert found["cache.hit_rate"]["status"] == "ok"  # Prometheus still answers


def test_cold_cache_is_scenario_c():
    evidence = healthy_evidence()
    evidence["redis"]["exists"] = {key: {"exists": False, "ttl_s": None} for key in WARM}
    evidence["redis"]["pattern_counts"] = {"entity:*": {"count": 0, "complete": True}}
    diagnosis = cp.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["cache.warm_keys"]["status"] == "problem" and found["cache.warm_keys"]["scenario"] == "C"
    assert found["cache.warm_keys"]["observed"].startswith("0/6")
    actions = cp.plan(diagnosis, SETTINGS)
    assert [item["id"] for item in actions] == ["cache_performance.C.warm_cache"]
    assert actions[0]["status"] == "planned" and actions[0]["change"]["missing_count"] == 6


def test_inefficient_keys_and_stampede_are_reports():
    evidence = healthy_evidence()
    evidence["redis"]["keys"]["patterns"].append(
        pattern("task:<n>:user<n>:<ts>", 40, 500, 40, "task:1:user2:1700000000", variable=3)
    )
    evidence["redis"]["keys"]["patterns"].append(pattern("dataset:<n>", 3, 2_000_000, 3, "dataset:1"))
    evidence["prometheus"]["queries"][cp.Q_MISS_PEAK]["value"] = 12.0
    evidence["prometheus"]["queries"][cp.Q_MISS_AVG]["value"] = 1.0
    diagnosis = cp.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["cache.key_patterns"]["status"] == "warning" and found["cache.key_patterns"]["scenario"] == "B"
    assert found["cache.stampede"]["status"] == "warning" and found["cache.stampede"]["scenario"] == "D"
    actions = cp.plan(diagnosis, SETTINGS)
    assert {item["id"]: item["status"] for item in actions} == {
        "cache_performance.B.report_key_patterns": "report",
        "cache_performance.D.report_stampede": "report",
    }
    assert "lock" in actions[1]["outcome"] and "coalescing" in actions[1]["outcome"]
    escalation = results.escalation(diagnosis["findings"], "L1", actions, None, "resolve")
    assert escalation["level"] == "L1"


# --- plan and gating -----------------------------------------------------------------------------------------------
def test_plan_a_is_disruptive_with_non_cache_keys_and_waits_for_approval():
    diagnosis = cp.diagnose(eviction_fault(), SETTINGS)
    actions = cp.plan(diagnosis, SETTINGS)
    assert len(actions) == 1
    item = actions[0]
    assert item["id"] == "cache_performance.A.set_eviction_policy"
    assert item["resource"] == "redis:maxmemory-policy"
    assert item["change"] == {
        "key": "maxmemory-policy",
        "old": "noeviction",
        "new": "allkeys-lru",
        "file": "/state/redis/redis.conf",
        "file_old": "noeviction",
    }
    assert item["disruptive"] is True and item["status"] == "awaiting_approval"
    approved = cp.plan(diagnosis, dict(SETTINGS, approve=True))
    assert approved[0]["status"] == "planned"
    dry = cp.plan(diagnosis, dict(SETTINGS, approve=True, dry_run=True))
    assert dry[0]["status"] == "planned" and dry[0]["outcome"].startswith("dry run")
    assert [a["change"] for a in dry] == [a["change"] for a in approved]


def test_plan_persists_a_drifted_config_file_only():
    evidence = healthy_evidence()
    evidence["redis"]["persisted"]["config"]["maxmemory-policy"] = "noeviction"
    diagnosis = cp.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["redis.eviction_policy"]["status"] == "warning"
    # a warning does not make A hold: resolve leaves it to prevention, unless A is forced
    assert cp.plan(diagnosis, SETTINGS) == []
    forced = cp.plan(diagnosis, dict(SETTINGS, scenario="A"))
    assert forced[0]["change"]["old"] == "allkeys-lru" and forced[0]["change"]["file_old"] == "noeviction"
    assert forced[0]["disruptive"] is False


def test_one_action_per_resource():
    first = results.action("x.one", "A", "one", "redis:maxmemory-policy", {}, "planned", "")
    second = results.action("x.two", "A", "two", "redis:maxmemory-policy", {}, "planned", "")
    gated = results.gate([first, second])
    assert [item["status"] for item in gated] == ["planned", "skipped"]


def test_healthy_plan_is_empty_and_result_contract():
    diagnosis = cp.diagnose(healthy_evidence(), SETTINGS)
    assert cp.plan(diagnosis, dict(SETTINGS, approve=True)) == []
    result = results.procedure_result(
        "cache_performance",
        "compose",
        "resolve",
        diagnosis["findings"],
        diagnosis["scenarios"],
        [],
        {"findings": diagnosis["findings"], "healthy": True},
        None,
        results.escalation(diagnosis["findings"], "L1", [], None, "resolve"),
    )
    assert set(result) == {
        "procedure",
        "platform",
        "phase",
        "findings",
        "scenarios",
        "actions",
        "verification",
        "escalation",
    }
    assert result["escalation"]["level"] is None
    assert "context" not in str(result.keys())


def test_escalation_moves_up_when_a_fix_did_not_help():
    diagnosis = cp.diagnose(eviction_fault(), SETTINGS)
    actions = [dict(item, status="applied") for item in cp.plan(diagnosis, dict(SETTINGS, approve=True))]
    after = cp.diagnose(eviction_fault(), SETTINGS, diagnosis["findings"], ("A",))
    verification = {"findings": after["findings"], "healthy": results.healthy(after["findings"])}
    assert verification["healthy"] is False
    assert results.escalation(diagnosis["findings"], "L1", actions, verification, "resolve")["level"] == "L2"
    assert results.up("L3") == "L3"


def test_dry_run_escalation_keeps_the_level_while_problems_remain():
    diagnosis = cp.diagnose(eviction_fault(), SETTINGS)
    dry = cp.plan(diagnosis, dict(SETTINGS, approve=True, dry_run=True))
    assert [item["status"] for item in dry] == ["planned"]
    # a dry run's verification is the diagnosis again: nothing was applied, the problem is still there
    unchanged = {"findings": diagnosis["findings"], "healthy": results.healthy(diagnosis["findings"])}
    found = results.escalation(diagnosis["findings"], "L1", dry, unchanged, "resolve")
    assert found["level"] == "L1" and dry[0]["id"] in found["reason"]
    applied = [dict(item, status="applied") for item in dry]
    healthy = cp.diagnose(healthy_evidence(), SETTINGS)
    fixed = {"findings": healthy["findings"], "healthy": True}
    assert results.escalation(diagnosis["findings"], "L1", applied, fixed, "resolve")["level"] is None


def test_a_verification_judges_the_hit_rate_on_samples_taken_after_the_fix():
    """Recovering comes from samples, never from an action having run: the verification's Redis sample (both INFO
    reads follow the fix) decides once it holds enough lookups; the alert's window still counts earlier misses."""
    before = cp.diagnose(eviction_fault(), SETTINGS)
    fixed = healthy_evidence()
    fixed["prometheus"]["queries"][cp.Q_HIT_RATE]["value"] = 0.35
    enough = SETTINGS["verify_min_lookups"]
    fixed["redis"]["sample"].update(hit_rate=0.85, lookups=enough)
    rate = by_check(cp.diagnose(fixed, SETTINGS, before["findings"], ("A",))["findings"])["cache.hit_rate"]
    assert rate["status"] == "warning" and "recovering" in rate["evidence"]["note"]
    assert rate["evidence"]["after_fix"] == {"source": "redis", "hit_rate": 0.85, "lookups": enough, "seconds": 2.0}
    # the same fresh samples still low: the fix did not help, whatever scenario it fixed
    fixed["redis"]["sample"].update(hit_rate=0.2)
    for applied in (("A",), ("C",), ()):
        after = cp.diagnose(fixed, SETTINGS, before["findings"], applied)
        rate = by_check(after["findings"])["cache.hit_rate"]
        assert rate["status"] == "problem" and "still low since the fix" in rate["evidence"]["note"], applied
        assert not results.healthy(after["findings"])
    # fresher beats older: a good recent Prometheus window (partly before the fix) does not outvote them
    fixed["prometheus"]["queries"][cp.Q_HIT_RATE_RECENT] = {"value": 0.9, "error": None}
    fixed["prometheus"]["queries"][cp.Q_LOOKUPS_RECENT] = {"value": 2.5, "error": None}
    assert by_check(cp.diagnose(fixed, SETTINGS, before["findings"], ("A",))["findings"])["cache.hit_rate"][
        "status"] == "problem"
    # without a fix the window is the evidence: a problem
    assert by_check(cp.diagnose(fixed, SETTINGS)["findings"])["cache.hit_rate"]["status"] == "warning"  # recent
    del fixed["prometheus"]["queries"][cp.Q_HIT_RATE_RECENT]
    assert by_check(cp.diagnose(fixed, SETTINGS)["findings"])["cache.hit_rate"]["status"] == "problem"


def test_too_few_lookups_since_the_fix_leave_the_hit_rate_not_judged():
    """Right after a fix a refilling cache has seen few lookups (the lab: about 5 in the 2 s sample): the rate is not
    judged yet - a warning that says so, never "recovering" - and a good recent window does count as recovering."""
    before = cp.diagnose(eviction_fault(), SETTINGS)
    fixed = healthy_evidence()
    fixed["prometheus"]["queries"][cp.Q_HIT_RATE]["value"] = 0.27
    fixed["redis"]["sample"].update(hit_rate=0.33, lookups=3)
    fixed["prometheus"]["queries"][cp.Q_HIT_RATE_RECENT] = {"value": 0.3, "error": None}
    fixed["prometheus"]["queries"][cp.Q_LOOKUPS_RECENT] = {"value": 2.5, "error": None}
    after = cp.diagnose(fixed, SETTINGS, before["findings"], ("A",))
    rate = by_check(after["findings"])["cache.hit_rate"]
    assert rate["status"] == "warning" and rate["evidence"]["note"].startswith("not judged yet: 3 lookups")
    assert "recovering" not in rate["evidence"]["note"] and rate["evidence"]["prometheus"]["recent"]["hit_rate"] == 0.3
    assert results.healthy(after["findings"])  # the cause's checks decide the verification
    fixed["prometheus"]["queries"][cp.Q_HIT_RATE_RECENT]["value"] = 0.8
    rate = by_check(cp.diagnose(fixed, SETTINGS, before["findings"], ("A",))["findings"])["cache.hit_rate"]
    assert rate["status"] == "warning" and rate["evidence"]["note"].startswith("recovering: 80%")
    # the old evidence judged again as a verification: the cause is still there, so the fix is not verified
    still = cp.diagnose(eviction_fault(), SETTINGS, before["findings"], ("A",))
    assert not results.healthy(still["findings"])


def test_a_redis_restarted_within_the_window_is_judged_on_the_samples_since():
    """After an emergency restart the cache is empty and refills from traffic: within the restart grace a low rate is a
    warning judged on the Redis sample taken since; a Redis up longer than that is judged on the window."""
    cold = healthy_evidence()
    cold["prometheus"]["queries"][cp.Q_HIT_RATE]["value"] = 0.37
    cold["redis"]["info"]["uptime_in_seconds"] = 12
    cold["redis"]["sample"].update(hit_rate=0.33, lookups=3)
    rate = by_check(cp.diagnose(cold, SETTINGS)["findings"])["cache.hit_rate"]
    assert rate["status"] == "warning", rate
    assert rate["evidence"]["note"].startswith("not judged yet: 3 lookups sampled since Redis restarted 12s ago")
    cold["redis"]["sample"].update(hit_rate=0.2, lookups=500)
    rate = by_check(cp.diagnose(cold, SETTINGS)["findings"])["cache.hit_rate"]
    assert rate["status"] == "warning" and "still low since Redis restarted 12s ago" in rate["evidence"]["note"]
    assert "the cache refills" in rate["evidence"]["note"]
    cold["redis"]["info"]["uptime_in_seconds"] = 86400
    cold["redis"]["sample"].update(hit_rate=0.33, lookups=3)
    assert by_check(cp.diagnose(cold, SETTINGS)["findings"])["cache.hit_rate"]["status"] == "problem"


def test_hit_rate_low_over_the_window_but_not_recently_is_recovering():
    evidence = healthy_evidence()
    queries = evidence["prometheus"]["queries"]
    queries[cp.Q_HIT_RATE]["value"] = 0.41
    queries[cp.Q_HIT_RATE_RECENT] = {"value": 0.9, "error": None}
    queries[cp.Q_LOOKUPS_RECENT] = {"value": 2.5, "error": None}
    rate = by_check(cp.diagnose(evidence, SETTINGS)["findings"])["cache.hit_rate"]
    assert rate["status"] == "warning" and rate["evidence"]["prometheus"]["recent"]["hit_rate"] == 0.9
    assert "recovering" in rate["evidence"]["note"]
    # still low over the short window, or too few lookups in it to judge: a problem
    queries[cp.Q_HIT_RATE_RECENT]["value"] = 0.3
    assert by_check(cp.diagnose(evidence, SETTINGS)["findings"])["cache.hit_rate"]["status"] == "problem"
    queries[cp.Q_HIT_RATE_RECENT]["value"] = 0.9
    queries[cp.Q_LOOKUPS_RECENT]["value"] = 0.0
    assert by_check(cp.diagnose(evidence, SETTINGS)["findings"])["cache.hit_rate"]["status"] == "problem"


# --- prevention -------------------------------------------------------------------------------------------------
def test_prevention_healthy_and_missing_safeguards():
    ok = cp.prevention(healthy_evidence(), SETTINGS)
    assert {item["status"] for item in ok["findings"]} == {"ok"}, ok["findings"]
    assert ok["actions"] == []
    evidence = healthy_evidence()
    evidence["redis"]["config"] = {"maxmemory": "0", "maxmemory-policy": "noeviction"}
    evidence["redis"]["persisted"]["config"] = {"maxmemory-policy": "noeviction"}
    evidence["redis"]["keys"]["patterns"][0]["with_ttl"] = 20
    evidence["redis"]["keys"]["patterns"][0]["without_ttl"] = 3
    evidence["prometheus"]["rules"]["names"] = ["ServiceDown"]
    bad = cp.prevention(evidence, dict(SETTINGS, maxmemory="256mb", approve=True))
    found = by_check(bad["findings"])
    assert found["prevent.redis.maxmemory"]["status"] == "problem"
    assert found["prevent.redis.eviction_policy"]["status"] == "problem"
    assert found["prevent.cache.key_ttl"]["status"] == "warning"
    assert found["prevent.prometheus.cache_miss_rule"]["status"] == "problem"
    ids = {item["id"]: item for item in bad["actions"]}
    assert ids["cache_performance.prevent.set_maxmemory"]["change"]["new"] == "256mb"
    assert ids["cache_performance.prevent.set_eviction_policy"]["status"] == "planned"
    assert ids["cache_performance.prevent.report_rule"]["status"] == "report"


# --- filters through Ansible's templating types --------------------------------------------------------------------
def test_the_flow_filters_judge_plan_gate_and_report():
    filters = procedure_filters.FilterModule().filters()
    run = {
        "procedures": ["cache_performance"],
        "context": {"platform": "compose", "phase": "resolve", "approve": True,
                    "inventory": {"redis": {"config_file": "/state/redis/redis.conf"}}},
        "settings": {"cache_performance": role_settings(
            "cache_performance", {"warm_keys": WARM, "warm_patterns": {"entity:*": 1}})},
    }
    # the procedure's kinds, and the stack check's (every service up: containers; no /health without services)
    assert set(filters["procedure_request"](run)) == {"redis", "prometheus", "containers"}
    assert filters["procedure_request"](run, {"redis": {}, "prometheus": {}}) != {}  # the cache must cover the need
    state = filters["procedure_judgement"](eviction_fault(), run)
    assert state["_followup"] == {}
    todo = filters["procedure_actions"](state, run)
    first = todo[0]["action"]
    assert todo[0]["procedure"] == "cache_performance" and first["_apply"] == "set_redis_config"
    assert first["change"]["file"] == "/state/redis/redis.conf"  # derived from the inventory, not a default
    done = {first["id"]: {"status": "applied", "outcome": "done"}}
    result = filters["procedure_results"](eviction_fault(), run, state, done)["cache_performance"]
    assert result["actions"][0]["status"] == "applied" and "_apply" not in result["actions"][0]
    assert "context" not in result and result["phase"] == "resolve"
    assert result["verification"]["findings"]  # judged again from the evidence given
    # a dry run applies nothing; an action listed in skip_actions (and what follows it) is skipped
    dry = dict(run, context=dict(run["context"], dry_run=True))
    assert filters["procedure_actions"](filters["procedure_judgement"](eviction_fault(), dry), dry) == []
    skipping = dict(run, settings={"cache_performance": dict(run["settings"]["cache_performance"],
                                                             skip_actions=[first["id"]])})
    skipped = filters["procedure_judgement"](eviction_fault(), skipping)["cache_performance"]["actions"]
    assert skipped[0]["status"] == "skipped" and "_apply" not in skipped[0]
    merged = filters["evidence_merge"]({}, {"redis": {}}, {"failed": True, "msg": "No module named 'redis'"})
    assert merged["redis"]["error"]["kind"] == "missing_tool"


def test_an_approved_plan_runs_exactly_and_is_refused_when_its_change_moved():
    """octoctl approve RUN_ID hands the plan a person saw to the flow (octollm_approved_plan): that runs, the
    actions that follow it come along, anything else is held back; a plan whose change moved runs not at all."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import flow

    base = {
        "procedures": ["cache_performance"],
        "settings": {"cache_performance": role_settings(
            "cache_performance", {"warm_keys": WARM, "warm_patterns": {"entity:*": 1}})},
    }
    context = {"platform": "compose", "phase": "resolve", "approve": True,
               "inventory": {"redis": {"config_file": "/state/redis/redis.conf"}}}
    planned = flow.judge(eviction_fault(), dict(base, context=context))["cache_performance"]["actions"]
    policy = planned[0]
    change = {key: value for key, value in policy["change"].items() if value is not None}
    assert policy["disruptive"]  # the fault's writer keeps keys without TTL

    exact = dict(base, context=dict(context, approved={policy["id"]: dict(change, sql=None)}))
    state = flow.judge(eviction_fault(), exact)
    by_id = {item["id"]: item for item in state["cache_performance"]["actions"]}
    assert by_id[policy["id"]]["status"] == "planned" and state["_approval"]["refused"] == []
    assert [item["action"]["id"] for item in flow.to_apply(state, exact)][0] == policy["id"]
    followers = [item for item in planned if item.get("_after") == policy["id"]]
    assert all(by_id[item["id"]]["status"] == "planned" for item in followers)  # the re-warm rides along

    others = dict(base, context=dict(context, approved={}))
    held = flow.judge(eviction_fault(), others)["cache_performance"]["actions"]
    assert held[0]["status"] == "awaiting_approval" and "not in the approved plan" in held[0]["outcome"]
    assert flow.to_apply(flow.judge(eviction_fault(), others), others) == []

    moved = dict(base, context=dict(context, approved={policy["id"]: dict(change, old="volatile-lru")}))
    refused = flow.judge(eviction_fault(), moved)
    assert "changed since it was approved" in refused["_approval"]["refused"][0]
    assert flow.to_apply(refused, moved) == []
    assert all(item["status"] in ("awaiting_approval", "skipped", "report")
               for item in refused["cache_performance"]["actions"])


def test_redis_bytes():
    assert results.redis_bytes("24mb") == 24 * 1024 * 1024
    assert results.redis_bytes("1g") == 10**9
    assert results.redis_bytes("67108864") == 67108864
    assert results.redis_bytes("junk") is None


# --- the redis collector against a real server (when redis-server is installed) ------------------------------------
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("[needs-install] redis-server is not installed")
    directory = tmp_path_factory.mktemp("redis")
    port = _free_port()
    conf = directory / "redis.conf"
    conf.write_text(
        f"bind 127.0.0.1\nport {port}\nrequirepass unit-pass\nmaxmemory 16mb\n"
        f'maxmemory-policy allkeys-lru\nsave ""\nappendonly no\ndir {directory}\n'
    )
    process = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = pytest.importorskip("redis", reason="[needs-install] the redis Python package")
    client = redis.Redis(port=port, password="unit-pass", protocol=2)
    for _ in range(50):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    yield {"port": port, "password": "unit-pass", "config_file": str(conf), "client": client}
    process.terminate()
    process.wait(timeout=10)


def test_redis_collector_reads_without_touching(redis_server):
    client = redis_server["client"]
    client.flushall()
    for index in range(50):
        client.set("llm:" + hashlib.md5(str(index).encode()).hexdigest(), "answer" * 10, ex=60)
    client.set("arm:capability:coder-arm", "{}", ex=60)
    client.set("fill:session:1", "x" * 4096)
    before = client.info("all")
    options = {
        "port": redis_server["port"],
        "password": redis_server["password"],
        "sample_seconds": 0.3,
        "config_file": redis_server["config_file"],
        "patterns": ["llm:*"],
        "exists": ["arm:capability:coder-arm", "arm:capability:none"],
        "config": ["maxmemory-policy", "requirepass"],
    }
    found = run_all({"redis": options}, timeout=10)["redis"]
    assert found["ok"], found
    assert found["config"] == {"maxmemory-policy": "allkeys-lru"}  # secrets are never read back
    assert found["persisted"]["config"] == {"maxmemory-policy": "allkeys-lru"}
    assert found["pattern_counts"]["llm:*"] == {"count": 50, "complete": True}
    assert found["exists"]["arm:capability:coder-arm"]["exists"] is True
    assert found["exists"]["arm:capability:none"]["exists"] is False
    patterns = {item["pattern"]: item for item in found["keys"]["patterns"]}
    assert patterns["llm:<hash>"]["count"] == 50 and patterns["llm:<hash>"]["with_ttl"] == 50
    assert patterns["fill:session:<n>"]["without_ttl"] == 1
    # the key probes ran before the INFO window: no lookup of ours counts in the sampled hit rate
    assert found["sample"]["lookups"] == 0
    after = client.info("all")
    assert after["total_error_replies"] == before["total_error_replies"]  # no errors caused by the probes
    assert "unit-pass" not in str(found)


def test_stack_evidence_module_spec_documents_every_option():
    import yaml
    from ansible_collections.octollm.remediation.plugins.modules import stack_evidence

    doc = yaml.safe_load(stack_evidence.DOCUMENTATION)
    spec = stack_evidence.argument_spec()
    assert set(doc["options"]) == set(spec)
    for kind, collector in COLLECTORS.items():
        assert set(doc["options"][kind]["suboptions"]) == set(collector.OPTIONS), kind
        for name, option in collector.OPTIONS.items():
            documented = doc["options"][kind]["suboptions"][name]
            assert documented.get("default") == option.get("default"), (kind, name)
            if name in ("password", "bearer_token"):
                assert option.get("no_log") is True
    assert copy.deepcopy(spec)


def test_slowlog_counts_only_the_caches_commands():
    evidence = healthy_evidence()
    now = evidence["redis"]["slowlog"]["now"]
    bulk = [{"command": "UNLINK", "key_pattern": "fill:session:<hash>", "duration_us": 50_000, "start_time": now - 5}]
    slow_gets = [{"command": "GET", "key_pattern": "llm:<hash>", "duration_us": 20_000, "start_time": now - 5}]
    evidence["redis"]["slowlog"]["entries"] = bulk * 10
    assert by_check(cp.diagnose(evidence, SETTINGS)["findings"])["redis.slowlog"]["status"] == "ok"
    evidence["redis"]["slowlog"]["entries"] = bulk * 10 + slow_gets * 5
    found = by_check(cp.diagnose(evidence, SETTINGS)["findings"])["redis.slowlog"]
    assert found["status"] == "warning" and found["evidence"]["recent"] == 5


def test_plan_a_over_maxmemory_rewarms_after_the_eviction_it_starts():
    evidence = eviction_fault()
    evidence["redis"]["info"]["used_memory"] = 33_554_432  # the fill went past the lowered maxmemory
    diagnosis = cp.diagnose(evidence, SETTINGS)
    waiting = cp.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"]) for a in waiting] == [
        ("cache_performance.A.set_eviction_policy", "awaiting_approval"),
        ("cache_performance.A.rewarm_after_eviction", "skipped"),
    ]
    assert "_apply" not in waiting[1] and "follows cache_performance.A.set_eviction_policy" in waiting[1]["outcome"]
    approved = cp.plan(diagnosis, dict(SETTINGS, approve=True))
    assert [(a["scenario"], a["status"], a["_apply"]) for a in approved] == [
        ("A", "planned", "set_redis_config"),
        ("A", "planned", "warm_cache"),
    ]
    assert approved[1]["change"]["wait_for_eviction"] is True
    assert approved[1]["change"]["maxmemory"] == 25165824
    # under maxmemory the new policy evicts nothing: no follow-up
    assert len(cp.plan(cp.diagnose(eviction_fault(), SETTINGS), dict(SETTINGS, approve=True))) == 1


def test_without_a_warming_endpoint_scenario_c_is_a_report_and_a_never_rewarms():
    """The warming endpoint is the optional probe cache_warm: where the deployment does not offer it, C is a report
    naming what a human does (the warm-keys check still reads Redis), and A warms nothing after its eviction."""
    assert SETTINGS["warm_url"] == "http://127.0.0.1:8000/api/v1/cache/warm" and SEED_ONLY["warm_url"] is None
    evidence = healthy_evidence()
    evidence["redis"]["exists"] = {key: {"exists": False, "ttl_s": None} for key in WARM}
    diagnosis = cp.diagnose(evidence, SEED_ONLY)
    assert by_check(diagnosis["findings"])["cache.warm_keys"]["status"] == "problem"
    [report] = cp.plan(diagnosis, SEED_ONLY)
    assert (report["id"], report["status"], report["scenario"]) == ("cache_performance.C.report_warming", "report", "C")
    assert "_apply" not in report and "offers no cache warming endpoint" in report["outcome"]
    assert "probes.cache_warm" in report["outcome"] and WARM[0] in report["outcome"]
    full = cp.diagnose(eviction_fault(), SEED_ONLY)
    full["context"]["used_memory"] = 33_554_432  # over maxmemory: the new policy evicts at once
    without = cp.plan(full, dict(SEED_ONLY, approve=True))
    assert [a["id"] for a in without] == ["cache_performance.A.set_eviction_policy"]
    offered = cp.plan(full, dict(SETTINGS, approve=True))
    assert [a["id"] for a in offered][1] == "cache_performance.A.rewarm_after_eviction"


def test_cache_metrics_are_the_deployments_and_a_metric_without_series_is_unknown():
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context

    inventory = {"services": {"orchestrator": {"metrics": {"cache_hits": "orchestrator_cache_hits_total",
                                                           "cache_misses": "orchestrator_cache_misses_total"}}}}
    context = Context(platform="compose", inventory=deployment.describe(inventory, role_settings("_common")))
    needs = cp.PROCEDURE.needs(SETTINGS, context)["prometheus"]["queries"]
    assert "orchestrator_cache_hits_total{" in needs[cp.Q_HIT_RATE] and "orchestrator_cache_misses_total{" in needs[
        cp.Q_LOOKUPS]
    assert needs[cp.Q_METRICS].startswith("count(orchestrator_cache_hits_total{")
    assert "cache_hits_total" not in needs[cp.Q_HIT_RATE].replace("orchestrator_cache_hits_total", "")
    assert needs[cp.Q_ERRORS] == f"sum(rate(cache_errors_total[{SETTINGS['prometheus_window']}]))"  # the seed's
    # no series of the hit metric, and too few lookups in the Redis sample: unknown, never "no traffic"
    evidence = healthy_evidence()
    queries = evidence["prometheus"]["queries"]
    for name in (cp.Q_HIT_RATE, cp.Q_LOOKUPS, cp.Q_HIT_RATE_RECENT, cp.Q_LOOKUPS_RECENT):
        queries[name] = {"value": None, "empty": True, "error": None}
    queries[cp.Q_METRICS] = {"value": 0.0, "error": None, "query": needs[cp.Q_METRICS]}
    evidence["redis"]["sample"].update(lookups=1)
    rate = by_check(cp.diagnose(evidence, SETTINGS)["findings"])["cache.hit_rate"]
    assert rate["status"] == "unknown" and "no series in Prometheus (count(orchestrator_cache_hits_total{" in rate[
        "error"]["message"]
    # series that exist but saw no lookups: no traffic; enough lookups in Redis: judged from Redis
    queries[cp.Q_METRICS]["value"] = 1.0
    assert by_check(cp.diagnose(evidence, SETTINGS)["findings"])["cache.hit_rate"]["observed"] == "no traffic"
    queries[cp.Q_METRICS]["value"] = 0.0
    evidence["redis"]["sample"].update(lookups=20)
    assert by_check(cp.diagnose(evidence, SETTINGS)["findings"])["cache.hit_rate"]["evidence"]["source"] == "redis"
