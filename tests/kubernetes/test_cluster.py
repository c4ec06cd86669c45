"""The lab on a REAL Kubernetes cluster (kind, k3d, minikube): apply lab/kubernetes, wait for it, run
cache_performance through inventory/kubernetes with port-forwards, break Redis's policy and prevent it.

Marked ``cluster``: it runs only when OCTOLLM_CLUSTER_TESTS=1 and KUBECONFIG points at a cluster that can run the
image octollm/lab-runtime:dev (load it first, e.g. ``kind load docker-image octollm/lab-runtime:dev``). It was NOT
run on the machines this project is built on: no API server can run there. See README, "Kubernetes".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
NS = "octollm"


def kubectl(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    if os.environ.get("OCTOLLM_CLUSTER_TESTS") != "1" or not os.environ.get("KUBECONFIG"):
        pytest.skip("set OCTOLLM_CLUSTER_TESTS=1 and KUBECONFIG to a disposable cluster to run the cluster suite")
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    kubectl("apply", "-k", str(REPO / "lab" / "kubernetes"))
    kubectl("-n", NS, "rollout", "status", "deployment/redis", "deployment/orchestrator", "--timeout=300s",
            timeout=320)
    yield
    if os.environ.get("OCTOLLM_CLUSTER_KEEP") != "1":
        kubectl("delete", "-k", str(REPO / "lab" / "kubernetes"), "--wait=false", check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def port_forward(service: str, port: int) -> Iterator[int]:
    local = _free_port()
    proc = subprocess.Popen(["kubectl", "-n", NS, "port-forward", f"svc/{service}", f"{local}:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), timeout=1):
                break
            time.sleep(0.2)
        yield local
    finally:
        proc.terminate()
        proc.wait(10)


def run(tmp_path: Path, phase: str, env: dict[str, str], **extravars: Any) -> dict[str, Any]:
    import ansible_runner

    runner = ansible_runner.run(
        private_data_dir=str(tmp_path / f"runner-{phase}-{time.monotonic_ns()}"),
        playbook=str(REPO / "playbooks" / "run.yml"),
        inventory=str(REPO / "inventory" / "kubernetes"),
        extravars={"octollm_procedures": ["cache_performance"], "octollm_phase": phase, **extravars},
        envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), **env},
        quiet=True,
    )
    assert runner.rc == 0, runner.stdout.read()[-3000:]
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    return stats[-1]["event_data"]["artifact_data"]["octollm_report"]["cluster"]["cache_performance"]


def test_cache_performance_on_a_real_cluster(cluster: None, tmp_path: Path) -> None:
    with port_forward("redis", 6379) as redis_port, port_forward("prometheus", 9090) as prom_port, \
            port_forward("orchestrator", 8000) as orch_port:
        env = {"OCTOLLM_REDIS_PORT": str(redis_port), "OCTOLLM_PROMETHEUS_URL": f"http://127.0.0.1:{prom_port}",
               "OCTOLLM_ORCHESTRATOR_URL": f"http://127.0.0.1:{orch_port}"}
        healthy = run(tmp_path, "diagnose", env)
        found = {f["check"]: f for f in healthy["findings"]}
        assert found["k8s.redis_pods"]["status"] == "ok"
        assert found["k8s.redis_memory_limit"]["status"] == "ok"
        assert found["redis.eviction_policy"]["status"] == "ok"
        # fault: noeviction live and in the ConfigMap
        kubectl("-n", NS, "patch", "configmap", "redis-config", "--type", "merge", "-p",
                '{"data": {"redis.conf": "bind 0.0.0.0\\nport 6379\\nprotected-mode no\\nmaxmemory 64mb\\n'
                'maxmemory-policy noeviction\\nsave \\"\\"\\nappendonly no\\ndir /tmp\\n"}}')
        kubectl("-n", NS, "rollout", "restart", "deployment/redis")
        kubectl("-n", NS, "rollout", "status", "deployment/redis", "--timeout=120s", timeout=140)
    with port_forward("redis", 6379) as redis_port:
        env["OCTOLLM_REDIS_PORT"] = str(redis_port)
        fixed = run(tmp_path, "prevent", env)  # no memory pressure: prevention, not scenario A, sets the policy
        policy = {a["id"]: a for a in fixed["prevention"]["actions"]}["cache_performance.prevent.set_eviction_policy"]
        assert policy["status"] == "applied", policy["outcome"]
        conf = kubectl("-n", NS, "get", "configmap", "redis-config", "-o", "jsonpath={.data.redis\\.conf}").stdout
        assert "maxmemory-policy allkeys-lru" in conf
