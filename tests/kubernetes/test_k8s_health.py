"""`octoctl health` on Kubernetes (issue 19), end to end against the API emulator: a row per service of
inventory/kubernetes from its pods (state, restarts) and, through resource_exhaustion's own reads of the metrics
API, memory and CPU against the workloads' limits, judged with resource_exhaustion's thresholds; nothing written.
Prometheus and PostgreSQL are closed ports here: their metrics are unknown, so the exit status is 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, closed_port, inventory_env
from k8s_emulator import KubernetesAPIEmulator

pytestmark = pytest.mark.kubernetes


def pod_name(k8s_api: KubernetesAPIEmulator, app: str) -> str:
    return str(k8s_api.objects_of("v1/pods", f"app={app}")[0]["metadata"]["name"])


def test_health_of_a_cluster_from_pods_and_the_metrics_api(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    # executor-arm at 95% of its 1 CPU, retriever-arm at 245Mi of its 256Mi: both past resource_exhaustion's limits
    k8s_api.serve_metrics({
        pod_name(k8s_api, "executor-arm"): {"executor-arm": {"cpu": "950m", "memory": "120Mi"}},
        pod_name(k8s_api, "retriever-arm"): {"retriever-arm": {"cpu": "100m", "memory": "245Mi"}},
        pod_name(k8s_api, "planner-arm"): {"planner-arm": {"cpu": "10m", "memory": "80Mi"}},
    })
    env = {**os.environ, **inventory_env(k8s_api.kubeconfig(tmp_path / "kubeconfig")),
           "OCTOLLM_POSTGRES_PORT": str(closed_port()), "OCTOCTL_STATE_DIR": str(tmp_path / "state"),
           "OCTOCTL_COLLECTIONS_PATH": str(REPO / ".collections")}
    proc = subprocess.run([str(Path(sys.executable).parent / "octoctl"), "health", "-i",
                           str(REPO / "inventory" / "kubernetes"), "--format", "json"],
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    (target,) = json.loads(proc.stdout)["targets"]
    rows = {row["service"]: row for row in target["services"]}
    services = yaml.safe_load((REPO / "inventory" / "kubernetes" / "group_vars" / "octollm.yml").read_text())
    assert sorted(rows) == sorted(services["octollm_services"])
    assert rows["planner-arm"]["state"] == "ready" and rows["planner-arm"]["restarts"] == 0
    assert rows["planner-arm"]["cpu_percent"] == 1.0 and rows["planner-arm"]["memory_percent"] is not None
    assert rows["executor-arm"]["cpu_percent"] == 95.0
    assert any("CPU 95%" in note for note in rows["executor-arm"]["notes"])
    assert rows["retriever-arm"]["memory_percent"] == pytest.approx(95.7, abs=0.1)
    assert any("memory" in note for note in rows["retriever-arm"]["notes"])
    assert rows["postgres"]["db_connections"] == "unknown"
    assert k8s_api.writes() == []
