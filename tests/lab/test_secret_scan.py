"""No secret and no PII leaves a run: after an LLM key rotation and a security run through `octoctl` (as an
operator runs them), the lab's secrets (secrets.env and secrets/ before and after the rotation: passwords, the old
and new API keys), the PII values the faults used and a credential of each form the redaction catches, planted in
guardian-arm's log through its API (POSTGRES_PASSWORD=, REDIS_PASSWORD=, PGPASSWORD=, an API key without the sk-
prefix, AWS_SECRET_ACCESS_KEY=, postgresql://user:password@host, ALTER USER ... PASSWORD '...'), appear nowhere in
octoctl's stdout and stderr, the run reports, ansible-runner's whole private data directories of those runs
(octoctl's state dir, OCTOCTL_STATE_DIR/runs/<run id>/), or the logs octoctl keeps for the lab; the planted ones
are in the security report masked, which shows they were read.

Run under the lab lock: flock /tmp/octollm-lab.lock pytest tests/lab/test_secret_scan.py"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def octoctl(state: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    environ["OCTOCTL_STATE_DIR"] = str(state)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "octoctl", *args], cwd=REPO, env=environ, capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL
    )


def secrets_of(lab: Any) -> dict[str, str]:
    """Every secret of the lab: the values of secrets.env and the files of secrets/ (passwords, API keys)."""
    found = {}
    for line in (lab.state / "secrets.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and len(value.strip()) >= 8:
            found[f"secrets.env {name}"] = value.strip()
    for path in sorted((lab.state / "secrets").iterdir()):
        value = path.read_text().strip()
        if len(value) >= 8:
            found[f"secrets/{path.name}"] = value
    return found


def scan(places: dict[str, str], needles: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, text in places.items()
        for what, needle in needles.items()
        if needle and needle in text
    ]


def plant_credentials(source: str) -> dict[str, tuple[str, str]]:
    """Each credential form the redaction catches, written by a real component where it would write it: guardian-arm
    logs the whole text of a blocked command (``command="..."``), and these are commands people paste. Five commands
    (a security finding keeps the last five events as redacted samples) carry the seven forms. Returns ``{form:
    (secret, what the report holds once it is masked)}``; the values are fresh for each run."""
    import secrets
    import urllib.error

    from octollm_labctl.faults.common import post_json

    def fresh(prefix: str) -> str:
        return prefix + secrets.token_hex(10)

    value = {
        "POSTGRES_PASSWORD": fresh("pgpw"), "REDIS_PASSWORD": fresh("rdpw"), "PGPASSWORD": fresh("pgenv"),
        "ALTER USER PASSWORD": fresh("sqlpw"), "API key without sk-": fresh("k"),
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/" + fresh("aws"), "postgresql:// URL": fresh("urlpw"),
    }
    commands = [
        f"POSTGRES_PASSWORD={value['POSTGRES_PASSWORD']} REDIS_PASSWORD={value['REDIS_PASSWORD']} "
        "docker compose up -d; rm -rf /var/lib/postgresql/data",
        f"PGPASSWORD={value['PGPASSWORD']} psql -h postgres -U octollm -c "
        f"\"ALTER USER octollm PASSWORD '{value['ALTER USER PASSWORD']}'\"; rm -rf /backups",
        f"curl -H 'X-API-Key: {value['API key without sk-']}' http://llm-provider:8200/v1/models; rm -rf /tmp/cache",
        f"AWS_SECRET_ACCESS_KEY={value['AWS_SECRET_ACCESS_KEY']} aws s3 sync /srv s3://backups; rm -rf /srv",
        f"pg_dump postgresql://octollm:{value['postgresql:// URL']}@postgres:5432/octollm -f /tmp/x; rm -rf /dumps",
    ]
    for text in commands:
        with contextlib.suppress(urllib.error.HTTPError):  # 403: blocked, and logged with the command
            post_json("http://127.0.0.1:8104/api/v1/check", {"text": text, "source": source})
    mark = "[REDACTED:api_key]"
    masked = {
        "POSTGRES_PASSWORD": f"POSTGRES_PASSWORD={mark}", "REDIS_PASSWORD": f"REDIS_PASSWORD={mark}",
        "PGPASSWORD": f"PGPASSWORD={mark}", "ALTER USER PASSWORD": f"PASSWORD '{mark}'",
        "API key without sk-": f"X-API-Key: {mark}", "AWS_SECRET_ACCESS_KEY": f"AWS_SECRET_ACCESS_KEY={mark}",
        "postgresql:// URL": f"postgresql://octollm:{mark}@postgres",
    }
    return {form: (value[form], masked[form]) for form in value}


def llm_result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    report = json.loads(proc.stdout)
    return report["targets"][0]["procedures"][0]


def test_no_key_and_no_pii_in_any_output_of_octoctl_runs(healthy_lab: Any, tmp_path: Path) -> None:
    """Scenario D end to end through octoctl (a dry run without approval lists the refused rotation, the approved
    fix does exactly that and exits 1 with L1 for the revocation, a second fix does nothing), then a security fix;
    then every output is scanned."""
    from octollm_labctl import faults

    state = tmp_path / "octoctl-state"
    lab_secrets = secrets_of(healthy_lab)
    assert len(lab_secrets) >= 5
    old_key = healthy_lab.secret("llm_api_key")
    faults.inject(healthy_lab, "llm-auth")
    new_key = (healthy_lab.state / "llm" / "primary.key").read_text().strip()
    assert new_key and new_key != old_key
    # the operator hands the new key over in an environment variable (llm_api_new_key_env's default name)
    key_env = {"OCTOLLM_LLM_NEW_API_KEY": new_key}
    runs = {
        "fix llm --dry-run": octoctl(state, "fix", "llm", "--dry-run", "--format", "json", env=key_env),
        "fix llm --approve": octoctl(state, "fix", "llm", "--approve", "--format", "json", env=key_env),
        "fix llm --approve (again)": octoctl(state, "fix", "llm", "--approve", "--format", "json", env=key_env),
    }
    waiting, fixed, again = (llm_result(proc) for proc in runs.values())
    assert [proc.returncode for proc in runs.values()] == [1, 1, 0], {k: v.stderr[-800:] for k, v in runs.items()}
    found = {f["check"]: f for f in waiting["findings"]}
    assert found["llm.api_key"]["status"] == "problem" and found["llm.api_key"]["scenario"] == "D"
    assert [(a["id"], a["status"]) for a in waiting["actions"]] == [
        ("llm_api.D.rotate_key", "awaiting_approval"),
        ("llm_api.D.revoke_old_key", "report"),
    ]

    def plan(actions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(a["id"], a["resource"], json.dumps(a["change"], sort_keys=True), a["disruptive"]) for a in actions]

    assert plan(waiting["actions"]) == plan(fixed["actions"])  # the dry run listed exactly what the fix did
    assert [a["status"] for a in fixed["actions"]] == ["applied", "report"]
    assert fixed["verification"]["healthy"] is True
    assert fixed["escalation"]["level"] == "L1"  # revoking the old key is a human's step
    assert again["actions"] == [] and again["verification"]["healthy"] is True
    # the deployment holds the new key (secrets.env and the key file the inventory reads)
    assert f"OPENAI_API_KEY={new_key}\n" in (healthy_lab.state / "secrets.env").read_text()
    assert healthy_lab.secret("llm_api_key") == new_key

    record = faults.inject(healthy_lab, "guardian-violations")
    planted = plant_credentials(record["source"])
    security = octoctl(state, "fix", "security", "--approve", "--format", "json")
    assert security.returncode == 1, security.stderr[-2000:]  # L3 always
    assert '"security_violations.D.quarantine_logs"' in security.stdout

    runs["fix security --approve"] = security
    places = {f"{out} of {name}": getattr(proc, out) for name, proc in runs.items() for out in ("stdout", "stderr")}
    files = [path for path in state.rglob("*") if path.is_file()]
    assert any(path.name == "report.json" for path in files)
    assert any("job_events" in path.parts for path in files)
    lab_logs = healthy_lab.state / "logs"
    if lab_logs.exists():
        files += [path for path in lab_logs.rglob("*") if path.is_file()]
    files.append(healthy_lab.state / "faults.json")
    files += list((healthy_lab.state / "security" / "evidence").glob("*"))
    for path in files:
        places[str(path)] = path.read_text(errors="replace")
    for service in ("orchestrator", "guardian-arm", "llm-provider"):  # the services' own logs after the fixes
        logs = subprocess.run(["docker", "logs", f"octollm-{service}-1"], capture_output=True, text=True, check=True)
        places[f"docker logs of {service}"] = logs.stdout + logs.stderr

    from octollm_labctl.faults.guardian import GUARDIAN_FAULT_PII

    needles = {
        **lab_secrets,
        **{f"{name} (after the run)": value for name, value in secrets_of(healthy_lab).items()},
        "the old API key": old_key,
        "the new API key": new_key,
        "the e-mail": GUARDIAN_FAULT_PII[0],
        "the card number": GUARDIAN_FAULT_PII[1],
        "the card number (digits)": GUARDIAN_FAULT_PII[1].replace(" ", ""),
        "the PII API key": GUARDIAN_FAULT_PII[2],
    }
    needles.update({f"planted {form}": value for form, (value, _masked) in planted.items()})
    assert len(places) > 10
    assert scan(places, needles) == []
    # ... and they were read: each planted command is in the security report's samples, masked
    report = security.stdout
    assert [form for form, (_value, masked) in planted.items() if masked not in report] == []
