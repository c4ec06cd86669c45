"""The collection's EDA event source (extensions/eda/plugins/event_source/alertmanager.py), tested like a module:
the payload parser, and the HTTP receiver through aiohttp's test client (good payloads, malformed bodies -> 400 with
a reason, resolved alerts; one event per alert)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "collection" / "extensions" / "eda" / "plugins" / "event_source" / "alertmanager.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("eda_alertmanager_source", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


source = _load()


def alert(name: str = "ServiceDown", status: str = "firing", fingerprint: str = "f00d", **extra: Any) -> dict:
    return {
        "status": status,
        "labels": {"alertname": name, "service": "orchestrator", "severity": "critical"},
        "annotations": {"summary": "orchestrator is down"},
        "startsAt": "2026-12-07T10:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-07T10:05:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
        "fingerprint": fingerprint,
        **extra,
    }


def payload(*alerts: dict, status: str = "firing") -> dict:
    return {"version": "4", "status": status, "receiver": "octoctl", "groupKey": "{}:{alertname=\"X\"}",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
            "truncatedAlerts": 0, "alerts": list(alerts)}


def test_one_event_per_alert_with_the_alert_fields() -> None:
    events = source.parse_payload(json.dumps(payload(alert(fingerprint="a"), alert("ArmDown", fingerprint="b"))))
    assert [e["alert"]["fingerprint"] for e in events] == ["a", "b"]
    first = events[0]["alert"]
    assert set(first) == {"status", "labels", "annotations", "fingerprint", "startsAt", "endsAt", "generatorURL"}
    assert first["status"] == "firing"
    assert first["labels"]["alertname"] == "ServiceDown"
    assert first["annotations"] == {"summary": "orchestrator is down"}
    assert first["startsAt"] == "2026-12-07T10:00:00.123456789Z"
    assert events[0]["meta"]["receiver"] == "octoctl"
    assert "source" not in events[0]["meta"]  # ansible-rulebook owns meta.source


def test_resolved_alerts_keep_their_status_and_end() -> None:
    events = source.parse_payload(json.dumps(payload(alert(status="resolved"), status="resolved")))
    assert events[0]["alert"]["status"] == "resolved"
    assert events[0]["alert"]["endsAt"] == "2026-12-07T10:05:00Z"


def test_an_alert_without_status_takes_the_payloads() -> None:
    raw = alert()
    del raw["status"]
    events = source.parse_payload(json.dumps(payload(raw, status="resolved")))
    assert events[0]["alert"]["status"] == "resolved"


@pytest.mark.parametrize(("body", "reason"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "must be a JSON object"),
    (json.dumps({"version": "3", "alerts": []}), "unsupported payload version"),
    (json.dumps({"version": "4"}), "alerts must be a list"),
    (json.dumps(payload("x")), "alerts[0] must be an object"),
    (json.dumps(payload(alert(status="pending"))), "status must be firing or resolved"),
    (json.dumps(payload({**alert(), "labels": {"service": "x"}})), "labels.alertname is missing"),
    (json.dumps(payload({**alert(), "labels": {"alertname": 3}})), "labels.alertname must be a string"),
    (json.dumps(payload({**alert(), "fingerprint": ""})), "fingerprint is missing"),
    (json.dumps(payload({**alert(), "startsAt": None})), "startsAt is missing"),
    (json.dumps(payload({**alert(), "annotations": ["x"]})), "annotations must be an object"),
])
def test_malformed_payloads_say_why(body: str, reason: str) -> None:
    with pytest.raises(source.PayloadError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        source.parse_payload(body)


def test_too_many_alerts_are_refused() -> None:
    with pytest.raises(source.PayloadError, match="too many alerts"):
        source.parse_payload(json.dumps(payload(alert(), alert())), max_alerts=1)


async def _exchange(requests: list[tuple[str, str, bytes]]) -> tuple[list[tuple[int, Any]], list[dict]]:
    queue: asyncio.Queue = asyncio.Queue()
    client = TestClient(TestServer(source.make_app(queue)))
    await client.start_server()
    answers = []
    try:
        for method, path, body in requests:
            response = await client.request(method, path, data=body)
            answers.append((response.status, await response.json()))
    finally:
        await client.close()
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return answers, events


def test_the_receiver_puts_one_event_per_alert_on_the_queue() -> None:
    body = json.dumps(payload(alert(fingerprint="a"), alert(fingerprint="b", status="resolved"))).encode()
    answers, events = asyncio.run(_exchange([("POST", "/alerts", body)]))
    assert answers == [(202, {"events": 2})]
    assert [(e["alert"]["fingerprint"], e["alert"]["status"]) for e in events] == [("a", "firing"), ("b", "resolved")]
    assert events[0]["meta"]["endpoint"] == "/alerts"


def test_the_receiver_answers_400_with_a_reason_and_emits_nothing() -> None:
    answers, events = asyncio.run(_exchange([
        ("POST", "/alerts", b"garbage"),
        ("POST", "/alerts", json.dumps(payload({**alert(), "fingerprint": None})).encode()),
    ]))
    assert [status for status, _ in answers] == [400, 400]
    assert "not JSON" in answers[0][1]["error"]
    assert "fingerprint is missing" in answers[1][1]["error"]
    assert events == []


def test_health_answers() -> None:
    answers, _ = asyncio.run(_exchange([("GET", "/health", b"")]))
    assert answers == [(200, {"status": "ok"})]


def test_main_serves_until_cancelled() -> None:
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def scenario() -> list[dict]:
        queue: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(source.main(queue, {"host": "127.0.0.1", "port": port}))
        body = json.dumps(payload(alert())).encode()
        for _ in range(50):
            await asyncio.sleep(0.05)
            try:
                status = await asyncio.to_thread(lambda: urllib.request.urlopen(  # noqa: S310 - loopback
                    urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=body, method="POST"),
                    timeout=2).status)
                break
            except OSError:
                continue
        else:
            raise AssertionError("the source did not listen")
        assert status == 202
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [queue.get_nowait() for _ in range(queue.qsize())]

    events = asyncio.run(scenario())
    assert len(events) == 1 and events[0]["alert"]["labels"]["alertname"] == "ServiceDown"


def test_the_rulebook_throttles_per_fingerprint_and_runs_the_collection_playbook(repo: Path) -> None:
    import yaml

    rulebook = yaml.safe_load((repo / "collection" / "extensions" / "eda" / "rulebooks" / "octollm.yml").read_text())
    ruleset = rulebook[0]
    assert "octollm.remediation.alertmanager" in ruleset["sources"][0]
    firing, resolved = ruleset["rules"]
    assert firing["condition"] == 'event.alert.status == "firing"'
    assert firing["throttle"]["group_by_attributes"] == ["event.alert.fingerprint"]
    assert firing["throttle"]["once_within"]
    assert resolved["condition"] == 'event.alert.status == "resolved"'
    for rule in (firing, resolved):
        assert rule["action"]["run_playbook"]["name"] == "octollm.remediation.eda_alert"
    assert (repo / "playbooks" / "eda_alert.yml").is_file()


def test_the_artifact_carries_the_source_the_rulebook_and_its_playbook(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import tarfile

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run([str(REPO / "collection" / "build.sh"), str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    with tarfile.open(done.stdout.strip().splitlines()[-1]) as tar:
        names = set(tar.getnames())
    assert {"extensions/eda/plugins/event_source/alertmanager.py", "extensions/eda/rulebooks/octollm.yml",
            "playbooks/eda_alert.yml"} <= names
