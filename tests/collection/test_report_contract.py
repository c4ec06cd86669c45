"""roles/_common/tasks/report.yml: ansible-runner hands the set_stats data to the playbook_on_stats event as
artifact_data; the results of several hosts and procedures merge side by side, and stay as the host fact
octollm_report (no lab needed: probes that cannot connect are evidence too)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PLAY = """
- name: Two procedures report on two hosts
  hosts: stacks
  gather_facts: false
  tasks:
    - name: Diagnose two procedures through the shared flow
      ansible.builtin.include_role:
        name: octollm.remediation._common
        tasks_from: diagnose
      vars:
        _common_procedures: [task_routing, cache_performance]
    - name: The fact holds both results
      ansible.builtin.assert:
        that: octollm_report.keys() | sort == ['cache_performance', 'stack', 'task_routing']
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_artifact_data_merges_hosts_and_procedures(tmp_path: Path) -> None:
    import ansible_runner

    port = _closed_port()
    inventory = f"""
stacks:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    octollm_platform: compose
    octollm_compose_project: octollm-nothing-here
    octollm_prometheus_url: http://127.0.0.1:{port}
    octollm_redis: {{host: 127.0.0.1, port: {port}}}
    octollm_postgres: {{host: 127.0.0.1, port: {port}}}
    octollm_services: {{orchestrator: {{url: "http://127.0.0.1:{port}"}}}}
  hosts:
    stack-a: {{}}
    stack-b: {{}}
"""
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "play.yml").write_text(PLAY)
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(inventory)
    runner = ansible_runner.run(
        private_data_dir=str(tmp_path),
        playbook="play.yml",
        quiet=True,
        envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")},
    )
    assert runner.rc == 0, runner.stdout.read()[-3000:]
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    report = stats[-1]["event_data"]["artifact_data"]["octollm_report"]
    assert sorted(report) == ["stack-a", "stack-b"]
    for host in ("stack-a", "stack-b"):
        assert sorted(report[host]) == ["cache_performance", "stack", "task_routing"]
        # nothing runs on this machine under that project: the stack check cannot see the services, never "up"
        assert not any(f["status"] == "ok" for f in report[host]["stack"]["findings"])
        for name, result in report[host].items():
            if name == "stack":
                continue
            assert result["procedure"] == name and result["phase"] == "diagnose"
            # nothing answers: every check that needed a probe is unknown, with the error kind, never ok
            assert result["findings"] and not any(f["status"] == "ok" and f.get("error") for f in result["findings"])
            assert any(f["status"] == "unknown" and f["error"]["kind"] == "unreachable" for f in result["findings"])
