# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""data_corruption on Kubernetes: the Compose judgement and repair, with the backup taken INSIDE the PostgreSQL pod.

The integrity queries and the one-transaction repair run as on Compose, at the inventory's PostgreSQL address (a
Service address or a port-forward). The verified backup before the repair is a ``pg_dump -Fc`` run in the
PostgreSQL pod through ``kubernetes.core.k8s_exec`` (the server's own pg_dump, no copy over the port-forward),
into a path the plan names on the pod's data volume. The exec's argv is built here: ``sh -c SCRIPT`` with the
path, database, user, the NAME of the pod's environment variable holding the password and the tables as
positional parameters (no value is interpolated into the script; the password never leaves the pod). The script
writes ``<path>.part``, checks it is not empty, lists it with ``pg_restore --list``, counts the rows of each table
in the file (``pg_restore --data-only --table``), and only then renames it; ``backup_result`` turns its output
into the pg_backup module's result, so the Compose ``backup_outcome`` and the repair's guard apply unchanged.

What it does NOT do (the Compose pg_backup module does): compare the file's row counts with the counts of the
snapshot the dump was taken from, write a manifest, or keep the file off the database's volume. The file lies on
the same PersistentVolume as the data: it protects against the repair, not against losing the volume.

Prevention adds a PodDisruptionBudget for PostgreSQL and scheduled backups: a CronJob running pg_dump (reported
when missing, suspended or without a recent success; this procedure does not create it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import shlex

from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption as dc
from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections_kubernetes as dbc_k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import action, finding, unknown

PREFIX = "data_corruption_"
READS = ("pods", "pdbs", "cronjobs", "workload")
LISTS = ("pods", "pdbs", "cronjobs")

# Runs in the pod: $1 path, $2 database, $3 user, $4 name of the password's env variable, then the tables.
BACKUP_SCRIPT = "\n".join(
    [
        "set -eu",
        'out="$1"; db="$2"; user="$3"; pwvar="$4"; shift 4',
        'PGPASSWORD="$(printenv "$pwvar" || true)"; export PGPASSWORD',
        'umask 077; mkdir -p "$(dirname "$out")"',
        "start=$(date +%s)",
        'pg_dump -h 127.0.0.1 -U "$user" -d "$db" --format=custom --lock-wait-timeout=10000 -f "$out.part"',
        'test -s "$out.part" || { echo "empty dump" >&2; exit 3; }',
        'toc=$(pg_restore --list "$out.part" | grep -vc "^;")',
        'for t in "$@"; do',
        '  n=$(pg_restore --data-only --table="$t" -f - "$out.part" | awk \'/^COPY /{c=1;next} /^\\\\\\.$/{c=0;next} '
        "c{n++} END{print n+0}')",
        '  echo "rows $t $n"',
        "done",
        'mv "$out.part" "$out"',
        'echo "toc $toc"',
        'echo "bytes $(wc -c < "$out")"',
        'echo "sha256 $(sha256sum "$out" | cut -d" " -f1)"',
        'echo "seconds $(( $(date +%s) - start ))"',
        'echo "path $out"',
    ]
)


def normalise(evidence):
    """The ``kubernetes`` evidence (reads ``data_corruption_<read>``) as lists / one object, errors by read."""
    return k8s.reads_as_facts(evidence, PREFIX, READS, LISTS)


def backup_exec(facts, s, database, tables):
    """The exec of the backup: a running PostgreSQL pod (a ready one first), its container, the path and the argv
    (and the command string kubernetes.core.k8s_exec splits with shlex), or None without a running pod."""
    pods = [
        p
        for p in k8s.pods_summary(facts.get("pods"), s["k8s_db_label"])
        if p["phase"] == "Running" and not p["deleting"]
    ]
    if not pods:
        return None
    pods.sort(key=lambda p: (not p["ready"], p["name"]))
    path = "%s/data_corruption-%s-%s.dump" % (s["k8s_pod_backup_dir"].rstrip("/"), database, s["stamp"])
    argv = ["sh", "-c", BACKUP_SCRIPT, "octollm-backup", path, database, s["k8s_pod_user"], s["k8s_pod_password_env"]]
    argv += list(tables)
    return {
        "namespace": s["namespace"],
        "pod": pods[0]["name"],
        "container": s["k8s_db_container"],
        "path": path,
        "argv": argv,
        "command": " ".join(shlex.quote(part) for part in argv),
    }


def plan(diagnosis, evidence, settings):
    """The Compose plan, its backup taken in the PostgreSQL pod (``change.exec``); without a running pod the
    backup cannot be taken, so it is reported and the repair (which needs it) does not run."""
    s = settings
    facts = normalise(evidence)
    actions = dc.plan(diagnosis, settings)
    out = []
    for item in actions:
        if item["id"] != "data_corruption.backup":
            out.append(item)
            continue
        change = dict(item["change"])
        probe = backup_exec(facts, s, change.get("database") or "octollm", change.get("count_tables") or [])
        if probe is None:
            error = (facts.get("errors") or {}).get("pods")
            out.append(
                dict(
                    item,
                    status="report",
                    change=change,
                    outcome=(
                        "L2: no running pod with app=%s to run pg_dump in (%s): no backup, so no repair"
                        % (s["k8s_db_label"], (error or {}).get("message") or "none found")
                    ),
                )
            )
            out[-1].pop("_apply", None)
            continue
        change.update(
            directory="pod:%s/%s:%s" % (s["namespace"], probe["pod"], s["k8s_pod_backup_dir"]),
            where="in the PostgreSQL pod (kubernetes.core.k8s_exec)",
            exec=probe,
            verify="non-empty, pg_restore --list, row counts of %s in the file (no snapshot comparison, "
            "no manifest)" % ", ".join(change.get("count_tables") or []),
        )
        out.append(dict(item, change=change, title="verified backup (pg_dump custom format) in pod %s" % probe["pod"]))
    return out


def backup_result(exec_result, change):
    """The k8s_exec result of the backup script as the pg_backup module's result (what ``backup_outcome`` reads)."""
    exec_result = exec_result or {}
    probe = (change or {}).get("exec") or {}
    rc = exec_result.get("rc", exec_result.get("return_code"))
    where = "pod:%s/%s:%s" % (probe.get("namespace"), probe.get("pod"), probe.get("path"))
    if rc is None:
        return {
            "failed": True,
            "verified": False,
            "path": where,
            "msg": "exec failed: %s" % (exec_result.get("msg") or "no result"),
        }
    values, tables = {}, {}
    for line in exec_result.get("stdout_lines") or str(exec_result.get("stdout") or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "rows":
            tables[parts[1]] = {"rows": int(parts[2])}
        elif len(parts) == 2:
            values[parts[0]] = parts[1]
    wanted = set((change or {}).get("count_tables") or [])
    complete = all(key in values for key in ("toc", "bytes", "sha256", "path")) and wanted <= set(tables)
    if rc != 0 or not complete or int(values.get("bytes", 0)) <= 0:
        stderr = " ".join(str(exec_result.get("stderr") or "").split())[-300:]
        return {
            "failed": True,
            "verified": False,
            "path": where,
            "msg": "pg_dump in pod %s exited %s: %s" % (probe.get("pod"), rc, stderr or "incomplete output"),
        }
    return {
        "verified": True,
        "path": "pod:%s/%s:%s" % (probe.get("namespace"), probe.get("pod"), values["path"]),
        "bytes": int(values["bytes"]),
        "sha256": values["sha256"],
        "toc_entries": int(values["toc"]),
        "tables": tables,
        "duration_s": float(values.get("seconds") or 0),
        "manifest": None,
    }


def backup_outcome(exec_result, change, check_mode=False):
    return dc.backup_outcome(backup_result(exec_result, change), check_mode)


# --- prevention ------------------------------------------------------------------------------------------
def check_pdb(facts, s):
    """``prevent.k8s.postgres_pdb``: database_connections' check of the same PostgreSQL pods (this procedure reads
    the StatefulSet as ``workload``)."""
    return dbc_k8s.check_pdb(dict(facts, db_workload=facts.get("workload")), s)


def _runs_pg_dump(cronjob):
    spec = (((cronjob.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    for container in (spec.get("spec") or {}).get("containers") or []:
        text = " ".join(str(part) for part in (container.get("command") or []) + (container.get("args") or []))
        if "pg_dump" in text or "pg_basebackup" in text:
            return True
    return False


def _age_s(stamp, now):
    if not stamp or now is None:
        return None
    try:
        when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return (now - when.replace(tzinfo=None)).total_seconds()


def check_cronjob(facts, s):
    """prevent.backups.scheduled on Kubernetes: a CronJob that runs pg_dump, not suspended, with a recent success."""
    interval = int(s["backup_interval"])
    title = "Backups are scheduled: a CronJob runs pg_dump (every %s)" % dc._duration(interval)
    expected = "a CronJob running pg_dump, not suspended, last success newer than %s" % dc._duration(2 * interval)
    if not s["backup_schedule"]:
        return finding(
            "prevent.backups.scheduled", title, "ok", "not wanted (data_corruption_backup_schedule)", expected
        )
    error = (facts.get("errors") or {}).get("cronjobs")
    if error:
        return unknown("prevent.backups.scheduled", title, expected, error)
    now = s.get("now")
    if isinstance(now, str):
        now = datetime.datetime.strptime(now, "%Y-%m-%dT%H:%M:%SZ")
    jobs = [c for c in facts.get("cronjobs") or [] if _runs_pg_dump(c)]
    summary = [
        {
            "name": c["metadata"]["name"],
            "schedule": (c.get("spec") or {}).get("schedule"),
            "suspended": bool((c.get("spec") or {}).get("suspend")),
            "last_success": (c.get("status") or {}).get("lastSuccessfulTime"),
            "last_success_age_s": _age_s((c.get("status") or {}).get("lastSuccessfulTime"), now),
        }
        for c in jobs
    ]
    evidence = {"cronjobs": summary, "interval_s": interval}
    if not jobs:
        return finding("prevent.backups.scheduled", title, "problem", "no CronJob runs pg_dump", expected, evidence)
    good = [
        c
        for c in summary
        if not c["suspended"] and c["last_success_age_s"] is not None and c["last_success_age_s"] <= 2 * interval + 300
    ]
    if good:
        return finding(
            "prevent.backups.scheduled",
            title,
            "ok",
            "%s: last success %s ago" % (good[0]["name"], dc._duration(good[0]["last_success_age_s"])),
            expected,
            evidence,
        )
    parts = [
        "%s: %s"
        % (
            c["name"],
            "suspended"
            if c["suspended"]
            else (
                "never succeeded"
                if c["last_success"] is None
                else "last success %s ago" % dc._duration(c["last_success_age_s"])
            ),
        )
        for c in summary
    ]
    return finding("prevent.backups.scheduled", title, "problem", "; ".join(parts), expected, evidence)


def prevention(evidence, settings):
    """The Compose prevention (constraints, amcheck) with scheduled backups judged from the CronJobs, plus the
    PostgreSQL PDB; both are reports here (this procedure creates neither)."""
    s = settings
    facts = normalise(evidence)
    result = dc.prevention(evidence, dict(settings, schedule_supported=False))
    findings = [f for f in result["findings"] if f["check"] != "prevent.backups.scheduled"]
    actions = [
        a
        for a in result["actions"]
        if a["id"] not in ("data_corruption.prevent.report_backups", "data_corruption.prevent.schedule_backups")
    ]
    schedule = check_cronjob(facts, s)
    pdb = check_pdb(facts, s)
    database = (result.get("context") or {}).get("database") or "database"
    if schedule["status"] == "problem":
        actions.append(
            action(
                "data_corruption.prevent.report_backups",
                None,
                "schedule verified backups",
                "backups:%s" % database,
                {"interval_s": int(s["backup_interval"]), "cronjobs": schedule["evidence"]["cronjobs"]},
                "report",
                "L2: %s; run a CronJob with pg_dump -Fc, pg_restore --list and a retention (this procedure does not "
                "create it)" % schedule["observed"],
            )
        )
    if pdb["status"] == "warning":
        actions.append(
            action(
                "data_corruption.prevent.report_postgres_pdb",
                None,
                "report PostgreSQL without a PDB",
                "k8s:pdb:%s" % s["k8s_db_label"],
                {"selector": {"app": s["k8s_db_label"]}},
                "report",
                "L2: add a PodDisruptionBudget for app=%s so that a drain does not take the database down unannounced"
                % s["k8s_db_label"],
            )
        )
    # the Compose actions are gated already; the two added here are reports
    return {"findings": findings + [schedule, pdb], "actions": actions, "context": result["context"]}
