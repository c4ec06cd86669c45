"""Containers are found per service as the inventory describes the deployment (issue 14, item 1): the Compose
project and service, container names for containers not under Compose, Docker labels, or another Compose project;
each record, log and exec probe carries the service name the inventory gives. A fake Docker API stands in for the
daemon (module_utils/collector_containers.py), and the stack check judges what it finds (plugin_utils/stack.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.module_utils import collector_containers as cc
from ansible_collections.octollm.remediation.plugins.plugin_utils import deployment, stack
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import role_settings

COMMON = role_settings("_common")
PROJECT = "octollm"


def container(name: str, project: str | None = None, service: str | None = None, running: bool = True,
              labels: dict[str, str] | None = None, env: list[str] | None = None) -> dict[str, Any]:
    every = dict(labels or {})
    if project:
        every[cc.PROJECT_LABEL] = project
    if service:
        every[cc.SERVICE_LABEL] = service
        every[cc.NUMBER_LABEL] = "1"
    return {
        "Id": (name.encode().hex() * 8)[:64],
        "Names": ["/" + name],
        "Labels": every,
        "State": "running" if running else "exited",
        "Status": "Up 5 minutes" if running else "Exited (137) 1 minute ago",
        "_env": env or [],
    }


class FakeAPI:
    """The calls the collector makes, over a fixed list of containers."""

    def __init__(self, containers: list[dict[str, Any]]) -> None:
        self.all = containers
        self.list_filters: list[Any] = []
        self.api_version = "1.43"

    def containers(self, all: bool = False, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:  # noqa: A002
        self.list_filters.append(filters)
        wanted = (filters or {}).get("label")
        if wanted:
            key, _, value = wanted.partition("=")
            return [c for c in self.all if c["Labels"].get(key) == value]
        return list(self.all)

    def _get(self, cid: str) -> dict[str, Any]:
        return next(c for c in self.all if c["Id"] == cid)

    def inspect_container(self, cid: str) -> dict[str, Any]:
        item = self._get(cid)
        running = item["State"] == "running"
        return {
            "Id": cid,
            "Name": item["Names"][0],
            "Image": "sha256:" + "ab" * 32,
            "State": {"Status": item["State"], "Running": running, "ExitCode": 0 if running else 137,
                      "StartedAt": "2026-01-01T00:00:00Z", "Pid": 0},
            "Config": {"Labels": item["Labels"], "Image": "octollm/orchestrator:1.4", "Env": item["_env"]},
            "HostConfig": {"Memory": 268435456},
            "RestartCount": 0,
        }

    def logs(self, cid: str, **_: Any) -> bytes:
        name = self._get(cid)["Names"][0].lstrip("/")
        return f"log line of {name}\n".encode()

    def exec_create(self, cid: str, argv: list[str], **_: Any) -> dict[str, str]:
        return {"Id": cid}

    def exec_start(self, exec_id: str, **_: Any) -> bytes:
        name = self._get(exec_id)["Names"][0].lstrip("/")
        return f"ran in {name}".encode()

    def exec_inspect(self, exec_id: str) -> dict[str, int]:
        return {"ExitCode": 0}

    def close(self) -> None:
        pass


def collect(monkeypatch: pytest.MonkeyPatch, api: FakeAPI, **options: Any) -> dict[str, Any]:
    class Docker:
        @staticmethod
        def APIClient(**_: Any) -> FakeAPI:  # noqa: N802 - the SDK's name
            return api

    monkeypatch.setattr(cc.ContainersCollector, "_docker", lambda self: Docker)
    options.setdefault("project", PROJECT)
    return cc.ContainersCollector(options).collect(time.monotonic() + 10)


def described(services: dict[str, Any], project: str = PROJECT) -> dict[str, Any]:
    return deployment.describe({"services": services, "compose": {"project": project}}, COMMON)


LAB = [
    container("octollm-orchestrator-1", PROJECT, "orchestrator"),
    container("octollm-postgres-1", PROJECT, "postgres"),
    container("octollm-loadgen-1", PROJECT, "loadgen"),
    container("bystander", "someone-else", "web"),
]


def test_the_lab_as_today_one_filtered_list_and_compose_names(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI(LAB)
    inventory = described({"orchestrator": {"url": "http://o"}, "postgres": {"port": 5432}})
    result = collect(monkeypatch, api, discovery=inventory["discovery"])
    assert api.list_filters == [{"label": "com.docker.compose.project=octollm"}]  # nothing more is listed
    services = {r["name"]: (r["service"], r["found_by"], r["project"]) for r in result["containers"]}
    assert services == {
        "octollm-orchestrator-1": ("orchestrator", "compose", PROJECT),
        "octollm-postgres-1": ("postgres", "compose", PROJECT),
        "octollm-loadgen-1": ("loadgen", "compose", PROJECT),  # the project's other containers stay
    }


def test_services_under_another_project_a_name_or_labels_are_found_under_their_inventory_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deployment's orchestrator runs outside Compose (container name), its planner under another Compose project
    and service, its postgres by label; the lab's own orchestrator container is not the deployment's."""
    api = FakeAPI(LAB + [
        container("prod-orchestrator", running=False),
        container("acme-planner-7", "acme", "planner"),
        container("pg-main", labels={"com.example.role": "database", "tier": "data"}),
        container("pg-replica", labels={"com.example.role": "database", "tier": "replica"}),
    ])
    inventory = described({
        "orchestrator": {"url": "http://o", "container_names": ["prod-orchestrator"]},
        "planner-arm": {"compose_project": "acme", "compose_service": "planner"},
        "postgres": {"labels": {"com.example.role": "database", "tier": "data"}},
    })
    result = collect(
        monkeypatch, api, discovery=inventory["discovery"],
        logs={"tail": 5, "services": ["orchestrator", "planner-arm"]},
        exec_probes=[{"name": "from_planner", "service": "planner-arm", "cmd": "true"}],
    )
    assert api.list_filters == [None]  # one listing of every container, matched here
    services = {r["name"]: (r["service"], r["found_by"], r["compose_service"]) for r in result["containers"]}
    assert services == {
        "prod-orchestrator": ("orchestrator", "name", None),
        "acme-planner-7": ("planner-arm", "compose", "planner"),
        "pg-main": ("postgres", "labels", None),
        "octollm-loadgen-1": ("loadgen", "compose", "loadgen"),
    }
    # the lab's orchestrator and postgres are not the deployment's; nothing of another project but the planner
    assert result["unclaimed"] == ["octollm-orchestrator-1", "octollm-postgres-1"]
    assert set(result["services"]) == {"orchestrator", "planner-arm", "postgres", "loadgen"}
    assert set(result["logs"]) == {"orchestrator", "planner-arm"}
    assert result["logs"]["orchestrator"]["lines"] == ["log line of prod-orchestrator"]
    [probe] = result["exec_probes"]
    assert (probe["container"], probe["output"]) == ("acme-planner-7", "ran in acme-planner-7")

    # the stack check judges the deployment's orchestrator (stopped), not the lab's running one: a problem (1),
    # never "unreachable" (3)
    context = Context(platform="compose", inventory=inventory)
    judged = stack.judge({"containers": dict(result, ok=True), "http": {"ok": True, "probes": {
        "stack_health_orchestrator": {"status": 200}}}}, context)
    by_check = {item["check"]: item for item in judged["findings"]}
    assert by_check["stack.orchestrator"]["status"] == "problem" and judged["down"] == ["orchestrator"]
    assert by_check["stack.planner-arm"]["status"] == "ok" and by_check["stack.postgres"]["status"] == "ok"


def test_named_settings_come_masked_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = ["ORCHESTRATOR_DATABASE_URL=postgresql://octollm:s3cret-pw@pg-wrong:5432/octollm",
           "LLM_API_KEY=sk-live-abcdefghijklmnopqrstuvwx", "DB_POOL_SIZE=5", "UNRELATED=keep-out"]
    api = FakeAPI([container("octollm-orchestrator-1", PROJECT, "orchestrator", env=env)])
    result = collect(monkeypatch, api, environment={
        "names": ["ORCHESTRATOR_DATABASE_URL", "LLM_API_KEY", "DB_POOL_SIZE", "MISSING"], "services": []})
    [record] = result["containers"]
    assert record["environment"] == {
        "ORCHESTRATOR_DATABASE_URL": "postgresql://octollm:[REDACTED:api_key]@pg-wrong:5432/octollm",
        "LLM_API_KEY": "[REDACTED:api_key]",
        "DB_POOL_SIZE": "5",
    }
    assert "s3cret" not in str(result) and "keep-out" not in str(result) and "sk-live" not in str(result)
    assert "environment" not in collect(monkeypatch, api)["containers"][0]  # only when asked


def test_compose_config_names_the_services_as_the_inventory_does() -> None:
    stdout = ('{"services": {"api": {"mem_limit": "268435456", "depends_on": {"db": {}}}, "db": {}, '
              '"orchestrator": {"depends_on": {"db": {}}}}}')
    reduced = cc.reduce_compose_config(0, stdout, "", None, {"api": "orchestrator", "db": "postgres"},
                                       {"orchestrator", "postgres"})
    assert set(reduced["services"]) == {"orchestrator", "postgres"}
    assert reduced["services"]["orchestrator"]["depends_on"] == ["postgres"]
    assert reduced["services"]["orchestrator"]["mem_limit"] == "268435456"  # api's, not the other orchestrator's
