"""Unit tests of the memory_leaks judgement (plugins/plugin_utils/memory_leaks.py) on synthetic evidence shaped
like stack_evidence's: healthy gives only ok, a growing container is scenario A with a rolling restart that waits
for approval and a report (L2), a service without limit is scenario B, prevention reads the live rules."""

from __future__ import annotations

import copy

from ansible_collections.octollm.remediation.plugins.filter import procedure as procedure_filters
from ansible_collections.octollm.remediation.plugins.plugin_utils import deployment, results
from ansible_collections.octollm.remediation.plugins.plugin_utils import memory_leaks as ml
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings

MIB = 1048576
OVERRIDES = {"debug_services": ["orchestrator", "coder-arm"], "override_file": "/state/compose.override.yaml"}
# the lab's services offer their in-process memory (the optional probe debug_memory)
OFFERED = {"probes": {"debug_memory": "/debug/memory"}}
INVENTORY = {"services": {"orchestrator": dict(OFFERED, url="http://127.0.0.1:8000"),
                          "coder-arm": dict(OFFERED, url="http://127.0.0.1:8102")},
             "compose": {"project": "octollm"}}
SETTINGS = procedure_settings("memory_leaks", OVERRIDES, inventory=INVENTORY)


def container(service, ws_mib, growth_mib_s=0.0, limit_mib=256, window=3.0, **extra):
    last = int(ws_mib * MIB)
    first = int(last - growth_mib_s * MIB * window)
    record = {
        "service": service,
        "name": f"octollm-{service}-1",
        "running": True,
        "memory_limit": limit_mib * MIB if limit_mib else None,
        "oom_killed": False,
        "restart_count": 0,
        "stats": {
            "memory_working_set_bytes": last,
            "memory_working_set_first_bytes": first,
            "memory_growth_bytes_per_s": round((last - first) / window, 1),
            "memory_limit_bytes": limit_mib * MIB if limit_mib else None,
            "memory_percent": round(100.0 * ws_mib / limit_mib, 2) if limit_mib else None,
            "sample_seconds": window,
            "oom_kills": 0,
        },
    }
    record.update(extra)
    return record


def debug_body(service, rss_mib=30):
    return {
        "name": f"memory_leaks_{service}",
        "ok": True,
        "status": 200,
        "error": None,
        "body": {
            "service": service,
            "rss_bytes": rss_mib * MIB,
            "top_object_types": [["function", 5000], ["dict", 2400]],
            "tracemalloc": None,
        },
    }


def evidence(records=None, history=None, rules=("HighMemoryUsage",)):
    records = records if records is not None else [container("orchestrator", 40), container("coder-arm", 30)]
    history = history or {}
    return {
        "containers": {
            "ok": True,
            "error": None,
            "containers": records,
            "host": {"memory": {"swap_total_bytes": 0, "swap_used_bytes": 0}},
        },
        "prometheus": {
            "ok": True,
            "error": None,
            "queries": {
                ml.Q_GROWTH: {
                    "error": None,
                    "series": [
                        {
                            "labels": {"name": r["name"], "compose_service": r["service"]},
                            "value": history.get(r["service"], 1000.0),
                        }
                        for r in records
                    ],
                },
            },
            "rules": {"names": list(rules), "alerts": {}, "error": None},
        },
        "http": {
            "ok": True,
            "error": None,
            "probes": {f"memory_leaks_{s}": debug_body(s) for s in ("orchestrator", "coder-arm")},
        },
        "redis": {"ok": True, "error": None, "config": {"maxmemory": "67108864", "maxmemory-policy": "allkeys-lru"}},
    }


def test_healthy_evidence_gives_only_ok():
    diagnosis = ml.diagnose(evidence(), SETTINGS)
    assert {f["check"]: f["status"] for f in diagnosis["findings"]} == {
        "memory.growth": "ok",
        "memory.oom_kills": "ok",
        "memory.near_limit": "ok",
        "memory.restarts": "ok",
        "memory.swap": "ok",
        "memory.limits": "ok",
        "memory.in_process": "ok",
    }
    assert not any(s["holds"] for s in diagnosis["scenarios"])
    assert ml.plan(diagnosis, SETTINGS) == []
    assert diagnosis["escalation"]["level"] is None


def test_growing_service_is_scenario_a_and_waits_for_approval():
    records = [container("orchestrator", 40), container("coder-arm", 120, growth_mib_s=2.0)]
    diagnosis = ml.diagnose(evidence(records, history={"coder-arm": 1.5 * MIB}), SETTINGS)
    found = {f["check"]: f for f in diagnosis["findings"]}
    assert found["memory.growth"]["status"] == "problem" and found["memory.growth"]["scenario"] == "A"
    assert "coder-arm" in found["memory.growth"]["observed"]
    assert found["memory.in_process"]["status"] == "warning"
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]} == {"A": True, "B": False}
    actions = ml.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"]) for a in actions] == [
        ("memory_leaks.A.rolling_restart.coder-arm", "awaiting_approval"),
        ("memory_leaks.A.report.coder-arm", "report"),
    ]
    approved = ml.plan(diagnosis, dict(SETTINGS, approve=True))
    assert approved[0]["status"] == "planned" and approved[0]["change"]["containers"] == ["octollm-coder-arm-1"]
    # a fix that leaves a report ends at L2 even when verification is healthy
    applied = results.apply_outcomes(approved, {approved[0]["id"]: {"status": "applied", "outcome": "restarted"}})
    level = results.escalation(diagnosis["findings"], "L2", applied, {"findings": [], "healthy": True}, "resolve")
    assert level["level"] == "L2"


def test_growth_not_sustained_in_history_is_not_a_leak():
    records = [container("orchestrator", 40, growth_mib_s=2.0)]
    diagnosis = ml.diagnose(evidence(records, history={"orchestrator": 0.0}), SETTINGS)
    assert {f["check"]: f["status"] for f in diagnosis["findings"]}["memory.growth"] == "ok"


def test_a_young_container_growing_is_warming_up_not_a_leak():
    """A database seconds after its start fills its buffers: reported as warming up, not scenario A; the same growth
    in a container running for an hour is a leak."""
    import time

    def started(seconds_ago):
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(time.time() - seconds_ago))

    history = {"postgres": 1.5 * MIB}
    young = [container("postgres", 120, growth_mib_s=2.0, started_at=started(30))]
    growth = {f["check"]: f for f in ml.diagnose(evidence(young, history=history), SETTINGS)["findings"]}[
        "memory.growth"]
    assert growth["status"] == "ok" and "warming up, not judged: postgres" in growth["observed"]
    assert growth["evidence"]["warming_up"] == ["postgres"]
    old = [container("postgres", 120, growth_mib_s=2.0, started_at=started(3600))]
    growth = {f["check"]: f for f in ml.diagnose(evidence(old, history=history), SETTINGS)["findings"]}[
        "memory.growth"]
    assert growth["status"] == "problem" and growth["scenario"] == "A"


def test_oom_killed_and_near_limit_point_at_a():
    records = [container("orchestrator", 250), container("coder-arm", 30, oom_killed=True)]
    diagnosis = ml.diagnose(evidence(records), SETTINGS)
    found = {f["check"]: f for f in diagnosis["findings"]}
    assert found["memory.near_limit"]["status"] == "problem"
    assert found["memory.oom_kills"]["status"] == "problem"
    assert diagnosis["context"]["suspects"] == ["coder-arm", "orchestrator"]


def test_missing_limit_is_scenario_b_with_the_override_change():
    records = [container("orchestrator", 40), container("coder-arm", 30, limit_mib=None)]
    diagnosis = ml.diagnose(evidence(records), SETTINGS)
    found = {f["check"]: f for f in diagnosis["findings"]}
    assert found["memory.limits"]["status"] == "warning" and found["memory.limits"]["scenario"] == "B"
    actions = ml.plan(diagnosis, dict(SETTINGS, approve=True))
    assert [a["id"] for a in actions] == ["memory_leaks.B.set_memory_limit.coder-arm"]
    assert actions[0]["change"]["key"] == "services.coder-arm.mem_limit"
    assert actions[0]["change"]["new"] == "256m" and actions[0]["disruptive"]


def test_containers_unreachable_is_unknown_with_error_kind():
    broken = evidence()
    broken["containers"] = {"ok": False, "error": {"kind": "unreachable", "message": "Docker API unreachable"}}
    diagnosis = ml.diagnose(broken, SETTINGS)
    growth = {f["check"]: f for f in diagnosis["findings"]}["memory.growth"]
    assert growth["status"] == "unknown" and growth["error"]["kind"] == "unreachable"


def test_prevention_reads_rules_limits_and_cache():
    healthy = ml.prevention(evidence(), SETTINGS)
    assert {f["check"]: f["status"] for f in healthy["findings"]} == {
        "prevent.memory.limits": "ok",
        "prevent.prometheus.high_memory_rule": "ok",
        "prevent.cache.bounded": "ok",
    }
    assert healthy["actions"] == []
    bad = evidence([container("coder-arm", 30, limit_mib=None)], rules=())
    bad["redis"]["config"]["maxmemory"] = "0"
    result = ml.prevention(bad, SETTINGS)
    assert {f["check"]: f["status"] for f in result["findings"]} == {
        "prevent.memory.limits": "problem",
        "prevent.prometheus.high_memory_rule": "problem",
        "prevent.cache.bounded": "problem",
    }
    assert [a["status"] for a in result["actions"]] == ["awaiting_approval", "report", "report"]


def test_the_flow_filters_judge_it_and_the_needs_follow_the_settings():
    filters = procedure_filters.FilterModule().filters()
    run = {
        "procedures": ["memory_leaks"],
        "context": {"platform": "compose", "phase": "resolve",
                    "inventory": deployment.describe(INVENTORY, role_settings("_common"))},
        "settings": {"memory_leaks": role_settings("memory_leaks", OVERRIDES)},
    }
    state = filters["procedure_judgement"](copy.deepcopy(evidence()), run)
    assert state["memory_leaks"]["actions"] == []  # healthy: nothing planned
    request = filters["procedure_request"](run)
    assert set(request) == {"containers", "prometheus", "http"}
    # every container (no selector: memory_leaks and the stack check both want all of them), with stats and host
    assert request["containers"] == {"stats": True, "stats_sample_seconds": 3.0, "host": True}
    assert request["prometheus"]["queries"][ml.Q_GROWTH] == (
        'deriv(container_memory_working_set_bytes{compose_project="octollm"}[1m])'
    )
    assert [(p["name"], p["service"], p["path"]) for p in request["http"]["probes"]
            if p["name"].startswith("memory_leaks_")] == [
        ("memory_leaks_orchestrator", "orchestrator", "/debug/memory"),
        ("memory_leaks_coder-arm", "coder-arm", "/debug/memory"),
    ]
    # the bounded-cache check of prevent reads Redis' maxmemory and policy
    prevent = dict(run, context=dict(run["context"], phase="prevent"))
    assert filters["procedure_request"](prevent)["redis"]["config"] == ["maxmemory", "maxmemory-policy"]


def test_container_stats_give_the_memory_growth_over_the_window():
    from ansible_collections.octollm.remediation.plugins.module_utils.collector_containers import finish_stats

    first = {"t": 10.0, "memory_usage_bytes": 100 * MIB, "memory_inactive_file_bytes": 10 * MIB, "cpu_ns": 0}
    second = {"t": 12.0, "memory_usage_bytes": 106 * MIB, "memory_inactive_file_bytes": 10 * MIB, "cpu_ns": 10**9}
    stats = finish_stats(first, second, None)
    assert stats["memory_working_set_first_bytes"] == 90 * MIB
    assert stats["memory_working_set_bytes"] == 96 * MIB
    assert stats["memory_growth_bytes_per_s"] == 3 * MIB
    assert "memory_growth_bytes_per_s" not in finish_stats(first, None, None)


def test_in_process_memory_is_an_optional_probe_not_offered_is_no_escalation():
    """Issue 14: a deployment whose services offer no in-process memory evidence (no probes.debug_memory) is not
    probed for it: the check is unknown as not offered by this deployment, with no L2 escalation on a healthy
    diagnosis and no effect on the verification."""
    plain = {"services": {"orchestrator": {"url": "http://api:8080"}, "coder-arm": {"url": "http://coder:8102"}},
             "compose": {"project": "llmstack"}}
    settings = procedure_settings("memory_leaks", inventory=plain)
    healthy = evidence()
    healthy.pop("http")  # nothing was asked of it
    diagnosis = ml.diagnose(healthy, settings)
    found = {f["check"]: f for f in diagnosis["findings"]}
    in_process = found["memory.in_process"]
    assert in_process["status"] == "unknown" and in_process["error"]["kind"] == "not_offered"
    assert "not offered by this deployment" in in_process["error"]["message"]
    assert all(f["status"] == "ok" for f in diagnosis["findings"] if f["check"] != "memory.in_process")
    assert diagnosis["escalation"]["level"] is None
    assert results.healthy(diagnosis["findings"])
    run = {"procedures": ["memory_leaks"], "settings": {"memory_leaks": role_settings("memory_leaks")},
           "context": {"platform": "compose", "phase": "diagnose",
                       "inventory": deployment.describe(plain, role_settings("_common"))}}
    request = procedure_filters.FilterModule().filters()["procedure_request"](run)
    assert not [p for p in (request.get("http") or {}).get("probes") or [] if p["name"].startswith("memory_leaks_")]
    # a leak is still found from the containers and the history, and reported; the in-process part is not offered
    records = [container("orchestrator", 40), container("coder-arm", 120, growth_mib_s=2.0)]
    leaking = evidence(records, history={"coder-arm": 1.5 * MIB})
    leaking.pop("http")
    diagnosis = ml.diagnose(leaking, settings)
    found = {f["check"]: f for f in diagnosis["findings"]}
    assert found["memory.growth"]["status"] == "problem"
    assert found["memory.in_process"]["error"]["kind"] == "not_offered"


def test_in_process_memory_at_the_path_the_inventory_names_and_only_where_offered():
    inventory = {"services": {"orchestrator": {"url": "http://api:8080", "probes": {"debug_memory": "/_/heap"}},
                              "coder-arm": {"url": "http://coder:8102"}},
                 "compose": {"project": "llmstack"}}
    run = {"procedures": ["memory_leaks"], "settings": {"memory_leaks": role_settings("memory_leaks")},
           "context": {"platform": "compose", "phase": "diagnose",
                       "inventory": deployment.describe(inventory, role_settings("_common"))}}
    request = procedure_filters.FilterModule().filters()["procedure_request"](run)
    assert [(p["name"], p["path"]) for p in request["http"]["probes"] if p["name"].startswith("memory_leaks_")] == [
        ("memory_leaks_orchestrator", "/_/heap")]
    settings = procedure_settings("memory_leaks", inventory=inventory)
    found = {f["check"]: f for f in ml.diagnose(evidence(), settings)["findings"]}
    assert found["memory.in_process"]["status"] == "ok" and found["memory.in_process"]["evidence"] == {}
    # a service selected by name that does not offer it is named as such, never a problem
    settings = procedure_settings("memory_leaks", OVERRIDES, inventory=inventory)
    found = {f["check"]: f for f in ml.diagnose(evidence(), settings)["findings"]}
    assert found["memory.in_process"]["status"] == "ok"
    assert found["memory.in_process"]["evidence"] == {"not_offered": ["coder-arm"]}
