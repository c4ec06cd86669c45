"""Data Corruption on a data set large enough to matter: diagnosis, backup, repair, restore and a killed run.

    .venv/bin/python bench/data_corruption.py [--entities 1000000] [--orphan-entities 50] [--json FILE]

Needs the lab up (`octoctl lab up`) and nobody else injecting faults meanwhile (hold /tmp/octollm-lab.lock).

The data set lives in its own database on the lab's PostgreSQL server, ``octollm_bench`` (the lab's schema, copied
with pg_dump --schema-only; --entities entities and two relationships each, generated server-side with
generate_series, indexes built after the load). It is loaded once and kept: a marker table records its size and the
checksums of the clean set, and every run ends by putting the injected rows back and checking those checksums, so
the next run reuses it (a run that was killed leaves the marker "dirty" and the next one reloads). The lab's own
``octollm`` database - which other procedures' faults and the lab's writers use - keeps its standard size. Nothing
connects to ``octollm_bench`` but this script and the octoctl runs it starts (checked before each measurement), so
the checksums are taken on a quiesced database.

Through octoctl, with an inventory that is the lab's with ``octollm_postgres.database: octollm_bench``:

0. ``octoctl fix data-corruption --dry-run``: the statements and the exact counts, from read-only queries (no row
   is deleted or updated, not even in a rolled-back transaction: the tables' n_tup_del/n_tup_upd do not move);
1. ``octoctl fix data-corruption --approve``: the diagnosis (read-only counts), the verified backup and the
   one-transaction repair; the rows not injected keep their checksum, exactly the injected rows change;
2. ``octoctl restore RUN_ID --approve``: every row (and the sequence) is back as before the fix;
3. a killed run: ``octoctl fix`` is killed (SIGKILL to it and every process under it, down to the module that
   holds the database connection) while its repair transaction waits on a row lock held by this script, after
   deleting the orphans inside it; the data is as it was.

Prints the timings (load, diagnosis, backup, repair, restore), also written as JSON with --json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("entities", "relationships")
LAB_DB = "octollm"
BENCH_DB = "octollm_bench"
MARKER = "octollm_bench_dataset"

# --- the lab's database -------------------------------------------------------------------------------
def connect(lab: Any, dbname: str = LAB_DB) -> Any:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, dbname=dbname, user="postgres",
                            password=lab.secret("postgres_admin_password"), connect_timeout=5,
                            application_name="octollm-bench")
    conn.autocommit = True
    return conn


def query(lab: Any, sql: str, params: Any = None, dbname: str = LAB_DB) -> list[tuple[Any, ...]]:
    conn = connect(lab, dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def query_none(lab: Any, sql: str, params: Any = None, dbname: str = LAB_DB) -> None:
    conn = connect(lab, dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
    finally:
        conn.close()


def checksums(lab: Any, skip_relationships: list[int] | None = None,
              skip_entities: list[int] | None = None, dbname: str = LAB_DB) -> dict[str, Any]:
    """Row count and an order-independent checksum of every row (all columns) of both tables, minus the given
    ids (the sum of a 64-bit hash of each row's text, which includes its id); the relationships' sequence and the
    tables' constraints. One scan per table, no sort: about a second per million rows here."""
    rows = query(
        lab,
        "SELECT (SELECT count(*) FROM entities WHERE NOT entity_id = ANY(%(ents)s)),"
        " (SELECT sum(hashtextextended(e::text, 0)) FROM entities e WHERE NOT entity_id = ANY(%(ents)s)),"
        " (SELECT count(*) FROM relationships WHERE NOT relationship_id = ANY(%(rels)s)),"
        " (SELECT sum(hashtextextended(r::text, 0)) FROM relationships r"
        "   WHERE NOT relationship_id = ANY(%(rels)s)),"
        " (SELECT last_value FROM relationships_relationship_id_seq),"
        " (SELECT string_agg(conname || ':' || pg_get_constraintdef(oid), ';' ORDER BY conname) FROM pg_constraint"
        "   WHERE conrelid IN ('entities'::regclass, 'relationships'::regclass))",
        {"ents": skip_entities or [], "rels": skip_relationships or []},
        dbname,
    )[0]
    return {"entities": rows[0], "entities_sum": str(rows[1]), "relationships": rows[2],
            "relationships_sum": str(rows[3]), "sequence": rows[4], "constraints": rows[5]}


def _collection_loader() -> None:
    """Make ``ansible_collections.octollm.remediation`` importable from <repo>/.collections (once)."""
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    if any(isinstance(finder, _AnsibleCollectionFinder) for finder in sys.meta_path):
        return
    collections = ROOT / ".collections"
    if not (collections / "ansible_collections" / "octollm" / "remediation").exists():
        subprocess.run([str(ROOT / "collection" / "dev-link.sh"), str(collections)], check=True, capture_output=True)
    _AnsibleCollectionFinder(paths=[str(collections)], scan_sys_paths=False)._install()


def _backup_module(lab: Any, path: Path, **params: Any) -> Any:
    """The collection's pg_backup module, called directly (a stand-in for AnsibleModule)."""
    _collection_loader()
    from ansible_collections.octollm.remediation.plugins.modules import pg_backup

    values = dict(state="dumped", path=str(path), manifest=None, tables=list(TABLES), verify_rows=True,
                  login_host="127.0.0.1", login_port=5432, login_db=LAB_DB, login_user="postgres",
                  login_password=lab.secret("postgres_admin_password"), ssl_mode="prefer", bin_dir=None,
                  lock_timeout_ms=10000, timeout=1800, run_id=None, label="bench snapshot")
    values.update(params)

    class Module:
        check_mode = False

        def __init__(self) -> None:
            self.params = values

        @staticmethod
        def get_bin_path(name: str) -> str | None:
            return shutil.which(name)

    return pg_backup.Backup(Module())


def snapshot(lab: Any, path: Path) -> dict[str, Any]:
    return _backup_module(lab, path).dumped()


def put_back(lab: Any, path: Path) -> dict[str, Any]:
    return _backup_module(lab, path).restored()


@contextlib.contextmanager
def quiesced(lab: Any) -> Any:
    """The lab's writers paused: loadgen drives every write the application makes (tasks, action_log); the
    orchestrator only reads entities. Unpaused on the way out, whatever happens."""
    from octollm_labctl.lab import run as run_cmd

    ids = run_cmd(["docker", "ps", "-q", "--filter", "label=com.docker.compose.project=octollm",
                   "--filter", "label=com.docker.compose.service=loadgen"]).stdout.split()
    if ids:
        run_cmd(["docker", "pause", *ids])
    try:
        yield ids
    finally:
        if ids:
            run_cmd(["docker", "unpause", *ids], check=False)


# --- the kept data set ----------------------------------------------------------------------------------
# Like the lab's seed (lab/app/octollm_lab/seed_data.py), generated server-side; every entity is the source of
# per_entity relationships and (7919 is prime to any power of ten) the target of as many, so that the fault finds
# entities at both ends.
LOAD_ENTITIES = """
INSERT INTO entities (entity_id, entity_type, name, properties, access_count, created_at)
SELECT g, (ARRAY['person', 'project', 'document', 'tool', 'concept'])[1 + g %% 5], 'entity-' || g,
       jsonb_build_object('seq', g, 'source', 'seed'), (g * 7919) %% 1000,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1::bigint, %(entities)s) AS g
"""
LOAD_RELATIONSHIPS = """
INSERT INTO relationships (from_entity_id, to_entity_id, relationship_type, properties, created_at)
SELECT g, 1 + (g * 7919 + (k - 1) * 104729) %% %(entities)s,
       (ARRAY['related_to', 'depends_on', 'mentions'])[1 + (g + k) %% 3],
       jsonb_build_object('weight', (g + k) %% 10),
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1::bigint, %(entities)s) AS g, generate_series(1, %(per_entity)s) AS k
ORDER BY g, k
"""


LOAD_ID = hashlib.sha256((LOAD_ENTITIES + LOAD_RELATIONSHIPS).encode()).hexdigest()[:16]  # reload when they change


def _pg_env(lab: Any, **extra: str) -> dict[str, str]:
    return dict(os.environ, PGHOST="127.0.0.1", PGPORT="5432", PGUSER="postgres",
                PGPASSWORD=lab.secret("postgres_admin_password"), **extra)


def dataset(lab: Any) -> dict[str, Any] | None:
    """The marker of the kept data set, or None when there is none."""
    if not query(lab, "SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,), "postgres"):
        return None
    found = query(lab, f"SELECT to_regclass('{MARKER}') IS NOT NULL", None, BENCH_DB)[0][0]
    if not found:
        return None
    try:
        rows = query(lab, f"SELECT entities, per_entity, load_id, state, checksums FROM {MARKER}", None, BENCH_DB)
    except Exception:  # a marker of another shape: reload
        return None
    keys = ("entities", "per_entity", "load_id", "state", "checksums")
    return dict(zip(keys, rows[0], strict=True)) if rows else None


def mark(lab: Any, state: str) -> None:
    query_none(lab, f"UPDATE {MARKER} SET state = %s", (state,), BENCH_DB)


def ensure_dataset(lab: Any, entities: int, per_entity: int = 1, log: Any = print) -> dict[str, Any]:
    """The kept data set of ``entities`` entities: reused when its marker says clean and its checksums agree,
    else (re)loaded: schema copied from the lab's database, rows generated server-side, indexes built after."""
    found = dataset(lab)
    if found and (found["entities"], found["per_entity"], found["load_id"], found["state"]) == (
            entities, per_entity, LOAD_ID, "clean"):
        current = checksums(lab, dbname=BENCH_DB)
        if current == found["checksums"]:
            log(f"reusing the kept data set in {BENCH_DB} ({entities} entities)")
            return {"reused": True, "load_s": 0.0, "checksums": current}
        log(f"the kept data set in {BENCH_DB} changed: reloading it")
    started = time.perf_counter()
    admin = connect(lab, "postgres")
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (BENCH_DB,))
            cur.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
            cur.execute(f"CREATE DATABASE {BENCH_DB} OWNER octollm")
    finally:
        admin.close()
    env = _pg_env(lab)
    dump = ["pg_dump", "--no-comments", "-d", LAB_DB]
    schema = subprocess.run([*dump, "--section=pre-data"], env=env, check=True, capture_output=True, text=True)
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", BENCH_DB], input=schema.stdout, env=env,
                   check=True, capture_output=True, text=True)
    conn = connect(lab, BENCH_DB)
    try:
        with conn.cursor() as cur:
            params = {"entities": entities, "per_entity": per_entity}
            cur.execute(LOAD_ENTITIES, params)
            cur.execute(LOAD_RELATIONSHIPS, params)
            cur.execute("SELECT setval('relationships_relationship_id_seq', (SELECT max(relationship_id)"
                        " FROM relationships))")
    finally:
        conn.close()
    post = subprocess.run([*dump, "--section=post-data"], env=env, check=True, capture_output=True, text=True)
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", BENCH_DB], input=post.stdout,
                   env=_pg_env(lab, PGOPTIONS="-c maintenance_work_mem=256MB"), check=True, capture_output=True,
                   text=True)
    query_none(lab, "VACUUM (ANALYZE) entities", None, BENCH_DB)
    query_none(lab, "VACUUM (ANALYZE) relationships", None, BENCH_DB)
    clean = checksums(lab, dbname=BENCH_DB)
    query_none(lab, f"CREATE TABLE {MARKER} (entities bigint, per_entity int, load_id text, state text,"
                    " checksums jsonb, loaded_at timestamptz)", None, BENCH_DB)
    query_none(lab, f"INSERT INTO {MARKER} VALUES (%s, %s, %s, 'clean', %s, now())",
               (entities, per_entity, LOAD_ID, json.dumps(clean)), BENCH_DB)
    load_s = round(time.perf_counter() - started, 1)
    log(f"loaded {clean['entities']} entities and {clean['relationships']} relationships into {BENCH_DB} in "
        f"{load_s}s (kept for the next runs)")
    return {"reused": False, "load_s": load_s, "checksums": clean}


def others_connected(lab: Any) -> list[tuple[Any, ...]]:
    """Sessions on the data set's database other than this script's (nothing else may write it)."""
    return query(lab, "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s"
                      " AND backend_type = 'client backend' AND application_name <> 'octollm-bench'", (BENCH_DB,),
                 "postgres")


def bench_inventory(work: Path) -> Path:
    """The lab's inventory with octollm_postgres.database set to the data set's database."""
    inventory = work / "inventory"
    (inventory / "group_vars").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "inventory" / "lab" / "hosts.yml", inventory / "hosts.yml")
    text = (ROOT / "inventory" / "lab" / "group_vars" / "octollm.yml").read_text()
    assert text.count(f"  database: {LAB_DB}\n") == 1, "inventory/lab changed: update bench_inventory"
    (inventory / "group_vars" / "octollm.yml").write_text(text.replace(f"  database: {LAB_DB}\n",
                                                                         f"  database: {BENCH_DB}\n"))
    return inventory


def write_stats(lab: Any) -> tuple[int, int]:
    """Rows ever deleted from relationships and updated in entities (aborted transactions count too)."""
    query_none(lab, "SELECT pg_stat_clear_snapshot()", None, BENCH_DB)
    return tuple(query(lab, "SELECT (SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'relationships'),"
                            " (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'entities')",
                       None, BENCH_DB)[0])  # type: ignore[return-value]


# --- octoctl --------------------------------------------------------------------------------------------
def octoctl(state: Path, *args: str, timeout: float = 1800) -> tuple[int, dict[str, Any]]:
    env = dict(os.environ, OCTOCTL_STATE_DIR=str(state),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "octoctl", *args, "--format", "json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:  # a timeout, or pytest's: no run is left behind (ansible-playbook has its own session)
        kill_tree(proc.pid)
        proc.wait()
        raise
    try:
        report = json.loads(stdout)
    except ValueError as exc:
        raise AssertionError(f"octoctl {' '.join(args)} exited {proc.returncode}: {stderr[-3000:]}") from exc
    return proc.returncode, report


def procedure(report: dict[str, Any]) -> dict[str, Any]:
    return report["targets"][0]["procedures"][0]


def actions(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in procedure(report).get("actions") or []}


def task_seconds(artifacts: str | Path, ident: str, prefix: str) -> float:
    """Seconds the tasks whose name starts with ``prefix`` took in the runner invocation ``ident``."""
    return round(sum(task_durations(artifacts, ident, prefix)), 2)


def task_durations(artifacts: str | Path, ident: str, prefix: str) -> list[float]:
    """Seconds each run of a task whose name starts with ``prefix`` took in the runner invocation ``ident``, in
    order (the shared flow's evidence task runs once to diagnose and once to verify)."""
    started: dict[str, datetime] = {}
    durations: list[float] = []
    events = sorted(Path(artifacts, "artifacts", ident, "job_events").glob("*.json"),
                    key=lambda p: int(p.name.split("-")[0]))
    for path in events:
        event = json.loads(path.read_text())
        data = event.get("event_data") or {}
        if not str(data.get("task") or "").startswith(prefix):
            continue
        if event["event"] == "runner_on_start":
            started[data["task_uuid"]] = datetime.fromisoformat(event["created"])
        elif event["event"] in ("runner_on_ok", "runner_on_failed") and data.get("task_uuid") in started:
            when = datetime.fromisoformat(event["created"]) - started.pop(data["task_uuid"])
            durations.append(round(when.total_seconds(), 2))
    return durations


def runner_dirs(artifacts: str | Path) -> list[str]:
    return sorted(p.name for p in Path(artifacts, "artifacts").iterdir())


# --- the measured run -----------------------------------------------------------------------------------
def forget_fault(lab: Any) -> None:
    """Drop the fault's record without healing: the tables were put back from the snapshot already."""
    from octollm_labctl import faults

    faults.forget(lab, "data-corruption")


def run(lab: Any, entities: int = 1_000_000, orphan_entities: int = 50, workdir: Path | None = None,
        log: Any = print, per_entity: int = 1, kill: bool = True) -> dict[str, Any]:
    from octollm_labctl.faults.postgres import corrupt_data, uncorrupt_data

    work = Path(workdir or tempfile.mkdtemp(prefix="octollm-bench-"))
    state = work / "octoctl"
    inventory = ["-i", str(bench_inventory(work))]
    timings: dict[str, Any] = {}
    kept = ensure_dataset(lab, entities, per_entity, log=log)
    timings["load_s"], timings["reused"] = kept["load_s"], kept["reused"]
    clean = kept["checksums"]
    try:
        mark(lab, "dirty")  # a run killed from here on leaves the set to be reloaded next time
        started = time.perf_counter()
        conn = connect(lab, BENCH_DB)
        try:  # its own session: its table statistics are flushed when it ends, before the dry run's are read
            fault = corrupt_data(conn, orphan_entities)
        finally:
            conn.close()
        timings["inject_s"] = round(time.perf_counter() - started, 1)
        orphans = [row["relationship_id"] for row in fault["orphaned_relationships"]]
        spoiled = [row["entity_id"] for row in fault["invalid_properties"]]
        summary = fault["summary"]
        assert summary["from_missing"] > 0 and summary["to_missing"] > 0, summary
        log(f"{summary['entities_before']} entities, {summary['relationships_before']} relationships; injected "
            f"{summary['orphans']} orphans (from {summary['from_missing']}, to {summary['to_missing']}) and "
            f"{summary['invalid_properties']} invalid properties")
        assert others_connected(lab) == [], "something else is connected to the data set: quiesce it first"
        untouched = checksums(lab, orphans, spoiled, BENCH_DB)
        broken = checksums(lab, dbname=BENCH_DB)

        # 0. dry run: the statements and the exact counts, from read-only queries
        writes = write_stats(lab)
        started = time.perf_counter()
        code, report = octoctl(state, "fix", "data-corruption", "--dry-run", *inventory)
        timings["dry_run_wall_s"] = round(time.perf_counter() - started, 1)
        assert code == 1, json.dumps(report, indent=1)[-4000:]
        planned = actions(report)
        delete = planned["data_corruption.A.delete_orphans"]["change"]
        assert delete["rows"] == summary["orphans"] and "NOT EXISTS" in delete["sql"] and "NOT IN" not in delete["sql"]
        assert planned["data_corruption.B.reset_properties"]["change"]["rows"] == summary["invalid_properties"]
        assert write_stats(lab) == writes, "the dry run deleted or updated rows (even if rolled back)"
        kinds = {f["check"]: f for f in procedure(report)["findings"]}["data.invalid_properties"]["evidence"]
        timings["invalid_kinds"] = kinds.get("by_type")
        assert checksums(lab, dbname=BENCH_DB) == broken
        log(f"dry run: {timings['dry_run_wall_s']}s; exact counts, no row written")

        # 1. fix: diagnose (read-only), verified backup, one transaction
        started = time.perf_counter()
        code, report = octoctl(state, "fix", "data-corruption", "--approve", *inventory)
        timings["fix_wall_s"] = round(time.perf_counter() - started, 1)
        assert code == 0, json.dumps(report, indent=1)[-4000:]
        found = actions(report)
        run_id, artifacts = report["run_id"], report["artifacts"]
        # one run: diagnose (the first evidence task), back up, repair, verify (the evidence task again)
        apply = runner_dirs(artifacts)[-1]
        gathers = task_durations(artifacts, apply, "Run | GATHER | collect stack evidence")
        timings["diagnose_s"] = gathers[0] if gathers else 0.0
        timings["backup_s"] = task_seconds(artifacts, apply, "data_corruption.backup | APPLY | pg_dump")
        timings["repair_s"] = task_seconds(artifacts, apply,
                                           "data_corruption.A.delete_orphans | APPLY | repair in one transaction (")
        timings["verify_s"] = gathers[-1] if len(gathers) > 1 else 0.0
        backup = found["data_corruption.backup"]["change"]
        timings["backup_bytes"] = backup["bytes"]
        manifest = json.loads(Path(backup["manifest"]).read_text())
        assert {t: manifest["tables"][t]["rows"] for t in TABLES} == {
            "entities": broken["entities"], "relationships": broken["relationships"]}
        for action_id in ("data_corruption.A.delete_orphans", "data_corruption.B.reset_properties"):
            assert {k: found[action_id]["change"][k] for k in ("sql", "rows")} == {
                k: planned[action_id]["change"][k] for k in ("sql", "rows")}, "the run did not do what the plan said"
        assert found["data_corruption.A.delete_orphans"]["change"]["rows_changed"] == summary["orphans"]
        assert found["data_corruption.B.reset_properties"]["change"]["rows_changed"] == summary["invalid_properties"]
        assert procedure(report)["verification"]["healthy"]
        assert checksums(lab, orphans, spoiled, BENCH_DB) == untouched, "rows that were not injected changed"
        left = query(lab, "SELECT (SELECT count(*) FROM relationships WHERE relationship_id = ANY(%s)),"
                          " (SELECT count(*) FROM entities WHERE entity_id = ANY(%s) AND properties = '{}'::jsonb)",
                     (orphans, spoiled), BENCH_DB)[0]
        assert left == (0, len(spoiled)), left
        log(f"fix: diagnosis {timings['diagnose_s']}s, backup {timings['backup_s']}s "
            f"({backup['bytes'] / 1e6:.0f} MB, verified), repair {timings['repair_s']}s, verification "
            f"{timings['verify_s']}s (octoctl wall time {timings['fix_wall_s']}s); exactly the injected rows changed")

        # 2. restore the backup: exactly the pre-fix state
        started = time.perf_counter()
        code, report = octoctl(state, "restore", run_id, "--approve")
        timings["restore_wall_s"] = round(time.perf_counter() - started, 1)
        assert code == 0, json.dumps(report, indent=1)[-4000:]
        restore = actions(report)["data_corruption.D.restore"]
        timings["restore_s"] = task_seconds(report["artifacts"], runner_dirs(report["artifacts"])[-1],
                                            "data_corruption.D.restore | APPLY | restore from the backup")
        assert restore["status"] == "applied"
        assert checksums(lab, dbname=BENCH_DB) == broken, "the restore did not bring back the pre-fix state"
        log(f"restore: {timings['restore_s']}s (octoctl wall time {timings['restore_wall_s']}s); every row as "
            "before the fix")

        # 3. a killed run leaves the data as it was
        if kill:
            timings["killed"] = kill_during_repair(lab, state, inventory, spoiled[0])
            assert checksums(lab, dbname=BENCH_DB) == broken, "a killed repair changed the data"
            log(f"killed run: octoctl killed after {timings['killed']['killed_after_s']}s while its repair "
                "transaction waited (the orphans already deleted inside it); the data is as it was")

        # the set is put back as it was loaded, and kept
        conn = connect(lab, BENCH_DB)
        try:
            uncorrupt_data(conn, fault)
        finally:
            conn.close()
        assert checksums(lab, dbname=BENCH_DB) == clean, "the data set was not put back as it was loaded"
        mark(lab, "clean")
        log("the data set is back as it was loaded (kept for the next run)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return timings


def kill_during_repair(lab: Any, state: Path, inventory: list[str], locked_entity: int) -> dict[str, Any]:
    """Hold a row lock on one spoiled entity, start octoctl fix, kill it once its repair waits on that lock."""
    holder = connect(lab, BENCH_DB)
    holder.autocommit = False
    env = dict(os.environ, OCTOCTL_STATE_DIR=str(state),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM entities WHERE entity_id = %s FOR UPDATE", (locked_entity,))
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "octoctl", "fix", "data-corruption", "--approve", *inventory],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        waiting = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            waiting = query(lab, "SELECT pid FROM pg_stat_activity WHERE application_name = 'octollm-repair'"
                                 " AND wait_event_type = 'Lock'")
            if waiting:
                break
            time.sleep(0.2)
        assert waiting, f"the repair never waited on the lock (octoctl exited {proc.poll()})"
        # the whole run: octoctl, ansible-runner's ansible-playbook (its own session) and the module holding the
        # database connection
        killed = kill_tree(proc.pid)
        proc.wait()
        killed_after = round(time.perf_counter() - started, 1)
    finally:
        holder.rollback()  # the lock goes: the orphaned backend finishes its statement, finds no client, rolls back
        holder.close()
    deadline = time.monotonic() + 120
    while query(lab, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'octollm-repair'"):
        assert time.monotonic() < deadline, "the killed run's repair session did not go away"
        time.sleep(0.5)
    return {"killed_after_s": killed_after, "backend": waiting[0][0], "processes_killed": killed}


def kill_tree(root: int) -> int:
    """SIGKILL a process and every descendant (found through /proc before any of them dies)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    doomed, todo = [], [root]
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo.extend(children.get(pid, []))
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(doomed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--orphan-entities", type=int, default=50)
    parser.add_argument("--relationships-per-entity", type=int, default=1)
    parser.add_argument("--no-kill", action="store_true", help="skip the killed run")
    parser.add_argument("--json", type=Path, help="write the timings here")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "lab" / "ctl")]  # octoctl and the lab's tooling of this checkout
    from octollm_labctl.lab import Lab

    timings = run(Lab(), args.entities, args.orphan_entities, log=lambda line: print(line, flush=True),
                  per_entity=args.relationships_per_entity, kill=not args.no_kill)
    print(json.dumps(timings, indent=2))
    if args.json:
        args.json.write_text(json.dumps(timings, indent=2) + "\n")


if __name__ == "__main__":
    main()
