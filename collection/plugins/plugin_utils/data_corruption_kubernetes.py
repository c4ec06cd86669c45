# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""data_corruption on Kubernetes: the Compose judgement, repair and restore, with the backup streamed OUT of the
PostgreSQL pod.

The integrity queries and the one-transaction repair run as on Compose, at the inventory's PostgreSQL address (a
Service address or a port-forward). The verified backup before the repair is ``pg_dump -Fc`` run INSIDE a running
PostgreSQL pod (the server's own pg_dump) through the API's exec, from the snapshot the ``pg_backup`` module exports
and counts over that address, and its output is streamed to the controller (``pg_backup`` option ``pod_exec``,
``module_utils/pod_stream.py``): the file lands in the run's ``backups/`` (``data_corruption_backup_dir``), never on
the database's volume, and is verified there exactly as on Compose (non-empty, ``pg_restore --list``, the rows of
each table in the file equal the snapshot's, a manifest). The password stays in the pod: the exec names the
environment variable that holds it. ``octoctl restore RUN_ID`` (the role's restore) then restores that controller
file through the same address, as on Compose.

Prevention adds a PodDisruptionBudget for PostgreSQL and scheduled backups: a CronJob running pg_dump (reported
when missing, suspended or without a recent success; this procedure does not create it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.octollm.remediation.plugins.plugin_utils import data_corruption as dc
from ansible_collections.octollm.remediation.plugins.plugin_utils import database_connections_kubernetes as dbc_k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import action, finding, unknown

PREFIX = "data_corruption_"
READS = ("pods", "pdbs", "cronjobs", "workload")
LISTS = ("pods", "pdbs", "cronjobs")


def normalise(evidence):
    """The ``kubernetes`` evidence (reads ``data_corruption_<read>``) as lists / one object, errors by read."""
    return k8s.reads_as_facts(evidence, PREFIX, READS, LISTS)


def backup_exec(facts, s):
    """Where pg_dump runs: a running PostgreSQL pod (a ready one first), its container, the user and the NAME of
    the pod's variable holding the password; None without a running pod."""
    pods = [
        p
        for p in k8s.pods_summary(facts.get("pods"), s["k8s_db_label"])
        if p["phase"] == "Running" and not p["deleting"]
    ]
    if not pods:
        return None
    pods.sort(key=lambda p: (not p["ready"], p["name"]))
    return {
        "namespace": s["namespace"],
        "pod": pods[0]["name"],
        "container": s["k8s_db_container"],
        "user": s["k8s_pod_user"],
        "password_env": s["k8s_pod_password_env"],
    }


def plan(diagnosis, evidence, settings):
    """The Compose plan, its backup dumped in the PostgreSQL pod and streamed to the controller (``change.exec``);
    without a running pod the backup cannot be taken, so it is reported and the repair (which needs it) does not
    run."""
    s = settings
    facts = normalise(evidence)
    actions = dc.plan(diagnosis, settings)
    out = []
    for item in actions:
        if item["id"] != "data_corruption.backup":
            out.append(item)
            continue
        change = dict(item["change"])
        probe = backup_exec(facts, s)
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
            where="pg_dump in pod %s/%s (the API's exec), streamed to the controller"
            % (probe["namespace"], probe["pod"]),
            exec=probe,
        )
        out.append(
            dict(
                item,
                change=change,
                title="verified backup (pg_dump custom format) from pod %s, streamed to the controller" % probe["pod"],
                outcome="pg_dump -Fc in pod %s from one snapshot, streamed to %s, then pg_restore --list and the row "
                "counts of the file" % (probe["pod"], change.get("directory")),
            )
        )
    return out


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
