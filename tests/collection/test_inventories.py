"""The inventories describe their deployments through the contract (docs/deployment.md): the lab's offers every
optional probe the procedures use, and inventory/examples/renamed-stack, a stack named differently from the seed,
is answered under its own names by the run's context that the procedure_run lookup builds from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.octollm.remediation.plugins.plugin_utils import deployment
from ansible_collections.octollm.remediation.plugins.plugin_utils import procedure as procedures
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import role_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventory" / "examples" / "renamed-stack"
BIN = Path(sys.executable).parent


def group_vars(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "inventory" / name / "group_vars" / "octollm.yml").read_text())


class Recording(Context):
    """A run's context that notes every optional probe a procedure asks for."""

    asked: set[tuple[str, str]] = set()

    def probe(self, name: str, probe: str) -> Any:
        Recording.asked.add((name, probe))
        return super().probe(name, probe)


def test_the_lab_offers_every_optional_probe_the_procedures_use() -> None:
    """inventory/lab describes what the lab offers: every optional probe any procedure asks of the lab's own
    services (the orchestrator and the arms) is named there, so that the full lab keeps every check it has; and
    the health paths and dependencies the seed gives no default for."""
    data = group_vars("lab")
    services = data["octollm_services"]
    inventory = {"services": services, "compose": {"project": data["octollm_compose_project"]}}
    context = Recording(platform="compose", phase="diagnose",
                        inventory=deployment.describe(inventory, role_settings("_common")))
    Recording.asked = set()
    for name in procedures.NAMES:
        procedure = procedures.get(name)
        procedure.needs(procedure.settings(role_settings(name), context), context)
    own = {(service, probe) for service, probe in Recording.asked
           if service == "orchestrator" or service.endswith("-arm")}
    assert {("orchestrator", "cache_warm"), ("guardian-arm", "reload")} <= own
    missing = sorted((service, probe) for service, probe in own if not context.probe(service, probe))
    assert missing == [], f"asked of the lab but not offered in inventory/lab: {missing}"
    # the endpoints the lab serves them at
    assert context.probe("orchestrator", "cache_warm") == "/api/v1/cache/warm"
    assert context.probe("guardian-arm", "reload") == "/api/v1/reload"
    assert all(context.probe(arm, "debug_memory") == "/debug/memory" for arm in services if arm.endswith("-arm"))
    # health paths beyond the seed's /health, and what each application service connects to
    assert context.service("qdrant")["health_path"] == "/healthz"
    assert context.service("prometheus")["health_path"] == context.service("alertmanager")["health_path"] == "/-/ready"
    assert all(context.service(name)["depends_on"] for name in services if name == "orchestrator" or "-arm" in name)
    assert context.dependents("llm-provider") == ["orchestrator"]  # the one LLM client: its key is checked
    assert context.setting_name("orchestrator", "llm_base_url") == "LLM_API_URL"  # the lab's name for it
    # the procedures derive their endpoints from it
    from ansible_collections.octollm.remediation.plugins.plugin_utils import llm_api

    cache = procedures.get("cache_performance").settings(role_settings("cache_performance"), context)
    assert cache["warm_url"] == "http://127.0.0.1:8000/api/v1/cache/warm"
    guardian = procedures.get("security_violations").settings(role_settings("security_violations"), context)
    assert guardian["reload_url"] == "http://127.0.0.1:8104/api/v1/reload"
    llm = procedures.get("llm_api").settings(role_settings("llm_api"), context)
    assert [(c["service"], c["key"], c["url_setting"]) for c in llm["key_checks"]] == [
        ("orchestrator", "OPENAI_API_KEY", "LLM_API_URL")]
    assert '"${LLM_API_URL:-http://127.0.0.1:8200}/v1/models"' in llm_api.key_cmd(llm["key_checks"][0])


def test_the_kubernetes_inventory_offers_the_orchestrators_probes() -> None:
    services = group_vars("kubernetes")["octollm_services"]
    assert services["orchestrator"]["probes"]["cache_warm"] == "/api/v1/cache/warm"
    assert "llm-provider" in services["orchestrator"]["depends_on"]


def _env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "ANSIBLE_STDOUT_CALLBACK": "json",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_the_renamed_stack_example_parses() -> None:
    listed = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(EXAMPLE), "--list"], env=_env(),
                            capture_output=True, text=True, check=True, timeout=120)
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]["assistant-prod-1"]
    assert hostvars["octollm_compose_project"] == "assistant"
    assert hostvars["octollm_services"]["orchestrator"]["compose_service"] == "api"


def test_the_run_built_from_the_renamed_stack_example_answers_its_names() -> None:
    """The procedure_run lookup, run by Ansible over inventory/examples/renamed-stack (the debug action templates
    it on the controller and connects to nothing): its context answers the stack's names, not the seed's."""
    term = ('{{ lookup("octollm.remediation.procedure_run", "llm_api", "cache_performance", "security_violations", '
            'phase="diagnose") }}')
    done = subprocess.run([str(BIN / "ansible"), "-i", str(EXAMPLE), "all", "-m", "ansible.builtin.debug",
                           "-a", "msg=" + term], env=_env(), capture_output=True, text=True, timeout=120)
    host = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["assistant-prod-1"]
    assert not host.get("failed"), host.get("msg")
    run = host["msg"]
    assert "vault_" not in json.dumps(run) and "password" not in json.dumps(run["context"]["inventory"]["postgres"])
    context = Context(run["context"])
    assert context.platform == "compose" and context.inventory["compose"]["project"] == "assistant"
    # the services, found under their own names
    assert context.service("orchestrator")["compose_service"] == "api"
    assert context.service("orchestrator")["ready_path"] == "/ready"
    assert context.service("planner-arm")["container_names"] == ["assistant-planner"]
    assert context.service("postgres")["compose_service"] == "db"
    # settings under a prefix, the database as one URL
    assert context.setting_name("orchestrator", "database_url") == "ASSISTANT_DATABASE_URL"
    assert context.setting_name("orchestrator", "db_host") is None
    assert context.setting_name("orchestrator", "db_pool_size") == "ASSISTANT_DB_POOL_SIZE"
    assert context.setting_name("orchestrator", "llm_fallback_enabled") is None  # not set: never "enabled"
    assert context.setting_name("planner-arm", "llm_api_key") == "OPENAI_API_KEY"  # the seed's, where not renamed
    # metrics under a prefix; no optional probe
    assert context.metric("http_request_duration", "orchestrator") == "assistant_http_request_duration_seconds"
    assert context.metric("cache_hits", "orchestrator") == "assistant_cache_hits_total"
    assert all(context.probe(name, probe) is None for name in context.service_names()
               for probe in ("cache_warm", "reload", "route_score", "arms", "debug_memory", "db_pool"))
    # another schema
    assert context.schema["search_path"] == "assistant"
    assert context.table("tasks") == "jobs" and context.table("relationships") == "relationships"
    assert context.task_status("running") == "in_progress" and context.task_status("failed") == "failed"
    assert context.container_metrics["preset"] == "cadvisor"
    # the LLM provider's clients: the key is checked in each, under its own name
    assert context.dependents("llm-provider") == ["coder-arm", "orchestrator", "planner-arm"]
    # ... and the procedures' settings derived from it
    llm = run["settings"]["llm_api"]
    assert [(c["service"], c["key"]) for c in llm["key_checks"]] == [
        ("orchestrator", "ASSISTANT_OPENAI_API_KEY"), ("coder-arm", "OPENAI_API_KEY"),
        ("planner-arm", "OPENAI_API_KEY")]
    assert llm["setting_names"]["llm_timeout"] == "ASSISTANT_LLM_TIMEOUT"
    assert llm["metric_names"]["llm_calls"] == "assistant_llm_api_calls_total"
    assert run["settings"]["cache_performance"]["warm_url"] is None  # scenario C is a report here
    assert run["settings"]["security_violations"]["reload_url"] is None  # new lists load through a restart
