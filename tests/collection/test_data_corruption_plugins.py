"""Unit tests of the Data Corruption procedure's Python: the judgement (diagnosis, plan, prevention, restore), the
repair SQL and its outcomes, the pg_backup module's parsers, and - on a throwaway PostgreSQL cluster when the
server binaries are installed - the backup, its verification, an exact restore and a repair that rolls back.
No lab needed."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ansible_collections.octollm.remediation.plugins.filter.data_corruption import FilterModule as OwnFilters
from ansible_collections.octollm.remediation.plugins.modules import pg_backup
from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption as dc
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings

from octoctl.models import ProcedureResult

REPO = Path(__file__).resolve().parents[2]


def all_filters():
    """This procedure's filters as Ansible sees them, and the result contract's functions the shared flow applies."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import results

    def procedure_result(data, procedure, platform, phase):
        keys = ("findings", "scenarios", "actions", "verification", "prevention", "escalation")
        return results.procedure_result(procedure, platform, phase, *(data.get(key) for key in keys))

    return {
        **OwnFilters().filters(),
        "procedure_result": procedure_result,
        "action_outcomes": results.apply_outcomes,
        "healthy": results.healthy,
        "escalation": results.escalation,
    }


ROLE = REPO / "roles" / "data_corruption"
SETTINGS = procedure_settings("data_corruption")


def settings(**changes):
    """The role's settings as a run sees them, with ``changes``."""
    return {**SETTINGS, **changes}


TASKS_STATUS = (
    "CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'completed'::text, 'failed'::text, "
    "'cancelled'::text])))"
)


def integrity(**changes):
    base = {
        "relationships_total": 40000,
        "entities_total": 20000,
        "orphans_from": 0,
        "orphans_to": 0,
        "orphans_total": 0,
        "orphan_sample": [],
        "invalid_properties": 0,
        "invalid_properties_by_type": {},
        "invalid_properties_sample": [],
        "constraints": {
            "entities": [
                {"name": "entities_pkey", "type": "p", "definition": "PRIMARY KEY (entity_id)", "validated": True}
            ],
            "relationships": [
                {
                    "name": "relationships_pkey",
                    "type": "p",
                    "definition": "PRIMARY KEY (relationship_id)",
                    "validated": True,
                }
            ],
            "tasks": [
                {"name": "tasks_pkey", "type": "p", "definition": "PRIMARY KEY (task_id)", "validated": True},
                {"name": "tasks_status_check", "type": "c", "definition": TASKS_STATUS, "validated": True},
            ],
        },
        "btree_indexes": ["entities_pkey", "relationships_pkey", "tasks_pkey"],
        "tables_missing": [],
        "foreign_keys": {"entities": [], "relationships": [], "tasks": []},
        "amcheck": {
            "available": True,
            "checked": ["entities_pkey", "relationships_pkey", "tasks_pkey"],
            "corrupt": [],
            "errors": {},
        },
    }
    base.update(changes)
    return base


def evidence(**changes):
    return {
        "postgres": {
            "ok": True,
            "error": None,
            "server": {
                "database": "octollm",
                "database_size_bytes": 25_000_000,
                "extensions": {"amcheck": "1.3", "plpgsql": "1.0"},
            },
            "integrity": integrity(**changes),
        }
    }


def corrupt():
    return evidence(
        orphans_from=12,
        orphans_to=6,
        orphans_total=18,
        orphan_sample=[
            {"relationship_id": n, "from_entity_id": n, "to_entity_id": 1, "missing": ["from"]} for n in range(1, 16)
        ],
        invalid_properties=14,
        invalid_properties_by_type={"array": 4, "string": 2, "number": 2, "null": 4, "boolean": 2},
        invalid_properties_sample=list(range(100, 115)),
    )


def with_constraints(ev):
    ev = copy.deepcopy(ev)
    cons = ev["postgres"]["integrity"]["constraints"]
    cons["relationships"] += [
        {
            "name": "fk_a",
            "type": "f",
            "validated": True,
            "definition": "FOREIGN KEY (from_entity_id) REFERENCES entities(entity_id)",
        },
        {
            "name": "fk_b",
            "type": "f",
            "validated": True,
            "definition": "FOREIGN KEY (to_entity_id) REFERENCES public.entities(entity_id) ON DELETE CASCADE",
        },
    ]
    cons["entities"].append(
        {
            "name": "entities_properties_is_object",
            "type": "c",
            "validated": True,
            "definition": "CHECK (((properties IS NOT NULL) AND (jsonb_typeof(properties) = 'object'::text)))",
        }
    )
    return ev


def result(data, phase):
    """The RESULT the role publishes, validated against octoctl's model (the contract)."""
    filters = all_filters()
    out = filters["procedure_result"](data, "data_corruption", "compose", phase)
    ProcedureResult.model_validate(out)
    return out


def by_check(findings):
    return {item["check"]: item for item in findings}


# --- diagnosis ----------------------------------------------------------------------------------------
def test_healthy_lab_has_no_warning_and_shows_missing_constraints_as_evidence():
    diag = dc.diagnose(evidence(), SETTINGS)
    found = by_check(diag["findings"])
    assert [f["status"] for f in diag["findings"]] == ["ok", "ok", "ok", "ok"]
    constraints = found["data.constraints"]
    assert constraints["evidence"]["prevention"] == "needed"
    assert "relationships.relationships_from_entity_id_fkey" in constraints["evidence"]["missing"]
    assert "tasks.tasks_status_check" in constraints["evidence"]["present"]
    assert diag["escalation"]["level"] is None
    assert not any(s["holds"] for s in diag["scenarios"])
    assert dc.plan(diag, SETTINGS) == []
    result({"findings": diag["findings"], "scenarios": diag["scenarios"], "escalation": diag["escalation"]}, "diagnose")


def test_constraints_present_means_no_prevention():
    diag = dc.diagnose(with_constraints(evidence()), SETTINGS)
    assert by_check(diag["findings"])["data.constraints"]["evidence"]["prevention"] == "none"


def test_corruption_is_found_with_counts_and_bounded_samples():
    diag = dc.diagnose(corrupt(), settings(sample_limit=5))
    found = by_check(diag["findings"])
    orphans = found["data.orphaned_relationships"]
    assert orphans["status"] == "problem" and orphans["scenario"] == "A"
    assert orphans["evidence"]["orphans_total"] == 18
    assert (orphans["evidence"]["orphans_from"], orphans["evidence"]["orphans_to"]) == (12, 6)
    assert len(orphans["evidence"]["sample"]) == 5
    props = found["data.invalid_properties"]
    assert props["status"] == "problem" and props["scenario"] == "B"
    assert props["evidence"]["by_type"]["array"] == 4 and len(props["evidence"]["sample"]) == 5
    holds = {s["id"]: s["holds"] for s in diag["scenarios"]}
    assert holds == {"A": True, "B": True, "C": True, "D": False}
    assert diag["escalation"]["level"] == "L2"


def test_missing_evidence_is_unknown_not_a_crash():
    diag = dc.diagnose({"postgres": {"ok": False, "error": {"kind": "unreachable", "message": "refused"}}}, SETTINGS)
    assert {f["status"] for f in diag["findings"]} == {"unknown"}
    assert diag["findings"][0]["error"]["kind"] == "unreachable"
    missing = evidence()
    missing["postgres"]["integrity"] = {"tables_missing": ["relationships"]}
    assert by_check(dc.diagnose(missing, SETTINGS)["findings"])["data.orphaned_relationships"]["status"] == "unknown"


def test_corrupt_index_is_scenario_d_and_missing_amcheck_a_warning():
    ev = evidence(
        amcheck={
            "available": True,
            "checked": ["entities_pkey"],
            "corrupt": ["entities_pkey"],
            "errors": {"entities_pkey": {"kind": "other", "message": "index corrupt"}},
        }
    )
    diag = dc.diagnose(ev, SETTINGS)
    assert by_check(diag["findings"])["data.index_integrity"]["status"] == "problem"
    actions = dc.plan(diag, settings(approve=True))
    assert [a["id"] for a in actions] == ["data_corruption.D.report_restore"]
    assert actions[0]["status"] == "report"
    ev = evidence(amcheck={"available": False, "checked": [], "corrupt": [], "errors": {}})
    assert by_check(dc.diagnose(ev, SETTINGS)["findings"])["data.index_integrity"]["status"] == "warning"


def test_constraint_matching():
    rows = [
        {
            "name": "whatever",
            "type": "f",
            "validated": False,
            "definition": 'FOREIGN KEY (to_entity_id) REFERENCES "public".entities(entity_id) NOT VALID',
        },
        {"name": "x", "type": "c", "validated": True, "definition": "CHECK ((jsonb_typeof(properties) = 'object'))"},
    ]
    fks = [c for c in SETTINGS["constraints"] if c["type"] == "foreign_key"]
    assert dc.match_constraint(fks[0], rows) is None
    assert dc.match_constraint(fks[1], rows)["name"] == "whatever"
    check = next(c for c in SETTINGS["constraints"] if c["name"] == "entities_properties_is_object")
    assert dc.match_constraint(check, rows)["name"] == "x"
    ev = evidence()
    ev["postgres"]["integrity"]["constraints"]["relationships"] += rows[:1]
    states = {s["name"]: s["state"] for s in dc.constraints_state(ev["postgres"]["integrity"], SETTINGS)}
    assert states["relationships_to_entity_id_fkey"] == "not_validated"
    assert states["relationships_from_entity_id_fkey"] == "missing"


# --- plan and repair SQL --------------------------------------------------------------------------------
def test_plan_waits_for_approval_and_counts_come_from_the_diagnosis():
    diag = dc.diagnose(corrupt(), SETTINGS)
    actions = dc.plan(diag, settings(backup_dir="/runs/x/backups"))
    ids = [a["id"] for a in actions]
    assert ids == ["data_corruption.backup", "data_corruption.A.delete_orphans", "data_corruption.B.reset_properties"]
    assert {a["status"] for a in actions} == {"awaiting_approval"}
    assert all(a["disruptive"] for a in actions)
    orphans = actions[1]["change"]
    assert orphans["rows"] == 18 and "NOT EXISTS" in orphans["sql"] and "NOT IN" not in orphans["sql"]
    assert actions[2]["change"]["rows"] == 14
    approved = dc.plan(diag, settings(approve=True))
    assert {a["status"] for a in approved} == {"planned"}
    dry = dc.plan(diag, settings(approve=True, dry_run=True))
    assert all(a["outcome"].startswith("dry run: would apply") for a in dry)
    # C (the schema) is the prevent phase's, unless forced
    assert "data_corruption.C.report_constraints" not in ids
    forced = dc.plan(diag, settings(approve=True, scenario="C"))
    assert [a["id"] for a in forced] == ["data_corruption.C.report_constraints"]
    only_b = dc.plan(diag, settings(approve=True, scenario="B"))
    assert [a["id"] for a in only_b] == ["data_corruption.backup", "data_corruption.B.reset_properties"]
    assert dc.repair_expected(only_b) == {"properties": 14}
    res = result(
        {
            "findings": diag["findings"],
            "scenarios": diag["scenarios"],
            "actions": approved,
            "verification": {"findings": diag["findings"], "healthy": False},
            "escalation": diag["escalation"],
        },
        "resolve",
    )
    assert all("_apply" not in a for a in res["actions"])


def test_repair_block_is_one_statement_with_guards():
    sql = dc.repair_block({"orphans": 18, "properties": 14})
    assert sql.startswith("DO $octollm_repair$") and sql.rstrip().endswith("$octollm_repair$")
    assert sql.count("RAISE EXCEPTION") == 2 and "IF changed <> 18 THEN" in sql and "IF changed <> 14 THEN" in sql
    assert "NOT IN" not in sql and sql.count("NOT EXISTS") == 2
    assert "'octollm-repair-mismatch: orphaned relationships: % rows deleted, the diagnosis counted 18" in sql
    with pytest.raises(ValueError):
        dc.repair_block({})
    with pytest.raises(ValueError):
        dc.repair_block({"orphans": "1; DROP TABLE x"})
    queries = dc.repair_queries(dc.plan(dc.diagnose(corrupt(), SETTINGS), settings(approve=True)))
    assert len(queries) == 2 and queries[1].startswith("SELECT current_setting(")


def test_identifiers_are_never_taken_from_input_unchecked():
    with pytest.raises(ValueError):
        dc.ident('entities"; DROP TABLE tasks; --')
    bad = {"name": "x", "table": "entities", "type": "check", "columns": ["properties"], "expression": "1=1; --"}
    with pytest.raises(ValueError):
        dc.constraint_sql(bad)
    add, validate = dc.constraint_sql(SETTINGS["constraints"][0], "CASCADE")
    assert add.endswith("ON DELETE CASCADE NOT VALID")
    assert validate == "ALTER TABLE relationships VALIDATE CONSTRAINT relationships_from_entity_id_fkey"


def test_repair_outcomes():
    actions = dc.plan(dc.diagnose(corrupt(), SETTINGS), settings(approve=True))
    backup = {"status": "applied", "outcome": "ok"}
    ok = {"changed": True, "query_all_results": [{}, [{"orphans": "18", "properties": "14"}]]}
    out = dc.repair_outcomes(actions, ok, backup)
    assert out["data_corruption.A.delete_orphans"]["status"] == "applied"
    assert out["data_corruption.A.delete_orphans"]["change"]["rows_changed"] == 18
    assert out["data_corruption.B.reset_properties"]["change"]["rows_changed"] == 14
    block = dc.repair_block({"orphans": 18, "properties": 14})
    mismatch = {
        "failed": True,
        "msg": f"Cannot execute SQL '{block}' None: octollm-repair-mismatch: orphaned relationships: 19 rows "
        "deleted, the diagnosis counted 18: rolled back\nCONTEXT:  PL/pgSQL function inline_code_block line 8 at "
        "RAISE\n, query list: ['...']",
    }
    out = dc.repair_outcomes(actions, mismatch, backup)
    assert out["data_corruption.A.delete_orphans"]["status"] == "failed"
    assert "19 rows deleted, the diagnosis counted 18: rolled back" in out_reason(out)
    timeout = {
        "failed": True,
        "msg": f"Cannot execute SQL '{block}' None: canceling statement due to statement timeout, query list: []",
    }
    assert out_reason(dc.repair_outcomes(actions, timeout, backup)).startswith(
        "rolled back, nothing changed: canceling statement due to statement timeout"
    )
    no_backup = dc.repair_outcomes(actions, {"skipped": True}, {"status": "failed", "outcome": "disk full"})
    assert {o["status"] for o in no_backup.values()} == {"failed"}
    assert dc.repair_outcomes(actions, {}, backup, check_mode=True)["data_corruption.A.delete_orphans"]["status"] == (
        "planned"
    )


def out_reason(outcomes):
    return outcomes["data_corruption.A.delete_orphans"]["outcome"]


def test_backup_outcome_names_the_file():
    good = {
        "changed": True,
        "verified": True,
        "path": "/r/b.dump",
        "manifest": "/r/b.dump.json",
        "bytes": 2048,
        "sha256": "ab",
        "toc_entries": 30,
        "duration_s": 1.5,
        "tables": {"entities": {"rows": 5, "file_rows": 5}},
    }
    out = dc.backup_outcome(good)
    assert out["status"] == "applied" and out["change"]["backup"] == "/r/b.dump"
    assert out["change"]["table_rows"] == {"entities": 5}
    assert dc.backup_outcome({"failed": True, "msg": "pg_dump failed (rc 1)"})["status"] == "failed"
    filters = all_filters()
    merged = filters["action_outcomes"](
        dc.plan(dc.diagnose(corrupt(), SETTINGS), settings(approve=True)), {"data_corruption.backup": out}
    )
    finding = dc.backup_findings(merged)[0]
    assert finding["check"] == "data.backup" and finding["evidence"]["backup"] == "/r/b.dump"
    missing = dc.backup_outcome(
        {"failed": True, "msg": "pg_dump not found on the PATH (install the PostgreSQL client package)"}
    )
    merged = filters["action_outcomes"](
        dc.plan(dc.diagnose(corrupt(), SETTINGS), settings(approve=True)), {"data_corruption.backup": missing}
    )
    assert dc.backup_findings(merged)[0]["error"]["kind"] == "missing_tool"


def test_escalation_after_a_good_and_a_rolled_back_repair():
    filters = all_filters()
    diag = dc.diagnose(corrupt(), SETTINGS)
    actions = dc.plan(diag, settings(approve=True))
    backup = dc.backup_outcome({"verified": True, "path": "/b", "tables": {}})
    good = dict(
        dc.repair_outcomes(actions, {"query_all_results": [{}, [{"orphans": 18, "properties": 14}]]}, backup),
        **{"data_corruption.backup": backup},
    )
    final = filters["action_outcomes"](actions, good)
    after = dc.diagnose(evidence(), SETTINGS)["findings"] + dc.backup_findings(final)
    verification = {"findings": after, "healthy": filters["healthy"](after)}
    assert filters["escalation"](diag["findings"], "L2", final, verification, "resolve")["level"] is None
    bad = dict(dc.repair_outcomes(actions, {"failed": True, "msg": "x"}, backup), **{"data_corruption.backup": backup})
    final = filters["action_outcomes"](actions, bad)
    after = diag["findings"] + dc.backup_findings(final)
    verification = {"findings": after, "healthy": filters["healthy"](after)}
    assert filters["escalation"](diag["findings"], "L2", final, verification, "resolve")["level"] == "L2"


# --- prevention and restore ---------------------------------------------------------------------------
def schedule(ev, settings, running=True, configured=True, count=1, newest=None, newest_verified=True):
    """``ev`` with the scheduled backups' evidence as stack_evidence gives it: the backup directory (its owner, the
    newest backup and whether it verifies) and the backup service's digest in the override file (postgres kind,
    option backups), the services (containers kind)."""
    ev = copy.deepcopy(ev)
    newest = {"path": "/b/scheduled-x.dump", "bytes": 1000, "mtime": 1.0, "age_s": 60} if newest is None else newest
    ev["containers"] = {
        "ok": True,
        "services": {"pg-backup": {"running": 1 if running else 0}, "postgres": {"running": 1}},
        "containers": [{"service": "postgres", "image": "postgres:15", "network_mode": "host"}],
    }
    listing = {"path": "/b", "exists": True, "uid": 1000, "gid": 1000, "count": count, "newest": newest}
    ev["postgres"]["backups"] = {"directory": dict(listing, newest_verified=newest_verified, newest_error=None)}
    wanted = dc.digest(dc.backup_service(ev, settings))
    ev["postgres"]["backups"]["service"] = {"exists": True, "defined": True, "sha256": wanted if configured else "0"}
    return ev


def test_prevention_plans_not_valid_then_validate_and_schedules_backups():
    prevent = settings(scheduled_backup_dir="/b", compose_override="/s/compose.override.yaml")
    ev = schedule(evidence(), prevent, running=False, newest={}, count=0)
    prev = dc.prevention(ev, prevent)
    found = by_check(prev["findings"])
    assert found["prevent.constraint.relationships.relationships_from_entity_id_fkey"]["status"] == "problem"
    assert found["prevent.constraint.tasks.tasks_status_check"]["status"] == "ok"
    assert found["prevent.backups.scheduled"]["status"] == "problem"
    actions = {a["id"]: a for a in prev["actions"]}
    fk = actions["data_corruption.prevent.add_relationships_from_entity_id_fkey"]
    assert fk["status"] == "awaiting_approval" and fk["disruptive"]
    assert fk["change"]["add_sql"].endswith("NOT VALID") and "VALIDATE CONSTRAINT" in fk["change"]["validate_sql"]
    assert isinstance(fk["change"]["sql"], str)
    scheduled = actions["data_corruption.prevent.schedule_backups"]
    assert scheduled["status"] == "planned"  # not disruptive
    # what its task file writes: the service on the PostgreSQL image and network, as the directory's owner
    service = scheduled["_service"]
    assert service["image"] == "postgres:15" and service["network_mode"] == "host" and service["user"] == "1000:1000"
    assert service["volumes"] == ["/b:/backups"] and service["environment"]["INTERVAL"] == "86400"
    assert scheduled["_override"] == "/s/compose.override.yaml"
    result(
        {
            "prevention": {"findings": prev["findings"], "actions": prev["actions"]},
            "escalation": {"level": "L2", "reason": "x"},
        },
        "prevent",
    )
    healthy = schedule(with_constraints(evidence()), prevent)
    prev = dc.prevention(healthy, prevent)
    assert {f["status"] for f in prev["findings"]} == {"ok"} and prev["actions"] == []
    # the service runs with other settings than the wanted ones (here: another interval): set up again
    changed = dc.prevention(healthy, dict(prevent, backup_interval=3600))
    assert (
        by_check(changed["findings"])["prevent.backups.scheduled"]["observed"] == "pg-backup runs with other settings"
    )
    assert [a["id"] for a in changed["actions"]] == ["data_corruption.prevent.schedule_backups"]


def test_prevention_does_not_validate_over_known_violations():
    prevent = settings(approve=True, scheduled_backup_dir="/b")
    prev = dc.prevention(schedule(corrupt(), prevent), prevent)
    fk = next(a for a in prev["actions"] if a["id"] == "data_corruption.prevent.add_relationships_from_entity_id_fkey")
    assert fk["change"]["validate_sql"] is None and fk["change"]["violating_rows"] == 12
    assert "not validated: 12 rows" in fk["outcome"]


def test_prevention_reports_schedules_it_cannot_make():
    ev = schedule(with_constraints(evidence()), settings(), running=False)
    prev = dc.prevention(ev, settings(scheduled_backup_dir=""))
    assert prev["actions"][0]["id"] == "data_corruption.prevent.report_backups"
    prev = dc.prevention(ev, settings(schedule_supported=False))
    assert by_check(prev["findings"])["prevent.backups.scheduled"]["status"] == "warning"
    assert prev["actions"][0]["status"] == "report"
    prevent = settings(scheduled_backup_dir="/b")
    stale = schedule(with_constraints(evidence()), prevent, newest={"path": "/b/x", "bytes": 1, "age_s": 10 * 86400})
    assert "old" in by_check(dc.prevention(stale, prevent)["findings"])["prevent.backups.scheduled"]["observed"]
    # not gathered at all: unknown, not a crash
    assert by_check(dc.prevention(evidence(), prevent)["findings"])["prevent.backups.scheduled"]["status"] == "unknown"


def test_restore_plan():
    verified = {
        "verified": True,
        "path": "/r/b.dump",
        "bytes": 10,
        "sha256": "ab",
        "tables": {"entities": {"rows": 5}, "relationships": {"rows": 9}},
        "manifest_data": {"created": "2026-01-01T00:00:00Z", "run_id": "x"},
    }
    plan = dc.restore_plan(verified, settings(database="octollm"))
    assert plan["findings"][0]["status"] == "ok"
    assert plan["actions"][0]["status"] == "awaiting_approval" and plan["actions"][0]["destructive"]
    assert plan["actions"][0]["change"]["table_rows"] == {"entities": 5, "relationships": 9}
    assert dc.restore_plan(verified, settings(approve=True))["actions"][0]["status"] == "planned"
    broken = dc.restore_plan({"failed": True, "msg": "SHA-256 does not match"}, SETTINGS)
    assert broken["actions"][0]["status"] == "report" and broken["findings"][0]["status"] == "problem"
    restored = {"restored": True, "tables": {"entities": {"rows": 5}, "relationships": {"rows": 9}}}
    assert dc.restore_outcome(restored)["status"] == "applied"
    assert {f["status"] for f in dc.restore_verification(restored, verified)} == {"ok"}
    off = {"restored": True, "tables": {"entities": {"rows": 4}, "relationships": {"rows": 9}}}
    assert by_check(dc.restore_verification(off, verified))["restore.rows.entities"]["status"] == "problem"


# --- on the shared flow: needs, the flow's filters, restore ---------------------------------------------------
def flow_run(phase="resolve", platform="compose", **context):
    from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import role_settings

    overrides = context.pop("settings", {})
    inventory = {
        "postgres": {
            "host": "127.0.0.1",
            "port": 5432,
            "database": "octollm",
            "user": "octollm",
            "admin_user": "postgres",
        },
        "compose": {"files": ["/lab/compose.yaml", "/state/compose.override.yaml"]},
    }
    if platform == "kubernetes":
        inventory["k8s"] = {"namespace": "octollm"}
    return {
        "procedures": ["data_corruption"],
        "context": {"platform": platform, "phase": phase, "host": "lab", "inventory": inventory, **context},
        "settings": {"data_corruption": role_settings("data_corruption", overrides)},
    }


def flow_filters():
    from ansible_collections.octollm.remediation.plugins.filter.procedure import FilterModule as FlowFilters

    return FlowFilters().filters()


def test_the_needs_follow_the_phase_and_the_platform():
    from ansible_collections.octollm.remediation.plugins.plugin_utils import flow

    filters = flow_filters()
    need = filters["procedure_request"](flow_run("diagnose"))
    assert need == {
        "postgres": {"integrity": True, "amcheck": True, "sample_limit": 10, "statement_timeout_ms": 300000},
        "containers": {},  # the stack check of every diagnosis and fix: are the services up?
    }
    # the integrity queries of a large database may take the query timeout: the run's evidence deadline follows
    assert flow.evidence_timeout(flow_run("diagnose"), 30) == 330
    prevent = filters["procedure_request"](flow_run("prevent", settings={"scheduled_backup_dir": "/b"}))
    assert prevent["containers"] == {"services": ["postgres", "pg-backup"]}
    assert prevent["postgres"]["backups"] == {
        "directory": "/b",
        "pattern": "scheduled-*.dump",
        "verify_newest": True,
        "compose_service": {"file": "/state/compose.override.yaml", "name": "pg-backup"},
    }
    k8s = filters["procedure_request"](flow_run("resolve", platform="kubernetes"))
    assert set(k8s) == {"postgres", "kubernetes"}
    assert k8s["kubernetes"]["objects"]["data_corruption_cronjobs"] == {"kind": "CronJob", "api_version": "batch/v1"}
    restoring = flow_run("resolve", settings={"restore_from": {"lab": "/r/b.dump", "other": "/r/c.dump"}})
    assert filters["procedure_request"](restoring) == {
        "postgres": {
            "backups": {"files": ["/r/b.dump"], "tables": ["entities", "relationships"], "count_rows": True},
            "connections": False,
            "ping": False,
        },
        "containers": {},  # the stack check
    }
    assert flow.evidence_timeout(restoring, 30) == 3600
    approved = flow_run("resolve", approve=True, settings={"restore_from": {"lab": "/r/b.dump"}})
    assert filters["procedure_request"](approved)["postgres"]["backups"]["count_rows"] is False


def test_the_flow_backs_up_then_repairs_and_verifies_with_the_backup():
    filters = flow_filters()
    run = flow_run("resolve", approve=True, run_dir="/runs/x")
    state = filters["procedure_judgement"](corrupt(), run)
    todo = [(item["action"]["id"], item["action"]["_apply"]) for item in filters["procedure_actions"](state, run)]
    assert todo == [
        ("data_corruption.backup", "backup"),
        ("data_corruption.A.delete_orphans", "repair"),
        ("data_corruption.B.reset_properties", "repair"),
    ]
    backup = state["data_corruption"]["actions"][0]
    assert backup["change"]["directory"] == "/runs/x/backups" and backup["change"]["database"] == "octollm"
    outcomes = {
        "data_corruption.backup": dc.backup_outcome({"verified": True, "path": "/runs/x/backups/b.dump", "tables": {}})
    }
    outcomes.update(
        dc.repair_outcomes(
            [a for a in state["data_corruption"]["actions"]],
            {"query_all_results": [{}, [{"orphans": 18, "properties": 14}]]},
            outcomes["data_corruption.backup"],
        )
    )
    report = filters["procedure_results"](with_constraints(evidence()), run, state, outcomes)["data_corruption"]
    ProcedureResult.model_validate(report)
    verified = by_check(report["verification"]["findings"])
    assert verified["data.backup"]["evidence"]["backup"] == "/runs/x/backups/b.dump"  # the verification hook
    assert report["verification"]["healthy"] and report["escalation"]["level"] is None
    # without approval every step waits; a dry run applies nothing
    waiting = filters["procedure_judgement"](corrupt(), flow_run("resolve"))["data_corruption"]["actions"]
    assert {a["status"] for a in waiting} == {"awaiting_approval"}
    dry = flow_run("resolve", approve=True, dry_run=True)
    assert filters["procedure_actions"](filters["procedure_judgement"](corrupt(), dry), dry) == []


def verified_backup(path="/r/b.dump"):
    return {
        "verified": True,
        "path": path,
        "manifest": path + ".json",
        "bytes": 10,
        "sha256": "ab",
        "toc_entries": 30,
        "tables": {"entities": {"rows": 5}, "relationships": {"rows": 9}},
        "manifest_data": {"created": "2026-01-01T00:00:00Z", "run_id": "x"},
    }


def test_restore_goes_through_the_flow_verified_approved_and_checked():
    filters = flow_filters()
    run = flow_run("resolve", approve=True, settings={"restore_from": {"lab": "/r/b.dump"}})
    ev = {
        "postgres": {
            "ok": False,
            "error": {"kind": "other", "message": "not asked"},
            "backups": {"files": {"/r/b.dump": verified_backup()}},
        }
    }
    state = filters["procedure_judgement"](ev, run)
    item = state["data_corruption"]
    assert [f["check"] for f in item["diagnosis"]["findings"]] == ["restore.backup"]
    assert item["diagnosis"]["scenarios"] == [
        {"id": "D", "title": "Restore from backup", "holds": True, "reason": "restore requested from /r/b.dump"}
    ]
    todo = filters["procedure_actions"](state, run)
    assert [(t["action"]["id"], t["action"]["_apply"]) for t in todo] == [("data_corruption.D.restore", "restore")]
    assert todo[0]["action"]["change"]["backup"] == "/r/b.dump" and todo[0]["action"]["destructive"]
    done = {
        "data_corruption.D.restore": dc.restore_outcome(
            {"restored": True, "tables": {"entities": {"rows": 5}, "relationships": {"rows": 9}}}
        )
    }
    report = filters["procedure_results"](ev, run, state, done)["data_corruption"]
    ProcedureResult.model_validate(report)
    assert {f["check"]: f["status"] for f in report["verification"]["findings"]} == {
        "restore.backup": "ok",
        "restore.rows.entities": "ok",
        "restore.rows.relationships": "ok",
    }
    assert report["escalation"]["level"] is None
    # the restore entry point without a backup for this host, a backup in a pod, one that does not verify
    for restore, message in (
        ({"restore": True}, "names no backup for lab"),
        ({"restore_from": "pod:octollm/postgres-0:/x.dump"}, "backup inside a pod"),
        ({"restore_from": "/r/b.dump"}, "SHA-256"),
    ):
        broken = {
            "postgres": {
                "ok": True,
                "backups": {
                    "files": {
                        "/r/b.dump": {
                            "verified": False,
                            "failed": True,
                            "msg": "the SHA-256 of /r/b.dump does not match",
                        }
                    }
                },
            }
        }
        run = flow_run("resolve", approve=True, settings=restore)
        item = filters["procedure_judgement"](broken, run)["data_corruption"]
        assert item["diagnosis"]["findings"][0]["status"] == "problem", restore
        assert message in item["diagnosis"]["findings"][0]["observed"], restore
        assert [a["status"] for a in item["actions"]] == ["report"]


# --- the module's parsers -------------------------------------------------------------------------------
def test_parse_toc_and_count_copy_rows():
    toc = pg_backup.parse_toc(
        ";\n; Archive created at 2026-11-28\n;\n"
        "221; 1259 16452 TABLE public entities octollm\n"
        "3405; 0 16452 TABLE DATA public entities octollm\n"
        "3419; 0 0 SEQUENCE SET public relationships_relationship_id_seq octollm\n"
        "3257; 2606 16473 CONSTRAINT public relationships relationships_pkey octollm\n"
        "3300; 2606 16480 FK CONSTRAINT public relationships fk_a octollm\n"
    )
    assert [(e["desc"], e["name"]) for e in toc] == [
        ("TABLE", "entities"),
        ("TABLE DATA", "entities"),
        ("SEQUENCE SET", "relationships_relationship_id_seq"),
        ("CONSTRAINT", "relationships"),
        ("FK CONSTRAINT", "relationships"),
    ]
    lines = [
        b"SET x = 1;\n",
        b"COPY public.entities (a, b) FROM stdin;\n",
        b"1\t{}\n",
        b"2\t\\N\n",
        b"\\.\n",
        b"COPY public.relationships (a) FROM stdin;\n",
        b"\\.\n",
    ]
    assert pg_backup.count_copy_rows(lines) == {"public.entities": 2, "public.relationships": 0}
    assert pg_backup.split_table("entities") == ("public", "entities")
    with pytest.raises(pg_backup.BackupError):
        pg_backup.split_table("a;b")


def test_role_defaults_specs_and_task_names():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert set(specs) == {"main", "diagnose", "resolve", "prevent", "restore"}
    for entry, spec in specs.items():
        assert set(spec["options"]) == set(defaults), entry
        for name, option in spec["options"].items():
            assert option.get("description"), name
            if "default" in option:
                assert option["default"] == defaults[name], name
    assert not (ROLE / "vars").exists()  # no second copy of a setting
    # the entry files enter the shared flow; the action files' tasks carry the action id
    for path in (ROLE / "tasks").rglob("*.yml"):
        phases = {"MAIN", "DIAGNOSE", "RESOLVE", "PREVENT", "RESTORE"}
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            name = task.get("name", "")
            if "actions" in path.parts:
                assert name.startswith("{{ _common_action.id }} | APPLY | "), f"{path.name}: {name!r}"
            else:
                assert name.startswith("Data | ") and name.split(" | ")[1] in phases, f"{path.name}: {name!r}"


def _tasks(items):
    for task in items:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key) or [])


# --- a throwaway PostgreSQL cluster ---------------------------------------------------------------------
PG_BIN = (
    next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True) if (p / "initdb").exists()), None)
    if Path("/usr/lib/postgresql").is_dir()
    else None
)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def scratch():
    """A PostgreSQL cluster of its own (unix socket, trust), with the lab's schema and 2,000 seeded entities."""
    if PG_BIN is None or shutil.which("pg_dump") is None:
        pytest.skip("[needs-install] no PostgreSQL server binaries (postgresql package) on this machine")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="octollm-pg-"))  # not under pytest's 0700 root: the server runs as postgres
    run_as = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("[needs-install] running as root without runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("[needs-install] running as root and there is no postgres user")
        shutil.chown(base, "postgres")
        os.chmod(base, 0o755)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()
    subprocess.run(
        [*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(base / "log"),
            "-o",
            f"-p {port} -k {base} -c listen_addresses=''",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    import psycopg2

    conn = psycopg2.connect(host=str(base), port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE octollm")
    conn.close()
    conn = psycopg2.connect(host=str(base), port=port, user="postgres", dbname="octollm")
    with conn, conn.cursor() as cur:
        cur.execute((REPO / "lab" / "app" / "octollm_lab" / "schema.sql").read_text())
        cur.execute(
            "INSERT INTO entities (entity_id, entity_type, name, properties) SELECT g, 'tool', 'e' || g, "
            "jsonb_build_object('seq', g) FROM generate_series(1, 2000) g"
        )
        cur.execute(
            "INSERT INTO relationships (from_entity_id, to_entity_id, relationship_type) "
            "SELECT g, 1 + (g * 7) % 2000, 'related_to' FROM generate_series(1, 2000) g"
        )
    conn.close()
    yield {"host": str(base), "port": port, "dir": base}
    subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


class StubModule:
    def __init__(self, check_mode=False, **params):
        defaults = dict(
            state="dumped",
            manifest=None,
            tables=[],
            verify_rows=True,
            login_host="127.0.0.1",
            login_port=5432,
            login_db="octollm",
            login_user="postgres",
            login_password=None,
            ssl_mode="disable",
            bin_dir=None,
            lock_timeout_ms=5000,
            timeout=120,
            run_id="t",
            label=None,
        )
        defaults.update(params)
        self.params = defaults
        self.check_mode = check_mode

    @staticmethod
    def get_bin_path(name):
        return shutil.which(name)


def backup(scratch, **params):
    params.setdefault("login_host", scratch["host"])
    params.setdefault("login_port", scratch["port"])
    module = StubModule(**params)
    return pg_backup.Backup(module)


def checksum(scratch, table):
    import psycopg2

    conn = psycopg2.connect(host=scratch["host"], port=scratch["port"], user="postgres", dbname="octollm")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY 1)) FROM {table} t")
            return cur.fetchone()
    finally:
        conn.close()


def sql(scratch, *statements):
    import psycopg2

    conn = psycopg2.connect(host=scratch["host"], port=scratch["port"], user="postgres", dbname="octollm")
    try:
        with conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            try:
                return cur.fetchall()
            except psycopg2.ProgrammingError:
                return None
    finally:
        conn.close()


def test_backup_verify_and_exact_restore(scratch, tmp_path):
    path = str(tmp_path / "b" / "one.dump")
    made = backup(scratch, path=path, tables=["entities", "relationships"]).dumped()
    assert made["verified"] and made["tables"]["entities"] == {"rows": 2000, "file_rows": 2000}
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == made["sha256"]
    before = {t: checksum(scratch, t) for t in ("entities", "relationships")}
    with pytest.raises(pg_backup.BackupError, match="never overwritten"):
        backup(scratch, path=path, tables=["entities"]).dumped()
    # corrupt the data and add a constraint the backup does not have
    sql(
        scratch,
        "DELETE FROM entities WHERE entity_id IN (3, 4)",
        "UPDATE entities SET properties = '[1]' WHERE entity_id = 5",
        "INSERT INTO relationships (from_entity_id, to_entity_id) VALUES (1, 2)",
        "ALTER TABLE entities ADD CONSTRAINT extra_check CHECK (entity_id > 0) NOT VALID",
    )
    assert backup(scratch, path=path, state="verified").verified()["verified"]
    done = backup(scratch, path=path, tables=["entities", "relationships"]).restored()
    assert done["restored"] and done["constraints_dropped"] == ["entities.extra_check"]
    assert {t: checksum(scratch, t) for t in ("entities", "relationships")} == before
    assert sql(scratch, "SELECT last_value FROM relationships_relationship_id_seq") == [(2000,)]


def test_tampered_or_empty_backups_do_not_verify(scratch, tmp_path):
    path = tmp_path / "two.dump"
    backup(scratch, path=str(path), tables=["entities"]).dumped()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pg_backup.BackupError, match="SHA-256"):
        backup(scratch, path=str(path)).verified()
    empty = tmp_path / "empty.dump"
    empty.write_bytes(b"")
    with pytest.raises(pg_backup.BackupError, match="empty"):
        backup(scratch, path=str(empty)).verified()
    garbage = tmp_path / "garbage.dump"
    garbage.write_bytes(b"not a dump at all")
    with pytest.raises(pg_backup.BackupError, match="pg_restore --list failed"):
        backup(scratch, path=str(garbage)).verified()


def test_failed_restore_leaves_the_tables_as_they_were(scratch, tmp_path):
    path = str(tmp_path / "three.dump")
    backup(scratch, path=path, tables=["entities", "relationships"]).dumped()
    sql(scratch, "UPDATE entities SET name = 'changed' WHERE entity_id = 7")
    before = {t: checksum(scratch, t) for t in ("entities", "relationships")}
    # another table's foreign key makes the TRUNCATE fail inside the transaction
    sql(scratch, "CREATE TABLE pin (entity_id bigint REFERENCES entities)")
    try:
        with pytest.raises(pg_backup.BackupError, match="rolled back"):
            backup(scratch, path=path, tables=["entities", "relationships"]).restored()
    finally:
        sql(scratch, "DROP TABLE pin")
    assert {t: checksum(scratch, t) for t in ("entities", "relationships")} == before
    backup(scratch, path=path, tables=["entities", "relationships"]).restored()
    sql(scratch, "UPDATE entities SET name = 'e7' WHERE entity_id = 7")


def test_repair_transaction_fixes_exactly_or_rolls_back(scratch, tmp_path):
    path = str(tmp_path / "four.dump")
    backup(scratch, path=path, tables=["entities", "relationships"]).dumped()
    sql(
        scratch,
        "DELETE FROM entities WHERE entity_id IN (10, 20)",
        "UPDATE entities SET properties = '\"s\"' WHERE entity_id = 30",
        "UPDATE entities SET properties = NULL WHERE entity_id = 31",
        "UPDATE entities SET properties = '[]' WHERE entity_id = 32",
    )
    orphans = sql(
        scratch,
        "SELECT count(*) FROM relationships r WHERE NOT EXISTS (SELECT 1 FROM entities e WHERE "
        "e.entity_id = r.from_entity_id) OR NOT EXISTS (SELECT 1 FROM entities e WHERE "
        "e.entity_id = r.to_entity_id)",
    )[0][0]
    assert orphans > 2
    broken = {t: checksum(scratch, t) for t in ("entities", "relationships")}
    import psycopg2

    wrong = dc.repair_block({"orphans": orphans + 1, "properties": 3})
    with pytest.raises(psycopg2.Error, match="rolled back"):
        sql(scratch, wrong)
    assert {t: checksum(scratch, t) for t in ("entities", "relationships")} == broken
    rows = sql(scratch, dc.repair_block({"orphans": orphans, "properties": 3}), dc.repair_result_sql())
    assert rows == [(str(orphans), "3")]
    assert sql(scratch, "SELECT properties FROM entities WHERE entity_id IN (30, 31, 32)") == [({},)] * 3
    backup(scratch, path=path, tables=["entities", "relationships"]).restored()
    assert sql(scratch, "SELECT count(*) FROM entities") == [(2000,)]


def test_backups_are_evidence_read_without_the_server(scratch, tmp_path):
    """stack_evidence's postgres option backups (module_utils/pg_dumpfile.py): the files verified as pg_backup does,
    a directory's newest dump read with pg_restore --list and its owner, a Compose service's digest; also when the
    server does not answer."""
    from ansible_collections.octollm.remediation.plugins.module_utils import pg_dumpfile
    from ansible_collections.octollm.remediation.plugins.module_utils.collector_postgres import PostgresCollector

    path = str(tmp_path / "dumps" / "scheduled-octollm-1.dump")
    made = backup(scratch, path=path, tables=["entities", "relationships"]).dumped()
    (tmp_path / "dumps" / "scheduled-octollm-0.dump").write_bytes(b"")  # older and empty
    os.utime(tmp_path / "dumps" / "scheduled-octollm-0.dump", (1, 1))
    override = tmp_path / "compose.override.yaml"
    override.write_text(yaml.safe_dump({"services": {"pg-backup": {"image": "postgres:15", "user": "0:0"}}}))
    options = {
        "files": [path, str(tmp_path / "missing.dump")],
        "tables": ["entities"],
        "count_rows": True,
        "directory": str(tmp_path / "dumps"),
        "pattern": "scheduled-*.dump",
        "verify_newest": True,
        "compose_service": {"file": str(override), "name": "pg-backup"},
    }
    found = pg_dumpfile.backups_evidence(options, 60)
    good = found["files"][path]
    assert good["verified"] and good["sha256"] == made["sha256"] and good["tables"]["entities"]["file_rows"] == 2000
    assert found["files"][str(tmp_path / "missing.dump")]["failed"]
    listing = found["directory"]
    assert listing["count"] == 2 and listing["newest"]["path"] == path and listing["newest_verified"] is True
    assert listing["uid"] == os.stat(tmp_path / "dumps").st_uid
    assert found["service"]["sha256"] == pg_dumpfile.definition_digest({"image": "postgres:15", "user": "0:0"})
    assert "postgres:15" not in str(found["service"])  # the definition itself never leaves the host
    # through the collector, against a server that does not answer: the backups are still judged
    answer = PostgresCollector({"port": 1, "connect_timeout": 1, "ping": False, "backups": options}).collect(
        time.monotonic() + 30
    )
    assert answer["ok"] is False and answer["backups"]["files"][path]["verified"]


def test_dump_failure_is_an_error_never_a_success(scratch, tmp_path):
    path = tmp_path / "five.dump"
    with pytest.raises(pg_backup.BackupError):
        backup(scratch, path=str(path), tables=["no_such_table"]).dumped()
    assert not path.exists() and not Path(str(path) + ".part").exists()
    started = time.monotonic()
    with pytest.raises(pg_backup.BackupError, match="cannot connect"):
        backup(scratch, path=str(path), login_port=1).dumped()
    assert time.monotonic() - started < 30


def test_every_filter_is_registered_and_documented():
    docs = {path.stem for path in (REPO / "collection" / "plugins" / "filter").glob("data_corruption_*.yml")}
    assert set(OwnFilters().filters()) == docs
