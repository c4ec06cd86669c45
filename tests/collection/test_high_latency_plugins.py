"""Unit tests of the high_latency judgement (plugin_utils/high_latency.py) on built evidence."""

from __future__ import annotations

import copy

from ansible_collections.octollm.remediation.plugins.filter.high_latency import FilterModule
from ansible_collections.octollm.remediation.plugins.plugin_utils import high_latency as hl

SETTINGS = {
    "env_file": "/state/lab.env",
    "override_file": "/state/compose.override.yaml",
    "scalable_services": ["orchestrator", "planner-arm"],
    "max_replicas": 3,
}
INDEXES = {
    "tasks": [
        "CREATE INDEX idx_tasks_created_at ON public.tasks USING btree (created_at)",
        "CREATE INDEX idx_tasks_status ON public.tasks USING btree (status)",
        "CREATE UNIQUE INDEX tasks_pkey ON public.tasks USING btree (task_id)",
    ],
    "entities": ["CREATE INDEX idx_entities_type ON public.entities USING btree (entity_type)"],
}


def query(series):
    return {"series": [{"labels": labels, "value": value} for labels, value in series], "error": None}


def evidence(
    p95=0.3,
    llm=0.4,
    cpu=0.1,
    cache="true",
    cache_file="true",
    drop=(),
    rows=20000,
    invalid=(),
    statements=None,
    rtt="planner-arm:8100 0.002\ncoder-arm:8102 0.003\n",
):
    tables = {}
    for table, definitions in INDEXES.items():
        indexes = []
        for definition in definitions:
            name = definition.split()[2] if "UNIQUE" not in definition else definition.split()[3]
            if name in drop:
                continue
            indexes.append({"name": name, "definition": definition, "valid": name not in invalid})
        tables[table] = {
            "n_live_tup": rows,
            "seq_scan": 50,
            "seq_tup_read": 50 * rows,
            "idx_scan": 10,
            "total_bytes": 1 << 22,
            "indexes": indexes,
        }
    return {
        "prometheus": {
            "ok": True,
            "queries": {
                hl.Q_P95: query(
                    [
                        ({"service": "orchestrator", "endpoint": "/api/v1/tasks"}, p95),
                        ({"service": "planner-arm", "endpoint": "/execute"}, 0.03),
                        ({"service": "orchestrator", "endpoint": "/api/v1/arms"}, float("nan")),
                    ]
                ),
                hl.Q_LLM_P95: query([({"provider": "primary"}, llm)]),
                hl.Q_SERVER_MEAN: query([({"service": "planner-arm"}, 0.002), ({"service": "coder-arm"}, 0.01)]),
                hl.Q_REDIS: query([({"cmd": "get"}, 0.00003)]),
                hl.Q_CPU: query([({"compose_service": "orchestrator"}, cpu), ({"compose_service": "redis"}, 0.01)]),
                hl.Q_MEMORY: query([({"compose_service": "orchestrator"}, 0.3)]),
                hl.Q_HOST_MEMORY: query([({}, 0.8)]),
            },
            "rules": {"names": ["HighRequestLatency"], "alerts": {}},
        },
        "postgres": {
            "ok": True,
            "tables": {"tables": tables, "missing": []},
            "statements": {
                "available": True,
                "top": statements or [{"query": "SELECT 1", "mean_ms": 0.1, "calls": 100, "max_ms": 1}],
            },
            "connections": {"max_connections": 40, "superuser_reserved_connections": 5},
        },
        "containers": {
            "ok": True,
            "services": {"orchestrator": {"containers": 1, "running": 1}},
            "containers": [{"service": "orchestrator", "cpus": 1.0}, {"service": "redis", "cpus": 0.5}],
            "exec_probes": [
                {"name": hl.CACHE_PROBE, "exit_code": 0, "output": cache + "\n", "error": None},
                {"name": hl.RTT_PROBE, "exit_code": 0, "output": rtt, "error": None},
            ],
        },
        "http": {
            "ok": True,
            "probes": {
                hl.HEALTH_PROBE: {"status": 200, "body": {"checks": {"db_pool": {"in_use": 1, "max": 10, "leaked": 0}}}}
            },
        },
        "logs": {
            "ok": True,
            "sources": {
                hl.ENV_SOURCE: {
                    "lines": [{"text": f"RESPONSE_CACHE_ENABLED={cache_file}"}, {"text": "DB_POOL_SIZE=5"}]
                }
            },
        },
    }


def hops(planner_ms=12.0, calls=10):
    return {
        "hops": {
            "rows": [
                {"arm": "planner-arm", "calls": calls, "p50_ms": planner_ms, "mean_ms": planner_ms},
                {"arm": "coder-arm", "calls": 10, "p50_ms": 20.0, "mean_ms": 21.0},
            ]
        }
    }


def statuses(result):
    return {item["check"]: item["status"] for item in result["findings"]}


def holding(result):
    return {item["id"] for item in result["scenarios"] if item["holds"]}


def test_healthy_evidence_is_all_ok():
    result = hl.diagnose(evidence(), SETTINGS, hops())
    assert set(statuses(result).values()) == {"ok"}, statuses(result)
    assert holding(result) == set()
    assert result["context"]["profile_service"] is None


def test_missing_index_on_a_large_table_is_a_with_concurrent_create():
    diagnosis = hl.diagnose(evidence(drop=("idx_tasks_created_at",)), SETTINGS, hops())
    assert holding(diagnosis) == {"A"}
    actions = hl.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"], a["disruptive"]) for a in actions] == [
        ("high_latency.A.index.idx_tasks_created_at", "planned", False)
    ]
    assert actions[0]["change"]["statements"] == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_tasks_created_at ON tasks (created_at)",
        "ANALYZE tasks",
    ]
    assert "check mode" in actions[0]["outcome"]


def test_missing_index_on_a_small_table_only_warns_and_invalid_index_is_rebuilt():
    small = hl.diagnose(evidence(drop=("idx_entities_type",), rows=100), SETTINGS, hops())
    assert statuses(small)["db.indexes"] == "warning" and holding(small) == set()
    broken = hl.diagnose(evidence(invalid=("idx_tasks_status",), rows=100), SETTINGS, hops())
    assert holding(broken) == {"A"}
    assert hl.plan(broken, SETTINGS)[0]["change"]["statements"][0] == "REINDEX INDEX CONCURRENTLY idx_tasks_status"


def test_slow_statements_on_a_table_missing_its_index_point_at_a():
    slow = [{"query": "SELECT count(*) FROM tasks WHERE created_at > now() - $1", "mean_ms": 150.0, "calls": 50}]
    result = hl.diagnose(evidence(drop=("idx_tasks_created_at",), statements=slow), SETTINGS, hops())
    found = {item["check"]: item for item in result["findings"]}
    assert found["db.slow_statements"]["status"] == "warning" and found["db.slow_statements"]["scenario"] == "A"


def test_response_cache_off_is_b_and_a_disruptive_recreate():
    diagnosis = hl.diagnose(evidence(cache="false", cache_file="false"), SETTINGS, hops())
    assert holding(diagnosis) == {"B"}
    waiting = hl.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"]) for a in waiting] == [("high_latency.B.enable_response_cache", "awaiting_approval")]
    approved = hl.plan(diagnosis, dict(SETTINGS, approve=True))[0]
    assert approved["change"]["keys"] == {"RESPONSE_CACHE_ENABLED": {"old": "false", "new": "true"}}
    assert approved["resource"] == "compose:orchestrator"


def test_cache_unset_means_on_and_file_only_off_warns():
    assert statuses(hl.diagnose(evidence(cache=""), SETTINGS, hops()))["llm.response_cache"] == "ok"
    assert statuses(hl.diagnose(evidence(cache_file="false"), SETTINGS, hops()))["llm.response_cache"] == "warning"


def test_slow_llm_is_reported():
    diagnosis = hl.diagnose(evidence(llm=4.0), SETTINGS, hops())
    assert holding(diagnosis) == {"B"}
    assert [(a["id"], a["status"]) for a in hl.plan(diagnosis, SETTINGS)] == [
        ("high_latency.B.report_llm_latency", "report")
    ]


def test_cpu_contention_scales_out_bounded_and_reports_otherwise():
    diagnosis = hl.diagnose(evidence(cpu=0.97), SETTINGS, hops())
    assert holding(diagnosis) == {"C"}
    action = hl.plan(diagnosis, SETTINGS)[0]
    assert (action["id"], action["change"]["old"], action["change"]["new"]) == (
        "high_latency.C.scale_orchestrator",
        1,
        2,
    )
    capped = hl.plan(diagnosis, dict(SETTINGS, max_replicas=1))[0]
    assert capped["status"] == "report"


def test_cpu_limit_is_the_sum_over_running_replicas():
    scaled = evidence(cpu=0.5)
    scaled["containers"]["services"]["orchestrator"] = {"containers": 3, "running": 2}
    scaled["containers"]["containers"] = [
        {"service": "orchestrator", "cpus": 0.5, "state": "running"},  # throttled (docker update)
        {"service": "orchestrator", "cpus": 1.0, "state": "running"},
        {"service": "orchestrator", "cpus": 1.0, "state": "exited"},
        {"service": "redis", "cpus": 0.5, "state": "running"},
    ]
    row = hl.diagnose(scaled, SETTINGS, hops())["findings"][5]["evidence"]["busiest"][0]
    assert (row["service"], row["limit_cores"], row["ratio"]) == ("orchestrator", 1.5, 0.3333)
    unlimited = copy.deepcopy(scaled)
    unlimited["containers"]["containers"][1]["cpus"] = None
    row = hl.diagnose(unlimited, SETTINGS, hops())["findings"][5]["evidence"]["busiest"]
    assert {r["service"]: r["ratio"] for r in row}["orchestrator"] is None


def test_slow_hop_is_d_with_the_caller_to_profile():
    result = hl.diagnose(evidence(), SETTINGS, hops(planner_ms=512.0))
    assert holding(result) == {"D"}
    found = {item["check"]: item for item in result["findings"]}
    slow = [row for row in found["network.hops"]["evidence"]["hops"] if row["slow"]]
    assert [(r["to"], r["overhead_ms"], r["tcp_rtt_ms"]) for r in slow] == [("planner-arm", 510.0, 2.0)]
    assert result["context"]["profile_service"] == "orchestrator"
    with_profile = hl.diagnose(evidence(), SETTINGS, dict(hops(planner_ms=512.0), profile={"output": "Thread 1"}))
    assert {i["check"]: i for i in with_profile["findings"]}["network.hops"]["evidence"]["profile"]["output"]
    actions = hl.plan(result, SETTINGS)
    assert [(a["id"], a["status"]) for a in actions] == [("high_latency.D.report_slow_hop", "report")]


def test_too_few_calls_or_a_failed_probe_are_not_a_slow_hop():
    assert statuses(hl.diagnose(evidence(), SETTINGS, hops(planner_ms=900.0, calls=1)))["network.hops"] == "ok"
    failed = hl.diagnose(evidence(), SETTINGS, {"hops": {"error": {"kind": "auth", "message": "no"}}})
    hop = {i["check"]: i for i in failed["findings"]}["network.hops"]
    assert hop["status"] == "unknown" and hop["error"]["kind"] == "auth"


def test_slow_endpoint_names_the_scenario_that_explains_it():
    result = hl.diagnose(evidence(p95=7.5, cache="false"), SETTINGS, hops())
    p95 = result["findings"][0]
    assert p95["check"] == "latency.p95" and p95["status"] == "problem" and p95["scenario"] == "B"
    assert result["context"]["profile_service"] == "orchestrator"


def test_prevention_on_healthy_evidence_and_with_gaps():
    healthy = hl.prevention(evidence(), SETTINGS)
    assert {i["check"]: i["status"] for i in healthy["findings"]} == {
        "prevent.db.indexes": "ok",
        "prevent.llm.response_cache": "ok",
        "prevent.app.db_pool": "ok",
        "prevent.prometheus.latency_rule": "ok",
    }
    assert healthy["actions"] == []
    ev = evidence(drop=("idx_entities_type",), rows=100, cache_file="false")
    ev["prometheus"]["rules"]["names"] = []
    gaps = hl.prevention(ev, dict(SETTINGS, approve=True))
    assert [(a["id"], a["status"]) for a in gaps["actions"]] == [
        ("high_latency.prevent.index.idx_entities_type", "planned"),
        ("high_latency.prevent.enable_response_cache", "planned"),
        ("high_latency.prevent.report_rule", "report"),
    ]


def test_the_filters_are_registered():
    filters = FilterModule().filters()
    diagnosis = filters["high_latency_diagnosis"](evidence(), SETTINGS, hops())
    assert filters["high_latency_plan"](diagnosis, SETTINGS) == []
    assert filters["high_latency_prevention"](evidence(), SETTINGS)["findings"]


def test_rtt_output_parses():
    assert hl.parse_rtt("planner-arm:8100 0.0035\ncoder-arm:8102 failed\n") == {"planner-arm": 3.5}


def test_every_action_fits_octoctls_result_model():
    from octoctl.models import Action

    diagnosis = hl.diagnose(evidence(drop=("idx_tasks_created_at",), cpu=0.97, cache="false", cache_file="false"),
                            SETTINGS, hops())
    actions = hl.plan(diagnosis, dict(SETTINGS, approve=True))
    assert {a["scenario"] for a in actions} >= {"A", "B", "C"}
    for item in actions:
        Action.model_validate({k: v for k, v in item.items() if not k.startswith("_")})
