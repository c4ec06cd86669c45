"""The lab's minimal profile without Docker: the services' switches (only the seed's endpoints, settings under a
prefix with a database URL, metrics under a prefix), the profile's state files and Compose project, and `octoctl lab`
acting on the profile the state directory records."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from octoctl.cli import cli
from octoctl.errors import ExitCode
from octollm_labctl import Lab, LabError, LabSettings, faults
from octollm_labctl.errors import Kind
from octollm_labctl.faults.common import set_lab_env
from octollm_labctl.lab import LAB_DIR, PROFILES, recorded_profile

APP = Path(__file__).resolve().parents[2] / "lab" / "app"
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(APP))

from octollm_lab import common, db, orchestrator, web  # noqa: E402

LAB_ONLY_ROUTES = {"/debug/leak", "/debug/memory", "/debug/delay", "/api/v1/arms", "/api/v1/route/score",
                   "/api/v1/cache/warm"}


def routes(app: Any) -> set[str]:
    return {pattern for _, pattern, _, _ in app.router.routes}


def fake_orchestrator(app: Any) -> Any:
    """An Orchestrator over stand-ins: its routes and its /health body are what the test reads."""
    database = SimpleNamespace(ping=lambda: None, in_use=lambda: 1, maxconn=10, leaked=[])
    registry = SimpleNamespace(is_healthy=lambda name: True, health_summary=lambda: {"coder-arm": "healthy"})
    llm = SimpleNamespace(primary=SimpleNamespace(breaker=SimpleNamespace(state="closed")), model="gpt-4")
    return orchestrator.Orchestrator(app, database, SimpleNamespace(ping=lambda: True), llm, registry)


@pytest.mark.parametrize("endpoints", ["full", "seed"])
def test_the_services_offer_the_lab_endpoints_only_in_the_full_profile(monkeypatch: pytest.MonkeyPatch,
                                                                      endpoints: str) -> None:
    monkeypatch.setenv("LAB_ENDPOINTS", endpoints)
    app = web.App("orchestrator")
    orch = fake_orchestrator(app)
    offered = routes(app)
    assert {"/health", "/ready", "/metrics", "/api/v1/tasks", "/api/v1/tasks/{task_id}",
            "/api/v1/arms/register"} <= offered
    health = orch.health(None).body
    assert health["status"] == "ok"
    if endpoints == "full":
        assert offered >= LAB_ONLY_ROUTES
        assert health["checks"]["db_pool"] == {"in_use": 1, "max": 10, "leaked": 0}
        assert signal.SIGUSR1 not in app.signal_hooks
    else:
        assert not LAB_ONLY_ROUTES & offered
        assert "db_pool" not in health["checks"]
        # the lab's leak switch without an endpoint: SIGUSR1, at LEAK_SIGNAL_MB_PER_SECOND
        monkeypatch.setenv("LEAK_SIGNAL_MB_PER_SECOND", "0")
        app.signal_hooks[signal.SIGUSR1]()
        assert app.leaker.status()["enabled"] is True
        app.leaker.configure(enabled=False)


def test_guardian_reload_endpoint_only_in_the_full_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from octollm_lab import arm

    blocked = tmp_path / "blocked.txt"
    blocked.write_text("rm -rf /\n")
    guardian = SimpleNamespace(reload=lambda: {"reloaded": True})
    full = arm.create_app(arm.ArmConfig.for_name("guardian-arm"), guardian)
    monkeypatch.setenv("LAB_ENDPOINTS", "seed")
    seed = arm.create_app(arm.ArmConfig.for_name("guardian-arm"), guardian)
    assert "/api/v1/reload" in routes(full) and "/api/v1/reload" not in routes(seed)
    assert {"/api/v1/check", "/health", "/capabilities", "/execute"} <= routes(seed)
    assert signal.SIGHUP in seed.signal_hooks


def test_settings_are_read_under_the_prefix_and_the_database_from_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "ignored.example")
    monkeypatch.setenv("DB_POOL_SIZE", "99")
    monkeypatch.setenv("SETTINGS_PREFIX", "ORCHESTRATOR_")
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "postgresql://app:s3cret@db.example:6543/stack")
    monkeypatch.setenv("ORCHESTRATOR_DB_POOL_SIZE", "3")
    assert common.env_int("DB_POOL_SIZE", 5) == 3
    assert db.dsn_from_env("orchestrator") == {
        "host": "db.example", "port": 6543, "dbname": "stack", "user": "app", "password": "s3cret",
        "application_name": "orchestrator", "connect_timeout": 3,
    }
    monkeypatch.delenv("SETTINGS_PREFIX")  # the full lab: the unprefixed names, no URL
    monkeypatch.delenv("ORCHESTRATOR_DATABASE_URL")
    assert db.dsn_from_env("orchestrator")["host"] == "ignored.example"
    assert common.env_int("DB_POOL_SIZE", 5) == 99


def test_the_orchestrator_exports_its_metrics_under_the_prefix() -> None:
    """Metric names are fixed at import: a fresh interpreter with METRICS_PREFIX, as the minimal profile starts it."""
    code = ("import octollm_lab.orchestrator\n"
            "from prometheus_client import REGISTRY\n"
            "print('\\n'.join(sorted(m.name for m in REGISTRY.collect())))\n")
    env = dict(os.environ, PYTHONPATH=str(APP), METRICS_PREFIX="orchestrator_")
    names = set(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                               timeout=60).stdout.split())
    # prometheus_client names a counter without its _total
    assert {"orchestrator_http_request_duration_seconds", "orchestrator_http_requests", "orchestrator_cache_hits",
            "orchestrator_cache_misses", "orchestrator_llm_api_calls", "orchestrator_llm_circuit_state",
            "orchestrator_tasks", "orchestrator_db_pool_in_use"} <= names
    assert not {"http_request_duration_seconds", "cache_hits", "llm_api_calls", "octollm_tasks"} & names
    assert common.metric_name("cache_hits_total") == "cache_hits_total"  # unset: the full lab's names


def lab_in(tmp_path: Path, profile: str | None = None) -> Lab:
    return Lab(LabSettings(state_dir=tmp_path), profile=profile)


def test_the_minimal_profile_renders_the_orchestrators_own_settings_and_secrets(tmp_path: Path) -> None:
    lab = lab_in(tmp_path, "minimal")
    lab.render_state()
    settings = (tmp_path / "orchestrator.env").read_text().splitlines()
    assert "ORCHESTRATOR_DB_POOL_SIZE=5" in settings and "ORCHESTRATOR_LLM_RATE_PER_MINUTE=600" in settings
    assert not [line for line in settings if line and not line.startswith(("#", "ORCHESTRATOR_"))]
    secrets = tmp_path / "orchestrator.secrets.env"
    assert secrets.stat().st_mode & 0o777 == 0o600
    password = lab.secret("postgres_password")
    assert f"ORCHESTRATOR_DATABASE_URL=postgresql://octollm:{password}@127.0.0.1:5432/octollm" in secrets.read_text()
    # the orchestrator's settings move to orchestrator.env under the prefix; the others stay in lab.env
    assert set_lab_env(lab, "DB_POOL_SIZE", "1") == "5"
    assert "ORCHESTRATOR_DB_POOL_SIZE=1" in (tmp_path / "orchestrator.env").read_text().splitlines()
    assert "DB_POOL_SIZE=5" in (tmp_path / "lab.env").read_text().splitlines()
    assert lab.setting_file_and_name("LLM_PROVIDER_RPM") == (tmp_path / "lab.env", "LLM_PROVIDER_RPM")
    lab.set_database_url("127.0.0.2")
    assert "@127.0.0.2:5432/" in secrets.read_text()
    # the full profile renders none of it, and its settings stay in lab.env
    full = lab_in(tmp_path / "full", "full")
    full.render_state()
    assert not (tmp_path / "full" / "orchestrator.env").exists()
    assert full.setting_file_and_name("DB_POOL_SIZE") == (tmp_path / "full" / "lab.env", "DB_POOL_SIZE")


def test_each_profile_is_its_own_compose_project_and_the_state_records_which_is_up(tmp_path: Path) -> None:
    assert lab_in(tmp_path).profile.name == "full"  # nothing recorded: the full lab
    full, minimal = lab_in(tmp_path, "full"), lab_in(tmp_path, "minimal")
    assert full.project == "octollm" and minimal.project == "llmstack"
    assert full.compose_files() == [LAB_DIR / "compose.yaml", tmp_path / "compose.override.yaml"]
    assert minimal.compose_files() == [LAB_DIR / "compose.yaml", LAB_DIR / "profiles" / "minimal.yaml",
                                       tmp_path / "compose.override.yaml"]
    assert minimal.compose_args()[:4] == ["docker", "compose", "--project-name", "llmstack"]
    (tmp_path / "profile").write_text("minimal\n")
    assert recorded_profile(tmp_path) == "minimal" and lab_in(tmp_path).project == "llmstack"
    with pytest.raises(LabError) as raised:
        lab_in(tmp_path, "tiny")
    assert raised.value.kind == Kind.USAGE


def test_the_inventory_maps_the_minimal_profile() -> None:
    """inventory/lab-minimal names what the profile is: its project and Compose files, the orchestrator's settings and
    metrics under their prefixes, /ready, no optional probe, and no lab variable the roles would fall back on."""
    inventory = yaml.safe_load((REPO / "inventory" / "lab-minimal" / "group_vars" / "octollm.yml").read_text())
    assert inventory["octollm_compose_project"] == PROFILES["minimal"].project
    assert [Path(f).name for f in inventory["octollm_compose_files"]] == [
        p.name for p in lab_in(Path("/state"), "minimal").compose_files()]
    assert "octollm_lab_state_dir" not in inventory
    orch = inventory["octollm_services"]["orchestrator"]
    assert orch["ready_path"] == "/ready"
    assert orch["settings"]["database_url"] == "ORCHESTRATOR_DATABASE_URL" and orch["settings"]["db_host"] is None
    prefix = PROFILES["minimal"].settings_prefix
    assert all(name is None or name.startswith(prefix) for name in orch["settings"].values())
    assert all(name.startswith("orchestrator_") for name in orch["metrics"].values())
    assert not any(service.get("probes") for service in inventory["octollm_services"].values())


def test_the_overlay_gives_the_orchestrator_only_its_own_env_files(tmp_path: Path) -> None:
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                        timeout=20).returncode != 0:
        pytest.skip("[needs-install] docker compose (scripts/setup.sh links it)")
    lab = lab_in(tmp_path, "minimal")
    lab.render_state()
    config = yaml.safe_load(lab.compose("config").stdout)
    assert config["name"] == "llmstack"
    env = config["services"]["orchestrator"]["environment"]
    assert env["SETTINGS_PREFIX"] == "ORCHESTRATOR_" and env["METRICS_PREFIX"] == "orchestrator_"
    assert "POSTGRES_HOST" not in env and "DB_POOL_SIZE" not in env and "ORCHESTRATOR_DATABASE_URL" in env
    assert all(config["services"][name]["environment"]["LAB_ENDPOINTS"] == "seed"
               for name in ("planner-arm", "guardian-arm", "loadgen"))
    assert "score" not in config["services"]["loadgen"]["environment"]["LOADGEN_MIX"]


def test_up_switches_profiles_and_the_other_commands_act_on_the_recorded_one(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    """`octoctl lab up --profile minimal` over a running full lab heals and takes the full lab down first; status,
    break, heal and down then act on the minimal profile the state directory records."""
    calls: list[str] = []
    monkeypatch.setattr(Lab, "require_docker", lambda self: None)
    monkeypatch.setattr(Lab, "others_running", lambda self: [p for p in PROFILES if p != self.profile.name
                                                             and (tmp_path / "running").read_text() == p])
    monkeypatch.setattr(faults, "heal_all", lambda lab: calls.append(f"heal_all {lab.profile.name}") or [])
    monkeypatch.setattr(Lab, "down", lambda self, volumes=False: calls.append(f"down {self.profile.name}"))

    def up(self: Lab, timeout: float = 240) -> None:
        (tmp_path / "profile").write_text(self.profile.name)
        (tmp_path / "running").write_text(self.profile.name)
        calls.append(f"up {self.profile.name}")

    monkeypatch.setattr(Lab, "up", up)
    monkeypatch.setattr(Lab, "wait_healthy", lambda self, timeout=120: None)
    monkeypatch.setattr("octoctl.listener.lab_listener_up",
                        lambda state, echo, inventory=None: calls.append(f"listener {inventory and inventory.name}"))
    monkeypatch.setattr("octoctl.listener.lab_listener_down", lambda state: None)
    (tmp_path / "running").write_text("full")
    env = {"OCTOLLM_LAB_STATE": str(tmp_path)}
    result = CliRunner().invoke(cli, ["lab", "up", "--profile", "minimal"], env=env)
    assert result.exit_code == 0, result.output
    # the listener answers the minimal profile's alerts with its inventory
    assert calls == ["heal_all full", "down full", "up minimal", "listener lab-minimal"]
    assert recorded_profile(tmp_path) == "minimal"
    calls.clear()
    result = CliRunner().invoke(cli, ["lab", "down"], env=env)
    assert result.exit_code == 0, result.output
    assert calls == ["heal_all minimal", "down minimal"]
    result = CliRunner().invoke(cli, ["lab", "up", "--profile", "tiny"], env=env)
    assert result.exit_code == ExitCode.USAGE
