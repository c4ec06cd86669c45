"""Settings of the alert path (``octoctl alert``, ``octoctl listen``, incidents, notifications).

Read from a YAML file, ``$OCTOCTL_ALERTS_CONFIG`` or ``<state>/alerts.yml`` when it exists, then from the
environment, which wins:

- ``incidents_url`` (``OCTOCTL_INCIDENTS_URL``): the incident store, ``sqlite:///<state>/incidents.db`` by default,
  or ``postgresql://...``;
- ``escalation_l2_after`` (``OCTOCTL_ESCALATION_L2_AFTER``, ``15m``): an unresolved L1 incident rises to L2;
- ``tick`` (``OCTOCTL_TICK``, ``60s``): how often the listener applies the escalation clock;
- ``prometheus_url`` (``OCTOCTL_PROMETHEUS_URL``, ``http://127.0.0.1:9090``): range queries for the graphs;
- ``graph_before`` (``OCTOCTL_GRAPH_BEFORE``, ``15m``): how much of the metric before the alert a graph shows;
- ``lock_timeout`` (``OCTOCTL_LOCK_TIMEOUT``, ``30m``): how long a run waits for the stack's run lock;
- ``listen_host`` / ``listen_port`` (``OCTOCTL_LISTEN_HOST`` / ``OCTOCTL_LISTEN_PORT``, ``127.0.0.1`` / ``5000``):
  where Alertmanager posts;
- ``metrics_port`` (``OCTOCTL_METRICS_PORT``, ``5001``): the listener's ``/metrics``;
- ``notify_on`` (``OCTOCTL_NOTIFY_ON``, ``opened,escalated``): which incident events are notified (also
  ``resolved``, ``approved``, ``closed``);
- ``allow_disruptive`` (``OCTOCTL_ALLOW_DISRUPTIVE``, none): procedures whose disruptive fixes the listener applies
  without approval (the role's ``<role>_allow_disruptive``), e.g. ``[service_unavailable]`` to restart a crashed
  service at once; every other disruptive step waits for ``octoctl approve RUN_ID``;
- ``sinks`` (``OCTOCTL_NOTIFY_WEBHOOK``: comma-separated URLs; ``OCTOCTL_NOTIFY_SLACK``: a Slack URL): below.

Sinks (a list)::

    sinks:
      - {type: webhook, url: http://127.0.0.1:9095/hook}                      # generic JSON (format: generic)
      - {type: webhook, url: http://am-relay/api/v2/alerts, format: alertmanager}
      - {type: slack, url_env: SLACK_WEBHOOK_URL}                            # Slack-compatible incoming webhook
      - {type: email, host: smtp.example.org, port: 587, starttls: true, sender: octoctl@example.org,
         to: [oncall@example.org], username: octoctl, password_env: SMTP_PASSWORD}

Secrets (a Slack URL, an SMTP password) are best named by ``url_env`` / ``password_env``: the environment variable
that holds them; they are never written to a message, a log line or the incident store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from octoctl.errors import ExitCode, OctoctlError
from octoctl.incidents import parse_duration

NOTIFY_EVENTS = ("opened", "escalated", "resolved", "approved", "closed")


@dataclass(frozen=True)
class AlertSettings:
    incidents_url: str
    escalation_l2_after: timedelta = timedelta(minutes=15)
    tick: timedelta = timedelta(seconds=60)
    prometheus_url: str = "http://127.0.0.1:9090"
    graph_before: timedelta = timedelta(minutes=15)
    lock_timeout: timedelta = timedelta(minutes=30)
    listen_host: str = "127.0.0.1"
    listen_port: int = 5000
    metrics_port: int = 5001
    notify_on: tuple[str, ...] = ("opened", "escalated")
    sinks: tuple[dict[str, Any], ...] = ()
    allow_disruptive: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, state_dir: Path, env: Mapping[str, str] | None = None) -> AlertSettings:
        env = dict(os.environ if env is None else env)
        path = Path(env["OCTOCTL_ALERTS_CONFIG"]) if env.get("OCTOCTL_ALERTS_CONFIG") else state_dir / "alerts.yml"
        data: dict[str, Any] = {}
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise OctoctlError(f"the alerts configuration {path} is not YAML: {exc}", ExitCode.USAGE) from exc
            if not isinstance(data, dict):
                raise OctoctlError(f"the alerts configuration {path} must be a mapping", ExitCode.USAGE)
        elif env.get("OCTOCTL_ALERTS_CONFIG"):
            raise OctoctlError(f"the alerts configuration {path} does not exist", ExitCode.USAGE)

        def pick(key: str, var: str, default: Any) -> Any:
            return env.get(var) or data.get(key) or default

        sinks = list(data.get("sinks") or [])
        for url in filter(None, (env.get("OCTOCTL_NOTIFY_WEBHOOK") or "").split(",")):
            sinks.append({"type": "webhook", "url": url.strip()})
        if env.get("OCTOCTL_NOTIFY_SLACK"):
            sinks.append({"type": "slack", "url_env": "OCTOCTL_NOTIFY_SLACK"})
        for sink in sinks:
            if not isinstance(sink, dict) or sink.get("type") not in ("webhook", "slack", "email"):
                raise OctoctlError(f"a sink must be a mapping with type webhook, slack or email, not {sink!r}",
                                   ExitCode.USAGE)
        notify_on = pick("notify_on", "OCTOCTL_NOTIFY_ON", "opened,escalated")
        if isinstance(notify_on, str):
            notify_on = [w.strip() for w in notify_on.split(",") if w.strip()]
        unknown = set(notify_on) - set(NOTIFY_EVENTS)
        if unknown:
            raise OctoctlError(f"notify_on: unknown events {sorted(unknown)} (known: {', '.join(NOTIFY_EVENTS)})",
                               ExitCode.USAGE)
        allow = pick("allow_disruptive", "OCTOCTL_ALLOW_DISRUPTIVE", [])
        if isinstance(allow, str):
            allow = [w.strip() for w in allow.split(",") if w.strip()]
        return cls(
            allow_disruptive=tuple(allow),
            incidents_url=str(pick("incidents_url", "OCTOCTL_INCIDENTS_URL",
                                   f"sqlite:///{state_dir / 'incidents.db'}")),
            escalation_l2_after=parse_duration(pick("escalation_l2_after", "OCTOCTL_ESCALATION_L2_AFTER", "15m")),
            tick=parse_duration(pick("tick", "OCTOCTL_TICK", "60s")),
            prometheus_url=str(pick("prometheus_url", "OCTOCTL_PROMETHEUS_URL", "http://127.0.0.1:9090")).rstrip("/"),
            graph_before=parse_duration(pick("graph_before", "OCTOCTL_GRAPH_BEFORE", "15m")),
            lock_timeout=parse_duration(pick("lock_timeout", "OCTOCTL_LOCK_TIMEOUT", "30m")),
            listen_host=str(pick("listen_host", "OCTOCTL_LISTEN_HOST", "127.0.0.1")),
            listen_port=int(pick("listen_port", "OCTOCTL_LISTEN_PORT", 5000)),
            metrics_port=int(pick("metrics_port", "OCTOCTL_METRICS_PORT", 5001)),
            notify_on=tuple(notify_on),
            sinks=tuple(sinks),
            env=env,
        )
