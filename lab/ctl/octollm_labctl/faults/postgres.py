"""Faults of PostgreSQL: its connections held, its rows (stuck tasks, corrupted data), its indexes, and the
orchestrator's route to it.

Each acts through PostgreSQL itself (SQL as its superuser, another client's sessions) or the orchestrator's
configuration. The clients that must keep running (``helpers/``) run in containers of their own, from the lab's
image, with ``helpers/`` mounted on ``/faults``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from octollm_labctl.errors import Kind, LabError
from octollm_labctl.faults.base import Fault
from octollm_labctl.faults.common import override_env, pg_admin
from octollm_labctl.lab import Lab, run

COMPONENT = "postgres"
HELPERS = Path(__file__).resolve().parent / "helpers"
PG_HOLDER = "octollm-fault-pg-connections"


# ---- PostgreSQL: every non-reserved connection held by another client ----------------------------
def _pg_connections_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    mode = target or "idle"
    if mode not in ("idle", "idle-in-transaction"):
        raise LabError("pg-connections target is 'idle' or 'idle-in-transaction'", Kind.USAGE)
    _run_helper(lab, PG_HOLDER, "pg-connections", "pg_hold.py", {"HOLD_MODE": mode})
    line = _wait_helper_line(PG_HOLDER, "holding ", timeout=60)
    return {"mode": mode, "held": int(line.split()[1])}


def _pg_connections_heal(lab: Lab, record: dict[str, Any]) -> None:
    run(["docker", "rm", "-f", PG_HOLDER], check=False)


def _run_helper(lab: Lab, name: str, fault: str, script: str, env: dict[str, str]) -> None:
    """Start a fault's helper process in its own container (host network, the lab's image and settings)."""
    run(["docker", "rm", "-f", name], check=False)
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    run(
        [
            "docker", "run", "-d", "--name", name, "--network", "host", "--label", f"octollm.fault={fault}",
            "--env-file", str(lab.state / "lab.env"), "--env-file", str(lab.state / "secrets.env"), *env_args,
            "-v", f"{HELPERS}:/faults:ro", lab.settings.image, "python3", f"/faults/{script}",
        ]
    )


def _wait_helper_line(name: str, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = run(["docker", "logs", name], check=False)
        for line in (proc.stdout + proc.stderr).splitlines():
            if line.startswith(prefix):
                return line
        time.sleep(0.5)
    message = f"fault helper {name} did not report {prefix.strip()!r} within {timeout:.0f}s"
    raise LabError(message, Kind.INTERNAL)


# ---- stuck tasks: pending tasks whose constraints exclude every arm (SQL, as an older router left them) ---
STUCK_PREFIX = "task-fault-stuck-"
STUCK_CONSTRAINTS = ["must be handled by the coder-arm", "only the judge-arm may see it"]


def _stuck_tasks_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    count = int(target or 3)
    conn = pg_admin(lab)
    try:
        with conn, conn.cursor() as cur:
            for number in range(count):
                task_id = f"{STUCK_PREFIX}{number}"
                cur.execute(
                    "INSERT INTO tasks (task_id, goal, constraints, priority, status, created_at, updated_at)"
                    " VALUES (%s, %s, %s::jsonb, 'high', 'pending', now() - interval '10 minutes',"
                    " now() - interval '10 minutes') ON CONFLICT (task_id) DO NOTHING",
                    (task_id, f"Write a Python function to deduplicate records (batch {number})",
                     json.dumps(STUCK_CONSTRAINTS)),
                )
                cur.execute(
                    "INSERT INTO action_log (task_id, action, arm, details, timestamp) VALUES"
                    " (%s, 'failed', NULL, %s::jsonb, now() - interval '10 minutes')",
                    (task_id, json.dumps({"reason": "no arm satisfies the constraints", "task_status": "pending"})),
                )
    finally:
        conn.close()
    return {"tasks": count, "prefix": STUCK_PREFIX}


def _stuck_tasks_heal(lab: Lab, record: dict[str, Any]) -> None:
    conn = pg_admin(lab)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM action_log WHERE task_id LIKE %s", (STUCK_PREFIX + "%",))
            cur.execute("DELETE FROM tasks WHERE task_id LIKE %s", (STUCK_PREFIX + "%",))
    finally:
        conn.close()


# ---- tasks the faults left running ------------------------------------------------------------------------------
# A task whose dispatch was lost (the orchestrator stopped, or PostgreSQL was away when it would have written the
# outcome) stays "running": Task Routing finds it (issue 15). The faults' outages catch the load generator's tasks
# that way, so healing the lab closes them: those without progress for LOST_AFTER_SECONDS, or since before the
# orchestrator's container started, are marked failed, as an operator would.
LOST_AFTER_SECONDS = 60
LOST_TASKS_SQL = """
UPDATE tasks t SET status = 'failed', updated_at = now(),
       result = '{"error": "dispatch lost in a lab fault (closed when the lab was healed)"}'
WHERE t.status = 'running'
  AND greatest(t.updated_at, (SELECT max(l.timestamp) FROM action_log l WHERE l.task_id = t.task_id))
      < greatest(now() - make_interval(secs => %(after)s), %(started)s::timestamptz)
RETURNING t.task_id
"""


def close_lost_tasks(lab: Lab) -> list[str]:
    """Close the tasks that outages and restarts left running (best effort: nothing when PostgreSQL or Docker does
    not answer); their ids."""
    import contextlib

    from octollm_labctl.faults.common import containers_of, inspect

    started = "-infinity"
    with contextlib.suppress(LabError, OSError, ValueError, KeyError, IndexError):
        started = inspect(containers_of(lab, "orchestrator")[0])["State"]["StartedAt"]
    try:
        conn = pg_admin(lab)
    except Exception:  # PostgreSQL away: nothing to close now
        return []
    try:
        with conn, conn.cursor() as cur:
            cur.execute(LOST_TASKS_SQL, {"after": LOST_AFTER_SECONDS, "started": started})
            return [row[0] for row in cur.fetchall()]
    except Exception:  # best effort
        return []
    finally:
        conn.close()


# ---- data corruption: entities that relationships point at are deleted (orphans at both ends) and some ------
# entities.properties are not JSON objects (arrays, strings, numbers, JSON null, SQL NULL) - through real SQL. The
# record keeps every row it touched, so that heal puts back exactly what was there (whether or not a fix ran).
CORRUPT_INVALID = ["'[1, 2, 3]'::jsonb", "'\"a string\"'::jsonb", "'42'::jsonb", "'null'::jsonb", "NULL",
                   "'[]'::jsonb", "'true'::jsonb"]
CORRUPT_REL_COLUMNS = "relationship_id, from_entity_id, to_entity_id, relationship_type, properties, created_at"
CORRUPT_ENT_COLUMNS = "entity_id, entity_type, name, properties, access_count, created_at"


def _rows(cur: Any, sql: str, params: Any) -> list[dict[str, Any]]:
    cur.execute(f"SELECT coalesce(json_agg(row_to_json(x)), '[]') FROM ({sql}) x", params)
    return list(cur.fetchone()[0])


def _data_corruption_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    conn = pg_admin(lab)
    try:
        return corrupt_data(conn, int(target or 6))
    finally:
        conn.close()


def corrupt_data(conn: Any, count: int) -> dict[str, Any]:
    """The data-corruption fault on any database with the lab's schema (bench/data_corruption.py uses its own)."""
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM entities), (SELECT count(*) FROM relationships)")
            total, relationships_before = cur.fetchone()
            if total < 10 * count:
                raise LabError(f"the lab has {total} entities: seed it first", Kind.USAGE)
            # entities spread over the table that are both the source and the target of relationships
            cur.execute(
                "SELECT e.entity_id FROM entities e WHERE e.entity_id %% %s = 7"
                " AND EXISTS (SELECT 1 FROM relationships r WHERE r.from_entity_id = e.entity_id)"
                " AND EXISTS (SELECT 1 FROM relationships r WHERE r.to_entity_id = e.entity_id)"
                " ORDER BY e.entity_id LIMIT %s",
                (max(1, total // (2 * count)), count),
            )
            doomed = [row[0] for row in cur.fetchall()]
            entities = _rows(cur, f"SELECT {CORRUPT_ENT_COLUMNS} FROM entities WHERE entity_id = ANY(%s)", (doomed,))
            orphans = _rows(
                cur,
                f"SELECT {CORRUPT_REL_COLUMNS} FROM relationships"
                " WHERE from_entity_id = ANY(%s) OR to_entity_id = ANY(%s)",
                (doomed, doomed),
            )
            cur.execute(
                "SELECT entity_id FROM entities WHERE entity_id %% %s = 3 AND NOT entity_id = ANY(%s)"
                " ORDER BY entity_id LIMIT %s",
                (max(1, total // (3 * len(CORRUPT_INVALID))), doomed, 2 * len(CORRUPT_INVALID)),
            )
            spoiled_ids = [row[0] for row in cur.fetchall()]
            spoiled = _rows(cur, "SELECT entity_id, properties FROM entities WHERE entity_id = ANY(%s)",
                            (spoiled_ids,))
            cur.execute("DELETE FROM entities WHERE entity_id = ANY(%s)", (doomed,))
            for index, entity_id in enumerate(spoiled_ids):
                value = CORRUPT_INVALID[index % len(CORRUPT_INVALID)]
                cur.execute(f"UPDATE entities SET properties = {value} WHERE entity_id = %s", (entity_id,))
    except Exception as exc:
        if "violates foreign key constraint" in str(exc) or "violates check constraint" in str(exc):
            raise LabError(f"the lab's constraints refuse the corruption (prevention applied?): {exc}",
                           Kind.USAGE) from exc
        raise
    from_missing = sum(1 for r in orphans if r["from_entity_id"] in doomed)
    to_missing = sum(1 for r in orphans if r["to_entity_id"] in doomed)
    return {"deleted_entities": entities, "orphaned_relationships": orphans, "invalid_properties": spoiled,
            "summary": {"entities_deleted": len(entities), "orphans": len(orphans), "from_missing": from_missing,
                        "to_missing": to_missing, "invalid_properties": len(spoiled),
                        "entities_before": total, "relationships_before": relationships_before}}


def _data_corruption_heal(lab: Lab, record: dict[str, Any]) -> None:
    conn = pg_admin(lab)
    try:
        uncorrupt_data(conn, record)
    finally:
        conn.close()


def uncorrupt_data(conn: Any, record: dict[str, Any]) -> None:
    """Put back exactly the rows corrupt_data's record names (whether or not a fix ran meanwhile)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO entities ({CORRUPT_ENT_COLUMNS}) SELECT {CORRUPT_ENT_COLUMNS}"
            " FROM json_populate_recordset(NULL::entities, %s::json) ON CONFLICT (entity_id) DO NOTHING",
            (json.dumps(record.get("deleted_entities") or []),),
        )
        cur.execute(
            f"INSERT INTO relationships ({CORRUPT_REL_COLUMNS}) SELECT {CORRUPT_REL_COLUMNS}"
            " FROM json_populate_recordset(NULL::relationships, %s::json)"
            " ON CONFLICT (relationship_id) DO NOTHING",
            (json.dumps(record.get("orphaned_relationships") or []),),
        )
        cur.execute(
            "UPDATE entities e SET properties = s.properties"
            " FROM json_populate_recordset(NULL::entities, %s::json) s WHERE e.entity_id = s.entity_id",
            (json.dumps(record.get("invalid_properties") or []),),
        )


# ---- missing indexes on large tables, under a read load that needs them (High Latency) ---------------------
SEQSCAN_LOAD = "octollm-fault-pg-seqscan-load"
SEED_TASK_PREFIX = "task-fault-history-"
LATENCY_INDEXES = {"idx_tasks_created_at": "tasks (created_at)", "idx_entities_type": "entities (entity_type)"}


def _missing_index_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    rows = int(target or 150000)
    conn = pg_admin(lab)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            # enough history that a sequential scan of tasks is measurably slow (completed tasks, last 30 days)
            cur.execute(
                "INSERT INTO tasks (task_id, goal, status, assigned_arm, created_at, updated_at) "
                "SELECT %s || g, 'historical task ' || g, 'completed', 'planner-arm', "
                "now() - make_interval(secs => 600 + g * 17), now() - make_interval(secs => 600 + g * 17) "
                "FROM generate_series(1, %s) AS g ON CONFLICT (task_id) DO NOTHING",
                (SEED_TASK_PREFIX, rows),
            )
            for name in LATENCY_INDEXES:
                cur.execute(f"DROP INDEX IF EXISTS {name}")
            cur.execute("ANALYZE tasks")
            cur.execute("ANALYZE entities")
    finally:
        conn.close()
    _run_helper(lab, SEQSCAN_LOAD, "pg-missing-index", "pg_seqscan_load.py", {})
    _wait_helper_line(SEQSCAN_LOAD, "running", timeout=60)
    return {"dropped": sorted(LATENCY_INDEXES), "seeded_tasks": rows}


def _missing_index_heal(lab: Lab, record: dict[str, Any]) -> None:
    run(["docker", "rm", "-f", SEQSCAN_LOAD], check=False)
    conn = pg_admin(lab)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("DELETE FROM tasks WHERE task_id LIKE %s", (SEED_TASK_PREFIX + "%",))
            for name, definition in LATENCY_INDEXES.items():
                cur.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")
            cur.execute("ANALYZE tasks")
            cur.execute("ANALYZE entities")
            # the load's statistics (slow while the indexes were missing) go too, as before the fault
            cur.execute(
                "SELECT pg_stat_statements_reset(userid, dbid, queryid) FROM pg_stat_statements "
                "WHERE query LIKE '%%FROM tasks WHERE created_at > now()%%' "
                "OR query LIKE '%%FROM entities WHERE entity_type =%%'"
            )
    finally:
        conn.close()


# ---- pg-partition: the orchestrator cannot reach PostgreSQL while PostgreSQL answers everyone else -------------
# Host networking has no Compose network to cut: the orchestrator's route to the database goes to another loopback
# address where nothing listens (POSTGRES_HOST in its override environment, container recreated): every connection
# is refused, as behind a partition.
PARTITION_HOST = "127.0.0.2"


def _pg_partition_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    if lab.profile.settings_prefix:  # the minimal profile's orchestrator takes one database URL, a secret
        lab.set_database_url(PARTITION_HOST)
    else:
        override_env(lab, "orchestrator", {"POSTGRES_HOST": PARTITION_HOST})
    lab.compose("up", "-d", "--no-deps", "orchestrator", timeout=180)  # not --wait: its /health answers 503 now
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen("http://127.0.0.1:8000/health", timeout=5).close()
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                break
        except OSError:
            pass
        time.sleep(1)
    return {"service": "orchestrator", "postgres_host": PARTITION_HOST}


def _pg_partition_heal(lab: Lab, record: dict[str, Any]) -> None:
    if lab.profile.settings_prefix:
        lab.set_database_url()
    override_env(lab, "orchestrator", None)
    lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)


FAULTS = (
    Fault("pg-connections", COMPONENT, "another client holds every non-reserved PostgreSQL connection (idle or idle "
          "in tx)",
          _pg_connections_inject, _pg_connections_heal, "idle"),
    Fault("stuck-tasks", COMPONENT, "pending tasks older than the threshold whose constraints exclude every arm (SQL; "
          "target: how many, default 3)",
          _stuck_tasks_inject, _stuck_tasks_heal),
    Fault("data-corruption", COMPONENT, "delete entities that relationships point at (orphans at both ends) and write "
          "entities.properties that are not objects (array, string, number, null, NULL); target: how many "
          "entities, default 6",
          _data_corruption_inject, _data_corruption_heal),
    Fault("pg-missing-index", COMPONENT, "drop idx_tasks_created_at and idx_entities_type, seed historical tasks "
          "(target: how many, default 150000) and run a read load that sequential-scans them",
          _missing_index_inject, _missing_index_heal),
    Fault("pg-partition", COMPONENT, "the orchestrator's database host points at a loopback address where nothing "
          "listens (override environment, recreated): it cannot reach PostgreSQL, which answers everyone else",
          _pg_partition_inject, _pg_partition_heal),
)
