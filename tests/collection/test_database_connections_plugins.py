"""Unit tests of the database_connections judgement (plugin_utils/database_connections.py) on built evidence."""

from __future__ import annotations

import copy

import deployments
from ansible_collections.octollm.remediation.plugins.filter.procedure import FilterModule
from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections as dbc
from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import describe
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings

OVERRIDES = {"env_file": "/state/lab.env", "idle_terminate_after_seconds": 60, "idle_in_transaction_max_seconds": 30}
# the full lab as inventory/lab describes it: the stack's own applications (octollm_postgres.applications), the
# orchestrator's pool figures (probes.db_pool)
INVENTORY = deployments.inventory("lab")
SETTINGS = procedure_settings("database_connections", OVERRIDES, inventory=INVENTORY)


def evidence(
    total=7,
    sessions=None,
    idle_in_tx=None,
    oldest_idle=None,
    pool=None,
    health_pg="ok",
    nc_ok=True,
    ping=None,
    pg_ok=True,
    env=None,
    by_application=None,
):
    pg = {
        "ok": pg_ok,
        "error": None
        if pg_ok
        else {"kind": "auth", "message": "PostgreSQL (postgres): password authentication failed"},
        "rtt_ms": 0.4,
        "server": {"version": "15.18", "uptime_s": 100},
        "connections": {
            "total": total,
            "max_connections": 40,
            "superuser_reserved_connections": 5,
            "reserved_connections": None,
            "by_state": {"idle": total},
            "by_application": by_application
            or [{"application_name": "orchestrator", "count": 5, "states": {"idle": 5}}],
            "waiting_on_locks": 0,
            "idle_in_transaction_count": len(idle_in_tx or []),
            "idle_in_transaction": idle_in_tx or [],
            "oldest_idle": oldest_idle or [],
            "long_running": [],
            "available_to_applications": 35 - total,
        },
        "settings": {"settings": {"idle_in_transaction_session_timeout": {"value": "0", "unit": "ms"}}},
        "ping": ping or {"user": "octollm", "ok": True, "saturated": False, "error": None},
    }
    if not pg_ok:
        pg = {
            "ok": False,
            "error": pg["error"],
            "ping": ping or {"ok": False, "error": {"kind": "auth", "message": "x"}},
        }
    return {
        "postgres": pg,
        "http": {
            "ok": True,
            "probes": {
                dbc.HEALTH_PROBE: {
                    "status": 200 if health_pg == "ok" else 503,
                    "ok": True,
                    "error": None,
                    "body": {
                        "status": "ok",
                        "checks": {"postgres": health_pg, "db_pool": pool or {"in_use": 1, "max": 10, "leaked": 0}},
                    },
                }
            },
        },
        "containers": {
            "ok": True,
            "services": {"orchestrator": {"containers": 1, "running": 1}},
            "exec_probes": [
                {
                    "name": dbc.EXEC_PROBE,
                    "cmd": "nc -z -w 2 postgres 5432",
                    "exit_code": 0 if nc_ok else 1,
                    "ok": nc_ok,
                    "output": "",
                    "error": None,
                }
            ],
            "logs": {"orchestrator": {"pattern_counts": {dbc.POOL_LOG_PATTERN: 0}}},
        },
        "prometheus": {"ok": True, "rules": {"names": ["HighDatabaseConnections", "PostgreSQLDown"], "alerts": {}}},
        "logs": {
            "ok": True,
            "sources": {
                dbc.ENV_SOURCE: {
                    "lines": [
                        {"text": f"{key}={value}"}
                        for key, value in (env or {"DB_POOL_SIZE": "5", "DB_POOL_MAX_OVERFLOW": "5"}).items()
                    ]
                }
            },
        },
    }


def statuses(result):
    return {item["check"]: item["status"] for item in result["findings"]}


def holding(result):
    return {item["id"] for item in result["scenarios"] if item["holds"]}


def test_healthy_evidence_is_all_ok():
    result = dbc.diagnose(evidence(), SETTINGS)
    assert set(statuses(result).values()) == {"ok"}
    assert holding(result) == set()
    assert result["escalation"]["level"] is None


def test_too_many_idle_connections_is_b_and_plans_a_gated_termination():
    old = [
        {"pid": 100 + i, "usename": "octollm", "application_name": "batch-worker", "state_age_s": 120}
        for i in range(30)
    ]
    diagnosis = dbc.diagnose(
        evidence(
            total=36,
            oldest_idle=old,
            ping={
                "ok": False,
                "saturated": True,
                "user": "octollm",
                "error": {"kind": "other", "message": "too many clients"},
            },
        ),
        SETTINGS,
    )
    assert holding(diagnosis) == {"B"}
    assert statuses(diagnosis)["pg.connections"] == "problem"
    actions = dbc.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"]) for a in actions] == [("database_connections.B.terminate_idle", "awaiting_approval")]
    approved = dbc.plan(diagnosis, dict(SETTINGS, approve=True))
    assert approved[0]["status"] == "planned" and approved[0]["change"]["rows"] == 30
    assert approved[0]["change"]["params"]["older_than_s"] == 60
    assert "pg_terminate_backend" in approved[0]["change"]["sql"]


def test_a_superuser_and_the_diagnosis_itself_are_never_terminated():
    old = [
        {"pid": 1, "usename": "postgres", "application_name": "psql", "state_age_s": 999},
        {"pid": 2, "usename": "octollm", "application_name": "octollm-remediation", "state_age_s": 999},
        {"pid": 3, "usename": "octollm", "application_name": "worker", "state_age_s": 10},
    ]
    diagnosis = dbc.diagnose(evidence(total=36, oldest_idle=old), SETTINGS)
    assert diagnosis["context"]["old_idle"] == []
    actions = dbc.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"]) for a in actions] == [("database_connections.B.report_connections", "report")]


def test_b_raises_max_connections_only_when_a_target_is_given_and_nothing_is_idle():
    diagnosis = dbc.diagnose(evidence(total=36), SETTINGS)
    actions = dbc.plan(diagnosis, dict(SETTINGS, max_connections_target=100, approve=True))
    assert [(a["id"], a["change"]["old"], a["change"]["new"], a["disruptive"]) for a in actions] == [
        ("database_connections.B.raise_max_connections", 40, 100, True)
    ]


def test_a_leak_is_c_not_b_and_is_terminated_and_reported():
    leaked = [
        {
            "pid": 200 + i,
            "usename": "octollm",
            "application_name": "batch-worker",
            "state_age_s": 45,
            "query": "SELECT count(*) FROM tasks",
        }
        for i in range(30)
    ]
    refused = {
        "ok": False,
        "saturated": True,
        "user": "octollm",
        "error": {"kind": "other", "message": "remaining connection slots are reserved"},
    }
    diagnosis = dbc.diagnose(
        evidence(total=35, idle_in_tx=leaked, ping=refused, health_pg="error: remaining connection slots are reserved"),
        SETTINGS,
    )
    # the refused logins are the leak's symptom: C holds, not B
    assert holding(diagnosis) == {"C"}
    found = {item["check"]: item for item in diagnosis["findings"]}
    assert found["pg.connections"]["scenario"] == "C"
    actions = dbc.plan(diagnosis, dict(SETTINGS, approve=True))
    assert [(a["id"], a["status"]) for a in actions] == [
        ("database_connections.C.terminate_leaked_batch_worker", "planned"),
        ("database_connections.C.report_leak_batch_worker", "report"),
    ]
    assert actions[0]["change"]["params"] == {"application_name": "batch-worker", "older_than_s": 30}
    assert "then_wait" not in actions[0]["change"]  # no application container in this evidence
    # with the application's container running (it failed its healthcheck while refused), the fix waits until it
    # answers before the verification reads it
    diagnosis["context"]["app_running"] = True
    waits = dbc.plan(diagnosis, dict(SETTINGS, approve=True))[0]
    assert waits["change"]["then_wait"] == ["orchestrator"] and waits["outcome"].endswith("orchestrator is healthy")


def test_few_or_young_idle_in_transaction_sessions_are_no_leak():
    young = [{"pid": 1, "application_name": "orchestrator", "state_age_s": 2}]
    two_old = [{"pid": i, "application_name": "w", "state_age_s": 40} for i in range(2)]
    assert statuses(dbc.diagnose(evidence(idle_in_tx=young), SETTINGS))["pg.idle_in_transaction"] == "ok"
    assert statuses(dbc.diagnose(evidence(idle_in_tx=two_old), SETTINGS))["pg.idle_in_transaction"] == "warning"


def test_a_full_pool_without_leak_is_a_and_the_pool_grows_within_max_connections():
    diagnosis = dbc.diagnose(evidence(pool={"in_use": 10, "max": 10, "leaked": 0}), SETTINGS)
    assert holding(diagnosis) == {"A"}
    action = dbc.plan(diagnosis, dict(SETTINGS, approve=True))[0]
    assert action["id"] == "database_connections.A.raise_pool" and action["disruptive"]
    keys = action["change"]["keys"]
    assert keys == {"DB_POOL_SIZE": {"old": "5", "new": "10"}, "DB_POOL_MAX_OVERFLOW": {"old": "5", "new": "10"}}
    # 40 - 5 reserved - 2 other clients - 5 headroom = 28 per replica: 20 fits
    assert action["change"]["budget_per_replica"] == 28


def test_the_pool_growth_is_bounded_and_reported_when_there_is_no_room():
    ctx = {
        "env": {"DB_POOL_SIZE": "10", "DB_POOL_MAX_OVERFLOW": "10"},
        "replicas": 2,
        "max_connections": 40,
        "reserved": 5,
        "total": 20,
        "by_application": [{"application_name": "orchestrator", "count": 20}],
    }
    size, overflow, new_size, new_overflow, budget = dbc.pool_target(ctx, SETTINGS)
    assert (size, overflow, budget) == (10, 10, 15)
    assert new_size is None and new_overflow is None
    ctx["replicas"] = 1
    _, _, new_size, new_overflow, budget = dbc.pool_target(ctx, SETTINGS)
    assert budget == 30 and new_size + new_overflow <= 30 and new_size + new_overflow > 20


def test_a_pool_full_of_leaked_connections_is_a_leak():
    diagnosis = dbc.diagnose(evidence(pool={"in_use": 10, "max": 10, "leaked": 10}), SETTINGS)
    found = {item["check"]: item for item in diagnosis["findings"]}
    assert found["app.pool"]["scenario"] == "C"
    assert "A" not in holding(diagnosis)


def test_a_partition_is_d_and_a_report():
    diagnosis = dbc.diagnose(
        evidence(health_pg='error: could not translate host name "postgres"', nc_ok=False), SETTINGS
    )
    assert holding(diagnosis) == {"D"}
    actions = dbc.plan(diagnosis, SETTINGS)
    assert [(a["id"], a["status"]) for a in actions] == [("database_connections.D.report_network", "report")]
    assert actions[0]["change"]["dns_failure"] is True


def test_wrong_credentials_are_unknown_auth_never_a_crash():
    result = dbc.diagnose(evidence(pg_ok=False), SETTINGS)
    found = {item["check"]: item for item in result["findings"]}
    assert found["pg.up"]["status"] == "unknown" and found["pg.up"]["error"]["kind"] == "auth"
    assert found["pg.connections"]["status"] == "unknown"
    assert result["escalation"]["level"] == "L1"


def test_prevention_plans_the_timeout_and_reports_missing_rules():
    ev = evidence()
    ev["prometheus"]["rules"]["names"] = ["PostgreSQLDown"]
    result = dbc.prevention(ev, SETTINGS)
    checks = {item["check"]: item["status"] for item in result["findings"]}
    assert checks == {
        "prevent.app.pool_limits": "ok",
        "prevent.pg.idle_in_transaction_timeout": "problem",
        "prevent.prometheus.connection_rule": "problem",
        "prevent.prometheus.down_rule": "ok",
    }
    assert [(a["id"], a["status"], a["disruptive"]) for a in result["actions"]] == [
        ("database_connections.prevent.idle_in_transaction_timeout", "planned", False),
        ("database_connections.prevent.report_connection_rule", "report", False),
    ]


def flow_run(phase, **context):
    # the lab's deployment, described as the procedure_run lookup describes it
    postgres = {"host": "127.0.0.1", "port": 5432, "admin_user": "postgres"}
    inventory = describe(dict(INVENTORY, postgres=postgres), role_settings("_common"))
    return {
        "procedures": ["database_connections"],
        "context": {"platform": "compose", "phase": phase, "inventory": inventory, **context},
        "settings": {"database_connections": role_settings("database_connections", OVERRIDES)},
    }


def test_the_needs_are_built_from_the_settings_and_the_inventory():
    need = dbc.PROCEDURE.needs(SETTINGS, Context(platform="compose", inventory={}))
    assert set(need) == {"postgres", "http", "containers", "prometheus", "logs"}
    assert need["postgres"]["sessions_limit"] == 100 and need["postgres"]["ping"] is True
    assert need["http"]["probes"] == [
        {"name": dbc.HEALTH_PROBE, "service": "orchestrator", "path": "/health", "expect_status": [200, 503]}
    ]
    probe = need["containers"]["exec_probes"][0]
    # the TCP probe tries the address the application's own settings name (the seed's DATABASE_URL, else
    # POSTGRES_HOST/POSTGRES_PORT), else db_host_from_app and the inventory's port; it prints its pool settings
    assert probe["name"] == dbc.EXEC_PROBE and probe["cmd"].endswith('nc -z -w 2 "$h" "$p"')
    for part in ("printenv DATABASE_URL", "printenv POSTGRES_HOST", "printenv POSTGRES_PORT",
                 "h=postgres; p=5432; src=default", "for k in DB_POOL_SIZE DB_POOL_MAX_OVERFLOW;"):
        assert part in probe["cmd"], part
    assert need["containers"]["logs"]["patterns"] == {dbc.POOL_LOG_PATTERN: "database pool exhausted"}
    assert need["logs"]["sources"][0]["path"] == "/state/lab.env"
    # no env file known: the pool settings are not read (the plan reports what it cannot change)
    assert "logs" not in dbc.PROCEDURE.needs(dict(SETTINGS, env_file=""), Context(platform="compose"))


def test_the_flow_filters_judge_plan_and_report():
    filters = FilterModule().filters()
    run = flow_run("resolve")
    assert set(filters["procedure_request"](run)) == {"postgres", "http", "containers", "prometheus", "logs"}
    state = filters["procedure_judgement"](copy.deepcopy(evidence()), run)
    assert state["database_connections"]["actions"] == [] and state["_followup"] == {}
    assert {f["status"] for f in state["database_connections"]["diagnosis"]["findings"]} == {"ok"}
    prevent = flow_run("prevent")
    assert filters["procedure_judgement"](evidence(), prevent)["database_connections"]["prevention"]["findings"]
    # an approved B: terminate_idle is applied by its task file; skip_actions keeps it from running
    old = [{"pid": 100 + i, "usename": "octollm", "application_name": "w", "state_age_s": 120} for i in range(30)]
    approved = flow_run("resolve", approve=True)
    state = filters["procedure_judgement"](evidence(total=36, oldest_idle=old), approved)
    todo = filters["procedure_actions"](state, approved)
    assert [(t["action"]["id"], t["action"]["_apply"]) for t in todo] == [
        ("database_connections.B.terminate_idle", "terminate_sessions")
    ]
    approved["settings"]["database_connections"]["skip_actions"] = ["database_connections.B.terminate_idle"]
    state = filters["procedure_judgement"](evidence(total=36, oldest_idle=old), approved)
    assert state["database_connections"]["actions"][0]["status"] == "skipped"
    assert filters["procedure_actions"](state, approved) == []


def test_durations_parse():
    assert dbc._seconds("5min") == 300 and dbc._seconds("0") == 0 and dbc._seconds("30s") == 30
    assert dbc._seconds("60000") == 60


def test_every_action_fits_octoctls_result_model():
    from octoctl.models import Action

    for scenario in ("A", "B", "C", "D"):
        old = [{"pid": 1, "usename": "octollm", "application_name": "batch-worker", "state_age_s": 600}]
        leak = [{"pid": 2, "usename": "octollm", "application_name": "batch-worker", "state_age_s": 600}] * 3
        diagnosis = dbc.diagnose(evidence(oldest_idle=old, idle_in_tx=leak), SETTINGS)
        for item in dbc.plan(diagnosis, dict(SETTINGS, scenario=scenario, approve=True, max_connections_target=80)):
            Action.model_validate({k: v for k, v in item.items() if not k.startswith("_")})


# --- issue 15: a stopped PostgreSQL is started; an outage overrides the idle-age rule -------------------------
def container(service, **extra):
    item = {"service": service, "name": f"octollm-{service}-1", "running": True, "state": "running",
            "restarting": False, "health": "healthy", "exit_code": 0, "oom_killed": False}
    item.update(extra)
    return item


def stopped_postgres_evidence():
    """PostgreSQL's container exited (the lab's `crash postgres`): the probes cannot connect, the orchestrator runs
    but fails its healthcheck, the arms are healthy."""
    data = evidence()
    unreachable = {"kind": "unreachable", "message": "PostgreSQL (postgres): connection refused", "source": "postgres"}
    # the evidence module names the kind that failed; the ping's own error (inside the kind's answer) does not
    ping_error = {"kind": "unreachable", "message": "PostgreSQL (octollm): connection refused"}
    data["postgres"] = {"ok": False, "error": unreachable,
                        "ping": {"user": "octollm", "ok": False, "saturated": False, "error": ping_error}}
    data["http"]["probes"][dbc.HEALTH_PROBE].update(status=503, body={"status": "degraded", "checks": {
        "postgres": "error: connection refused", "db_pool": {"in_use": 0, "max": 10, "leaked": 0}}})
    data["containers"]["exec_probes"][0].update(ok=False, exit_code=1)
    data["containers"]["containers"] = [
        container("orchestrator", health="unhealthy"),
        container("planner-arm"),
        container("postgres", running=False, state="exited", health="unhealthy", exit_code=137),
        container("redis"),
    ]
    return data


def test_a_stopped_postgres_is_started_without_approval_before_any_scenario():
    diagnosis = dbc.diagnose(stopped_postgres_evidence(), SETTINGS)
    found = {item["check"]: item for item in diagnosis["findings"]}
    running = found["pg.running"]
    assert running["status"] == "problem" and running["observed"] == "exited (exit code 137)"
    assert running["evidence"]["stopped"] is True and running["scenario"] is None
    assert holding(diagnosis) == set()  # no scenario can be judged while it is down
    # a PostgreSQL that does not answer is the component's problem (exit 1 until started), never octoctl's
    # environment (exit 3): every unknown finding names its source
    assert {f["error"]["source"] for f in diagnosis["findings"] if f["status"] == "unknown"} == {"postgres"}
    # starting a database that is down loses nothing: planned without approval, the orchestrator waited for after
    [start] = dbc.plan(diagnosis, SETTINGS)
    assert (start["id"], start["status"], start["disruptive"], start["resource"]) == (
        "database_connections.start_postgres", "planned", False, "compose:postgres")
    assert start["change"] == {"service": "postgres", "container": "octollm-postgres-1", "op": "up (no recreate)",
                               "state": "exited (exit code 137)", "then_wait": ["orchestrator"],
                               "then_wait_containers": ["octollm-orchestrator-1"]}
    assert start["_apply"] == "start_database"
    # a dry run lists the same start; skip_actions keeps it from running
    assert dbc.plan(diagnosis, dict(SETTINGS, dry_run=True))[0]["change"] == start["change"]


def test_postgres_running_restarting_or_external_is_not_started():
    healthy = evidence()
    healthy["containers"]["containers"] = [container("postgres"), container("orchestrator")]
    diagnosis = dbc.diagnose(healthy, SETTINGS)
    assert statuses(diagnosis)["pg.running"] == "ok" and dbc.plan(diagnosis, SETTINGS) == []
    # Docker restarts it (a crash loop): a problem, but no start (service_unavailable's restart, with approval)
    looping = stopped_postgres_evidence()
    looping["containers"]["containers"][2].update(state="restarting", restarting=True)
    diagnosis = dbc.diagnose(looping, SETTINGS)
    assert statuses(diagnosis)["pg.running"] == "problem" and not diagnosis["context"]["db_stopped"]
    assert [a["id"] for a in dbc.plan(diagnosis, SETTINGS)] == []
    # an external PostgreSQL (no container of the project) that answers is running
    external = evidence()
    external["containers"]["containers"] = [container("orchestrator")]
    assert statuses(dbc.diagnose(external, SETTINGS))["pg.running"] == "ok"


def test_the_verification_after_the_start_reads_the_running_postgres():
    diagnosis = dbc.diagnose(stopped_postgres_evidence(), SETTINGS)
    after = evidence()
    after["containers"]["containers"] = [container("orchestrator"), container("postgres")]
    verified = dbc.diagnose(after, SETTINGS, previous=diagnosis["findings"], applied=(None,))
    assert set(statuses(verified).values()) == {"ok"}


def outage(by_application, oldest_idle=(), total=35):
    refused = {"ok": False, "saturated": True, "user": "octollm",
               "error": {"kind": "other", "message": "PostgreSQL (octollm): FATAL:  sorry, too many clients already"}}
    return evidence(total=total, ping=refused, by_application=by_application, oldest_idle=list(oldest_idle),
                    health_pg="error: FATAL:  remaining connection slots are reserved for non-replication "
                              "superuser connections")


BATCH = {"application_name": "batch-worker", "count": 28, "states": {"idle": 28}}
OWN = {"application_name": "orchestrator", "count": 5, "states": {"idle": 5}}


def test_refused_logins_offer_the_top_idle_clients_sessions_whatever_their_age():
    # batch-worker holds 28 sessions a few seconds old, far under the 60 s threshold: the outage overrides it
    young = [{"pid": 300 + i, "usename": "octollm", "application_name": "batch-worker", "state_age_s": 4}
             for i in range(28)]
    diagnosis = dbc.diagnose(outage([BATCH, OWN], young), SETTINGS)
    assert holding(diagnosis) == {"B"}
    assert diagnosis["context"]["old_idle"] == []
    refused = {item["check"]: item for item in diagnosis["findings"]}["pg.connections"]["evidence"]["logins_refused"]
    assert any("too many clients" in reason for reason in refused)
    assert any("reach max_connections" in reason for reason in refused)
    [terminate] = dbc.plan(diagnosis, SETTINGS)
    assert (terminate["id"], terminate["status"], terminate["disruptive"]) == (
        "database_connections.B.terminate_idle", "awaiting_approval", True)
    change = terminate["change"]
    assert change["params"] == {"older_than_s": 60, "clients": ["batch-worker"],
                                "protected": ["octollm-remediation", "orchestrator", "orchestrator-health"]}
    assert change["rows"] == 28 and change["by_application"] == {"batch-worker": 28}
    # the SQL selects the named clients' idle sessions whatever their age, never the protected ones nor superusers
    assert "OR coalesce(a.application_name, '') = ANY(%(clients)s)" in change["sql"]
    assert "NOT r.rolsuper" in change["sql"] and "ANY(%(protected)s)" in change["sql"]
    assert "logins are refused" in terminate["outcome"] and "whatever their age" in terminate["outcome"]
    approved = dbc.plan(diagnosis, dict(SETTINGS, approve=True))
    assert approved[0]["status"] == "planned"


def test_without_an_outage_young_idle_sessions_are_only_reported():
    young = [{"pid": 300 + i, "usename": "octollm", "application_name": "batch-worker", "state_age_s": 4}
             for i in range(25)]
    # 33 of 40 connections (over the 80% alert) but logins are not refused: the idle-age rule holds
    diagnosis = dbc.diagnose(
        evidence(total=33, by_application=[{**BATCH, "count": 25, "states": {"idle": 25}}, OWN], oldest_idle=young),
        SETTINGS)
    assert diagnosis["context"]["logins_refused"] == []
    assert [(a["id"], a["status"]) for a in dbc.plan(diagnosis, SETTINGS)] == [
        ("database_connections.B.report_connections", "report")]


def test_the_stacks_own_applications_are_never_terminated_for_being_idle():
    # only the orchestrator (the stack's own, named by the inventory) holds idle sessions: nothing to terminate,
    # even old ones and even in an outage
    old_own = [{"pid": 400 + i, "usename": "octollm", "application_name": "orchestrator", "state_age_s": 900}
               for i in range(5)]
    diagnosis = dbc.diagnose(outage([{**OWN, "count": 30, "states": {"idle": 30}}], old_own), SETTINGS)
    assert diagnosis["context"]["old_idle"] == [] and diagnosis["context"]["idle_clients"] == []
    [report] = dbc.plan(diagnosis, SETTINGS)
    assert report["id"] == "database_connections.B.report_connections"
    assert "no other client than the stack's own" in report["outcome"]
    # without the inventory's list the orchestrator is just another client (the role's protected list only)
    bare = procedure_settings("database_connections", OVERRIDES)
    assert bare["stack_applications"] == []
    diagnosis = dbc.diagnose(outage([{**OWN, "count": 30, "states": {"idle": 30}}], old_own), bare)
    assert dbc.plan(diagnosis, bare)[0]["change"]["params"]["clients"] == ["orchestrator"]


def test_an_outage_also_counts_backends_at_the_limit_and_spares_superusers():
    # the ping got in (a slot freed a moment ago) but the client backends fill max_connections - reserved
    exporter = [{"pid": 500, "usename": "postgres", "application_name": "", "state_age_s": 1}]
    data = evidence(total=35, by_application=[{"application_name": "", "count": 1, "states": {"idle": 1}}, BATCH,
                                              OWN], oldest_idle=exporter)
    diagnosis = dbc.diagnose(data, SETTINGS)
    assert diagnosis["context"]["logins_refused"] == ["35 client backends reach max_connections 40 minus 5 reserved"]
    # the admin's (superuser) idle session does not make "" a client to terminate
    assert diagnosis["context"]["idle_clients"] == [{"application_name": "batch-worker", "idle": 28}]
    assert dbc.plan(diagnosis, SETTINGS)[0]["change"]["params"]["clients"] == ["batch-worker"]


def test_the_inventory_contract_names_the_stacks_own_applications():
    from pathlib import Path

    import yaml

    lab = yaml.safe_load((Path(__file__).resolve().parents[2] / "inventory/lab/group_vars/octollm.yml").read_text())
    assert lab["octollm_postgres"]["applications"] == ["orchestrator", "orchestrator-health"]
    settings = procedure_settings("database_connections", OVERRIDES, inventory={"postgres": lab["octollm_postgres"]})
    assert settings["stack_applications"] == ["orchestrator", "orchestrator-health"]


def test_a_procedure_that_applied_nothing_is_verified_on_the_fresh_evidence_too():
    """The shared flow (plugin_utils/flow.py): when another procedure of the run changed the stack (service_unavailable
    started the database), every procedure's verification reads the evidence gathered after the change; before,
    one that applied nothing repeated its diagnosis (here: PostgreSQL unreachable, a problem left)."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import flow

    run = {"procedures": ["database_connections"], "settings": {"database_connections": role_settings(
        "database_connections", OVERRIDES)}, "context": {"platform": "compose", "phase": "resolve",
                                                          "inventory": INVENTORY}}
    state = flow.judge(stopped_postgres_evidence(), dict(run, settings={"database_connections": dict(
        run["settings"]["database_connections"], skip_actions=["database_connections.start_postgres"])}))
    assert [a["status"] for a in state["database_connections"]["actions"]] == ["skipped"]
    healthy = evidence()
    healthy["containers"]["containers"] = [container("orchestrator"), container("postgres")]
    stale = flow.report(healthy, run, state, {})["database_connections"]["verification"]
    assert stale["healthy"] is False  # nothing applied in the run: the diagnosis stands
    started = {"service_unavailable.C.up_postgres": {"status": "applied", "outcome": "up postgres"}}
    fresh = flow.report(healthy, run, state, started)["database_connections"]["verification"]
    assert fresh["healthy"] is True and {f["status"] for f in fresh["findings"]} == {"ok"}


def test_a_procedure_that_applied_nothing_looks_again_and_applies_what_needs_no_approval():
    """flow.second_look: after another procedure changed the stack, a procedure that applied nothing judges the fresh
    evidence and plans again; only new actions that need no approval join the run (here: the start of PostgreSQL,
    not disruptive; a termination of sessions, disruptive, never)."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import flow

    run = {"procedures": ["database_connections"], "settings": {"database_connections": role_settings(
        "database_connections", OVERRIDES)}, "context": {"platform": "compose", "phase": "resolve", "approve": True,
                                                          "inventory": INVENTORY}}
    state = flow.judge(evidence(), run)
    assert state["database_connections"]["actions"] == []
    elsewhere = {"service_unavailable.C.up_redis": {"status": "applied", "outcome": "up redis"}}
    looked = flow.second_look(stopped_postgres_evidence(), run, state, elsewhere)
    [start] = looked["database_connections"]["second_look"]
    assert start["id"] == "database_connections.start_postgres" and start["status"] == "planned"
    assert start["outcome"].startswith("judged after the run's changes")
    assert flow.second_look_actions(looked, run) == [{"procedure": "database_connections", "action": start}]
    assert flow.second_look(stopped_postgres_evidence(), run, looked, elsewhere) == looked  # never twice
    report = flow.report(stopped_postgres_evidence(), run, looked, dict(elsewhere, **{start["id"]: {
        "status": "applied", "outcome": "postgres started"}}))["database_connections"]
    assert [(a["id"], a["status"]) for a in report["actions"]] == [(start["id"], "applied")]
    # a disruptive step found on the second look waits for a run of its own, even under --approve
    young = [{"pid": 300 + i, "usename": "octollm", "application_name": "batch-worker", "state_age_s": 4}
             for i in range(28)]
    assert flow.second_look(outage([BATCH, OWN], young), run, state, elsewhere)["database_connections"][
        "second_look"] == []
    # nothing applied, a dry run, an approved plan: no second look
    for same in (flow.second_look(stopped_postgres_evidence(), run, state, {}),
                 flow.second_look(stopped_postgres_evidence(), dict(run, context=dict(run["context"], dry_run=True)),
                                  state, elsewhere),
                 flow.second_look(stopped_postgres_evidence(), dict(run, context=dict(run["context"], approved={})),
                                  state, elsewhere)):
        assert same == state


def test_list_parameters_reach_postgresql_as_array_literals():
    """community.postgresql.postgresql_query turns a list into {'a'} (the quotes part of the element): the action
    passes the plan's lists as array literals instead (the filter database_connections_pg_array_args)."""
    filters = FilterModule().filters()
    assert "procedure_second_look" in filters
    from ansible_collections.octollm.remediation.plugins.filter.database_connections import FilterModule as DcFilters

    convert = DcFilters().filters()["database_connections_pg_array_args"]
    assert convert({"older_than_s": 300, "clients": ["batch-worker"], "protected": [], "odd": ['a"b', "c\\d"]}) == {
        "older_than_s": 300, "clients": '{"batch-worker"}', "protected": "{}", "odd": '{"a\\"b","c\\\\d"}'}
