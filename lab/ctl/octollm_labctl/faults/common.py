"""Helpers that faults of several components share: containers, the state dir's files, clients of the stack."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from octollm_labctl.errors import Kind, LabError
from octollm_labctl.lab import OVERRIDE_HEADER, Lab, run


# ---- containers ---------------------------------------------------------------------------------------------
def containers_of(lab: Lab, service: str) -> list[str]:
    out = lab.compose("ps", "--all", "--quiet", service, check=False).stdout.split()
    if not out:
        raise LabError(f"no container for service {service!r} (is the lab up?)", Kind.USAGE)
    return out


def main_pid(container: str) -> int:
    pid = int(run(["docker", "inspect", "-f", "{{.State.Pid}}", container]).stdout.strip() or 0)
    if pid <= 0:
        raise LabError(f"container {container[:12]} is not running", Kind.UNHEALTHY)
    return pid


def inspect(container: str) -> dict[str, Any]:
    return json.loads(run(["docker", "inspect", container]).stdout)[0]


# ---- the state dir's deployment files: the Compose override and the services' env file ---------------------
def edit_override(lab: Lab, service: str, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Apply ``edit`` to a service's entry in the state dir's Compose override (an entry left empty is dropped)."""
    import yaml

    path = lab.state / "compose.override.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    services = doc.get("services") or {}
    doc["services"] = services
    entry = services.get(service) or {}
    edit(entry)
    if entry:
        services[service] = entry
    else:
        services.pop(service, None)
    path.write_text(OVERRIDE_HEADER + yaml.safe_dump(doc, sort_keys=False))


def override_env(lab: Lab, service: str, env: dict[str, str] | None) -> None:
    """Set (or with None remove) a service's extra environment in the state dir's Compose override."""
    if env:
        edit_override(lab, service, lambda entry: entry.setdefault("environment", {}).update(env))
    else:
        edit_override(lab, service, lambda entry: entry.pop("environment", None))


def set_lab_env(lab: Lab, key: str, value: str) -> str | None:
    """Set KEY=value in the services' env file (lab.env); return the previous value. KEY is lab.env's name: in the
    minimal profile an orchestrator setting is its prefixed name in orchestrator.env (``Lab.setting_file_and_name``)."""
    locate = getattr(lab, "setting_file_and_name", None)
    path, key = locate(key) if locate else (lab.state / "lab.env", key)
    lines = path.read_text().splitlines()
    previous = None
    for index, line in enumerate(lines):
        if line.startswith(key + "="):
            previous = line.split("=", 1)[1]
            lines[index] = f"{key}={value}"
            break
    else:
        lines.append(f"{key}={value}")
    path.write_text("\n".join(lines) + "\n")
    return previous


def seed_endpoints_only(lab: Lab, fault: str) -> None:
    """Refuse a fault that needs one of the lab's own endpoints (/debug/*) on a profile that offers only the seed's."""
    profile = getattr(lab, "profile", None)
    if profile is not None and profile.seed_endpoints_only:
        raise LabError(f"{fault} needs the lab's debug endpoints, which the {profile.name} profile does not offer",
                       Kind.USAGE)


# ---- clients of the stack ---------------------------------------------------------------------------------
def post_json(url: str, body: dict[str, Any], timeout: float = 10) -> Any:
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as answer:
        return json.loads(answer.read() or b"null")


def redis_client(lab: Lab) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, password=lab.secret("redis_password"), socket_timeout=5)


def pg_admin(lab: Lab) -> Any:
    import psycopg2

    return psycopg2.connect(host="127.0.0.1", port=5432, dbname="octollm", user="postgres",
                            password=lab.secret("postgres_admin_password"), connect_timeout=5)
