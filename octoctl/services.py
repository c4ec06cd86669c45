"""The quick reference's direct commands on one service of a stack: ``octoctl logs SERVICE`` and ``octoctl shell
postgres|redis``. The stack is the inventory's (docs/deployment.md: each service's Compose service, container names
or labels, Kubernetes selector); credentials come from the inventory (lookups, Vault) in memory and reach a client
only through its environment (``PGPASSWORD``, ``REDISCLI_AUTH``): never on a command line, never printed. Log lines
pass the collection's redaction (credentials, keys, e-mail addresses, card numbers) before ``--grep`` sees them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from octoctl.errors import ExitCode, OctoctlError

VARS = (
    "octollm_platform", "octollm_compose_project", "octollm_services", "octollm_docker_host", "octollm_postgres",
    "octollm_redis", "octollm_k8s_namespace", "octollm_k8s_kubeconfig", "octollm_k8s_context", "octollm_k8s_host",
    "octollm_k8s_validate_certs", "octollm_compose_project_dir", "octollm_compose_files", "octollm_compose_env_file",
)
DURATION = re.compile(r"^(\d+)([smhd])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SHELLS = ("postgres", "redis")


def since_seconds(since: str) -> int:
    """Seconds of ``--since`` (``30s``, ``10m``, ``2h``, ``1d`` or an ISO time); exit 2 for anything else."""
    match = DURATION.match(since.strip())
    if match:
        return int(match[1]) * SECONDS[match[2]]
    try:
        then = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
    except ValueError:
        raise OctoctlError(f"--since {since!r}: give a duration (30s, 10m, 2h, 1d) or an ISO time",
                           ExitCode.USAGE) from None
    if then.tzinfo is None:
        raise OctoctlError(f"--since {since!r}: give the time zone (e.g. 2026-12-07T14:00:00Z)", ExitCode.USAGE)
    return max(1, int((datetime.now(then.tzinfo) - then).total_seconds()))


def grep_pattern(grep: str | None) -> re.Pattern[str] | None:
    if grep is None:
        return None
    try:
        return re.compile(grep)
    except re.error as exc:
        raise OctoctlError(f"--grep {grep!r} is not a regular expression: {exc}", ExitCode.USAGE) from None


@dataclass
class Stack:
    """One stack host of the inventory, as the commands need it (secrets in memory only)."""

    host: str
    platform: str
    project: str
    services: dict[str, dict[str, Any]]
    docker_host: str | None = None
    postgres: dict[str, Any] = field(default_factory=dict)
    redis: dict[str, Any] = field(default_factory=dict)
    k8s: dict[str, Any] = field(default_factory=dict)
    compose: dict[str, Any] = field(default_factory=dict)
    """``{project_dir, files, env_file}`` of the Compose project (what ``rollback`` brings a service up with)."""

    @classmethod
    def from_vars(cls, host: str, found: dict[str, Any]) -> Stack:
        plain = json.loads(json.dumps(found, default=str))  # Ansible's tagged values as plain ones
        k8s = {key[len("octollm_k8s_"):]: value for key, value in plain.items() if key.startswith("octollm_k8s_")}
        platform = plain.get("octollm_platform") or ("kubernetes" if k8s.get("namespace") or k8s.get("kubeconfig")
                                                     else "compose")
        services = {name: spec if isinstance(spec, dict) else {}
                    for name, spec in (plain.get("octollm_services") or {}).items()}
        return cls(host=host, platform=platform, project=plain.get("octollm_compose_project") or "octollm",
                   services=services, docker_host=plain.get("octollm_docker_host"),
                   postgres=plain.get("octollm_postgres") or {}, redis=plain.get("octollm_redis") or {}, k8s=k8s,
                   compose={"project_dir": plain.get("octollm_compose_project_dir"),
                            "files": list(plain.get("octollm_compose_files") or []),
                            "env_file": plain.get("octollm_compose_env_file")})

    def service(self, name: str) -> dict[str, Any]:
        if name not in self.services:
            known = ", ".join(sorted(self.services)) or "none"
            raise OctoctlError(f"no service {name!r} in the inventory of {self.host} (known: {known})", ExitCode.USAGE)
        return self.services[name]

    def docker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        return env


def load_stack(inventory: Path, limit: str | None, collections_paths: list[str] | None = None) -> Stack:
    from octoctl.stackvars import stack_vars

    host, found = stack_vars(inventory, limit, VARS, collections_paths)
    return Stack.from_vars(host, found)


def _redactor() -> Any:
    from octoctl.notify import _redact_module

    module = _redact_module()
    return lambda line: module.redact_pii(line, module.DEFAULT_PII)[0]


# --- logs -----------------------------------------------------------------------------------------------------------


def compose_containers(stack: Stack, name: str) -> list[str]:
    """The containers of a service: its ``container_names``, else by its ``labels``, else by its Compose service."""
    spec = stack.service(name)
    if spec.get("container_names"):
        return list(spec["container_names"])
    filters = [f"label={key}={value}" for key, value in (spec.get("labels") or {}).items()] or [
        f"label=com.docker.compose.project={stack.project}",
        f"label=com.docker.compose.service={spec.get('compose_service') or name}",
    ]
    command = ["docker", "ps", "-a", "--format", "{{.Names}}"]
    for item in filters:
        command += ["--filter", item]
    done = _run(command, stack.docker_env())
    if done.returncode != 0:
        raise OctoctlError(f"the container runtime did not answer: {_first_line(done.stderr)}", ExitCode.ENVIRONMENT)
    return sorted(line for line in done.stdout.splitlines() if line.strip())


def _run(command: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        raise OctoctlError(f"{command[0]} not found on PATH", ExitCode.ENVIRONMENT)
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False,
                              errors="replace")
    except subprocess.TimeoutExpired as exc:
        raise OctoctlError(f"{command[0]} timed out", ExitCode.ENVIRONMENT) from exc


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0][:300] if lines else "no answer"


def compose_log_lines(stack: Stack, name: str, since: int | None, tail: int | None) -> Iterator[tuple[str, str]]:
    containers = compose_containers(stack, name)
    if not containers:
        raise OctoctlError(f"{name} has no container on {stack.host} (project {stack.project})", ExitCode.HUMAN_NEEDED)
    for container in containers:
        command = ["docker", "logs"]
        if since is not None:
            command += ["--since", f"{since}s"]
        if tail is not None:
            command += ["--tail", str(tail)]
        done = _run(command + [container], stack.docker_env())
        if done.returncode != 0:
            raise OctoctlError(f"docker logs {container}: {_first_line(done.stderr)}", ExitCode.ENVIRONMENT)
        # the container's stdout and stderr, each in order (docker logs keeps them apart)
        for line in (done.stdout + done.stderr).splitlines():
            yield container, line


def kubernetes_api(stack: Stack) -> Any:
    from kubernetes import client, config

    try:
        api = config.new_client_from_config(config_file=stack.k8s.get("kubeconfig") or None,
                                            context=stack.k8s.get("context") or None)
    except Exception as exc:  # noqa: BLE001 - any failure to load the kubeconfig is the environment
        raise OctoctlError(f"cannot load the kubeconfig: {_first_line(str(exc))}", ExitCode.ENVIRONMENT) from exc
    if stack.k8s.get("host"):
        api.configuration.host = stack.k8s["host"]
    return client.CoreV1Api(api)


@contextlib.contextmanager
def kubernetes_errors() -> Iterator[None]:
    """The Kubernetes API's failures as octoctl's one-line errors (exit 3: the stack cannot be reached)."""
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as exc:
        raise OctoctlError(f"the Kubernetes API answered {exc.status}: {exc.reason}", ExitCode.ENVIRONMENT) from exc
    except OctoctlError:
        raise
    except Exception as exc:  # noqa: BLE001 - connection refused, TLS: the API cannot be reached
        raise OctoctlError(f"the Kubernetes API cannot be reached: {_first_line(str(exc))}",
                           ExitCode.ENVIRONMENT) from exc


def kubernetes_log_lines(stack: Stack, name: str, since: int | None, tail: int | None,
                         api: Any = None) -> Iterator[tuple[str, str]]:
    spec = stack.service(name)
    namespace = stack.k8s.get("namespace") or "octollm"
    selector = spec.get("k8s_selector") or f"app={name}"
    core = api if api is not None else kubernetes_api(stack)
    from kubernetes.client.exceptions import ApiException

    with kubernetes_errors():
        # raw JSON: only the names are needed, and a pod status the client's models would reject is still a pod
        answer = core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        pods = sorted((item.get("metadata") or {}).get("name") or "" for item in json.loads(answer.data)["items"])
    if not pods:
        raise OctoctlError(f"{name} has no pod ({selector}) in namespace {namespace}", ExitCode.HUMAN_NEEDED)
    for pod in pods:
        options: dict[str, Any] = {}
        if since is not None:
            options["since_seconds"] = since
        if tail is not None:
            options["tail_lines"] = tail
        try:
            answer = core.read_namespaced_pod_log(pod, namespace, _preload_content=False, **options)
            text = answer.data.decode("utf-8", errors="replace")
        except ApiException as exc:
            if exc.status in (400, 404):  # a pod whose container has not started yet has no log: say so, go on
                yield pod, f"[octoctl: no log: {exc.status} {exc.reason}]"
                continue
            raise OctoctlError(f"logs of pod {pod}: {exc.status} {exc.reason}", ExitCode.ENVIRONMENT) from exc
        for line in str(text or "").splitlines():
            yield pod, line


def log_lines(stack: Stack, name: str, since: str | None, grep: str | None, tail: int | None,
              api: Any = None) -> Iterator[str]:
    """The service's log lines, redacted, then filtered by ``grep``; prefixed by the container or pod when the
    service has several."""
    pattern = grep_pattern(grep)
    seconds = since_seconds(since) if since else None
    stack.service(name)
    if stack.platform == "kubernetes":
        lines = kubernetes_log_lines(stack, name, seconds, tail, api)
    else:
        lines = compose_log_lines(stack, name, seconds, tail)
    redact = _redactor()
    items = list(lines)
    several = len({source for source, _ in items}) > 1
    for source, line in items:
        clean = redact(line)
        if pattern is not None and not pattern.search(clean):
            continue
        yield f"{source} | {clean}" if several else clean


# --- shells ---------------------------------------------------------------------------------------------------------


@dataclass
class ShellCommand:
    """A client's command line (no secret in it) and the environment that carries the secret."""

    argv: list[str]
    secret_env: dict[str, str]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.secret_env)
        return env


def shell_command(stack: Stack, which: str, args: tuple[str, ...], admin: bool = False) -> ShellCommand:
    """psql or redis-cli against the inventory's PostgreSQL or Redis, the password in ``PGPASSWORD`` /
    ``REDISCLI_AUTH``: the client on this machine when there is one (the inventory's host and port are what the
    controller reaches, also on Kubernetes); on Compose without it, the client in the service's container (``docker
    exec -e NAME``: the docker CLI hands the value over from its environment)."""
    if which not in SHELLS:
        raise OctoctlError(f"no shell for {which!r}: give postgres or redis", ExitCode.USAGE)
    if which == "postgres":
        pg = stack.postgres
        user = pg.get("admin_user") if admin else pg.get("user")
        password = pg.get("admin_password") if admin else pg.get("password")
        if not user:
            raise OctoctlError(f"the inventory of {stack.host} names no PostgreSQL {'admin ' if admin else ''}user",
                               ExitCode.USAGE)
        client = ["psql", "-h", str(pg.get("host") or "127.0.0.1"), "-p", str(pg.get("port") or 5432),
                  "-U", str(user), "-d", str(pg.get("database") or "octollm")]
        secret = {"PGPASSWORD": str(password)} if password else {}
        service, local = "postgres", "psql"
    else:
        redis = stack.redis
        if admin:
            raise OctoctlError("--admin is for postgres only", ExitCode.USAGE)
        client = ["redis-cli", "-h", str(redis.get("host") or "127.0.0.1"), "-p", str(redis.get("port") or 6379)]
        secret = {"REDISCLI_AUTH": str(redis["password"])} if redis.get("password") else {}
        service, local = "redis", "redis-cli"
    if shutil.which(local) is not None:
        return ShellCommand(client + list(args), secret)
    if stack.platform != "compose":
        raise OctoctlError(f"{local} not found on PATH (install it; the inventory's address is what this machine "
                           "reaches)", ExitCode.ENVIRONMENT)
    containers = compose_containers(stack, service) if service in stack.services else []
    if not containers:
        raise OctoctlError(f"{local} not found on PATH and no {service} container to run it in", ExitCode.ENVIRONMENT)
    exec_argv = ["docker", "exec", "-i"] + (["-t"] if os.isatty(0) and os.isatty(1) else [])
    for name in secret:
        exec_argv += ["-e", name]  # the name only: docker takes the value from its own environment
    return ShellCommand(exec_argv + [containers[0]] + client + list(args), secret)


def run_shell(command: ShellCommand) -> int:
    """Run the client with the terminal; 0 when it succeeded, 1 when it did not (its own messages say why)."""
    try:
        done = subprocess.run(command.argv, env=command.env(), check=False)
    except FileNotFoundError as exc:
        raise OctoctlError(f"{command.argv[0]} not found", ExitCode.ENVIRONMENT) from exc
    return int(ExitCode.HEALTHY) if done.returncode == 0 else int(ExitCode.HUMAN_NEEDED)
