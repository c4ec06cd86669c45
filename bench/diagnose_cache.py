"""Wall time of `octoctl diagnose cache` beside the framework's floor (a one-task ansible-runner run).

    .venv/bin/python bench/diagnose_cache.py [--runs N]

Needs the lab up (`octoctl lab up`). Prints min / median / max seconds of each over N runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed


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
    args = parser.parse_args()
    octoctl = str(Path(sys.executable).parent / "octoctl")
    env_path = str(Path(sys.executable).parent)
    os.environ["PATH"] = env_path + os.pathsep + os.environ.get("PATH", "")
    diagnose = [timed([octoctl, "diagnose", "cache", "--format", "json"]) for _ in range(args.runs)]
    with tempfile.TemporaryDirectory() as workdir:
        floor = [floor_run(workdir) for _ in range(args.runs)]
    print(summary("octoctl diagnose cache", diagnose))
    print(summary("ansible-runner, one task (floor)", floor))


if __name__ == "__main__":
    main()
