"""Wall and CPU time of `octoctl diagnose` beside the framework's floor (a one-task ansible-runner run).

    .venv/bin/python bench/diagnose.py [--runs N] [PROCEDURE ...]

Needs the lab up (`octoctl lab up`). Without a procedure every procedure is diagnosed, as on-call starts. Prints
min / median / max seconds of each over N runs; CPU is the user+system time of octoctl and its children (ansible
is CPU-bound on a small machine, so CPU says more than wall time when the lab is busy).
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


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run."""
    cpu_before = children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
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


def summary(name: str, values: list[float]) -> str:
    return (f"{name:34} min {min(values):6.2f}s  median {statistics.median(values):6.2f}s  "
            f"max {max(values):6.2f}s  (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("procedures", nargs="*", help="procedures to diagnose (default: every procedure)")
    args = parser.parse_args()
    octoctl = str(Path(sys.executable).parent / "octoctl")
    env_path = str(Path(sys.executable).parent)
    os.environ["PATH"] = env_path + os.pathsep + os.environ.get("PATH", "")
    command = ["diagnose", *args.procedures]
    runs = [timed([octoctl, *command, "--format", "json"]) for _ in range(args.runs)]
    with tempfile.TemporaryDirectory() as workdir:
        floor = [floor_run(workdir) for _ in range(args.runs)]
    name = "octoctl " + " ".join(command)
    print(summary(name + " (wall)", [wall for wall, _ in runs]))
    print(summary(name + " (CPU)", [cpu for _, cpu in runs]))
    print(summary("ansible-runner, one task (floor)", floor))


if __name__ == "__main__":
    main()
