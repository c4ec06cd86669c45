"""``octoctl listen``: ansible-rulebook with the collection's rulebook, the escalation clock and ``/metrics``.

One process supervises:

- ``ansible-rulebook -r octollm.remediation.octollm``: its event source receives Alertmanager's webhook on
  ``listen_host:listen_port`` (127.0.0.1:5000), its rules run ``octoctl alert`` on this machine for each alert
  (throttled per fingerprint), which runs the procedures against the stack inventory (``-i``);
- the tick: every ``tick`` (a minute; seconds in the lab) the escalation clock runs over the open incidents;
- an HTTP server on ``metrics_port`` (5001): ``/metrics`` (incidents by procedure and level, remediations applied
  and failed, time to recover) and ``/health``.

It stops on SIGTERM/SIGINT (and stops ansible-rulebook), and exits 3 when ansible-rulebook exits.

:func:`start_service` / :func:`stop_service` run it as a background service with a pid file: what ``octoctl lab
up`` / ``down`` do in the lab.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from octoctl.alerts import AlertHandler, metrics_text
from octoctl.errors import ExitCode, OctoctlError
from octoctl.incidents import IncidentStore

RULEBOOK = "octollm.remediation.octollm"


def rulebook_command(handler: AlertHandler, vars_file: Path, rulebook: str = RULEBOOK) -> list[str]:
    tool = shutil.which("ansible-rulebook", path=handler.settings.tool_path())
    if tool is None:
        raise OctoctlError("ansible-rulebook is not installed (pip install ansible-rulebook; it needs a Java 17 "
                           "runtime: apt-get install openjdk-17-jre-headless)", ExitCode.ENVIRONMENT)
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise OctoctlError("ansible-rulebook needs a Java runtime (apt-get install openjdk-17-jre-headless)",
                           ExitCode.ENVIRONMENT)
    # the rulebook's playbook runs octoctl on this machine; octoctl's runs use the stack inventory (OCTOCTL_INVENTORY)
    controller = vars_file.parent / "listener-inventory.yml"
    controller.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}}))
    return [tool, "-r", rulebook, "-i", str(controller), "-e", str(vars_file)]


def child_env(handler: AlertHandler) -> dict[str, str]:
    env = dict(handler.settings.env)
    env["PATH"] = handler.settings.tool_path()
    env["OCTOCTL_INVENTORY"] = str(Path(handler.inventory).resolve())
    env["OCTOCTL_STATE_DIR"] = str(handler.settings.state_dir)
    env["OCTOCTL_BIN"] = shutil.which("octoctl", path=env["PATH"]) or f"{sys.executable} -m octoctl"
    env["OCTOCTL_LOCK_HOLDER"] = "octoctl listen"
    if handler.settings.collections_path:
        env["ANSIBLE_COLLECTIONS_PATH"] = handler.settings.collections_path
    if handler.record_only:
        env["OCTOCTL_RECORD_ONLY"] = "1"
    return env


class _MetricsHandler(BaseHTTPRequestHandler):
    incidents_url = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?")[0] == "/metrics":
            store = IncidentStore(self.incidents_url)
            try:
                body, status = metrics_text(store).encode(), 200
            except OctoctlError as exc:
                body, status = f"# error: {exc.message}\n".encode(), 500
            finally:
                store.close()
            content = "text/plain; version=0.0.4"
        elif self.path == "/health":
            body, status, content = b'{"status": "ok"}', 200, "application/json"
        else:
            body, status, content = b"not found\n", 404, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", content)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return


def metrics_server(host: str, port: int, incidents_url: str) -> ThreadingHTTPServer:
    handler = type("MetricsHandler", (_MetricsHandler,), {"incidents_url": incidents_url})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="octoctl-metrics", daemon=True).start()
    return server


def listen(handler: AlertHandler, rulebook: str = RULEBOOK, log: Callable[[str], None] = print) -> int:
    """Run until a signal or ansible-rulebook's exit; returns the exit status."""
    alerts = handler.alerts
    state = handler.settings.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    vars_file = state / "listener-vars.yml"
    vars_file.write_text(yaml.safe_dump({"octollm_eda_host": alerts.listen_host,
                                         "octollm_eda_port": alerts.listen_port}))
    IncidentStore(alerts.incidents_url).connect()  # fail now, not at the first alert
    server = metrics_server(alerts.listen_host, alerts.metrics_port, alerts.incidents_url)
    command = rulebook_command(handler, vars_file, rulebook)
    child = subprocess.Popen(command, env=child_env(handler), start_new_session=True)
    stopping = {"signal": 0}

    def stop(signum: int, frame: Any) -> None:
        stopping["signal"] = signum

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"octoctl listen: alerts on http://{alerts.listen_host}:{alerts.listen_port}/alerts, metrics on "
        f"http://{alerts.listen_host}:{alerts.metrics_port}/metrics, escalation L2 after "
        f"{int(alerts.escalation_l2_after.total_seconds())} s, tick {alerts.tick.total_seconds():g} s"
        f"{', record only' if handler.record_only else ''} (ansible-rulebook pid {child.pid})")
    next_tick = time.monotonic() + alerts.tick.total_seconds()
    code = 0
    try:
        while not stopping["signal"]:
            if child.poll() is not None:
                log(f"octoctl listen: ansible-rulebook exited with status {child.returncode}")
                code = int(ExitCode.ENVIRONMENT)
                break
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + alerts.tick.total_seconds()
                try:
                    handler.tick()
                except OctoctlError as exc:
                    log(f"octoctl listen: tick failed: {exc.message}")
            time.sleep(0.2)
    finally:
        server.shutdown()
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    return code


# --- as a service with a pid file (the lab) --------------------------------------------------------


def service_paths(run_dir: Path) -> tuple[Path, Path]:
    return run_dir / "listener.pid", run_dir / "listener.log"


def service_pid(run_dir: Path) -> int | None:
    pid_file, _ = service_paths(run_dir)
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start_service(run_dir: Path, args: list[str], env: dict[str, str] | None = None, wait: float = 60.0,
                  port: int = 5000) -> int:
    """Start ``octoctl listen ARGS`` in the background (pid file and log in ``run_dir``) and wait until its event
    source answers on ``port``; returns its pid (the running one when it runs already)."""
    running = service_pid(run_dir)
    if running is not None:
        return running
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:  # someone else's listener: it would answer our health check
            raise OctoctlError(f"port {port} is taken by another process (an octoctl listen whose pid file is gone?)",
                               ExitCode.ENVIRONMENT)
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file, log_file = service_paths(run_dir)
    with open(log_file, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "octoctl", "listen", *args], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait
    import urllib.request

    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace")[-800:]
            raise OctoctlError(f"octoctl listen exited at start ({process.returncode}): {tail}", ExitCode.ENVIRONMENT)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process.pid
        except OSError:
            time.sleep(0.5)
    stop_service(run_dir)
    raise OctoctlError(f"octoctl listen did not answer on port {port} within {wait:.0f} s (log: {log_file})",
                       ExitCode.ENVIRONMENT)


def stop_service(run_dir: Path, timeout: float = 20.0) -> bool:
    pid = service_pid(run_dir)
    pid_file, _ = service_paths(run_dir)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def lab_listener_up(lab_state: Path, log: Callable[[str], None], inventory: Path | None = None) -> None:
    """``octoctl lab up``: the listener as a service. ``OCTOLLM_LAB_LISTENER``: ``record`` (the default: incidents
    are recorded, nothing is fixed, so that tests that break the lab keep their faults), ``fix``, or ``off``.
    ``inventory``: the lab profile's, when it is not the default inventory (``OCTOCTL_INVENTORY``)."""
    mode = os.environ.get("OCTOLLM_LAB_LISTENER", "record")
    if mode == "off":
        return
    args = ["--record-only"] if mode != "fix" else []
    env = dict(os.environ)
    if inventory is not None:
        env["OCTOCTL_INVENTORY"] = str(inventory)
    env.setdefault("OCTOCTL_ESCALATION_L2_AFTER", "60s")
    env.setdefault("OCTOCTL_TICK", "5s")
    env.setdefault("OCTOCTL_GRAPH_BEFORE", "2m")
    try:
        pid = start_service(lab_state / "listener", args, env)
    except OctoctlError as exc:
        log(f"octoctl listen did not start: {exc.message}")
        return
    log(f"octoctl listen runs ({mode}, pid {pid}; log {service_paths(lab_state / 'listener')[1]})")


def lab_listener_down(lab_state: Path) -> None:
    stop_service(lab_state / "listener")
