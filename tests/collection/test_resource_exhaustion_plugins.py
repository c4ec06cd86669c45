"""Judgement of resource_exhaustion on synthetic evidence shaped like stack_evidence's (no lab needed)."""

from __future__ import annotations

from ansible_collections.octollm.remediation.plugins.filter.resource_exhaustion import FilterModule
from ansible_collections.octollm.remediation.plugins.plugin_utils import resource_exhaustion as rex

NOW = 1_800_000_000.0
SETTINGS = {"backup_dirs": ["/state/backups"], "now": NOW}


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


def evidence(*records, disks=None, images=None):
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
        }
    }


def backups(*ages_days):
    return [
        {"path": f"/state/backups/b{i}.dump", "size": 6 * 2**20, "mtime": NOW - age * 86400}
        for i, age in enumerate(ages_days)
    ]


def test_healthy_evidence_gives_only_ok():
    result = rex.diagnose(evidence(record("orchestrator"), record("redis")), SETTINGS, backups(1))
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
    settings = dict(SETTINGS, backup_dir="/state/runs/r1/backups")
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
    result = rex.diagnose(evidence(record("orchestrator"), disks=disks), SETTINGS, backups(30, 20, 8, 1))
    found = {f["check"]: f for f in result["findings"]}
    assert found["host.disk"]["status"] == "problem" and found["host.disk"]["scenario"] == "B"
    assert found["backups.retention"]["status"] == "warning"
    [act] = rex.plan(result, dict(SETTINGS, approve=True))
    assert act["destructive"] and act["status"] == "planned"
    assert act["change"]["files"] == ["/state/backups/b0.dump", "/state/backups/b1.dump", "/state/backups/b2.dump"]
    # without approval nothing goes, but the list is in the result
    assert rex.plan(result, SETTINGS)[0]["status"] == "awaiting_approval"


def test_docker_root_full_prunes_only_dangling_unused_images():
    disks = [{"path": "/var/lib/docker", "used_percent": 95.0, "free_bytes": 2**30, "total_bytes": 20 * 2**30}]
    images = {
        "reclaimable_bytes": 3 * 2**30,
        "largest": [
            {"id": "aaa", "tags": [], "dangling": True, "containers": 0, "in_use_by_project": False, "size_bytes": 1},
            {"id": "bbb", "tags": [], "dangling": True, "containers": 16, "in_use_by_project": True, "size_bytes": 1},
            {"id": "ccc", "tags": ["debian:bookworm"], "dangling": False, "containers": 0, "size_bytes": 1},
        ],
    }
    result = rex.diagnose(evidence(record("orchestrator"), disks=disks, images=images), SETTINGS)
    assert {s["id"]: s["holds"] for s in result["scenarios"]}["C"] is True
    [act] = rex.plan(result, dict(SETTINGS, approve=True))
    assert act["change"]["images"] == ["aaa"] and act["destructive"]
    assert "debian:bookworm" in act["change"]["never"] and "octollm/lab-runtime:*" in act["change"]["never"]


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


def test_prevention_and_filters():
    result = rex.prevention(
        evidence(record("a"), record("b", nano_cpus=None, log_config={"type": "json-file"})), SETTINGS, backups(40)
    )
    assert {f["check"]: f["status"] for f in result["findings"]} == {
        "prevent.containers.memory_limit": "ok",
        "prevent.containers.cpu_limit": "warning",
        "prevent.containers.log_rotation": "warning",
        "prevent.backups.retention": "warning",
    }
    filters = FilterModule().filters()
    assert {"resource_exhaustion_diagnosis", "resource_exhaustion_plan", "resource_exhaustion_prevention"} <= set(
        filters
    )
