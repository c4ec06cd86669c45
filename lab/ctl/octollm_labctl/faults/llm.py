"""Faults of the LLM provider, an external API that the lab stands in for with a mock: 429, 503, slow, 401.

The mock's behaviour is switched by its mode and key files in the state dir (``llm/primary.mode``,
``llm/primary.key``) and its quota by ``LLM_PROVIDER_RPM`` in ``lab.env``; the orchestrator's LLM settings are in
``lab.env`` too.
"""

from __future__ import annotations

from typing import Any

from octollm_labctl.faults.base import Fault, Inject
from octollm_labctl.lab import Lab

COMPONENT = "llm"

# The orchestrator's LLM settings as `octoctl lab up` writes them to lab.env; heal puts them back.
LLM_BASELINE = {"LLM_MAX_CONCURRENCY": "8", "LLM_RATE_PER_MINUTE": "600", "LLM_READ_TIMEOUT": "30",
                "LLM_FALLBACK_ENABLED": "false"}


def _llm_mode(lab: Lab, text: str) -> None:
    (lab.state / "llm" / "primary.mode").write_text(text + "\n")


def _llm_set_env(lab: Lab, values: dict[str, str]) -> bool:
    """Set variables in lab.env (one line each; an orchestrator setting of the minimal profile in orchestrator.env,
    under its prefix: ``Lab.setting_file_and_name``); True when a file changed."""
    changed = False
    for key, value in values.items():
        path, name = lab.setting_file_and_name(key)
        lines = path.read_text().splitlines()
        wanted = f"{name}={value}"
        index = next((i for i, line in enumerate(lines) if line.startswith(name + "=")), None)
        if index is None:
            lines.append(wanted)
        elif lines[index] != wanted:
            lines[index] = wanted
        else:
            continue
        path.write_text("\n".join(lines) + "\n")
        changed = True
    return changed


def _llm_inject(mode: str, env: dict[str, str] | None = None) -> Inject:
    def inject(lab: Lab, target: str | None) -> dict[str, Any]:
        _llm_mode(lab, mode)
        if env and _llm_set_env(lab, env):
            lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)
        return {"mode": mode, "env": env or {}}

    return inject


def _llm_heal(lab: Lab, record: dict[str, Any]) -> None:
    _llm_mode(lab, "normal")
    # the provider accepts the deployment's key again (whatever a fix rotated it to)
    (lab.state / "llm" / "primary.key").write_text(lab.secret("llm_api_key") + "\n")
    if _llm_set_env(lab, LLM_BASELINE):
        lab.compose("up", "-d", "--no-deps", "--wait", "orchestrator", timeout=180)


# llm-ratelimit: the provider enforces a real quota (LLM_PROVIDER_RPM in lab.env, llm-provider recreated) below the
# load generator's ~30 LLM calls per minute, so it answers 429 with its limit in x-ratelimit-limit-requests; a
# client brought under that limit gets no 429 any more.
LLM_RATELIMIT_RPM = "20"


def _llm_ratelimit_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    rpm = target or LLM_RATELIMIT_RPM
    if _llm_set_env(lab, {"LLM_PROVIDER_RPM": rpm}):
        lab.compose("up", "-d", "--no-deps", "--wait", "llm-provider", timeout=180)
    return {"rpm": rpm}


def _llm_ratelimit_heal(lab: Lab, record: dict[str, Any]) -> None:
    path = lab.state / "lab.env"
    lines = path.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("LLM_PROVIDER_RPM=")]
    if kept != lines:
        path.write_text("\n".join(kept) + "\n")
        lab.compose("up", "-d", "--no-deps", "--wait", "llm-provider", timeout=180)
    _llm_heal(lab, record)


def _llm_auth_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    import secrets as _secrets

    # the provider rotated the key (as after a leak): the deployment's key is refused with 401. The new key is in
    # llm/primary.key, where the provider's console would show it; it is never recorded here.
    (lab.state / "llm" / "primary.key").write_text("sk-lab-rotated-" + _secrets.token_urlsafe(24) + "\n")
    return {"provider_key": "rotated"}


FAULTS = (
    Fault("llm-ratelimit", COMPONENT, "the LLM provider (mock) enforces a quota below the load (LLM_PROVIDER_RPM, "
          f"target: requests per minute, default {LLM_RATELIMIT_RPM}): 429 with its limit in the rate-limit headers",
          _llm_ratelimit_inject, _llm_ratelimit_heal, LLM_RATELIMIT_RPM),
    Fault("llm-unavailable", COMPONENT, "the LLM provider (mock) answers 503 to every call",
          _llm_inject("unavailable"), _llm_heal),
    Fault("llm-slow", COMPONENT, "the LLM provider (mock) answers after 4 s while the orchestrator's read timeout is "
          "2 s",
          _llm_inject("slow slow_ms=4000", {"LLM_READ_TIMEOUT": "2"}), _llm_heal),
    Fault("llm-auth", COMPONENT, "the LLM provider (mock) rotated its key: the deployment's key gets 401; the new key "
          "is in the state dir's llm/primary.key",
          _llm_auth_inject, _llm_heal),
)
