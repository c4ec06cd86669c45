"""`octoctl restart SERVICE` on Kubernetes (issue 19): Service Unavailable's rollout restart of the service's
workload when asked (service_unavailable_restart_services), on a healthy cluster: awaiting approval without it
(nothing written), with it exactly one strategic merge patch of the restartedAt annotation."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from k8s_emulator import KubernetesAPIEmulator

pytestmark = pytest.mark.kubernetes

NS = "/apis/apps/v1/namespaces/octollm"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ASKED = {"service_unavailable_k8s_rollout_timeout": 0, "service_unavailable_restart_services": ["judge-arm"]}


def test_a_restart_asked_for_awaits_approval_then_patches_only_its_workload(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    waiting = run_k8s("service_unavailable", "resolve", **ASKED)
    (action,) = waiting["actions"]
    assert (action["id"], action["status"]) == ("service_unavailable.A.restart_judge_arm", "awaiting_approval")
    assert action["change"]["workload"] == "Deployment/judge-arm" and action["disruptive"] is True
    assert k8s_api.writes() == []

    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    done = run_k8s("service_unavailable", "resolve", octollm_approve=True, **ASKED)
    (action,) = done["actions"]
    assert action["status"] == "applied", action
    (write,) = k8s_api.writes()
    assert (write.method, write.path) == ("PATCH", f"{NS}/deployments/judge-arm")
    assert write.content_type == "application/strategic-merge-patch+json"
    stamp = write.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert write.body["spec"] == {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert started - datetime.timedelta(seconds=5) <= when <= datetime.datetime.now(datetime.UTC)


def test_the_emergency_restart_on_kubernetes_is_a_report_and_writes_nothing(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator) -> None:
    """Not built on Kubernetes yet: even approved, a report of the order to follow, never the diagnosis' own fixes
    passed off as the emergency restart."""
    done = run_k8s("service_unavailable", "resolve", octollm_approve=True,
                   service_unavailable_emergency_restart=True)
    (action,) = done["actions"]
    assert (action["id"], action["status"]) == ("service_unavailable.E.report_kubernetes", "report")
    assert action["change"]["restart_in_order"][0] == ["postgres", "redis", "qdrant"]
    assert k8s_api.writes() == []
