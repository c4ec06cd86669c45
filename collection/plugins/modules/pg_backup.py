#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_backup
short_description: Take, verify and restore a PostgreSQL backup in pg_dump's custom format
version_added: 0.1.0
description:
  - O(state=dumped) opens a read-only REPEATABLE READ transaction, exports its snapshot, counts the rows of
    O(tables) and records their constraints and owned sequences in that snapshot, then runs C(pg_dump -Fc
    --snapshot) so that the file holds exactly the counted rows. The file is written as C(<path>.part), verified
    and only then renamed to O(path) (mode 0600, directory 0700). A manifest (JSON, O(manifest)) records the
    counts, constraints, size and SHA-256.
  - Verification (every state) - the file is not empty, its SHA-256 matches the manifest, C(pg_restore --list)
    reads its table of contents, it holds the data of every table in O(tables), and (O(verify_rows)) the rows
    of each table in the file, counted from C(pg_restore --data-only --table), equal the manifest's counts. A
    backup that fails any of these is an error, never a success - unlike C(community.postgresql.postgresql_db
    state=dump), which can report success when C(pg_dump) failed.
  - O(state=restored) verifies the backup, then in ONE transaction (C(psql --single-transaction)) takes the
    tables' locks, drops the constraints that the backup does not have, truncates O(tables), copies their rows
    and their sequences' values from the backup, adds back the constraints the backup has and the database
    lacks (C(NOT VALID) when they were not validated), checks each table's row count against the manifest and
    only then commits. Any error rolls everything back; a killed run leaves the tables as they were.
  - Passwords go to the tools through the environment (C(PGPASSWORD)), never on a command line, and are never
    returned.
  - With O(pod_exec) (Kubernetes), C(pg_dump) runs INSIDE the PostgreSQL pod through the API's exec (the server's
    own C(pg_dump), with the snapshot exported over O(login_host)), and its output is streamed to O(path) on the
    host running the module, base64-decoded and hashed as it arrives; the file, its verification and the manifest
    are then exactly as above, so the backup never lies on the database's own volume and O(state=restored)
    restores it through O(login_host) (a Service address or a port-forward).
options:
  state:
    description: What to do with the backup at O(path).
    type: str
    choices: [dumped, verified, restored]
    default: dumped
  path:
    description: The backup file (custom format).
    type: path
    required: true
  manifest:
    description: The manifest written with the backup and read to verify it (default C(<path>.json)).
    type: path
  tables:
    description:
      - Tables whose rows are counted and verified in the file (O(state=dumped), O(state=verified); default the
        manifest's tables when verifying) and the tables restored (O(state=restored); default the manifest's).
      - Plain names in the C(public) schema, or C(schema.table).
    type: list
    elements: str
    default: []
  verify_rows:
    description: Count the rows of each table in the file and compare them with the manifest.
    type: bool
    default: true
  login_host:
    description: Host of the PostgreSQL server.
    type: str
    default: 127.0.0.1
  login_port:
    description: Port of the PostgreSQL server.
    type: int
    default: 5432
  login_db:
    description: Database to back up or restore into.
    type: str
    required: true
  login_user:
    description: User to connect as (a superuser or the tables' owner).
    type: str
    default: postgres
  login_password:
    description: Password of O(login_user).
    type: str
  ssl_mode:
    description: libpq C(sslmode).
    type: str
    default: prefer
  bin_dir:
    description: Directory of C(pg_dump), C(pg_restore) and C(psql) (default the PATH).
    type: path
  lock_timeout_ms:
    description:
      - Longest wait for a table lock, so that a backup or restore never queues behind a long transaction while
        holding up the application (C(pg_dump --lock-wait-timeout), C(SET LOCAL lock_timeout) for the restore).
    type: int
    default: 10000
  timeout:
    description: Seconds after which a C(pg_dump), C(pg_restore) or C(psql) run is killed (an error).
    type: int
    default: 3600
  run_id:
    description: Recorded in the manifest (the octoctl run that took the backup).
    type: str
  label:
    description: Recorded in the manifest (why the backup was taken).
    type: str
  pod_exec:
    description:
      - O(state=dumped) on Kubernetes - run C(pg_dump) in this pod and stream its output here (see the description).
        The pod needs C(sh), C(pg_dump) and C(base64); the module's host needs the Python package C(kubernetes).
    type: dict
    suboptions:
      namespace:
        description: Namespace of the pod.
        type: str
        required: true
      pod:
        description: The PostgreSQL pod.
        type: str
        required: true
      container:
        description: Its PostgreSQL container (default the pod's only or first one).
        type: str
      user:
        description: The user C(pg_dump) connects as inside the pod (default O(login_user)).
        type: str
      password_env:
        description: The NAME of the pod's environment variable holding that user's password (it never leaves the pod).
        type: str
      kubeconfig:
        description: The kubeconfig (default C(KUBECONFIG) or C(~/.kube/config), else the in-cluster account).
        type: path
      context:
        description: The kubeconfig's context (default its current one).
        type: str
      host:
        description: The API server's URL, over the kubeconfig's.
        type: str
      validate_certs:
        description: Verify the API server's certificate.
        type: bool
        default: true
notes:
  - Check mode - O(state=dumped) writes nothing; O(state=verified) runs (it only reads); O(state=restored)
    verifies the backup and reports what it would change without changing it.
  - The tools must match the server's major version or be newer (C(pg_dump) refuses an older one).
requirements:
  - psycopg2
  - pg_dump, pg_restore and psql (the PostgreSQL client package) on the host that runs the module (with
    O(pod_exec) pg_dump runs in the pod; pg_restore must be at least the server's major version)
  - the Python package kubernetes for O(pod_exec)
seealso:
  - module: community.postgresql.postgresql_db
  - module: community.postgresql.postgresql_query
author:
  - OctoLLM operations
"""

EXAMPLES = r"""
- name: Back up the database before a repair (verified, row counts of two tables recorded)
  octollm.remediation.pg_backup:
    state: dumped
    path: /var/backups/octollm/before-repair.dump
    tables: [entities, relationships]
    login_host: 127.0.0.1
    login_db: octollm
    login_user: postgres
    login_password: "{{ octollm_postgres.admin_password }}"
  register: backup

- name: Verify an existing backup against its manifest
  octollm.remediation.pg_backup:
    state: verified
    path: "{{ backup.path }}"
    login_db: octollm

- name: Put entities and relationships back exactly as in the backup (one transaction)
  octollm.remediation.pg_backup:
    state: restored
    path: "{{ backup.path }}"
    tables: [entities, relationships]
    login_db: octollm
    login_user: postgres
    login_password: "{{ octollm_postgres.admin_password }}"
"""

RETURN = r"""
path:
  description: The backup file.
  returned: always
  type: str
manifest:
  description: The manifest file.
  returned: always
  type: str
manifest_data:
  description: The manifest (created, database, server version, tables with rows, constraints and sequences).
  returned: when the manifest exists
  type: dict
verified:
  description: Whether the file passed every check.
  returned: always
  type: bool
bytes:
  description: Size of the file.
  returned: when the file exists
  type: int
sha256:
  description: SHA-256 of the file.
  returned: when the file exists
  type: str
toc_entries:
  description: Entries in the file's table of contents (C(pg_restore --list)).
  returned: when verified
  type: int
tables:
  description:
    - Per table - C(rows) (the snapshot's count, or after a restore the table's count), C(file_rows) (counted in
      the file).
  returned: always
  type: dict
  sample: {"entities": {"rows": 1000000, "file_rows": 1000000}}
restored:
  description: Whether the restore committed.
  returned: state=restored
  type: bool
constraints_dropped:
  description: Constraints dropped because the backup does not have them (state=restored).
  returned: state=restored
  type: list
constraints_added:
  description: Constraints of the backup added back (state=restored).
  returned: state=restored
  type: list
duration_s:
  description: Seconds the operation took.
  returned: always
  type: float
"""

import contextlib
import datetime
import json
import os
import subprocess
import threading
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.octollm.remediation.plugins.module_utils import pod_stream
from ansible_collections.octollm.remediation.plugins.module_utils.pg_dumpfile import (  # noqa: F401 - the module's API
    CHUNK,
    BackupError,
    DumpReader,
    count_copy_rows,
    find_tool,
    parse_toc,
    qualified,
    read_manifest,
    sha256_of,
    split_table,
)


class Backup(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.path = self.p["path"]
        self.manifest_path = self.p["manifest"] or self.path + ".json"
        self.started = time.monotonic()

    # --- tools ------------------------------------------------------------------------------------
    def tool(self, name):
        return find_tool(name, self.p["bin_dir"], self.module.get_bin_path)

    def env(self, application="octollm-backup"):
        env = dict(os.environ)
        env.update(
            PGHOST=self.p["login_host"],
            PGPORT=str(self.p["login_port"]),
            PGDATABASE=self.p["login_db"],
            PGUSER=self.p["login_user"],
            PGSSLMODE=self.p["ssl_mode"],
            PGCONNECT_TIMEOUT="10",
            PGAPPNAME=application,
        )
        if self.p["login_password"]:
            env["PGPASSWORD"] = self.p["login_password"]
        else:
            env.pop("PGPASSWORD", None)
        return env

    def run(self, argv, what):
        try:
            proc = subprocess.run(argv, env=self.env(), capture_output=True, timeout=self.p["timeout"])
        except subprocess.TimeoutExpired as exc:
            raise BackupError("%s did not finish within %ss" % (what, self.p["timeout"])) from exc
        if proc.returncode != 0:
            raise BackupError("%s failed (rc %d): %s" % (what, proc.returncode, self.clean(proc.stderr)))
        return proc.stdout.decode("utf-8", "replace")

    def clean(self, data):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")
        if self.p["login_password"]:
            text = text.replace(self.p["login_password"], "********")
        return " ".join(text.split())[-600:]

    def connect(self):
        try:
            import psycopg2
        except ImportError as exc:
            raise BackupError("the Python package psycopg2 is missing: %s" % exc) from exc
        try:
            return psycopg2.connect(
                host=self.p["login_host"],
                port=self.p["login_port"],
                dbname=self.p["login_db"],
                user=self.p["login_user"],
                password=self.p["login_password"] or None,
                sslmode=self.p["ssl_mode"],
                connect_timeout=10,
                application_name="octollm-backup",
            )
        except Exception as exc:
            raise BackupError("cannot connect to PostgreSQL: %s" % self.clean(str(exc))) from exc

    # --- manifest ---------------------------------------------------------------------------------
    def read_manifest(self):
        return read_manifest(self.manifest_path)

    def write_manifest(self, data):
        tmp = self.manifest_path + ".part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.rename(tmp, self.manifest_path)

    # --- snapshot facts -----------------------------------------------------------------------------
    @staticmethod
    def table_facts(cursor, tables):
        facts = {}
        for name in tables:
            schema, table = split_table(name)
            cursor.execute("SELECT to_regclass(%s)", ("%s.%s" % (schema, table),))
            if cursor.fetchone()[0] is None:
                raise BackupError("table %s.%s does not exist" % (schema, table))
            cursor.execute("SELECT count(*) FROM %s" % qualified(name))
            rows = cursor.fetchone()[0]
            cursor.execute(
                "SELECT conname, contype, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
                "WHERE conrelid = %s::regclass ORDER BY conname",
                ("%s.%s" % (schema, table),),
            )
            constraints = [
                {"name": row[0], "type": row[1], "definition": row[2], "validated": row[3]} for row in cursor.fetchall()
            ]
            cursor.execute(
                "SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
                "WHERE d.refobjid = %s::regclass AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
                "ORDER BY 1",
                ("%s.%s" % (schema, table),),
            )
            sequences = [row[0] for row in cursor.fetchall()]
            facts[name] = {
                "schema": schema,
                "table": table,
                "rows": rows,
                "constraints": constraints,
                "sequences": sequences,
            }
        return facts

    # --- verify -------------------------------------------------------------------------------------
    def reader(self):
        return DumpReader(self.tool, self.p["timeout"], self.env(), self.clean)

    def verify(self, path, manifest, tables, count_rows=None):
        """Check the file; returns (facts dict). Raises BackupError on any failure. ``count_rows`` (default the
        option verify_rows) counts each table's rows in the file and compares them with the manifest."""
        return self.reader().verify(path, manifest, tables, self.p["verify_rows"] if count_rows is None else count_rows)

    def file_rows(self, path, names):
        return self.reader().file_rows(path, names)

    # --- states ---------------------------------------------------------------------------------------
    def dumped(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        if self.module.check_mode:
            return {
                "changed": True,
                "verified": False,
                "path": self.path,
                "manifest": self.manifest_path,
                "tables": {},
                "msg": "check mode: no backup written",
            }
        if os.path.exists(self.path):
            raise BackupError("%s exists already: a backup is never overwritten" % self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        part = self.path + ".part"
        connection = self.connect()
        created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
            cursor = connection.cursor()
            cursor.execute(
                "SELECT pg_export_snapshot(), current_setting('server_version'), pg_database_size(current_database())"
            )
            snapshot, server_version, db_size = cursor.fetchone()
            facts = self.table_facts(cursor, self.p["tables"])
            try:
                if self.p.get("pod_exec"):
                    tool_version = self.dump_in_pod(snapshot, part)
                else:
                    argv = [
                        self.tool("pg_dump"),
                        "--format=custom",
                        "--snapshot=%s" % snapshot,
                        "--lock-wait-timeout=%d" % self.p["lock_timeout_ms"],
                        "--no-password",
                        "--file=%s" % part,
                    ]
                    self.run(argv, "pg_dump")
                    tool_version = self.run([self.tool("pg_dump"), "--version"], "pg_dump --version").strip()
            except BackupError:
                if os.path.exists(part):
                    os.unlink(part)
                raise
        finally:
            connection.rollback()
            connection.close()
        os.chmod(part, 0o600)
        manifest = {
            "format": "custom",
            "created": created,
            "database": self.p["login_db"],
            "host": self.p["login_host"],
            "port": self.p["login_port"],
            "server_version": server_version,
            "database_size_bytes": db_size,
            "pg_dump": tool_version,
            "run_id": self.p["run_id"],
            "label": self.p["label"],
            "tables": facts,
            "file": os.path.basename(self.path),
        }
        if self.p.get("pod_exec"):
            manifest["dumped_in"] = "pod:%s/%s" % (self.p["pod_exec"]["namespace"], self.p["pod_exec"]["pod"])
        try:
            checked = self.verify(part, manifest, list(facts))
        except BackupError:
            os.unlink(part)
            raise
        manifest.update(bytes=checked["bytes"], sha256=checked["sha256"], toc_entries=checked["toc_entries"])
        for name, info in checked["tables"].items():
            manifest["tables"][name]["file_rows"] = info.get("file_rows")
        os.rename(part, self.path)
        self.write_manifest(manifest)
        return {
            "changed": True,
            "verified": True,
            "path": self.path,
            "manifest": self.manifest_path,
            "manifest_data": manifest,
            "bytes": checked["bytes"],
            "sha256": checked["sha256"],
            "toc_entries": checked["toc_entries"],
            "tables": checked["tables"],
        }

    def dump_in_pod(self, snapshot, part):
        """pg_dump in the pod of ``pod_exec`` (the snapshot exported over login_host), its output streamed into
        ``part`` here; returns pg_dump's version line. Raises BackupError."""
        options = self.p["pod_exec"]
        where = "%s/%s" % (options["namespace"], options["pod"])
        argv = pod_stream.dump_argv(
            self.p["login_db"],
            options.get("user") or self.p["login_user"],
            options.get("password_env"),
            snapshot,
            self.p["lock_timeout_ms"],
        )
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                client = pod_stream.open_exec(options, argv)
                done = pod_stream.stream_to(client, handle, self.p["timeout"])
        except pod_stream.StreamError as exc:
            raise BackupError("pg_dump in pod %s: %s" % (where, self.clean(str(exc)))) from exc
        if done["rc"] != 0:
            raise BackupError(
                "pg_dump in pod %s exited %s: %s"
                % (where, "with no status" if done["rc"] is None else done["rc"], self.clean(done["stderr"]) or "-")
            )
        return done["version"] or "pg_dump in pod %s" % where

    def verified(self):
        found = self.reader().verified(self.path, self.p["tables"], self.p["verify_rows"], self.manifest_path)
        return dict(found, changed=False)

    def restored(self):
        manifest = self.read_manifest()
        if not manifest:
            raise BackupError(
                "no manifest at %s: a restore needs the backup's row counts and constraints" % self.manifest_path
            )
        names = list(self.p["tables"] or manifest.get("tables", {}).keys())
        unknown = [name for name in names if name not in manifest.get("tables", {})]
        if unknown:
            raise BackupError("the backup's manifest does not cover %s" % ", ".join(unknown))
        # the rows are not counted in the file here: the restore transaction counts them in the tables and rolls
        # back unless they equal the manifest's, which is the stronger check (and saves a pass over the file)
        checked = self.verify(self.path, manifest, names, count_rows=False)
        connection = self.connect()
        try:
            cursor = connection.cursor()
            current = self.table_facts(cursor, names)
        finally:
            connection.rollback()
            connection.close()
        drops, adds = [], []
        for name in names:
            want = {c["name"]: c for c in manifest["tables"][name]["constraints"]}
            have = {c["name"]: c for c in current[name]["constraints"]}
            for cname, con in sorted(have.items()):
                if cname not in want or want[cname]["definition"] != con["definition"]:
                    drops.append((name, con))
            for cname, con in sorted(want.items()):
                if cname not in have or have[cname]["definition"] != con["definition"]:
                    adds.append((name, con))
        # foreign keys go first when dropping and last when adding
        drops.sort(key=lambda item: item[1]["type"] != "f")
        adds.sort(key=lambda item: item[1]["type"] == "f")
        dropped = ["%s.%s" % (name, con["name"]) for name, con in drops]
        added = ["%s.%s" % (name, con["name"]) for name, con in adds]
        result = {
            "path": self.path,
            "manifest": self.manifest_path,
            "manifest_data": manifest,
            "verified": True,
            "bytes": checked["bytes"],
            "sha256": checked["sha256"],
            "toc_entries": checked["toc_entries"],
            "constraints_dropped": dropped,
            "constraints_added": added,
        }
        if self.module.check_mode:
            result.update(changed=True, restored=False, tables=checked["tables"])
            return result
        sequences = sorted({seq for name in names for seq in manifest["tables"][name].get("sequences") or []})
        toc_names = {(e["schema"], e["name"]) for e in checked["toc"] if e["desc"] == "SEQUENCE SET"}
        sequences = [seq for seq in sequences if any(entry[1] == seq for entry in toc_names)]
        self.restore_transaction(names, manifest, drops, adds, sequences)
        connection = self.connect()
        try:
            cursor = connection.cursor()
            after = {}
            for name in names:
                cursor.execute("SELECT count(*) FROM %s" % qualified(name))
                after[name] = {"rows": cursor.fetchone()[0], "backup_rows": manifest["tables"][name]["rows"]}
        finally:
            connection.rollback()
            connection.close()
        result.update(changed=True, restored=True, tables=after)
        return result

    def restore_transaction(self, names, manifest, drops, adds, sequences):
        lines = [
            "SET LOCAL lock_timeout = %d;" % int(self.p["lock_timeout_ms"]),
            "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE;" % ", ".join(qualified(name) for name in names),
        ]
        for name, con in drops:
            lines.append('ALTER TABLE %s DROP CONSTRAINT "%s";' % (qualified(name), con["name"].replace('"', "")))
        lines.append("TRUNCATE %s;" % ", ".join(qualified(name) for name in names))
        preamble = "\n".join(lines) + "\n"
        post = []
        for name, con in adds:
            post.append(
                'ALTER TABLE %s ADD CONSTRAINT "%s" %s%s;'
                % (
                    qualified(name),
                    con["name"].replace('"', ""),
                    con["definition"],
                    "" if con.get("validated", True) or con["type"] not in ("f", "c") else " NOT VALID",
                )
            )
        checks = []
        for name in names:
            rows = int(manifest["tables"][name]["rows"])
            checks.append(
                "  IF (SELECT count(*) FROM %s) <> %d THEN RAISE EXCEPTION 'octollm-restore-mismatch: %s holds %% "
                "rows, the backup %d', (SELECT count(*) FROM %s); END IF;"
                % (qualified(name), rows, name, rows, qualified(name))
            )
        post.append("DO $octollm_restore$\nBEGIN\n%s\nEND\n$octollm_restore$;" % "\n".join(checks))
        post += ["ANALYZE %s;" % qualified(name) for name in names]
        postamble = "\n" + "\n".join(post) + "\n"

        restore_argv = [self.tool("pg_restore"), "--data-only", "-f", "-"]
        for name in names:
            restore_argv += ["--table", split_table(name)[1]]
        for seq in sequences:
            restore_argv += ["--table", seq]
        restore_argv.append(self.path)
        psql_argv = [self.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-"]
        env = self.env("octollm-restore")
        producer = subprocess.Popen(restore_argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        consumer = subprocess.Popen(
            psql_argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        errors = {"pg_restore": [], "psql": []}
        threads = [
            threading.Thread(target=lambda: errors["pg_restore"].append(producer.stderr.read())),
            threading.Thread(target=lambda: errors["psql"].append(consumer.stderr.read())),
            threading.Thread(target=lambda: consumer.stdout.read()),
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + self.p["timeout"]
        broken = False
        try:
            consumer.stdin.write(preamble.encode("utf-8"))
            for block in iter(lambda: producer.stdout.read(CHUNK), b""):
                consumer.stdin.write(block)
                if time.monotonic() > deadline:
                    raise BackupError("the restore did not finish within %ss" % self.p["timeout"])
            producer.wait()
            if producer.returncode != 0:
                # do not send the postamble: psql sees a truncated script and rolls back when stdin closes
                raise BackupError("pg_restore failed (rc %d)" % producer.returncode)
            consumer.stdin.write(postamble.encode("utf-8"))
        except (BrokenPipeError, OSError):
            broken = True
        except BackupError:
            consumer.kill()
            raise
        finally:
            with contextlib.suppress(OSError):
                consumer.stdin.close()
            try:
                consumer.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                consumer.kill()
                consumer.wait()
            if producer.poll() is None:
                producer.kill()
                producer.wait()
            for thread in threads:
                thread.join()
        if consumer.returncode != 0 or broken:
            message = self.clean(b"".join(errors["psql"])) or self.clean(b"".join(errors["pg_restore"]))
            raise BackupError(
                "the restore transaction failed and was rolled back (psql rc %s): %s" % (consumer.returncode, message)
            )
        if producer.returncode != 0:
            raise BackupError(
                "pg_restore failed (rc %d): %s" % (producer.returncode, self.clean(b"".join(errors["pg_restore"])))
            )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="dumped", choices=["dumped", "verified", "restored"]),
            path=dict(type="path", required=True),
            manifest=dict(type="path"),
            tables=dict(type="list", elements="str", default=[]),
            verify_rows=dict(type="bool", default=True),
            login_host=dict(type="str", default="127.0.0.1"),
            login_port=dict(type="int", default=5432),
            login_db=dict(type="str", required=True),
            login_user=dict(type="str", default="postgres"),
            login_password=dict(type="str", no_log=True),
            ssl_mode=dict(type="str", default="prefer"),
            bin_dir=dict(type="path"),
            lock_timeout_ms=dict(type="int", default=10000),
            timeout=dict(type="int", default=3600),
            run_id=dict(type="str"),
            label=dict(type="str"),
            pod_exec=dict(
                type="dict",
                options=dict(
                    namespace=dict(type="str", required=True),
                    pod=dict(type="str", required=True),
                    container=dict(type="str"),
                    user=dict(type="str"),
                    password_env=dict(type="str", no_log=False),
                    kubeconfig=dict(type="path"),
                    context=dict(type="str"),
                    host=dict(type="str"),
                    validate_certs=dict(type="bool", default=True),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    backup = Backup(module)
    try:
        for name in module.params["tables"]:
            split_table(name)
        result = getattr(backup, module.params["state"])()
    except BackupError as exc:
        module.fail_json(
            msg=str(exc),
            path=backup.path,
            manifest=backup.manifest_path,
            verified=False,
            restored=False,
            tables={},
            duration_s=round(time.monotonic() - backup.started, 2),
        )
    result["duration_s"] = round(time.monotonic() - backup.started, 2)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
