"""data_corruption's Kubernetes side: the backup before the repair is pg_dump INSIDE the PostgreSQL pod
(kubernetes.core.k8s_exec), then the Compose one-transaction repair at the inventory's address.

The emulator serves no exec, so the backup is checked in three parts: the plan builds the exact exec (namespace,
pod, container, argv; the task passes them to k8s_exec unchanged), the script of that argv is run HERE with sh
against a throwaway PostgreSQL (what the pod would run), and a full run shows that a backup that cannot be taken
stops the repair. Prevention (CronJob, PDB) is judged from the emulator's objects; it writes nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
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


def test_the_backup_runs_pg_dump_in_the_postgres_pod(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption_kubernetes as dck

    waiting = by_id(plan_for(k8s_api, tmp_path))
    assert waiting["data_corruption.backup"]["status"] == "awaiting_approval"  # every step waits for approval
    assert waiting["data_corruption.A.delete_orphans"]["status"] == "awaiting_approval"

    actions = by_id(plan_for(k8s_api, tmp_path, approve=True))
    backup = actions["data_corruption.backup"]
    assert backup["status"] == "planned" and backup["disruptive"] is True and backup["_apply"] == "backup"
    path = "/var/lib/postgresql/octollm/backups/data_corruption-octollm-20261129T010000Z.dump"
    probe = backup["change"]["exec"]
    assert probe == {
        "namespace": "octollm", "pod": "postgres-0", "container": "postgres", "path": path,
        "argv": ["sh", "-c", dck.BACKUP_SCRIPT, "octollm-backup", path, "octollm", "postgres",
                 "POSTGRES_ADMIN_PASSWORD", "entities", "relationships"],
        "command": probe["command"],
    }
    assert shlex.split(probe["command"]) == probe["argv"]  # what k8s_exec runs: shlex.split(command)
    assert "octollm-lab" not in probe["command"]  # the password is read from the pod's env, never passed
    assert backup["change"]["directory"] == "pod:octollm/postgres-0:/var/lib/postgresql/octollm/backups"
    # the repair is the Compose transaction, after the backup
    assert actions["data_corruption.A.delete_orphans"]["status"] == "planned"
    assert list(actions).index("data_corruption.backup") == 0

    task = task_args(REPO / "roles/data_corruption/tasks/kubernetes/actions/backup.yml", "kubernetes.core.k8s_exec")
    assert {key: task[key] for key in ("namespace", "pod", "container", "command")} == {
        key: "{{ _common_action.change.exec.%s }}".replace("%s", key)
        for key in ("namespace", "pod", "container", "command")}
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


def test_the_backup_script_takes_and_verifies_a_dump(corrupt_db: int, k8s_api: KubernetesAPIEmulator,
                                                     tmp_path: Path) -> None:
    """The exec's argv run with sh here, as the pod would run it (PGPORT points at the stand-in)."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption_kubernetes as dck

    backup = by_id(plan_for(k8s_api, tmp_path, approve=True, k8s_pod_backup_dir=str(tmp_path / "backups")))[
        "data_corruption.backup"]
    argv = backup["change"]["exec"]["argv"]
    env = {**os.environ, "PGPORT": str(corrupt_db), "POSTGRES_ADMIN_PASSWORD": "unused-with-trust"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    result = {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
              "stdout_lines": done.stdout.splitlines()}
    outcome = dck.backup_outcome(result, backup["change"])
    assert outcome["status"] == "applied", outcome
    change = outcome["change"]
    path = backup["change"]["exec"]["path"]
    assert change["backup"] == f"pod:octollm/postgres-0:{path}" and change["verified"] is True
    assert change["table_rows"] == {"entities": 30, "relationships": 40}  # counted in the file
    assert change["bytes"] == Path(path).stat().st_size and not Path(path + ".part").exists()
    import hashlib

    assert change["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert oct(Path(path).stat().st_mode & 0o777) == "0o600"

    # a dump that fails (no such database) is a failed, unverified backup and leaves no file
    bad = list(argv)
    bad[5] = "missing_db"
    done = subprocess.run(bad, capture_output=True, text=True, env=env, timeout=60)
    failed = dck.backup_outcome({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr},
                                backup["change"])
    assert done.returncode != 0 and failed["status"] == "failed"
    assert "missing_db" in failed["outcome"] and failed["change"]["verified"] is False
    # the exec itself failing (no rc: e.g. pods/exec forbidden) is a failure too
    assert dck.backup_outcome({"failed": True, "msg": "Forbidden"}, backup["change"])["status"] == "failed"


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
                                                             corrupt_db: int) -> None:
    """Approved, but the emulator serves no exec: the backup fails, so the repair transaction never runs."""
    before = sql(corrupt_db, "SELECT count(*) FROM relationships")
    result = run_k8s("data_corruption", "resolve", env={"OCTOLLM_POSTGRES_PORT": str(corrupt_db)},
                     octollm_approve=True)
    found = by_check(result["findings"])
    orphans = found["data.orphaned_relationships"]
    assert orphans["status"] == "problem" and orphans["evidence"]["orphans_total"] == 5
    actions = by_id(result["actions"])
    backup = actions["data_corruption.backup"]
    assert backup["status"] == "failed" and "exec failed" in backup["outcome"], backup["outcome"]
    assert backup["change"]["exec"]["pod"] == "postgres-0"
    assert actions["data_corruption.A.delete_orphans"]["status"] != "applied"
    assert sql(corrupt_db, "SELECT count(*) FROM relationships") == before  # nothing repaired
    assert by_check(result["verification"]["findings"])["data.backup"]["status"] == "problem"
    assert k8s_api.writes() == []
    out = json.dumps(result)
    assert "octollm-lab-admin-dev" not in out and "octollm-lab-dev" not in out


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
