"""database_connections, data_corruption, task_routing and high_latency on a deployment laid out differently from the
seed (issue 14; docs/deployment.md): settings under other names with the database as one URL, metrics with a prefix,
none of the optional probes, another schema (search path, table names, task status values), cAdvisor's container
labels. Only the seed's interfaces are required: a probe not offered is unknown ``not_offered`` (no escalation, no
exit status of its own), a setting not set is "not set", a metric without series is unknown, a schema that does not
match is unknown naming what is missing. Built evidence, no lab; the last tests run the collector and the SQL octoctl
writes on a throwaway PostgreSQL holding the renamed schema (skipped where the server binaries are missing)."""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import deployments
import pytest
import test_database_connections_plugins as dbc_tests
import test_high_latency_plugins as hl_tests
import test_task_routing_plugins as tr_tests
from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption as dc
from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections as dbc
from ansible_collections.octollm.remediation.plugins.plugin_utils import high_latency as hl
from ansible_collections.octollm.remediation.plugins.plugin_utils import results
from ansible_collections.octollm.remediation.plugins.plugin_utils import task_routing as tr
from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import NOT_OFFERED, describe
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings

from octoctl.exitstatus import judge_procedure
from octoctl.models import ProcedureResult

RENAMED = deployments.renamed()


def context(inventory: dict[str, Any] = RENAMED, platform: str = "compose") -> Context:
    """The run's context as the procedure_run lookup builds it (the inventory described over the seed's names)."""
    return Context(platform=platform, phase="diagnose", inventory=describe(inventory, role_settings("_common")))


def by_check(findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["check"]: item for item in findings}


def not_offered(item: dict[str, Any]) -> bool:
    return item["status"] == "unknown" and (item.get("error") or {}).get("kind") == NOT_OFFERED


def exit_status(procedure: str, diagnosis: dict[str, Any]) -> int:
    """octoctl's exit status of a diagnosis (the run report's contract, validated)."""
    data = results.procedure_result(procedure, "compose", "diagnose", diagnosis["findings"], diagnosis["scenarios"],
                                    None, None, None, diagnosis["escalation"])
    return judge_procedure(ProcedureResult.model_validate(data)).exit_code


# --- database_connections ---------------------------------------------------------------------------------
DBC = procedure_settings("database_connections", dbc_tests.OVERRIDES, inventory=RENAMED)


def renamed_dbc_evidence(env: dict[str, str] | None = None, target: str = "APP_DATABASE_URL db.internal 5433",
                         **changes: Any) -> dict[str, Any]:
    """The lab's evidence as this deployment gives it: /health without pool figures, the env file and the exec
    probe with its own names."""
    ev = dbc_tests.evidence(**changes)
    body = ev["http"]["probes"][dbc.HEALTH_PROBE]["body"]
    body["checks"].pop("db_pool")
    values = env if env is not None else {"APP_DB_POOL": "5", "APP_DB_OVERFLOW": "5"}
    ev["logs"]["sources"][dbc.ENV_SOURCE]["lines"] = [{"text": f"{k}={v}"} for k, v in values.items()]
    probe = ev["containers"]["exec_probes"][0]
    probe["output"] = "".join(f"{k}={v}\n" for k, v in values.items()) + f"{dbc.TARGET_MARK} {target}\n"
    return ev


def test_database_connections_reads_the_deployments_setting_names() -> None:
    need = dbc.PROCEDURE.needs(DBC, context())
    # the pool settings under their names, in the env file and in the container; no pool-figures probe
    assert need["logs"]["sources"][0]["pattern"] == "^(APP_DB_POOL|APP_DB_OVERFLOW)="
    assert [p["name"] for p in need["http"]["probes"]] == [dbc.HEALTH_PROBE]
    cmd = need["containers"]["exec_probes"][0]["cmd"]
    assert "for k in APP_DB_POOL APP_DB_OVERFLOW;" in cmd and "printenv APP_DATABASE_URL" in cmd
    # the deployment has no host/port settings: the seed's POSTGRES_HOST is never read
    assert "POSTGRES_HOST" not in cmd and "DB_POOL_SIZE" not in cmd


def test_pool_figures_not_offered_are_not_offered_never_a_silent_ok() -> None:
    diagnosis = dbc.diagnose(renamed_dbc_evidence(), DBC)
    pool = by_check(diagnosis["findings"])["app.pool"]
    assert not_offered(pool) and "checks.db_pool" in pool["error"]["message"]
    assert pool["evidence"]["env"] == {"APP_DB_POOL": "5", "APP_DB_OVERFLOW": "5"}
    assert {f["status"] for f in diagnosis["findings"] if f is not pool} == {"ok"}
    assert diagnosis["escalation"]["level"] is None and exit_status("database_connections", diagnosis) == 0
    # the lab's /health answer would be judged: the deployment that offers the probe gets a verdict
    lab = dbc.diagnose(dbc_tests.evidence(), dbc_tests.SETTINGS)
    assert by_check(lab["findings"])["app.pool"]["status"] == "ok"


def test_an_exhausted_pool_without_figures_is_read_from_the_log_and_raised_under_its_names() -> None:
    ev = renamed_dbc_evidence()
    ev["containers"]["logs"]["orchestrator"]["pattern_counts"][dbc.POOL_LOG_PATTERN] = 4
    diagnosis = dbc.diagnose(ev, DBC)
    assert by_check(diagnosis["findings"])["app.pool"]["status"] == "problem"
    [raise_pool] = dbc.plan(diagnosis, dict(DBC, approve=True))
    assert raise_pool["id"] == "database_connections.A.raise_pool"
    assert set(raise_pool["change"]["keys"]) == {"APP_DB_POOL", "APP_DB_OVERFLOW"}


def test_a_pool_setting_that_is_not_set_is_not_set_and_nothing_is_guessed() -> None:
    ev = renamed_dbc_evidence(env={"APP_DB_POOL": "5"})
    ev["containers"]["logs"]["orchestrator"]["pattern_counts"][dbc.POOL_LOG_PATTERN] = 4
    diagnosis = dbc.diagnose(ev, DBC)
    assert by_check(diagnosis["findings"])["app.pool"]["evidence"]["env"]["APP_DB_OVERFLOW"] == "not set"
    [report] = dbc.plan(diagnosis, dict(DBC, approve=True))
    assert report["status"] == "report" and "APP_DB_OVERFLOW is not set" in report["outcome"]
    # prevention: the pool's size from its settings when no figures are offered, not offered when one is not set
    fits = by_check(dbc.prevention(renamed_dbc_evidence(), DBC)["findings"])["prevent.app.pool_limits"]
    assert fits["status"] == "ok" and fits["evidence"]["pool_source"] == "settings"
    unknown = by_check(dbc.prevention(ev, DBC)["findings"])["prevent.app.pool_limits"]
    assert not_offered(unknown) and "APP_DB_OVERFLOW=not set" in unknown["error"]["message"]


def test_the_tcp_probe_names_the_address_and_the_setting_it_came_from() -> None:
    diagnosis = dbc.diagnose(renamed_dbc_evidence(nc_ok=False), DBC)
    link = by_check(diagnosis["findings"])["app.connectivity"]
    assert link["status"] == "problem" and link["scenario"] == "D"
    assert link["evidence"]["database_address"] == {"setting": "APP_DATABASE_URL", "host": "db.internal",
                                                    "port": "5433"}
    assert "db.internal:5433 (APP_DATABASE_URL)" in link["observed"]


def test_on_kubernetes_the_pool_settings_are_read_under_their_names() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections_kubernetes as dck

    s = procedure_settings("database_connections", platform="kubernetes", inventory=RENAMED)
    container = {"name": s["k8s_app_container"], "envFrom": [{"configMapRef": {"name": s["k8s_pool_configmap"]}}],
                 "env": [{"name": "APP_DB_OVERFLOW", "value": "3"}]}
    facts = {"configmap": {"data": {"APP_DB_POOL": "7", "DB_POOL_SIZE": "99"}},
             "app_workload": {"spec": {"template": {"spec": {"containers": [container]}}}}}
    source = dck.pool_source(facts, s)
    assert source["values"] == {"APP_DB_POOL": "7", "APP_DB_OVERFLOW": "3"}
    assert source["overrides"] == {"APP_DB_OVERFLOW": "3"}


# --- task_routing ------------------------------------------------------------------------------------------
TR = procedure_settings("task_routing", {"arms": tr_tests.ARM_PORTS}, inventory=RENAMED)


def without_optional_probes(ev: dict[str, Any]) -> dict[str, Any]:
    ev = copy.deepcopy(ev)
    for name in ("task_routing_registry", "task_routing_score"):
        ev["http"]["probes"].pop(name)
    return ev


def test_task_routing_asks_only_for_the_seeds_interfaces() -> None:
    need = tr.PROCEDURE.needs(TR, context())
    paths = {(p["service"], p["path"]) for p in need["http"]["probes"]}
    assert ("orchestrator", "/api/v1/arms") not in paths and ("orchestrator", "/api/v1/route/score") not in paths
    assert {path for _, path in paths} == {"/health", "/capabilities"}
    assert need["postgres"]["schema"]["tables"]["tasks"] == "jobs"
    assert need["postgres"]["schema"]["task_statuses"]["pending"] == "queued"


def test_routing_probes_not_offered_are_never_a_routing_problem() -> None:
    diagnosis = tr.diagnose(without_optional_probes(tr_tests.evidence()), TR)
    found = by_check(diagnosis["findings"])
    for check in ("routing.scores", "arms.registered", "arms.capabilities"):
        assert not_offered(found[check]), found[check]
    assert {item["id"]: item["holds"] for item in diagnosis["scenarios"]}["B"] is False
    assert tr.plan(diagnosis, TR) == [] and diagnosis["escalation"]["level"] is None
    assert exit_status("task_routing", diagnosis) == 0
    prevention = by_check(tr.prevention(without_optional_probes(tr_tests.evidence()), TR)["findings"])
    assert not_offered(prevention["prevent.arms.registration"])
    assert not_offered(prevention["prevent.routing.default_arm"])


def test_strict_constraints_are_matched_on_the_arms_own_capabilities() -> None:
    stuck = tr_tests.task("t-1", ["must use judge-arm", "prefer planner-arm"], "no arm satisfies the constraints")
    diagnosis = tr.diagnose(without_optional_probes(tr_tests.evidence(stuck=[stuck])), TR)
    assert by_check(diagnosis["findings"])["tasks.stuck_pending"]["scenario"] == "D"
    [requeue] = tr.plan(diagnosis, dict(TR, approve=True))
    # the re-queue writes the deployment's tables and status values
    assert "UPDATE jobs t SET status = 'aborted'" in requeue["change"]["sql"]
    assert "INSERT INTO job_events " in requeue["change"]["sql"]
    assert "FROM jobs t JOIN" in requeue["change"]["_select_sql"]


def test_arms_restarted_wait_on_the_registry_only_where_it_is_offered() -> None:
    down = tr.diagnose(without_optional_probes(tr_tests.evidence(down=["judge-arm"])), TR)
    [restart] = tr.plan(down, dict(TR, approve=True))
    assert restart["change"]["_registry_url"] is None and restart["change"]["_health_paths"] == {"judge-arm": "/health"}
    lab = tr.plan(tr.diagnose(tr_tests.evidence(down=["judge-arm"]), tr_tests.SETTINGS), dict(tr_tests.SETTINGS,
                                                                                                approve=True))
    assert lab[0]["change"]["_registry_url"].endswith("/api/v1/arms")


# --- high_latency ------------------------------------------------------------------------------------------
HL = procedure_settings("high_latency", hl_tests.OVERRIDES, inventory=RENAMED)


def test_high_latency_queries_the_deployments_metric_names_and_container_labels() -> None:
    queries = hl.PROCEDURE.needs(HL, context())["prometheus"]["queries"]
    p95 = queries[hl.Q_P95]
    # the orchestrator's prefixed histogram and the arms' seed-named one, each under its own name
    assert "orchestrator_http_request_duration_seconds_bucket{" in p95 and " or " in p95
    assert "rate(http_request_duration_seconds_bucket{" in p95
    assert "orchestrator_llm_api_duration_seconds_bucket" in queries[hl.Q_LLM_P95]
    assert queries[hl.Q_P95_SERIES].startswith("count({__name__=~")
    # cAdvisor's Compose labels, this deployment's project only, relabelled to the service the judgement reads
    cpu = queries[hl.Q_CPU]
    assert 'container_cpu_usage_seconds_total{container_label_com_docker_compose_project="llmstack"}' in cpu
    assert 'label_replace(' in cpu and '"container_label_com_docker_compose_service"' in cpu
    # the lab keeps its own exporter's labels
    lab = hl.queries(hl_tests.SETTINGS)
    assert lab[hl.Q_CPU] == (
        'sum by (compose_service) (rate(container_cpu_usage_seconds_total{compose_project="octollm"}[1m]))')


def test_a_latency_metric_without_series_is_unknown_never_a_silent_ok() -> None:
    ev = hl_tests.evidence()
    queries = ev["prometheus"]["queries"]
    queries[hl.Q_P95] = hl_tests.query([])
    queries[hl.Q_LLM_P95] = hl_tests.query([])
    queries[hl.Q_P95_SERIES] = hl_tests.query([])  # count() of nothing: no series at all
    queries[hl.Q_LLM_SERIES] = hl_tests.query([({}, 3.0)])  # series, but no calls in the window
    found = by_check(hl.diagnose(ev, HL)["findings"])
    p95 = found["latency.p95"]
    assert p95["status"] == "unknown" and "orchestrator_http_request_duration_seconds" in p95["error"]["message"]
    assert (found["llm.latency"]["status"], found["llm.latency"]["observed"]) == ("ok", "no LLM calls")


def test_the_cache_switch_has_the_deployments_name_and_unset_is_not_set() -> None:
    need = hl.PROCEDURE.needs(HL, context())
    probe = {p["name"]: p for p in need["containers"]["exec_probes"]}[hl.CACHE_PROBE]
    assert probe["cmd"] == "printenv APP_LLM_CACHE"
    ev = hl_tests.evidence(cache="")
    ev["logs"]["sources"][hl.ENV_SOURCE]["lines"] = []
    cache = by_check(hl.diagnose(ev, HL)["findings"])["llm.response_cache"]
    assert (cache["status"], cache["observed"]) == ("warning", "not set")
    # prevention sets it explicitly, under its name
    actions = hl.prevention(ev, HL)["actions"]
    enable = next(a for a in actions if a["id"] == "high_latency.prevent.enable_response_cache")
    assert enable["change"]["keys"] == {"APP_LLM_CACHE": {"old": "not set", "new": "true"}}
    # a deployment without a cache switch: not offered, no probe
    none = procedure_settings("high_latency", hl_tests.OVERRIDES, inventory=deployments.renamed(
        {"orchestrator": dict(deployments.RENAMED_ORCHESTRATOR,
                              settings=dict(deployments.RENAMED_ORCHESTRATOR["settings"], response_cache=None))}))
    assert none["cache_key"] is None
    assert hl.CACHE_PROBE not in {p["name"] for p in hl.PROCEDURE.needs(none, context())["containers"]["exec_probes"]}
    assert not_offered(by_check(hl.diagnose(ev, none)["findings"])["llm.response_cache"])


def test_hop_round_trips_and_pool_figures_not_offered() -> None:
    need = hl.PROCEDURE.needs(HL, context())
    assert "queries" not in need["postgres"] and "http" not in need
    diagnosis = hl.diagnose(hl_tests.evidence(), HL)
    found = by_check(diagnosis["findings"])
    assert not_offered(found["network.hops"])
    assert {f["status"] for f in diagnosis["findings"] if not not_offered(f)} == {"ok"}
    assert diagnosis["escalation"]["level"] is None and exit_status("high_latency", diagnosis) == 0
    assert not_offered(by_check(hl.prevention(hl_tests.evidence(), HL)["findings"])["prevent.app.db_pool"])
    # the lab offers them: its hops query reads action_log.details->>'duration_ms'
    lab = hl.PROCEDURE.needs(hl_tests.SETTINGS, context(deployments.inventory("lab")))
    assert "details->>'duration_ms'" in lab["postgres"]["queries"][hl.HOPS_QUERY]["sql"]


def test_expected_indexes_are_on_the_deployments_tables() -> None:
    need = hl.PROCEDURE.needs(HL, context())
    assert need["postgres"]["tables"] == ["jobs", "kg_entities"]


# --- data_corruption ---------------------------------------------------------------------------------------
DC = procedure_settings("data_corruption", inventory=RENAMED)


def test_data_corruption_puts_the_roles_tables_on_the_deployments() -> None:
    assert DC["backup_tables"] == ["octo.kg_entities", "octo.kg_edges"]
    constraints = {c["name"]: c for c in DC["constraints"]}
    fk = constraints["relationships_from_entity_id_fkey"]
    assert (fk["table"], fk["references"]["table"]) == ("octo.kg_edges", "octo.kg_entities")
    assert constraints["tasks_status_check"]["expression"] == (
        "status IN ('queued', 'in_progress', 'completed', 'failed', 'aborted')")
    # the seed's: as before
    seed = {c["name"]: c for c in procedure_settings("data_corruption", inventory=deployments.inventory("lab"))[
        "constraints"]}
    assert seed["tasks_status_check"]["expression"] == (
        "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')")
    assert dc.PROCEDURE.needs(DC, context())["postgres"]["schema"]["tables"]["relationships"] == "kg_edges"


def test_a_schema_that_does_not_match_is_unknown_with_what_is_missing() -> None:
    ev = {"postgres": {"ok": True, "server": {"database": "octollm"},
                       "integrity": {"tables_missing": [], "columns_missing": ["kg_entities.properties"]}}}
    diagnosis = dc.diagnose(ev, DC)
    assert {f["status"] for f in diagnosis["findings"]} == {"unknown"}
    assert all("column kg_entities.properties" in f["error"]["message"] for f in diagnosis["findings"])
    assert dc.plan(diagnosis, dict(DC, approve=True)) == []


def test_the_repair_runs_on_the_deployments_tables_as_the_plan_shows() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import test_data_corruption_plugins as dc_tests

    ev = dc_tests.corrupt()
    for table, key in (("entities", "kg_entities"), ("relationships", "kg_edges"), ("tasks", "jobs")):
        ev["postgres"]["integrity"]["constraints"][key] = ev["postgres"]["integrity"]["constraints"].pop(table)
    actions = dc.plan(dc.diagnose(ev, DC), dict(DC, approve=True))
    delete = next(a for a in actions if a["id"] == "data_corruption.A.delete_orphans")
    assert delete["change"]["sql"].startswith("DELETE FROM octo.kg_edges d USING (")
    assert "FROM octo.kg_entities e" in delete["change"]["sql"]
    block = dc.repair_queries(actions)[0]
    assert delete["change"]["sql"] in block and "UPDATE octo.kg_entities SET properties" in block


# --- on a throwaway PostgreSQL holding the renamed schema --------------------------------------------------
SCHEMA_SQL = (deployments.REPO / "lab" / "app" / "octollm_lab" / "schema.sql").read_text()


def renamed_schema_sql() -> str:
    """The lab's schema in schema ``octo`` under this deployment's names and status values."""
    text = SCHEMA_SQL
    for old, new in (("relationships", "kg_edges"), ("entities", "kg_entities"), ("action_log", "job_events"),
                     ("tasks", "jobs"), ("'pending'", "'queued'"), ("'running'", "'in_progress'"),
                     ("'cancelled'", "'aborted'")):
        text = text.replace(old, new)
    return "CREATE SCHEMA octo; SET search_path TO octo, public;\n" + text


@pytest.fixture(scope="module")
def renamed_pg():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kubernetes"))
    from postgres_standin import postgres, sql

    with postgres(schema=False) as port:
        sql(port, renamed_schema_sql(),
            "INSERT INTO octo.jobs (task_id, goal, status, created_at, updated_at) VALUES "
            "('j-1', 'Write a Python function', 'queued', now() - interval '10 min', now() - interval '10 min'),"
            "('j-2', 'Plan the steps', 'in_progress', now() - interval '20 min', now() - interval '20 min'),"
            "('j-3', 'Review it', 'completed', now(), now())",
            "INSERT INTO octo.job_events (task_id, action, arm, details, timestamp) VALUES "
            "('j-2', 'executed', 'planner-arm', '{\"duration_ms\": 12.5}', now() - interval '1 minute')",
            "INSERT INTO octo.kg_entities (entity_id, entity_type, properties) VALUES (1, 't', '{}'), (2, 't', '[1]')",
            "INSERT INTO octo.kg_edges (from_entity_id, to_entity_id) VALUES (1, 2), (1, 99)")
        yield port, sql


def collect(port: int, **options: Any) -> dict[str, Any]:
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.octollm.remediation.plugins.module_utils.collectors import COLLECTORS
    from ansible_collections.octollm.remediation.plugins.module_utils.evidence import run_collector

    base = {"host": "127.0.0.1", "port": port, "user": "postgres", "admin_user": "postgres", "connections": False,
            "ping": False}
    validated = ArgumentSpecValidator(COLLECTORS["postgres"].OPTIONS).validate(dict(base, **options))
    return run_collector("postgres", validated.validated_parameters, time.monotonic() + 20)


def test_the_collector_reads_tasks_and_integrity_through_the_schema(renamed_pg) -> None:
    port, _ = renamed_pg
    schema = context().schema
    answer = collect(port, tasks=True, integrity=True, amcheck=False, schema=schema, stuck_after_seconds=60,
                     running_after_seconds=60)
    assert answer["ok"], answer
    tasks, integrity = answer["tasks"], answer["integrity"]
    assert (tasks["stuck_count"], tasks["running_count"]) == (1, 1), answer.get("probe_errors")
    assert tasks["by_status"] == {"queued": 1, "in_progress": 1, "completed": 1}
    assert (integrity["orphans_total"], integrity["invalid_properties"]) == (1, 1)
    assert set(integrity["constraints"]) == {"jobs", "kg_entities", "kg_edges"}
    # the seed's names find nothing here: a schema that does not match, named
    seed = collect(port, integrity=True)
    assert seed["integrity"]["tables_missing"] == ["tasks", "entities", "relationships"]
    found = by_check(dc.diagnose({"postgres": seed}, procedure_settings("data_corruption"))["findings"])
    assert "table tasks, table entities, table relationships" in found["data.orphaned_relationships"]["error"][
        "message"]


def test_a_missing_column_is_a_schema_that_does_not_match(renamed_pg) -> None:
    port, sql = renamed_pg
    sql(port, "ALTER TABLE octo.kg_entities RENAME COLUMN properties TO props")
    try:
        answer = collect(port, integrity=True, schema=context().schema)
        assert answer["integrity"]["columns_missing"] == ["kg_entities.properties"]
    finally:
        sql(port, "ALTER TABLE octo.kg_entities RENAME COLUMN props TO properties")


def test_the_sql_octoctl_writes_runs_on_the_renamed_schema(renamed_pg) -> None:
    """The re-queue, the hops query and the repair as the plans show them, executed (then rolled back)."""
    import psycopg2

    port, _ = renamed_pg
    hops = hl.hops_sql(dict(HL, hop_duration_key="duration_ms"))
    moves = [{"task_id": "j-1", "priority": "high", "status": "queued", "updated_at": None, "new": [],
              "dropped": []}]
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="octollm",
                            options="-c search_path=octo")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT updated_at::text FROM jobs WHERE task_id = 'j-1'")
            moves[0]["updated_at"] = cur.fetchone()[0]
            cur.execute(tr.requeue_select_sql(TR["tables"]), {"moves": json.dumps(moves)})
            assert [row[0] for row in cur.fetchall()] == ["j-1"]
            cur.execute(tr.requeue_sql(TR["tables"], TR["task_statuses"]),
                        {"moves": json.dumps(moves), "submitted": json.dumps([{"task_id": "j-1",
                                                                              "new_task_id": "j-9"}])})
            assert cur.fetchall() == [("j-1",)]
            cur.execute("SELECT status FROM jobs WHERE task_id = 'j-1'")
            assert cur.fetchone()[0] == "aborted"
            cur.execute(hops, {"window": 300, "sample": 10})
            assert cur.fetchall() == [("planner-arm", 1, 12.5, 12.5)]
            cur.execute(dc.repair_block({"orphans": 1, "properties": 1}, {
                "orphans": dc.orphans_delete_sql(dc._sql_tables(DC)),
                "properties": dc.properties_update_sql(dc._sql_tables(DC))}))
            cur.execute(dc.repair_result_sql())
            assert cur.fetchone() == ("1", "1")
    finally:
        conn.rollback()
        conn.close()
