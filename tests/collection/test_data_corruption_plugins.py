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
from ansible_collections.octollm.remediation.plugins.filter.remediation import FilterModule as SharedFilters
from ansible_collections.octollm.remediation.plugins.modules import pg_backup
from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption as dc

from octoctl.models import ProcedureResult

REPO = Path(__file__).resolve().parents[2]


def all_filters():
    """The shared filters and this procedure's, as Ansible sees them."""
    return {**SharedFilters().filters(), **OwnFilters().filters()}


ROLE = REPO / "roles" / "data_corruption"
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
    diag = dc.diagnose(evidence())
    found = by_check(diag["findings"])
    assert [f["status"] for f in diag["findings"]] == ["ok", "ok", "ok", "ok"]
    constraints = found["data.constraints"]
    assert constraints["evidence"]["prevention"] == "needed"
    assert "relationships.relationships_from_entity_id_fkey" in constraints["evidence"]["missing"]
    assert "tasks.tasks_status_check" in constraints["evidence"]["present"]
    assert diag["escalation"]["level"] is None
    assert not any(s["holds"] for s in diag["scenarios"])
    assert dc.plan(diag) == []
    result({"findings": diag["findings"], "scenarios": diag["scenarios"], "escalation": diag["escalation"]}, "diagnose")


def test_constraints_present_means_no_prevention():
    diag = dc.diagnose(with_constraints(evidence()))
    assert by_check(diag["findings"])["data.constraints"]["evidence"]["prevention"] == "none"


def test_corruption_is_found_with_counts_and_bounded_samples():
    diag = dc.diagnose(corrupt(), {"sample_limit": 5})
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
    diag = dc.diagnose({"postgres": {"ok": False, "error": {"kind": "unreachable", "message": "refused"}}})
    assert {f["status"] for f in diag["findings"]} == {"unknown"}
    assert diag["findings"][0]["error"]["kind"] == "unreachable"
    missing = evidence()
    missing["postgres"]["integrity"] = {"tables_missing": ["relationships"]}
    assert by_check(dc.diagnose(missing)["findings"])["data.orphaned_relationships"]["status"] == "unknown"


def test_corrupt_index_is_scenario_d_and_missing_amcheck_a_warning():
    ev = evidence(
        amcheck={
            "available": True,
            "checked": ["entities_pkey"],
            "corrupt": ["entities_pkey"],
            "errors": {"entities_pkey": {"kind": "other", "message": "index corrupt"}},
        }
    )
    diag = dc.diagnose(ev)
    assert by_check(diag["findings"])["data.index_integrity"]["status"] == "problem"
    actions = dc.plan(diag, {"approve": True})
    assert [a["id"] for a in actions] == ["data_corruption.D.report_restore"]
    assert actions[0]["status"] == "report"
    ev = evidence(amcheck={"available": False, "checked": [], "corrupt": [], "errors": {}})
    assert by_check(dc.diagnose(ev)["findings"])["data.index_integrity"]["status"] == "warning"


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
    fks = [c for c in dc.DEFAULT_CONSTRAINTS if c["type"] == "foreign_key"]
    assert dc.match_constraint(fks[0], rows) is None
    assert dc.match_constraint(fks[1], rows)["name"] == "whatever"
    check = next(c for c in dc.DEFAULT_CONSTRAINTS if c["name"] == "entities_properties_is_object")
    assert dc.match_constraint(check, rows)["name"] == "x"
    ev = evidence()
    ev["postgres"]["integrity"]["constraints"]["relationships"] += rows[:1]
    states = {s["name"]: s["state"] for s in dc.constraints_state(ev["postgres"]["integrity"], dc._settings({}))}
    assert states["relationships_to_entity_id_fkey"] == "not_validated"
    assert states["relationships_from_entity_id_fkey"] == "missing"


# --- plan and repair SQL --------------------------------------------------------------------------------
def test_plan_waits_for_approval_and_counts_come_from_the_diagnosis():
    diag = dc.diagnose(corrupt())
    actions = dc.plan(diag, {"backup_dir": "/runs/x/backups"})
    ids = [a["id"] for a in actions]
    assert ids == ["data_corruption.backup", "data_corruption.A.delete_orphans", "data_corruption.B.reset_properties"]
    assert {a["status"] for a in actions} == {"awaiting_approval"}
    assert all(a["disruptive"] for a in actions)
    orphans = actions[1]["change"]
    assert orphans["rows"] == 18 and "NOT EXISTS" in orphans["sql"] and "NOT IN" not in orphans["sql"]
    assert actions[2]["change"]["rows"] == 14
    approved = dc.plan(diag, {"approve": True})
    assert {a["status"] for a in approved} == {"planned"}
    dry = dc.plan(diag, {"approve": True, "dry_run": True})
    assert all(a["outcome"].startswith("dry run: would apply") for a in dry)
    # C (the schema) is the prevent phase's, unless forced
    assert "data_corruption.C.report_constraints" not in ids
    forced = dc.plan(diag, {"approve": True, "scenario": "C"})
    assert [a["id"] for a in forced] == ["data_corruption.C.report_constraints"]
    only_b = dc.plan(diag, {"approve": True, "scenario": "B"})
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
    queries = dc.repair_queries(dc.plan(dc.diagnose(corrupt()), {"approve": True}))
    assert len(queries) == 2 and queries[1].startswith("SELECT current_setting(")


def test_identifiers_are_never_taken_from_input_unchecked():
    with pytest.raises(ValueError):
        dc.ident('entities"; DROP TABLE tasks; --')
    bad = {"name": "x", "table": "entities", "type": "check", "columns": ["properties"], "expression": "1=1; --"}
    with pytest.raises(ValueError):
        dc.constraint_sql(bad)
    add, validate = dc.constraint_sql(dc.DEFAULT_CONSTRAINTS[0], "CASCADE")
    assert add.endswith("ON DELETE CASCADE NOT VALID")
    assert validate == "ALTER TABLE relationships VALIDATE CONSTRAINT relationships_from_entity_id_fkey"


def test_repair_outcomes():
    actions = dc.plan(dc.diagnose(corrupt()), {"approve": True})
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
        dc.plan(dc.diagnose(corrupt()), {"approve": True}), {"data_corruption.backup": out}
    )
    finding = dc.backup_findings(merged)[0]
    assert finding["check"] == "data.backup" and finding["evidence"]["backup"] == "/r/b.dump"
    missing = dc.backup_outcome(
        {"failed": True, "msg": "pg_dump not found on the PATH (install the PostgreSQL client package)"}
    )
    merged = filters["action_outcomes"](
        dc.plan(dc.diagnose(corrupt()), {"approve": True}), {"data_corruption.backup": missing}
    )
    assert dc.backup_findings(merged)[0]["error"]["kind"] == "missing_tool"


def test_escalation_after_a_good_and_a_rolled_back_repair():
    filters = all_filters()
    diag = dc.diagnose(corrupt())
    actions = dc.plan(diag, {"approve": True})
    backup = dc.backup_outcome({"verified": True, "path": "/b", "tables": {}})
    good = dict(
        dc.repair_outcomes(actions, {"query_all_results": [{}, [{"orphans": 18, "properties": 14}]]}, backup),
        **{"data_corruption.backup": backup},
    )
    final = filters["action_outcomes"](actions, good)
    after = dc.diagnose(evidence())["findings"] + dc.backup_findings(final)
    verification = {"findings": after, "healthy": filters["healthy"](after)}
    assert filters["escalation"](diag["findings"], "L2", final, verification, "resolve")["level"] is None
    bad = dict(dc.repair_outcomes(actions, {"failed": True, "msg": "x"}, backup), **{"data_corruption.backup": backup})
    final = filters["action_outcomes"](actions, bad)
    after = diag["findings"] + dc.backup_findings(final)
    verification = {"findings": after, "healthy": filters["healthy"](after)}
    assert filters["escalation"](diag["findings"], "L2", final, verification, "resolve")["level"] == "L2"


# --- prevention and restore ---------------------------------------------------------------------------
def schedule(**changes):
    base = {
        "directory": "/b",
        "count": 1,
        "running": True,
        "configured": True,
        "newest_verified": True,
        "newest": {"path": "/b/scheduled-x.dump", "bytes": 1000, "age_s": 60},
        "error": None,
    }
    base.update(changes)
    return base


def test_prevention_plans_not_valid_then_validate_and_schedules_backups():
    settings = {"schedule_dir": "/b"}
    ev = evidence()
    ev["backup_schedule"] = schedule(running=False, newest={}, count=0)
    prev = dc.prevention(ev, settings)
    found = by_check(prev["findings"])
    assert found["prevent.constraint.relationships.relationships_from_entity_id_fkey"]["status"] == "problem"
    assert found["prevent.constraint.tasks.tasks_status_check"]["status"] == "ok"
    assert found["prevent.backups.scheduled"]["status"] == "problem"
    actions = {a["id"]: a for a in prev["actions"]}
    fk = actions["data_corruption.prevent.add_relationships_from_entity_id_fkey"]
    assert fk["status"] == "awaiting_approval" and fk["disruptive"]
    assert fk["change"]["add_sql"].endswith("NOT VALID") and "VALIDATE CONSTRAINT" in fk["change"]["validate_sql"]
    assert isinstance(fk["change"]["sql"], str)
    assert actions["data_corruption.prevent.schedule_backups"]["status"] == "planned"  # not disruptive
    result(
        {
            "prevention": {"findings": prev["findings"], "actions": prev["actions"]},
            "escalation": {"level": "L2", "reason": "x"},
        },
        "prevent",
    )
    healthy = with_constraints(evidence())
    healthy["backup_schedule"] = schedule()
    prev = dc.prevention(healthy, settings)
    assert {f["status"] for f in prev["findings"]} == {"ok"} and prev["actions"] == []


def test_prevention_does_not_validate_over_known_violations():
    ev = corrupt()
    ev["backup_schedule"] = schedule()
    prev = dc.prevention(ev, {"approve": True, "schedule_dir": "/b"})
    fk = next(a for a in prev["actions"] if a["id"] == "data_corruption.prevent.add_relationships_from_entity_id_fkey")
    assert fk["change"]["validate_sql"] is None and fk["change"]["violating_rows"] == 12
    assert "not validated: 12 rows" in fk["outcome"]


def test_prevention_reports_schedules_it_cannot_make():
    ev = with_constraints(evidence())
    ev["backup_schedule"] = schedule(running=False)
    prev = dc.prevention(ev, {"schedule_dir": ""})
    assert prev["actions"][0]["id"] == "data_corruption.prevent.report_backups"
    prev = dc.prevention(ev, {"schedule_supported": False})
    assert by_check(prev["findings"])["prevent.backups.scheduled"]["status"] == "warning"
    assert prev["actions"][0]["status"] == "report"
    stale = with_constraints(evidence())
    stale["backup_schedule"] = schedule(newest={"path": "/b/x", "bytes": 1, "age_s": 10 * 86400})
    assert (
        "old"
        in by_check(dc.prevention(stale, {"schedule_dir": "/b"})["findings"])["prevent.backups.scheduled"]["observed"]
    )


def test_restore_plan():
    verified = {
        "verified": True,
        "path": "/r/b.dump",
        "bytes": 10,
        "sha256": "ab",
        "tables": {"entities": {"rows": 5}, "relationships": {"rows": 9}},
        "manifest_data": {"created": "2026-01-01T00:00:00Z", "run_id": "x"},
    }
    plan = dc.restore_plan(verified, {"database": "octollm"})
    assert plan["findings"][0]["status"] == "ok"
    assert plan["actions"][0]["status"] == "awaiting_approval" and plan["actions"][0]["destructive"]
    assert plan["actions"][0]["change"]["table_rows"] == {"entities": 5, "relationships": 9}
    assert dc.restore_plan(verified, {"approve": True})["actions"][0]["status"] == "planned"
    broken = dc.restore_plan({"failed": True, "msg": "SHA-256 does not match"}, {})
    assert broken["actions"][0]["status"] == "report" and broken["findings"][0]["status"] == "problem"
    restored = {"restored": True, "tables": {"entities": {"rows": 5}, "relationships": {"rows": 9}}}
    assert dc.restore_outcome(restored)["status"] == "applied"
    assert {f["status"] for f in dc.restore_verification(restored, verified)} == {"ok"}
    off = {"restored": True, "tables": {"entities": {"rows": 4}, "relationships": {"rows": 9}}}
    assert by_check(dc.restore_verification(off, verified))["restore.rows.entities"]["status"] == "problem"


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
    assert defaults["data_corruption_constraints"] == dc.DEFAULT_CONSTRAINTS
    private = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert all(name.startswith("__data_corruption_") for name in private)
    phases = {"MAIN", "DIAGNOSE", "RESOLVE", "PREVENT", "RESTORE", "APPLY", "NEEDS"}
    for path in (ROLE / "tasks").rglob("*.yml"):
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            name = task.get("name", "")
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
