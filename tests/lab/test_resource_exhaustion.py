"""The resource_exhaustion role against the running lab, through ansible-runner and playbooks/run.yml (what octoctl
runs), reading the RESULT from the playbook_on_stats event's artifact_data. Faults: redis-bloat (A); C (the Docker root
disk full of unused data) with lowered disk thresholds, applied to a container and an image the test plants (nothing
else of the shared lab can be pruned: the prune is limited to the stack's own unused data). disk-fill (B) and
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


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check).stdout.strip()


def test_full_docker_disk_prunes_only_the_stacks_own_stopped_containers_and_unused_images(
    healthy_lab: Any, tmp_path: Path
) -> None:
    """Scenario C on the real Docker data: with the disk thresholds under today's use the Docker root disk counts as
    full. Planted: a stopped one-off container of the project (`docker compose run` labels), an unused image of the
    project (dangling, the project's label) and a stopped container of no project. The plan lists the first two by
    name and id, waits for approval, and the approved prune removes exactly them: the other container, every image
    in use and the protected ones stay (the prune once removed every stopped container on the host)."""
    import secrets

    thresholds = {"resource_exhaustion_disk_warn_percent": 1, "resource_exhaustion_disk_high_percent": 2}
    suffix = secrets.token_hex(4)
    mine, foreign = f"octollm-prune-probe-run-{suffix}", f"octoctl-test-foreign-{suffix}"
    labels = ["--label", "com.docker.compose.project=octollm", "--label", "com.docker.compose.service=prune-probe",
              "--label", "com.docker.compose.oneoff=True"]
    image = None
    try:
        docker("create", "--name", foreign, "octollm/lab-runtime:dev", "true")
        mine_id = docker("create", "--name", mine, *labels, "octollm/lab-runtime:dev", "true")[:12]
        image = docker("commit", "--change", "LABEL com.docker.compose.project=octollm", foreign).split(":")[-1][:12]
        images = sorted(docker("images", "-a", "-q", "--no-trunc").split())

        waiting = run(tmp_path, "resolve", **thresholds)
        found = by_check(waiting["findings"])
        assert found["host.disk"]["status"] == "problem" and found["host.disk"]["scenario"] == "C"
        assert found["docker.disk_usage"]["status"] == "problem"
        [prune] = [a for a in waiting["actions"] if a["scenario"] == "C"]
        assert prune["id"] == "resource_exhaustion.C.prune_docker_data" and prune["status"] == "awaiting_approval"
        assert prune["destructive"] is True and "octollm/lab-runtime:*" in prune["change"]["never"]
        assert [(c["name"], c["id"], c["state"]) for c in prune["change"]["containers"]] == [(mine, mine_id, "created")]
        assert [i["id"] for i in prune["change"]["images"]] == [image]
        assert mine in prune["outcome"] and image in prune["outcome"]
        assert docker("ps", "-a", "-q", "--filter", f"name={mine}")  # nothing was removed without approval

        fixed = run(tmp_path, "resolve", octollm_approve=True, octollm_scenario="C", **thresholds)
        [applied] = [a for a in fixed["actions"] if a["scenario"] == "C"]
        assert applied["status"] == "applied", applied["outcome"]
        assert applied["change"]["removed_containers"] == [mine] and applied["change"]["removed_images"] == [image]
        assert not docker("ps", "-a", "-q", "--filter", f"name={mine}")
        assert docker("ps", "-a", "-q", "--filter", f"name={foreign}")  # another project's container stays
        left = sorted(docker("images", "-a", "-q", "--no-trunc").split())
        assert [i for i in images if i not in left] == [next(i for i in images if i.split(":")[-1].startswith(image))]
    finally:
        docker("rm", "-f", mine, foreign, check=False)
        if image:
            docker("image", "rm", image, check=False)
