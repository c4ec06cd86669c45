"""cache_performance's Kubernetes side, end to end: playbooks/run.yml with inventory/kubernetes against the
Kubernetes API EMULATOR (kmock) seeded with lab/kubernetes as a cluster would hold it, and a local redis-server
standing in for the port-forward to svc/redis. Asserts the findings and the body of every API write.

What the emulator cannot show: controllers (a restartedAt patch makes no new pods here, so the verification still
sees the old OOMKilled pod), strategic merge semantics, RBAC. Those need the `cluster` suite.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from k8s_emulator import KubernetesAPIEmulator, Write
from k8s_results import by_check, by_id, collect_evidence

pytestmark = pytest.mark.kubernetes

ARMS = ["planner-arm", "executor-arm", "coder-arm", "judge-arm", "guardian-arm", "retriever-arm"]
CONFIGMAP_PATH = "/api/v1/namespaces/octollm/configmaps/redis-config"
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/octollm/deployments/redis"
FAST = {"cache_performance_redis_sample_seconds": 0.3}


def redis_conf(k8s_api: KubernetesAPIEmulator) -> str:
    return str(k8s_api.get("v1/configmaps", "redis-config")["data"]["redis.conf"])


def warm(client: Any) -> None:
    """The keys a warmed cache holds (scenario C's check)."""
    for arm in ARMS:
        client.set(f"arm:capability:{arm}", "{}", ex=3600)
    client.set("entity:1", "{}", ex=3600)


def break_redis_on_kubernetes(k8s_api: KubernetesAPIEmulator, client: Any) -> str:
    """The fault: the ConfigMap says noeviction and a maxmemory (300mb) over 75% of the 256Mi limit; the pod was
    OOM-killed and is in CrashLoopBackOff; the running Redis (the port-forward) is full under noeviction."""
    conf = redis_conf(k8s_api).replace("maxmemory 64mb", "maxmemory 300mb")
    conf = conf.replace("maxmemory-policy allkeys-lru", "maxmemory-policy noeviction")
    configmap = k8s_api.get("v1/configmaps", "redis-config")
    configmap["data"]["redis.conf"] = conf
    pod = k8s_api.objects_of("v1/pods", "app=redis")[0]
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}]
    redis_status = pod["status"]["containerStatuses"][0]
    redis_status.update(ready=False, restartCount=4,
                        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting"}},
                        lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                                  "finishedAt": "2026-11-28T09:58:00Z"}})
    name = pod["metadata"]["name"]
    events = [
        {"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "BackOff", "count": 7,
         "metadata": {"name": f"{name}.backoff"}, "involvedObject": {"kind": "Pod", "name": name},
         "message": "Back-off restarting failed container redis", "lastTimestamp": "2026-11-28T09:59:00Z"},
        {"apiVersion": "v1", "kind": "Event", "type": "Normal", "reason": "Pulled", "count": 5,
         "metadata": {"name": f"{name}.pulled"}, "involvedObject": {"kind": "Pod", "name": name},
         "message": "Container image already present", "lastTimestamp": "2026-11-28T09:59:00Z"},
    ]
    k8s_api.seed([configmap, pod, *events])
    warm(client)
    client.config_set("maxmemory", "2mb")
    client.config_set("maxmemory-policy", "noeviction")
    value = "x" * 2048
    for index in range(4000):  # fill with cache-shaped keys until Redis refuses writes
        try:
            client.set(f"llm:{index:040x}", value)
        except Exception:  # OOM command not allowed
            break
    # full (used >= 90% of maxmemory) but not over it: the new policy then has nothing to evict at once, so
    # scenario A plans no re-warm (that path is the Compose plan's, tested on the lab)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used + 32 * 1024))
    return name


def assert_configmap_patch(write: Write, before: str, key: str, value: str) -> str:
    """A ConfigMap patch that changes exactly one directive of redis.conf; returns the new text."""
    assert write.method == "PATCH" and write.path == CONFIGMAP_PATH
    assert write.content_type in ("application/strategic-merge-patch+json", "application/merge-patch+json")
    assert set(write.body) <= {"apiVersion", "kind", "metadata", "data"}
    assert list(write.body["data"]) == ["redis.conf"]
    new = write.body["data"]["redis.conf"]
    changed = [(a, b) for a, b in zip(before.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][1] == f"{key} {value}", changed
    return str(new)


def collect(k8s_api: KubernetesAPIEmulator, redis_server: int, tmp_path: Any) -> dict[str, Any]:
    """The evidence that the role's one gather task collects (stack_evidence's collectors, called directly)."""
    objects = {
        "cache_performance_pods": {"kind": "Pod", "label_selector": "app=redis"},
        "cache_performance_configmap": {"kind": "ConfigMap", "name": "redis-config"},
        "cache_performance_workload": {"kind": "Deployment", "api_version": "apps/v1", "name": "redis"},
        "cache_performance_events": {"kind": "Event", "field_selector": "type=Warning"},
    }
    redis = {"host": "127.0.0.1", "port": redis_server, "password": "octollm-redis-dev", "sample_seconds": 0.2,
             "config": ["maxmemory", "maxmemory-policy"], "slowlog": 10, "scan_count": 200,
             "patterns": ["entity:*"], "exists": [f"arm:capability:{arm}" for arm in ARMS]}
    return collect_evidence(k8s_api, tmp_path, objects, redis=redis)


SETTINGS = procedure_settings(
    "cache_performance",
    {"warm_keys": [f"arm:capability:{arm}" for arm in ARMS], "warm_patterns": {"entity:*": 1}},
    platform="kubernetes",
)


def test_a_healthy_cluster_gives_ok_kubernetes_findings(k8s_api: KubernetesAPIEmulator, redis_client: Any,
                                                          redis_server: int, tmp_path: Any) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import cache_performance_kubernetes as cpk

    warm(redis_client)
    evidence = collect(k8s_api, redis_server, tmp_path)
    assert evidence["kubernetes"]["ok"] and evidence["redis"]["ok"]
    found = by_check(cpk.diagnose(evidence, SETTINGS)["findings"])
    assert found["k8s.redis_pods"]["status"] == "ok" and found["k8s.redis_pods"]["observed"] == "1/1 ready"
    assert found["k8s.redis_memory_limit"]["status"] == "ok"
    assert found["k8s.redis_memory_limit"]["evidence"]["limit"] == 256 * 1024 * 1024
    policy = found["redis.eviction_policy"]
    assert policy["status"] == "ok" and policy["evidence"]["persisted"] == "allkeys-lru"  # read from the ConfigMap
    assert policy["evidence"]["config_file"] == "configmap/octollm/redis-config:redis.conf"
    assert found["cache.warm_keys"]["status"] == "ok"
    assert k8s_api.writes() == []
    prevention = by_check(cpk.prevention(evidence, SETTINGS)["findings"])
    assert prevention["prevent.k8s.redis_memory_limit"]["status"] == "ok"
    assert prevention["prevent.k8s.redis_probes"]["status"] == "ok"


def test_without_approval_the_restart_waits(k8s_api: KubernetesAPIEmulator, redis_client: Any, redis_server: int,
                                            tmp_path: Any) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import cache_performance_kubernetes as cpk

    break_redis_on_kubernetes(k8s_api, redis_client)
    diagnosis = cpk.diagnose(collect(k8s_api, redis_server, tmp_path), SETTINGS)
    planned = {a["id"]: a for a in cpk.plan(diagnosis, dict(SETTINGS, approve=False))}
    assert planned["cache_performance.A.set_eviction_policy"]["status"] == "planned"  # not disruptive
    fit = planned["cache_performance.A.fit_maxmemory"]
    assert fit["status"] == "awaiting_approval" and fit["disruptive"] is True
    assert fit["change"]["new"] == "192mb" and fit["change"]["restart"] == "Deployment/redis"
    approved = {a["id"]: a for a in cpk.plan(diagnosis, dict(SETTINGS, approve=True))}
    assert approved["cache_performance.A.fit_maxmemory"]["status"] == "planned"


def test_an_api_that_refuses_or_is_gone_is_evidence(k8s_api: KubernetesAPIEmulator, tmp_path: Any) -> None:
    """403 on one read: that read is `auth`, the others return; no API at all: the kind is `unreachable` and the
    Kubernetes findings are `unknown` (octoctl maps both to exit status 3)."""
    from ansible_collections.octollm.remediation.plugins.module_utils.collectors import run_all
    from ansible_collections.octollm.remediation.plugins.plugin_utils import cache_performance_kubernetes as cpk
    from kmock import KubernetesError, resource

    k8s_api.handler[resource("v1/pods")] << KubernetesError(status=403, reason="Forbidden", message="pods forbidden")
    kubeconfig = str(k8s_api.kubeconfig(tmp_path / "kubeconfig"))
    objects = {"cache_performance_pods": {"kind": "Pod", "label_selector": "app=redis"},
               "cache_performance_configmap": {"kind": "ConfigMap", "name": "redis-config"}}
    evidence = run_all({"kubernetes": {"kubeconfig": kubeconfig, "objects": objects}}, 20)
    reads = evidence["kubernetes"]["objects"]
    assert evidence["kubernetes"]["ok"] is True
    assert reads["cache_performance_pods"]["error"]["kind"] == "auth"
    assert reads["cache_performance_configmap"]["items"][0]["metadata"]["name"] == "redis-config"
    assert by_check(cpk.diagnose(evidence, SETTINGS)["findings"])["k8s.redis_pods"]["error"]["kind"] == "auth"

    gone = tmp_path / "gone"
    gone.write_text((tmp_path / "kubeconfig").read_text().replace(k8s_api.url, "http://127.0.0.1:9"))
    evidence = run_all({"kubernetes": {"kubeconfig": str(gone), "objects": objects, "timeout": 2}}, 20)
    assert evidence["kubernetes"]["ok"] is False and evidence["kubernetes"]["error"]["kind"] == "unreachable"
    found = by_check(cpk.diagnose(evidence, SETTINGS)["findings"])
    assert found["k8s.redis_pods"]["status"] == "unknown"
    assert found["k8s.redis_pods"]["error"]["kind"] == "unreachable"


def test_octoctl_diagnoses_a_broken_redis_on_kubernetes_reading_only(
        k8s_api: KubernetesAPIEmulator, redis_client: Any, redis_server: int, tmp_path: Any) -> None:
    """octoctl, unchanged, with inventory/kubernetes (the CLI as a user runs it)."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO, inventory_env

    pod = break_redis_on_kubernetes(k8s_api, redis_client)
    env = {**os.environ, **inventory_env(k8s_api.kubeconfig(tmp_path / "kubeconfig"),
                                         {"OCTOLLM_REDIS_PORT": str(redis_server)}),
           "OCTOCTL_STATE_DIR": str(tmp_path / "octoctl"), "OCTOCTL_COLLECTIONS_PATH": str(REPO / ".collections"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(Path(sys.executable).parent / "octoctl"), "diagnose", "-i", str(REPO / "inventory"
                           / "kubernetes"), "--format", "json", "cache_performance"],
                          capture_output=True, text=True, env=env, timeout=300,
                          input="", cwd=tmp_path)
    # exit 1: a human is needed (the restart awaits approval; problems outrank Prometheus being unreachable)
    assert done.returncode == 1, done.stderr[-2000:]
    for secret in ("octollm-redis-dev", "octollm-lab-dev", "octollm-lab-admin-dev", "sk-lab-dev"):  # the Secret's
        assert secret not in done.stdout + done.stderr
    report = json.loads(done.stdout)
    result = report["targets"][0]["procedures"][0]
    assert report["targets"][0]["target"] == "cluster"
    assert result["platform"] == "kubernetes" and result["phase"] == "diagnose"

    found = by_check(result["findings"])
    pods = found["k8s.redis_pods"]
    assert pods["status"] == "problem" and pods["scenario"] == "A"
    assert "CrashLoopBackOff" in pods["observed"] and "OOMKilled" in pods["observed"]
    container = pods["evidence"]["pods"][0]["containers"][0]
    assert container["last_terminated"] == {"reason": "OOMKilled", "exit_code": 137,
                                            "finished_at": "2026-11-28T09:58:00Z"}
    assert container["restarts"] == 4
    assert [(e["reason"], e["object"]) for e in pods["evidence"]["events"]] == [("BackOff", f"Pod/{pod}")]
    limit = found["k8s.redis_memory_limit"]
    assert limit["status"] == "problem" and limit["scenario"] == "A"
    assert limit["evidence"]["maxmemory_persisted"] == 300 * 1024 * 1024
    assert limit["evidence"]["maxmemory_live"] == int(redis_client.config_get("maxmemory")["maxmemory"])
    assert limit["evidence"]["target"] == "192mb"  # 75% of 256Mi
    policy = found["redis.eviction_policy"]
    assert policy["status"] == "problem" and policy["observed"] == "noeviction"
    assert policy["evidence"]["persisted"] == "noeviction"  # from the ConfigMap
    assert {s["id"]: s["holds"] for s in result["scenarios"]}["A"] is True
    assert result["escalation"]["level"] == "L1"

    assert k8s_api.writes() == []  # a diagnosis changes nothing
    assert redis_client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    reads = k8s_api.reads()
    assert "/api/v1/namespaces/octollm/pods?labelSelector=app%3Dredis" in reads
    assert "/api/v1/namespaces/octollm/events?fieldSelector=type%3DWarning" in reads
    assert "/api/v1/namespaces/octollm/secrets/octollm-secrets" in reads  # the inventory reads the Redis password


def test_resolve_with_approval_fits_maxmemory_and_rolls_redis(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, redis_client: Any, redis_server: int) -> None:
    break_redis_on_kubernetes(k8s_api, redis_client)
    before = redis_conf(k8s_api)
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    result = run_k8s("cache_performance", "resolve", env={"OCTOLLM_REDIS_PORT": str(redis_server)},
                     octollm_approve=True, **FAST)

    planned = by_id(result["actions"])
    assert planned["cache_performance.A.set_eviction_policy"]["status"] == "applied"
    assert planned["cache_performance.A.set_eviction_policy"]["change"]["file"] == \
        "configmap/octollm/redis-config:redis.conf"
    fit = planned["cache_performance.A.fit_maxmemory"]
    assert fit["status"] == "applied", fit["outcome"]
    assert "rollout not awaited" in fit["outcome"]  # no controller behind the emulator
    # no orchestrator answers here: the re-warm fails, and its outcome names the step and the error
    rewarm = planned["cache_performance.A.rewarm_after_eviction"]
    assert rewarm["status"] == "failed"
    assert rewarm["outcome"].startswith('failed at "POST the orchestrator\'s cache warming endpoint": ')

    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", CONFIGMAP_PATH), ("PATCH", CONFIGMAP_PATH), ("PATCH", DEPLOYMENT_PATH)]
    middle = assert_configmap_patch(writes[0], before, "maxmemory-policy", "allkeys-lru")
    assert_configmap_patch(writes[1], middle, "maxmemory", "192mb")
    assert redis_client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}  # live, too
    restart = writes[2]
    assert restart.content_type == "application/strategic-merge-patch+json"
    assert restart.body["spec"] == {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": restart.body["spec"]["template"]["metadata"]["annotations"][
            "kubectl.kubernetes.io/restartedAt"]}}}}
    assert set(restart.body) <= {"apiVersion", "kind", "metadata", "spec"}
    stamp = restart.body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert started - datetime.timedelta(seconds=5) <= when <= datetime.datetime.now(datetime.UTC)
    # the outcome names the timestamp written and why the rollout was not awaited
    assert fit["outcome"].endswith(f"; rollout restart of Deployment/redis at {stamp}; "
                                   "rollout not awaited (cache_performance_k8s_rollout_timeout is 0)"), fit["outcome"]
    deployment = k8s_api.get("apps/v1/deployments", "redis")
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"kubectl.kubernetes.io/restartedAt": stamp}
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "256Mi"

    verification = by_check(result["verification"]["findings"])
    assert verification["k8s.redis_memory_limit"]["status"] == "ok"  # the ConfigMap now fits the limit
    assert verification["redis.eviction_policy"]["status"] == "ok"
    # no controller replaced the OOM-killed pod: the emulator still serves it, so the problem is reported as left
    assert verification["k8s.redis_pods"]["status"] == "problem"
    assert result["verification"]["healthy"] is False


def test_prevent_persists_the_policy_in_the_configmap_and_flags_missing_probes(
        run_k8s: Any, k8s_api: KubernetesAPIEmulator, redis_client: Any, redis_server: int) -> None:
    warm(redis_client)
    configmap = k8s_api.get("v1/configmaps", "redis-config")
    configmap["data"]["redis.conf"] = configmap["data"]["redis.conf"].replace("maxmemory-policy allkeys-lru\n", "")
    deployment = k8s_api.get("apps/v1/deployments", "redis")
    del deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    k8s_api.seed([configmap, deployment])
    before = redis_conf(k8s_api)

    result = run_k8s("cache_performance", "prevent", env={"OCTOLLM_REDIS_PORT": str(redis_server)}, **FAST)
    before_checks = by_check(result["prevention"]["findings_before"])
    assert before_checks["prevent.redis.eviction_policy"]["status"] == "problem"
    assert before_checks["prevent.k8s.redis_memory_limit"]["status"] == "ok"
    probes = before_checks["prevent.k8s.redis_probes"]
    assert probes["status"] == "warning" and probes["observed"] == "missing: livenessProbe"
    after = by_check(result["prevention"]["findings"])
    assert after["prevent.redis.eviction_policy"]["status"] == "ok"
    prevention_actions = {a["id"]: a for a in result["prevention"]["actions"]}
    assert prevention_actions["cache_performance.prevent.set_eviction_policy"]["status"] == "applied"

    writes = k8s_api.writes()
    assert len(writes) == 1
    write = writes[0]
    assert write.method == "PATCH" and write.path == CONFIGMAP_PATH
    assert write.body["data"]["redis.conf"] == before + "maxmemory-policy allkeys-lru\n"  # appended, nothing else
