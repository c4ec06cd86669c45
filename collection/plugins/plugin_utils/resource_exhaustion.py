# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "Resource Exhaustion": findings, scenarios, plan and prevention checks (Compose).

Input is the evidence of ``stack_evidence`` kind ``containers`` (cgroup stats of every container - the
``docker stats`` equivalent -, ``docker system df``, ``docker info`` with ``df`` of the Docker root dir and of the
watched paths, host memory and load), the listing of the backup files (kind ``logs``, option ``listings``: path,
size and modification time of each file matching the backup patterns in the backup directories) and the role's
settings. Scenarios:

- A  a service exhausts its CPU quota or its memory (or the host's memory): restart the top consumer; when that
     is the cache (Redis) at its memory limit, clear it instead (the seed's FLUSHDB) after a verified RDB backup -
     a restart would drop the same data with no backup.
- B  a disk fills up with backups older than the retention: delete them (destructive: the list comes first).
- C  the Docker root disk fills up with unused Docker data: prune dangling images, stopped containers outside the
     deployment and the build cache (destructive); never an image the deployment uses or a protected image.
- D  container logs without rotation: a report (the fix is a Compose change, json-file max-size/max-file).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import os
import time

from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    gate,
    human_bytes,
    unknown,
)

NAME = "resource_exhaustion"
# Name of the backup listing in the logs evidence (stack_evidence's logs.listings).
BACKUP_LISTING = "resource_exhaustion_backups"

SCENARIOS = {
    "A": "CPU or memory exhausted by a service",
    "B": "Disk full of expired backups",
    "C": "Disk full of unused Docker data",
    "D": "Container logs without rotation",
}


def backup_files(evidence):
    """The backup files of the listing (``[{path, size, mtime}]``); none when it was not gathered or failed."""
    logs = (evidence or {}).get("logs") or {}
    listing = ((logs.get("listings") or {}) if logs.get("ok", False) else {}).get(BACKUP_LISTING) or {}
    return [
        {"path": item.get("path"), "size": item.get("size_bytes"), "mtime": item.get("mtime")}
        for item in listing.get("files") or []
    ]


def _under(path, directory):
    path, directory = os.path.normpath(path or ""), os.path.normpath(directory or "")
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class Facts:
    def __init__(self, evidence, settings):
        self.s = settings
        result = (evidence or {}).get("containers")
        if result is None:
            self.containers, self.error = None, {"kind": "other", "message": "containers evidence was not gathered"}
        elif not result.get("ok", False):
            self.containers = None
            self.error = result.get("error") or {"kind": "other", "message": "containers evidence failed"}
        else:
            self.containers, self.error = result, None
        data = self.containers or {}
        self.records = [r for r in data.get("containers") or [] if r.get("running") and r.get("stats")]
        self.host = data.get("host") or {}
        self.df = [entry for entry in self.host.get("df") or [] if not entry.get("error")]
        self.system_df = data.get("system_df") or {}
        now = time.time() if settings.get("now") is None else float(settings["now"])
        limit = now - float(settings["backup_retention_days"]) * 86400
        self.backups = sorted(backup_files(evidence), key=lambda item: item.get("mtime") or 0)
        self.expired = [item for item in self.backups if (item.get("mtime") or now) < limit]

    def top(self, key):
        rows = [
            {
                "service": r.get("service"),
                "name": r.get("name"),
                "cpu_percent": r["stats"].get("cpu_percent"),
                "cpu_limit_percent": r["stats"].get("cpu_limit_percent"),
                "cpu_throttled_percent": r["stats"].get("cpu_throttled_percent"),
                "cpus": r.get("cpus"),
                "memory_working_set_bytes": r["stats"].get("memory_working_set_bytes"),
                "memory_percent": r["stats"].get("memory_percent"),
                "memory_limit": r["stats"].get("memory_limit_bytes"),
                "pids": r["stats"].get("pids"),
            }
            for r in self.records
        ]
        rows = [row for row in rows if row.get(key) is not None]
        rows.sort(key=lambda row: -row[key])
        return rows[: int(self.s["top"])]

    def disk_of(self, path):
        """The df entry of the file system holding ``path`` (the longest matching watched path)."""
        best = None
        for entry in self.df:
            if _under(path, entry["path"]) and (best is None or len(entry["path"]) > len(best["path"])):
                best = entry
        return best

    def root_dir(self):
        return self.host.get("docker_root_dir")


# --- checks -----------------------------------------------------------------------------------------------------
def check_cpu(f):
    s = f.s
    title = "No service exhausts its CPU quota"
    expected = "< %s%% of its cpus limit, throttled in < %s%% of CFS periods" % (
        s["cpu_high_percent"],
        s["cpu_throttled_high_percent"],
    )
    if f.containers is None:
        return unknown("containers.cpu", title, expected, f.error, "A")
    top = f.top("cpu_limit_percent") or f.top("cpu_percent")
    if not top:
        return finding(
            "containers.cpu", title, "ok", "no CPU sample", expected, {"note": "no running container sampled"}
        )
    # throttling alone is noisy: nr_periods counts only the periods in which the group ran, so an idle exporter
    # with one burst can be "throttled in 50%"; it counts with at least half the use threshold
    hot = [
        row
        for row in top
        if (row.get("cpu_limit_percent") or 0) >= s["cpu_high_percent"]
        or (
            (row.get("cpu_throttled_percent") or 0) >= s["cpu_throttled_high_percent"]
            and (row.get("cpu_limit_percent") or 0) >= s["cpu_high_percent"] / 2
        )
    ]
    evidence = {"top": top, "loadavg": f.host.get("loadavg"), "cpu_count": f.host.get("cpu_count")}
    if hot:
        evidence["exhausted"] = [r["name"] for r in hot]
        observed = ", ".join(
            "%s %s%% of %s cpus, throttled in %s%% of periods"
            % (r["service"], r["cpu_limit_percent"], r["cpus"], r.get("cpu_throttled_percent"))
            for r in hot
        )
        return finding("containers.cpu", title, "problem", observed, expected, evidence, "A")
    first = top[0]
    observed = "top: %s %s%% of its limit" % (first["service"], first.get("cpu_limit_percent"))
    return finding("containers.cpu", title, "ok", observed, expected, evidence)


def check_memory(f):
    s = f.s
    title = "No service runs at its memory limit"
    expected = "< %s%% of its memory limit" % s["memory_high_percent"]
    if f.containers is None:
        return unknown("containers.memory", title, expected, f.error, "A")
    top = f.top("memory_percent")
    evidence = {"top": top or f.top("memory_working_set_bytes")}
    hot = [row for row in top if row["memory_percent"] >= s["memory_high_percent"]]
    if hot:
        observed = ", ".join(
            "%s %s%% of %s" % (r["service"], r["memory_percent"], human_bytes(r["memory_limit"])) for r in hot
        )
        return finding("containers.memory", title, "problem", observed, expected, evidence, "A")
    observed = "top: %s %s%%" % (top[0]["service"], top[0]["memory_percent"]) if top else "no memory sample"
    return finding("containers.memory", title, "ok", observed, expected, evidence)


def check_host_memory(f):
    s = f.s
    title = "The host has memory available"
    expected = ">= %s%% available" % s["host_memory_available_min_percent"]
    if f.containers is None:
        return unknown("host.memory", title, expected, f.error, "A")
    memory = f.host.get("memory")
    if not memory:
        return finding("host.memory", title, "ok", "not local", expected, {"note": "the Docker host is remote"})
    available = memory.get("available_percent")
    evidence = dict(memory, top=f.top("memory_working_set_bytes"))
    status = "problem" if available is not None and available < s["host_memory_available_min_percent"] else "ok"
    return finding(
        "host.memory",
        title,
        status,
        "%s%% available (%s)" % (available, human_bytes(memory.get("available_bytes"))),
        expected,
        evidence,
        "A" if status == "problem" else None,
    )


def check_disks(f):
    s = f.s
    title = "Disks have room (Docker root dir and watched paths)"
    expected = "< %s%% used" % s["disk_warn_percent"]
    if f.containers is None:
        return unknown("host.disk", title, expected, f.error)
    if not f.df:
        return finding("host.disk", title, "ok", "not local", expected, {"note": "no df of the Docker host"})
    rows = []
    worst = "ok"
    scenario = None
    for entry in f.df:
        used = entry.get("used_percent") or 0
        status = "problem" if used >= s["disk_high_percent"] else "warning" if used >= s["disk_warn_percent"] else "ok"
        cause = None
        if status != "ok":
            expired_here = [item for item in f.expired if _under(item.get("path"), entry["path"])]
            if expired_here or any(_under(d, entry["path"]) for d in s["backup_dirs"]) and f.expired:
                cause = "B"
            elif f.root_dir() and _under(f.root_dir(), entry["path"]):
                cause = "C"
        rows.append(
            {
                "path": entry["path"],
                "used_percent": used,
                "free": human_bytes(entry.get("free_bytes")),
                "total": human_bytes(entry.get("total_bytes")),
                "inodes_used_percent": entry.get("inodes_used_percent"),
                "status": status,
                "cause": cause,
            }
        )
        if (status, worst) in (("problem", "ok"), ("problem", "warning"), ("warning", "ok")):
            worst = status
        if cause and (scenario is None or status == "problem"):
            scenario = cause
    full = [row for row in rows if row["status"] != "ok"]
    observed = (
        ", ".join("%s %s%% used (%s free)" % (r["path"], r["used_percent"], r["free"]) for r in full)
        if full
        else "max %s%% used" % max(row["used_percent"] for row in rows)
    )
    return finding("host.disk", title, worst, observed, expected, {"disks": rows}, scenario if full else None)


def check_backups(f):
    s = f.s
    title = "No backup is older than the retention (%s days)" % s["backup_retention_days"]
    expected = "<= %s days" % s["backup_retention_days"]
    evidence = {
        "dirs": s["backup_dirs"],
        "files": len(f.backups),
        "expired": [{"path": i["path"], "size": i.get("size"), "mtime": i.get("mtime")} for i in f.expired[:20]],
        "expired_bytes": sum(i.get("size") or 0 for i in f.expired),
    }
    if not f.expired:
        return finding(
            "backups.retention", title, "ok", "%d backups, none expired" % len(f.backups), expected, evidence
        )
    observed = "%d backups older than %s days (%s)" % (
        len(f.expired),
        s["backup_retention_days"],
        human_bytes(evidence["expired_bytes"]),
    )
    return finding("backups.retention", title, "warning", observed, expected, evidence, "B")


def _protected(tags, patterns):
    return any(fnmatch.fnmatchcase(tag, pattern) for tag in tags or [] for pattern in patterns or [])


def check_docker_data(f, disk):
    s = f.s
    title = "Unused Docker data does not fill the Docker root disk"
    expected = "reclaimable data pruned when the disk fills"
    if f.containers is None:
        return unknown("docker.disk_usage", title, expected, f.error, "C")
    sdf = f.system_df
    if not sdf:
        return finding("docker.disk_usage", title, "ok", "not read", expected, {"note": "no docker system df"})
    images = sdf.get("images") or {}
    prunable = [
        row
        for row in images.get("largest") or []
        if row.get("dangling") and not row.get("containers") and not row.get("in_use_by_project")
    ]
    evidence = {
        "images": {k: images.get(k) for k in ("total", "active", "size_bytes", "reclaimable_bytes", "dangling")},
        "containers": {k: (sdf.get("containers") or {}).get(k) for k in ("total", "active", "reclaimable_bytes")},
        "volumes": {k: (sdf.get("volumes") or {}).get(k) for k in ("total", "active", "reclaimable_bytes")},
        "build_cache": sdf.get("build_cache"),
        "prunable_images": [{"id": r["id"], "size_bytes": r.get("size_bytes")} for r in prunable],
        # the evidence lists the largest images only: how many dangling ones it did not list
        "unlisted_dangling": max(0, (images.get("dangling") or 0) - len(prunable)),
        "protected_images": s["protected_images"],
    }
    reclaimable = (images.get("reclaimable_bytes") or 0) + (
        (sdf.get("build_cache") or {}).get("reclaimable_bytes") or 0
    )
    evidence["reclaimable_bytes"] = reclaimable
    root_full = any(
        row["cause"] == "C" and row["status"] != "ok" for row in (disk.get("evidence") or {}).get("disks", [])
    )
    observed = "%s reclaimable" % human_bytes(reclaimable)
    if root_full and reclaimable:
        return finding("docker.disk_usage", title, "problem", observed, expected, evidence, "C")
    return finding("docker.disk_usage", title, "ok", observed, expected, evidence)


def check_log_rotation(f):
    title = "Container logs rotate (json-file max-size and max-file)"
    expected = "max-size and max-file set"
    if f.containers is None:
        return unknown("containers.log_rotation", title, expected, f.error, "D")
    missing = sorted(
        {
            r.get("service")
            for r in (f.containers or {}).get("containers") or []
            if (r.get("log_config") or {}).get("type") == "json-file"
            and not (r.get("log_config") or {}).get("max_size")
        }
    )
    if missing:
        return finding(
            "containers.log_rotation",
            title,
            "warning",
            "no max-size on %s" % ", ".join(missing),
            expected,
            {"services": missing},
            "D",
        )
    return finding("containers.log_rotation", title, "ok", "all rotate", expected)


def diagnose(evidence, settings, previous=None, applied=()):
    s = settings
    f = Facts(evidence, s)
    cpu, memory, host_memory = check_cpu(f), check_memory(f), check_host_memory(f)
    disk = check_disks(f)
    findings = [cpu, memory, host_memory, disk, check_backups(f), check_docker_data(f, disk), check_log_rotation(f)]
    by_check = {item["check"]: item for item in findings}
    holds = {
        "A": [c for c in ("containers.cpu", "containers.memory", "host.memory") if by_check[c]["status"] == "problem"],
        "B": ["host.disk"] if disk["status"] == "problem" and disk["scenario"] == "B" else [],
        "C": ["docker.disk_usage"] if by_check["docker.disk_usage"]["status"] == "problem" else [],
        "D": ["containers.log_rotation"] if by_check["containers.log_rotation"]["status"] == "warning" else [],
    }
    scenarios = []
    for sid, stitle in SCENARIOS.items():
        names = holds[sid]
        reason = "; ".join("%s: %s" % (n, by_check[n]["observed"]) for n in names) if names else "no check points here"
        scenarios.append({"id": sid, "title": stitle, "holds": bool(names), "reason": reason})
    consumer = None
    if holds["A"]:
        key = "cpu_limit_percent" if "containers.cpu" in holds["A"] else "memory_percent"
        top = f.top(key) or f.top("memory_working_set_bytes")
        exhausted = by_check["containers.cpu"]["evidence"].get("exhausted") if key == "cpu_limit_percent" else None
        top = [row for row in top if row["name"] in exhausted] if exhausted else top
        consumer = top[0] if top else None
    context = {
        "consumer": consumer,
        "reason": holds["A"],
        "expired": [{"path": i["path"], "size": i.get("size")} for i in f.expired],
        "backup_disk": [row for row in disk["evidence"].get("disks", []) if row.get("cause") == "B"],
        "prunable": (by_check["docker.disk_usage"].get("evidence") or {}).get("prunable_images") or [],
        "unlisted_dangling": (by_check["docker.disk_usage"].get("evidence") or {}).get("unlisted_dangling") or 0,
        "reclaimable_bytes": (by_check["docker.disk_usage"].get("evidence") or {}).get("reclaimable_bytes"),
        "log_rotation_missing": (by_check["containers.log_rotation"].get("evidence") or {}).get("services") or [],
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _cache_at_memory_limit(ctx, s):
    consumer = ctx["consumer"]
    return consumer.get("service") in s["cache_services"] and "containers.memory" in (ctx.get("reason") or [])


def flush_cache_action(consumer, s):
    """Scenario A on the cache: a verified RDB backup (redis-cli --rdb, redis-check-rdb), then FLUSHDB and
    MEMORY PURGE (the allocator gives the pages back, so the container's working set falls)."""
    backup_dir = (s.get("cache_backup_dir") or "").rstrip("/")
    return action(
        "%s.A.flush_cache_%s" % (NAME, consumer["service"].replace("-", "_")),
        "A",
        "clear the cache %s (FLUSHDB) after a verified backup" % consumer["service"],
        "compose:%s:db%s" % (consumer["service"], s["cache_db"]),
        {
            "container": consumer["name"],
            "service": consumer["service"],
            "op": "flushdb",
            "db": int(s["cache_db"]),
            "memory_percent": consumer.get("memory_percent"),
            "memory_working_set_bytes": consumer.get("memory_working_set_bytes"),
            "backup_dir": backup_dir or None,
        },
        "planned",
        "redis-cli --rdb %s/<service>-<time>.rdb, verified with redis-check-rdb, then FLUSHDB on db %s and MEMORY "
        "PURGE (%s at %s%% of its memory limit)"
        % (backup_dir or "<backup dir>", s["cache_db"], consumer["service"], consumer.get("memory_percent")),
        disruptive=True,
        destructive=True,
        apply="flush_cache",
    )


def plan(diagnosis, settings):
    s = settings
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    holding = {item["id"] for item in diagnosis.get("scenarios") or [] if item.get("holds")}
    actions = []
    for sid in ("A", "B", "C", "D"):
        if not (sid == forced if forced else sid in holding):
            continue
        if sid == "A" and ctx.get("consumer") and _cache_at_memory_limit(ctx, s):
            actions.append(flush_cache_action(ctx["consumer"], s))
        elif sid == "A" and ctx.get("consumer"):
            top = ctx["consumer"]
            actions.append(
                action(
                    "%s.A.restart_%s" % (NAME, top["service"].replace("-", "_")),
                    "A",
                    "restart the top consumer %s" % top["service"],
                    "compose:%s" % top["service"],
                    {
                        "container": top["name"],
                        "service": top["service"],
                        "op": "restart",
                        "cpu_limit_percent": top.get("cpu_limit_percent"),
                        "memory_percent": top.get("memory_percent"),
                    },
                    "planned",
                    "docker compose restart %s (%s), then wait for its healthcheck"
                    % (top["service"], ", ".join(ctx.get("reason") or [])),
                    disruptive=True,
                    apply="restart_service",
                )
            )
        elif sid == "B" and ctx.get("expired"):
            expired = ctx["expired"]
            actions.append(
                action(
                    "%s.B.delete_expired_backups" % NAME,
                    "B",
                    "delete %d backups older than %s days" % (len(expired), s["backup_retention_days"]),
                    "backups:%s" % ",".join(s["backup_dirs"]),
                    {
                        "files": [item["path"] for item in expired],
                        "count": len(expired),
                        "bytes": sum(item.get("size") or 0 for item in expired),
                        "retention_days": s["backup_retention_days"],
                    },
                    "planned",
                    "delete exactly these %d files (%s): %s"
                    % (
                        len(expired),
                        human_bytes(sum(item.get("size") or 0 for item in expired)),
                        ", ".join(os.path.basename(item["path"]) for item in expired[:10]),
                    ),
                    destructive=True,
                    apply="delete_backups",
                )
            )
        elif sid == "C":
            actions.append(
                action(
                    "%s.C.prune_docker_data" % NAME,
                    "C",
                    "prune dangling images, stopped containers outside the deployment and the build cache",
                    "docker:prune",
                    {
                        "op": "docker_prune images(dangling=true) containers(not the project) builder_cache",
                        "images": [row["id"] for row in ctx.get("prunable") or []],
                        "unlisted_dangling_images": ctx.get("unlisted_dangling") or 0,
                        "reclaimable_bytes": ctx.get("reclaimable_bytes"),
                        "never": ["images in use by a container"] + list(s["protected_images"]),
                    },
                    "planned",
                    "docker_prune: dangling images only (tagged images such as %s are never pruned; Docker never "
                    "removes an image a container uses), build cache, stopped containers without the project label"
                    % ", ".join(s["protected_images"]),
                    destructive=True,
                    apply="prune_docker",
                )
            )
        elif sid == "D":
            missing = ctx.get("log_rotation_missing") or []
            actions.append(
                action(
                    "%s.D.report_log_rotation" % NAME,
                    "D",
                    "report containers whose logs do not rotate",
                    "compose:logging",
                    {
                        "services": missing,
                        "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
                    },
                    "report",
                    'L2: add `logging: {driver: json-file, options: {max-size: 10m, max-file: "3"}}` to %s (recreates '
                    "them); until then archive the container's log file (LogPath in docker inspect) and truncate it "
                    "(truncate -s 0)" % ", ".join(missing),
                )
            )
    return gate(
        actions,
        dry_run=s.get("dry_run", False),
        approve=s.get("approve", False),
        allow_disruptive=s.get("allow_disruptive", False),
    )


def prevention(evidence, settings):
    s = settings
    f = Facts(evidence, s)
    records = (f.containers or {}).get("containers") or []
    checks = [
        (
            "prevent.containers.memory_limit",
            "Every service has a memory limit",
            "mem_limit",
            lambda r: bool(r.get("memory_limit")),
        ),
        ("prevent.containers.cpu_limit", "Every service has a CPU limit", "cpus", lambda r: bool(r.get("nano_cpus"))),
        (
            "prevent.containers.log_rotation",
            "Every service's log rotates (max-size, max-file)",
            "max-size/max-file",
            lambda r: (
                (r.get("log_config") or {}).get("type") == "local"
                or bool((r.get("log_config") or {}).get("max_size") and (r.get("log_config") or {}).get("max_file"))
            ),
        ),
    ]
    findings = []
    actions = []
    for check, title, expected, test in checks:
        if f.containers is None:
            findings.append(unknown(check, title, expected, f.error))
            continue
        missing = sorted({r.get("service") for r in records if not test(r)})
        if missing:
            findings.append(
                finding(check, title, "warning", "missing on %s" % ", ".join(missing), expected, {"services": missing})
            )
            actions.append(
                action(
                    "%s.prevent.report_%s" % (NAME, check.rsplit(".", 1)[-1]),
                    None,
                    "add %s to %s" % (expected, ", ".join(missing)),
                    "compose:prevent:%s" % expected,
                    {"services": missing},
                    "report",
                    "L2: set %s on %s in the Compose file, then docker compose up -d" % (expected, ", ".join(missing)),
                )
            )
        else:
            findings.append(finding(check, title, "ok", "all %d containers" % len(records), expected))
    title = "Backups older than the retention (%s days) are removed" % s["backup_retention_days"]
    status = "warning" if f.expired else "ok"
    findings.append(
        finding(
            "prevent.backups.retention",
            title,
            status,
            "%d expired of %d" % (len(f.expired), len(f.backups)),
            "0 expired",
            {"dirs": s["backup_dirs"]},
            "B" if f.expired else None,
        )
    )
    return {"findings": findings, "actions": gate(actions, dry_run=s.get("dry_run", False)), "context": {}}


# --- the procedure ------------------------------------------------------------------------------------
def cache_backup_dir(context):
    """Where the cache's RDB backup goes when ``cache_backup_dir`` is empty: the run's ``backups/`` (octoctl's run
    directory), else ``octollm-remediation/backups`` under the controller's XDG state home."""
    if context.get("run_dir"):
        return "%s/backups" % context["run_dir"]
    state = os.environ.get("XDG_STATE_HOME", os.environ.get("HOME", "") + "/.local/state")
    return "%s/octollm-remediation/backups" % state


def _unique(items):
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


class ResourceExhaustion(Procedure):
    name = NAME
    title = "Resource Exhaustion"
    scenarios = SCENARIOS
    modules = {"compose": "resource_exhaustion", "kubernetes": "resource_exhaustion_kubernetes"}

    def settings(self, role_settings, context):
        s = super(ResourceExhaustion, self).settings(role_settings, context)
        s["cache_backup_dir"] = s.get("cache_backup_dir") or cache_backup_dir(context)
        if context.kubernetes:
            s["namespace"] = context.inventory["k8s"]["namespace"]
        return s

    def needs(self, settings, context):
        s = settings
        if context.kubernetes:
            # the API reads (names prefixed: the evidence is shared by the procedures); a metrics API that is not
            # served is evidence
            from ansible_collections.octollm.remediation.plugins.plugin_utils.resource_exhaustion_kubernetes import (
                objects,
            )

            return {"kubernetes": {"objects": objects()}}
        # every container's cgroup stats (CPU sampled twice), docker system df, docker info with df of the Docker
        # root dir and of the watched paths, host memory and load; the backup files with their size and age
        need = {
            "containers": {
                "stats": True,
                "stats_sample_seconds": s["stats_sample_seconds"],
                "system_df": True,
                "host": True,
                "df_paths": _unique(list(s["df_paths"]) + list(s["backup_dirs"])),
            }
        }
        if s["backup_dirs"]:
            need["logs"] = {
                "listings": {BACKUP_LISTING: {"paths": list(s["backup_dirs"]), "patterns": list(s["backup_patterns"])}}
            }
        return need


PROCEDURE = ResourceExhaustion()
