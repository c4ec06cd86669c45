"""The resource_exhaustion role against the running lab, through ansible-runner and playbooks/run.yml (what octoctl
runs), reading the RESULT from the playbook_on_stats event's artifact_data. Faults: redis-bloat (A); C (the Docker root
disk full of unused data) with lowered disk thresholds, planned but not applied on the shared lab. disk-fill (B) and
cpu-hog (A) are the Molecule scenarios molecule/resource_exhaustion_disk_compose and resource_exhaustion_cpu_compose
(tests/lab/test_molecule.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from playbook_runs import by_check, run_procedure

pytestmark = pytest.mark.lab

PROCEDURE = "resource_exhaustion"


def run(tmp_path: Path, phase: str, **extravars: Any) -> dict[str, Any]:
    return run_procedure(PROCEDURE, tmp_path, phase, **extravars)


def container_of(service: str) -> str:
    """The name of the service's one container (a scale-out and back may have left it at another index)."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "--filter",
            "label=com.docker.compose.project=octollm",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    names = out.stdout.split()
    assert len(names) == 1, names
    return names[0]


def started(name: str) -> str:
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", name], capture_output=True, text=True)
    return out.stdout.strip()


def test_healthy_lab_has_no_finding(healthy_lab: Any, tmp_path: Path) -> None:
    result = run(tmp_path, "diagnose")
    assert result["procedure"] == PROCEDURE and result["platform"] == "compose"
    not_ok = {f["check"]: (f["status"], f["observed"]) for f in result["findings"] if f["status"] != "ok"}
    assert not_ok == {}
    assert not any(scenario["holds"] for scenario in result["scenarios"])
    assert result["escalation"]["level"] is None
    found = by_check(result["findings"])
    assert found["containers.cpu"]["evidence"]["top"], "the docker stats equivalent listed no consumer"
    assert any(d["path"] == str(healthy_lab.state / "backups") for d in found["host.disk"]["evidence"]["disks"])


def test_diagnosis_changes_nothing(healthy_lab: Any, tmp_path: Path) -> None:
    backups = sorted(p.name for p in (healthy_lab.state / "backups").iterdir())
    listing = ["docker", "images", "-q", "--no-trunc"]
    images = sorted(subprocess.run(listing, capture_output=True, text=True).stdout.split())
    before = started(container_of("executor-arm"))
    run(tmp_path, "diagnose")
    assert sorted(p.name for p in (healthy_lab.state / "backups").iterdir()) == backups
    assert sorted(subprocess.run(listing, capture_output=True, text=True).stdout.split()) == images
    assert started(container_of("executor-arm")) == before


def test_cache_at_its_memory_limit_is_flushed_only_after_a_verified_backup(healthy_lab: Any, tmp_path: Path) -> None:
    """Redis at 93% of its container's memory limit: the seed's FLUSHDB, with approval and a verified RDB backup
    first (a restart would drop the same data with no backup)."""
    import hashlib

    from octollm_labctl import faults
    from octollm_labctl.faults.common import redis_client
    from octollm_labctl.faults.redis import BLOAT_PREFIX

    record = faults.inject(healthy_lab, "redis-bloat")
    client = redis_client(healthy_lab)
    waiting = run(tmp_path, "resolve")
    memory = by_check(waiting["findings"])["containers.memory"]
    assert memory["status"] == "problem" and memory["scenario"] == "A"
    assert memory["evidence"]["top"][0]["service"] == "redis"
    assert [(a["id"], a["status"], a["destructive"]) for a in waiting["actions"]] == [
        ("resource_exhaustion.A.flush_cache_redis", "awaiting_approval", True)
    ]
    bloat = f"{BLOAT_PREFIX}*"
    assert sum(1 for _ in client.scan_iter(match=bloat, count=1000)) == record["filled_keys"]  # nothing flushed

    backups = tmp_path / "rdb"
    fixed = run(tmp_path, "resolve", octollm_approve=True, resource_exhaustion_cache_backup_dir=str(backups))
    [flush] = fixed["actions"]
    assert (flush["id"], flush["status"]) == ("resource_exhaustion.A.flush_cache_redis", "applied"), flush["outcome"]
    backup = Path(flush["change"]["backup"])
    assert backup.parent == backups and backup.stat().st_size == flush["change"]["bytes"] > 0
    assert hashlib.sha256(backup.read_bytes()).hexdigest() == flush["change"]["sha256"]
    assert flush["change"]["keys_flushed"] >= record["filled_keys"]
    assert not any(True for _ in client.scan_iter(match=bloat, count=1000))
    assert by_check(fixed["verification"]["findings"])["containers.memory"]["status"] == "ok"
    assert fixed["verification"]["healthy"] is True
    assert run(tmp_path, "resolve", octollm_approve=True)["actions"] == []
    faults.heal(healthy_lab, "redis-bloat")


def test_full_docker_disk_plans_a_prune_that_spares_the_deployments_images(healthy_lab: Any, tmp_path: Path) -> None:
    """Scenario C on the real Docker data: with the disk thresholds under today's use the Docker root disk counts as
    full; the plan lists the dangling images to go, never an image a container uses or a tagged (protected) one, and
    waits for approval; nothing is pruned (the lab's images cannot be pulled again, and the lab is shared)."""
    thresholds = {"resource_exhaustion_disk_warn_percent": 1, "resource_exhaustion_disk_high_percent": 2}
    images = sorted(
        subprocess.run(["docker", "images", "-a", "-q", "--no-trunc"], capture_output=True, text=True).stdout.split()
    )
    waiting = run(tmp_path, "resolve", **thresholds)
    found = by_check(waiting["findings"])
    assert found["host.disk"]["status"] == "problem" and found["host.disk"]["scenario"] == "C"
    assert found["docker.disk_usage"]["status"] == "problem"
    [prune] = [a for a in waiting["actions"] if a["scenario"] == "C"]
    assert prune["id"] == "resource_exhaustion.C.prune_docker_data" and prune["status"] == "awaiting_approval"
    assert prune["destructive"] is True and "octollm/lab-runtime:*" in prune["change"]["never"]
    listed = set(prune["change"]["images"])
    in_use = subprocess.run(
        ["docker", "ps", "-a", "-q", "--no-trunc"], capture_output=True, text=True, check=True
    ).stdout.split()
    used = {
        i.replace("sha256:", "")[:12]
        for i in subprocess.run(
            ["docker", "inspect", "-f", "{{.Image}}", *in_use], capture_output=True, text=True, check=True
        ).stdout.split()
    }
    tagged = set(
        subprocess.run(
            ["docker", "images", "-q", "--filter", "dangling=false"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not listed & used and not listed & tagged
    dangling = set(
        subprocess.run(
            ["docker", "images", "-q", "--filter", "dangling=true"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert listed <= dangling
    assert len(listed) + prune["change"]["unlisted_dangling_images"] >= len(dangling - used)
    dry = run(tmp_path, "resolve", octollm_dry_run=True, octollm_approve=True, **thresholds)
    assert [a["status"] for a in dry["actions"] if a["scenario"] == "C"] == ["planned"]
    after = subprocess.run(["docker", "images", "-a", "-q", "--no-trunc"], capture_output=True, text=True).stdout
    assert sorted(after.split()) == images  # nothing was pruned (`docker images` has no stable order)
