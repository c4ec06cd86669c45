"""`octoctl logs SERVICE` on Kubernetes (issue 19): the service's pods by its selector, their logs through the API
(the emulator's pod log), secrets and personal data masked before --grep; only reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from k8s_emulator import KubernetesAPIEmulator

from octoctl.errors import ExitCode, OctoctlError
from octoctl.services import Stack, log_lines

pytestmark = pytest.mark.kubernetes

LOG = "\n".join([
    "INFO started with DATABASE_URL=postgresql://octollm:s3cretpass@postgres:5432/octollm",
    "INFO task done for alice@example.org",
    "ERROR llm call failed Authorization: Bearer sk-proj-abcdefghijklmnop1234",
    "INFO health ok",
])


def stack(kubeconfig: Path) -> Stack:
    return Stack(host="k8s", platform="kubernetes", project="octollm",
                 services={"orchestrator": {}, "planner-arm": {"k8s_selector": "app=planner-arm"}},
                 k8s={"namespace": "octollm", "kubeconfig": str(kubeconfig)})


def test_logs_of_the_services_pods_are_masked_then_filtered(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    pods = sorted(p["metadata"]["name"] for p in k8s_api.objects_of("v1/pods", "app=orchestrator"))
    for pod in pods:
        k8s_api.set_log(pod, LOG)
    kubeconfig = k8s_api.kubeconfig(tmp_path / "kubeconfig")
    lines = list(log_lines(stack(kubeconfig), "orchestrator", "10m", None, 100))
    assert len(lines) == 4 * len(pods)
    text = "\n".join(lines)
    for secret in ("s3cretpass", "alice@example.org", "sk-proj-abcdefghijklmnop1234"):
        assert secret not in text
    assert "[REDACTED:" in text
    expected_last = f"{pods[-1]} | INFO health ok" if len(pods) > 1 else "INFO health ok"
    assert lines[-1] == expected_last
    # --grep sees the masked line: a secret cannot be searched for
    assert list(log_lines(stack(kubeconfig), "orchestrator", None, "s3cret", None)) == []
    assert len(list(log_lines(stack(kubeconfig), "orchestrator", None, "ERROR", None))) == len(pods)
    reads = k8s_api.reads()
    assert all(any(f"/pods/{pod}/log" in read for read in reads) for pod in pods)
    assert any("sinceSeconds=600" in read and "tailLines=100" in read for read in reads)
    assert k8s_api.writes() == []


def test_a_service_without_pods_is_1_and_an_api_that_does_not_answer_is_3(
        k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    kubeconfig = k8s_api.kubeconfig(tmp_path / "kubeconfig")
    empty = stack(kubeconfig)
    empty.services["ghost"] = {"k8s_selector": "app=ghost"}
    with pytest.raises(OctoctlError) as missing:
        list(log_lines(empty, "ghost", None, None, None))
    assert missing.value.exit_code == ExitCode.HUMAN_NEEDED and "no pod" in missing.value.message
    k8s_api.stop()
    with pytest.raises(OctoctlError) as cut:
        list(log_lines(stack(kubeconfig), "orchestrator", None, None, None))
    assert cut.value.exit_code == ExitCode.ENVIRONMENT
