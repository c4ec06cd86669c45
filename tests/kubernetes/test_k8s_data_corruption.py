"""data_corruption's Kubernetes side: the backup before the repair is pg_dump INSIDE the PostgreSQL pod (the server's
own), streamed OUT of it through the API's exec to the controller (pg_backup's pod_exec), verified there as on
Compose; then the Compose one-transaction repair at the inventory's address; `octoctl restore RUN_ID` puts the data
back from that controller-side file.

Checked in layers: the plan names the pod, container, user and password variable (never a password); the pod's
script run HERE with sh against a throwaway PostgreSQL (its stdout is the dump in base64, its exit status
pg_dump's); the stream decoded from a fake exec client (pieces cut anywhere, a cut stream, a failed command); and
octoctl end to end against the emulator serving the exec (the command runs here as the pod would): backup streamed
to the run's directory, repair, restore. A backup that cannot be taken stops the repair. Prevention (CronJob, PDB)
is judged from the emulator's objects; it writes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from k8s_emulator import KubernetesAPIEmulator
from k8s_results import by_check, by_id, collect_evidence, task_args
from postgres_standin import postgres, sql

pytestmark = pytest.mark.kubernetes

REPO = Path(__file__).resolve().parents[2]
OBJECTS = {
    "data_corruption_pods": {"kind": "Pod", "label_selector": "app=postgres"},
    "data_corruption_workload": {"kind": "StatefulSet", "api_version": "apps/v1", "name": "postgres"},
    "data_corruption_pdbs": {"kind": "PodDisruptionBudget", "api_version": "policy/v1"},
    "data_corruption_cronjobs": {"kind": "CronJob", "api_version": "batch/v1"},
}
K8S = {"namespace": "octollm", "stamp": "20261129T010000Z", "now": "2026-11-29T01:00:00Z"}
SETTINGS = procedure_settings("data_corruption", K8S, platform="kubernetes")


def test_the_needs_read_these_objects() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption as dc
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context

    need = dc.PROCEDURE.needs(SETTINGS, Context(platform="kubernetes", phase="prevent"))
    assert set(need) == {"postgres", "kubernetes"} and need["kubernetes"]["objects"] == OBJECTS


def corrupt_evidence() -> dict[str, Any]:
    """The integrity evidence of a database with 18 orphaned relationships and 14 invalid properties."""
    integrity = {
        "relationships_total": 40000, "entities_total": 20000, "orphans_from": 12, "orphans_to": 6,
        "orphans_total": 18, "orphan_sample": [], "invalid_properties": 14,
        "invalid_properties_by_type": {"array": 14}, "invalid_properties_sample": [], "constraints": {
            "entities": [], "relationships": [], "tasks": []}, "btree_indexes": [], "tables_missing": [],
        "foreign_keys": {"entities": [], "relationships": [], "tasks": []},
        "amcheck": {"available": True, "checked": [], "corrupt": [], "errors": {}},
    }
    return {"postgres": {"ok": True, "error": None, "server": {"database": "octollm", "database_size_bytes": 1000,
                                                                "extensions": {"amcheck": "1.3"}},
                         "integrity": integrity}}


def evidence_of(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> dict[str, Any]:
    """corrupt_evidence() with the emulator's objects, as the role's gather task reads them."""
    return {**corrupt_evidence(), **collect_evidence(k8s_api, tmp_path, OBJECTS)}


def plan_for(k8s_api: KubernetesAPIEmulator, tmp_path: Path, **settings: Any) -> list[dict[str, Any]]:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption as dc
    from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption_kubernetes as dck

    evidence = evidence_of(k8s_api, tmp_path)
    diagnosis = dc.diagnose(evidence, SETTINGS)
    return dck.plan(diagnosis, evidence, {**SETTINGS, **settings})


def test_the_backup_runs_pg_dump_in_the_postgres_pod_and_lands_on_the_controller(
        k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    waiting = by_id(plan_for(k8s_api, tmp_path))
    assert waiting["data_corruption.backup"]["status"] == "awaiting_approval"  # every step waits for approval
    assert waiting["data_corruption.A.delete_orphans"]["status"] == "awaiting_approval"

    actions = by_id(plan_for(k8s_api, tmp_path, approve=True))
    backup = actions["data_corruption.backup"]
    assert backup["status"] == "planned" and backup["disruptive"] is True and backup["_apply"] == "backup"
    # pg_dump runs in the pod, the file goes to the controller's backup directory (the run's), never a pod's volume
    assert backup["change"]["exec"] == {"namespace": "octollm", "pod": "postgres-0", "container": "postgres",
                                        "user": "postgres", "password_env": "POSTGRES_ADMIN_PASSWORD"}
    assert backup["change"]["directory"] == SETTINGS["backup_dir"] and not backup["change"]["directory"].startswith(
        "pod:")
    assert "streamed to the controller" in backup["change"]["where"]
    assert "octollm-lab" not in json.dumps(backup)  # the password is read from the pod's env, never passed
    # the repair is the Compose transaction, after the backup
    assert actions["data_corruption.A.delete_orphans"]["status"] == "planned"
    assert list(actions).index("data_corruption.backup") == 0

    task = task_args(REPO / "roles/data_corruption/tasks/kubernetes/actions/backup.yml",
                     "octollm.remediation.pg_backup")
    assert task["state"] == "dumped" and task["path"].startswith("{{ _common_action.change.directory }}/")
    assert {key: task["pod_exec"][key] for key in ("namespace", "pod", "container", "user", "password_env")} == {
        key: "{{ _common_action.change.exec.%s }}".replace("%s", key)
        for key in ("namespace", "pod", "container", "user", "password_env")}
    assert k8s_api.writes() == []


def test_without_a_running_pod_there_is_no_backup_and_no_repair(k8s_api: KubernetesAPIEmulator,
                                                                 tmp_path: Path) -> None:
    pod = k8s_api.objects_of("v1/pods", "app=postgres")[0]
    pod["status"]["phase"] = "Pending"
    k8s_api.seed([pod])
    actions = by_id(plan_for(k8s_api, tmp_path, approve=True))
    backup = actions["data_corruption.backup"]
    assert backup["status"] == "report" and "_apply" not in backup
    assert backup["outcome"].startswith("L2: no running pod with app=postgres")


@pytest.fixture(scope="module")
def corrupt_db() -> Iterator[int]:
    """The lab's schema with 30 entities, 40 relationships of which 5 orphaned, 3 invalid properties."""
    with postgres(schema=True) as port:
        sql(port,
            "INSERT INTO entities (entity_id, entity_type, name, properties) SELECT g, 'tool', 'e' || g, "
            "jsonb_build_object('seq', g) FROM generate_series(1, 30) g",
            "UPDATE entities SET properties = '[1]' WHERE entity_id IN (1, 2, 3)",
            "INSERT INTO relationships (from_entity_id, to_entity_id, relationship_type) "
            "SELECT 1 + g % 30, CASE WHEN g <= 5 THEN 1000 + g ELSE 1 + (g * 7) % 30 END, 'related_to' "
            "FROM generate_series(1, 40) g")
        yield port


def pod_env(port: int) -> dict[str, str]:
    """What the PostgreSQL pod's shell sees, here: pg_dump on the PATH, the server at 127.0.0.1:port (trust)."""
    from postgres_standin import PG_BIN

    path = f"{PG_BIN}{os.pathsep}{os.environ.get('PATH', '')}" if PG_BIN else os.environ.get("PATH", "")
    return {"PATH": path, "PGPORT": str(port), "POSTGRES_ADMIN_PASSWORD": "unused-with-trust", "LANG": "C"}


def test_the_pod_script_writes_the_dump_to_stdout_and_keeps_pg_dumps_exit_status(corrupt_db: int,
                                                                                  tmp_path: Path) -> None:
    """The exec's argv run with sh here, as the pod would run it: stdout is pg_dump -Fc in base64 (decoded by the
    stream into a file pg_restore reads), stderr a version line; a failing pg_dump fails the command, though its
    output goes through base64 (a POSIX sh has no pipefail)."""
    from ansible_collections.octollm.remediation.plugins.module_utils import pod_stream

    argv = pod_stream.dump_argv("octollm", "postgres", "POSTGRES_ADMIN_PASSWORD", None, 5000)
    assert argv[:2] == ["sh", "-c"] and argv[4:] == ["octollm", "postgres", "POSTGRES_ADMIN_PASSWORD", "", "5000"]
    done = subprocess.run(argv, capture_output=True, env=pod_env(corrupt_db), timeout=60)
    assert done.returncode == 0, done.stderr
    target = tmp_path / "x.dump"
    with target.open("wb") as handle:
        sink = pod_stream.Base64Sink(handle)
        sink.write(done.stdout.decode())
        written = sink.close()
    import hashlib

    assert written == {"bytes": target.stat().st_size, "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
    listed = subprocess.run(["pg_restore", "--list", str(target)], capture_output=True, text=True, check=True)
    assert "TABLE DATA public relationships" in listed.stdout
    assert done.stderr.decode().startswith(pod_stream.VERSION_MARK + "pg_dump (PostgreSQL)")

    bad = pod_stream.dump_argv("missing_db", "postgres", "", None, 5000)
    failed = subprocess.run(bad, capture_output=True, env=pod_env(corrupt_db), timeout=60)
    assert failed.returncode != 0 and b"missing_db" in failed.stderr


class FakeExec:
    """The kubernetes client's WSClient as stream_to uses it: frames delivered one per update()."""

    def __init__(self, frames: list[tuple[int, str]], status: int | None = 0) -> None:
        self.frames, self.status, self.buffers, self.closed = list(frames), status, {1: "", 2: ""}, False

    def is_open(self) -> bool:
        return bool(self.frames) and not self.closed

    def update(self, timeout: float = 0) -> None:
        if self.frames:
            channel, data = self.frames.pop(0)
            self.buffers[channel] += data

    def _read(self, channel: int) -> str:
        data, self.buffers[channel] = self.buffers[channel], ""
        return data

    def read_stdout(self, timeout: float | None = None) -> str:
        return self._read(1)

    def read_stderr(self, timeout: float | None = None) -> str:
        return self._read(2)

    def close(self) -> None:
        self.closed = True

    @property
    def returncode(self) -> int:
        if self.status is None:
            raise TypeError("no status")  # what WSClient raises when the status channel is empty
        return self.status


def test_the_stream_decodes_the_pods_output_into_a_file_piece_by_piece(tmp_path: Path) -> None:
    """pod_stream.stream_to: base64 cut anywhere (line breaks, a frame ending in the middle of a block) decodes to
    exactly the bytes, hashed on the way; a cut stream, a failed command or a missing status is never a success."""
    import base64
    import hashlib

    from ansible_collections.octollm.remediation.plugins.module_utils import pod_stream

    payload = os.urandom(70000)
    text = base64.encodebytes(payload).decode()  # 76-character lines, as coreutils' base64 writes them
    pieces = [text[i:i + 997] for i in range(0, len(text), 997)]
    frames = [(2, pod_stream.VERSION_MARK + "pg_dump (PostgreSQL) 15.8\n")] + [(1, piece) for piece in pieces]
    target = tmp_path / "out.dump"
    with target.open("wb") as handle:
        done = pod_stream.stream_to(FakeExec(frames + [(2, "pg_dump: done\n")]), handle, 30)
    assert target.read_bytes() == payload
    assert done == {"rc": 0, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                    "stderr": "pg_dump: done", "version": "pg_dump (PostgreSQL) 15.8"}

    with (tmp_path / "cut.dump").open("wb") as handle, pytest.raises(pod_stream.StreamError, match="cut"):
        pod_stream.stream_to(FakeExec([(1, text[:-3])]), handle, 30)
    with (tmp_path / "bad.dump").open("wb") as handle, pytest.raises(pod_stream.StreamError, match="not base64"):
        pod_stream.stream_to(FakeExec([(1, "@@@@")]), handle, 30)
    with (tmp_path / "failed.dump").open("wb") as handle:
        failed = pod_stream.stream_to(FakeExec([(2, 'pg_dump: error: database "x" does not exist\n')], 1), handle, 30)
    assert failed["rc"] == 1 and "does not exist" in failed["stderr"] and failed["sha256"] is None
    with (tmp_path / "lost.dump").open("wb") as handle:
        assert pod_stream.stream_to(FakeExec([(1, text[:8])], None), handle, 30)["rc"] is None
    clock = iter([0.0, 100.0, 200.0])
    with (tmp_path / "slow.dump").open("wb") as handle, pytest.raises(pod_stream.StreamError, match="within 5s"):
        pod_stream.stream_to(FakeExec([(1, "AAAA")] * 3), handle, 5, clock=lambda: next(clock))


def test_prevention_reports_the_backup_cronjob_and_the_pdb(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption_kubernetes as dck

    evidence = evidence_of(k8s_api, tmp_path)
    result = dck.prevention(evidence, SETTINGS)
    found = by_check(result["findings"])
    assert found["prevent.backups.scheduled"]["status"] == "problem"
    assert found["prevent.backups.scheduled"]["observed"] == "no CronJob runs pg_dump"
    assert found["prevent.k8s.postgres_pdb"]["status"] == "warning"
    actions = by_id(result["actions"])
    assert actions["data_corruption.prevent.report_backups"]["status"] == "report"
    assert actions["data_corruption.prevent.report_postgres_pdb"]["status"] == "report"
    assert "data_corruption.prevent.schedule_backups" not in actions  # the Compose service is not made here

    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "postgres-backup"},
               "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                   {"name": "backup", "image": "postgres:15",
                    "command": ["sh", "-c", "pg_dump -Fc -f /backups/x.dump && pg_restore --list /backups/x.dump"]}
               ]}}}}},
               "status": {"lastSuccessfulTime": "2026-11-28T02:00:05Z"}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "postgres"},
           "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "postgres"}}}}
    k8s_api.seed([cronjob, pdb])
    found = by_check(dck.prevention(evidence_of(k8s_api, tmp_path), SETTINGS)["findings"])
    assert found["prevent.backups.scheduled"]["status"] == "ok"
    assert found["prevent.backups.scheduled"]["observed"] == "postgres-backup: last success 23.0h ago"
    assert found["prevent.k8s.postgres_pdb"]["observed"] == "postgres"

    cronjob["spec"]["suspend"] = True
    k8s_api.seed([cronjob])
    found = by_check(dck.prevention(evidence_of(k8s_api, tmp_path), SETTINGS)["findings"])
    assert found["prevent.backups.scheduled"]["observed"] == "postgres-backup: suspended"
    assert k8s_api.writes() == []


# --- two runs of the role against the emulator and the stand-in database ---------------------------------
def test_resolve_without_a_backup_in_the_pod_does_not_repair(run_k8s: Any, k8s_api: KubernetesAPIEmulator,
                                                             corrupt_db: int, tmp_path: Path) -> None:
    """Approved, but the emulator serves no exec here: the backup fails, so the repair transaction never runs."""
    before = sql(corrupt_db, "SELECT count(*) FROM relationships")
    result = run_k8s("data_corruption", "resolve", env={"OCTOLLM_POSTGRES_PORT": str(corrupt_db)},
                     octollm_approve=True, data_corruption_backup_dir=str(tmp_path / "backups"))
    found = by_check(result["findings"])
    orphans = found["data.orphaned_relationships"]
    assert orphans["status"] == "problem" and orphans["evidence"]["orphans_total"] == 5
    actions = by_id(result["actions"])
    backup = actions["data_corruption.backup"]
    assert backup["status"] == "failed" and "pg_dump in pod octollm/postgres-0" in backup["outcome"], backup["outcome"]
    assert not list((tmp_path / "backups").glob("*.dump*"))  # no part file left behind
    assert backup["change"]["exec"]["pod"] == "postgres-0"
    assert actions["data_corruption.A.delete_orphans"]["status"] != "applied"
    assert sql(corrupt_db, "SELECT count(*) FROM relationships") == before  # nothing repaired
    assert by_check(result["verification"]["findings"])["data.backup"]["status"] == "problem"
    assert k8s_api.writes() == []
    out = json.dumps(result)
    assert "octollm-lab-admin-dev" not in out and "octollm-lab-dev" not in out


def octoctl(k8s_api: KubernetesAPIEmulator, tmp_path: Path, port: int, *args: str) -> dict[str, Any]:
    """octoctl, unchanged, with inventory/kubernetes against the emulator and the stand-in PostgreSQL."""
    from conftest import inventory_env

    env = {**os.environ, **inventory_env(k8s_api.kubeconfig(tmp_path / "kubeconfig"),
                                         {"OCTOLLM_POSTGRES_PORT": str(port)}),
           "OCTOCTL_STATE_DIR": str(tmp_path / "octoctl"), "OCTOCTL_COLLECTIONS_PATH": str(REPO / ".collections"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(Path(sys.executable).parent / "octoctl"), *args, "-i", str(REPO / "inventory"
                           / "kubernetes"), "--format", "json"], capture_output=True, text=True, env=env, timeout=300,
                          input="", cwd=tmp_path)
    assert done.stdout.strip(), f"exit {done.returncode}: {done.stderr[-3000:]}"
    for secret in ("octollm-lab-dev", "octollm-lab-admin-dev"):  # the Secret's PostgreSQL passwords
        assert secret not in done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_octoctl_fix_streams_the_backup_out_of_the_pod_and_restore_puts_it_back(
        k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    """End to end through the emulator's exec: `octoctl fix` takes the backup with pg_dump run "in the pod" (here, as
    the pod would: the exec's command as the API received it) from the snapshot it counted, streams it to the run's
    backups/ on the controller, verifies it there and only then repairs; `octoctl restore RUN_ID` puts the rows back
    exactly from that file through the port-forward's address."""
    from ansible_collections.octollm.remediation.plugins.module_utils import pod_stream

    with postgres(schema=True) as port:
        sql(port,
            "INSERT INTO entities (entity_id, entity_type, name, properties) SELECT g, 'tool', 'e' || g, "
            "jsonb_build_object('seq', g) FROM generate_series(1, 30) g",
            "UPDATE entities SET properties = '[1]' WHERE entity_id IN (1, 2, 3)",
            "INSERT INTO relationships (from_entity_id, to_entity_id, relationship_type) "
            "SELECT 1 + g % 30, CASE WHEN g <= 5 THEN 1000 + g ELSE 1 + (g * 7) % 30 END, 'related_to' "
            "FROM generate_series(1, 40) g")
        k8s_api.serve_exec(lambda namespace, pod, container, command: (command, pod_env(port)))
        report = octoctl(k8s_api, tmp_path, port, "fix", "data_corruption", "--approve")
        [result] = report["targets"][0]["procedures"]
        actions = by_id(result["actions"])
        backup = actions["data_corruption.backup"]
        assert backup["status"] == "applied", backup["outcome"]
        assert actions["data_corruption.A.delete_orphans"]["status"] == "applied"
        assert actions["data_corruption.B.reset_properties"]["status"] == "applied"
        assert sql(port, "SELECT count(*) FROM relationships") == [(35,)]

        # the exec: the PostgreSQL pod's container, the script and its parameters, the snapshot it counted in
        [done] = k8s_api.execs()
        assert (done.namespace, done.pod, done.container, done.exit_code) == ("octollm", "postgres-0", "postgres", 0)
        assert done.command[:3] == ["sh", "-c", pod_stream.POD_DUMP_SCRIPT]
        assert done.command[4:7] == ["octollm", "postgres", "POSTGRES_ADMIN_PASSWORD"] and done.command[7]
        assert done.query["stdout"] == ["true"] and done.query["stderr"] == ["true"]
        assert k8s_api.writes() == []  # an exec is no write; the repair went to PostgreSQL

        # the file is on the controller, in the run's backups/, with its manifest; the report says where
        path = Path(backup["change"]["backup"])
        run_dir = tmp_path / "octoctl" / "runs" / report["run_id"]
        assert path.parent == run_dir / "backups" and path.stat().st_size == backup["change"]["bytes"] > 0
        manifest = json.loads(Path(backup["change"]["manifest"]).read_text())
        assert manifest["dumped_in"] == "pod:octollm/postgres-0" and manifest["tables"]["relationships"]["rows"] == 40
        assert backup["change"]["table_rows"] == {"entities": 30, "relationships": 40}
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert by_check(result["verification"]["findings"])["data.backup"]["status"] == "ok"

        restored = octoctl(k8s_api, tmp_path, port, "restore", report["run_id"], "--approve")
        [result] = restored["targets"][0]["procedures"]
        restore = by_id(result["actions"])["data_corruption.D.restore"]
        assert restore["status"] == "applied", restore["outcome"]
        assert sql(port, "SELECT count(*) FROM relationships") == [(40,)]  # the orphans are back, as in the backup
        assert sql(port, "SELECT count(*) FROM entities WHERE jsonb_typeof(properties) <> 'object'") == [(3,)]
        assert len(k8s_api.execs()) == 1  # the restore reads the controller's file: no exec


def test_prevent_reports_missing_backups_and_pdb_and_writes_nothing(run_k8s: Any, k8s_api: KubernetesAPIEmulator,
                                                                    corrupt_db: int) -> None:
    result = run_k8s("data_corruption", "prevent", env={"OCTOLLM_POSTGRES_PORT": str(corrupt_db)})
    found = by_check(result["prevention"]["findings"])
    assert found["prevent.backups.scheduled"]["status"] == "problem"
    assert found["prevent.k8s.postgres_pdb"]["status"] == "warning"
    actions = by_id(result["prevention"]["actions"])
    assert actions["data_corruption.prevent.report_backups"]["status"] == "report"
    # the missing foreign keys are planned as on Compose and wait for approval (ALTER TABLE)
    added = [a for a in result["prevention"]["actions"] if a["id"].startswith("data_corruption.prevent.add_")]
    assert added and all(a["status"] == "awaiting_approval" for a in added)
    assert k8s_api.writes() == []
    reads = k8s_api.reads()
    assert "/apis/batch/v1/namespaces/octollm/cronjobs" in reads
