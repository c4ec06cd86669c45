"""playbooks/prevent_all.yml (issue 18, item 5): every procedure's prevention in one run of the shared flow, with
octoctl prevent's semantics (the lab run is tests/lab/test_prevent_all.py)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "collection" / "playbooks" / "prevent_all.yml"
# every procedure role on disk (the shared flow _common is not one)
PROCEDURES = sorted(role.name for role in (REPO / "collection" / "roles").iterdir()
                    if (role / "tasks" / "prevent.yml").is_file() and not role.name.startswith("_"))


def test_prevent_all_names_every_procedure_with_a_prevention() -> None:
    assert len(PROCEDURES) == 10, PROCEDURES
    [play] = yaml.safe_load(PLAYBOOK.read_text())
    assert sorted(play["vars"]["__octollm_every_procedure"]) == PROCEDURES
    [task] = play["tasks"]
    include = task["ansible.builtin.include_role"]
    assert include == {"name": "octollm.remediation._common", "tasks_from": "prevent"}
    assert "__octollm_every_procedure" in task["vars"]["_common_procedures"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_prevent_all_reports_every_procedure_s_prevention(tmp_path: Path) -> None:
    """Against a stack where nothing answers (no lab): each procedure reports its prevent phase, nothing applied."""
    import ansible_runner

    port = _closed_port()
    inventory: dict[str, Any] = {"octollm": {"hosts": {"stack-a": {}}, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "octollm_platform": "compose", "octollm_compose_project": "octollm-nothing-here",
        "octollm_prometheus_url": f"http://127.0.0.1:{port}",
        "octollm_redis": {"host": "127.0.0.1", "port": port}, "octollm_postgres": {"host": "127.0.0.1", "port": port},
        "octollm_services": {"orchestrator": {"url": f"http://127.0.0.1:{port}"}}}}}
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    runner = ansible_runner.run(private_data_dir=str(tmp_path), playbook=str(PLAYBOOK), quiet=True,
                                envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")})
    assert runner.rc == 0, runner.stdout.read()[-3000:]
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    report = stats[-1]["event_data"]["artifact_data"]["octollm_report"]["stack-a"]
    assert sorted(name for name in report if name != "stack") == PROCEDURES
    for name in PROCEDURES:
        assert report[name]["procedure"] == name and report[name]["phase"] == "prevent", name
        prevention = report[name].get("prevention") or {}
        assert isinstance(prevention.get("findings"), list), name
        actions = (report[name].get("actions") or []) + (prevention.get("actions") or [])
        assert not any(action["status"] == "applied" for action in actions), name
