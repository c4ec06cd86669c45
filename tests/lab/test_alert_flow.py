"""From alert to fix on the running lab (issue 17), in one test to keep the lab minutes few:

A. ``crash orchestrator``: Prometheus fires ServiceDown (the fastest alert: one scrape and the lab's short ``for``),
   Alertmanager posts it to the listener (``octoctl listen``: ansible-rulebook, the collection's event source and
   rulebook), the rulebook hands it to ``octoctl alert``, the role restarts the orchestrator (the listener is
   configured to allow service_unavailable's restarts, OCTOCTL_ALLOW_DISRUPTIVE), the lab heals, the incident is
   recorded and resolved; the test posts the same alert a second time and the webhook receiver still gets exactly one
   message for the incident; the graph's plotted values equal Prometheus' range query's.
B. ``pg-connections``: HighDatabaseConnections; terminating sessions is disruptive, so the fix stops awaiting
   approval and the message names ``octoctl approve RUN_ID``; left unapproved, the incident rises to L2 on the
   short clock and notifies again; then ``octoctl approve RUN_ID`` heals the lab and the alert's resolution resolves
   the incident. (The unapproved fault is the one the listener cannot remove: B folds the L2 case into the approve
   case.)

The lab's own listener (record-only, started by ``octoctl lab up``) is stopped for the test and started again after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from octoctl.graph import plotted_values
from octoctl.incidents import IncidentStore
from octoctl.listener import lab_listener_down, lab_listener_up, start_service, stop_service

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


class Receiver(BaseHTTPRequestHandler):
    messages: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        self.messages.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    handler = type("R", (Receiver,), {"messages": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.messages
    server.shutdown()


def ensure_listener_scraped(lab: Any) -> None:
    """A lab started before the listener's scrape job existed gets its Prometheus configuration re-rendered."""
    config = (lab.state / "prometheus" / "prometheus.yml").read_text()
    if "job_name: octoctl" not in config:
        lab.render_state()
        urllib.request.urlopen(urllib.request.Request(f"{PROMETHEUS}/-/reload", method="POST"), timeout=10)


@pytest.fixture
def listener(healthy_lab: Any, receiver: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The test's own `octoctl listen` on the lab's ports (5000 alerts, 5001 metrics): webhook to the receiver,
    escalation to L2 after 60 s, a 2 s tick, service_unavailable's restarts allowed."""
    url, messages = receiver
    state = tmp_path / "state"
    # the lab inventory with short idle thresholds (the fault is seconds old when it is fixed); the orchestrator's own
    # pool is spared, so that the plan approved a minute later still holds (its idle sessions come and go)
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory" / "lab", inventory)
    (inventory / "group_vars" / "all.yml").write_text(
        "---\ndatabase_connections_idle_terminate_after_seconds: 10\n"
        "database_connections_idle_in_transaction_max_seconds: 3\n"
        "database_connections_protected_applications: [octollm-remediation, orchestrator, orchestrator-health]\n")
    env = dict(os.environ)
    env["OCTOLLM_REPO"] = str(REPO)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"OCTOCTL_STATE_DIR": str(state), "OCTOCTL_NOTIFY_WEBHOOK": url, "OCTOCTL_ESCALATION_L2_AFTER": "60s",
                "OCTOCTL_TICK": "2s", "OCTOCTL_GRAPH_BEFORE": "1m", "OCTOCTL_ALLOW_DISRUPTIVE": "service_unavailable",
                "OCTOCTL_LISTEN_PORT": "5000", "OCTOCTL_METRICS_PORT": "5001"})
    env.pop("OCTOCTL_ALERTS_CONFIG", None)
    env.pop("OCTOCTL_INCIDENTS_URL", None)
    ensure_listener_scraped(healthy_lab)
    lab_listener_down(healthy_lab.state)
    try:
        start_service(tmp_path / "listener", ["-i", str(inventory)], env, wait=90, port=5000)
        yield {"env": env, "state": state, "messages": messages, "lab": healthy_lab,
               "store": IncidentStore(f"sqlite:///{state / 'incidents.db'}"), "log": tmp_path / "listener"}
    finally:
        stop_service(tmp_path / "listener")
        log = (tmp_path / "listener" / "listener.log").read_text(errors="replace")
        print("--- listener log (tail) ---\n" + "\n".join(
            line for line in log.splitlines()[-150:] if line.strip() and "Cryptography" not in line
            and "from cryptography" not in line))
        lab_listener_up(healthy_lab.state, print)


def firing_in_alertmanager(name: str) -> dict[str, Any] | None:
    query = urllib.parse.urlencode({"filter": f'alertname="{name}"', "active": "true", "silenced": "false"})
    found = [a for a in get_json(f"{ALERTMANAGER}/api/v2/alerts?{query}") if a["status"]["state"] == "active"]
    return found[0] if found else None


def post_again(alert: dict[str, Any]) -> None:
    """The alert as Alertmanager's webhook would carry it, posted to the listener a second time."""
    body = {"version": "4", "status": "firing", "receiver": "octoctl", "groupKey": "test", "externalURL": ALERTMANAGER,
            "alerts": [{"status": "firing", "labels": alert["labels"], "annotations": alert["annotations"],
                        "startsAt": alert["startsAt"], "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": alert["generatorURL"], "fingerprint": alert["fingerprint"]}]}
    request = urllib.request.Request("http://127.0.0.1:5000/alerts", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        assert response.status == 202


def messages_of(listener: dict[str, Any], alertname: str) -> list[dict[str, Any]]:
    return [m for m in listener["messages"] if m["alertname"] == alertname]


def incident(listener: dict[str, Any], key: str) -> Any:
    return listener["store"].get(key)


def octoctl(listener: dict[str, Any], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octoctl", *args], capture_output=True, text=True,
                          env=listener["env"], timeout=timeout, check=False)


def check_graph(message: dict[str, Any]) -> None:
    graph = message["graph"]
    assert graph and not graph.get("error"), graph
    query = urllib.parse.urlencode({"query": graph["query"], "start": f"{graph['start']:.3f}",
                                    "end": f"{graph['end']:.3f}", "step": graph["step"]})
    result = get_json(f"{PROMETHEUS}/api/v1/query_range?{query}")["data"]["result"]
    plotted = plotted_values(graph["svg"])
    assert len(plotted) == len(result) >= 1
    for series in result:
        name = next(n for n in plotted if all(f'{k}="{v}"' in n for k, v in series["metric"].items()
                                              if k != "__name__"))
        points = plotted[name]
        # the last seconds may gain a late scrape between the two queries; everything before is history
        expected = [(float(t), float(v)) for t, v in series["values"] if float(t) <= graph["end"] - 10]
        assert len(points) >= len(expected) > 10
        span = max(abs(v) for _, v in expected) or 1.0
        for (t, v), (pt, pv) in zip(expected, points, strict=False):
            assert abs(t - pt) < graph["step"] / 2 and abs(v - pv) <= span * 0.002, (t, v, pt, pv)


def test_alerts_are_fixed_recorded_escalated_and_notified(listener: dict[str, Any]) -> None:
    from octollm_labctl import faults as lab_faults

    lab = listener["lab"]
    started = time.monotonic()
    timings: dict[str, float] = {}
    # --- A: a crash the listener fixes at once ---------------------------------------------------
    lab_faults.inject(lab, "crash", "orchestrator")
    fired = wait_for(lambda: firing_in_alertmanager("ServiceDown"), 60, "ServiceDown in Alertmanager")
    post_again(fired)  # the same alert a second time (before or after Alertmanager's own post: one message)
    (opened,) = wait_for(lambda: messages_of(listener, "ServiceDown"), 120, "the ServiceDown notification")
    timings["A notified"] = time.monotonic() - started
    assert opened["event"] == "opened" and opened["procedures"] == ["service_unavailable"]
    assert opened["level"] == "L1" and opened["run_id"] and not opened["approve_with"], opened["note"]
    assert [a["id"] for a in opened["applied"]] == ["service_unavailable.A.up_orchestrator"], opened["applied"]
    key = opened["incident"]
    resolved = wait_for(lambda: (i := incident(listener, key)).state == "resolved" and i, 90,
                        "the ServiceDown incident to resolve")
    timings["A resolved"] = time.monotonic() - started
    assert resolved.procedures == ["service_unavailable"] and resolved.runs() == [opened["run_id"]]
    assert resolved.level == "L1"
    assert get_json("http://127.0.0.1:8000/health") is not None  # the lab healed
    check_graph(opened)
    plotted = next(iter(plotted_values(opened["graph"]["svg"]).values()))
    assert {round(v) for _, v in plotted} == {0, 1}  # up: 1, then 0 while crashed
    time.sleep(3)
    assert len(messages_of(listener, "ServiceDown")) == 1
    lab_faults.heal(lab, "crash")  # the listener restarted it already: this only clears the fault's record

    # /metrics of the listener, scraped by the lab's Prometheus
    def scraped() -> list[Any] | None:
        query = urllib.parse.urlencode({"query": 'octoctl_incidents{procedure="service_unavailable",state="resolved"}'})
        return get_json(f"{PROMETHEUS}/api/v1/query?{query}")["data"]["result"] or None

    wait_for(scraped, 30, "Prometheus to scrape octoctl_incidents from the listener")

    # --- B: a disruptive fix awaits approval, rises to L2, approval heals --------------------------
    lab_faults.inject(lab, "pg-connections", "idle")
    try:
        approve_path(listener, timings, started)
    finally:
        lab_faults.heal(lab, "pg-connections")  # first: the orchestrator is unhealthy while the sessions are held
    print(f"\nalert test timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")


def approve_path(listener: dict[str, Any], timings: dict[str, float], started: float) -> None:
    (waiting,) = wait_for(lambda: messages_of(listener, "HighDatabaseConnections"), 120,
                          "the HighDatabaseConnections notification")
    timings["B notified"] = time.monotonic() - started
    run_id = waiting["run_id"]
    assert waiting["procedures"] == ["database_connections"] and waiting["level"] == "L1"
    assert waiting["approve_with"] == f"octoctl approve {run_id}"
    assert f"octoctl approve {run_id}" in waiting["awaits"] and f"octoctl approve {run_id}" in waiting["text"]
    assert waiting["awaiting"] and all(a["status"] == "awaiting_approval" for a in waiting["awaiting"])
    assert incident(listener, waiting["incident"]).state == "awaiting_approval"
    escalated = wait_for(lambda: [m for m in messages_of(listener, "HighDatabaseConnections")
                                  if m["event"] == "escalated"], 90, "the L2 escalation")[0]
    timings["B escalated"] = time.monotonic() - started
    assert escalated["incident"] == waiting["incident"] and escalated["level"] == "L2"
    assert "unresolved after 1 min" in escalated["level_reason"] and "senior engineer" in escalated["awaits"]
    assert escalated["approve_with"] == f"octoctl approve {run_id}"
    approved = octoctl(listener, "approve", run_id)
    assert approved.returncode == 0, approved.stdout[-3000:] + approved.stderr[-3000:]
    try:
        done = wait_for(lambda: (i := incident(listener, waiting["incident"])).state == "resolved" and i, 120,
                        "the HighDatabaseConnections incident to resolve")
    except AssertionError as exc:  # say what the approval applied
        raise AssertionError(f"{exc}\n--- octoctl approve ---\n{approved.stdout[-6000:]}") from None
    timings["B resolved"] = time.monotonic() - started
    assert len(done.runs()) == 2 and done.runs()[0] == run_id and done.level == "L2"
    timeline = octoctl(listener, "incidents", "show", waiting["incident"], "--format", "markdown")
    assert timeline.returncode == 0
    for needle in ("| alert starts |", "| escalated |", "| resolved |", f"## Run {run_id}", "time to recover",
                   "awaiting_approval"):
        assert needle in timeline.stdout, needle
    assert [m["event"] for m in messages_of(listener, "HighDatabaseConnections")] == ["opened", "escalated"]
    page = octoctl(listener, "report", run_id, "--format", "html")
    assert page.returncode == 0 and "<svg" in page.stdout and waiting["incident"] in page.stdout
