"""Every entry point honours the stack's run lock (the CLI's engine is the LockedEngine; fix, approve and prevent
run inside the lock of the stacks they target), and the listener's pieces: its /metrics server, the environment and
command it gives ansible-rulebook, the service with a pid file."""

from __future__ import annotations

import fcntl
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from octoctl.alertconfig import AlertSettings
from octoctl.alerts import AlertHandler
from octoctl.catalog import load_catalog
from octoctl.config import Settings
from octoctl.engine import Request
from octoctl.errors import OctoctlError
from octoctl.incidents import IncidentStore
from octoctl.listener import child_env, metrics_server, rulebook_command, service_pid, stop_service
from octoctl.runlock import LockedEngine

CATALOG = load_catalog()


class FakeRunner:
    def check_inventory(self, inventory: Path, limit: str | None = None) -> list[str]:
        return ["lab"]


def _held(state: Path) -> bool:
    """True when another holder has the lab stack's lock file."""
    (lock,) = (state / "locks").glob("lab-*.lock")
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.mark.parametrize("flow", ["fix", "prevent", "approve"])
def test_changing_flows_run_inside_the_stacks_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flow: str) -> None:
    from octoctl import engine as engine_module

    settings = Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_STATE_DIR": str(tmp_path)})
    seen: list[bool] = []

    def flow_body(self: Any, request: Any, *args: Any) -> str:
        seen.append(_held(tmp_path))
        return "report"

    monkeypatch.setattr(engine_module.Engine, flow, flow_body)
    if flow == "approve":
        monkeypatch.setattr("octoctl.runlock._record_approval", lambda *args: None)
    engine = LockedEngine(settings, CATALOG, None, FakeRunner())  # type: ignore[arg-type]
    request = Request(command=flow, procedures=[CATALOG.get("cache_performance")], inventory=tmp_path)
    result = engine.approve(request, "20261207T100000-abcdef") if flow == "approve" else getattr(engine, flow)(request)
    assert result == "report" and seen == [True]
    assert not _held(tmp_path)


def test_the_cli_builds_the_locked_engine(tmp_path: Path) -> None:
    from octoctl.cli import _engine

    settings = Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_STATE_DIR": str(tmp_path)})
    assert isinstance(_engine(settings, CATALOG), LockedEngine)


def test_the_alert_handler_uses_the_locked_engine(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path), "OCTOCTL_STATE_DIR": str(tmp_path)})
    handler = AlertHandler(settings, AlertSettings.load(tmp_path, settings.env), CATALOG, Path("inventory/lab"))
    assert isinstance(handler.engine(), LockedEngine)


def test_metrics_server(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    store = IncidentStore(url)
    store.open_or_join({"fingerprint": "f", "labels": {"alertname": "ServiceDown"}, "startsAt": "2026-12-07T10:00:00Z"},
                       "lab", ["service_unavailable"], "L1", "")
    store.close()
    server = metrics_server("127.0.0.1", 0, url)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'octoctl_incidents{procedure="service_unavailable",level="L1",state="open"} 1' in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert json.loads(response.read()) == {"status": "ok"}
    finally:
        server.shutdown()


def test_the_rulebook_gets_a_controller_inventory_and_octoctl_the_stacks(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "OCTOCTL_STATE_DIR": str(tmp_path / "state"), "PATH": os.environ["PATH"]}
    settings = Settings.from_env(env)
    handler = AlertHandler(settings, AlertSettings.load(settings.state_dir, env), CATALOG, Path("inventory/lab"),
                           record_only=True)
    (tmp_path / "state").mkdir()
    vars_file = tmp_path / "state" / "listener-vars.yml"
    try:
        command = rulebook_command(handler, vars_file)
    except OctoctlError as exc:
        pytest.skip(f"[needs-install] {exc.message}")
    assert command[1:3] == ["-r", "octollm.remediation.octollm"]
    assert command[command.index("-i") + 1] == str(tmp_path / "state" / "listener-inventory.yml")
    assert "localhost" in (tmp_path / "state" / "listener-inventory.yml").read_text()
    children = child_env(handler)
    assert children["OCTOCTL_INVENTORY"] == str(Path("inventory/lab").resolve())
    assert children["OCTOCTL_STATE_DIR"] == str(tmp_path / "state")
    assert children["OCTOCTL_RECORD_ONLY"] == "1"
    assert children["OCTOCTL_BIN"]


def test_a_service_without_a_live_pid_is_not_running(tmp_path: Path) -> None:
    assert service_pid(tmp_path) is None
    (tmp_path / "listener.pid").write_text("999999999\n")
    assert service_pid(tmp_path) is None
    assert stop_service(tmp_path) is False and not (tmp_path / "listener.pid").exists()
