"""What the procedures' lab tests share: run playbooks/run.yml as octoctl does (ansible-runner) and read the RESULT.

A plain module (not a conftest): the lab tests import it by name, as pytest puts their folder on sys.path.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_procedure(procedure: str, tmp_path: Path, phase: str, **extravars: Any) -> dict[str, Any]:
    """Run playbooks/run.yml for one procedure; return its RESULT for the lab host (from artifact_data)."""
    import ansible_runner

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    private = tmp_path / f"runner-{phase}-{len(list(tmp_path.iterdir()))}"
    private.mkdir()
    runner = ansible_runner.run(
        private_data_dir=str(private),
        playbook=str(REPO / "playbooks" / "run.yml"),
        inventory=str(REPO / "inventory" / "lab"),
        extravars={"octollm_procedures": [procedure], "octollm_phase": phase, **extravars},
        envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections")},
        quiet=True,
    )
    assert runner.rc == 0, f"{runner.status}: {runner.stdout.read()[-3000:]}"
    stats = [event for event in runner.events if event.get("event") == "playbook_on_stats"]
    data = stats[-1]["event_data"].get("artifact_data") or {}
    return data["octollm_report"]["lab"][procedure]


def by_check(findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {finding["check"]: finding for finding in findings}


def holds(result: dict[str, Any]) -> dict[str, bool]:
    return {scenario["id"]: scenario["holds"] for scenario in result["scenarios"]}


@contextlib.contextmanager
def pg_admin(lab: Any) -> Iterator[Any]:
    """An autocommit admin connection (a reserved slot: they are few, so it is closed at once)."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, dbname="octollm", user="postgres",
                            password=lab.secret("postgres_admin_password"), connect_timeout=5)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def env_value(lab: Any, key: str) -> str | None:
    """KEY's value in the lab's services env file (lab.env)."""
    for line in (lab.state / "lab.env").read_text().splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    return None


def prometheus_max(query: str) -> float | None:
    """The largest value of an instant query in the lab's Prometheus (None when empty, NaN or unreachable)."""
    import json
    import math
    import urllib.parse
    import urllib.request

    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            series = json.load(answer)["data"]["result"]
    except (OSError, ValueError, KeyError):
        return None
    values = [float(item["value"][1]) for item in series]
    values = [value for value in values if not math.isnan(value)]
    return max(values) if values else None


def wait_below(query: str, limit: float, timeout: float = 120) -> None:
    """Wait until a windowed query no longer sees an earlier fault (a healed fault stays in a rate window)."""
    import time

    deadline = time.monotonic() + timeout
    while (value := prometheus_max(query)) is not None and value > limit and time.monotonic() < deadline:
        time.sleep(3)


def healthy_diagnosis_of(procedure: str, lab: Any, tmp_path: Path, snapshot: Any,
                         quiet: tuple[tuple[str, float], ...] = ()) -> dict[str, Any]:
    """Heal the lab, wait until the ``quiet`` queries are under their limits, and diagnose it once: the RESULT
    and ``snapshot(lab)`` (what the diagnosis must not change) before and after it."""
    from octollm_labctl import faults

    faults.heal_all(lab)
    lab.wait_healthy(timeout=180)
    for query, limit in quiet:
        wait_below(query, limit)
    before = snapshot(lab)
    result = run_procedure(procedure, tmp_path, "diagnose")
    return {"result": result, "before": before, "after": snapshot(lab)}


def assert_quiet(result: dict[str, Any], scenario: str) -> None:
    """The scenario does not hold, judged from checks that all ran (``checks ok: ...``)."""
    entry = next(s for s in result["scenarios"] if s["id"] == scenario)
    assert entry["holds"] is False, entry["reason"]
    assert entry["reason"].startswith("checks ok:"), entry["reason"]
