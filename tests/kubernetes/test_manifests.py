"""lab/kubernetes: renders (kubectl kustomize and the python loader agree), validates against the Kubernetes schemas
(kubernetes-validate, offline, strict: unknown fields fail), and carries what the procedures and the seed rely on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from manifests import KUSTOMIZATION, REPO, key, kubectl_kustomize, render_kubectl, render_python

pytestmark = pytest.mark.kubernetes

# The Kubernetes version the schemas are taken from (kubernetes-validate ships them; no network).
K8S_VERSION = "1.33"
ARMS = ["planner-arm", "executor-arm", "coder-arm", "judge-arm", "guardian-arm", "retriever-arm"]
# docs/design.md, "The lab": the Compose lab's ports, which the Services keep.
PORTS = {"orchestrator": 8000, "planner-arm": 8100, "executor-arm": 8101, "coder-arm": 8102, "judge-arm": 8103,
         "guardian-arm": 8104, "retriever-arm": 8105, "postgres": 5432, "redis": 6379, "qdrant": 6333,
         "llm-provider": 8200, "llm-provider-fallback": 8201, "prometheus": 9090}


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {**by_kind(objects, "Deployment"), **by_kind(objects, "StatefulSet")}


def test_every_file_is_listed_in_the_kustomization() -> None:
    listed = yaml.safe_load((KUSTOMIZATION / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in KUSTOMIZATION.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk


def test_python_loader_renders_what_kustomize_renders(lab_manifests: list[dict[str, Any]]) -> None:
    if kubectl_kustomize() is None:
        pytest.skip("no kubectl with kustomize here: only the python loader renders (the other tests use it)")
    assert {key(o): o for o in render_python()} == {key(o): o for o in render_kubectl()}


def test_every_manifest_validates_against_the_kubernetes_schemas(lab_manifests: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    assert len(lab_manifests) >= 40
    failures = []
    for obj in lab_manifests:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{'/'.join(str(part) for part in key(obj))}: {exc.message}")
    assert failures == []


def test_the_validator_rejects_a_broken_manifest(lab_manifests: list[dict[str, Any]]) -> None:
    """The validation above bites: a misspelt field and a wrong type fail."""
    import kubernetes_validate

    deployment = dict(workloads(lab_manifests)["redis"])
    misspelt = yaml.safe_load(yaml.safe_dump(deployment).replace("readinessProbe", "readynessProbe"))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, K8S_VERSION, strict=True)
    wrong_type = yaml.safe_load(yaml.safe_dump(deployment))
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, K8S_VERSION, strict=True)


def test_namespace_labels_and_selectors(lab_manifests: list[dict[str, Any]]) -> None:
    for obj in lab_manifests:
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "octollm", key(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "octollm", key(obj)
    for name, workload in workloads(lab_manifests).items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"] == {"app": name}  # the seed's `-l app=postgres`
        assert labels["app"] == name
        assert (labels["app-type"] == "arm") == (name in ARMS), name  # `rollout restart deployment -l app-type=arm`
    services = by_kind(lab_manifests, "Service")
    for name, port in PORTS.items():
        assert port in [p["port"] for p in services[name]["spec"]["ports"]], name
        assert services[name]["spec"]["selector"] == {"app": name}


def test_every_container_has_probes_resources_and_the_lab_image(lab_manifests: list[dict[str, Any]]) -> None:
    for name, workload in workloads(lab_manifests).items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            assert container["image"] == "octollm/lab-runtime:dev", (name, container["name"])
            resources = container["resources"]
            assert resources["requests"]["memory"] and resources["limits"]["memory"], (name, container["name"])
            assert resources["requests"]["cpu"] and resources["limits"]["cpu"], (name, container["name"])
            if name != "loadgen":  # loadgen serves nothing
                assert "readinessProbe" in container, (name, container["name"])


def test_the_services_environment_matches_the_compose_lab(lab_manifests: list[dict[str, Any]]) -> None:
    """Every setting of the Compose lab's lab.env and secrets.env (lab/ctl/octollm_labctl/lab.py) is set, Service
    names for 127.0.0.1, and the services bind to the pod address."""
    lab_py = (REPO / "lab" / "ctl" / "octollm_labctl" / "lab.py").read_text()
    compose_keys = set(re.findall(r'"([A-Z][A-Z0-9_]+)=', lab_py)) | set(re.findall(r"\\n([A-Z][A-Z0-9_]+)=", lab_py))
    compose_keys |= set(re.findall(r'f"([A-Z][A-Z0-9_]+)=\{', lab_py))
    config = by_kind(lab_manifests, "ConfigMap")["octollm-config"]["data"]
    secret = by_kind(lab_manifests, "Secret")["octollm-secrets"]["stringData"]
    exporters = by_kind(lab_manifests, "Secret")["octollm-exporters"]["stringData"]
    # DATABASE_URL: the minimal profile's orchestrator setting (under its prefix), not the full lab's
    missing = compose_keys - {"OCTOLLM_LAB_STATE", "OCTOLLM_LAB_TAG", "OCTOLLM_LAB_HEALTH_INTERVAL", "DATABASE_URL"} \
        - set(config) - set(secret) - set(exporters)
    assert missing == set()
    assert config["BIND_HOST"] == "0.0.0.0"
    assert "127.0.0.1" not in " ".join(config.values())
    assert config["POSTGRES_HOST"] == "postgres" and config["REDIS_HOST"] == "redis"


def test_redis_runs_from_its_configmap_without_a_password_in_it(lab_manifests: list[dict[str, Any]]) -> None:
    redis_conf = by_kind(lab_manifests, "ConfigMap")["redis-config"]["data"]["redis.conf"]
    assert "maxmemory-policy allkeys-lru" in redis_conf and "requirepass" not in redis_conf
    container = workloads(lab_manifests)["redis"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["redis-server", "/etc/octollm/redis/redis.conf"]
    assert "$(REDIS_PASSWORD)" in container["command"]


def test_postgres_start_script_edits_the_lab_entrypoint(lab_manifests: list[dict[str, Any]], tmp_path: Path) -> None:
    """The k8s wrapper rewrites the entrypoint's last line; if the entrypoint changes, this must notice."""
    import subprocess

    script = by_kind(lab_manifests, "ConfigMap")["postgres-config"]["data"]["start.sh"]
    local = script.replace("/opt/octollm/bin/postgres-entrypoint.sh",
                           str(REPO / "lab" / "app" / "bin" / "postgres-entrypoint.sh"))
    local = local.replace("/tmp/postgres-entrypoint.sh", str(tmp_path / "entry.sh"))
    local = local.replace(f"exec sh {tmp_path / 'entry.sh'}", "true")
    subprocess.run(["sh", "-c", local], check=True, timeout=10)
    last = (tmp_path / "entry.sh").read_text().strip().splitlines()[-1]
    assert last.endswith('-D "$PGDATA" -c listen_addresses=0.0.0.0 -c hba_file=/etc/octollm/postgres/pg_hba.conf')


def test_orchestrator_pdb_and_hpa(lab_manifests: list[dict[str, Any]]) -> None:
    pdb = by_kind(lab_manifests, "PodDisruptionBudget")["orchestrator"]["spec"]
    hpa = by_kind(lab_manifests, "HorizontalPodAutoscaler")["orchestrator"]["spec"]
    orchestrator = workloads(lab_manifests)["orchestrator"]["spec"]
    assert pdb["selector"]["matchLabels"] == orchestrator["selector"]["matchLabels"]
    assert pdb["minAvailable"] < orchestrator["replicas"]  # a drain can evict one pod
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orchestrator"}
    assert hpa["minReplicas"] == orchestrator["replicas"] <= hpa["maxReplicas"]


def test_octoctl_rbac_is_least_privilege(lab_manifests: list[dict[str, Any]]) -> None:
    role = by_kind(lab_manifests, "Role")["octoctl"]["rules"]
    cluster = by_kind(lab_manifests, "ClusterRole")["octoctl-cluster"]["rules"]
    for rule in role + cluster:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])

    def allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)

    # what the procedures do, namespaced
    assert allowed(role, "apps", "deployments", "patch")  # rollout restart (restartedAt)
    assert allowed(role, "apps", "deployments/scale", "patch")
    assert allowed(role, "", "configmaps", "patch")
    assert allowed(role, "", "pods/exec", "create")
    assert allowed(role, "networking.k8s.io", "networkpolicies", "create")  # quarantine
    secrets = [r for r in role if "secrets" in r["resources"]]
    assert secrets and all(r.get("resourceNames") == ["octollm-secrets"] for r in secrets)  # that Secret only
    assert not allowed(role, "apps", "deployments", "create") and not allowed(role, "apps", "deployments", "delete")
    assert not any("rbac.authorization.k8s.io" in r["apiGroups"] for r in role + cluster)
    # the ClusterRole: only what is cluster-wide (nodes, cordon, eviction for a drain)
    cluster_resources = {res for r in cluster for res in r["resources"]}
    assert cluster_resources <= {"nodes", "pods", "pods/eviction"}
    assert allowed(cluster, "", "nodes", "patch") and allowed(cluster, "", "pods/eviction", "create")
    assert not allowed(cluster, "", "pods", "delete")
    bindings = by_kind(lab_manifests, "RoleBinding") | by_kind(lab_manifests, "ClusterRoleBinding")
    for binding in bindings.values():
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "octoctl", "namespace": "octollm"}]
