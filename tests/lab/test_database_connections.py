"""The database_connections role against the running lab, through ansible-runner and playbooks/run.yml (what octoctl
runs), reading the RESULT from the playbook_on_stats event's artifact_data. Run under the lab lock:
flock /tmp/octollm-lab.lock .venv/bin/python -m pytest tests/lab/test_database_connections.py
The exhausted pool (scenario A), the idle sessions holding every connection (B) and the connection leak (C) are
proven by the Molecule scenarios database_connections_pool_compose, _idle_compose and _leak_compose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from playbook_runs import REPO, assert_quiet, by_check, healthy_diagnosis_of, holds, pg_admin, run_procedure

pytestmark = pytest.mark.lab

PROCEDURE = "database_connections"


def run(tmp_path: Path, phase: str, **extravars: Any) -> dict[str, Any]:
    return run_procedure(PROCEDURE, tmp_path, phase, **extravars)


def snapshot(lab: Any) -> dict[str, Any]:
    """What a diagnosis must not change: the env file, the containers, PostgreSQL settings, the app's sessions."""
    with pg_admin(lab) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, setting FROM pg_settings ORDER BY name")
        settings = cur.fetchall()
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'orchestrator'")
        pids = {row[0] for row in cur.fetchall()}
    return {"env": (lab.state / "lab.env").read_text(), "containers": {c["Service"]: c["ID"] for c in lab.containers()},
            "settings": settings, "pids": pids}


@pytest.fixture(scope="module")
def healthy_diagnosis(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One diagnosis of the healed lab, with what the lab looked like before and after it."""
    return healthy_diagnosis_of(PROCEDURE, lab, tmp_path_factory.mktemp("healthy"), snapshot)


def test_healthy_lab_has_no_database_finding(healthy_diagnosis: dict[str, Any]) -> None:
    result = healthy_diagnosis["result"]
    assert result["procedure"] == PROCEDURE and result["platform"] == "compose" and result["phase"] == "diagnose"
    assert {f["check"] for f in result["findings"]} == {
        "pg.running", "pg.up", "pg.app_login", "pg.connections", "pg.active_sessions", "pg.idle_in_transaction",
        "app.pool", "app.connectivity"}
    not_ok = {f["check"]: (f["status"], f["observed"]) for f in result["findings"] if f["status"] != "ok"}
    assert not_ok == {}
    assert result["escalation"]["level"] is None


@pytest.mark.parametrize("scenario", ["A", "B", "C", "D"])
def test_scenario_does_not_fire_on_a_healthy_lab(healthy_diagnosis: dict[str, Any], scenario: str) -> None:
    assert_quiet(healthy_diagnosis["result"], scenario)


def test_diagnosis_changes_nothing(healthy_diagnosis: dict[str, Any]) -> None:
    before, after = healthy_diagnosis["before"], healthy_diagnosis["after"]
    assert after["env"] == before["env"]
    assert after["containers"] == before["containers"]
    assert after["settings"] == before["settings"]
    # the pool may open a connection meanwhile, but the diagnosis terminates none of the application's sessions
    assert before["pids"] and before["pids"] <= after["pids"]


def test_partition_is_reported_with_the_human_step(healthy_lab: Any, tmp_path: Path) -> None:
    from octollm_labctl import faults

    faults.inject(healthy_lab, "pg-partition")
    # host networking has no Compose network to recreate: D ends as a report (L1) with what a human checks
    result = run(tmp_path, "resolve", octollm_approve=True)
    found = by_check(result["findings"])
    assert found["pg.up"]["status"] == "ok"
    link = found["app.connectivity"]
    assert link["status"] == "problem" and link["scenario"] == "D", link
    assert "refused" in (link["evidence"]["health_postgres"] or "")
    assert holds(result) == {"A": False, "B": False, "C": False, "D": True}
    assert [(a["id"], a["status"]) for a in result["actions"]] == [("database_connections.D.report_network", "report")]
    assert "firewall" in result["actions"][0]["outcome"]
    assert result["escalation"]["level"] == "L1"


def test_wrong_password_is_an_auth_unknown_and_exit_3(lab: Any, tmp_path: Path) -> None:
    wrong = {"host": "127.0.0.1", "port": 5432, "database": "octollm", "user": "octollm", "password": "wrong",
             "admin_user": "postgres", "admin_password": "wrong"}
    # octoctl on an inventory whose host vars carry the wrong password: a finding, exit status 3, no crash
    inventory = tmp_path / "inventory"
    (inventory / "host_vars").mkdir(parents=True)
    (inventory / "group_vars").mkdir()
    (inventory / "hosts.yml").write_text((REPO / "inventory" / "lab" / "hosts.yml").read_text())
    (inventory / "group_vars" / "octollm.yml").write_text(
        (REPO / "inventory" / "lab" / "group_vars" / "octollm.yml").read_text().replace(
            "{{ inventory_dir }}/../../lab", str(REPO / "lab")))
    (inventory / "host_vars" / "lab.yml").write_text(yaml.safe_dump({"octollm_postgres": wrong}))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               OCTOCTL_STATE_DIR=str(tmp_path / "octoctl-state"))
    proc = subprocess.run([sys.executable, "-m", "octoctl", "diagnose", "database_connections", "-i", str(inventory),
                           "--format", "json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    result = report["targets"][0]["procedures"][0]
    found = by_check(result["findings"])
    assert found["pg.up"]["status"] == "unknown"
    assert found["pg.up"]["error"]["kind"] == "auth"
    assert "wrong" not in found["pg.up"]["error"]["message"]
    assert found["pg.app_login"]["error"]["kind"] == "auth"


def test_prevent_sets_the_idle_in_transaction_timeout(healthy_lab: Any, tmp_path: Path) -> None:
    dry = run(tmp_path, "prevent", octollm_dry_run=True)
    checks = {f["check"]: f["status"] for f in dry["prevention"]["findings"]}
    assert checks["prevent.app.pool_limits"] == "ok"
    assert checks["prevent.prometheus.connection_rule"] == "ok"
    assert checks["prevent.prometheus.down_rule"] == "ok"
    with pg_admin(healthy_lab) as conn, conn.cursor() as cur:
        cur.execute("SHOW idle_in_transaction_session_timeout")
        before = cur.fetchone()[0]
    if before != "0":
        pytest.skip(f"the lab already has idle_in_transaction_session_timeout = {before}")
    assert checks["prevent.pg.idle_in_transaction_timeout"] == "problem"
    planned = [(a["id"], a["status"], a["change"]["new"]) for a in dry["prevention"]["actions"]]
    assert planned == [("database_connections.prevent.idle_in_transaction_timeout", "planned", "5min")]
    try:
        applied = run(tmp_path, "prevent")
        action = applied["prevention"]["actions"][0]
        assert action["status"] == "applied", action
        assert {f["check"]: f["status"] for f in applied["prevention"]["findings"]}[
            "prevent.pg.idle_in_transaction_timeout"] == "ok"
        with pg_admin(healthy_lab) as conn, conn.cursor() as cur:
            cur.execute("SHOW idle_in_transaction_session_timeout")
            assert cur.fetchone()[0] == "5min"
        assert run(tmp_path, "prevent")["prevention"]["actions"] == []
    finally:
        with pg_admin(healthy_lab) as conn, conn.cursor() as cur:
            cur.execute("ALTER SYSTEM RESET idle_in_transaction_session_timeout")
            cur.execute("SELECT pg_reload_conf()")
