"""Scheduling without AWX on Kubernetes (issue 18, item 6): deploy/kubernetes/cronjob-prevent.yaml validates against
the Kubernetes schemas (strict), runs the execution environment's image as the lab's octoctl ServiceAccount with the
Kubernetes inventory from a ConfigMap, and is created, with that ConfigMap, in the API emulator. (Running its Job
needs a cluster that can pull the image: not done here.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_emulator import KubernetesAPIEmulator

pytestmark = pytest.mark.kubernetes

REPO = Path(__file__).resolve().parents[2]
CRONJOB = REPO / "deploy" / "kubernetes" / "cronjob-prevent.yaml"
K8S_VERSION = "1.33"


def _cronjob() -> dict[str, Any]:
    [obj] = [o for o in yaml.safe_load_all(CRONJOB.read_text()) if o]
    return dict(obj)


def _inventory_configmap() -> dict[str, Any]:
    """The ConfigMap the manifest's header creates (kubectl create configmap --from-file)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "octollm-inventory", "namespace": "octollm"},
            "data": {"hosts.yml": (REPO / "inventory" / "kubernetes" / "hosts.yml").read_text(),
                     "octollm.yml": (REPO / "inventory" / "kubernetes" / "group_vars" / "octollm.yml").read_text()}}


def test_the_cronjob_validates_and_runs_prevent_all_as_octoctl(lab_manifests: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    cronjob = _cronjob()
    kubernetes_validate.validate(cronjob, K8S_VERSION, strict=True)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    accounts = {o["metadata"]["name"] for o in lab_manifests if o["kind"] == "ServiceAccount"}
    assert pod["serviceAccountName"] == "octoctl" and "octoctl" in accounts
    assert pod["automountServiceAccountToken"] is True  # the account itself does not mount a token
    [container] = pod["containers"]
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert container["image"] in ee["options"]["tags"]
    command = container["command"]
    assert "octollm.remediation.prevent_all" in command and "octollm_fail_when_human_needed=true" in command
    inventory = command[command.index("-i") + 1]
    [mount] = container["volumeMounts"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    paths = {item["key"]: f"{mount['mountPath']}/{item['path']}" for item in volume["configMap"]["items"]}
    assert inventory in paths.values() and set(paths) == set(_inventory_configmap()["data"])
    assert paths["octollm.yml"] == f"{Path(inventory).parent}/group_vars/octollm.yml"  # beside hosts.yml


def test_the_cronjob_is_created_in_the_emulator(k8s_api: KubernetesAPIEmulator, tmp_path: Path) -> None:
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(k8s_api.kubeconfig(tmp_path / "kubeconfig")),
                                                      context="octollm-emulator")
    kubernetes.client.CoreV1Api(client).create_namespaced_config_map("octollm", _inventory_configmap())
    kubernetes.client.BatchV1Api(client).create_namespaced_cron_job("octollm", _cronjob())
    stored = k8s_api.get("batch/v1/cronjobs", "octollm-prevent")
    assert stored["spec"]["schedule"] == "0 3 * * *"
    stored_map = k8s_api.get("v1/configmaps", "octollm-inventory")
    assert yaml.safe_load(stored_map["data"]["hosts.yml"]) == yaml.safe_load(
        (REPO / "inventory" / "kubernetes" / "hosts.yml").read_text())
