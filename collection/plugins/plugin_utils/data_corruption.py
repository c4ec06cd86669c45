# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "Data Corruption": findings, scenarios, the repair plan, prevention and restore.

Input is the ``postgres`` evidence of ``stack_evidence`` with its ``integrity`` concern (orphaned relationships
counted with NOT EXISTS, entities.properties that are not JSON objects, the constraints of tasks, entities and
relationships, amcheck on their B-tree indexes) and the role's settings (``roles/data_corruption/defaults``).
Scenarios (octoctl/catalog.yml):

- A  orphaned relationships (either end missing in entities). Fixed: DELETE in one transaction, after a
     verified backup; the transaction rolls back when the rows differ from the diagnosis' count.
- B  entities.properties that are not JSON objects (arrays, strings, numbers, JSON null, SQL NULL). Fixed:
     set to {} in the same transaction.
- C  missing constraints (foreign keys, checks). Evidence in the diagnosis (status ok, ``prevention: needed``);
     the prevent phase adds them (NOT VALID, then VALIDATE).
- D  corruption beyond row repair (amcheck finds a corrupt index): report; restore a verified backup
     (``octoctl restore RUN_ID`` / the role's ``restore`` entry point) or REINDEX.

SQL is built here from fixed identifiers (validated) and integers only, so that a dry run shows exactly the
statements a real run executes.

The deployment's schema (docs/deployment.md, ``octollm_postgres.schema``): the tables (``tasks``, ``entities``,
``relationships``) and the task status values come from the run's context; the role's settings name tables by their
meaning (the seed's names). The evidence session and the repair transaction use the schema's search path, and the
SQL octoctl writes (repair, constraints, backups) names the tables in the schema's first path element when they are
not qualified. A database whose tables or the columns the checks read are missing is a schema that does not match:
every check is unknown, naming what was missing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import re

from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    gate,
    human_bytes,
    unknown,
)

PROCEDURE = "data_corruption"
ENTITIES = "entities"
RELATIONSHIPS = "relationships"
TASKS = "tasks"
REPAIR_MARKER = "octollm-repair-mismatch"
SETTING_ORPHANS = "octollm.repair_orphans"
SETTING_PROPERTIES = "octollm.repair_properties"

SCENARIOS = {
    "A": "Orphaned records",
    "B": "Invalid JSON",
    "C": "Missing constraints",
    "D": "Restore from backup",
}

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ON_DELETE = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL")


def ident(name):
    """A plain lower-case SQL identifier, or ValueError (identifiers are never quoted from input)."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError("not a plain SQL identifier: %r" % (name,))
    return name


def _integer(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an integer: %r" % (value,))
    return value


# --- evidence -----------------------------------------------------------------------------------------
def _postgres(evidence):
    """(postgres evidence, integrity, error) - the error explains why there is no integrity answer."""
    pg = (evidence or {}).get("postgres")
    if pg is None:
        return None, None, {"kind": "other", "message": "postgres evidence was not gathered"}
    if not pg.get("ok", False):
        return pg, None, pg.get("error") or {"kind": "other", "message": "postgres evidence failed"}
    integrity = pg.get("integrity")
    if integrity is None:
        error = (pg.get("probe_errors") or {}).get("integrity") or {
            "kind": "other",
            "message": "the integrity concern was not gathered",
        }
        return pg, None, error
    if integrity.get("tables_missing") or integrity.get("columns_missing"):
        missing = ["table %s" % name for name in integrity.get("tables_missing") or []]
        missing += ["column %s" % name for name in integrity.get("columns_missing") or []]
        return (
            pg,
            None,
            {
                "kind": "other",
                "message": "the schema does not match: missing in %s: %s (name the deployment's tables in "
                "octollm_postgres.schema)"
                % ((pg.get("server") or {}).get("database") or "the database", ", ".join(missing)),
            },
        )
    return pg, integrity, None


def _norm(text):
    return re.sub(r"\s+", "", (text or "").lower()).replace('"', "").replace("public.", "")


_FK = re.compile(r"^foreignkey\((?P<cols>[^)]*)\)references(?P<table>[a-z0-9_]+)\((?P<refcols>[^)]*)\)")


def match_constraint(expected, existing):
    """The existing constraint (pg_constraint rows of the table) that provides ``expected``, or None.

    A foreign key matches on its columns and referenced table and columns (any name); a check matches by name,
    or by a check on the table whose definition names every expected column; a primary key on its columns.
    """
    kind = expected.get("type")
    rows = existing or []
    by_name = [row for row in rows if row.get("name") == expected.get("name")]
    if kind == "foreign_key":
        want = (
            ",".join(expected.get("columns") or []),
            (expected.get("references") or {}).get("table"),
            ",".join((expected.get("references") or {}).get("columns") or []),
        )
        for row in rows:
            if row.get("type") != "f":
                continue
            found = _FK.match(_norm(row.get("definition")))
            if found and (found.group("cols"), found.group("table"), found.group("refcols")) == want:
                return row
        return None
    if kind == "check":
        if by_name and by_name[0].get("type") == "c":
            return by_name[0]
        for row in rows:
            definition = (row.get("definition") or "").lower()
            if row.get("type") == "c" and all(
                re.search(r"\b%s\b" % re.escape(col), definition) for col in expected.get("columns") or []
            ):
                return row
        return None
    if kind == "primary_key":
        want = _norm("PRIMARY KEY (%s)" % ", ".join(expected.get("columns") or []))
        for row in rows:
            if row.get("type") == "p" and _norm(row.get("definition")) == want:
                return row
        return None
    raise ValueError("constraint %s: unknown type %r" % (expected.get("name"), kind))


def table_name(name):
    """A table (``name`` or ``schema.name``, plain lower-case identifiers) as SQL, or ValueError."""
    parts = str(name or "").split(".")
    if len(parts) > 2:
        raise ValueError("not a table name: %r" % (name,))
    return ".".join(ident(part) for part in parts)


def constraint_sql(expected, on_delete="NO ACTION"):
    """(ADD ... NOT VALID, VALIDATE) statements of an expected constraint."""
    table = table_name(expected["table"])
    name = ident(expected["name"])
    kind = expected.get("type")
    if kind == "foreign_key":
        if on_delete not in _ON_DELETE:
            raise ValueError("fk_on_delete must be one of %s" % ", ".join(_ON_DELETE))
        refs = expected.get("references") or {}
        body = "FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE %s" % (
            ", ".join(ident(col) for col in expected["columns"]),
            table_name(refs["table"]),
            ", ".join(ident(col) for col in refs["columns"]),
            on_delete,
        )
    elif kind == "check":
        expression = expected.get("expression") or ""
        if not expression or ";" in expression or "--" in expression:
            raise ValueError("constraint %s: a check needs a single expression" % name)
        body = "CHECK (%s)" % expression
    else:
        raise ValueError("constraint %s: only foreign keys and checks can be added NOT VALID" % name)
    return (
        "ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID" % (table, name, body),
        "ALTER TABLE %s VALIDATE CONSTRAINT %s" % (table, name),
    )


def constraints_state(integrity, settings):
    """Each expected constraint with ``state``: present | not_validated | missing, and its violations when known.
    The evidence names the constraints' tables as the schema does (``tables``), the settings in SQL (``sql_tables``)."""
    existing = (integrity or {}).get("constraints") or {}
    states = []
    by_sql = {sql: name for name, sql in zip((settings.get("tables") or {}).values(), _sql_tables(settings).values())}
    for expected in settings["constraints"]:
        row = match_constraint(expected, existing.get(by_sql.get(expected["table"], expected["table"])) or [])
        state = "missing" if row is None else ("present" if row.get("validated", True) else "not_validated")
        item = {
            "name": expected["name"],
            "table": expected["table"],
            "type": expected["type"],
            "state": state,
            "existing": row.get("name") if row else None,
            "definition": row.get("definition") if row else None,
            "violations": violations(expected, integrity, settings),
        }
        states.append(item)
    return states


def _sql_tables(s):
    """``{meaning: table in SQL}``: the schema's tables, in its first path element when not qualified."""
    return {meaning: qualified(name, s) for meaning, name in ((s or {}).get("tables") or {}).items()}


def qualified(name, s):
    """``name`` in the schema's first search path element when it is not qualified and the path is not the seed's."""
    first = str(((s or {}).get("schema") or {}).get("search_path") or "").split(",")[0].strip().strip('"')
    if "." in str(name) or first in ("", "public", "$user"):
        return name
    return "%s.%s" % (first, name)


def violations(expected, integrity, settings=None):
    """Rows the diagnosis knows would break the constraint (None when it cannot tell)."""
    integrity = integrity or {}
    tables = _sql_tables(settings) if settings else {}
    relationships, entities = tables.get(RELATIONSHIPS, RELATIONSHIPS), tables.get(ENTITIES, ENTITIES)
    if expected.get("type") == "foreign_key" and expected["table"] == relationships:
        refs = expected.get("references") or {}
        if refs.get("table") == entities and refs.get("columns") == ["entity_id"]:
            if expected.get("columns") == ["from_entity_id"]:
                return integrity.get("orphans_from")
            if expected.get("columns") == ["to_entity_id"]:
                return integrity.get("orphans_to")
    if expected.get("type") == "check" and expected["table"] == entities and expected.get("columns") == ["properties"]:
        return integrity.get("invalid_properties")
    return None


# --- repair SQL --------------------------------------------------------------------------------------
def orphans_delete_sql(tables=None):
    """DELETE of the relationships whose either end is missing (two anti-joins on NOT EXISTS, never NOT IN);
    ``tables``: the schema's tables in SQL by meaning (the seed's names by default)."""
    relationships = table_name((tables or {}).get(RELATIONSHIPS) or RELATIONSHIPS)
    entities = table_name((tables or {}).get(ENTITIES) or ENTITIES)
    return (
        "DELETE FROM %(r)s d USING ("
        "SELECT r.relationship_id FROM %(r)s r "
        "WHERE NOT EXISTS (SELECT 1 FROM %(e)s e WHERE e.entity_id = r.from_entity_id) "
        "UNION "
        "SELECT r.relationship_id FROM %(r)s r "
        "WHERE NOT EXISTS (SELECT 1 FROM %(e)s e WHERE e.entity_id = r.to_entity_id)"
        ") o WHERE d.relationship_id = o.relationship_id"
    ) % {"r": relationships, "e": entities}


def properties_update_sql(tables=None):
    """The seed's fix, also for SQL NULL: properties that are not a JSON object become {}."""
    return (
        "UPDATE %s SET properties = '{}'::jsonb WHERE properties IS NULL OR jsonb_typeof(properties) <> 'object'"
        % table_name((tables or {}).get(ENTITIES) or ENTITIES)
    )


def repair_block(expected, sqls=None):
    """ONE statement (a DO block) that runs the selected fixes and raises - so the transaction rolls back -
    when a fix changes another number of rows than the diagnosis counted. The numbers are also stored in
    transaction-local settings, which the SELECT after it (same transaction) returns.

    ``expected``: ``{"orphans": int, "properties": int}``, either key optional; ``sqls``: the fixes' statements as
    the plan showed them (the seed's tables by default).
    """
    sqls = sqls or {}
    lines = ["DO $octollm_repair$", "DECLARE", "  changed bigint;", "BEGIN"]
    fixes = (
        (
            "orphans",
            sqls.get("orphans") or orphans_delete_sql(),
            SETTING_ORPHANS,
            "orphaned relationships: % rows deleted",
        ),
        (
            "properties",
            sqls.get("properties") or properties_update_sql(),
            SETTING_PROPERTIES,
            "entities.properties: % rows set to {}",
        ),
    )
    selected = 0
    for key, sql, setting, label in fixes:
        if key not in expected:
            continue
        count = _integer(expected[key])
        selected += 1
        lines += [
            "  %s;" % sql,
            "  GET DIAGNOSTICS changed = ROW_COUNT;",
            "  IF changed <> %d THEN" % count,
            "    RAISE EXCEPTION '%s: %s, the diagnosis counted %d: rolled back', changed;"
            % (REPAIR_MARKER, label, count),
            "  END IF;",
            "  PERFORM set_config('%s', changed::text, true);" % setting,
        ]
    if not selected:
        raise ValueError("repair_block: no fix selected")
    lines += ["END", "$octollm_repair$"]
    return "\n".join(lines)


def repair_result_sql():
    return "SELECT current_setting('%s', true) AS orphans, current_setting('%s', true) AS properties" % (
        SETTING_ORPHANS,
        SETTING_PROPERTIES,
    )


# --- checks ---------------------------------------------------------------------------------------------
def _sample(items, limit):
    return list(items or [])[: max(0, int(limit))]


def check_orphans(integrity, error, s):
    title = "Every relationship points at existing entities (both ends)"
    expected = "0 orphaned relationships"
    if integrity is None:
        return unknown("data.orphaned_relationships", title, expected, error, "A")
    total = integrity.get("orphans_total") or 0
    evidence = {
        "orphans_total": total,
        "orphans_from": integrity.get("orphans_from"),
        "orphans_to": integrity.get("orphans_to"),
        "relationships_total": integrity.get("relationships_total"),
        "entities_total": integrity.get("entities_total"),
        "sample": _sample(integrity.get("orphan_sample"), s["sample_limit"]),
        "query": "NOT EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = r.from_entity_id | r.to_entity_id)",
    }
    observed = "%d orphaned relationships (from missing: %s, to missing: %s)" % (
        total,
        integrity.get("orphans_from"),
        integrity.get("orphans_to"),
    )
    if total:
        return finding("data.orphaned_relationships", title, "problem", observed, expected, evidence, "A")
    return finding("data.orphaned_relationships", title, "ok", "0 orphaned relationships", expected, evidence)


def check_properties(integrity, error, s):
    title = "entities.properties is a JSON object"
    expected = "0 entities whose properties are not an object"
    if integrity is None:
        return unknown("data.invalid_properties", title, expected, error, "B")
    count = integrity.get("invalid_properties") or 0
    evidence = {
        "invalid": count,
        "by_type": integrity.get("invalid_properties_by_type") or {},
        "entities_total": integrity.get("entities_total"),
        "sample": _sample(integrity.get("invalid_properties_sample"), s["sample_limit"]),
    }
    if count:
        kinds = ", ".join(
            "%s %s" % (n, kind) for kind, n in sorted((integrity.get("invalid_properties_by_type") or {}).items())
        )
        observed = "%d entities (%s)" % (count, kinds)
        return finding("data.invalid_properties", title, "problem", observed, expected, evidence, "B")
    return finding("data.invalid_properties", title, "ok", "0 entities", expected, evidence)


def check_constraints(integrity, error, s):
    title = "Foreign keys and checks on tasks, entities and relationships"
    expected = ", ".join("%s.%s" % (c["table"], c["name"]) for c in s["constraints"])
    if integrity is None:
        return unknown("data.constraints", title, expected, error, "C")
    states = constraints_state(integrity, s)
    missing = [item for item in states if item["state"] == "missing"]
    unvalidated = [item for item in states if item["state"] == "not_validated"]
    needed = bool(missing or unvalidated)
    evidence = {
        "present": ["%s.%s" % (i["table"], i["existing"]) for i in states if i["state"] == "present"],
        "missing": ["%s.%s" % (i["table"], i["name"]) for i in missing],
        "not_validated": ["%s.%s" % (i["table"], i["existing"]) for i in unvalidated],
        "foreign_keys": integrity.get("foreign_keys") or {},
        "constraints": integrity.get("constraints") or {},
        "prevention": "needed" if needed else "none",
    }
    if needed:
        evidence["note"] = (
            "nothing stops bad rows from coming back: `octoctl prevent data-corruption --approve` adds the "
            "constraints (NOT VALID, then VALIDATE)"
        )
        parts = []
        if missing:
            parts.append("missing: %s" % ", ".join(evidence["missing"]))
        if unvalidated:
            parts.append("not validated: %s" % ", ".join(evidence["not_validated"]))
        observed = "%s (prevention: needed)" % "; ".join(parts)
    else:
        observed = "all %d present and validated" % len(states)
    # judged by the prevent phase: the diagnosis shows it, it does not raise it
    return finding("data.constraints", title, "ok", observed, expected, evidence, None)


def check_indexes(pg, integrity, error):
    title = "B-tree indexes of tasks, entities and relationships pass amcheck"
    expected = "bt_index_check passes on every index"
    if integrity is None:
        return unknown("data.index_integrity", title, expected, error, "D")
    check = integrity.get("amcheck") or {}
    evidence = {
        "indexes": integrity.get("btree_indexes") or [],
        "checked": check.get("checked") or [],
        "corrupt": check.get("corrupt") or [],
        "errors": check.get("errors") or {},
        "extension": ((pg or {}).get("server") or {}).get("extensions", {}).get("amcheck"),
    }
    if check.get("available") is False:
        evidence["note"] = "CREATE EXTENSION amcheck (contrib) to check index integrity"
        return finding("data.index_integrity", title, "warning", "amcheck is not installed", expected, evidence)
    if check.get("available") is None:
        return finding("data.index_integrity", title, "ok", "not checked (amcheck off)", expected, evidence)
    if evidence["corrupt"]:
        observed = "corrupt: %s" % ", ".join(evidence["corrupt"])
        return finding("data.index_integrity", title, "problem", observed, expected, evidence, "D")
    failed = {name: err for name, err in evidence["errors"].items() if name not in evidence["corrupt"]}
    if failed:
        first = next(iter(failed.values()))
        return unknown("data.index_integrity", title, expected, first, None, evidence)
    return finding(
        "data.index_integrity", title, "ok", "%d indexes checked" % len(evidence["checked"]), expected, evidence
    )


def diagnose(evidence, settings, previous=None, applied=()):
    """``{findings, scenarios, escalation, context}``; ``context`` feeds the plan and is never reported."""
    s = settings
    pg, integrity, error = _postgres(evidence)
    findings = [
        check_orphans(integrity, error, s),
        check_properties(integrity, error, s),
        check_constraints(integrity, error, s),
        check_indexes(pg, integrity, error),
    ]
    by_check = {item["check"]: item for item in findings}
    holds = {
        "A": by_check["data.orphaned_relationships"]["status"] == "problem",
        "B": by_check["data.invalid_properties"]["status"] == "problem",
        "D": by_check["data.index_integrity"]["status"] == "problem",
    }
    constraints = by_check["data.constraints"]
    needed = (constraints.get("evidence") or {}).get("prevention") == "needed"
    holds["C"] = needed and (holds["A"] or holds["B"])
    scenarios = []
    for sid, stitle in SCENARIOS.items():
        if sid == "A":
            item = by_check["data.orphaned_relationships"]
        elif sid == "B":
            item = by_check["data.invalid_properties"]
        elif sid == "C":
            item = constraints
        else:
            item = by_check["data.index_integrity"]
        if item["status"] == "unknown":
            reason = "not checked: %s" % ((item.get("error") or {}).get("message") or item["check"])
        elif sid == "C":
            if holds["C"]:
                reason = "%s: the missing constraints let the bad rows in" % item["observed"]
            elif needed:
                reason = "%s: no bad rows now; judged by the prevent phase" % item["observed"]
            else:
                reason = item["observed"]
        else:
            reason = "%s: %s" % (item["check"], item["observed"])
        scenarios.append({"id": sid, "title": stitle, "holds": bool(holds[sid]), "reason": reason})
    context = {
        "database": ((pg or {}).get("server") or {}).get("database") or s.get("database"),
        "database_size_bytes": ((pg or {}).get("server") or {}).get("database_size_bytes"),
        "orphans": (integrity or {}).get("orphans_total"),
        "orphans_from": (integrity or {}).get("orphans_from"),
        "orphans_to": (integrity or {}).get("orphans_to"),
        "invalid_properties": (integrity or {}).get("invalid_properties"),
        "invalid_by_type": (integrity or {}).get("invalid_properties_by_type") or {},
        "corrupt_indexes": (((integrity or {}).get("amcheck") or {}).get("corrupt")) or [],
        "constraints": constraints_state(integrity, s) if integrity is not None else [],
        "diagnosed": integrity is not None,
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


# --- plan -------------------------------------------------------------------------------------------------
def plan(diagnosis, settings):
    """The resolve actions: a verified backup, then ONE repair transaction (A and/or B), reports for C/D.

    Every step changes or loads the database, so all of them wait for approval (octollm_approve or
    data_corruption_allow_disruptive). The counts come from the diagnosis' read-only queries: a dry run runs no
    DELETE or UPDATE.
    """
    s = settings
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    # C is judged and fixed by the prevent phase (a schema change): resolve reports it only when it is forced
    selected = [sid for sid in ("A", "B", "C", "D") if (sid == forced if forced else sid in holding and sid != "C")]
    database = ctx.get("database") or "database"
    expected = {}
    if "A" in selected and ctx.get("orphans"):
        expected["orphans"] = int(ctx["orphans"])
    if "B" in selected and ctx.get("invalid_properties"):
        expected["properties"] = int(ctx["invalid_properties"])
    actions = []
    if expected:
        actions.append(
            action(
                "data_corruption.backup",
                None,
                "verified backup (pg_dump custom format) before the repair",
                "backup:postgres:%s" % database,
                {
                    "format": "custom",
                    "database": database,
                    "directory": s["backup_dir"] or None,
                    "count_tables": list(s["backup_tables"]),
                    "database_size": human_bytes(ctx.get("database_size_bytes")),
                    "verify": "non-empty, pg_restore --list, row counts of %s in the file equal the snapshot's"
                    % ", ".join(s["backup_tables"]),
                },
                "planned",
                "pg_dump -Fc of %s from one snapshot, then pg_restore --list and the row counts of the file" % database,
                disruptive=True,
                apply="backup",
            )
        )
        actions[-1]["_volatile"] = ["database_size"]  # grows while the plan waits for approval
        if "orphans" in expected:
            actions.append(
                action(
                    "data_corruption.A.delete_orphans",
                    "A",
                    "delete %d orphaned relationships" % expected["orphans"],
                    "postgres:%s:relationships" % database,
                    {
                        "sql": orphans_delete_sql(_sql_tables(s)),
                        "rows": expected["orphans"],
                        "from_missing": ctx.get("orphans_from"),
                        "to_missing": ctx.get("orphans_to"),
                        "transaction": "one transaction with the other fixes; rolled back unless exactly "
                        "%d rows are deleted" % expected["orphans"],
                    },
                    "planned",
                    "DELETE %d relationships whose from or to entity is missing (after the verified backup)"
                    % expected["orphans"],
                    disruptive=True,
                    destructive=True,
                    apply="repair",
                )
            )
        if "properties" in expected:
            actions.append(
                action(
                    "data_corruption.B.reset_properties",
                    "B",
                    "set %d invalid entities.properties to {}" % expected["properties"],
                    "postgres:%s:entities.properties" % database,
                    {
                        "sql": properties_update_sql(_sql_tables(s)),
                        "rows": expected["properties"],
                        "by_type": ctx.get("invalid_by_type") or {},
                        "transaction": "one transaction with the other fixes; rolled back unless exactly "
                        "%d rows are updated" % expected["properties"],
                    },
                    "planned",
                    "UPDATE %d entities whose properties are not a JSON object to {} (after the verified backup)"
                    % expected["properties"],
                    disruptive=True,
                    destructive=True,
                    apply="repair",
                )
            )
    if "C" in selected:
        missing = [c for c in ctx.get("constraints") or [] if c["state"] != "present"]
        actions.append(
            action(
                "data_corruption.C.report_constraints",
                "C",
                "add the missing constraints (schema change)",
                "postgres:%s:constraints" % database,
                {"missing": ["%s.%s" % (c["table"], c["name"]) for c in missing]},
                "report",
                "L2: run `octoctl prevent data-corruption --approve` (ALTER TABLE ... NOT VALID, then VALIDATE) "
                "after the repair, so that the bad rows cannot come back",
            )
        )
    if "D" in selected:
        corrupt = ctx.get("corrupt_indexes") or []
        actions.append(
            action(
                "data_corruption.D.report_restore",
                "D",
                "corruption beyond row repair",
                "postgres:%s:indexes" % database,
                {"corrupt_indexes": corrupt},
                "report",
                "L2: amcheck found corrupt indexes (%s): REINDEX INDEX CONCURRENTLY each after checking the heap "
                "(pg_amcheck --heapallindexed), or restore a verified backup (octoctl restore RUN_ID)"
                % (", ".join(corrupt) or "none named"),
            )
        )
    return gate(
        actions,
        dry_run=s.get("dry_run", False),
        approve=s.get("approve", False),
        allow_disruptive=s.get("allow_disruptive", False),
    )


def repair_expected(actions):
    """``{orphans, properties}`` of the planned repair actions (what the transaction must change)."""
    expected = {}
    for item in actions or []:
        if item.get("status") != "planned":
            continue
        if item["id"] == "data_corruption.A.delete_orphans":
            expected["orphans"] = int(item["change"]["rows"])
        elif item["id"] == "data_corruption.B.reset_properties":
            expected["properties"] = int(item["change"]["rows"])
    return expected


def repair_queries(actions):
    """The queries of the repair task (one transaction): the DO block (with the statements the plan showed) and the
    SELECT of its counts."""
    expected = repair_expected(actions)
    sqls = {}
    for item in actions or []:
        if item.get("status") == "planned" and item["id"] == "data_corruption.A.delete_orphans":
            sqls["orphans"] = item["change"].get("sql")
        elif item.get("status") == "planned" and item["id"] == "data_corruption.B.reset_properties":
            sqls["properties"] = item["change"].get("sql")
    return [repair_block(expected, sqls), repair_result_sql()] if expected else []


def repair_error(message):
    """The reason of a failed repair, from postgresql_query's message (which repeats the whole query)."""
    message = " ".join(str(message or "the repair transaction failed").split())
    # the query text holds the same marker with a % placeholder: the error is the one with a number
    found = re.search(r"%s: ([a-z_. ]+: \d+ rows .*?rolled back)" % REPAIR_MARKER, message)
    if found:
        return found.group(1)
    found = re.search(r"' None: (.*?)(?:, query list: |$)", message)
    return (found.group(1) if found else message)[:300]


def repair_outcomes(actions, result, backup_outcome=None, check_mode=False):
    """``{action_id: {status, outcome, change}}`` of the repair actions from the postgresql_query result.

    ``result`` is the registered result (``failed``/``msg`` or ``query_all_results``); ``backup_outcome`` the
    backup action's outcome (the repair never runs without a verified backup).
    """
    ids = {
        "orphans": "data_corruption.A.delete_orphans",
        "properties": "data_corruption.B.reset_properties",
    }
    expected = repair_expected(actions)
    outcomes = {}
    if not expected:
        return outcomes
    if not backup_outcome or backup_outcome.get("status") != "applied":
        why = (backup_outcome or {}).get("outcome") or "the backup did not run"
        for key in expected:
            outcomes[ids[key]] = {
                "status": "skipped" if backup_outcome is None else "failed",
                "outcome": "not applied: no verified backup (%s)" % why,
            }
        return outcomes
    result = result or {}
    if check_mode:
        for key in expected:
            outcomes[ids[key]] = {"status": "planned", "outcome": "check mode: the repair transaction did not run"}
        return outcomes
    if result.get("skipped"):
        for key in expected:
            outcomes[ids[key]] = {"status": "skipped", "outcome": "not run"}
        return outcomes
    if result.get("failed") or "query_all_results" not in result:
        reason = repair_error(result.get("msg"))
        for key in expected:
            outcomes[ids[key]] = {
                "status": "failed",
                "outcome": "rolled back, nothing changed: %s" % reason,
                "change": {"rows_changed": 0, "rolled_back": True},
            }
        return outcomes
    rows = (result.get("query_all_results") or [[], [{}]])[-1]
    counts = rows[0] if rows else {}
    for key in expected:
        changed = counts.get(key)
        changed = int(changed) if changed not in (None, "") else None
        verb = "deleted" if key == "orphans" else "set to {}"
        outcomes[ids[key]] = {
            "status": "applied",
            "outcome": "%s rows %s in one transaction (the diagnosis counted %d)" % (changed, verb, expected[key]),
            "change": {"rows_changed": changed, "rolled_back": False},
        }
    return outcomes


def backup_outcome(result, check_mode=False):
    """The backup action's outcome from the pg_backup module's result."""
    result = result or {}
    if check_mode:
        return {"status": "planned", "outcome": "check mode: no backup written"}
    if result.get("failed") or not result.get("verified"):
        return {
            "status": "failed",
            "outcome": "backup failed or not verified: %s" % " ".join(str(result.get("msg") or "?").split())[:300],
            "change": {"backup": result.get("path"), "verified": False},
        }
    tables = result.get("tables") or {}
    counts = ", ".join("%s %s rows" % (name, info.get("rows")) for name, info in sorted(tables.items()))
    return {
        "status": "applied",
        "outcome": "backup %s verified (%s, %d TOC entries; %s) in %.1fs"
        % (
            result.get("path"),
            human_bytes(result.get("bytes")),
            result.get("toc_entries") or 0,
            counts or "no table counted",
            result.get("duration_s") or 0.0,
        ),
        "change": {
            "backup": result.get("path"),
            "manifest": result.get("manifest"),
            "format": "custom",
            "bytes": result.get("bytes"),
            "sha256": result.get("sha256"),
            "table_rows": {name: info.get("rows") for name, info in tables.items()},
            "verified": True,
        },
    }


def backup_findings(actions):
    """A ``data.backup`` finding naming the backup taken before the repair (evidence: path, SHA-256, rows)."""
    item = next((a for a in actions or [] if a.get("id") == "data_corruption.backup"), None)
    if item is None or item.get("status") not in ("applied", "failed"):
        return []
    change = item.get("change") or {}
    title = "A verified backup was taken before the repair"
    expected = "pg_dump custom format, pg_restore --list, row counts equal"
    if item["status"] == "applied":
        return [
            finding(
                "data.backup",
                title,
                "ok",
                change.get("backup"),
                expected,
                {
                    "backup": change.get("backup"),
                    "manifest": change.get("manifest"),
                    "bytes": change.get("bytes"),
                    "sha256": change.get("sha256"),
                    "table_rows": change.get("table_rows") or {},
                    "restore": "octoctl restore RUN_ID (or the role's restore entry point)",
                },
            )
        ]
    outcome = item.get("outcome") or ""
    if "not found on the PATH" in outcome or "psycopg2 is missing" in outcome:
        # the host lacks the PostgreSQL client tools: an environment problem (octoctl exits 3), not a bad backup
        error = {"kind": "missing_tool", "message": outcome[:300]}
        return [unknown("data.backup", title, expected, error, None, {"backup": change.get("backup")})]
    return [finding("data.backup", title, "problem", outcome, expected, {"backup": change.get("backup")})]


# --- restore ----------------------------------------------------------------------------------------------
def restore_plan(verified, settings):
    """``{findings, actions}`` of a restore from the pg_backup ``state=verified`` result of the backup."""
    s = settings
    verified = verified or {}
    path = verified.get("path")
    title = "The backup to restore is readable and complete"
    expected = "non-empty, pg_restore --list, row counts equal the manifest"
    if verified.get("failed") or not verified.get("verified"):
        message = " ".join(str(verified.get("msg") or "not verified").split())[:300]
        check = finding(
            "restore.backup",
            title,
            "problem",
            "not verified: %s" % message,
            expected,
            {"backup": path},
            "D",
        )
        item = action(
            "data_corruption.D.restore",
            "D",
            "restore %s from %s" % (", ".join(s["restore_tables"]), path),
            "postgres:%s:restore" % (s.get("database") or "database"),
            {"backup": path, "tables": list(s["restore_tables"])},
            "report",
            "L2: the backup cannot be restored (%s): pick another backup" % message,
        )
        return {"findings": [check], "actions": [item]}
    tables = verified.get("tables") or {}
    rows = {name: (tables.get(name) or {}).get("rows") for name in s["restore_tables"]}
    check = finding(
        "restore.backup",
        title,
        "ok",
        "%s (%s, %s)" % (path, human_bytes(verified.get("bytes")), ", ".join("%s %s rows" % kv for kv in rows.items())),
        expected,
        {
            "backup": path,
            "sha256": verified.get("sha256"),
            "created": (verified.get("manifest_data") or {}).get("created"),
            "run_id": (verified.get("manifest_data") or {}).get("run_id"),
            "rows": rows,
        },
    )
    item = action(
        "data_corruption.D.restore",
        "D",
        "restore %s exactly as in the backup" % ", ".join(s["restore_tables"]),
        "postgres:%s:restore" % (s.get("database") or verified.get("database") or "database"),
        {
            "backup": path,
            "tables": list(s["restore_tables"]),
            "table_rows": rows,
            "how": "one transaction: constraints as in the backup, TRUNCATE, COPY from the backup, sequences, "
            "row counts checked before COMMIT",
        },
        "planned",
        "replace the rows of %s with those of %s" % (", ".join(s["restore_tables"]), path),
        disruptive=True,
        destructive=True,
        apply="restore",
    )
    return {
        "findings": [check],
        "actions": gate(
            [item],
            dry_run=s.get("dry_run", False),
            approve=s.get("approve", False),
            allow_disruptive=s.get("allow_disruptive", False),
        ),
    }


def restore_outcome(result, check_mode=False):
    result = result or {}
    if check_mode:
        return {"status": "planned", "outcome": "check mode: not restored"}
    if result.get("failed") or not result.get("restored"):
        return {
            "status": "failed",
            "outcome": "restore failed and was rolled back: %s" % " ".join(str(result.get("msg") or "?").split())[:300],
        }
    tables = result.get("tables") or {}
    return {
        "status": "applied",
        "outcome": "restored %s in one transaction in %.1fs"
        % (
            ", ".join("%s (%s rows)" % (name, info.get("rows")) for name, info in sorted(tables.items())),
            result.get("duration_s") or 0.0,
        ),
        "change": {
            "table_rows": {name: info.get("rows") for name, info in tables.items()},
            "constraints_dropped": result.get("constraints_dropped") or [],
            "constraints_added": result.get("constraints_added") or [],
        },
    }


def restore_verification(result, verified):
    """Findings after the restore: each table's row count equals the backup's."""
    findings = []
    wanted = (verified or {}).get("tables") or {}
    got = ((result or {}).get("tables")) or {}
    for name in sorted(got or wanted):
        want = (wanted.get(name) or {}).get("rows")
        have = (got.get(name) or {}).get("rows")
        status = "ok" if have is not None and have == want else "problem"
        findings.append(
            finding(
                "restore.rows.%s" % name,
                "%s holds the backup's rows" % name,
                status,
                "%s rows" % have,
                "%s rows" % want,
                {"backup_rows": want, "rows": have},
                None if status == "ok" else "D",
            )
        )
    return findings


# --- prevention -------------------------------------------------------------------------------------------
def prevention(evidence, settings):
    """``{findings, actions, context}``: expected constraints (added NOT VALID, then VALIDATE), amcheck, and
    scheduled backups with retention (``schedule_state``: the backups on the host, the backup service)."""
    s = settings
    pg, integrity, error = _postgres(evidence)
    findings = []
    actions = []
    database = ((pg or {}).get("server") or {}).get("database") or s.get("database") or "database"
    states = constraints_state(integrity, s) if integrity is not None else []
    for expected in s["constraints"]:
        check = "prevent.constraint.%s.%s" % (expected["table"], expected["name"])
        title = "%s has %s %s" % (
            expected["table"],
            "the foreign key" if expected["type"] == "foreign_key" else "the check",
            expected["name"],
        )
        if integrity is None:
            findings.append(unknown(check, title, "present and validated", error, "C"))
            continue
        state = next(item for item in states if item["name"] == expected["name"] and item["table"] == expected["table"])
        bad = state["violations"]
        evidence_c = {
            "state": state["state"],
            "existing": state["existing"],
            "definition": state["definition"],
            "violating_rows": bad,
        }
        if state["state"] == "present":
            findings.append(
                finding(check, title, "ok", "present (%s)" % state["existing"], "present and validated", evidence_c)
            )
            continue
        status = "problem" if (state["state"] == "missing" or bad) else "warning"
        findings.append(
            finding(check, title, status, state["state"].replace("_", " "), "present and validated", evidence_c, "C")
        )
        add_sql, validate_sql = constraint_sql(expected, s["fk_on_delete"])
        name = state["existing"] or expected["name"]
        if state["state"] == "not_validated":
            validate_sql = "ALTER TABLE %s VALIDATE CONSTRAINT %s" % (table_name(expected["table"]), ident(name))
            add_sql = None
        validate = not bad
        steps = [sql for sql in (add_sql, validate_sql if validate else None) if sql]
        if not steps:
            actions.append(
                action(
                    "data_corruption.prevent.validate_%s" % name,
                    "C",
                    "validate %s.%s" % (expected["table"], name),
                    "postgres:%s:constraint:%s.%s" % (database, expected["table"], name),
                    {"sql": validate_sql, "violating_rows": bad},
                    "report",
                    "L2: %s rows break %s: run `octoctl fix data-corruption --approve` first, then prevent again"
                    % (bad, name),
                )
            )
            continue
        note = (
            "; not validated: %s rows break it - run `octoctl fix data-corruption --approve`, then prevent again" % bad
            if not validate
            else ""
        )
        actions.append(
            action(
                "data_corruption.prevent.add_%s" % expected["name"]
                if add_sql
                else "data_corruption.prevent.validate_%s" % name,
                "C",
                ("add %s.%s" % (expected["table"], expected["name"]))
                if add_sql
                else ("validate %s.%s" % (expected["table"], name)),
                "postgres:%s:constraint:%s.%s" % (database, expected["table"], name),
                {
                    "sql": ";\n".join(steps),
                    "add_sql": add_sql,
                    "validate_sql": validate_sql if validate else None,
                    "table": expected["table"],
                    "name": name,
                    "violating_rows": bad,
                },
                "planned",
                "ALTER TABLE on %s (NOT VALID takes a short lock, VALIDATE scans without blocking writes)%s"
                % (expected["table"], note),
                disruptive=True,
                apply="constraint",
            )
        )
    # amcheck available
    title = "amcheck is installed (index integrity can be checked)"
    if pg is None or not pg.get("ok"):
        findings.append(unknown("prevent.amcheck", title, "installed", error))
    else:
        version = ((pg.get("server") or {}).get("extensions") or {}).get("amcheck")
        findings.append(
            finding(
                "prevent.amcheck",
                title,
                "ok" if version else "warning",
                "amcheck %s" % version if version else "not installed",
                "installed",
                {"extensions": (pg.get("server") or {}).get("extensions") or {}},
            )
        )
        if not version:
            actions.append(
                action(
                    "data_corruption.prevent.report_amcheck",
                    "D",
                    "install amcheck",
                    "postgres:%s:extension:amcheck" % database,
                    {"sql": "CREATE EXTENSION amcheck"},
                    "report",
                    "L2: CREATE EXTENSION amcheck as a superuser (contrib package) so that index corruption shows",
                )
            )
    # scheduled backups
    findings.append(check_schedule(evidence, s))
    if findings[-1]["status"] != "ok":
        actions.append(schedule_action(findings[-1], s, database, evidence))
    actions = gate(
        actions,
        dry_run=s.get("dry_run", False),
        approve=s.get("approve", False),
        allow_disruptive=s.get("allow_disruptive", False),
    )
    return {"findings": findings, "actions": actions, "context": {"database": database}}


def check_schedule(evidence, s):
    title = "Backups are scheduled, verified and pruned (every %s, kept %s days)" % (
        _duration(s["backup_interval"]),
        s["backup_retention_days"],
    )
    expected = "a %s service running and a verified backup newer than %s" % (
        s["backup_service"],
        _duration(2 * int(s["backup_interval"])),
    )
    sched = schedule_state(evidence, s)
    if s["backup_schedule"] and not s["schedule_supported"]:
        return finding(
            "prevent.backups.scheduled",
            title,
            "warning",
            "not set up by this procedure on this platform",
            expected,
            {"note": "run a CronJob (pg_dump -Fc, pg_restore --list, the same retention)"},
        )
    if not s["backup_schedule"]:
        return finding(
            "prevent.backups.scheduled", title, "ok", "not wanted (data_corruption_backup_schedule)", expected
        )
    if sched is None:
        return unknown("prevent.backups.scheduled", title, expected, {"kind": "other", "message": "not checked"})
    if sched.get("error"):
        return unknown("prevent.backups.scheduled", title, expected, sched["error"], None, sched)
    newest = sched.get("newest") or {}
    fresh = newest.get("age_s") is not None and newest["age_s"] <= 2 * int(s["backup_interval"]) + 300
    running = bool(sched.get("running"))
    evidence_s = {
        "service": s["backup_service"],
        "running": running,
        "directory": sched.get("directory"),
        "count": sched.get("count"),
        "newest": newest,
        "newest_verified": sched.get("newest_verified"),
        "interval_s": int(s["backup_interval"]),
        "retention_days": s["backup_retention_days"],
        "keep": s["backup_keep"],
        "configured": sched.get("configured"),
    }
    if running and fresh and sched.get("newest_verified") and sched.get("configured", True):
        observed = "%s running; newest %s (%s old, %s)" % (
            s["backup_service"],
            newest.get("path"),
            _duration(newest.get("age_s")),
            human_bytes(newest.get("bytes")),
        )
        return finding("prevent.backups.scheduled", title, "ok", observed, expected, evidence_s)
    parts = []
    if not running:
        parts.append("no running %s service" % s["backup_service"])
    elif not sched.get("configured", True):
        parts.append("%s runs with other settings" % s["backup_service"])
    if not newest:
        parts.append("no scheduled backup in %s" % (sched.get("directory") or "the backup directory"))
    elif not fresh:
        parts.append("newest backup is %s old" % _duration(newest.get("age_s")))
    elif not sched.get("newest_verified"):
        parts.append("newest backup does not verify")
    return finding("prevent.backups.scheduled", title, "problem", "; ".join(parts), expected, evidence_s, None)


def schedule_action(check, s, database, evidence=None):
    if not s["schedule_supported"]:
        return action(
            "data_corruption.prevent.report_backups",
            None,
            "schedule verified backups",
            "backups:%s" % database,
            {"interval_s": int(s["backup_interval"]), "retention_days": s["backup_retention_days"]},
            "report",
            "L2: scheduled backups are set up on Compose only; on Kubernetes run a CronJob with pg_dump -Fc, "
            "pg_restore --list and the same retention",
        )
    if not s["scheduled_backup_dir"]:
        return action(
            "data_corruption.prevent.report_backups",
            None,
            "schedule verified backups",
            "backups:%s" % database,
            {},
            "report",
            "L2: set data_corruption_scheduled_backup_dir (or octollm_backup_dir in the inventory) and run prevent "
            "again",
        )
    item = action(
        "data_corruption.prevent.schedule_backups",
        None,
        "run the %s service: pg_dump -Fc every %s, verified, kept %s days (newest %s always)"
        % (s["backup_service"], _duration(s["backup_interval"]), s["backup_retention_days"], s["backup_keep"]),
        "compose:service:%s" % s["backup_service"],
        {
            "service": s["backup_service"],
            "directory": s["scheduled_backup_dir"],
            "interval_s": int(s["backup_interval"]),
            "retention_days": s["backup_retention_days"],
            "keep": s["backup_keep"],
            "before": check.get("observed"),
        },
        "planned",
        "add the service to the Compose override file and start it (no other service is touched)",
        apply="schedule_backups",
    )
    # what the task file writes: the service (it runs as the directory's owner, known once the directory exists)
    item["_service"] = backup_service(evidence, s)
    item["_override"] = s["compose_override"]
    return item


def _duration(seconds):
    if seconds is None:
        return "?"
    seconds = float(seconds)
    if seconds >= 86400 and seconds % 86400 == 0:
        return "%dd" % (seconds // 86400)
    if seconds >= 3600:
        return "%.1fh" % (seconds / 3600.0)
    if seconds >= 60:
        return "%.0fm" % (seconds / 60.0)
    return "%.0fs" % seconds


# --- the scheduled backups (Compose) ----------------------------------------------------------------------
# The backup service's loop: pg_dump -Fc, verified with pg_restore --list before it is renamed into place, then
# the retention (files older than RETENTION_DAYS go, the newest KEEP always stay). $$ is a literal $ for Compose.
BACKUP_SCRIPT = """set -u
umask 077
while :; do
  f=/backups/scheduled-$${PGDATABASE}-$$(date -u +%Y%m%dT%H%M%SZ).dump
  if pg_dump --format=custom --file="$$f.part" && [ -s "$$f.part" ] && pg_restore --list "$$f.part" >/dev/null
  then mv "$$f.part" "$$f" && echo "backup ok $$f"
  else rm -f "$$f.part"; echo "backup FAILED" >&2
  fi
  ls -1t /backups/scheduled-*.dump 2>/dev/null | tail -n +$$((KEEP + 1)) | while read -r old; do
    if [ -n "$$(find "$$old" -mmin +$$((RETENTION_DAYS * 1440)))" ]; then rm -f "$$old" && echo "pruned $$old"; fi
  done
  sleep "$$INTERVAL"
done"""
SCHEDULED_PATTERN = "scheduled-*.dump"


def _postgres_record(evidence, s):
    """The PostgreSQL service's container (containers evidence): its image and network are the backup service's."""
    containers = ((evidence or {}).get("containers") or {}).get("containers") or []
    return next((c for c in containers if c.get("service") == s["postgres_service"]), {})


def _backups(evidence):
    return ((evidence or {}).get("postgres") or {}).get("backups")


def backup_service(evidence, s, owner=None):
    """The backup service's Compose definition: pg_dump of the server's image (or ``backup_image``), on its network,
    as the application's user with a pgpass file beside the backups, run as ``owner`` (default the backup
    directory's owner, else root)."""
    record = _postgres_record(evidence, s)
    host_network = (record.get("network_mode") or "host") == "host"
    if owner is None:
        listing = (_backups(evidence) or {}).get("directory") or {}
        owner = "%s:%s" % (listing["uid"], listing["gid"]) if listing.get("exists") else "0:0"
    definition = {
        "image": s["backup_image"] or record.get("image") or "",
        "pull_policy": "missing",
        "restart": "unless-stopped",
        "user": owner,
        "entrypoint": ["/bin/sh", "-c"],
        "command": [BACKUP_SCRIPT],
        "environment": {
            "PGHOST": s["pg_host"] if host_network else s["postgres_service"],
            "PGPORT": str(s["pg_port"]),
            "PGDATABASE": s["database"],
            "PGUSER": s["pg_user"],
            "PGPASSFILE": "/backups/.pgpass",
            "PGAPPNAME": "octollm-scheduled-backup",
            "INTERVAL": str(s["backup_interval"]),
            "RETENTION_DAYS": str(s["backup_retention_days"]),
            "KEEP": str(s["backup_keep"]),
        },
        "volumes": ["%s:/backups" % s["scheduled_backup_dir"]],
        "labels": {"org.octollm.remediation.procedure": "data_corruption"},
        "logging": {"driver": "json-file", "options": {"max-size": "1m", "max-file": "2"}},
    }
    if host_network:
        definition["network_mode"] = "host"
    return definition


def schedule_state(evidence, s):
    """The scheduled backups as the prevention judges them: the service running, its definition in the override
    file equal to the wanted one, the newest backup (age, size) and whether it verifies; None when not gathered."""
    backups = _backups(evidence)
    raw = (evidence or {}).get("containers")
    if backups is None and raw is None:
        return None
    listing = (backups or {}).get("directory") or {}
    service = (backups or {}).get("service") or {}
    newest = listing.get("newest") or {}
    running = (((raw or {}).get("services") or {}).get(s["backup_service"]) or {}).get("running") or 0
    wanted = digest(backup_service(evidence, s))
    return {
        "directory": s["scheduled_backup_dir"] or None,
        "count": listing.get("count") or 0,
        "newest": {"path": newest["path"], "bytes": newest.get("bytes"), "age_s": newest.get("age_s")}
        if newest
        else {},
        "newest_verified": bool(listing.get("newest_verified")),
        "running": running > 0,
        "configured": bool(service.get("sha256")) and service["sha256"] == wanted,
        "error": (raw or {}).get("error") if not (raw or {}).get("ok") else None,
    }


def digest(definition):
    """The SHA-256 the ``postgres`` evidence gives of a service's definition (``module_utils/pg_dumpfile.py``)."""
    from ansible_collections.octollm.remediation.plugins.module_utils.pg_dumpfile import definition_digest

    return definition_digest(definition)


# --- restore ----------------------------------------------------------------------------------------------
def restore_path(restore_from, host):
    """The backup to restore on ``host``: ``restore_from`` is a path, or ``{host: path}`` (octoctl restore RUN_ID)."""
    if isinstance(restore_from, dict):
        return str(restore_from.get(host) or "")
    return str(restore_from or "")


def restore_verified(evidence, s):
    """The verification of the backup to restore (``postgres.backups.files``), as pg_backup state=verified gives it."""
    path = s["restore_path"]
    if not path:
        return {"failed": True, "msg": "data_corruption_restore_from names no backup for %s" % s.get("host")}
    if path.startswith("pod:"):
        return {
            "failed": True,
            "path": path,
            "msg": "%s is a backup inside a pod (left there by an earlier version, without a manifest); it is not "
            "restored from there. Copy it out (kubectl cp) and restore it by hand with pg_restore --clean "
            "--single-transaction; backups taken now are streamed to the controller with a manifest and restore like "
            "Compose's" % path,
        }
    pg = (evidence or {}).get("postgres") or {}
    found = ((pg.get("backups") or {}).get("files") or {}).get(path)
    if found is None:
        error = pg.get("error") or {"message": "the backup was not verified (no evidence)"}
        return {"failed": True, "path": path, "msg": error.get("message")}
    return found


def restore_diagnosis(evidence, s):
    """A restore judged like a diagnosis: the backup's verification (``restore.backup``) and scenario D."""
    planned = restore_plan(restore_verified(evidence, s), s)
    findings = planned["findings"]
    return {
        "findings": findings,
        "scenarios": [
            {
                "id": "D",
                "title": SCENARIOS["D"],
                "holds": True,
                "reason": "restore requested from %s" % s["restore_path"],
            }
        ],
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": {"restore": True},
    }


def restore_checked(findings, actions):
    """After an applied restore: each table holds the backup's rows (the restore's counts against the backup's)."""
    done = next((a for a in actions if a["id"] == "data_corruption.D.restore" and a["status"] == "applied"), None)
    if done is None:
        return []
    backup = next((f for f in findings if f["check"] == "restore.backup"), None) or {}
    wanted = ((backup.get("evidence") or {}).get("rows")) or {}
    got = (done.get("change") or {}).get("table_rows") or {}
    return restore_verification(
        {"tables": {name: {"rows": rows} for name, rows in got.items()}},
        {"tables": {name: {"rows": rows} for name, rows in wanted.items()}},
    )


# --- the procedure ------------------------------------------------------------------------------------
def default_backup_dir(run_dir):
    """Where the backup before a repair goes when data_corruption_backup_dir is empty: the run's directory
    (octoctl's octollm_run_dir), else ~/.local/state/octollm-remediation/backups on the controller's side."""
    if run_dir:
        return "%s/backups" % run_dir
    state = os.environ.get("XDG_STATE_HOME") or "%s/.local/state" % os.environ.get("HOME", "")
    return "%s/octollm-remediation/backups" % state


TASK_STATUSES_MARK = "{task_statuses}"


def on_tables(constraint, sql, context):
    """An expected constraint (its tables named by meaning) on the deployment's tables; ``{task_statuses}`` in a
    check's expression becomes the schema's task status values, quoted."""
    item = dict(constraint)
    item["table"] = sql.get(item.get("table"), item.get("table"))
    if isinstance(item.get("references"), dict):
        refs = dict(item["references"])
        refs["table"] = sql.get(refs.get("table"), refs.get("table"))
        item["references"] = refs
    expression = item.get("expression")
    if isinstance(expression, str) and TASK_STATUSES_MARK in expression:
        statuses = (context.schema.get("task_statuses") or {}).values()
        quoted = ", ".join("'%s'" % str(value).replace("'", "''") for value in statuses)
        item["expression"] = expression.replace(TASK_STATUSES_MARK, quoted)
    return item


class DataCorruption(Procedure):
    name = PROCEDURE
    title = "Data Corruption"
    scenarios = SCENARIOS
    modules = {"compose": "data_corruption", "kubernetes": "data_corruption_kubernetes"}

    def settings(self, role_settings, context):
        s = super(DataCorruption, self).settings(role_settings, context)
        postgres = context.inventory.get("postgres") or {}
        s["database"] = postgres.get("database") or "octollm"
        s["pg_host"] = postgres.get("host") or "127.0.0.1"
        s["pg_port"] = int(postgres.get("port") or 5432)
        s["pg_user"] = postgres.get("user") or "octollm"
        s["backup_dir"] = s["backup_dir"] or default_backup_dir(context.get("run_dir"))
        s["host"] = context.get("host")
        s["restore_path"] = restore_path(s["restore_from"], s["host"])
        s["restoring"] = bool(s["restore"] or s["restore_from"])
        s["schedule_supported"] = not context.kubernetes
        # the deployment's schema (docs/deployment.md): the tables by meaning, the search path and status values; the
        # role's settings name tables by meaning, here put on the deployment's tables (in SQL: qualified by the
        # schema's first path element when the path is not the seed's)
        s["schema"] = dict(context.schema)
        s["tables"] = {meaning: context.table(meaning) for meaning in (TASKS, ENTITIES, RELATIONSHIPS)}
        sql = _sql_tables(s)
        s["backup_tables"] = [sql.get(name, name) for name in s["backup_tables"]]
        s["restore_tables"] = [sql.get(name, name) for name in s["restore_tables"]]
        s["constraints"] = [on_tables(item, sql, context) for item in s["constraints"]]
        if context.kubernetes:
            now = datetime.datetime.now(datetime.timezone.utc)
            s["namespace"] = context.inventory["k8s"]["namespace"]
            # names the backup in the pod: the run's id keeps the plan a person approved equal to the one applied
            s["stamp"] = context.get("run_id") or now.strftime("%Y%m%dT%H%M%SZ")
            s["now"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            files = (context.inventory.get("compose") or {}).get("files") or []
            s["compose_override"] = s["compose_override"] or next((f for f in files if "override" in f), "")
        return s

    def needs(self, settings, context):
        s = settings
        if s["restoring"]:
            if not s["restore_path"] or s["restore_path"].startswith("pod:"):
                return {}
            # the rows in the file are counted in the plan (dry run, approval); the restore counts them again
            count = s["dry_run"] or not (s["approve"] or s["allow_disruptive"])
            backups = {"files": [s["restore_path"]], "tables": list(s["restore_tables"]), "count_rows": bool(count)}
            if s["bin_dir"]:
                backups["bin_dir"] = s["bin_dir"]
            return {"postgres": {"backups": backups, "connections": False, "ping": False}}
        postgres = {
            "integrity": True,
            "amcheck": True,
            "sample_limit": s["sample_limit"],
            "statement_timeout_ms": s["query_timeout"] * 1000,
        }
        if s.get("schema"):
            postgres["schema"] = s["schema"]
        need = {"postgres": postgres}
        if context.kubernetes:
            need["kubernetes"] = {"objects": k8s_objects(s)}
        elif context.get("phase") == "prevent":
            # the scheduled backups: the backup service and the PostgreSQL service's image, the backups, the override
            need["containers"] = {"services": [s["postgres_service"], s["backup_service"]]}
            backups = {"directory": s["scheduled_backup_dir"], "pattern": SCHEDULED_PATTERN, "verify_newest": True}
            if s["compose_override"]:
                backups["compose_service"] = {"file": s["compose_override"], "name": s["backup_service"]}
            if s["bin_dir"]:
                backups["bin_dir"] = s["bin_dir"]
            if s["scheduled_backup_dir"] or s["compose_override"]:
                postgres["backups"] = {k: v for k, v in backups.items() if v}
        return need

    def evidence_timeout(self, settings, context):
        # the integrity queries on a large database, or the verification of a large backup, take longer
        if settings["restoring"]:
            return settings["backup_timeout"]
        return settings["query_timeout"] + 30

    def diagnose(self, evidence, settings, context, previous=None, applied=()):
        if settings["restoring"]:
            return restore_diagnosis(evidence, settings)
        return diagnose(evidence, settings, previous, tuple(applied))

    def plan(self, diagnosis, evidence, settings, context):
        if settings["restoring"]:
            return restore_plan(restore_verified(evidence, settings), settings)["actions"]
        if context.kubernetes:
            return self.module(context).plan(diagnosis, evidence, settings)
        return plan(diagnosis, settings)

    def verification(self, findings, actions, settings, context):
        if settings["restoring"]:
            return list(findings) + restore_checked(findings, actions)
        return list(findings) + backup_findings(actions)


def k8s_objects(s):
    """The Kubernetes API reads (stack_evidence kind ``kubernetes``): the PostgreSQL pods (the backup runs in one),
    its StatefulSet, the PDBs and the CronJobs (scheduled backups)."""
    return {
        "data_corruption_pods": {"kind": "Pod", "label_selector": "app=%s" % s["k8s_db_label"]},
        "data_corruption_workload": {"kind": "StatefulSet", "api_version": "apps/v1", "name": s["k8s_db_workload"]},
        "data_corruption_pdbs": {"kind": "PodDisruptionBudget", "api_version": "policy/v1"},
        "data_corruption_cronjobs": {"kind": "CronJob", "api_version": "batch/v1"},
    }


PROCEDURE = DataCorruption()
