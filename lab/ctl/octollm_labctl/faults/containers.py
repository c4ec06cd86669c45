"""Faults of the containers themselves: a killed or stopped process, memory limits, a CPU hog.

Each acts through Docker (``docker kill``, ``docker update``, ``docker exec``), a signal, or the Compose override
of the state dir, as an incident or a deployment would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import Any

from octollm_labctl.errors import Kind, LabError
from octollm_labctl.faults.base import Fault
from octollm_labctl.faults.common import containers_of, edit_override, inspect, main_pid
from octollm_labctl.lab import ARMS, PORTS, Lab, run

COMPONENT = "containers"


# ---- crash: the service's process is killed and stays down -----------------------------------
def _crash_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    service = target or "orchestrator"
    # `docker kill` does not trigger the restart policy: the container stays exited (137), as after a
    # crash that Docker gave up on.
    for cid in containers_of(lab, service):
        run(["docker", "kill", "--signal", "KILL", cid])
    return {"service": service}


def _crash_heal(lab: Lab, record: dict[str, Any]) -> None:
    lab.compose("up", "-d", "--no-deps", "--wait", record["service"], timeout=180)


# ---- unhealthy arm: the process hangs (SIGSTOP), the container runs, health checks fail --------
def _unhealthy_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    arm = target or "coder-arm"
    if arm not in ARMS:
        raise LabError(f"unknown arm {arm!r}; one of {', '.join(ARMS)}", Kind.USAGE)
    pids = [main_pid(cid) for cid in containers_of(lab, arm)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return {"service": arm, "pids": pids}


def _unhealthy_heal(lab: Lab, record: dict[str, Any]) -> None:
    for pid in record.get("pids", []):
        with contextlib.suppress(ProcessLookupError):  # the container was restarted meanwhile
            os.kill(pid, signal.SIGCONT)


# ---- oom: a service's memory limit lowered under what it needs; the kernel OOM-kills it -------------
OOM_HEADROOM_BYTES = 24 * 1024 * 1024
OOM_LEAK_MB_PER_SECOND = 16


def _oom_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import urllib.request

    service = target or "judge-arm"
    if service != "orchestrator" and service not in ARMS:
        raise LabError("oom targets the orchestrator or an arm (they have POST /debug/leak)", Kind.USAGE)
    cid = containers_of(lab, service)[0]
    info = inspect(cid)
    host = info["HostConfig"]
    stats = json.loads(run(["docker", "stats", "--no-stream", "--no-trunc", "--format", "{{json .}}", cid]).stdout)
    usage = _parse_size(stats["MemUsage"].split("/")[0])
    # docker update cannot set a limit under the current usage; the leak then pushes it over the limit
    limit = (usage + OOM_HEADROOM_BYTES) // (1024 * 1024) * 1024 * 1024
    record = {"service": service, "container": cid, "memory": host.get("Memory") or 0,
              "memory_swap": host.get("MemorySwap") or 0, "limit": limit, "restarts_before": info["RestartCount"],
              "override": (lab.state / "compose.override.yaml").read_text()}
    run(["docker", "update", "--memory", str(limit), "--memory-swap", str(limit), cid])
    if lab.profile.seed_endpoints_only:  # no /debug/leak: the service's leak switch is SIGUSR1 (16 MB/s)
        # from inside: `docker kill --signal` marks a container without a stop signal as stopped on purpose, and its
        # restart policy would then leave it down after the OOM kill
        run(["docker", "exec", cid, "sh", "-c", "kill -USR1 1"])
    else:
        req = urllib.request.Request(f"http://127.0.0.1:{PORTS[service]}/debug/leak", method="POST",
                                     data=json.dumps({"mb_per_second": OOM_LEAK_MB_PER_SECOND,
                                                      "enabled": True}).encode())
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10):
            pass
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = inspect(cid)
        if state["State"].get("OOMKilled") and state["State"].get("Running"):
            record["oom_killed"] = True
            return record
        time.sleep(0.5)
    raise LabError(f"{service} was not OOM-killed within 60s under a {limit} byte limit", Kind.INTERNAL)


def _parse_size(text: str) -> int:
    units = {"B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
    text = text.strip().upper()
    number = text.rstrip("KMGIB")
    return int(float(number) * units.get(text[len(number):] or "B", 1))


def _recreate_from_baseline(lab: Lab, record: dict[str, Any]) -> None:
    """The Compose override as it was before the fault (a fix may have written a limit there), and a fresh
    container from it: the declared limit, no OOMKilled flag, no restart count."""
    service = record["service"]
    override = lab.state / "compose.override.yaml"
    if record.get("override") is not None and override.read_text() != record["override"]:
        override.write_text(record["override"])
    lab.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", service, timeout=180)


# ---- no-memory-limit: a deployment override that drops a service's memory limit ----------------------------
def _no_memory_limit_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    """``mem_limit: 0`` (no limit, as Docker reads it) for the service in the Compose override, and recreate it:
    the misconfiguration lives where deployments change limits, so a restart keeps it."""
    service = target or "retriever-arm"
    if service != "orchestrator" and service not in ARMS:
        raise LabError("no-memory-limit targets the orchestrator or an arm", Kind.USAGE)
    original = (lab.state / "compose.override.yaml").read_text()
    edit_override(lab, service, lambda entry: entry.__setitem__("mem_limit", 0))
    record = {"service": service, "override": original}
    lab.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", service, timeout=180)
    limits = [inspect(cid)["HostConfig"].get("Memory") or 0 for cid in containers_of(lab, service)]
    if any(limits):
        raise LabError(f"{service} still has a memory limit after the override: {limits}", Kind.INTERNAL)
    return record


# ---- cpu-hog: a runaway process inside a service's container burns its CPU quota --------------------
# The quota is lowered to CPU_HOG_CPUS for the fault: on a busy 2-core host CFS gives a container's group only its
# share of the cores (measured: under a 0.5 quota a hog got 66% of it at load 9), under 0.2 it sits at its limit
# (93-98% of it, throttled in 75-81% of the periods at load 11), and the fault adds at most a fifth of a core.
CPU_HOG_MARKER = "octollm-cpu-hog"
CPU_HOG_PROCESSES = 4
CPU_HOG_CPUS = "0.2"


def _cpu_hog_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    service = target or "executor-arm"
    containers = [c for c in containers_of(lab, service) if main_pid(c)]
    nano_cpus = {cid: inspect(cid)["HostConfig"].get("NanoCpus") or 0 for cid in containers}
    for cid in containers:
        run(["docker", "update", "--cpus", CPU_HOG_CPUS, cid])
        for _ in range(CPU_HOG_PROCESSES):  # more runnable threads than the quota: it stays at its limit under load
            run(["docker", "exec", "-d", cid, "python3", "-c", "while True: pass", CPU_HOG_MARKER])
    time.sleep(3)  # until the hog has used its quota for a few CFS periods
    return {"service": service, "containers": containers, "nano_cpus": nano_cpus}


def _cpu_hog_heal(lab: Lab, record: dict[str, Any]) -> None:
    service = record.get("service") or "executor-arm"
    pattern = f"{CPU_HOG_MARKER[:-1]}[{CPU_HOG_MARKER[-1]}]"  # does not match this shell's own command line
    kill = (f"for p in /proc/[0-9]*; do if grep -q '{pattern}' $p/cmdline 2>/dev/null; "
            "then kill -9 ${p#/proc/}; fi; done; true")
    for cid in containers_of(lab, service):
        run(["docker", "exec", cid, "sh", "-c", kill], check=False)
    for cid, nano in (record.get("nano_cpus") or {}).items():
        if nano:
            run(["docker", "update", "--cpus", str(nano / 1e9), cid], check=False)


FAULTS = (
    Fault("crash", COMPONENT, "kill a service's process; the container stays exited (default orchestrator)",
          _crash_inject, _crash_heal, "orchestrator"),
    Fault("unhealthy-arm", COMPONENT, "stop an arm's process (SIGSTOP): running but failing health checks",
          _unhealthy_inject, _unhealthy_heal, "coder-arm"),
    Fault("oom", COMPONENT, "lower a service's memory limit (docker update) under its usage plus a leak (POST "
          "/debug/leak, SIGUSR1 in the minimal profile): the kernel OOM-kills it and the restart policy restarts it "
          "(default judge-arm)",
          _oom_inject, _recreate_from_baseline, "judge-arm"),
    Fault("no-memory-limit", COMPONENT, "mem_limit: 0 (no limit) for a service in the Compose override of the state "
          "dir, and the service recreated (default retriever-arm)",
          _no_memory_limit_inject, _recreate_from_baseline, "retriever-arm"),
    Fault("cpu-hog", COMPONENT, "a runaway process inside a service's container burns its CPU quota (default "
          "executor-arm)",
          _cpu_hog_inject, _cpu_hog_heal, "executor-arm"),
)
