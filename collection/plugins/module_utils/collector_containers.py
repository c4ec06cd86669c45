# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ``containers`` evidence kind: the containers of a deployment over the Docker API.

One list call finds the deployment's containers, stopped ones too: those of its Compose project (label
``com.docker.compose.project``) and, per service the inventory describes (``discovery``), those found by container
name (containers not under Compose), by Docker labels, or by another Compose project and service; each record keeps
the service name the inventory gives it. Then every other call runs in a thread pool: one inspect per container,
the log tails, the exec probes, ``df`` and ``info``. Resource usage comes from the containers' cgroup files when
the host running the module can read them (cgroup v1 ``memory``/``cpuacct``/``pids`` controllers, or cgroup v2),
because the Docker API's stats
take 0.5-1 s per container even in one-shot mode; containers whose cgroup cannot be read fall back to
one-shot API stats in the pool. CPU is sampled twice, ``stats_sample_seconds`` apart, for all containers at
once. The Python ``docker`` SDK is imported lazily: without it the kind fails with ``missing_tool``.

Nothing is changed: exec probes run what the caller gives (meant for ``nc -z``, ``pg_isready`` and the like),
bounded by ``timeout`` inside the container when it has coreutils' ``timeout``. ``compose_config`` runs
``docker compose config`` (it validates the Compose files and env file) beside the API calls and keeps a reduced
structure without any value of the services' environment. ``pii_scan`` reads the logs of every service (or those
named) for PII and returns per service only the counts by kind and a few redacted sample lines.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from ansible_collections.octollm.remediation.plugins.module_utils.evidence import (
    Collector,
    CollectorError,
    error_of,
    register,
    remaining,
)
from ansible_collections.octollm.remediation.plugins.module_utils.redact import (
    DEFAULT_PII,
    redact_pii,
    redact_setting,
    validate_kinds,
)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
# at most this many of the project's unused images are listed (their total is counted)
PROJECT_UNUSED_MAX = 100

DEFAULT_ERROR_PATTERN = r"(?i)\b(error|exception|traceback|critical|fatal|panic|oom|killed|refused|timed? ?out)\b"
UNLIMITED = 1 << 62  # cgroup v1 reports "no limit" as a page-rounded 2^63-1
OUTPUT_MAX = 2000
HEALTH_OUTPUT_MAX = 300
POOL_SIZE = 8

LOG_OPTIONS = dict(
    tail=dict(type="int", default=100),
    services=dict(type="list", elements="str", default=[]),
    pattern=dict(type="str", default=DEFAULT_ERROR_PATTERN),
    patterns=dict(type="dict", default={}),
    since_seconds=dict(type="int"),
    max_matches=dict(type="int", default=50),
    line_max_chars=dict(type="int", default=400),
    redact=dict(type="list", elements="str", default=list(DEFAULT_PII)),
)

# A scan of the services' logs for PII (Security Violations D): per service only the counts by kind and a few
# redacted sample lines, never the lines themselves. ``allow``: regexes of text that is not user data although it
# looks like it (a build's maintainer address), blanked before the scan.
PII_SCAN_OPTIONS = dict(
    services=dict(type="list", elements="str", default=[]),
    tail=dict(type="int", default=1000),
    since_seconds=dict(type="int"),
    allow=dict(type="list", elements="str", default=[]),
    samples=dict(type="int", default=3),
    line_max_chars=dict(type="int", default=300),
    redact=dict(type="list", elements="str", default=list(DEFAULT_PII)),
)

EXEC_OPTIONS = dict(
    service=dict(type="str", required=True),
    cmd=dict(type="raw", required=True),
    name=dict(type="str"),
    timeout=dict(type="float", default=5.0),
    user=dict(type="str"),
    attempts=dict(type="int", default=1),
)
# The values of named settings in the containers' environment, masked (module_utils/redact.py: a secret's value
# whole, a URL's password): what a startup failure report names (service_unavailable D).
ENVIRONMENT_OPTIONS = dict(
    names=dict(type="list", elements="str", default=[]),
    services=dict(type="list", elements="str", default=[]),
)
COMPOSE_CONFIG_OPTIONS = dict(
    project_dir=dict(type="path", required=True),
    files=dict(type="list", elements="path", default=[]),
    env_file=dict(type="path"),
    timeout=dict(type="float", default=15.0),
)
# exit codes a new attempt cannot change: the command timed out, or it cannot run in the container
FINAL_EXIT_CODES = (0, 124, 126, 127)


# --- helpers -------------------------------------------------------------------------------------------------
def _short(container_id):
    return (container_id or "")[:12]


def _ns_to_s(value):
    return round(value / 1e9, 3) if isinstance(value, (int, float)) and value else None


def _limit(value):
    """A memory limit in bytes, or None when unlimited."""
    if value is None:
        return None
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return None if value <= 0 or value >= UNLIMITED else value


def _read(path):
    with open(path, "r") as handle:
        return handle.read().strip()


def _read_int(path):
    text = _read(path)
    return None if text == "max" else int(text)


def _read_kv(path):
    values = {}
    with open(path, "r") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) == 2:
                try:
                    values[parts[0]] = int(parts[1])
                except ValueError:
                    continue
    return values


def cgroup_version(root):
    return 2 if os.path.exists(os.path.join(root, "cgroup.controllers")) else 1


def cgroup_dirs(root, container_id, pid=None):
    """``{controller: directory}`` of a container's cgroup (``unified`` for v2); empty when not found.

    The container's own ``/proc/<pid>/cgroup`` is trusted first (it names the real path whatever the cgroup
    driver); the well-known cgroupfs and systemd paths come next. A directory is only accepted when its path
    carries the container id, so another cgroup is never read by mistake.
    """
    version = cgroup_version(root)
    found = {}
    if pid:
        try:
            with open("/proc/%d/cgroup" % int(pid), "r") as handle:
                for line in handle:
                    parts = line.strip().split(":", 2)
                    if len(parts) != 3 or container_id not in parts[2]:
                        continue
                    path = parts[2].lstrip("/")
                    if parts[0] == "0" and parts[1] == "":
                        if version == 2:
                            found["unified"] = os.path.join(root, path)
                        continue
                    for controller in parts[1].split(","):
                        if controller in ("memory", "cpuacct", "pids", "cpu"):
                            directory = os.path.join(root, parts[1], path)
                            if not os.path.isdir(directory):
                                directory = os.path.join(root, controller, path)
                            found[controller] = directory
        except (OSError, ValueError):
            found = {}
    if version == 2:
        if "unified" not in found:
            for relative in ("system.slice/docker-%s.scope" % container_id, "docker/%s" % container_id):
                candidate = os.path.join(root, relative)
                if os.path.isdir(candidate):
                    found["unified"] = candidate
                    break
        return {"unified": found["unified"]} if found.get("unified") and os.path.isdir(found["unified"]) else {}
    for controller in ("memory", "cpuacct", "pids", "cpu"):
        if controller in found and os.path.isdir(found[controller]):
            continue
        found.pop(controller, None)
        for base in (controller, "cpu,cpuacct" if controller in ("cpu", "cpuacct") else controller):
            for relative in ("docker/%s" % container_id, "system.slice/docker-%s.scope" % container_id):
                candidate = os.path.join(root, base, relative)
                if os.path.isdir(candidate):
                    found[controller] = candidate
                    break
            if controller in found:
                break
    return found if "memory" in found and "cpuacct" in found else {}


def read_cgroup(dirs):
    """Memory, CPU (cumulative ns) and pids of one cgroup; raises OSError when unreadable."""
    sample = {"source": "cgroup", "t": time.monotonic()}
    if "unified" in dirs:
        base = dirs["unified"]
        stat = _read_kv(os.path.join(base, "memory.stat"))
        usage = _read_int(os.path.join(base, "memory.current"))
        cpu_stat = _read_kv(os.path.join(base, "cpu.stat"))
        sample.update(
            cgroup_version=2,
            memory_usage_bytes=usage,
            memory_limit_bytes=_limit(_read_int(os.path.join(base, "memory.max"))),
            memory_inactive_file_bytes=stat.get("inactive_file", 0),
            memory_rss_bytes=stat.get("anon"),
            memory_cache_bytes=stat.get("file"),
            cpu_ns=cpu_stat.get("usage_usec", 0) * 1000,
            cpu_periods=cpu_stat.get("nr_periods"),
            cpu_throttled_periods=cpu_stat.get("nr_throttled"),
        )
        peak = os.path.join(base, "memory.peak")
        sample["memory_max_usage_bytes"] = _read_int(peak) if os.path.exists(peak) else None
        events_path = os.path.join(base, "memory.events")
        if os.path.exists(events_path):
            events = _read_kv(events_path)
            sample["memory_failcnt"] = events.get("max")
            sample["oom_events"] = events.get("oom")
            sample["oom_kills"] = events.get("oom_kill")
        pids = os.path.join(base, "pids.current")
        sample["pids"] = _read_int(pids) if os.path.exists(pids) else None
    else:
        memory = dirs["memory"]
        stat = _read_kv(os.path.join(memory, "memory.stat"))
        sample.update(
            cgroup_version=1,
            memory_usage_bytes=_read_int(os.path.join(memory, "memory.usage_in_bytes")),
            memory_limit_bytes=_limit(_read_int(os.path.join(memory, "memory.limit_in_bytes"))),
            memory_max_usage_bytes=_read_int(os.path.join(memory, "memory.max_usage_in_bytes")),
            memory_failcnt=_read_int(os.path.join(memory, "memory.failcnt")),
            memory_inactive_file_bytes=stat.get("total_inactive_file", stat.get("inactive_file", 0)),
            memory_rss_bytes=stat.get("total_rss", stat.get("rss")),
            memory_cache_bytes=stat.get("total_cache", stat.get("cache")),
            cpu_ns=_read_int(os.path.join(dirs["cpuacct"], "cpuacct.usage")),
        )
        cpu_stat_path = os.path.join(dirs.get("cpu") or dirs["cpuacct"], "cpu.stat")
        if os.path.exists(cpu_stat_path):
            cpu_stat = _read_kv(cpu_stat_path)
            sample["cpu_periods"] = cpu_stat.get("nr_periods")
            sample["cpu_throttled_periods"] = cpu_stat.get("nr_throttled")
        oom_control = os.path.join(memory, "memory.oom_control")
        if os.path.exists(oom_control):
            control = _read_kv(oom_control)
            sample["oom_kills"] = control.get("oom_kill")
            sample["under_oom"] = bool(control.get("under_oom")) if "under_oom" in control else None
        pids_dir = dirs.get("pids")
        pids = os.path.join(pids_dir, "pids.current") if pids_dir else None
        sample["pids"] = _read_int(pids) if pids and os.path.exists(pids) else None
    return sample


def api_sample(stats):
    """The same shape as :func:`read_cgroup` from one-shot Docker API stats."""
    memory = stats.get("memory_stats") or {}
    mstat = memory.get("stats") or {}
    cpu = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
    throttling = (stats.get("cpu_stats") or {}).get("throttling_data") or {}
    return {
        "source": "api",
        "t": time.monotonic(),
        "memory_usage_bytes": memory.get("usage"),
        "memory_limit_bytes": _limit(memory.get("limit")),
        "memory_max_usage_bytes": memory.get("max_usage"),
        "memory_failcnt": memory.get("failcnt"),
        "memory_inactive_file_bytes": mstat.get("total_inactive_file", mstat.get("inactive_file", 0)),
        "memory_rss_bytes": mstat.get("total_rss", mstat.get("rss", mstat.get("anon"))),
        "memory_cache_bytes": mstat.get("total_cache", mstat.get("cache", mstat.get("file"))),
        "cpu_ns": cpu.get("total_usage"),
        "cpu_periods": throttling.get("periods"),
        "cpu_throttled_periods": throttling.get("throttled_periods"),
        "pids": (stats.get("pids_stats") or {}).get("current"),
    }


def finish_stats(first, second, nano_cpus):
    """One container's stats from two samples (the second may be None: no CPU rate then)."""
    last = second or first
    usage = last.get("memory_usage_bytes")
    inactive = last.get("memory_inactive_file_bytes") or 0
    working_set = max(0, usage - inactive) if isinstance(usage, int) else None
    limit = last.get("memory_limit_bytes")
    result = {key: value for key, value in last.items()
              if key not in ("t", "cpu_ns", "cpu_periods", "cpu_throttled_periods")}
    result["memory_working_set_bytes"] = working_set
    result["memory_percent"] = round(100.0 * working_set / limit, 2) if working_set is not None and limit else None
    result["cpu_seconds"] = _ns_to_s(last.get("cpu_ns"))
    cpu_percent = None
    if second and isinstance(first.get("cpu_ns"), int) and isinstance(second.get("cpu_ns"), int):
        elapsed = second["t"] - first["t"]
        if elapsed > 0:
            cpu_percent = round(100.0 * (second["cpu_ns"] - first["cpu_ns"]) / (elapsed * 1e9), 2)
            result["sample_seconds"] = round(elapsed, 3)
    if second and isinstance(first.get("memory_usage_bytes"), int) and isinstance(working_set, int):
        # memory growth over the same window (the Memory Leaks procedure's "now" signal)
        elapsed = second["t"] - first["t"]
        first_ws = max(0, first["memory_usage_bytes"] - (first.get("memory_inactive_file_bytes") or 0))
        result["memory_working_set_first_bytes"] = first_ws
        result["memory_growth_bytes_per_s"] = round((working_set - first_ws) / elapsed, 1) if elapsed > 0 else None
    result["cpu_percent"] = cpu_percent
    # the share of CFS periods in the window in which the quota ran out: a container that keeps hitting its quota
    # exhausts it even when a contended host leaves it less than the quota on average
    result["cpu_throttled_percent"] = None
    if second and all(isinstance(x.get(k), int) for x in (first, second)
                      for k in ("cpu_periods", "cpu_throttled_periods")):
        periods = second["cpu_periods"] - first["cpu_periods"]
        if periods > 0:
            throttled = second["cpu_throttled_periods"] - first["cpu_throttled_periods"]
            result["cpu_throttled_percent"] = round(100.0 * throttled / periods, 1)
    cpus = nano_cpus / 1e9 if nano_cpus else None
    result["cpu_limit_percent"] = round(cpu_percent / cpus, 2) if cpu_percent is not None and cpus else None
    return result


def _timestamp(value):
    if not value or str(value).startswith("0001-01-01"):
        return None
    return value


def _seconds(nanoseconds):
    return nanoseconds / 1e9 if nanoseconds else None


# --- which containers are the deployment's --------------------------------------------------------------------
def container_name(container):
    return ((container.get("Names") or ["?"])[0] or "?").lstrip("/")


def found_by(entry):
    """How a described service's containers are found: ``name`` (``container_names``), ``labels`` or ``compose``."""
    if (entry or {}).get("container_names"):
        return "name"
    if (entry or {}).get("labels"):
        return "labels"
    return "compose"


def lists_every_container(discovery, project):
    """Whether finding the described services needs more than the Compose project's containers."""
    return any(
        found_by(entry) != "compose" or (entry.get("project") or project) != project
        for entry in (discovery or {}).values()
    )


def discover(listed, discovery, project):
    """``({container id: (service, found_by)}, unclaimed)``: the containers that are the deployment's, each under the
    service name the inventory gives it (``discovery``: ``{service: {project, compose_service, container_names,
    labels}}``), found by container name, else by labels, else by Compose project and service; and the other
    containers of the Compose ``project`` under their Compose service (exporters, a load generator), except those
    whose Compose service is the name of a service the inventory places elsewhere (``unclaimed``: that is not the
    deployment's container of that service)."""
    entries = sorted((discovery or {}).items())
    described = set(name for name, _ in entries)
    claimed = {}
    unclaimed = []
    for container in listed:
        labels = container.get("Labels") or {}
        name = container_name(container)
        c_project, c_service = labels.get(PROJECT_LABEL), labels.get(SERVICE_LABEL)
        match = None
        for service, entry in entries:
            entry = entry or {}
            how = found_by(entry)
            if how == "name":
                hit = name in entry["container_names"]
            elif how == "labels":
                hit = all(labels.get(key) == str(value) for key, value in entry["labels"].items())
            else:
                hit = c_project == (entry.get("project") or project) and c_service == (
                    entry.get("compose_service") or service
                )
            if hit:
                match = (service, how)
                break
        if match is None and c_project == project and c_service:
            if c_service in described:
                unclaimed.append(name)
                continue
            match = (c_service, "compose")
        if match is not None:
            claimed[container["Id"]] = match
    return claimed, sorted(unclaimed)


def environment_of(inspect, names):
    """``{name: masked value}`` of the named settings the container's environment holds (never another one)."""
    wanted = set(names or [])
    found = {}
    for item in (inspect.get("Config") or {}).get("Env") or []:
        key, sep, value = str(item).partition("=")
        if sep and key in wanted:
            found[key] = redact_setting(key, value)
    return found


def container_record(listed, inspect, kinds):
    """The curated facts of one container (never its environment: it holds secrets)."""
    state = inspect.get("State") or {}
    config = inspect.get("Config") or {}
    host = inspect.get("HostConfig") or {}
    labels = config.get("Labels") or listed.get("Labels") or {}
    health = state.get("Health")
    health_log = None
    if health and health.get("Log"):
        last = health["Log"][-1]
        output = redact_pii((last.get("Output") or "").strip(), kinds)[0]
        health_log = {
            "exit_code": last.get("ExitCode"),
            "output": output[-HEALTH_OUTPUT_MAX:],
            "start": last.get("Start"),
            "end": last.get("End"),
        }
    check = config.get("Healthcheck") or {}
    test = check.get("Test") or []
    configured = bool(test) and test[0] != "NONE"
    log_config = host.get("LogConfig") or {}
    log_options = log_config.get("Config") or {}
    restart = host.get("RestartPolicy") or {}
    number = labels.get(NUMBER_LABEL)
    return {
        "service": labels.get(SERVICE_LABEL),
        "name": (inspect.get("Name") or "").lstrip("/"),
        "id": _short(inspect.get("Id")),
        "number": int(number) if number and str(number).isdigit() else None,
        "oneoff": labels.get(ONEOFF_LABEL) == "True",
        "state": state.get("Status"),
        "running": bool(state.get("Running")),
        "status": listed.get("Status"),
        "health": health.get("Status") if health else None,
        "health_failing_streak": health.get("FailingStreak") if health else None,
        "health_log": health_log,
        "exit_code": state.get("ExitCode"),
        "error": state.get("Error") or None,
        "oom_killed": bool(state.get("OOMKilled")),
        "restarting": bool(state.get("Restarting")),
        "restart_count": inspect.get("RestartCount", 0),
        "started_at": _timestamp(state.get("StartedAt")),
        "finished_at": _timestamp(state.get("FinishedAt")),
        "created": inspect.get("Created"),
        "pid": state.get("Pid") or None,
        "image": config.get("Image"),
        "image_id": inspect.get("Image"),
        "memory_limit": host.get("Memory") or None,
        "memory_reservation": host.get("MemoryReservation") or None,
        "memory_swap": host.get("MemorySwap") or None,
        "nano_cpus": host.get("NanoCpus") or None,
        "cpus": round(host["NanoCpus"] / 1e9, 3) if host.get("NanoCpus") else None,
        "pids_limit": host.get("PidsLimit") or None,
        "restart_policy": {"name": restart.get("Name") or "no", "max_retries": restart.get("MaximumRetryCount", 0)},
        "healthcheck": configured,
        "healthcheck_config": {
            "interval_s": _seconds(check.get("Interval")),
            "timeout_s": _seconds(check.get("Timeout")),
            "retries": check.get("Retries"),
            "start_period_s": _seconds(check.get("StartPeriod")),
        }
        if configured
        else None,
        "log_config": {
            "type": log_config.get("Type"),
            "max_size": log_options.get("max-size"),
            "max_file": log_options.get("max-file"),
        },
        "mounts": [
            {
                "type": mount.get("Type"),
                "source": mount.get("Source") if mount.get("Type") == "bind" else mount.get("Name"),
                "destination": mount.get("Destination"),
                "rw": mount.get("RW"),
            }
            for mount in inspect.get("Mounts") or []
        ],
        "network_mode": host.get("NetworkMode"),
    }


def summarise(records):
    services = {}
    for record in records:
        entry = services.setdefault(
            record["service"] or "?",
            {"containers": 0, "running": 0, "healthy": 0, "unhealthy": 0, "states": {}, "names": []},
        )
        entry["containers"] += 1
        entry["running"] += int(record["running"])
        entry["healthy"] += int(record["health"] == "healthy")
        entry["unhealthy"] += int(record["health"] == "unhealthy")
        entry["states"][record["state"]] = entry["states"].get(record["state"], 0) + 1
        entry["names"].append(record["name"])
    summary = {
        "total": len(records),
        "running": sum(1 for r in records if r["running"]),
        "healthy": sum(1 for r in records if r["health"] == "healthy"),
        "unhealthy": [r["name"] for r in records if r["health"] == "unhealthy"],
        "starting": [r["name"] for r in records if r["health"] == "starting"],
        "not_running": [r["name"] for r in records if not r["running"]],
        "restarting": [r["name"] for r in records if r["restarting"] or r["state"] == "restarting"],
        "oom_killed": [r["name"] for r in records if r["oom_killed"]],
        "restarted": {r["name"]: r["restart_count"] for r in records if r["restart_count"]},
        "without_healthcheck": [r["name"] for r in records if not r["healthcheck"]],
    }
    return services, summary


def statvfs(path):
    info = os.statvfs(path)
    total = info.f_blocks * info.f_frsize
    free = info.f_bavail * info.f_frsize
    used = total - info.f_bfree * info.f_frsize
    inodes_used = info.f_files - info.f_ffree
    return {
        "path": path,
        "total_bytes": total,
        "free_bytes": free,
        "used_bytes": used,
        "used_percent": round(100.0 * used / (used + free), 2) if used + free else None,
        "inodes_total": info.f_files,
        "inodes_free": info.f_favail,
        "inodes_used_percent": round(100.0 * inodes_used / info.f_files, 2) if info.f_files else None,
        "error": None,
    }


def host_memory():
    wanted = ("MemTotal", "MemAvailable", "MemFree", "SwapTotal", "SwapFree", "Cached")
    found = {}
    with open("/proc/meminfo", "r") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in wanted:
                found[name] = int(rest.split()[0]) * 1024
    return {
        "total_bytes": found.get("MemTotal"),
        "available_bytes": found.get("MemAvailable"),
        "free_bytes": found.get("MemFree"),
        "cached_bytes": found.get("Cached"),
        "swap_total_bytes": found.get("SwapTotal"),
        "swap_used_bytes": (found["SwapTotal"] - found["SwapFree"]) if "SwapTotal" in found else None,
        "available_percent": round(100.0 * found["MemAvailable"] / found["MemTotal"], 2)
        if found.get("MemTotal") and "MemAvailable" in found
        else None,
    }


def system_df(data, project_records, project=None):
    """``docker system df`` totals (the CLI's arithmetic) plus the project's images and volumes, and the images
    labelled with the Compose ``project`` that no container uses (``images.project_unused``)."""
    images = data.get("Images") or []
    containers = data.get("Containers") or []
    volumes = data.get("Volumes") or []
    cache = data.get("BuildCache") or []
    layers = data.get("LayersSize") or 0
    used = sum(
        max(0, (image.get("VirtualSize") or image.get("Size") or 0) - max(0, image.get("SharedSize") or 0))
        for image in images
        if (image.get("Containers") or 0) > 0
    )
    project_ids = {record["id"] for record in project_records}
    project_images = {record["image_id"] for record in project_records if record.get("image_id")}

    def volume_size(volume):
        return max(0, (volume.get("UsageData") or {}).get("Size") or 0)

    def volume_refs(volume):
        return (volume.get("UsageData") or {}).get("RefCount") or 0

    image_rows = []
    for image in images:
        tags = [tag for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"]
        image_rows.append(
            {
                "id": (image.get("Id") or "").replace("sha256:", "")[:12],
                "tags": tags,
                "size_bytes": image.get("Size"),
                "shared_bytes": image.get("SharedSize"),
                "containers": image.get("Containers"),
                "dangling": not tags,
                "in_use_by_project": image.get("Id") in project_images,
                "created": image.get("Created"),
                "project": (image.get("Labels") or {}).get(PROJECT_LABEL),
            }
        )
    image_rows.sort(key=lambda row: -(row["size_bytes"] or 0))
    unused = [row for row in image_rows if project and row["project"] == project and not row["containers"]]
    return {
        "images": {
            "total": len(images),
            "active": sum(1 for image in images if (image.get("Containers") or 0) > 0),
            "size_bytes": layers,
            "reclaimable_bytes": max(0, layers - used),
            "dangling": sum(1 for row in image_rows if row["dangling"]),
            "largest": image_rows[:10],
            "project": [row for row in image_rows if row["in_use_by_project"]],
            "project_unused": unused[:PROJECT_UNUSED_MAX],
            "project_unused_total": len(unused),
        },
        "containers": {
            "total": len(containers),
            "active": sum(1 for c in containers if c.get("State") == "running"),
            "size_bytes": sum(c.get("SizeRw") or 0 for c in containers),
            "reclaimable_bytes": sum(c.get("SizeRw") or 0 for c in containers if c.get("State") != "running"),
            "project_rw_bytes": {
                (c.get("Names") or ["?"])[0].lstrip("/"): c.get("SizeRw") or 0
                for c in containers
                if _short(c.get("Id")) in project_ids
            },
        },
        "volumes": {
            "total": len(volumes),
            "active": sum(1 for v in volumes if volume_refs(v) > 0),
            "size_bytes": sum(volume_size(v) for v in volumes),
            "reclaimable_bytes": sum(volume_size(v) for v in volumes if volume_refs(v) == 0),
            "project": [
                {"name": v.get("Name"), "size_bytes": volume_size(v), "ref_count": volume_refs(v)}
                for v in volumes
                if (v.get("Labels") or {}).get(PROJECT_LABEL)
                in {r.get("project") for r in project_records if r.get("project")}
            ],
        },
        "build_cache": {
            "total": len(cache),
            "active": sum(1 for c in cache if c.get("InUse")),
            "size_bytes": sum(c.get("Size") or 0 for c in cache),
            "reclaimable_bytes": sum(c.get("Size") or 0 for c in cache if not c.get("InUse") and not c.get("Shared")),
        },
    }


def wrap_command(cmd, seconds):
    """``sh -c`` around the command so that coreutils ``timeout`` bounds it inside the container when present."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else [str(word) for word in cmd]
    guard = 'if command -v timeout >/dev/null 2>&1; then exec timeout %d "$@"; else exec "$@"; fi' % max(
        1, int(round(seconds))
    )
    return ["sh", "-c", guard, "sh"] + argv


# --- docker compose config ------------------------------------------------------------------------------------
STDERR_TAIL = 600
# a quoted string in a log line ('value' or "value"), as a configuration error quotes the value it cannot parse
QUOTED = re.compile(r"'([^']{1,200})'|\"([^\"]{1,200})\"")
_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_.-]*)=\S+")
_ENV_FILE_ERROR = re.compile(r"^(.*?failed to read .*?:(?: line \d+:)?)(.*)$")
_QUOTED_REST = re.compile(r"[\"'].*$")


def compose_config_argv(project, options):
    """``docker compose ... config --format json`` with the project, its directory, files and env file."""
    argv = ["docker", "compose", "--project-name", project, "--project-directory", options["project_dir"]]
    for path in options.get("files") or []:
        argv += ["-f", path]
    if options.get("env_file"):
        argv += ["--env-file", options["env_file"]]
    return argv + ["config", "--format", "json"]


def compose_stderr(text):
    """The tail of ``docker compose config``'s stderr without a value of the services' environment: an env file
    line it cannot parse is named (file and line) but not shown, ``NAME=value`` keeps its name, quoted text about
    an environment is hidden, and PII is masked."""
    lines = []
    for line in redact_pii(text or "", DEFAULT_PII)[0].splitlines():
        found = _ENV_FILE_ERROR.match(line)
        if found and _QUOTED_REST.search(found.group(2)):
            line = found.group(1) + _QUOTED_REST.sub("[value hidden]", found.group(2))
        if "environment" in line:
            line = QUOTED.sub('"[value hidden]"', line)
        line = _ASSIGNMENT.sub(lambda match: match.group(1) + "=[value hidden]", line)
        lines.append(line)
    return "\n".join(lines).strip()[-STDERR_TAIL:]


def run_compose_config(project, options, seconds=None):
    """``(rc, stdout, stderr)`` of ``docker compose config``; stdout holds the services' environment (secrets) and
    never leaves this module: ``reduce_compose_config`` keeps what a judgement may read."""
    completed = subprocess.run(
        compose_config_argv(project, options),
        capture_output=True,
        timeout=seconds or float(options.get("timeout") or 15.0),
        check=False,
    )
    decode = lambda data: data.decode("utf-8", "replace")  # noqa: E731
    return completed.returncode, decode(completed.stdout), decode(completed.stderr)


def _quoted(line):
    return {value for pair in QUOTED.findall(line) for value in pair if value}


def reduce_compose_config(rc, stdout, stderr, logs=None, names=None, dropped=()):
    """``{rc, stderr, services}`` of ``docker compose config`` without any value of the services' environment:
    per service its ``mem_limit``, ``depends_on`` (names) and ``env_quoted_in_logs``, the variables whose value a
    collected log line of the service quotes, with the indices of those lines in ``logs.<service>.lines`` (a
    configuration error names the value it cannot parse; the judgement then names the variable). Services are named
    as the inventory names them (``names``: ``{compose service: service}``); the Compose services in ``dropped`` are
    not the deployment's (the inventory places a service of that name elsewhere)."""
    names = names or {}
    answer = {"rc": rc, "stderr": compose_stderr(stderr), "services": None}
    if rc != 0:
        return answer
    try:
        services = (json.loads(stdout or "{}") or {}).get("services") or {}
    except ValueError:
        answer["stderr"] = "docker compose config: the output is not JSON"
        return answer
    reduced = {}
    for compose_name, spec in sorted(services.items()):
        if compose_name in dropped and compose_name not in names:
            continue
        name = names.get(compose_name, compose_name)
        spec = spec or {}
        environment = spec.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
        lines = ((logs or {}).get(name) or {}).get("lines") or []
        quoted = [_quoted(line) for line in lines]
        in_logs = {}
        for key, value in sorted(environment.items()):
            if value is None or str(value) == "":
                continue
            found = [index for index, values in enumerate(quoted) if str(value) in values]
            if found:
                in_logs[key] = found
        reduced[name] = {
            "mem_limit": spec.get("mem_limit"),
            "depends_on": sorted(names.get(item, item) for item in spec.get("depends_on") or []),
            "env_quoted_in_logs": in_logs,
        }
    answer["services"] = reduced
    return answer


# --- the collector -------------------------------------------------------------------------------------------
@register
class ContainersCollector(Collector):
    kind = "containers"
    SECRETS = ()
    OPTIONS = dict(
        project=dict(type="str", default="octollm"),
        discovery=dict(type="dict", default={}),
        docker_host=dict(type="str"),
        timeout=dict(type="float", default=5.0),
        services=dict(type="list", elements="str", default=[]),
        stats=dict(type="bool", default=False),
        stats_sample_seconds=dict(type="float", default=1.0),
        cgroup_root=dict(type="path", default="/sys/fs/cgroup"),
        logs=dict(type="dict", options=LOG_OPTIONS),
        pii_scan=dict(type="dict", options=PII_SCAN_OPTIONS),
        system_df=dict(type="bool", default=False),
        host=dict(type="bool", default=False),
        df_paths=dict(type="list", elements="path", default=[]),
        exec_probes=dict(type="list", elements="dict", default=[], options=EXEC_OPTIONS),
        compose_config=dict(type="dict", options=COMPOSE_CONFIG_OPTIONS),
        environment=dict(type="dict", options=ENVIRONMENT_OPTIONS),
    )

    def _opt(self, name):
        value = self.options.get(name)
        return self.OPTIONS[name].get("default") if value is None else value

    def _docker(self):
        try:
            import docker
        except ImportError as exc:
            raise CollectorError(
                "missing_tool",
                "the Python package docker (Docker SDK) is not installed on the host that gathers evidence: %s" % exc,
            ) from exc
        return docker

    def _client(self, docker, timeout, version=None):
        kwargs = {"timeout": max(1, int(round(timeout)))}
        if version:
            kwargs["version"] = version
        base_url = self._opt("docker_host") or os.environ.get("DOCKER_HOST")
        if base_url:
            return docker.APIClient(base_url=base_url, **kwargs)
        return docker.APIClient(base_url="unix:///var/run/docker.sock", **kwargs)

    def _local(self):
        base_url = self._opt("docker_host") or os.environ.get("DOCKER_HOST") or "unix://"
        return base_url.startswith("unix://") or base_url.startswith("/")

    def collect(self, deadline):
        docker = self._docker()
        timeout = min(float(self._opt("timeout")), remaining(deadline))
        project = self._opt("project")
        discovery = self._opt("discovery") or {}
        try:
            client = self._client(docker, timeout)
            if lists_every_container(discovery, project):
                listed = client.containers(all=True)
            else:
                listed = client.containers(all=True, filters={"label": "%s=%s" % (PROJECT_LABEL, project)})
        except Exception as exc:
            raise self._api_error(exc) from exc
        claimed, unclaimed = discover(listed, discovery, project)
        listed = [c for c in listed if c["Id"] in claimed]
        service_of = dict((key, value[0]) for key, value in claimed.items())
        every = listed  # the PII scan selects its services itself
        wanted = set(self._opt("services") or [])
        if wanted:
            listed = [c for c in listed if service_of[c["Id"]] in wanted]
        result = {"project": project, "probe_errors": {}}
        if unclaimed:
            # containers of the Compose project under a service name the inventory places elsewhere
            result["unclaimed"] = unclaimed
        environment = self.options.get("environment") or {}
        logs = self.options.get("logs")
        kinds = validate_kinds((logs or {}).get("redact", list(DEFAULT_PII)))
        scan = self.options.get("pii_scan")
        scan_kinds = validate_kinds((scan or {}).get("redact", list(DEFAULT_PII)))
        try:
            allowed = [re.compile(regex) for regex in (scan or {}).get("allow") or []]
        except re.error as exc:
            raise CollectorError("other", "invalid pii_scan allow pattern: %s" % exc) from exc
        pool = ThreadPoolExecutor(max_workers=POOL_SIZE)
        try:
            inspects = {c["Id"]: pool.submit(client.inspect_container, c["Id"]) for c in listed}
            extra = {}
            if self._opt("host"):
                extra["host"] = pool.submit(self._host, client)
            if self._opt("system_df"):
                extra["system_df"] = pool.submit(client.df)
            log_jobs = self._submit_logs(pool, client, listed, logs, service_of) if logs is not None else {}
            scan_jobs = self._submit_logs(pool, client, every, scan, service_of) if scan is not None else None
            compose = self.options.get("compose_config")
            compose_job = None
            if compose:
                seconds = min(float(compose.get("timeout") or 15.0), remaining(deadline))
                compose_job = pool.submit(run_compose_config, project, compose, seconds)
            exec_jobs = [
                pool.submit(self._exec, docker, client.api_version, listed, probe, deadline, service_of)
                for probe in self._opt("exec_probes") or []
            ]
            records = []
            for container in listed:
                try:
                    inspect = inspects[container["Id"]].result(timeout=remaining(deadline))
                except Exception as exc:  # removed meanwhile, or the daemon is slow
                    result["probe_errors"]["inspect:%s" % (container.get("Names") or ["?"])[0].lstrip("/")] = error_of(
                        self._api_error(exc)
                    )
                    continue
                record = container_record(container, inspect, kinds)
                labels = (inspect.get("Config") or {}).get("Labels") or container.get("Labels") or {}
                record["service"], record["found_by"] = claimed[container["Id"]]
                record["compose_service"] = labels.get(SERVICE_LABEL)
                record["project"] = labels.get(PROJECT_LABEL)
                if environment.get("names") and (
                    not environment.get("services") or record["service"] in environment["services"]
                ):
                    record["environment"] = environment_of(inspect, environment["names"])
                record["_full_id"] = container["Id"]
                records.append(record)
            records.sort(key=lambda r: (r["service"] or "", r["number"] or 0, r["name"]))
            if self._opt("stats"):
                self._stats(records, pool, client, deadline, result)
            for record in records:
                record.pop("_full_id", None)
            result["containers"] = records
            result["services"], result["summary"] = summarise(records)
            if log_jobs:
                result["logs"] = self._gather_logs(log_jobs, logs, kinds, deadline, result)
            if scan_jobs is not None:
                result["pii_scan"] = self._gather_pii(scan_jobs, scan, scan_kinds, allowed, deadline)
            if exec_jobs:
                result["exec_probes"] = [job.result(timeout=remaining(deadline) + 1) for job in exec_jobs]
            if compose_job is not None:
                # the project's Compose services as the inventory names them
                names = dict(
                    (entry.get("compose_service") or service, service)
                    for service, entry in discovery.items()
                    if found_by(entry) == "compose" and (entry.get("project") or project) == project
                )
                result["compose_config"] = self._compose_config(
                    compose_job, deadline, result.get("logs"), names, set(discovery)
                )
            for name, job in extra.items():
                try:
                    value = job.result(timeout=remaining(deadline))
                    result[name] = system_df(value, records, project) if name == "system_df" else value
                except Exception as exc:
                    result[name] = None
                    result["probe_errors"][name] = error_of(self._api_error(exc))
        finally:
            pool.shutdown(wait=False)
            with contextlib.suppress(Exception):  # closing a session does not fail in practice
                client.close()
        if not result["probe_errors"]:
            result.pop("probe_errors")
        return result

    # --- errors --------------------------------------------------------------------------------------------
    @staticmethod
    def _api_error(exc):
        if isinstance(exc, CollectorError):
            return exc
        text = str(exc)
        lowered = text.lower()
        names = {klass.__name__ for klass in type(exc).__mro__}
        if isinstance(exc, FutureTimeout) or "ReadTimeout" in names or "timed out" in lowered:
            return CollectorError("timeout", "Docker API: %s" % (text or "timed out"))
        if "permission denied" in lowered:
            return CollectorError("auth", "Docker API: %s" % text)
        if (
            "ConnectionError" in names
            or "connection refused" in lowered
            or "no such file" in lowered
            or "error while fetching server api version" in lowered
        ):
            return CollectorError("unreachable", "Docker API unreachable: %s" % text)
        return CollectorError("other", "Docker API: %s: %s" % (type(exc).__name__, text))

    # --- stats ---------------------------------------------------------------------------------------------
    def _stats(self, records, pool, client, deadline, result):
        root = self._opt("cgroup_root")
        local = self._local()
        readers = {}
        for record in records:
            if not record["running"]:
                record["stats"] = None
                continue
            dirs = cgroup_dirs(root, record["_full_id"], record["pid"]) if local else {}
            readers[record["name"]] = (record, dirs)

        def api(name):
            record = readers[name][0]
            stats = client.stats(record["_full_id"], stream=False, one_shot=True)
            if not stats.get("read") or str(stats.get("read")).startswith("0001-01-01"):
                raise CollectorError("other", "no stats for %s (not running)" % name)
            return api_sample(stats)

        def sample_all():
            samples = {}
            jobs = {}
            for name, (_record, dirs) in readers.items():
                if dirs:
                    try:
                        samples[name] = read_cgroup(dirs)
                        continue
                    except (OSError, ValueError):
                        pass  # vanished or unreadable: ask the API
                jobs[name] = pool.submit(api, name)
            for name, job in jobs.items():
                try:
                    samples[name] = job.result(timeout=remaining(deadline))
                except Exception as exc:
                    samples[name] = exc
            return samples

        first = sample_all()
        seconds = float(self._opt("stats_sample_seconds") or 0)
        second = {}
        if seconds > 0 and remaining(deadline, 0) > seconds + 1:
            time.sleep(seconds)
            second = sample_all()
        sources = {}
        for name, (record, _dirs) in readers.items():
            one, two = first.get(name), second.get(name)
            if isinstance(one, Exception):
                record["stats"] = None
                result["probe_errors"]["stats:%s" % name] = error_of(self._api_error(one))
                continue
            stats = finish_stats(one, None if isinstance(two, Exception) else two, record["nano_cpus"])
            record["stats"] = stats
            sources[stats["source"]] = sources.get(stats["source"], 0) + 1
        result["stats_sources"] = sources

    # --- logs ----------------------------------------------------------------------------------------------
    def _submit_logs(self, pool, client, listed, logs, service_of):
        services = set(logs.get("services") or [])
        jobs = {}
        kwargs = {"tail": max(0, int(logs.get("tail") or 0)), "stdout": True, "stderr": True, "timestamps": False}
        if logs.get("since_seconds"):
            kwargs["since"] = int(time.time() - int(logs["since_seconds"]))
        for container in listed:
            service = service_of.get(container["Id"])
            if services and service not in services:
                continue
            jobs[(service, container_name(container))] = pool.submit(client.logs, container["Id"], **kwargs)
        return jobs

    def _gather_logs(self, jobs, logs, kinds, deadline, result):
        try:
            pattern = re.compile(logs.get("pattern") or DEFAULT_ERROR_PATTERN)
            named = {name: re.compile(regex) for name, regex in (logs.get("patterns") or {}).items()}
        except re.error as exc:
            raise CollectorError("other", "invalid log pattern: %s" % exc) from exc
        cap = max(40, int(logs.get("line_max_chars") or 400))
        max_matches = max(0, int(logs.get("max_matches") or 0))
        per_service = {}
        replicas = {}
        for service, _name in jobs:
            replicas[service] = replicas.get(service, 0) + 1
        for (service, name), job in jobs.items():
            entry = per_service.setdefault(
                service,
                {
                    "containers": [],
                    "lines": [],
                    "matches": [],
                    "match_count": 0,
                    "pattern_counts": {key: 0 for key in named},
                    "lines_scanned": 0,
                    "redactions": {},
                    "truncated": False,
                    "error": None,
                },
            )
            entry["containers"].append(name)
            try:
                raw = job.result(timeout=remaining(deadline))
            except Exception as exc:
                entry["error"] = error_of(self._api_error(exc))
                continue
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            prefix = "%s | " % name if replicas[service] > 1 else ""
            for line in text.splitlines():
                if not line.strip():
                    continue
                entry["lines_scanned"] += 1
                for key, regex in named.items():
                    if regex.search(line):
                        entry["pattern_counts"][key] += 1
                clean = redact_pii(line, kinds, entry["redactions"])[0]
                if len(clean) > cap:
                    clean = clean[: cap - 3] + "..."
                    entry["truncated"] = True
                clean = prefix + clean
                entry["lines"].append(clean)
                if pattern.search(line):
                    entry["match_count"] += 1
                    if len(entry["matches"]) < max_matches:
                        entry["matches"].append(clean)
                    else:
                        entry["truncated"] = True
        return per_service

    def _gather_pii(self, jobs, scan, kinds, allowed, deadline):
        """``{service: {containers, lines_scanned, redactions, samples, error}}``: the PII found in each service's
        log, by kind, and the newest ``samples`` lines that held some, redacted; no other line leaves."""
        cap = max(40, int(scan.get("line_max_chars") or 300))
        keep = max(0, int(scan.get("samples") or 0))
        per_service = {}
        for (service, name), job in jobs.items():
            entry = per_service.setdefault(
                service,
                {"containers": [], "lines_scanned": 0, "redactions": {}, "samples": [], "error": None},
            )
            entry["containers"].append(name)
            try:
                raw = job.result(timeout=remaining(deadline))
            except Exception as exc:
                entry["error"] = error_of(self._api_error(exc))
                continue
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            for line in text.splitlines():
                if not line.strip():
                    continue
                entry["lines_scanned"] += 1
                for regex in allowed:
                    line = regex.sub(" ", line)
                counts = {}
                clean = redact_pii(line, kinds, counts)[0]
                if not counts:
                    continue
                for kind, number in counts.items():
                    entry["redactions"][kind] = entry["redactions"].get(kind, 0) + number
                entry["samples"].append(clean if len(clean) <= cap else clean[: cap - 3] + "...")
                if len(entry["samples"]) > keep:  # the newest ones
                    entry["samples"].pop(0)
        return per_service

    # --- docker compose config ---------------------------------------------------------------------------
    @staticmethod
    def _compose_config(job, deadline, logs, names=None, dropped=()):
        try:
            rc, stdout, stderr = job.result(timeout=remaining(deadline) + 1)
        except (OSError, subprocess.SubprocessError, FutureTimeout) as exc:
            if isinstance(exc, (subprocess.TimeoutExpired, FutureTimeout)):
                error = {"kind": "timeout", "message": "docker compose config did not finish in time"}
            elif isinstance(exc, FileNotFoundError):
                error = {"kind": "missing_tool", "message": "the docker CLI (docker compose) is not installed"}
            else:
                error = {"kind": "other", "message": "docker compose config could not run: %s" % type(exc).__name__}
            return {"rc": None, "stderr": "", "services": None, "error": error}
        return reduce_compose_config(rc, stdout, stderr, logs, names, dropped)

    # --- exec probes ---------------------------------------------------------------------------------------
    def _exec(self, docker, version, listed, probe, deadline, service_of):
        service = probe.get("service")
        cmd = probe.get("cmd")
        seconds = min(float(probe.get("timeout") or 5.0), remaining(deadline))
        answer = {
            "name": probe.get("name") or "%s: %s" % (service, cmd if isinstance(cmd, str) else " ".join(map(str, cmd))),
            "service": service,
            "container": None,
            "cmd": cmd,
            "exit_code": None,
            "output": None,
            "ok": False,
            "elapsed_ms": None,
            "error": None,
            "attempts": 0,
        }
        started = time.monotonic()
        candidates = [c for c in listed if service_of.get(c["Id"]) == service and c.get("State") == "running"]
        if not candidates:
            answer["error"] = {"kind": "unreachable", "message": "no running container for service %s" % service}
            return answer
        container = sorted(candidates, key=lambda c: (c.get("Names") or [""])[0])[0]
        answer["container"] = (container.get("Names") or ["?"])[0].lstrip("/")
        try:
            client = self._client(docker, seconds + 2, version)
            try:
                argv = wrap_command(cmd, seconds)
                exit_code, output = self._run_exec(client, container["Id"], argv, probe)
                if exit_code in (126, 127) and b"sh" in (output or b"")[:200] and b"not found" in (output or b""):
                    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else [str(word) for word in cmd]
                    exit_code, output = self._run_exec(client, container["Id"], argv, probe)
                # a sampling tool that races the process it reads (py-spy --nonblocking) may fail once and then work
                attempts = 1
                while exit_code not in FINAL_EXIT_CODES and attempts < (probe.get("attempts") or 1):
                    if remaining(deadline) < seconds:
                        break
                    attempts += 1
                    exit_code, output = self._run_exec(client, container["Id"], argv, probe)
                answer["attempts"] = attempts
            finally:
                client.close()
        except Exception as exc:
            answer["error"] = error_of(self._api_error(exc))
            answer["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
            return answer
        text = (output or b"").decode("utf-8", "replace").strip()
        answer["exit_code"] = exit_code
        answer["output"] = redact_pii(text[-OUTPUT_MAX:], DEFAULT_PII)[0]
        answer["ok"] = exit_code == 0
        answer["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
        if exit_code == 124:
            answer["error"] = {"kind": "timeout", "message": "command timed out after %ss in the container" % seconds}
        return answer

    @staticmethod
    def _run_exec(client, container_id, argv, probe):
        created = client.exec_create(container_id, argv, stdout=True, stderr=True, user=probe.get("user") or "")
        output = client.exec_start(created["Id"], stream=False, demux=False)
        return client.exec_inspect(created["Id"]).get("ExitCode"), output

    # --- host ----------------------------------------------------------------------------------------------
    def _host(self, client):
        info = client.info()
        root = info.get("DockerRootDir")
        answer = {
            "server_version": info.get("ServerVersion"),
            "ncpu": info.get("NCPU"),
            "mem_total_bytes": info.get("MemTotal"),
            "driver": info.get("Driver"),
            "logging_driver": info.get("LoggingDriver"),
            "cgroup_version": info.get("CgroupVersion"),
            "cgroup_driver": info.get("CgroupDriver"),
            "docker_root_dir": root,
            "kernel_version": info.get("KernelVersion"),
            "operating_system": info.get("OperatingSystem"),
            "containers": info.get("Containers"),
            "containers_running": info.get("ContainersRunning"),
            "containers_stopped": info.get("ContainersStopped"),
            "images": info.get("Images"),
            "warnings": (info.get("Warnings") or [])[:10],
            "local": self._local(),
        }
        disks = []
        if self._local():
            paths = ([root] if root else []) + list(self._opt("df_paths") or [])
            for path in paths:
                try:
                    disks.append(statvfs(path))
                except OSError as exc:
                    disks.append({"path": path, "error": error_of(exc)})
            try:
                answer["memory"] = host_memory()
                answer["loadavg"] = [round(value, 2) for value in os.getloadavg()]
                answer["cpu_count"] = os.cpu_count()
            except OSError as exc:
                answer["memory"] = None
                answer["memory_error"] = error_of(exc)
        answer["df"] = disks
        return answer
