"""high_latency's Kubernetes side: the judgement over the API emulator (kmock) seeded with lab/kubernetes, and two
runs of playbooks/run.yml with inventory/kubernetes against it and a small Prometheus stand-in (canned answers to
the role's queries, by metric name) at the port-forward's address.

Asserted against the emulator: the body, method, path and content type of every write (scenario B's ConfigMap
patch and rollout restart, scenario C's k8s_scale). PostgreSQL is unreachable in the runs (scenario A's indexes are
the Compose SQL action, tested there); no controller makes the new pods, so the verification still sees the old
figures.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from k8s_emulator import KubernetesAPIEmulator
from k8s_results import by_check, by_id, collect_evidence

pytestmark = pytest.mark.kubernetes

CONFIGMAP_PATH = "/api/v1/namespaces/octollm/configmaps/octollm-config"
ORCHESTRATOR_PATH = "/apis/apps/v1/namespaces/octollm/deployments/orchestrator"
PLANNER_PATH = "/apis/apps/v1/namespaces/octollm/deployments/planner-arm"
FAST = {"high_latency_k8s_rollout_timeout": 0}
SETTINGS = procedure_settings(  # scalable services: the role's default, in part
    "high_latency", {"scalable_services": ["orchestrator", "planner-arm", "executor-arm"]}, platform="kubernetes")
OBJECTS = {
    "high_latency_deployments": {"kind": "Deployment", "api_version": "apps/v1"},
    "high_latency_configmap": {"kind": "ConfigMap", "name": "octollm-config"},
    "high_latency_hpas": {"kind": "HorizontalPodAutoscaler", "api_version": "autoscaling/v2"},
}


def series(**values: float) -> dict[str, Any]:
    return {"error": None, "series": [{"labels": {"container": name, "service": name}, "value": value}
                                      for name, value in values.items()]}


def prometheus(cpu: dict[str, float] | None = None, p95: float = 0.4) -> dict[str, Any]:
    """Prometheus evidence in the collector's shape: CPU cores per container (relabelled to service), P95."""
    return {"ok": True, "queries": {
        "high_latency_cpu_cores": series(**(cpu or {"orchestrator": 0.2, "planner-arm": 0.1})),
        "high_latency_p95": {"error": None, "series": [
            {"labels": {"service": "orchestrator", "endpoint": "/api/v1/tasks"}, "value": p95}]},
        "high_latency_llm_p95": {"error": None, "series": []},
        "high_latency_server_mean": {"error": None, "series": []},
        "high_latency_redis_seconds_per_call": {"error": None, "series": []},
        "high_latency_memory_ratio": {"error": None, "series": []},
        "high_latency_host_memory_available": {"error": None, "series": []},
    }, "rules": {"names": ["HighRequestLatency"], "alerts": {}}}


def evidence(k8s_api: KubernetesAPIEmulator, tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    return {"prometheus": prometheus(**kwargs), **collect_evidence(k8s_api, tmp_path, OBJECTS)}


def cache_off(k8s_api: KubernetesAPIEmulator) -> None:
    configmap = k8s_api.get("v1/configmaps", "octollm-config")
    configmap["data"]["RESPONSE_CACHE_ENABLED"] = "false"
    k8s_api.seed([configmap])


def test_a_healthy_cluster_gives_no_problem_and_writes_nothing(k8s_api: KubernetesAPIEmulator,
                                                               tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import high_latency_kubernetes as hlk

    ev = evidence(k8s_api, tmp_path)
    diagnosis = hlk.diagnose(ev, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert [f["check"] for f in diagnosis["findings"] if f["status"] == "problem"] == []
    cache = found["llm.response_cache"]
    assert cache["status"] == "ok" and cache["evidence"]["file"] == "configmap/octollm/octollm-config"
    cpu = found["resources.cpu"]["evidence"]["busiest"]
    assert {r["service"]: (r["replicas"], r["limit_cores"]) for r in cpu} == {
        "orchestrator": (2, 2.0), "planner-arm": (1, 1.0)}  # Deployments' replicas x their containers' CPU limit
    assert found["k8s.hpa"]["status"] == "ok"
    assert hlk.plan(diagnosis, SETTINGS) == []
    prevention = by_check(hlk.prevention(ev, SETTINGS)["findings"])
    assert prevention["prevent.llm.response_cache"]["status"] == "ok"
    assert prevention["prevent.k8s.hpa"]["status"] == "warning"  # only the orchestrator has an HPA in the lab
    assert "planner-arm" in prevention["prevent.k8s.hpa"]["evidence"]["without_hpa"]
    assert k8s_api.writes() == []


def test_b_the_cache_switch_in_the_configmap_and_a_rollout_restart(k8s_api: KubernetesAPIEmulator,
                                                                    tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import high_latency_kubernetes as hlk

    cache_off(k8s_api)
    diagnosis = hlk.diagnose(evidence(k8s_api, tmp_path), SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["llm.response_cache"]["status"] == "problem" and found["llm.response_cache"]["scenario"] == "B"
    assert {s["id"] for s in diagnosis["scenarios"] if s["holds"]} == {"B"}
    waiting = by_id(hlk.plan(diagnosis, SETTINGS))["high_latency.B.enable_response_cache"]
    assert waiting["status"] == "awaiting_approval" and waiting["disruptive"] is True
    planned = by_id(hlk.plan(diagnosis, {**SETTINGS, "approve": True}))["high_latency.B.enable_response_cache"]
    assert planned["_apply"] == "set_configmap_and_restart"
    assert planned["change"]["data"] == {"RESPONSE_CACHE_ENABLED": "true"}
    assert planned["change"]["configmap"] == "octollm-config"
    assert planned["change"]["restart"] == "Deployment/orchestrator"

    # a literal env entry of the Deployment wins over the ConfigMap: reported, not patched
    deployment = k8s_api.get("apps/v1/deployments", "orchestrator")
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "RESPONSE_CACHE_ENABLED", "value": "false"})
    k8s_api.seed([deployment])
    cache_on = k8s_api.get("v1/configmaps", "octollm-config")
    cache_on["data"]["RESPONSE_CACHE_ENABLED"] = "true"
    k8s_api.seed([cache_on])
    actions = by_id(hlk.plan(hlk.diagnose(evidence(k8s_api, tmp_path), SETTINGS), {**SETTINGS, "approve": True}))
    assert actions["high_latency.B.report_response_cache_env"]["status"] == "report"
    assert k8s_api.writes() == []


def test_c_scales_a_saturated_deployment_without_hpa_and_reports_an_hpa_at_its_maximum(
        k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import high_latency_kubernetes as hlk

    hpa = k8s_api.get("autoscaling/v2/horizontalpodautoscalers", "orchestrator")
    hpa["status"] = {"currentReplicas": 6, "desiredReplicas": 6}
    k8s_api.seed([hpa])
    diagnosis = hlk.diagnose(evidence(k8s_api, tmp_path, cpu={"orchestrator": 1.95, "planner-arm": 0.97},
                                      p95=7.5), SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["resources.cpu"]["status"] == "problem"
    assert found["k8s.hpa"]["status"] == "problem" and found["k8s.hpa"]["observed"] == \
        "orchestrator: HPA orchestrator at 6/6"
    assert found["latency.p95"]["scenario"] == "C"
    actions = by_id(hlk.plan(diagnosis, SETTINGS))
    scale = actions["high_latency.C.scale_planner_arm"]
    assert scale["status"] == "planned" and scale["disruptive"] is False and scale["_apply"] == "scale_deployment"
    assert scale["change"] == {"service": "planner-arm", "kind": "Deployment", "name": "planner-arm",
                               "namespace": "octollm", "old": 1, "new": 2,
                               "op": "kubernetes.core.k8s_scale (spec.replicas)"}
    report = actions["high_latency.C.report_hpa_orchestrator"]
    assert report["status"] == "report" and "at its maximum" in report["outcome"]
    # at high_latency_max_replicas: no scale-out
    assert "high_latency.C.scale_planner_arm" not in by_id(hlk.plan(diagnosis, {**SETTINGS, "max_replicas": 1}))
    assert k8s_api.writes() == []


# --- two runs of the role with a Prometheus stand-in -----------------------------------------------------
@pytest.fixture
def prometheus_server() -> Iterator[dict[str, Any]]:
    """Answers the role's queries by metric name (``state['answers']``: substring -> [(labels, value)])."""
    state: dict[str, Any] = {"answers": {}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            url = urlparse(self.path)
            if url.path == "/api/v1/rules":
                data: dict[str, Any] = {"groups": [{"name": "octollm", "rules": [
                    {"name": "HighRequestLatency", "type": "alerting", "state": "inactive"}]}]}
            else:
                query = parse_qs(url.query).get("query", [""])[0]
                result = next(([{"metric": labels, "value": [0, str(value)]} for labels, value in rows]
                               for key, rows in state["answers"].items() if key in query), [])
                data = {"resultType": "vector", "result": result}
            payload = json.dumps({"status": "success", "data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()


def test_resolve_with_approval_enables_the_cache_and_scales_out(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, prometheus_server: dict[str, Any]) -> None:
    import datetime

    cache_off(k8s_api)
    prometheus_server["answers"] = {
        "container_cpu_usage_seconds_total": [({"container": "planner-arm", "service": "planner-arm"}, 0.97),
                                              ({"container": "orchestrator", "service": "orchestrator"}, 0.3)],
        "http_request_duration_seconds_bucket": [({"service": "planner-arm", "endpoint": "/execute"}, 6.2)],
    }
    before = k8s_api.get("v1/configmaps", "octollm-config")["data"]
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    result = run_k8s("high_latency", "resolve", env={"OCTOLLM_PROMETHEUS_URL": prometheus_server["url"]},
                     octollm_approve=True, **FAST)

    found = by_check(result["findings"])
    assert found["resources.cpu"]["status"] == "problem" and found["llm.response_cache"]["status"] == "problem"
    assert {s["id"] for s in result["scenarios"] if s["holds"]} >= {"B", "C"}
    actions = by_id(result["actions"])
    cache = actions["high_latency.B.enable_response_cache"]
    scale = actions["high_latency.C.scale_planner_arm"]
    assert cache["status"] == "applied", cache["outcome"]
    assert scale["status"] == "applied", scale["outcome"]
    assert "new pods not awaited" in scale["outcome"]

    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", CONFIGMAP_PATH), ("PATCH", ORCHESTRATOR_PATH), ("PATCH", PLANNER_PATH + "/scale")]
    patch, restart, scaled = writes
    assert patch.content_type in ("application/strategic-merge-patch+json", "application/merge-patch+json")
    assert set(patch.body) <= {"apiVersion", "kind", "metadata", "data"}
    assert patch.body["data"] == {"RESPONSE_CACHE_ENABLED": "true"}
    after = k8s_api.get("v1/configmaps", "octollm-config")["data"]
    assert after == {**before, "RESPONSE_CACHE_ENABLED": "true"}  # that key only
    assert restart.content_type == "application/strategic-merge-patch+json"
    stamp = restart.body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert restart.body["spec"] == {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": stamp}}}}
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert started - datetime.timedelta(seconds=5) <= when <= datetime.datetime.now(datetime.UTC)
    assert scaled.subresource == "scale"
    assert scaled.content_type == "application/strategic-merge-patch+json"
    assert scaled.body == {"kind": "Deployment", "metadata": {"name": "planner-arm", "namespace": "octollm"},
                           "spec": {"replicas": 2}}
    assert k8s_api.get("apps/v1/deployments", "planner-arm")["spec"]["replicas"] == 2
    # verification: the cache switch is on in the ConfigMap; the stand-in Prometheus still reports the CPU
    after_checks = by_check(result["verification"]["findings"])
    assert after_checks["llm.response_cache"]["status"] == "ok"


def test_resolve_without_approval_leaves_the_cache_switch_alone(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, prometheus_server: dict[str, Any]) -> None:
    cache_off(k8s_api)
    result = run_k8s("high_latency", "resolve", env={"OCTOLLM_PROMETHEUS_URL": prometheus_server["url"]}, **FAST)
    actions = by_id(result["actions"])
    assert actions["high_latency.B.enable_response_cache"]["status"] == "awaiting_approval"
    assert k8s_api.writes() == []
    assert k8s_api.get("v1/configmaps", "octollm-config")["data"]["RESPONSE_CACHE_ENABLED"] == "false"
