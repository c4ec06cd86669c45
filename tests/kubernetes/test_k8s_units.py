"""The pieces under the Kubernetes side: the emulator's selector extension (the roles rely on it, so it must
select as the API server does) and plugin_utils/kubernetes.py (pod states, quantities, config edits)."""

from __future__ import annotations

import pytest
from k8s_emulator import field_selector_matches, label_selector_matches

pytestmark = pytest.mark.kubernetes


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("app=redis", {"app": "redis"}, True),
    ("app==redis", {"app": "postgres"}, False),
    ("app!=redis", {"app": "postgres"}, True),
    ("app-type=arm,app=coder-arm", {"app": "coder-arm", "app-type": "arm"}, True),
    ("app in (redis, orchestrator)", {"app": "orchestrator"}, True),
    ("app notin (redis,orchestrator),app-type", {"app": "coder-arm", "app-type": "arm"}, True),
    ("app-type", {"app": "redis"}, False),
    ("!app-type", {"app": "redis"}, True),
])
def test_label_selectors_select_as_the_api_server_does(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert label_selector_matches(selector, labels) is expected


def test_field_selectors() -> None:
    event = {"type": "Warning", "involvedObject": {"kind": "Pod", "name": "redis-0"}}
    assert field_selector_matches("type=Warning,involvedObject.name=redis-0", event)
    assert not field_selector_matches("type!=Warning", event)
    assert not field_selector_matches("involvedObject.name=redis-1", event)


def test_pod_summary_and_trouble() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s

    pod = {
        "metadata": {"name": "redis-1", "labels": {"app": "redis", "pod-template-hash": "abc"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "redis", "resources": {"limits": {"memory": "256Mi"}},
                                                       "env": [{"name": "REDIS_PASSWORD", "value": "secret"}]}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                   "containerStatuses": [{"name": "redis", "ready": False, "restartCount": 3,
                                          "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                          "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]},
    }
    summary = k8s.pod_summary(pod)
    assert summary["limits"] == {"redis": {"memory": "256Mi", "memory_bytes": 268435456}}
    assert "secret" not in repr(summary)  # never the environment
    assert k8s.oom_killed(summary) and k8s.oom_killed(summary, "redis") and not k8s.oom_killed(summary, "other")
    assert k8s.pod_trouble(summary) == ["Running, not ready", "redis: CrashLoopBackOff",
                                        "redis: last terminated OOMKilled (3 restarts)"]
    assert k8s.pods_summary([pod], "postgres") == []


def test_quantities_config_edits_and_restart_patch() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s

    assert k8s.quantity_bytes("256Mi") == 268435456 and k8s.quantity_bytes("1G") == 10**9
    assert k8s.quantity_bytes("512") == 512 and k8s.quantity_bytes("lots") is None and k8s.quantity_bytes(None) is None
    text = "bind 0.0.0.0\nmaxmemory 64mb\n# maxmemory-policy old comment\nmaxmemory-policy noeviction\nrequirepass x\n"
    assert k8s.config_set(text, "maxmemory-policy", "allkeys-lru") == text.replace("noeviction", "allkeys-lru")
    assert k8s.config_set("port 6379", "maxmemory", "1mb") == "port 6379\nmaxmemory 1mb\n"
    assert k8s.config_set("maxmemory 1mb\nMAXMEMORY 2mb\n", "maxmemory", "3mb") == "maxmemory 3mb\n"
    assert k8s.config_directives(text) == {"bind": "0.0.0.0", "maxmemory": "64mb", "maxmemory-policy": "noeviction"}
    stamp = {"kubectl.kubernetes.io/restartedAt": "2026-11-28T10:00:00Z"}
    assert k8s.restart_patch("2026-11-28T10:00:00Z") == {"spec": {"template": {"metadata": {"annotations": stamp}}}}
    assert k8s.error_kind("403 Forbidden: pods is forbidden") == "auth"
    assert k8s.error_kind("Max retries exceeded ... Connection refused") == "unreachable"
