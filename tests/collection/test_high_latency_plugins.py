"""Unit tests of the high_latency judgement (plugin_utils/high_latency.py) on built evidence."""

from __future__ import annotations

import copy
import re

import deployments
from ansible_collections.octollm.remediation.plugins.filter.procedure import FilterModule
from ansible_collections.octollm.remediation.plugins.plugin_utils import flow
from ansible_collections.octollm.remediation.plugins.plugin_utils import high_latency as hl
from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import describe
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings

OVERRIDES = {
    "env_file": "/state/lab.env",
    "override_file": "/state/compose.override.yaml",
    "scalable_services": ["orchestrator", "planner-arm"],
    "max_replicas": 3,
}
# the full lab as inventory/lab describes it (the pool figures and the hop round trips are offered)
SETTINGS = procedure_settings("high_latency", OVERRIDES, inventory=deployments.inventory("lab"))
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
    hops=None,
    profile=None,
):
    """Evidence as stack_evidence returns it; ``hops`` is the answer of the named query high_latency_hops
    (``hop_rows()`` by default), ``profile`` the output of the py-spy probe in the orchestrator (none by default)."""
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
            "queries": {hl.HOPS_QUERY: hop_rows() if hops is None else hops},
        },
        "containers": {
            "ok": True,
            "services": {"orchestrator": {"containers": 1, "running": 1}},
            "containers": [{"service": "orchestrator", "cpus": 1.0}, {"service": "redis", "cpus": 0.5}],
            "exec_probes": [
                {"name": hl.CACHE_PROBE, "exit_code": 0, "output": cache + "\n", "error": None},
                {"name": hl.RTT_PROBE, "exit_code": 0, "output": rtt, "error": None},
            ]
            + (
                [{"name": hl.PROFILE_PROBE, "service": "orchestrator", "exit_code": 0, "output": profile,
                  "error": None}]
                if profile is not None
                else []
            ),
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


def hop_rows(planner_ms=12.0, calls=10):
    """The answer of the named query high_latency_hops (postgres evidence)."""
    return {
        "rows": [
            {"arm": "planner-arm", "calls": calls, "p50_ms": planner_ms, "mean_ms": planner_ms},
            {"arm": "coder-arm", "calls": 10, "p50_ms": 20.0, "mean_ms": 21.0},
        ],
        "error": None,
    }


def statuses(result):
    return {item["check"]: item["status"] for item in result["findings"]}


def holding(result):
    return {item["id"] for item in result["scenarios"] if item["holds"]}


def test_healthy_evidence_is_all_ok():
    result = hl.diagnose(evidence(), SETTINGS)
    assert set(statuses(result).values()) == {"ok"}, statuses(result)
    assert holding(result) == set()
    assert result["context"]["profile_service"] is None


def test_missing_index_on_a_large_table_is_a_with_concurrent_create():
    diagnosis = hl.diagnose(evidence(drop=("idx_tasks_created_at",)), SETTINGS)
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
    small = hl.diagnose(evidence(drop=("idx_entities_type",), rows=100), SETTINGS)
    assert statuses(small)["db.indexes"] == "warning" and holding(small) == set()
    broken = hl.diagnose(evidence(invalid=("idx_tasks_status",), rows=100), SETTINGS)
    assert holding(broken) == {"A"}
    assert hl.plan(broken, SETTINGS)[0]["change"]["statements"][0] == "REINDEX INDEX CONCURRENTLY idx_tasks_status"


def test_slow_statements_on_a_table_missing_its_index_point_at_a():
    slow = [{"query": "SELECT count(*) FROM tasks WHERE created_at > now() - $1", "mean_ms": 150.0, "calls": 50}]
    result = hl.diagnose(evidence(drop=("idx_tasks_created_at",), statements=slow), SETTINGS)
    found = {item["check"]: item for item in result["findings"]}
    assert found["db.slow_statements"]["status"] == "warning" and found["db.slow_statements"]["scenario"] == "A"


def test_response_cache_off_is_b_and_a_disruptive_recreate():
    diagnosis = hl.diagnose(evidence(cache="false", cache_file="false"), SETTINGS)
    assert holding(diagnosis) == {"B"}
    waiting = hl.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"]) for a in waiting] == [("high_latency.B.enable_response_cache", "awaiting_approval")]
    approved = hl.plan(diagnosis, dict(SETTINGS, approve=True))[0]
    assert approved["change"]["keys"] == {"RESPONSE_CACHE_ENABLED": {"old": "false", "new": "true"}}
    assert approved["resource"] == "compose:orchestrator"


def test_cache_unset_is_not_set_never_enabled_and_file_only_off_warns():
    # issue 14: a switch the application does not set is "not set" (its own default, unknown to octoctl), a warning
    # that prevention sets explicitly, never counted as "enabled"
    unset = {i["check"]: i for i in hl.diagnose(evidence(cache=""), SETTINGS)["findings"]}["llm.response_cache"]
    assert (unset["status"], unset["observed"]) == ("warning", "not set")
    assert statuses(hl.diagnose(evidence(cache_file="false"), SETTINGS))["llm.response_cache"] == "warning"


def test_slow_llm_is_reported():
    diagnosis = hl.diagnose(evidence(llm=4.0), SETTINGS)
    assert holding(diagnosis) == {"B"}
    assert [(a["id"], a["status"]) for a in hl.plan(diagnosis, SETTINGS)] == [
        ("high_latency.B.report_llm_latency", "report")
    ]


def test_cpu_contention_scales_out_bounded_and_reports_otherwise():
    diagnosis = hl.diagnose(evidence(cpu=0.97), SETTINGS)
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
    row = hl.diagnose(scaled, SETTINGS)["findings"][5]["evidence"]["busiest"][0]
    assert (row["service"], row["limit_cores"], row["ratio"]) == ("orchestrator", 1.5, 0.3333)
    unlimited = copy.deepcopy(scaled)
    unlimited["containers"]["containers"][1]["cpus"] = None
    row = hl.diagnose(unlimited, SETTINGS)["findings"][5]["evidence"]["busiest"]
    assert {r["service"]: r["ratio"] for r in row}["orchestrator"] is None


def test_slow_hop_is_d_with_the_caller_to_profile():
    result = hl.diagnose(evidence(hops=hop_rows(planner_ms=512.0)), SETTINGS)
    assert holding(result) == {"D"}
    found = {item["check"]: item for item in result["findings"]}
    slow = [row for row in found["network.hops"]["evidence"]["hops"] if row["slow"]]
    assert [(r["to"], r["overhead_ms"], r["tcp_rtt_ms"]) for r in slow] == [("planner-arm", 510.0, 2.0)]
    assert result["context"]["profile_service"] == "orchestrator"
    with_profile = hl.diagnose(evidence(hops=hop_rows(planner_ms=512.0), profile="Thread 1"), SETTINGS)
    assert {i["check"]: i for i in with_profile["findings"]}["network.hops"]["evidence"]["profile"]["output"]
    actions = hl.plan(result, SETTINGS)
    assert [(a["id"], a["status"]) for a in actions] == [("high_latency.D.report_slow_hop", "report")]


def test_too_few_calls_or_a_failed_probe_are_not_a_slow_hop():
    assert statuses(hl.diagnose(evidence(hops=hop_rows(planner_ms=900.0, calls=1)), SETTINGS))["network.hops"] == "ok"
    failed = hl.diagnose(evidence(hops={"rows": None, "error": {"kind": "auth", "message": "no"}}), SETTINGS)
    hop = {i["check"]: i for i in failed["findings"]}["network.hops"]
    assert hop["status"] == "unknown" and hop["error"]["kind"] == "auth"


def test_slow_endpoint_names_the_scenario_that_explains_it():
    result = hl.diagnose(evidence(p95=7.5, cache="false"), SETTINGS)
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


def run_of(phase, platform="compose", inventory=None, **overrides):
    """A run as the procedure_run lookup builds it, from the role's defaults."""
    return {
        "procedures": ["high_latency"],
        # the lab's deployment, described as the procedure_run lookup describes it
        "context": {"platform": platform, "phase": phase,
                    "inventory": describe(inventory or deployments.inventory("lab"), role_settings("_common"))},
        "settings": {"high_latency": role_settings("high_latency", {**OVERRIDES, **overrides})},
    }


def test_the_flow_filters_judge_it():
    filters = FilterModule().filters()
    state = filters["procedure_judgement"](evidence(), run_of("resolve"))
    assert state["high_latency"]["actions"] == [] and state["_followup"] == {}
    assert set(statuses(state["high_latency"]["diagnosis"]).values()) == {"ok"}
    assert filters["procedure_judgement"](evidence(), run_of("prevent"))["high_latency"]["prevention"]["findings"]


def test_needs_are_built_from_the_settings_and_the_inventory():
    inventory = {"services": {"orchestrator": {"port": 8000, "probes": {"db_pool": "/health"}},
                              "planner-arm": {"port": 8100}, "coder-arm": {"port": 8102}, "redis": {"port": 6379}},
                 "postgres": {"schema": {"hop_duration_key": "duration_ms"}}}  # the lab's hop round trips
    context = Context(platform="compose", phase="diagnose", inventory=describe(inventory, role_settings("_common")))
    settings = hl.PROCEDURE.settings(role_settings("high_latency", {"prometheus_window": "30s",
                                                                   "env_file": "/state/lab.env"}), context)
    needs = hl.PROCEDURE.needs(settings, context)
    assert set(needs) == {"prometheus", "postgres", "http", "containers", "logs"}
    p95 = needs["prometheus"]["queries"][hl.Q_P95]
    assert "[30s]" in p95 and 'endpoint!="/metrics"' in p95
    for query in needs["prometheus"]["queries"].values():  # PromQL: an aggregation's argument is parenthesised
        assert not re.search(r"\b(sum|max|min|avg|count) by \([^)]*\) [^(]", query), query
    hop = needs["postgres"]["queries"][hl.HOPS_QUERY]
    assert hop["params"] == {"window": 300, "sample": 10} and "%(window)s" in hop["sql"] and "action_log" in hop["sql"]
    assert needs["postgres"]["tables"] == ["tasks", "entities"] and needs["postgres"]["statements"] == 10
    rtt = {p["name"]: p for p in needs["containers"]["exec_probes"]}[hl.RTT_PROBE]["cmd"]
    assert rtt.startswith("for t in planner-arm:8100 coder-arm:8102; do") and '%{time_total}\\n' in rtt
    assert needs["logs"]["sources"][0]["path"] == "/state/lab.env"
    # without an env file nothing reads it; on Kubernetes the API replaces Docker and the queries select the namespace
    assert "logs" not in hl.PROCEDURE.needs(dict(settings, env_file=""), context)
    k8s = procedure_settings("high_latency", platform="kubernetes", inventory=deployments.inventory("kubernetes"))
    k8s_needs = hl.PROCEDURE.needs(k8s, Context(platform="kubernetes", inventory={"k8s": {"namespace": "octollm"}}))
    assert set(k8s_needs) == {"prometheus", "postgres", "http", "kubernetes"}
    assert 'namespace="octollm"' in k8s_needs["prometheus"]["queries"][hl.Q_CPU]
    assert k8s_needs["kubernetes"]["objects"]["high_latency_configmap"]["name"] == "octollm-config"


def test_the_profile_is_a_followup_of_a_judgement_that_names_a_slow_service():
    context = Context(platform="compose", phase="diagnose")
    slow = hl.diagnose(evidence(hops=hop_rows(planner_ms=512.0)), SETTINGS)
    more = hl.PROCEDURE.followup(slow, SETTINGS, context)
    probe = more["containers"]["exec_probes"][0]
    assert more["containers"]["services"] == ["orchestrator"]
    assert (probe["name"], probe["service"], probe["attempts"]) == (hl.PROFILE_PROBE, "orchestrator", 3)
    assert probe["cmd"] == ["py-spy", "dump", "--pid", "1", "--nonblocking"]
    # judged again with the profile in the evidence: attached, and nothing more asked
    profiled = hl.diagnose(evidence(hops=hop_rows(planner_ms=512.0), profile="Thread 1 (idle)"), SETTINGS)
    hop = {i["check"]: i for i in profiled["findings"]}["network.hops"]
    assert hop["evidence"]["profile"] == {"service": "orchestrator", "tool": "py-spy dump --nonblocking",
                                          "output": "Thread 1 (idle)", "error": None}
    assert hl.PROCEDURE.followup(profiled, SETTINGS, context) == {}
    # a healthy judgement, profiling switched off, a service py-spy cannot read, or Kubernetes: no profile
    assert hl.PROCEDURE.followup(hl.diagnose(evidence(), SETTINGS), SETTINGS, context) == {}
    assert hl.PROCEDURE.followup(slow, dict(SETTINGS, profile=False), context) == {}
    assert hl.PROCEDURE.followup(slow, dict(SETTINGS, profile_services=["planner-arm"]), context) == {}
    assert hl.PROCEDURE.followup(slow, SETTINGS, Context(platform="kubernetes")) == {}
    # the shared flow asks for it after its first judgement
    assert flow.judge(evidence(hops=hop_rows(planner_ms=512.0)), run_of("diagnose"))["_followup"] == {
        "high_latency": more}


def test_the_verification_after_a_fix_takes_the_profile_again():
    """A fix applied while the hop is still slow: the judgement of the fresh evidence names the caller again, so the
    verification gathers its profile too (as the first judgement did)."""
    ev = evidence(cache="false", cache_file="false", hops=hop_rows(planner_ms=512.0))
    run = run_of("resolve", approve=True)
    run["context"]["approve"] = True
    state = flow.judge(ev, run)
    cache = {a["id"]: a for a in state["high_latency"]["actions"]}["high_latency.B.enable_response_cache"]
    assert cache["status"] == "planned"
    applied = {cache["id"]: {"status": "applied", "outcome": "done"}}
    fresh = evidence(hops=hop_rows(planner_ms=512.0))
    needs = flow.verification_followup(fresh, run, state, applied)
    assert needs["high_latency"]["containers"]["exec_probes"][0]["name"] == hl.PROFILE_PROBE
    assert flow.verification_followup(fresh, run, state, {}) == {}  # nothing applied
    assert flow.verification_followup(evidence(), run, state, applied) == {}  # healthy after the fix
    report = flow.report(evidence(hops=hop_rows(planner_ms=512.0), profile="Thread 1"), run, state, applied)
    hop = {i["check"]: i for i in report["high_latency"]["verification"]["findings"]}["network.hops"]
    assert hop["status"] == "problem" and hop["evidence"]["profile"]["output"] == "Thread 1"


def test_hops_come_from_the_postgres_named_query():
    assert hl.hops_answer(evidence())["rows"][0]["arm"] == "planner-arm"
    gone = evidence()
    gone["postgres"] = {"ok": False, "error": {"kind": "unreachable", "message": "refused"}}
    assert hl.hops_answer(gone) == {"error": {"kind": "unreachable", "message": "refused"}}
    missing = evidence()
    del missing["postgres"]["queries"]
    missing["postgres"]["probe_errors"] = {"queries": {"kind": "timeout", "message": "deadline"}}
    assert hl.hops_answer(missing)["error"]["kind"] == "timeout"


def test_the_postgres_collector_runs_named_queries_read_only_bound_and_redacted():
    """stack_evidence's postgres option ``queries``: each one SELECT wrapped as a bounded subquery whose rows come
    back as JSON, its parameters bound (never formatted in), text PII-masked, one failure leaving the others."""
    from ansible_collections.octollm.remediation.plugins.module_utils.collector_postgres import PostgresCollector

    executed = []

    class Cursor:
        def execute(self, sql, params=None):
            executed.append((sql, params))
            if "broken" in sql:
                raise RuntimeError('relation "broken" does not exist')

        def fetchone(self):
            return ([{"arm": "planner-arm", "who": "mail bob@example.com", "p50_ms": 505.2}],)

    collector = PostgresCollector({
        "queries": {hl.HOPS_QUERY: {"sql": hl.HOPS_SQL + ";", "params": {"window": 300, "sample": 10}},
                    "other_broken": {"sql": "SELECT * FROM broken"}, "other_empty": {}},
        "query_rows": 5, "redact": ["email"]})
    collector._redactions = {}
    answers = collector._queries(Cursor())
    assert answers[hl.HOPS_QUERY]["error"] is None
    assert answers[hl.HOPS_QUERY]["rows"] == [{"arm": "planner-arm", "who": "mail [REDACTED:email]", "p50_ms": 505.2}]
    sql, params = executed[0]
    assert params == {"window": 300, "sample": 10} and "%(window)s" in sql and not sql.rstrip().endswith(";)")
    assert sql.startswith("SELECT coalesce(json_agg(row_to_json(q)), '[]') FROM (SELECT * FROM (SELECT arm")
    assert sql.endswith(") s LIMIT 5) q")
    assert answers["other_broken"]["rows"] is None and answers["other_broken"]["error"]["kind"] == "other"
    assert answers["other_empty"]["error"]["message"] == "query other_empty has no sql"


def test_rtt_output_parses():
    assert hl.parse_rtt("planner-arm:8100 0.0035\ncoder-arm:8102 failed\n") == {"planner-arm": 3.5}


def test_every_action_fits_octoctls_result_model():
    from octoctl.models import Action

    diagnosis = hl.diagnose(evidence(drop=("idx_tasks_created_at",), cpu=0.97, cache="false", cache_file="false"),
                            SETTINGS)
    actions = hl.plan(diagnosis, dict(SETTINGS, approve=True))
    assert {a["scenario"] for a in actions} >= {"A", "B", "C"}
    for item in actions:
        Action.model_validate({k: v for k, v in item.items() if not k.startswith("_")})
