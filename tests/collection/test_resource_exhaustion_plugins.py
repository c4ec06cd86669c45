"""Judgement of resource_exhaustion on synthetic evidence shaped like stack_evidence's (no lab needed)."""

from __future__ import annotations

from pathlib import Path

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.octollm.remediation.plugins.filter import procedure as procedure_filters
from ansible_collections.octollm.remediation.plugins.module_utils.collectors import run_all
from ansible_collections.octollm.remediation.plugins.plugin_utils import resource_exhaustion as rex
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings

NOW = 1_800_000_000.0
SETTINGS = procedure_settings("resource_exhaustion", {"backup_dirs": ["/state/backups"], "now": NOW})


def record(service, cpu=5.0, memory=10.0, **extra):
    item = {
        "service": service,
        "name": f"octollm-{service}-1",
        "running": True,
        "cpus": 1.0,
        "nano_cpus": 10**9,
        "memory_limit": 268435456,
        "log_config": {"type": "json-file", "max_size": "10m", "max_file": "3"},
        "stats": {
            "cpu_percent": cpu,
            "cpu_limit_percent": cpu,
            "memory_percent": memory,
            "memory_working_set_bytes": int(memory * 2684354),
            "memory_limit_bytes": 268435456,
            "pids": 5,
        },
    }
    item.update(extra)
    return item


def evidence(*records, disks=None, images=None, backups=None):
    disks = disks or [
        {"path": "/var/lib/docker", "used_percent": 30.0, "free_bytes": 10**11, "total_bytes": 2 * 10**11},
        {"path": "/state/backups", "used_percent": 30.0, "free_bytes": 10**11, "total_bytes": 2 * 10**11},
    ]
    return {
        "containers": {
            "ok": True,
            "containers": list(records),
            "host": {
                "docker_root_dir": "/var/lib/docker",
                "df": disks,
                "cpu_count": 2,
                "loadavg": [1, 1, 1],
                "memory": {"available_percent": 90.0, "available_bytes": 20 * 2**30},
            },
            "system_df": {
                "images": images or {"largest": [], "reclaimable_bytes": 0},
                "build_cache": {"reclaimable_bytes": 0},
            },
        },
        # the backup listing (stack_evidence kind logs, option listings)
        "logs": {"ok": True, "listings": {rex.BACKUP_LISTING: {"files": list(backups or [])}}},
    }


def backups(*ages_days):
    return [
        {"path": f"/state/backups/b{i}.dump", "size_bytes": 6 * 2**20, "mtime": NOW - age * 86400}
        for i, age in enumerate(ages_days)
    ]


def test_healthy_evidence_gives_only_ok():
    result = rex.diagnose(evidence(record("orchestrator"), record("redis"), backups=backups(1)), SETTINGS)
    assert {f["check"]: f["status"] for f in result["findings"]} == {
        "containers.cpu": "ok",
        "containers.memory": "ok",
        "host.memory": "ok",
        "host.disk": "ok",
        "backups.retention": "ok",
        "docker.disk_usage": "ok",
        "containers.log_rotation": "ok",
    }
    assert rex.plan(result, SETTINGS) == [] and result["escalation"]["level"] is None


def test_cpu_hog_restarts_the_top_consumer_after_approval():
    result = rex.diagnose(evidence(record("orchestrator", cpu=20), record("executor-arm", cpu=99.4)), SETTINGS)
    cpu = result["findings"][0]
    assert (
        cpu["status"] == "problem" and cpu["scenario"] == "A" and cpu["evidence"]["top"][0]["service"] == "executor-arm"
    )
    [act] = rex.plan(result, SETTINGS)
    assert (act["id"], act["status"], act["disruptive"]) == (
        "resource_exhaustion.A.restart_executor_arm",
        "awaiting_approval",
        True,
    )
    assert rex.plan(result, dict(SETTINGS, approve=True))[0]["status"] == "planned"


def test_a_throttled_container_exhausts_its_quota_under_its_average_threshold():
    """On a contended host a busy container gets less than its quota on average, but it still hits the quota in
    most CFS periods: that is the signal; a busy container that rarely hits it is not a problem."""
    hog = record("executor-arm", cpu=55.0)
    hog["stats"]["cpu_throttled_percent"] = 85.0
    busy = record("orchestrator", cpu=60.0)
    busy["stats"]["cpu_throttled_percent"] = 10.0
    bursty = record("node-exporter", cpu=15.0)  # idle but for one scrape: throttled in the few periods it ran
    bursty["stats"]["cpu_throttled_percent"] = 60.0
    cpu = rex.diagnose(evidence(busy, hog, bursty), SETTINGS)["findings"][0]
    assert cpu["status"] == "problem" and [r["service"] for r in cpu["evidence"]["top"]][:2] == [
        "orchestrator", "executor-arm"]
    assert cpu["observed"] == "executor-arm 55.0% of 1.0 cpus, throttled in 85.0% of periods"
    assert rex.diagnose(evidence(busy, bursty), SETTINGS)["findings"][0]["status"] == "ok"
    [act] = rex.plan(rex.diagnose(evidence(busy, hog), SETTINGS), SETTINGS)
    assert act["id"] == "resource_exhaustion.A.restart_executor_arm"  # the one that exhausts its quota


def test_the_cache_at_its_memory_limit_is_flushed_after_a_backup_not_restarted():
    redis = record("redis", memory=93.0)
    settings = dict(SETTINGS, cache_backup_dir="/state/runs/r1/backups")
    result = rex.diagnose(evidence(record("orchestrator", memory=40.0), redis), settings)
    [act] = rex.plan(result, settings)
    assert (act["id"], act["status"], act["disruptive"], act["destructive"]) == (
        "resource_exhaustion.A.flush_cache_redis", "awaiting_approval", True, True)
    assert act["change"]["op"] == "flushdb" and act["change"]["db"] == 0
    assert act["change"]["backup_dir"] == "/state/runs/r1/backups" and act["change"]["container"] == "octollm-redis-1"
    assert "redis-check-rdb" in act["outcome"]
    # another service at its limit is restarted, and Redis busy on CPU is not flushed
    [restart] = rex.plan(rex.diagnose(evidence(record("orchestrator", memory=95.0)), settings), settings)
    assert restart["id"] == "resource_exhaustion.A.restart_orchestrator"
    [cpu] = rex.plan(rex.diagnose(evidence(record("redis", cpu=99.0)), settings), settings)
    assert cpu["id"] == "resource_exhaustion.A.restart_redis"


def test_full_backup_disk_deletes_exactly_the_expired_backups():
    disks = [{"path": "/state/backups", "used_percent": 91.7, "free_bytes": 4 * 2**20, "total_bytes": 48 * 2**20}]
    one = dict(SETTINGS, backup_keep_newest=1)
    result = rex.diagnose(evidence(record("orchestrator"), disks=disks, backups=backups(30, 20, 8, 1)), one)
    found = {f["check"]: f for f in result["findings"]}
    assert found["host.disk"]["status"] == "problem" and found["host.disk"]["scenario"] == "B"
    assert found["backups.retention"]["status"] == "warning"
    [act] = rex.plan(result, dict(one, approve=True))
    assert act["destructive"] and act["status"] == "planned"
    assert act["change"]["files"] == ["/state/backups/b0.dump", "/state/backups/b1.dump", "/state/backups/b2.dump"]
    assert act["change"]["keep_newest"] == 1
    # without approval nothing goes, but the list is in the result
    assert rex.plan(result, one)[0]["status"] == "awaiting_approval"


def test_the_retention_always_keeps_the_newest_backups_of_each_kind():
    """Every backup older than the retention used to go, the last good ones too; now the newest
    backup_keep_newest (default 3) of each kind (directory and pattern) stay whatever their age."""
    assert SETTINGS["backup_keep_newest"] == 3
    disks = [{"path": "/state/backups", "used_percent": 95.0, "free_bytes": 2**20, "total_bytes": 48 * 2**20}]
    rdb = [{"path": "/state/backups/redis-1.rdb", "size_bytes": 2**20, "mtime": NOW - 50 * 86400},
           {"path": "/state/backups/redis-2.rdb", "size_bytes": 2**20, "mtime": NOW - 45 * 86400}]
    result = rex.diagnose(evidence(record("orchestrator"), disks=disks, backups=backups(40, 35, 30, 25, 20) + rdb),
                          SETTINGS)
    retention = {f["check"]: f for f in result["findings"]}["backups.retention"]
    assert [Path(e["path"]).name for e in retention["evidence"]["expired"]] == ["b0.dump", "b1.dump"]
    assert retention["evidence"]["kept_newest"] == [
        "/state/backups/redis-1.rdb", "/state/backups/redis-2.rdb", "/state/backups/b2.dump",
        "/state/backups/b3.dump", "/state/backups/b4.dump"]
    [act] = rex.plan(result, dict(SETTINGS, approve=True))
    assert act["change"] == {"files": ["/state/backups/b0.dump", "/state/backups/b1.dump"], "count": 2,
                             "bytes": 2 * 6 * 2**20, "retention_days": 7.0, "keep_newest": 3}
    assert "the newest 3 of each kind stay" in act["outcome"] and "kept: redis-1.rdb" in act["outcome"]
    # three old backups and nothing newer: none goes (they are the last ones)
    only_old = rex.diagnose(evidence(record("orchestrator"), disks=disks, backups=backups(40, 35, 30)), SETTINGS)
    assert {f["check"]: f["status"] for f in only_old["findings"]}["backups.retention"] == "ok"
    assert rex.plan(only_old, dict(SETTINGS, approve=True)) == []


def test_the_deletion_checks_again_what_it_may_delete_when_applied():
    """resource_exhaustion_deletable (the task file's filter): listed, still older than the retention, and still
    not among the newest of its kind when the deletion runs."""
    from ansible_collections.octollm.remediation.plugins.filter.resource_exhaustion import FilterModule

    deletable = FilterModule().filters()["resource_exhaustion_deletable"]
    patterns = SETTINGS["backup_patterns"]
    change = {"files": ["/b/x0.dump", "/b/x1.dump"], "retention_days": 7, "keep_newest": 2}
    found = [{"path": f"/b/x{i}.dump", "mtime": NOW - age * 86400} for i, age in enumerate((40, 30, 20, 10))]
    assert rex.deletable(found, change, patterns, now=NOW) == ["/b/x0.dump", "/b/x1.dump"]
    # x2 and x3 were deleted meanwhile: x0 and x1 are now the newest two, and stay
    assert rex.deletable(found[:2], change, patterns, now=NOW) == []
    # x1 was rewritten (new mtime): kept; a file never listed is never deleted
    rewritten = [found[0], {"path": "/b/x1.dump", "mtime": NOW}, *found[2:], {"path": "/b/y.dump", "mtime": 0}]
    assert rex.deletable(rewritten, change, patterns, now=NOW) == ["/b/x0.dump"]
    import time

    today = [dict(item, mtime=item["mtime"] - NOW + time.time()) for item in found]
    assert deletable(today, change, patterns) == ["/b/x0.dump", "/b/x1.dump"]  # now: the clock of the run


def stopped(service, name, state="exited", policy="no", oneoff=False):
    return {"service": service, "name": name, "id": name[-12:].rjust(12, "0"), "running": False, "state": state,
            "oneoff": oneoff, "restart_policy": {"name": policy, "max_retries": 0},
            "log_config": {"type": "json-file", "max_size": "10m", "max_file": "3"}}


def test_docker_root_full_prunes_only_the_stacks_own_stopped_containers_and_unused_images():
    """The prune used to remove every stopped container on the host outside the project while the plan listed
    images only. Now: the project's stopped one-off containers and dangling images no container uses, each listed
    by name or id; never another project's, a service's container, an image in use, a tagged or protected one."""
    disks = [{"path": "/var/lib/docker", "used_percent": 95.0, "free_bytes": 2**30, "total_bytes": 20 * 2**30}]
    row = {"tags": [], "dangling": True, "containers": 0, "in_use_by_project": False, "created": 1}
    images = {
        "reclaimable_bytes": 3 * 2**30,
        "largest": [],
        "project_unused": [
            dict(row, id="aaa", project="octollm", size_bytes=100),
            dict(row, id="bbb", project="octollm", size_bytes=7, containers=1),  # a stopped container uses it
            dict(row, id="ccc", project="octollm", size_bytes=5, tags=["octollm-orchestrator:old"], dangling=False),
            dict(row, id="ddd", project="octollm", size_bytes=5, tags=["octollm/lab-runtime:old"], dangling=False),
        ],
        "project_unused_total": 4,
    }
    containers = [
        record("orchestrator"),
        stopped("migrate", "octollm-migrate-run-0f3c2a1b9d8e", oneoff=True),
        stopped("seed", "octollm-seed-1", state="created"),
        stopped("loadgen", "octollm-loadgen-1", policy="unless-stopped"),  # a stopped service: never pruned
        dict(stopped("worker", "octollm-worker-1"), state="paused"),
    ]
    ev = evidence(*containers, disks=disks, images=images)
    ev["containers"]["project"] = "octollm"
    ev["containers"]["system_df"]["containers"] = {"project_rw_bytes": {"octollm-migrate-run-0f3c2a1b9d8e": 40}}
    result = rex.diagnose(ev, SETTINGS)
    usage = {f["check"]: f for f in result["findings"]}["docker.disk_usage"]
    assert usage["status"] == "problem" and usage["scenario"] == "C"
    assert {s["id"]: s["holds"] for s in result["scenarios"]}["C"] is True
    [act] = rex.plan(result, dict(SETTINGS, approve=True))
    assert (act["id"], act["destructive"], act["_apply"]) == ("resource_exhaustion.C.prune_docker_data", True,
                                                              "prune_docker")
    change = act["change"]
    assert [c["name"] for c in change["containers"]] == ["octollm-migrate-run-0f3c2a1b9d8e", "octollm-seed-1"]
    assert change["containers"][0] == {"name": "octollm-migrate-run-0f3c2a1b9d8e", "id": "run-0f3c2a1b9d8e"[-12:],
                                       "service": "migrate", "state": "exited", "oneoff": True, "size_bytes": 40}
    assert change["images"] == [{"id": "aaa", "size_bytes": 100, "created": 1}]
    assert change["project"] == "octollm" and change["reclaimable_bytes"] == 140
    assert "octollm/lab-runtime:*" in change["never"] and "a tagged image" in change["never"]
    assert "octollm-migrate-run-0f3c2a1b9d8e" in act["outcome"] and "aaa" in act["outcome"]
    # nothing of the stack to prune, only other projects' data on the host: a report, nothing removed
    ev["containers"]["containers"] = [record("orchestrator")]
    ev["containers"]["system_df"]["images"] = {"reclaimable_bytes": 3 * 2**30, "project_unused": []}
    [report] = rex.plan(rex.diagnose(ev, SETTINGS), dict(SETTINGS, approve=True))
    assert (report["id"], report["status"]) == ("resource_exhaustion.C.report_docker_data", "report")
    assert "only the host's owner may prune" in report["outcome"]
    # a disk with room: nothing to do, whatever is reclaimable
    ev["containers"]["host"]["df"] = [{"path": "/var/lib/docker", "used_percent": 30.0, "free_bytes": 10**11,
                                       "total_bytes": 2 * 10**11}]
    assert rex.plan(rex.diagnose(ev, SETTINGS), dict(SETTINGS, approve=True)) == []


def test_the_prune_keeps_the_images_of_the_last_revisions_octoctl_recorded():
    """Issue 19: a rollback's target image (an old build, its tag moved on: dangling) stays while it is the image of
    one of the last resource_exhaustion_keep_revisions revisions of a service; an older one may go."""
    disks = [{"path": "/var/lib/docker", "used_percent": 95.0, "free_bytes": 2**30, "total_bytes": 20 * 2**30}]
    row = {"tags": [], "dangling": True, "containers": 0, "in_use_by_project": False, "created": 1, "size_bytes": 9,
           "project": "octollm"}
    images = {"reclaimable_bytes": 3 * 2**30, "largest": [], "project_unused_total": 3,
              "project_unused": [dict(row, id="a" * 12), dict(row, id="b" * 12), dict(row, id="c" * 12)]}
    ev = evidence(record("orchestrator"), disks=disks, images=images)
    ev["containers"]["project"] = "octollm"
    history = {"lab/planner-arm": ["sha256:" + "d" * 64, "sha256:" + "a" * 64, "sha256:" + "b" * 64],
               "lab/orchestrator": ["sha256:" + "d" * 64]}
    def pruned(keep):
        settings = dict(SETTINGS, approve=True, revision_images=history, keep_revisions=keep)
        [act] = rex.plan(rex.diagnose(ev, settings), settings)
        return act["change"]

    assert [item["id"] for item in pruned(2)["images"]] == ["b" * 12, "c" * 12]
    assert any("last 2 revisions" in item for item in pruned(2)["never"])
    assert [item["id"] for item in pruned(3)["images"]] == ["c" * 12]
    assert [item["id"] for item in pruned(0)["images"]] == ["a" * 12, "b" * 12, "c" * 12]


def test_no_log_rotation_is_a_report_and_docker_down_is_unknown():
    result = rex.diagnose(evidence(record("loadgen", log_config={"type": "json-file"})), SETTINGS)
    [act] = rex.plan(result, SETTINGS)
    assert act["status"] == "report" and act["scenario"] == "D" and "max-size" in act["outcome"]
    down = rex.diagnose(
        {"containers": {"ok": False, "error": {"kind": "unreachable", "message": "no socket"}}}, SETTINGS
    )
    assert all(
        f["status"] == "unknown" and f["error"]["kind"] == "unreachable"
        for f in down["findings"]
        if f["check"] != "backups.retention"
    )


def test_prevention():
    result = rex.prevention(
        evidence(record("a"), record("b", nano_cpus=None, log_config={"type": "json-file"}),
                 backups=backups(40, 39, 38, 37)),
        SETTINGS,
    )
    assert {f["check"]: f["status"] for f in result["findings"]} == {
        "prevent.containers.memory_limit": "ok",
        "prevent.containers.cpu_limit": "warning",
        "prevent.containers.log_rotation": "warning",
        "prevent.backups.retention": "warning",
    }


# --- the procedure on the shared flow ------------------------------------------------------------------------------
def test_needs_ask_the_containers_and_the_backup_listing_in_the_modules_vocabulary():
    from ansible_collections.octollm.remediation.plugins.modules import stack_evidence

    settings = procedure_settings(
        "resource_exhaustion", {"backup_dirs": ["/state/backups", "/state/backups/postgres"], "df_paths": ["/state"]}
    )
    needs = rex.PROCEDURE.needs(settings, Context(platform="compose"))
    assert needs["containers"] == {
        "stats": True,
        "stats_sample_seconds": 2.0,
        "system_df": True,
        "host": True,
        "df_paths": ["/state", "/state/backups", "/state/backups/postgres"],
    }
    assert needs["logs"] == {
        "listings": {
            "resource_exhaustion_backups": {
                "paths": ["/state/backups", "/state/backups/postgres"],
                "patterns": ["*.dump", "*.sql", "*.sql.gz", "*.rdb", "*.tar.gz"],
            }
        }
    }
    spec = stack_evidence.argument_spec()
    assert not ArgumentSpecValidator(spec).validate(dict(needs, kinds=sorted(needs))).error_messages
    # no backup directory: nothing to list; on Kubernetes only the API reads
    assert "logs" not in rex.PROCEDURE.needs(procedure_settings("resource_exhaustion"), Context(platform="compose"))
    k8s = procedure_settings("resource_exhaustion", platform="kubernetes")
    assert set(rex.PROCEDURE.needs(k8s, Context(platform="kubernetes", inventory={"k8s": {"namespace": "x"}}))) == {
        "kubernetes"}


def test_settings_come_from_the_role_and_the_run():
    """The thresholds are the role's defaults (typed by its spec); the cache's backup directory is the run's."""
    settings = procedure_settings("resource_exhaustion")
    assert (settings["cpu_high_percent"], settings["backup_retention_days"], settings["top"]) == (80.0, 7.0, 5)
    assert settings["skip_actions"] == [] and settings["escalation_level"] == "L2"
    run_dir = rex.PROCEDURE.settings(role_settings("resource_exhaustion"), Context(run_dir="/runs/r1"))
    assert run_dir["cache_backup_dir"] == "/runs/r1/backups"
    given = rex.PROCEDURE.settings(role_settings("resource_exhaustion", {"cache_backup_dir": "/b"}), Context())
    assert given["cache_backup_dir"] == "/b"
    assert procedure_settings("resource_exhaustion", platform="kubernetes")["namespace"] == "octollm"


def test_the_backup_listing_lists_files_without_reading_them(tmp_path: Path):
    """stack_evidence's logs.listings, the evidence of scenario B: regular files matching the patterns, with size and
    modification time; hidden files, symlinks, other names and subdirectories (without recurse) left out."""
    import os

    backups_dir = tmp_path / "backups"
    (backups_dir / "postgres").mkdir(parents=True)
    (backups_dir / "old.dump").write_bytes(b"x" * 10)
    os.utime(backups_dir / "old.dump", (NOW, NOW))
    (backups_dir / "new.sql.gz").write_bytes(b"y" * 3)
    (backups_dir / ".hidden.dump").write_bytes(b"z")
    (backups_dir / "notes.txt").write_text("no")
    (backups_dir / "link.dump").symlink_to(backups_dir / "old.dump")
    (backups_dir / "postgres" / "deep.dump").write_bytes(b"d")
    need = rex.PROCEDURE.needs(
        procedure_settings("resource_exhaustion", {"backup_dirs": [str(backups_dir), str(tmp_path / "absent")]}),
        Context(platform="compose"),
    )
    listing = run_all({"logs": need["logs"]}, 10)["logs"]
    assert listing["ok"] is True and listing["sources"] == {}
    found = listing["listings"][rex.BACKUP_LISTING]
    assert [(Path(f["path"]).name, f["size_bytes"]) for f in found["files"]] == [("new.sql.gz", 3), ("old.dump", 10)]
    assert found["files"][1]["mtime"] == NOW
    assert found["missing"] == [str(tmp_path / "absent")] and found["errors"] == {} and found["count"] == 2
    assert rex.backup_files(run_all({"logs": need["logs"]}, 10))[1] == {
        "path": str(backups_dir / "old.dump"), "size": 10, "mtime": NOW}
    recursive = run_all({"logs": {"listings": {"all": {"paths": [str(backups_dir)], "recurse": True}}}}, 10)
    assert sorted(Path(f["path"]).name for f in recursive["logs"]["listings"]["all"]["files"]) == [
        "deep.dump", "new.sql.gz", "notes.txt", "old.dump"]
    bad = run_all({"logs": {"listings": {"bad": {"patterns": ["*"]}}}}, 10)["logs"]
    assert bad["ok"] is True and bad["listings"]["bad"]["error"]["kind"] == "other"


def test_the_flow_filters_judge_plan_gate_and_report():
    """The shared procedure_* filters run this procedure: request, judgement with the gated plan, the actions to
    apply (skip_actions honoured) and the RESULT with its verification."""
    filters = procedure_filters.FilterModule().filters()
    run = {
        "procedures": ["resource_exhaustion"],
        "context": {"platform": "compose", "phase": "resolve", "approve": True, "run_dir": "/runs/r1"},
        "settings": {"resource_exhaustion": role_settings(
            "resource_exhaustion", {"backup_dirs": ["/state/backups"], "now": NOW})},
    }
    assert set(filters["procedure_request"](run)) == {"containers", "logs"}
    disks = [{"path": "/state/backups", "used_percent": 91.7, "free_bytes": 4 * 2**20, "total_bytes": 48 * 2**20}]
    broken = evidence(record("orchestrator"), disks=disks, backups=backups(30, 20, 10, 9, 1))
    state = filters["procedure_judgement"](broken, run)
    assert state["_followup"] == {}
    [todo] = filters["procedure_actions"](state, run)
    assert todo["procedure"] == "resource_exhaustion" and todo["action"]["_apply"] == "delete_backups"
    assert todo["action"]["change"]["count"] == 2
    done = {todo["action"]["id"]: {"status": "applied", "outcome": "deleted 2 of 2 listed backups"}}
    fixed = evidence(record("orchestrator"), backups=backups(1))
    result = filters["procedure_results"](fixed, run, state, done)["resource_exhaustion"]
    assert result["actions"][0]["status"] == "applied" and "_apply" not in result["actions"][0]
    assert result["verification"]["healthy"] is True and result["escalation"]["level"] is None
    skipping = dict(run, settings={"resource_exhaustion": dict(
        run["settings"]["resource_exhaustion"], skip_actions=["resource_exhaustion.B.delete_expired_backups"])})
    skipped = filters["procedure_judgement"](broken, skipping)["resource_exhaustion"]["actions"]
    assert skipped[0]["status"] == "skipped" and filters["procedure_actions"]({"resource_exhaustion": {
        "actions": skipped}}, skipping) == []


def test_the_containers_evidence_names_the_projects_unused_images_and_one_off_containers():
    """collector_containers: docker system df's images with the Compose project label and no container are listed
    (all of them, not only the ten largest); a record says whether its container is a one-off (compose run)."""
    from ansible_collections.octollm.remediation.plugins.module_utils import collector_containers as cc

    label = {cc.PROJECT_LABEL: "octollm"}
    data = {"Images": [
        {"Id": "sha256:" + "a" * 64, "RepoTags": ["<none>:<none>"], "Size": 5, "Containers": 0, "Labels": label},
        {"Id": "sha256:" + "b" * 64, "RepoTags": ["octollm-app:1"], "Size": 9, "Containers": 2, "Labels": label},
        {"Id": "sha256:" + "c" * 64, "RepoTags": [], "Size": 7, "Containers": 0,
         "Labels": {cc.PROJECT_LABEL: "other"}},
        {"Id": "sha256:" + "d" * 64, "RepoTags": ["debian:bookworm"], "Size": 3, "Containers": 0, "Labels": None},
    ]}
    images = cc.system_df(data, [], "octollm")["images"]
    assert [(row["id"], row["dangling"], row["project"]) for row in images["project_unused"]] == [("a" * 12, True,
                                                                                                   "octollm")]
    assert images["project_unused_total"] == 1
    assert cc.system_df(data, [])["images"]["project_unused"] == []  # no project: nothing is the stack's
    inspect = {"Name": "/octollm-migrate-run-1", "Id": "f" * 64, "State": {"Status": "exited"},
               "Config": {"Labels": {cc.PROJECT_LABEL: "octollm", cc.SERVICE_LABEL: "migrate",
                                     cc.ONEOFF_LABEL: "True"}}, "HostConfig": {}}
    assert cc.container_record({}, inspect, [])["oneoff"] is True
    inspect["Config"]["Labels"][cc.ONEOFF_LABEL] = "False"
    assert cc.container_record({}, inspect, [])["oneoff"] is False
