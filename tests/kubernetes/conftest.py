"""Fixtures of the Kubernetes tests: the Kubernetes API EMULATOR (kmock, see k8s_emulator.py) seeded with the lab's
manifests as a healthy cluster would hold them, and a runner of playbooks/run.yml with inventory/kubernetes
pointed at it. The emulator checks our API calls; it is not a cluster (no controllers, no exec, no logs).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_emulator import KubernetesAPIEmulator
from manifests import cluster_state, render

REPO = Path(__file__).resolve().parents[2]


def _install_collection_finder() -> None:
    """``ansible_collections.octollm.remediation`` importable (the plugin-level tests call the collectors and the
    judgement directly), from <repo>/.collections as tests/collection/conftest.py does."""
    link = REPO / ".collections" / "ansible_collections" / "octollm" / "remediation"
    if not link.exists():
        subprocess.run([str(REPO / "collection" / "dev-link.sh"), str(REPO / ".collections")], check=True,
                       capture_output=True)
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    _AnsibleCollectionFinder(paths=[str(REPO / ".collections")], scan_sys_paths=False)._install()


_install_collection_finder()


@pytest.fixture(scope="session")
def lab_manifests() -> list[dict[str, Any]]:
    """lab/kubernetes rendered (kubectl kustomize, or the python loader without kubectl)."""
    return render()


@pytest.fixture
def k8s_api(lab_manifests: list[dict[str, Any]]) -> Iterator[KubernetesAPIEmulator]:
    """A fresh Kubernetes API emulator holding the lab as a healthy cluster would (pods Running and Ready)."""
    emulator = KubernetesAPIEmulator().start()
    emulator.seed(cluster_state(lab_manifests))
    try:
        yield emulator
    finally:
        emulator.stop()


def inventory_env(kubeconfig: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """What inventory/kubernetes reads from the environment: the emulator's kubeconfig and context; Redis,
    Prometheus and the orchestrator at closed local ports (unreachable) unless ``env`` says otherwise."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "OCTOLLM_K8S_CONTEXT": "octollm-emulator",
        "OCTOLLM_REDIS_PORT": str(closed_port()),
        "OCTOLLM_PROMETHEUS_URL": f"http://127.0.0.1:{closed_port()}",
        "OCTOLLM_ORCHESTRATOR_URL": f"http://127.0.0.1:{closed_port()}",
        **(env or {}),
    }


def closed_port() -> int:
    """A local port nobody listens on (an unreachable Redis / Prometheus)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def run_k8s(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Run playbooks/run.yml (or ``playbook``) as octoctl does (ansible-runner) with inventory/kubernetes against
    the emulator.

    Redis, Prometheus and the orchestrator default to closed local ports (unreachable: their findings are
    ``unknown``); pass ``env`` to point them at something. Returns the RESULT of the procedure.
    """
    kubeconfig = k8s_api.kubeconfig(tmp_path / "kubeconfig")

    def run(procedure: str, phase: str, env: dict[str, str] | None = None, playbook: str = "run.yml",
            **extravars: Any) -> dict[str, Any]:
        import ansible_runner

        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        private = tmp_path / f"runner-{phase}-{len(list(tmp_path.iterdir()))}"
        private.mkdir()
        envvars = {"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), **inventory_env(kubeconfig, env)}
        runner = ansible_runner.run(
            private_data_dir=str(private),
            playbook=str(REPO / "playbooks" / playbook),
            inventory=str(REPO / "inventory" / "kubernetes"),
            # no controller behind the emulator: nothing may wait for a rollout or for Redis to evict
            extravars={"octollm_procedures": [procedure], "octollm_phase": phase,
                       "cache_performance_k8s_rollout_timeout": 0, "cache_performance_eviction_wait_retries": 1,
                       **extravars},
            envvars=envvars,
            quiet=True,
        )
        assert runner.rc == 0, f"{runner.status}: {runner.stdout.read()[-4000:]}"
        stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
        data = stats[-1]["event_data"].get("artifact_data") or {}
        return data["octollm_report"]["cluster"][procedure]

    return run



# The Redis password of lab/kubernetes' Secret (dev value): a Redis stand-in for the port-forward uses it.
LAB_REDIS_PASSWORD = "octollm-redis-dev"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[int]:
    """A local redis-server standing in for `kubectl port-forward svc/redis` (the Service address the inventory
    gives); its port. Skips where redis-server is not installed (the API-side tests still run without it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("[needs-install] redis-server is not installed: the Redis side of the Kubernetes tests cannot run")
    port = closed_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", LAB_REDIS_PASSWORD,
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port, password=LAB_REDIS_PASSWORD)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis_client(redis_server: int) -> Iterator[Any]:
    """A client of that Redis, emptied and reset to the lab's settings before the test."""
    import redis

    client = redis.Redis(port=redis_server, password=LAB_REDIS_PASSWORD)
    client.flushall()
    client.config_set("maxmemory", "64mb")
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_resetstat()
    client.slowlog_reset()
    yield client
