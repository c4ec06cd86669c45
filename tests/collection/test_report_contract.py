"""roles/common/tasks/report.yml: ansible-runner hands the set_stats data to the playbook_on_stats event as
artifact_data, and the results of several hosts and procedures merge side by side (no lab needed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PLAY = """
- name: Two procedures report on two hosts
  hosts: stacks
  gather_facts: false
  tasks:
    - name: Report the first procedure
      ansible.builtin.include_role:
        name: octollm.remediation.common
        tasks_from: report
      vars:
        common_report_procedure: proc_one
        common_report_result: {procedure: proc_one, phase: diagnose, findings: [{check: "a.{{ inventory_hostname }}"}]}
    - name: Report the second procedure
      ansible.builtin.include_role:
        name: octollm.remediation.common
        tasks_from: report
      vars:
        common_report_procedure: proc_two
        common_report_result: {procedure: proc_two, phase: resolve, actions: []}
    - name: The fact holds both results
      ansible.builtin.assert:
        that: common_report.keys() | sort == ['proc_one', 'proc_two']
"""

INVENTORY = """
stacks:
  hosts:
    stack-a: {ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}"}
    stack-b: {ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}"}
"""


def test_artifact_data_merges_hosts_and_procedures(tmp_path: Path) -> None:
    import ansible_runner

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "play.yml").write_text(PLAY)
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(INVENTORY)
    runner = ansible_runner.run(
        private_data_dir=str(tmp_path),
        playbook="play.yml",
        quiet=True,
        envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")},
    )
    assert runner.rc == 0, runner.stdout.read()[-3000:]
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    report = stats[-1]["event_data"]["artifact_data"]["octollm_report"]
    assert report == {
        host: {
            "proc_one": {"procedure": "proc_one", "phase": "diagnose", "findings": [{"check": f"a.{host}"}]},
            "proc_two": {"procedure": "proc_two", "phase": "resolve", "actions": []},
        }
        for host in ("stack-a", "stack-b")
    }
