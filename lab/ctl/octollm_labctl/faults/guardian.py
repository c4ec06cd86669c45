"""Faults of security: guardian-arm sees a blocked command, PII and a source that keeps trying, as real requests
to its ``/api/v1/check``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from octollm_labctl.faults.base import Fault
from octollm_labctl.faults.common import post_json
from octollm_labctl.lab import Lab

COMPONENT = "guardian"
GUARDIAN_URL = "http://127.0.0.1:8104"
GUARDIAN_FAULT_SOURCE = "203.0.113.77"
GUARDIAN_FAULT_COMMAND = "rm -rf / --no-preserve-root"
# PII the fault sends (test values: a reserved domain, the Visa test card, a fake key).
GUARDIAN_FAULT_PII = ("alice.fault@example.com", "4111 1111 1111 1111", "sk-faultKEY0123456789abcdefXYZ")


def _guardian_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import urllib.error

    source = target or GUARDIAN_FAULT_SOURCE
    texts = [GUARDIAN_FAULT_COMMAND] * 3 + [
        f"contact {GUARDIAN_FAULT_PII[0]} about the invoice",
        f"charge card {GUARDIAN_FAULT_PII[1]} now",
        f"use the key {GUARDIAN_FAULT_PII[2]} for the export",
    ]
    answered = 0
    for text in texts:
        with contextlib.suppress(urllib.error.HTTPError):
            post_json(GUARDIAN_URL + "/api/v1/check", {"text": text, "source": source})
            answered += 1
    guardian = lab.state / "guardian"
    return {"source": source, "requests": len(texts), "answered": answered,
            "blocked_commands": (guardian / "blocked_commands.txt").read_text(),
            "blocked_sources": (guardian / "blocked_sources.txt").read_text()}


def _guardian_heal(lab: Lab, record: dict[str, Any]) -> None:
    import shutil

    guardian = lab.state / "guardian"
    if "blocked_commands" in record:
        (guardian / "blocked_commands.txt").write_text(record["blocked_commands"])
        (guardian / "blocked_sources.txt").write_text(record["blocked_sources"])
    shutil.rmtree(lab.state / "security" / "quarantine", ignore_errors=True)
    # a new container: a fresh log (no raw PII left), the lists read at start-up
    lab.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", "guardian-arm", timeout=180)


FAULTS = (
    Fault("guardian-violations", COMPONENT, "real guardian-arm checks: a blocked command 3 times, an e-mail, a card "
          "number and an API key, all from one source (target: the source)",
          _guardian_inject, _guardian_heal),
)
