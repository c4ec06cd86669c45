"""Many stacks at once (issue 18, item 7): `octoctl fix --serial N [--max-fail-percentage P]` over an inventory of three
stacks, a dry run (check mode) so that nothing changes:

- ``lab``: the lab (healthy);
- ``broken``: a Compose stack of the same Docker engine whose containers are gone (a project with none) and whose
  services, PostgreSQL and Redis answer nowhere (ports nothing listens on): real problems, exit status 1;
- ``unreachable``: a stack whose host cannot be reached (SSH to a port nothing listens on): exit status 3.

In batches of two (``lab``, ``broken``, then ``unreachable``): every stack has its result and the run exits with the
highest status (3); with --max-fail-percentage 40 the first batch fails (``broken`` needs a human: 1 of 2 stacks, more
than 40 %), so the later batch is stopped: ``unreachable`` is reported not run, and the run exits 1."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from octoctl_runs import octoctl

REPO = Path(__file__).resolve().parents[2]
CLOSED = 9  # the discard port: nothing listens on it here


def _inventory(tmp_path: Path) -> Path:
    """inventory/lab's group variables, and three hosts in this order (the batches follow it)."""
    services = yaml.safe_load((REPO / "inventory" / "lab" / "group_vars" / "octollm.yml").read_text(
    ))["octollm_services"]
    nowhere = {name: {**{k: v for k, v in spec.items() if k != "probes"}, "port": CLOSED,
                      **({"url": f"http://127.0.0.1:{CLOSED}"} if "url" in spec else {})}
               for name, spec in services.items()}
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    hosts = {
        "lab": dict(local),
        "broken": {
            **local,
            "octollm_compose_project": f"octollm-broken-{os.getpid()}",
            "octollm_services": nowhere,
            "octollm_prometheus_url": f"http://127.0.0.1:{CLOSED}",
            "octollm_alertmanager_url": f"http://127.0.0.1:{CLOSED}",
            "octollm_postgres": {"host": "127.0.0.1", "port": CLOSED, "database": "octollm", "user": "octollm",
                                 "password": "not-a-secret", "admin_user": "postgres",
                                 "admin_password": "not-a-secret"},
            "octollm_redis": {"host": "127.0.0.1", "port": CLOSED, "password": "not-a-secret",
                              "config_file": str(tmp_path / "redis.conf")},
        },
        "unreachable": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": CLOSED,
                        "ansible_user": "nobody", "ansible_ssh_common_args": "-o ConnectTimeout=3 -o BatchMode=yes"},
    }
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(REPO / "inventory" / "lab" / "group_vars")
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"octollm": {"hosts": hosts}}, sort_keys=False))
    return inventory


def _by_target(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {target["target"]: target for target in report["targets"]}


@pytest.mark.lab
def test_serial_rollout_reports_each_stack_and_a_failed_batch_stops_the_later_ones(
        healthy_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCTOLLM_REPO", str(REPO))  # the group variables' compose paths (the inventory moved)
    inventory = _inventory(tmp_path)

    # batches of two: every stack reached; the run's status is the highest of them
    code, report, err = octoctl("fix", "service_unavailable", "--dry-run", "--serial", "2", "-i", str(inventory))
    targets = _by_target(report)
    assert sorted(targets) == ["broken", "lab", "unreachable"], err[-2000:]
    assert (targets["lab"]["exit_code"], targets["lab"]["status"]) == (0, "healthy"), targets["lab"]
    broken = targets["broken"]
    assert broken["exit_code"] == 1 and broken["reachable"] and not broken["errors"], broken
    assert broken["stack"]["down"], broken["stack"]  # its containers are gone: the stack check says so
    [result] = broken["procedures"]
    assert result["procedure"] == "service_unavailable" and [s for s in result["scenarios"] if s["holds"]], result
    unreachable = targets["unreachable"]
    assert unreachable["exit_code"] == 3 and not unreachable["reachable"], unreachable
    assert [e["kind"] for e in unreachable["errors"]] == ["unreachable"], unreachable
    assert code == report["exit_code"] == 3, err[-2000:]

    # more than 40 % of the first batch failed (broken needs a human): the second batch is not run
    code, report, err = octoctl("fix", "service_unavailable", "--dry-run", "--serial", "2",
                                "--max-fail-percentage", "40", "-i", str(inventory))
    targets = _by_target(report)
    assert (targets["lab"]["exit_code"], targets["broken"]["exit_code"]) == (0, 1), report["targets"]
    assert targets["broken"]["procedures"], targets["broken"]
    stopped = targets["unreachable"]
    assert [e["kind"] for e in stopped["errors"]] == ["not_run"] and not stopped["procedures"], stopped
    assert stopped["exit_code"] == 1
    assert code == report["exit_code"] == 1, err[-2000:]
