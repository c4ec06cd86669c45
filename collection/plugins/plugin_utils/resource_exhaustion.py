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
- B  a disk fills up with backups older than the retention: delete them (destructive: the list comes first), always
     keeping the newest ``backup_keep_newest`` of each kind (directory and pattern) whatever their age.
- C  the Docker root disk fills up with the stack's own unused Docker data: remove its stopped one-off containers
     (Compose project label; never a service's container) and its dangling images no container uses, each listed by
     name or id (destructive); never anything outside the project, an image in use or a protected image.
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


def _pattern_of(path, patterns):
    """The first backup pattern the file's name matches (its kind), None when none does."""
    name = os.path.basename(path or "")
    return next((pattern for pattern in patterns or [] if fnmatch.fnmatchcase(name, pattern)), None)


def retention(files, retention_days, keep_newest, patterns, now):
    """``(expired, kept)`` of backup files ``[{path, size, mtime}]``: older than ``retention_days`` and not among the
    ``keep_newest`` newest of their kind (same directory, same pattern), oldest first; ``kept`` are the old ones
    kept as the newest of their kind. A file without a modification time is never expired."""
    limit = now - float(retention_days) * 86400
    groups = {}
    for item in files:
        key = (os.path.dirname(item.get("path") or ""), _pattern_of(item.get("path"), patterns))
        groups.setdefault(key, []).append(item)
    expired, kept = [], []
    for items in groups.values():
        items = sorted(items, key=lambda item: -(item.get("mtime") or now))
        for rank, item in enumerate(items):
            if (item.get("mtime") or now) >= limit:
                continue
            (kept if rank < int(keep_newest) else expired).append(item)
    return sorted(expired, key=_by_age), sorted(kept, key=_by_age)


def _by_age(item):
    return (item.get("mtime") or 0, item.get("path") or "")


def deletable(found, change, patterns, now=None):
    """The files of an approved deletion (``change.files``) that may still go when it is applied: those ``found``
    now (``ansible.builtin.find`` results, ``{path, mtime}``) that are still expired by the same rule - older than
    the retention and not among the newest ``change.keep_newest`` of their kind (a backup deleted meanwhile makes
    an older one the newest, and it stays)."""
    now = time.time() if now is None else float(now)
    files = [{"path": item.get("path"), "mtime": item.get("mtime")} for item in found or []]
    expired, _kept = retention(files, change["retention_days"], change.get("keep_newest") or 0, patterns, now)
    listed = set(change.get("files") or [])
    return [item["path"] for item in expired if item["path"] in listed]


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
        self.backups = sorted(backup_files(evidence), key=lambda item: item.get("mtime") or 0)
        self.expired, self.kept = retention(
            self.backups,
            settings["backup_retention_days"],
            settings["backup_keep_newest"],
            settings["backup_patterns"],
            now,
        )

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
    title = "No backup is older than the retention (%s days) beyond the newest %s of each kind" % (
        s["backup_retention_days"],
        s["backup_keep_newest"],
    )
    expected = "<= %s days, or among the newest %s" % (s["backup_retention_days"], s["backup_keep_newest"])
    evidence = {
        "dirs": s["backup_dirs"],
        "files": len(f.backups),
        "expired": [{"path": i["path"], "size": i.get("size"), "mtime": i.get("mtime")} for i in f.expired[:20]],
        "expired_bytes": sum(i.get("size") or 0 for i in f.expired),
        "kept_newest": [i["path"] for i in f.kept],
        "keep_newest": s["backup_keep_newest"],
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


# A container in one of these states has stopped (created: never started); paused and restarting ones have not.
STOPPED_STATES = ("exited", "created", "dead")


def prunable_containers(f):
    """The stack's own stopped containers that may go: the Compose project's (the evidence lists no other), stopped,
    and either one-off (``docker compose run``) or without a restart policy. A stopped container of a service the
    stack keeps running (restart policy always / unless-stopped / on-failure) is never pruned: a down service is
    service_unavailable's to bring back, and its log is evidence."""
    found = []
    for record in (f.containers or {}).get("containers") or []:
        if record.get("running") or record.get("restarting") or record.get("state") not in STOPPED_STATES:
            continue
        policy = (record.get("restart_policy") or {}).get("name") or "no"
        if not record.get("oneoff") and policy != "no":
            continue
        found.append(
            {
                "name": record.get("name"),
                "id": record.get("id"),
                "service": record.get("service"),
                "state": record.get("state"),
                "oneoff": bool(record.get("oneoff")),
            }
        )
    return sorted(found, key=lambda item: item["name"] or "")


def revision_images(s):
    """The short ids of the images of the last ``keep_revisions`` revisions of each service in octoctl's deployment
    history (``revision_images``, newest first): a rollback's targets, which no prune removes."""
    keep = int(s.get("keep_revisions") or 0)
    found = set()
    for ids in (s.get("revision_images") or {}).values():
        for image_id in (list(ids or [])[:keep] if keep > 0 else []):
            found.add(str(image_id).replace("sha256:", "")[:12])
    return found


def prunable_images(f):
    """The stack's own unused images that may go: labelled with the Compose project, used by no container, dangling
    (a tagged image stays: it may be a rollback's target, and ``docker image prune`` spares it too), not protected
    and not the image of one of the last revisions octoctl recorded (``keep_revisions``)."""
    images = (f.system_df or {}).get("images") or {}
    kept = revision_images(f.s)
    found = [
        {"id": row.get("id"), "size_bytes": row.get("size_bytes"), "created": row.get("created")}
        for row in images.get("project_unused") or []
        if row.get("dangling")
        and not row.get("containers")
        and not _protected(row.get("tags"), f.s["protected_images"])
        and str(row.get("id") or "")[:12] not in kept
    ]
    return sorted(found, key=lambda item: item["id"] or "")


def check_docker_data(f, disk):
    s = f.s
    title = "Unused Docker data does not fill the Docker root disk"
    expected = "the stack's unused data pruned when the disk fills"
    if f.containers is None:
        return unknown("docker.disk_usage", title, expected, f.error, "C")
    sdf = f.system_df
    if not sdf:
        return finding("docker.disk_usage", title, "ok", "not read", expected, {"note": "no docker system df"})
    images = sdf.get("images") or {}
    containers = prunable_containers(f)
    ours = prunable_images(f)
    rw = (sdf.get("containers") or {}).get("project_rw_bytes") or {}
    for item in containers:
        item["size_bytes"] = rw.get(item["name"])
    stack_bytes = sum(item.get("size_bytes") or 0 for item in ours + containers)
    evidence = {
        "project": (f.containers or {}).get("project"),
        "images": {k: images.get(k) for k in ("total", "active", "size_bytes", "reclaimable_bytes", "dangling")},
        "containers": {k: (sdf.get("containers") or {}).get(k) for k in ("total", "active", "reclaimable_bytes")},
        "volumes": {k: (sdf.get("volumes") or {}).get(k) for k in ("total", "active", "reclaimable_bytes")},
        "build_cache": sdf.get("build_cache"),
        "prunable_containers": containers,
        "prunable_images": ours,
        # the evidence lists at most PROJECT_UNUSED_MAX of the project's unused images: how many it did not list
        "unlisted_project_images": max(
            0, (images.get("project_unused_total") or 0) - len(images.get("project_unused") or [])
        ),
        "protected_images": s["protected_images"],
    }
    host_bytes = (
        (images.get("reclaimable_bytes") or 0)
        + ((sdf.get("containers") or {}).get("reclaimable_bytes") or 0)
        + ((sdf.get("build_cache") or {}).get("reclaimable_bytes") or 0)
    )
    evidence["reclaimable_bytes"] = stack_bytes
    evidence["host_reclaimable_bytes"] = host_bytes
    root_full = any(
        row["cause"] == "C" and row["status"] != "ok" for row in (disk.get("evidence") or {}).get("disks", [])
    )
    observed = "%s reclaimable from the stack (%d stopped containers, %d images), %s on the host" % (
        human_bytes(stack_bytes),
        len(containers),
        len(ours),
        human_bytes(host_bytes),
    )
    if root_full and (containers or ours or host_bytes):
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
        "kept_newest": [i["path"] for i in f.kept],
        "backup_disk": [row for row in disk["evidence"].get("disks", []) if row.get("cause") == "B"],
        "docker": by_check["docker.disk_usage"].get("evidence") or {},
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
                        "keep_newest": s["backup_keep_newest"],
                    },
                    "planned",
                    "delete exactly these %d files (%s): %s; the newest %s of each kind stay whatever their age%s"
                    % (
                        len(expired),
                        human_bytes(sum(item.get("size") or 0 for item in expired)),
                        ", ".join(os.path.basename(item["path"]) for item in expired[:10]),
                        s["backup_keep_newest"],
                        " (kept: %s)" % ", ".join(os.path.basename(p) for p in ctx.get("kept_newest") or [])
                        if ctx.get("kept_newest")
                        else "",
                    ),
                    destructive=True,
                    apply="delete_backups",
                )
            )
        elif sid == "C":
            docker = ctx.get("docker") or {}
            containers = docker.get("prunable_containers") or []
            images = docker.get("prunable_images") or []
            if not containers and not images:
                actions.append(
                    action(
                        "%s.C.report_docker_data" % NAME,
                        "C",
                        "report Docker data outside the stack",
                        "docker:host",
                        {"host_reclaimable_bytes": docker.get("host_reclaimable_bytes")},
                        "report",
                        "L2: the Docker root disk is full and the stack has nothing unused to prune; %s is reclaimable "
                        "on the host outside it (other projects' containers and images, the build cache), which "
                        "only the host's owner may prune" % human_bytes(docker.get("host_reclaimable_bytes")),
                    )
                )
                continue
            names = [item["name"] for item in containers] + [item["id"] for item in images]
            actions.append(
                action(
                    "%s.C.prune_docker_data" % NAME,
                    "C",
                    "remove the stack's %d stopped containers and %d unused images" % (len(containers), len(images)),
                    "docker:prune:%s" % docker.get("project"),
                    {
                        "op": "docker rm and docker image rm of each, without force",
                        "project": docker.get("project"),
                        "containers": containers,
                        "images": images,
                        "unlisted_project_images": docker.get("unlisted_project_images") or 0,
                        "reclaimable_bytes": docker.get("reclaimable_bytes"),
                        "never": [
                            "anything without the label com.docker.compose.project=%s" % docker.get("project"),
                            "a container of a service the stack keeps running",
                            "an image a container uses",
                            "a tagged image",
                            "the image of one of the last %d revisions of a service in octoctl's deployment history"
                            % int(s.get("keep_revisions") or 0),
                        ]
                        + list(s["protected_images"]),
                    },
                    "planned",
                    "remove exactly these (%s): %s; Docker refuses a container that runs again or an image a "
                    "container uses, and those are kept"
                    % (human_bytes(docker.get("reclaimable_bytes")), ", ".join(names[:20])),
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
    title = "Backups older than the retention (%s days) are removed, the newest %s of each kind kept" % (
        s["backup_retention_days"],
        s["backup_keep_newest"],
    )
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
