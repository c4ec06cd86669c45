"""The deployment history of a Compose stack, recorded by octoctl (``octoctl history``, ``octoctl rollback``).

Compose keeps no history of what it ran, so octoctl records one per stack and service after every run (diagnose,
fix, prevent, approve, restart, rollback): what the service's container runs - its image id, its configuration
(command, entrypoint, user, working directory, memory and CPU limits, and Compose's hash of the service's compose
config) and its environment. A new revision is recorded only when something changed.

Secrets: the revision index (``<state>/history/<stack>/<service>.json``) holds the environment only as keyed hashes
(HMAC-SHA256 with a key of the state directory, so a short secret cannot be looked up in a table); the values a
rollback needs are kept in one file per revision (``<service>/<revision>.env.json``, mode 0600, in a 0700
directory) - except secrets (a secret-looking name, or a value the collection's redaction masks), never written
down: a rollback takes them from the running container when their digest is the revision's, and stops for a person
when it is not. The rollback's Compose override (mode 0600) holds the values only while the rollback runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from octoctl.errors import ExitCode, OctoctlError

SECRET_NAME = re.compile(r"(?i)(pass|secret|token|key|credential|auth|cookie|private|dsn|salt)")
CONFIG_KEYS = ("command", "entrypoint", "user", "working_dir", "mem_limit", "memswap_limit", "cpus")
"""The configuration recorded and restored (each a Compose service key an override replaces whole)."""
MASK = "***"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def container_state(inspect: dict[str, Any]) -> dict[str, Any]:
    """What a container runs, from ``docker inspect``: ``{container, image, image_id, config, environment,
    compose_config_hash}`` (environment in clear: the caller keeps it out of anything shown)."""
    config = inspect.get("Config") or {}
    host = inspect.get("HostConfig") or {}
    labels = config.get("Labels") or {}
    env: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, sep, value = str(item).partition("=")
        if sep:
            env[key] = value
    memory, swap = int(host.get("Memory") or 0), int(host.get("MemorySwap") or 0)
    return {
        "container": str(inspect.get("Name") or "").lstrip("/"),
        "image": config.get("Image"),
        "image_id": inspect.get("Image"),
        "config": {
            "command": config.get("Cmd"),
            "entrypoint": config.get("Entrypoint"),
            "user": config.get("User") or "",
            "working_dir": config.get("WorkingDir") or "",
            "mem_limit": memory or None,
            "memswap_limit": swap if swap > 0 else None,
            "cpus": (int(host.get("NanoCpus") or 0) / 1e9) or None,
        },
        "environment": env,
        "compose_config_hash": labels.get("com.docker.compose.config-hash"),
    }


@dataclass
class Revision:
    revision: int
    recorded: str
    image: str | None
    image_id: str | None
    config: dict[str, Any]
    environment: dict[str, str]
    """name -> keyed hash of the value (never the value)."""
    compose_config_hash: str | None = None
    run_id: str | None = None
    same_as: int | None = None
    """An older revision this one runs the same image, configuration and environment as (after a rollback)."""
    changes: list[str] = field(default_factory=list)
    """What changed since the revision before (names only)."""

    def state(self) -> tuple[Any, ...]:
        return (self.image_id, json.dumps(self.config, sort_keys=True), json.dumps(self.environment, sort_keys=True))

    def fingerprint(self) -> tuple[Any, ...]:
        return self.state() + (self.compose_config_hash,)

    def as_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision, "recorded": self.recorded, "image": self.image, "image_id": self.image_id,
            "config": self.config, "environment": self.environment, "compose_config_hash": self.compose_config_hash,
            "run_id": self.run_id, "same_as": self.same_as, "changes": self.changes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Revision:
        return cls(revision=int(data["revision"]), recorded=str(data.get("recorded") or ""), image=data.get("image"),
                   image_id=data.get("image_id"), config=dict(data.get("config") or {}),
                   environment=dict(data.get("environment") or {}),
                   compose_config_hash=data.get("compose_config_hash"), run_id=data.get("run_id"),
                   same_as=data.get("same_as"), changes=list(data.get("changes") or []))


def changed_names(old: Revision | None, new: Revision) -> list[str]:
    if old is None:
        return ["first recorded"]
    found = []
    if old.image_id != new.image_id:
        found.append("image")
    found += [key for key in CONFIG_KEYS if (old.config or {}).get(key) != (new.config or {}).get(key)]
    names = sorted(set(old.environment) | set(new.environment))
    found += [f"env {name}" for name in names if old.environment.get(name) != new.environment.get(name)]
    if not found and old.compose_config_hash != new.compose_config_hash:
        found.append("compose config")
    return found


class History:
    """One stack's recorded revisions, per service."""

    def __init__(self, state_dir: Path, stack: str) -> None:
        self.base = state_dir / "history"
        self.root = self.base / _safe(stack)

    # --- storage ---------------------------------------------------------------------------------------------
    def _dir(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
        return path

    @staticmethod
    def _write(path: Path, text: str) -> None:
        """Written whole (a temporary file renamed), mode 0600 from the start."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)

    def _key(self) -> bytes:
        path = self._dir(self.base) / "hash.key"
        if not path.exists():
            self._write(path, secrets.token_hex(32))
        return path.read_text(encoding="utf-8").strip().encode()

    def digest(self, value: str) -> str:
        return "hmac-sha256:" + hmac.new(self._key(), value.encode(), hashlib.sha256).hexdigest()[:16]

    def _index(self, service: str) -> Path:
        return self.root / f"{_safe(service)}.json"

    def _env_file(self, service: str, revision: int) -> Path:
        return self.root / _safe(service) / f"{revision}.env.json"

    def revisions(self, service: str) -> list[Revision]:
        path = self._index(service)
        if not path.exists():
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Revision.from_dict(item) for item in data.get("revisions") or []]

    def services(self) -> list[str]:
        return sorted(path.stem for path in self.root.glob("*.json")) if self.root.is_dir() else []

    def environment(self, service: str, revision: int) -> dict[str, str]:
        """The revision's environment in clear (for the rollback's override only)."""
        path = self._env_file(service, revision)
        if not path.exists():
            raise OctoctlError(f"the environment of revision {revision} of {service} is not kept ({path} is gone)",
                               ExitCode.HUMAN_NEEDED)
        return dict(json.loads(path.read_text(encoding="utf-8")))

    # --- recording ---------------------------------------------------------------------------------------------
    def record(self, service: str, state: dict[str, Any], run_id: str | None = None) -> tuple[Revision, bool]:
        """Record ``state`` (``container_state``) as a new revision when it differs from the latest one;
        ``(latest revision, whether it is new)``."""
        found = self.revisions(service)
        latest = found[-1] if found else None
        env = dict(state.get("environment") or {})
        candidate = Revision(
            revision=(latest.revision + 1) if latest else 1, recorded=_now(), image=state.get("image"),
            image_id=state.get("image_id"), config=dict(state.get("config") or {}),
            environment={name: self.digest(value) for name, value in sorted(env.items())},
            compose_config_hash=state.get("compose_config_hash"), run_id=run_id)
        if latest is not None and latest.fingerprint() == candidate.fingerprint():
            return latest, False
        candidate.same_as = next((old.revision for old in reversed(found) if old.state() == candidate.state()), None)
        candidate.changes = changed_names(latest, candidate)
        self._dir(self.root / _safe(service))
        # never a secret on disk: those are kept as digests only (a rollback takes them from the running container)
        kept = {name: value for name, value in env.items() if not is_secret(name, value)}
        self._write(self._env_file(service, candidate.revision), json.dumps(kept, sort_keys=True))
        self._write(self._index(service), json.dumps(
            {"service": service, "revisions": [item.as_dict() for item in found + [candidate]]}, indent=1))
        return candidate, True

    def images(self) -> dict[str, list[str]]:
        """``{service: [image id, newest revision first]}`` (each id once)."""
        found: dict[str, list[str]] = {}
        for service in self.services():
            ids: list[str] = []
            for item in reversed(self.revisions(service)):
                if item.image_id and item.image_id not in ids:
                    ids.append(item.image_id)
            found[service] = ids
        return found


def revision_images(state_dir: Path) -> dict[str, Any]:
    """The extra var ``resource_exhaustion_revision_images``: ``{"<stack>/<service>": [image id, newest first]}`` of
    every stack octoctl recorded (Resource Exhaustion's prune keeps those of the last revisions); none without a
    history."""
    base = state_dir / "history"
    found: dict[str, list[str]] = {}
    if base.is_dir():
        for stack in sorted(path.name for path in base.iterdir() if path.is_dir()):
            for service, ids in History(state_dir, stack).images().items():
                if ids:
                    found[f"{stack}/{service}"] = ids
    return {"resource_exhaustion_revision_images": found} if found else {}


# --- rollback -----------------------------------------------------------------------------------------------------
def is_secret(name: str, value: Any) -> bool:
    """A setting octoctl never writes down: a secret-looking name, or a value the collection's redaction masks (a
    URL with a password, a key)."""
    if SECRET_NAME.search(name):
        return True
    try:
        from octoctl.services import _redactor

        return bool(_redactor()(str(value)) != str(value))
    except Exception:  # noqa: BLE001 - without the collection's redaction, the name decides
        return False


def _shown(name: str, value: Any, redact: Any = None) -> str:
    if value is None:
        return "(unset)"
    if SECRET_NAME.search(name):
        return MASK
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return redact(text) if redact is not None else text


RESET = "!reset"


class _ComposeDumper(yaml.SafeDumper):
    """YAML with Compose's merge tags: ``!reset []`` (env_file) and ``!override`` (environment)."""


def _represent(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    service = dict(data)
    node = dumper.represent_dict(service)
    for key_node, value_node in node.value:
        if key_node.value == "environment":
            value_node.tag = "!override"
        elif key_node.value == "env_file":
            value_node.tag = "!reset"
    return node


class _Service(dict[str, Any]):
    """A Compose service of the override (its environment and env_file tagged)."""


_ComposeDumper.add_representer(_Service, _represent)


@dataclass
class RollbackPlan:
    service: str
    from_revision: int
    to_revision: int
    override: dict[str, Any]
    """The Compose service keys to set (values in clear: written only to the 0600 override file)."""
    changes: list[str]
    """The change as shown (secrets masked)."""


def plan_rollback(history: History, service: str, now: dict[str, Any], to_revision: int | None,
                  redact: Any = None) -> RollbackPlan:
    """What bringing ``service`` back to ``to_revision`` (None: the revision before the latest) changes, from the
    running state ``now`` (``container_state``, already recorded as the latest revision). Exit 2 for a revision
    the history does not hold; 1 when there is nothing to go back to."""
    found = history.revisions(service)
    if not found:
        raise OctoctlError(f"no deployment history of {service} yet (octoctl records it on every run)",
                           ExitCode.HUMAN_NEEDED)
    latest = found[-1]
    if to_revision is None:
        if len(found) < 2:
            raise OctoctlError(f"{service} has one recorded revision ({latest.revision}): no previous revision to "
                               "roll back to", ExitCode.HUMAN_NEEDED)
        target = found[-2]
    else:
        named = [item for item in found if item.revision == to_revision]
        if not named:
            held = ", ".join(str(item.revision) for item in found)
            raise OctoctlError(f"{service} has no revision {to_revision} (recorded: {held})", ExitCode.USAGE)
        target = named[0]
    then_env = history.environment(service, target.revision)
    now_env = dict(now.get("environment") or {})
    # the revision's secrets were kept as digests only: the running value where it is the same, else a person
    differing = []
    for name, digest in sorted(target.environment.items()):
        if name in then_env:
            continue
        if name in now_env and history.digest(now_env[name]) == digest:
            then_env[name] = now_env[name]
        else:
            differing.append(name)
    if differing:
        raise OctoctlError(f"revision {target.revision} of {service} ran other values of {', '.join(differing)} "
                           "(secrets: octoctl keeps only their digests): set them back where the stack keeps its "
                           "secrets, then roll back", ExitCode.HUMAN_NEEDED)
    override: dict[str, Any] = {}
    changes: list[str] = []
    if target.image_id and target.image_id != now.get("image_id"):
        override["image"] = target.image_id
        override["pull_policy"] = "never"  # the recorded image by id: it is local (the prune keeps it)
        changes.append(f"image: {now.get('image')} ({str(now.get('image_id'))[:19]}) -> {target.image} "
                       f"({target.image_id[:19]})")
    then_config, now_config = target.config or {}, now.get("config") or {}
    for key in CONFIG_KEYS:
        if then_config.get(key) != now_config.get(key) and then_config.get(key) is not None:
            override[key] = then_config[key]
            changes.append(f"{key}: {_shown(key, now_config.get(key), redact)} -> "
                           f"{_shown(key, then_config[key], redact)}")
    names = sorted(set(then_env) | set(now_env))
    changed = [name for name in names if now_env.get(name) != then_env.get(name)]
    changes += [f"env {name}: {_shown(name, now_env.get(name), redact)} -> {_shown(name, then_env.get(name), redact)}"
                for name in changed]
    if override or changed:
        # the revision's whole environment replaces the service's (env_file reset, environment overridden: Compose
        # 2.24+), so that a setting added since is gone again
        override["env_file"] = RESET
        override["environment"] = dict(sorted(then_env.items()))
    return RollbackPlan(service=service, from_revision=latest.revision, to_revision=target.revision,
                        override=override, changes=changes)


def write_override(history: History, compose_service: str, plan: RollbackPlan) -> Path:
    """The Compose file that brings the revision back (mode 0600: it holds the revision's values)."""
    path = history._dir(history.root / "rollback") / f"{_safe(plan.service)}.yaml"
    text = (f"# octoctl rollback {plan.service} to revision {plan.to_revision} (holds the revision's environment: "
            "keep it private)\n")
    service = _Service({key: ([] if value == RESET else value) for key, value in plan.override.items()})
    history._write(path, text + yaml.dump({"services": {compose_service: service}}, Dumper=_ComposeDumper,
                                          sort_keys=True))
    return path


def differences(history: History, service: str, revision: int, now: dict[str, Any]) -> list[str]:
    """What of revision ``revision`` the running state ``now`` does not have (empty: it runs that revision's image,
    configuration and environment), names only."""
    target = next((item for item in history.revisions(service) if item.revision == revision), None)
    if target is None:
        return [f"no revision {revision}"]
    found = []
    if target.image_id != now.get("image_id"):
        found.append(f"image {str(now.get('image_id'))[:19]} (revision {revision}: {str(target.image_id)[:19]})")
    found += [key for key in CONFIG_KEYS if (target.config or {}).get(key) is not None
              and (target.config or {}).get(key) != (now.get("config") or {}).get(key)]
    env = now.get("environment") or {}
    found += [f"env {name}" for name in sorted(set(target.environment) | set(env))
              if name not in env or name not in target.environment
              or history.digest(env[name]) != target.environment[name]]
    return found


def render(service: str, revisions: list[dict[str, Any]], fmt: str) -> str:
    """``octoctl history``'s table or JSON (no value of the environment: names of what changed only)."""
    if fmt == "json":
        return json.dumps({"service": service, "revisions": revisions}, indent=2)
    lines = [f"{'REV':>4}  {'RECORDED':<20}  {'IMAGE':<40}  CHANGE"]
    for item in revisions:
        image = f"{item.get('image') or '?'} {str(item.get('image_id') or '')[7:19]}".strip()
        change = item.get("change") or ""
        mark = " (running)" if item.get("current") else ""
        lines.append(f"{item['revision']:>4}  {str(item.get('recorded') or '')[:20]:<20}  {image[:40]:<40}  "
                     f"{change}{mark}")
    return "\n".join(lines)


# --- reading the stack ------------------------------------------------------------------------------------------
def compose_states(stack: Any, only: str | None = None) -> dict[str, dict[str, Any]]:
    """``{service: container_state}`` of the running containers of the stack's services (``only``: one service):
    those of the inventory's Compose project found by its labels in one listing, the others (``container_names``,
    ``labels``) by ``octoctl logs``' discovery; one ``docker inspect`` for all. A service with several containers
    is recorded by its first (sorted by name)."""
    from octoctl.services import _first_line, _run, compose_containers

    env = stack.docker_env()
    wanted = [only] if only else sorted(stack.services)
    by_project = {(spec.get("compose_service") or name): name for name, spec in stack.services.items()
                  if name in wanted and not spec.get("container_names") and not spec.get("labels")}
    names: dict[str, list[str]] = {}
    if by_project:
        listed = _run(["docker", "ps", "--filter", f"label=com.docker.compose.project={stack.project}", "--format",
                       '{{.Names}}\t{{.Label "com.docker.compose.service"}}'], env)
        if listed.returncode != 0:
            raise OctoctlError(f"the container runtime did not answer: {_first_line(listed.stderr)}",
                               ExitCode.ENVIRONMENT)
        for line in listed.stdout.splitlines():
            container, _, compose_service = line.partition("\t")
            if compose_service in by_project:
                names.setdefault(by_project[compose_service], []).append(container)
    for name in wanted:
        if name not in by_project.values():
            names[name] = compose_containers(stack, name)
    first = {name: sorted(found)[0] for name, found in names.items() if found}
    if not first:
        return {}
    inspected = _run(["docker", "inspect", *first.values()], env)
    if inspected.returncode != 0:
        raise OctoctlError(f"docker inspect: {_first_line(inspected.stderr)}", ExitCode.ENVIRONMENT)
    by_name = {str(item.get("Name") or "").lstrip("/"): item for item in json.loads(inspected.stdout or "[]")}
    return {name: container_state(by_name[container]) for name, container in first.items()
            if container in by_name and (by_name[container].get("State") or {}).get("Running")}


def record_stack(state_dir: Path, stack: Any, run_id: str | None = None,
                 only: str | None = None) -> dict[str, tuple[Revision, bool]]:
    """Record every running service of a Compose stack; ``{service: (latest revision, new)}``."""
    history = History(state_dir, stack.host)
    return {service: history.record(service, state, run_id)
            for service, state in sorted(compose_states(stack, only).items())}


def record_after_run(settings: Any, request: Any, report: Any) -> None:
    """The engine's ``after_run``: record the history of each Compose stack the run reached (a stack that cannot
    be read is a note, never a failure of the run)."""
    from octoctl.services import load_stack

    paths = [str(p) for p in settings.effective_collections_paths()]
    if request.command == "health":  # read-only and frequent (--watch): it records nothing
        return
    for target in report.targets:
        if not target.reachable:
            continue
        try:
            stack = load_stack(request.inventory, target.target, paths)
            if stack.platform != "compose" or not stack.services:  # only the services the inventory describes
                continue
            new = [f"{service} {revision.revision}" for service, (revision, created)
                   in record_stack(settings.state_dir, stack, report.run_id).items() if created]
        except OctoctlError as exc:
            report.notes.append(f"deployment history of {target.target} not recorded: {exc.message}")
            continue
        except Exception as exc:  # noqa: BLE001 - the run is done: its report must not be lost to the history
            report.notes.append(f"deployment history of {target.target} not recorded: {type(exc).__name__}: {exc}")
            continue
        if new:
            report.notes.append(f"deployment history of {target.target}: new revision of {', '.join(new)} "
                                "(octoctl history SERVICE)")


COMPOSE_DEFAULTS = (("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"),
                    ("compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml",
                     "docker-compose.override.yml"))


def compose_files(stack: Any) -> list[str]:
    """The project's Compose files as ``docker compose`` reads them: the inventory's, else the project
    directory's default file and its override (named explicitly, one more file can follow them)."""
    if stack.compose.get("files"):
        return [str(item) for item in stack.compose["files"]]
    directory = Path(stack.compose.get("project_dir") or ".")
    found = []
    for names in COMPOSE_DEFAULTS:
        first = next((directory / name for name in names if (directory / name).is_file()), None)
        if first is not None:
            found.append(str(first))
    if not found:
        raise OctoctlError(f"no Compose file in {directory} (set octollm_compose_files in the inventory)",
                           ExitCode.USAGE)
    return found


REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"


def replicaset_rows(deployment: dict[str, Any], replicasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``kubectl rollout history``: the Deployment's ReplicaSets (owned by it) by revision, oldest first."""
    name = (deployment.get("metadata") or {}).get("name")
    current = str(((deployment.get("metadata") or {}).get("annotations") or {}).get(REVISION) or "")
    rows = []
    for rs in replicasets:
        meta = rs.get("metadata") or {}
        if not any(o.get("kind") == "Deployment" and o.get("name") == name for o in meta.get("ownerReferences") or []):
            continue
        revision = str((meta.get("annotations") or {}).get(REVISION) or "")
        if not revision.isdigit():
            continue
        containers = (((rs.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        rows.append({"revision": int(revision), "recorded": meta.get("creationTimestamp"),
                     "replicaset": meta.get("name"),
                     "image": ", ".join(str(c.get("image")) for c in containers), "image_id": "",
                     "replicas": int((rs.get("spec") or {}).get("replicas") or 0),
                     "change": (meta.get("annotations") or {}).get(CHANGE_CAUSE) or f"ReplicaSet {meta.get('name')}",
                     "current": revision == current})
    return sorted(rows, key=lambda row: row["revision"])


def kubernetes_revisions(stack: Any, service: str) -> list[dict[str, Any]]:
    from kubernetes import client

    from octoctl.services import kubernetes_api, kubernetes_errors

    namespace = stack.k8s.get("namespace") or "octollm"
    selector = stack.service(service).get("k8s_selector") or f"app={service}"
    apps: Any = client.AppsV1Api(kubernetes_api(stack).api_client)
    with kubernetes_errors():
        # raw JSON, as octoctl logs reads pods
        deployments = json.loads(apps.list_namespaced_deployment(namespace, label_selector=selector,
                                                                 _preload_content=False).data)["items"]
        replicasets = json.loads(apps.list_namespaced_replica_set(namespace, label_selector=selector,
                                                                  _preload_content=False).data)["items"]
    if not deployments:
        raise OctoctlError(f"{service} has no Deployment ({selector}) in namespace {namespace}", ExitCode.HUMAN_NEEDED)
    return replicaset_rows(deployments[0], replicasets)
