"""The seed's complete system restart on the lab (issue 19): `octoctl emergency restart` under the load generator.

Without --approve nothing stops (the plan is shown, exit 1); with it, a verified backup, the tiers stopped in order
(arms, orchestrator, data stores) and started in reverse, then a diagnosis of every procedure: healthy, and every
row committed before the restart is there unchanged (row counts and a checksum per table)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from playbook_runs import pg_admin

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
OCTOCTL = str(Path(sys.executable).parent / "octoctl")
# Rows the application no longer changes once written: finished tasks, the action log, the entities' own columns
# (not access_count, which reads increment) and the relationships.
IMMUTABLE = {
    "tasks": ("task_id", "status IN ('completed', 'failed', 'cancelled')", "t.*"),
    "action_log": ("id", "true", "t.*"),
    "entities": ("entity_id", "true", "t.entity_id, t.entity_type, t.name, t.properties, t.created_at"),
    "relationships": ("relationship_id", "true", "t.*"),
}


def snapshot(lab: Any, before: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per table: the keys of its settled rows (``before``: those of an earlier snapshot), their count and an md5
    over their text in key order."""
    found = {}
    with pg_admin(lab) as conn, conn.cursor() as cur:
        for table, (key, settled, columns) in IMMUTABLE.items():
            if before is None:
                cur.execute(f"SELECT array_agg({key} ORDER BY {key}) FROM {table} t WHERE {settled}")
                keys = cur.fetchone()[0] or []
            else:
                keys = before[table]["keys"]
            cur.execute(f"SELECT count(*), md5(coalesce(string_agg(({columns})::text, '|' ORDER BY t.{key}), '')) "
                        f"FROM {table} t WHERE t.{key} = ANY(%s)", (keys,))
            count, digest = cur.fetchone()
            found[table] = {"keys": keys, "rows": count, "md5": digest}
    return found


def octoctl(*args: str, timeout: float = 400) -> tuple[int, Any]:
    proc = subprocess.run([OCTOCTL, *args, "--format", "json"], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:]) from None


def started_at(service: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", f"octollm-{service}-1"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_emergency_restart_under_load_keeps_every_row(healthy_lab: Any) -> None:
    assert "running" in subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", "octollm-loadgen-1"],
                                       capture_output=True, text=True).stdout  # the load goes on throughout
    code, plan = octoctl("emergency", "restart")
    assert code == 1, plan
    (procedure,) = plan["targets"][0]["procedures"]
    assert {a["status"] for a in procedure["actions"]} == {"awaiting_approval"}
    ids = [a["id"] for a in procedure["actions"]]
    assert ids[:4] == ["service_unavailable.E.backup_postgres", "service_unavailable.E.stop_1",
                       "service_unavailable.E.stop_2", "service_unavailable.E.stop_3"]
    assert ids.index("service_unavailable.E.start_postgres") < ids.index("service_unavailable.E.start_orchestrator")
    assert ids.index("service_unavailable.E.start_orchestrator") < ids.index("service_unavailable.E.start_judge_arm")
    first = {s: started_at(s) for s in ("postgres", "orchestrator", "judge-arm")}

    before = snapshot(healthy_lab)
    assert before["tasks"]["rows"] > 0 and before["action_log"]["rows"] > 0
    started = time.monotonic()
    code, done = octoctl("emergency", "restart", "--approve")
    took = time.monotonic() - started
    restart, after_diagnosis = done["restart"], done["diagnosis"]
    (procedure,) = restart["targets"][0]["procedures"]
    steps = {a["id"]: a for a in procedure["actions"]}
    assert [a["status"] for a in procedure["actions"]] == ["applied"] * len(ids), procedure["actions"]
    assert list(steps) == ids  # exactly the plan that was shown
    assert all(isinstance(a["elapsed_s"], float) for a in procedure["actions"])  # each step's time
    backup = steps["service_unavailable.E.backup_postgres"]["change"]
    assert backup["verified"] and Path(backup["backup"]).is_file()
    assert set(backup["table_rows"]) >= {"tasks", "action_log"}
    assert restart["exit_code"] == 0 and procedure["verification"]["healthy"], procedure["verification"]
    assert after_diagnosis["exit_code"] == 0, [
        (p["procedure"], f["check"], f["status"], f.get("observed")) for t in after_diagnosis["targets"]
        for p in t["procedures"] for f in p["findings"] if f["status"] not in ("ok", "skipped")]
    assert code == 0
    assert all(started_at(s) != first[s] for s in first)  # each was stopped and started again
    assert snapshot(healthy_lab, before) == before, "a row committed before the restart changed or went missing"
    print(f"emergency restart: {took:.0f} s; steps " + ", ".join(
        f"{a['id'].rsplit('.', 1)[-1]} {a['elapsed_s']}" for a in procedure["actions"]))


def system_identifier(lab: Any) -> int:
    with pg_admin(lab) as conn, conn.cursor() as cur:
        cur.execute("SELECT system_identifier FROM pg_control_system()")
        return int(cur.fetchone()[0])


def test_emergency_restart_with_volumes_removes_the_data_and_restores_every_row(healthy_lab: Any) -> None:
    """The seed's down -v: refused without its second confirmation (nothing stopped); with it, the writers stop, the
    backup is taken, the data directory goes (a new cluster: another system identifier) and PostgreSQL is restored
    before anything writes to it: every settled row is back unchanged, each table as many rows as the backup."""
    cluster = system_identifier(healthy_lab)
    first = started_at("orchestrator")
    refused = subprocess.run([OCTOCTL, "emergency", "restart", "--volumes", "--approve"], capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "--yes-drop-volumes" in refused.stderr, refused.stderr
    assert started_at("orchestrator") == first and system_identifier(healthy_lab) == cluster

    before = snapshot(healthy_lab)
    code, done = octoctl("emergency", "restart", "--volumes", "--yes-drop-volumes", "--approve")
    (procedure,) = done["restart"]["targets"][0]["procedures"]
    steps = {a["id"].rsplit(".", 1)[1]: a for a in procedure["actions"]}
    assert list(steps)[:5] == ["stop_1", "stop_2", "backup_postgres", "stop_3", "remove_data"], list(steps)
    assert {a["status"] for a in steps.values()} == {"applied"}, procedure["actions"]
    assert steps["remove_data"]["destructive"]
    assert system_identifier(healthy_lab) != cluster  # the data was removed: initdb ran again
    backed_up = steps["backup_postgres"]["change"]["table_rows"]
    assert steps["restore_postgres"]["change"]["table_rows"] == backed_up
    assert snapshot(healthy_lab, before) == before, "a row committed before the restart changed or went missing"
    assert code == 0 and done["diagnosis"]["exit_code"] == 0, [
        (p["procedure"], f["check"], f["status"], f.get("observed")) for t in done["diagnosis"]["targets"]
        for p in t["procedures"] for f in p["findings"] if f["status"] not in ("ok", "skipped")]
