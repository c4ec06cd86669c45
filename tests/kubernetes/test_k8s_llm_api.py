"""llm_api's Kubernetes side: the orchestrator's settings from its ConfigMap, its log from its pods (served by the
Kubernetes API EMULATOR), the deployment's key checked at a local stand-in for the provider (the port-forward to
svc/llm-provider) with the key of the Secret, and the exact body of every API write: the ConfigMap patch of A-C,
the Secret patch of D (the new key, base64) and the rollout restart of the orchestrator.

The new key must appear nowhere but in the Secret's write: not in the result, not in the runner's stdout, events or
artifacts. What the emulator cannot show: the rollout (new pods reading the new Secret), Prometheus.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings
from conftest import REPO, closed_port, inventory_env
from k8s_emulator import KubernetesAPIEmulator
from k8s_results import by_check, collect_evidence

pytestmark = pytest.mark.kubernetes

LAB_KEY = "sk-lab-dev"  # the Secret's OPENAI_API_KEY in lab/kubernetes
FALLBACK_KEY = "sk-lab-fb-dev"
NEW_KEY = "sk-rotated-7f3a9c1e5b2d4f60"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CONFIGMAP_PATH = "/api/v1/namespaces/octollm/configmaps/octollm-config"
SECRET_PATH = "/api/v1/namespaces/octollm/secrets/octollm-secrets"
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/octollm/deployments/orchestrator"
# the role's defaults on Kubernetes; no new key for scenario D (its source is the controller's environment)
SETTINGS = procedure_settings("llm_api", {"new_key_source": None}, platform="kubernetes")


class Provider:
    """A stand-in for the port-forward to an OpenAI-compatible provider: GET /v1/models answers 200 to the keys in
    ``accepted``, 401 to any other, or ``status`` when set (an outage)."""

    def __init__(self, accepted: set[str]) -> None:
        self.accepted = accepted
        self.status: int | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                status = owner.status or (200 if key in owner.accepted else 401)
                data = json.dumps({"data": [{"id": "gpt-4"}]} if status == 200 else {"error": "no"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def providers() -> Iterator[tuple[Provider, Provider]]:
    primary, fallback = Provider({LAB_KEY}), Provider({FALLBACK_KEY})
    try:
        yield primary, fallback
    finally:
        primary.server.shutdown()
        fallback.server.shutdown()


def set_orchestrator_log(k8s_api: KubernetesAPIEmulator, lines: list[str]) -> None:
    for pod in k8s_api.objects_of("v1/pods", "app=orchestrator"):
        k8s_api.set_log(pod["metadata"]["name"], "".join(f"{line}\n" for line in lines))


TIMEOUTS = [f"2026-11-28T10:00:0{i}Z WARNING orchestrator llm timeout provider=primary after=30s" for i in range(4)]
RATE_LIMITED = [f"2026-11-28T10:00:0{i}Z WARNING orchestrator llm error status=429 provider=primary"
                for i in range(4)] + ["2026-11-28T10:00:05Z INFO orchestrator rate limit remaining=0 limit=120 "
                                      "reset=30 provider=primary"]


def collect(k8s_api: KubernetesAPIEmulator, providers: tuple[Provider, Provider], tmp_path: Path) -> dict[str, Any]:
    """The evidence of the role's one gather task on Kubernetes (stack_evidence's collectors, called directly), with
    the inventory's header sets (the Secret's keys)."""
    primary, fallback = providers
    patterns = {"llm_api_429": "llm error status=429", "llm_api_503": "llm error status=(503|connection_error)",
                "llm_api_timeout": "llm timeout", "llm_api_auth": "llm auth error"}
    objects = {
        "llm_api_configmap": {"kind": "ConfigMap", "name": "octollm-config"},
        "llm_api_workload": {"kind": "Deployment", "api_version": "apps/v1", "name": "orchestrator"},
        "llm_api_pods": {"kind": "Pod", "label_selector": "app=orchestrator",
                         "logs": {"tail": 2000, "since_seconds": 120, "patterns": patterns}},
        "llm_api_events": {"kind": "Event", "field_selector": "type=Warning"},
    }
    probes = [{"name": "llm_api_primary_models", "service": "llm-provider", "path": "/v1/models",
               "header_set": "llm-provider"},
              {"name": "llm_api_fallback_models", "service": "llm-provider-fallback", "path": "/v1/models",
               "header_set": "llm-provider-fallback"}]
    http = {"services": {"llm-provider": {"url": primary.url}, "llm-provider-fallback": {"url": fallback.url}},
            "header_sets": {"llm-provider": {"Authorization": f"Bearer {LAB_KEY}"},
                            "llm-provider-fallback": {"Authorization": f"Bearer {FALLBACK_KEY}"}},
            "probes": probes}
    return collect_evidence(k8s_api, tmp_path, objects, http=http)


def test_a_healthy_cluster_gives_no_problem(k8s_api: KubernetesAPIEmulator, providers: Any, tmp_path: Path) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import llm_api_kubernetes as lak

    set_orchestrator_log(k8s_api, ["2026-11-28T10:00:00Z INFO orchestrator llm ok provider=primary"])
    evidence = collect(k8s_api, providers, tmp_path)
    diagnosis = lak.diagnose(evidence, SETTINGS)
    found = by_check(diagnosis["findings"])
    assert found["llm.api_key"]["status"] == "ok" and found["llm.api_key"]["observed"] == "200"
    assert found["llm.provider_available"]["status"] == "ok"
    assert found["llm.rate_limit"]["status"] == "ok" and found["llm.timeouts"]["status"] == "ok"
    assert found["k8s.llm_client_pods"]["status"] == "ok" and found["k8s.llm_config_refs"]["status"] == "ok"
    assert [f["check"] for f in diagnosis["findings"] if f["status"] == "problem"] == []
    assert diagnosis["context"]["live"]["LLM_READ_TIMEOUT"] == "30"  # from the ConfigMap
    assert lak.plan(diagnosis, SETTINGS) == []
    prevention = by_check(lak.prevention(evidence, SETTINGS)["findings"])
    assert prevention["prevent.llm.rate_limits"]["status"] == "ok"
    assert prevention["prevent.llm.fallback"]["status"] == "ok"
    assert prevention["prevent.k8s.llm_config_refs"]["status"] == "ok"
    assert k8s_api.writes() == []


@pytest.mark.parametrize(("scenario", "fault", "action_id", "settings"), [
    ("A", "rate", "llm_api.A.lower_rate",
     {"LLM_MAX_CONCURRENCY": {"old": "8", "new": "4"}, "LLM_RATE_PER_MINUTE": {"old": "600", "new": "60"}}),
    ("B", "outage", "llm_api.B.enable_fallback", {"LLM_FALLBACK_ENABLED": {"old": "false", "new": "true"}}),
    ("C", "timeouts", "llm_api.C.raise_read_timeout", {"LLM_READ_TIMEOUT": {"old": "30", "new": "60"}}),
])
def test_settings_scenarios_patch_the_configmap_after_approval(
        k8s_api: KubernetesAPIEmulator, providers: Any, tmp_path: Path, scenario: str, fault: str, action_id: str,
        settings: dict[str, Any]) -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import llm_api_kubernetes as lak

    if fault == "outage":
        providers[0].status = 503
    set_orchestrator_log(k8s_api, RATE_LIMITED if fault == "rate" else TIMEOUTS if fault == "timeouts" else [])
    diagnosis = lak.diagnose(collect(k8s_api, providers, tmp_path), SETTINGS)
    assert {s["id"]: s["holds"] for s in diagnosis["scenarios"]}[scenario] is True
    waiting = {a["id"]: a for a in lak.plan(diagnosis, SETTINGS)}[action_id]
    assert waiting["status"] == "awaiting_approval" and waiting["disruptive"] is True
    planned = {a["id"]: a for a in lak.plan(diagnosis, {**SETTINGS, "approve": True})}[action_id]
    assert planned["status"] == "planned" and planned["_apply"] == "set_configmap"
    assert planned["change"] == {"file": "configmap/octollm/octollm-config", "configmap": "octollm-config",
                                 "settings": settings, "op": f"ConfigMap patch, then rollout restart ({RESTARTED_AT})",
                                 "restart": "Deployment/orchestrator"}
    assert "then a rollout restart of Deployment/orchestrator" in planned["outcome"]
    assert k8s_api.writes() == []


def run(k8s_api: KubernetesAPIEmulator, tmp_path: Path, env: dict[str, str], **extravars: Any) -> tuple[dict, str]:
    """playbooks/run.yml through ansible-runner as run_k8s does, returning the result AND everything the runner
    wrote (stdout, events, artifacts), to look for the key in."""
    import ansible_runner

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    private = tmp_path / f"runner-{len(list(tmp_path.iterdir()))}"
    private.mkdir()
    runner = ansible_runner.run(
        private_data_dir=str(private), playbook=str(REPO / "playbooks" / "run.yml"),
        inventory=str(REPO / "inventory" / "kubernetes"),
        extravars={"octollm_procedures": ["llm_api"], "octollm_phase": "resolve", "llm_api_k8s_rollout_timeout": 0,
                   "llm_api_settle_seconds": 0, **extravars},
        envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
                 **inventory_env(k8s_api.kubeconfig(tmp_path / "kubeconfig"), env)},
        quiet=True)
    stdout = runner.stdout.read()
    assert runner.rc == 0, f"{runner.status}: {stdout[-4000:]}"
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    result = stats[-1]["event_data"]["artifact_data"]["octollm_report"]["cluster"]["llm_api"]
    # everything but ansible-runner's record of the process environment it was started with (artifacts/*/command,
    # env/): that holds whatever the controller's environment holds, the operator's key source among it
    written = stdout + "".join(path.read_text(errors="replace") for path in private.rglob("*")
                               if path.is_file() and path.name != "command" and "env" not in path.parts)
    return result, written


def provider_env(providers: tuple[Provider, Provider], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The providers' port-forwards; the new key in the controller's environment, as an operator's shell holds it
    (not in the runner's envvars, which ansible-runner records in its artifacts as given)."""
    monkeypatch.setenv("OCTOLLM_LLM_NEW_API_KEY", NEW_KEY)
    return {"OCTOLLM_LLM_PROVIDER_URL": providers[0].url, "OCTOLLM_LLM_FALLBACK_URL": providers[1].url,
            "OCTOLLM_POSTGRES_PORT": str(closed_port())}


def test_a_refused_key_waits_for_approval_and_nothing_is_written(
        k8s_api: KubernetesAPIEmulator, providers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    providers[0].accepted = {NEW_KEY}  # the provider revoked the deployment's key
    result, written = run(k8s_api, tmp_path, provider_env(providers, monkeypatch))
    found = by_check(result["findings"])
    assert found["llm.api_key"]["status"] == "problem" and found["llm.api_key"]["scenario"] == "D"
    assert found["llm.api_key"]["observed"] == "provider answers 401 to the deployment's key"
    rotate = {a["id"]: a for a in result["actions"]}["llm_api.D.rotate_key"]
    assert rotate["status"] == "awaiting_approval"
    assert rotate["change"]["new"] == "(new key from environment variable OCTOLLM_LLM_NEW_API_KEY; not shown)"
    assert k8s_api.writes() == []
    for secret in (NEW_KEY, LAB_KEY, FALLBACK_KEY):
        assert secret not in json.dumps(result) and secret not in written


def test_resolve_rotates_the_key_into_the_secret_and_raises_the_timeout(
        k8s_api: KubernetesAPIEmulator, providers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    providers[0].accepted = {NEW_KEY}
    set_orchestrator_log(k8s_api, TIMEOUTS)
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    result, written = run(k8s_api, tmp_path, provider_env(providers, monkeypatch), octollm_approve=True)

    actions = {a["id"]: a for a in result["actions"]}
    rotate, timeout = actions["llm_api.D.rotate_key"], actions["llm_api.C.raise_read_timeout"]
    assert rotate["status"] == "applied", rotate["outcome"]
    assert rotate["outcome"].startswith("new key accepted by the provider and written to secret/octollm/"
                                        "octollm-secrets (OPENAI_API_KEY)")
    assert "rollout restart of Deployment/orchestrator; rollout not awaited (llm_api_k8s_rollout_timeout is 0)" \
        in rotate["outcome"]
    assert timeout["status"] == "applied", timeout["outcome"]
    assert actions["llm_api.D.revoke_old_key"]["status"] == "report"

    writes = k8s_api.writes()
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", SECRET_PATH), ("PATCH", CONFIGMAP_PATH), ("PATCH", DEPLOYMENT_PATH)]
    secret, configmap, restart = writes
    assert secret.content_type in ("application/strategic-merge-patch+json", "application/merge-patch+json")
    assert set(secret.body) <= {"apiVersion", "kind", "metadata", "data"}
    assert secret.body["data"] == {"OPENAI_API_KEY": base64.b64encode(NEW_KEY.encode()).decode()}
    assert configmap.content_type in ("application/strategic-merge-patch+json", "application/merge-patch+json")
    assert set(configmap.body) <= {"apiVersion", "kind", "metadata", "data"}
    assert configmap.body["data"] == {"LLM_READ_TIMEOUT": "60"}
    assert restart.content_type == "application/strategic-merge-patch+json"
    stamp = restart.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert restart.body["spec"] == {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert started - datetime.timedelta(seconds=5) <= when <= datetime.datetime.now(datetime.UTC)
    stored = k8s_api.get("v1/secrets", "octollm-secrets")["data"]
    assert base64.b64decode(stored["OPENAI_API_KEY"]).decode() == NEW_KEY
    assert base64.b64decode(stored["REDIS_PASSWORD"]).decode() == "octollm-redis-dev"  # the other keys stay
    assert k8s_api.get("v1/configmaps", "octollm-config")["data"]["LLM_MODEL"] == "gpt-4"

    # the key is in the Secret's write body and nowhere else
    assert NEW_KEY not in json.dumps(result)
    assert NEW_KEY not in written and base64.b64encode(NEW_KEY.encode()).decode() not in written
    # verification: the Secret's new key is accepted (the timeout lines stay in the emulator's log: no new pods)
    after = by_check(result["verification"]["findings"])
    assert after["llm.api_key"]["status"] == "ok"
