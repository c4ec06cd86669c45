"""Wall and CPU time of `octoctl diagnose` and of a cache fix, beside the floors they are compared with.

    .venv/bin/python bench/diagnose.py [--runs N] [--no-fix] [PROCEDURE ...]

Needs the lab up (`octoctl lab up`) and nobody else using it (hold /tmp/octollm-lab.lock). Without a procedure
every procedure is diagnosed, as on-call starts. Prints min / median / max seconds of each over N runs:

- the floors: ansible-runner running a one-task playbook against the lab inventory, and octoctl's own path with a
  one-task playbook in place of playbooks/run.yml (octoctl start-up, inventory check, ansible-runner, report);
- ``octoctl diagnose`` and its ratio to the octoctl-path floor (issue 13's target: at most 1.5x);
- ``octoctl fix cache --approve`` on the ``redis-eviction`` fault, from the start of the command to its verified
  report (target: at most 15 s); the fault is injected before and healed after each run, outside the timing.

CPU is the user+system time of octoctl and its children (ansible is CPU-bound on a small machine, so CPU says more
than wall time when the lab is busy).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], want: tuple[int, ...] = (0, 1)) -> tuple[float, float]:
    """(wall, CPU) seconds of one run."""
    cpu_before = children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode not in want:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed, children_cpu() - cpu_before


def floor_run(workdir: str) -> float:
    """One ansible-runner run of a one-task playbook against the same inventory."""
    import ansible_runner

    playbook = Path(workdir) / "one_task.yml"
    playbook.write_text("- hosts: octollm\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    started = time.perf_counter()
    result = ansible_runner.run(private_data_dir=workdir, playbook=str(playbook),
                                inventory=str(ROOT / "inventory" / "lab"), quiet=True)
    elapsed = time.perf_counter() - started
    if result.rc != 0:
        sys.exit(f"the one-task run failed: {result.status}")
    return elapsed


FLOOR_PLAYBOOK = """\
- hosts: octollm
  gather_facts: false
  tasks:
    - ansible.builtin.set_stats:
        data:
          octollm_report: "{{ {inventory_hostname: {'cache_performance': result}} }}"
        per_host: false
        aggregate: true
      vars:
        result: {procedure: cache_performance, platform: compose, phase: diagnose, findings: [], scenarios: [],
                 escalation: {level: null, reason: floor}}
"""


def octoctl_floor(octoctl: str, workdir: str) -> float:
    """octoctl's path with a one-task playbook: everything octoctl adds around one ansible-runner run."""
    playbook = Path(workdir) / "floor.yml"
    playbook.write_text(FLOOR_PLAYBOOK)
    env = dict(os.environ, OCTOCTL_PLAYBOOK=str(playbook))
    started = time.perf_counter()
    proc = subprocess.run([octoctl, "diagnose", "cache_performance", "--format", "json"], capture_output=True,
                          text=True, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"the octoctl floor run exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed


def fix_cache(octoctl: str) -> tuple[float, float]:
    """(wall, CPU) of `octoctl fix cache --approve` on redis-eviction (injected and healed outside the timing)."""
    subprocess.run([octoctl, "lab", "break", "redis-eviction"], check=True, capture_output=True)
    try:
        return timed([octoctl, "fix", "cache", "--approve", "--format", "json"], want=(0,))
    finally:
        subprocess.run([octoctl, "lab", "heal", "redis-eviction"], check=True, capture_output=True)


def summary(name: str, values: list[float]) -> str:
    return (f"{name:34} min {min(values):6.2f}s  median {statistics.median(values):6.2f}s  "
            f"max {max(values):6.2f}s  (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-fix", action="store_true", help="skip the cache fix measurement")
    parser.add_argument("procedures", nargs="*", help="procedures to diagnose (default: every procedure)")
    args = parser.parse_args()
    octoctl = str(Path(sys.executable).parent / "octoctl")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    command = ["diagnose", *args.procedures]
    with tempfile.TemporaryDirectory() as workdir:
        floor = [floor_run(workdir) for _ in range(args.runs)]
        octoctl_floors = [octoctl_floor(octoctl, workdir) for _ in range(args.runs)]
    runs = [timed([octoctl, *command, "--format", "json"]) for _ in range(args.runs)]
    fixes = [] if args.no_fix else [fix_cache(octoctl) for _ in range(args.runs)]
    name = "octoctl " + " ".join(command)
    print(summary("ansible-runner, one task (floor)", floor))
    print(summary("octoctl path, one task (floor)", octoctl_floors))
    print(summary(name + " (wall)", [wall for wall, _ in runs]))
    print(summary(name + " (CPU)", [cpu for _, cpu in runs]))
    ratio = statistics.median([wall for wall, _ in runs]) / statistics.median(octoctl_floors)
    print(f"{name}: {ratio:.2f}x the octoctl-path floor (target: at most 1.5x)")
    if fixes:
        print(summary("octoctl fix cache --approve (wall)", [wall for wall, _ in fixes]))
        print(summary("octoctl fix cache --approve (CPU)", [cpu for _, cpu in fixes]))
        print("octoctl fix cache --approve: target at most 15 s from start to verified")


if __name__ == "__main__":
    main()
