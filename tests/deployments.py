"""Deployments as an inventory describes them, for tests that judge built evidence (docs/deployment.md).

``inventory("lab")`` is the non-secret half of ``inventory/lab`` as the ``procedure_run`` lookup hands it to the
procedures (its services with their optional probes, PostgreSQL's applications and schema, the container metrics):
what a unit test of the full lab judges with. ``renamed()`` is a deployment laid out differently from the seed, in
the ways real ones are: settings under another prefix with the database as one URL, metrics with a prefix, no
optional probe, another schema. A plain module: pytest puts ``tests/`` on sys.path (its conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def inventory(name: str = "lab", **extra: Any) -> dict[str, Any]:
    """The run's inventory (``Context.inventory`` before it is described) of ``inventory/<name>``."""
    data = yaml.safe_load((REPO / "inventory" / name / "group_vars" / "octollm.yml").read_text())
    postgres = {key: value for key, value in (data.get("octollm_postgres") or {}).items()
                if key in ("applications", "schema")}
    found: dict[str, Any] = {
        "services": data.get("octollm_services") or {},
        "postgres": postgres,
        "compose": {"project": data.get("octollm_compose_project") or "octollm"},
        "metrics": data.get("octollm_metrics") or {},
    }
    found.update(extra)
    return found


# The orchestrator of a stack laid out differently: another service name in Compose, settings under a prefix with
# the database as one URL, metrics with a prefix, and none of the optional probes.
RENAMED_ORCHESTRATOR: dict[str, Any] = {
    "port": 8080,
    "url": "http://api.internal:8080",
    "compose_service": "api",
    "settings": {
        "database_url": "APP_DATABASE_URL",
        "db_host": None,
        "db_port": None,
        "db_pool_size": "APP_DB_POOL",
        "db_pool_max_overflow": "APP_DB_OVERFLOW",
        "response_cache": "APP_LLM_CACHE",
    },
    "metrics": {
        "http_request_duration": "orchestrator_http_request_duration_seconds",
        "llm_duration": "orchestrator_llm_api_duration_seconds",
    },
}
# ... and its schema: its own search path, other table names, other status values.
RENAMED_SCHEMA: dict[str, Any] = {
    "search_path": "octo",
    "tables": {"tasks": "jobs", "action_log": "job_events", "entities": "kg_entities",
               "relationships": "kg_edges"},
    "task_statuses": {"pending": "queued", "running": "in_progress", "cancelled": "aborted"},
}


def renamed(services: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A deployment laid out differently from the seed: the lab's services with the orchestrator renamed as above
    (``services`` adds or replaces entries), no optional probe, another schema."""
    lab = inventory("lab")
    found = {name: {key: value for key, value in (spec or {}).items() if key != "probes"}
             for name, spec in lab["services"].items()}
    found["orchestrator"] = dict(RENAMED_ORCHESTRATOR)
    found.update(services or {})
    return dict({"services": found, "postgres": {"applications": ["api"], "schema": dict(RENAMED_SCHEMA)},
                 "compose": {"project": "llmstack"}, "metrics": {"containers": "cadvisor"}}, **extra)
