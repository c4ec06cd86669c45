"""The alert path without a lab: ``octoctl alert``'s handling (catalog, incident, fix or diagnosis, duplicates,
maintenance window, resolution, the clock), the sinks (webhook, Alertmanager format, Slack, e-mail against a local
SMTP server), the graph (its plotted values equal the range query's), /metrics, the timeline and the commands."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner

from octoctl.alertconfig import AlertSettings
from octoctl.alerts import AlertHandler, metrics_text, read_event, timeline_markdown
from octoctl.alerts_cli import parse_until
from octoctl.catalog import load_catalog
from octoctl.cli import cli
from octoctl.config import Settings
from octoctl.errors import OctoctlError
from octoctl.graph import Graph, Series, alert_expression, fetch_graph, plotted_values, render_svg, split_threshold
from octoctl.incidents import IncidentStore
from octoctl.models import RunReport
from octoctl.notify import alertmanager_payload, build_message, email_message, send_all, slack_payload

NOW = datetime.now(UTC).replace(microsecond=0)
GENERATOR = "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22orchestrator%22%7D+%3D%3D+0&g0.tab=1"


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's own now: the alerts start 10 s before it, the escalation clock is 20 s."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)


# --- small local servers ---------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    series: list[dict[str, Any]]
    queries: list[dict[str, list[str]]]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        query = parse_qs(urlparse(self.path).query)
        self.queries.append(query)
        start, end, step = float(query["start"][0]), float(query["end"][0]), float(query["step"][0])
        result = []
        for item in self.series:
            values, t = [], start
            while t <= end:
                values.append([t, str(item["value"](t))])
                t += step
            result.append({"metric": item["metric"], "values": values})
        body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[tuple[str, type[Recorder]]]:
    """A webhook receiver that is also a fake Prometheus (query_range over configured series)."""
    fix_at = NOW.timestamp() - 30
    handler = type("H", (Recorder,), {"received": [], "queries": [], "series": [
        {"metric": {"__name__": "up", "job": "orchestrator"}, "value": lambda t: 1.0 if t < fix_at - 60 or t > fix_at
         else 0.0}]})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()


def report(run_id: str, *, awaiting: bool = False, healthy: bool = True, command: str = "alert",
           escalation: str | None = None) -> RunReport:
    actions = [{"id": "service_unavailable.A.restart", "title": "restart orchestrator", "status": "applied",
                "change": {"container": "octollm-orchestrator-1", "op": "start"}, "outcome": "started"}]
    if awaiting:
        actions.append({"id": "service_unavailable.B.raise_memory", "title": "raise the memory limit",
                        "status": "awaiting_approval", "disruptive": True})
    return RunReport.model_validate({
        "run_id": run_id, "command": command, "phase": "resolve", "procedures": ["service_unavailable"],
        "inventory": "inventory/lab", "start": NOW - timedelta(seconds=40), "end": NOW - timedelta(seconds=30),
        "status": "needs_human" if awaiting else "fixed", "exit_code": 1 if awaiting else 0,
        "approve_with": f"octoctl approve {run_id}" if awaiting else None,
        "targets": [{"target": "lab", "status": "fixed", "exit_code": 0, "procedures": [{
            "procedure": "service_unavailable", "phase": "resolve",
            "findings": [{"check": "service.running", "status": "problem", "observed": "exited",
                          "expected": "running", "evidence": {"password": "hunter22"}},
                         {"check": "llm.key", "status": "warning", "observed": "LLM_API_KEY=sk-abcdefghijklmnopqrstu",
                          "expected": "set"}],
            "actions": actions,
            "verification": {"healthy": healthy, "findings": []},
            "escalation": {"level": escalation},
        }]}],
    })


class FakeEngine:
    def __init__(self, owner: FakeHandler) -> None:
        self.owner = owner

    def fix(self, request: Any) -> RunReport:
        self.owner.calls.append(("fix", [p.name for p in request.procedures]))
        self.owner.extra_vars = dict(request.extra_vars)
        return self.owner.next_report("fix")

    def diagnose(self, request: Any) -> RunReport:
        self.owner.calls.append(("diagnose", [p.name for p in request.procedures]))
        return self.owner.next_report("diagnose")


class FakeHandler(AlertHandler):
    calls: list[tuple[str, list[str]]]
    reports: dict[str, RunReport]
    awaiting: bool = False

    def engine(self) -> Any:
        return FakeEngine(self)

    def next_report(self, command: str) -> RunReport:
        run_id = f"20261207T10{len(self.calls):04d}-abcdef"
        found = report(run_id, awaiting=self.awaiting)
        if command == "diagnose":
            found = found.model_copy(update={"phase": "diagnose", "approve_with": None})
            for target in found.targets:
                for result in target.procedures:
                    result.actions = []
                    result.verification = None
        self.reports[run_id] = found
        return found

    def load_report(self, run_id: str | None) -> RunReport | None:
        return self.reports.get(run_id or "")


@pytest.fixture
def handler(tmp_path: Path, server: tuple[str, type[Recorder]]) -> FakeHandler:
    url, _ = server
    env = {"HOME": str(tmp_path), "OCTOCTL_STATE_DIR": str(tmp_path / "state"), "OCTOCTL_NOTIFY_WEBHOOK": f"{url}/hook",
           "OCTOCTL_PROMETHEUS_URL": url, "OCTOCTL_GRAPH_BEFORE": "2m", "OCTOCTL_ESCALATION_L2_AFTER": "20s"}
    settings = Settings.from_env(env)
    found = FakeHandler(settings, AlertSettings.load(settings.state_dir, env), load_catalog(), Path("inventory/lab"))
    found.calls, found.reports = [], {}
    return found


def event(name: str = "ServiceDown", fingerprint: str = "fp1", status: str = "firing", **labels: str) -> dict:
    return {"alert": {"status": status, "fingerprint": fingerprint,
                      "labels": {"alertname": name, "stack": "octollm-lab", "service": "orchestrator", **labels},
                      "annotations": {"summary": f"{name} fires"},
                      "startsAt": (NOW - timedelta(seconds=10)).isoformat().replace("+00:00", "Z"),
                      "endsAt": NOW.isoformat() if status == "resolved" else "0001-01-01T00:00:00Z",
                      "generatorURL": GENERATOR},
            "meta": {"source": {"name": "alertmanager"}}}


def messages(server: tuple[str, type[Recorder]]) -> list[dict[str, Any]]:
    return [r["body"] for r in server[1].received if r["path"] == "/hook"]


# --- handling --------------------------------------------------------------------------------------


def test_a_firing_alert_is_fixed_recorded_and_notified_once(handler: FakeHandler, server: Any) -> None:
    first = handler.handle(event())
    second = handler.handle(event())  # the same alert delivered again
    assert first["action"] == "fixed" and first["new"] and first["procedures"] == ["service_unavailable"]
    assert second == {"incident": first["incident"], "new": False, "procedures": ["service_unavailable"],
                      "action": "joined"}
    assert handler.calls == [("fix", ["service_unavailable"])]
    sent = messages(server)
    assert len(sent) == 1
    message = sent[0]
    assert message["event"] == "opened" and message["incident"] == first["incident"]
    assert message["level"] == "L1" and message["run_id"] == first["run_id"]
    assert [a["id"] for a in message["applied"]] == ["service_unavailable.A.restart"]
    assert {f["check"] for f in message["findings"]} == {"service.running", "llm.key"}
    store = IncidentStore(handler.alerts.incidents_url)
    incident = store.get(first["incident"])
    assert incident.state == "remediated" and incident.deliveries == 2 and incident.runs() == [first["run_id"]]
    assert [e.kind for e in incident.events] == ["alert", "run", "notified", "delivery"]


def test_the_message_never_carries_a_secret(handler: FakeHandler, server: Any) -> None:
    handler.handle(event())
    text = json.dumps(messages(server)[0])
    assert "sk-abcdefghijklmnopqrstu" not in text and "[REDACTED:api_key]" in text
    assert "hunter22" not in text  # evidence is not part of a message at all


def test_disruptive_steps_await_approval_and_the_message_says_how(handler: FakeHandler, server: Any) -> None:
    handler.awaiting = True
    outcome = handler.handle(event())
    message = messages(server)[0]
    assert outcome["state"] == "awaiting_approval"
    assert message["approve_with"] == f"octoctl approve {outcome['run_id']}"
    assert f"octoctl approve {outcome['run_id']}" in message["awaits"] and "on-call engineer" in message["awaits"]
    assert f"octoctl approve {outcome['run_id']}" in message["text"]
    assert [a["id"] for a in message["awaiting"]] == ["service_unavailable.B.raise_memory"]


def test_an_alert_the_catalog_does_not_know_is_diagnosed_never_fixed(handler: FakeHandler, server: Any) -> None:
    outcome = handler.handle(event("TaskRoutingFailures", fingerprint="fp-unknown"))
    assert outcome["action"] == "diagnosed" and outcome["procedures"] == []
    assert [c[0] for c in handler.calls] == ["diagnose"]
    message = messages(server)[0]
    assert "knows no procedure for alert TaskRoutingFailures" in message["note"]
    assert message["applied"] == [] and message["procedures"] == []


def test_an_alert_may_concern_two_procedures(handler: FakeHandler) -> None:
    outcome = handler.handle(event("HighMemoryUsage", fingerprint="fp-mem", service="redis"))
    assert outcome["procedures"] == ["resource_exhaustion", "memory_leaks"]
    assert handler.calls == [("fix", ["resource_exhaustion", "memory_leaks"])]
    assert outcome["level"] == "L2"


def test_a_paused_listener_records_and_does_not_fix(handler: FakeHandler, server: Any) -> None:
    store = IncidentStore(handler.alerts.incidents_url)
    store.pause(NOW + timedelta(minutes=30))
    outcome = handler.handle(event())
    assert outcome["action"] == "recorded" and "paused until" in outcome["reason"]
    assert handler.calls == [] and messages(server) == []
    handler.record_only, outcome = True, None
    store.pause(None)
    assert handler.handle(event(fingerprint="fp2"))["reason"] == "record-only listener"


def test_a_resolved_alert_resolves_its_incident(handler: FakeHandler, server: Any) -> None:
    opened = handler.handle(event())
    done = handler.handle(event(status="resolved"))
    assert done == {"incident": opened["incident"], "action": "resolved", "notified": []}  # resolved: not notified
    store = IncidentStore(handler.alerts.incidents_url)
    incident = store.get(opened["incident"])
    assert incident.state == "resolved" and incident.resolved_at == NOW
    assert handler.handle(event(status="resolved"))["action"] == "ignored"
    assert handler.handle(event())["new"]  # firing again later: a new incident


def test_a_run_that_ends_after_the_alert_resolved_leaves_the_incident_resolved(handler: FakeHandler) -> None:
    """The approval's run terminated the sessions; Alertmanager's resolution came before the run's own end (its
    verification still ran): the run joins the timeline and the incident stays resolved."""
    handler.awaiting = True
    opened = handler.handle(event())
    assert opened["state"] == "awaiting_approval"
    store = IncidentStore(handler.alerts.incidents_url)
    handler.awaiting = False
    applied = handler.next_report("fix")
    waiting = store.get(opened["incident"])  # as the approval found it, before the resolution
    handler.handle(event(status="resolved"))
    incident = handler.record_run(store, waiting, applied, fixed=True, kind="approve")
    assert incident.state == "resolved" and incident.last_run_id == applied.run_id
    assert [e.kind for e in store.get(opened["incident"]).events][-2:] == ["resolved", "run"]


def test_the_clock_raises_an_unresolved_incident_to_l2_and_notifies_once(handler: FakeHandler, server: Any) -> None:
    handler.awaiting = True
    opened = handler.handle(event())
    assert handler.tick(NOW) == []  # 10 s after the alert started: still L1
    risen = handler.tick(NOW + timedelta(seconds=15))  # 25 s: past the 20 s clock
    assert [(r["incident"], r["from"], r["to"]) for r in risen] == [(opened["incident"], "L1", "L2")]
    assert handler.tick(NOW + timedelta(seconds=25)) == []
    sent = messages(server)
    assert [m["event"] for m in sent] == ["opened", "escalated"]
    assert sent[1]["level"] == "L2" and "unresolved after 20 s" in sent[1]["level_reason"]
    assert "senior engineer" in sent[1]["awaits"] and sent[1]["approve_with"] == f"octoctl approve {opened['run_id']}"


def test_a_second_failing_service_makes_both_l3(handler: FakeHandler, server: Any) -> None:
    one = handler.handle(event())
    two = handler.handle(event("ArmDown", fingerprint="fp-arm", service="planner-arm"))
    assert two["level"] == "L3"
    handler.tick(NOW)
    store = IncidentStore(handler.alerts.incidents_url)
    assert store.get(one["incident"]).level == "L3"
    assert "multi-service failure" in store.get(one["incident"]).level_reason


def test_read_event_takes_the_rulebooks_shapes() -> None:
    assert read_event(json.dumps(event()))["alert"]["fingerprint"] == "fp1"
    assert read_event(json.dumps({"event": event()}))["alert"]["fingerprint"] == "fp1"
    with pytest.raises(OctoctlError):
        read_event("[]")


def test_an_event_without_an_alert_is_a_usage_error(handler: FakeHandler) -> None:
    with pytest.raises(OctoctlError, match="carries no alert"):
        handler.handle({"alert": {"labels": {}}})


# --- the graph -------------------------------------------------------------------------------------


def test_the_alert_expression_without_its_threshold() -> None:
    assert alert_expression(GENERATOR) == ('up{job="orchestrator"}', 0.0)
    assert split_threshold("sum(a) / max(b) > 0.8") == ("sum(a) / max(b)", 0.8)
    assert split_threshold("(x / (y > 0)) > 0.9") == ("(x / (y > 0))", 0.9)
    assert split_threshold("pg_up == 0 or absent(pg_up)") == ("pg_up == 0 or absent(pg_up)", None)
    assert split_threshold("increase(v[30s]) > 0") == ("increase(v[30s])", 0.0)
    assert alert_expression("") is None and alert_expression("http://p/graph") is None


def test_the_plotted_values_equal_the_range_querys(server: Any) -> None:
    url, recorder = server
    graph = fetch_graph(url, GENERATOR, NOW - timedelta(minutes=3), NOW, [(NOW - timedelta(seconds=90), "alert")])
    assert graph is not None and graph.error is None
    query = recorder.queries[-1]
    assert query["query"] == ['up{job="orchestrator"}'] and float(query["step"][0]) == graph.step
    plotted = plotted_values(render_svg(graph))
    assert list(plotted) == ['up{job="orchestrator"}']
    expected = graph.series[0].points
    assert len(plotted['up{job="orchestrator"}']) == len(expected) > 100
    assert {v for _, v in expected} == {0.0, 1.0}
    for (t, v), (pt, pv) in zip(expected, plotted['up{job="orchestrator"}'], strict=True):
        assert abs(t - pt) < 0.5 and abs(v - pv) < 0.01


def test_a_graph_of_several_series_and_no_data() -> None:
    graph = Graph(query="x", start=0, end=100, step=10, threshold=5.0, series=[
        Series({"service": "a"}, [(0, 1.0), (50, 7.5), (100, 2.0)]), Series({"service": "b"}, [(0, 3.0)])])
    plotted = plotted_values(render_svg(graph))
    assert [round(v, 6) for _, v in plotted['{service="a"}']] == [1.0, 7.5, 2.0]
    assert 'class="threshold"' in render_svg(graph)
    assert "no data" in render_svg(Graph(query="x", start=0, end=10, step=1))


def test_a_prometheus_that_does_not_answer_leaves_a_graph_with_the_error() -> None:
    graph = fetch_graph("http://127.0.0.1:9", GENERATOR, NOW - timedelta(minutes=1), NOW)
    assert graph is not None and graph.series == [] and "range query failed" in (graph.error or "")


# --- sinks -----------------------------------------------------------------------------------------


def _message(handler: FakeHandler, awaiting: bool = True) -> dict[str, Any]:
    handler.awaiting = awaiting
    outcome = handler.handle(event())
    store = IncidentStore(handler.alerts.incidents_url)
    incident = store.get(outcome["incident"])
    found = handler.reports[outcome["run_id"]]
    return build_message("opened", incident, found, handler.graph(incident, found))


def test_alertmanager_and_slack_formats(handler: FakeHandler) -> None:
    message = _message(handler)
    payload = alertmanager_payload(message)
    assert payload["version"] == "4" and payload["alerts"][0]["labels"]["incident"] == message["incident"]
    assert payload["alerts"][0]["annotations"]["run_id"] == message["run_id"]
    assert payload["alerts"][0]["fingerprint"] == "fp1"
    slack = slack_payload(message)
    assert message["incident"] in slack["text"] and "octoctl approve" in slack["blocks"][0]["text"]["text"]


def test_webhook_and_slack_sinks_post(handler: FakeHandler, server: Any) -> None:
    url, recorder = server
    message = _message(handler)
    results = send_all([{"type": "webhook", "url": f"{url}/am", "format": "alertmanager"},
                        {"type": "slack", "url_env": "SLACK_URL"}, {"type": "webhook", "url": "http://127.0.0.1:9/x"}],
                       message, {"SLACK_URL": f"{url}/slack"})
    assert [r["ok"] for r in results] == [True, True, False]
    assert "127.0.0.1:9" not in json.dumps(results[2]) or "url" not in results[2]
    paths = [r["path"] for r in recorder.received]
    assert "/am" in paths and "/slack" in paths


def test_the_email_sink_against_a_local_smtp_server(handler: FakeHandler) -> None:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="[needs-install] aiosmtpd (pip install .[dev])")

    class Collect:
        def __init__(self) -> None:
            self.envelopes: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            self.envelopes.append(envelope)
            return "250 OK"

    collect = Collect()
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = aiosmtpd.Controller(collect, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        message = _message(handler)
        results = send_all([{"type": "email", "host": "127.0.0.1", "port": port, "sender": "octoctl@lab.invalid",
                             "to": ["oncall@lab.invalid"]}], message, {})
    finally:
        controller.stop()
    assert results == [{"sink": f"email:127.0.0.1:{port}", "ok": True}]
    (envelope,) = collect.envelopes
    assert envelope.rcpt_tos == ["oncall@lab.invalid"]
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["incident"] in mail["Subject"] and "[L1]" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    assert f"octoctl approve {message['run_id']}" in text and "service.running" in text
    page = mail.get_body(("html",)).get_content()
    assert "<svg" in page and message["run_id"] in page
    attachments = [part.get_filename() for part in mail.iter_attachments()]
    assert attachments == [f"{message['incident']}-graph.svg"]
    assert "sk-abcdefghijklmnopqrstu" not in envelope.content.decode(errors="replace")


def test_email_message_without_graph() -> None:
    from octoctl.incidents import Incident

    incident = Incident(id=3, fingerprint="f", alertname="X", stack="lab", state="open", level="L2",
                        level_reason="", procedures=[], labels={}, annotations={}, generator_url="",
                        starts_at=NOW, first_seen=NOW, last_seen=NOW)
    mail = email_message({"to": "a@b.invalid"}, build_message("escalated", incident))
    assert mail["To"] == "a@b.invalid" and "[L2] INC-3 escalated" in mail["Subject"]


# --- metrics, timeline, commands -------------------------------------------------------------------


def test_metrics_and_timeline(handler: FakeHandler) -> None:
    handler.handle(event())
    handler.handle(event(status="resolved"))
    store = IncidentStore(handler.alerts.incidents_url)
    text = metrics_text(store)
    assert 'octoctl_incidents{procedure="service_unavailable",level="L1",state="resolved"} 1' in text
    assert 'octoctl_remediations_total{procedure="service_unavailable",result="applied"} 1' in text
    assert "octoctl_time_to_recover_seconds_count 1" in text
    incident = store.find()[0]
    page = timeline_markdown(incident, handler.load_report)
    assert page.startswith(f"# {incident.key}: ServiceDown on octollm-lab")
    assert "time to recover: 0m 10s" in page
    assert "| alert starts |" in page and "| run |" in page and "| resolved |" in page
    assert "service_unavailable.A.restart: applied" in page and "Verification: healthy" in page


def test_the_incident_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handler: FakeHandler) -> None:
    monkeypatch.setenv("OCTOCTL_STATE_DIR", str(handler.settings.state_dir))
    opened = handler.handle(event())
    runner = CliRunner()
    listed = runner.invoke(cli, ["incidents"])
    assert listed.exit_code == 0 and opened["incident"] in listed.output and "remediated" in listed.output
    shown = runner.invoke(cli, ["incidents", "show", opened["incident"], "--format", "markdown"])
    assert shown.exit_code == 0 and "## Timeline" in shown.output
    as_json = json.loads(runner.invoke(cli, ["incidents", "show", opened["incident"], "--format", "json"]).stdout)
    assert as_json["runs"] == [opened["run_id"]]
    assert runner.invoke(cli, ["ack", opened["incident"], "--by", "carol"]).exit_code == 0
    assert runner.invoke(cli, ["close", opened["incident"], "--reason", "done"]).exit_code == 0
    assert "closed" in runner.invoke(cli, ["incidents", "--all"]).output
    assert runner.invoke(cli, ["incidents"]).output.count("INC-") == 0
    assert runner.invoke(cli, ["ack", opened["incident"]]).exit_code == 2
    paused = runner.invoke(cli, ["pause", "--until", "+30m"])
    assert paused.exit_code == 0 and "paused until" in paused.output
    assert runner.invoke(cli, ["pause", "--off"]).output.strip() == "not paused"
    assert runner.invoke(cli, ["pause"]).exit_code == 2
    assert runner.invoke(cli, ["incidents", "show", "INC-99"]).exit_code == 2


def test_parse_until() -> None:
    assert parse_until("+30m", NOW) == NOW + timedelta(minutes=30)
    assert parse_until("45s", NOW) == NOW + timedelta(seconds=45)
    assert parse_until("2026-12-07T15:00:00Z", NOW) == datetime(2026, 12, 7, 15, tzinfo=UTC)
    assert parse_until("15:30", NOW).hour == 15


def test_alert_command_reads_the_event_and_prints_the_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCTOCTL_STATE_DIR", str(tmp_path))
    done = CliRunner().invoke(cli, ["alert", "--record-only", "-"], input=json.dumps(event()))
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["action"] == "recorded"
    bad = CliRunner().invoke(cli, ["alert", "-"], input="{}")
    assert bad.exit_code == 2


def test_report_html_has_the_graph(handler: FakeHandler, monkeypatch: pytest.MonkeyPatch, server: Any) -> None:
    from octoctl.store import Store

    url, _ = server
    for key, value in handler.settings.env.items():
        if key.startswith("OCTOCTL_"):
            monkeypatch.setenv(key, value)
    outcome = handler.handle(event())
    Store(handler.settings.runs_dir).save(handler.reports[outcome["run_id"]])
    page = CliRunner().invoke(cli, ["report", outcome["run_id"], "--format", "html"])
    assert page.exit_code == 0, page.output
    assert page.output.startswith("<!DOCTYPE html>") and "<svg" in page.output and outcome["incident"] in page.output
    assert plotted_values(page.output)


def test_procedures_allowed_disruptive_fixes_get_the_roles_toggle(handler: FakeHandler) -> None:
    handler.handle(event())
    assert handler.extra_vars == {}
    handler.alerts = AlertSettings.load(handler.settings.state_dir,
                                        {**handler.settings.env, "OCTOCTL_ALLOW_DISRUPTIVE": "service_unavailable"})
    handler.handle(event(fingerprint="fp-allowed"))
    assert handler.extra_vars == {"service_unavailable_allow_disruptive": True}


def test_the_outer_runners_variables_are_scrubbed() -> None:
    from octoctl.alerts import scrub_outer_runner

    env = {"AWX_ISOLATED_DATA_DIR": "/tmp/x/artifacts/1", "ANSIBLE_STDOUT_CALLBACK": "awx_display",
           "ANSIBLE_CALLBACK_PLUGINS": "/tmp/x/callbacks", "ANSIBLE_CONFIG": "/etc/ansible.cfg", "PATH": "/bin"}
    assert sorted(scrub_outer_runner(env)) == ["ANSIBLE_CALLBACK_PLUGINS", "ANSIBLE_STDOUT_CALLBACK",
                                               "AWX_ISOLATED_DATA_DIR"]
    assert env == {"ANSIBLE_CONFIG": "/etc/ansible.cfg", "PATH": "/bin"}
    untouched = {"ANSIBLE_STDOUT_CALLBACK": "yaml"}
    assert scrub_outer_runner(untouched) == [] and untouched == {"ANSIBLE_STDOUT_CALLBACK": "yaml"}
