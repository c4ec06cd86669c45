"""Notifications of incidents: one message (what was found, what was applied, what awaits whom, the run, a graph),
sent through the configured sinks (alertconfig.py): a JSON webhook (generic or Alertmanager-compatible), a
Slack-compatible incoming webhook, e-mail over SMTP.

Every message passes through the collection's redaction (``plugins/module_utils/redact.py``: credentials, keys,
e-mail addresses, card numbers) before any sink sees it; sink secrets (a Slack URL, an SMTP password) come from the
environment and are never part of a message.
"""

from __future__ import annotations

import html
import importlib.util
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import Any

from octoctl.config import REPO_ROOT
from octoctl.incidents import LEVEL_WHO, Incident, iso
from octoctl.models import RunReport
from octoctl.render import describe_change

TEXT_LIMIT = 240


@lru_cache(maxsize=1)
def _redact_module() -> Any:
    candidates = [REPO_ROOT / "collection" / "plugins" / "module_utils" / "redact.py"]
    try:
        from octoctl.config import Settings

        root = Settings.from_env().collection_root()
        if root is not None:
            candidates.insert(0, root / "plugins" / "module_utils" / "redact.py")
    except Exception:  # noqa: BLE001 - the repository's copy is the fallback
        pass
    for path in candidates:
        if path.is_file():
            spec = importlib.util.spec_from_file_location("octoctl_redact", path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise RuntimeError("the collection's redact.py was not found: no message is sent unredacted")


def redact(value: Any) -> Any:
    """Every string of a JSON-like value with credentials, keys, e-mail addresses and card numbers replaced."""
    return _redact_module().redact_value(value)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def build_message(event: str, incident: Incident, report: RunReport | None = None,
                  graph: dict[str, Any] | None = None, note: str = "") -> dict[str, Any]:
    """The notification of ``event`` (opened, escalated, resolved, approved, closed) for an incident."""
    findings, applied, awaiting = [], [], []
    if report is not None:
        for target in report.targets:
            for result in target.procedures:
                for finding in result.findings:
                    if finding.status in ("problem", "warning", "unknown"):
                        findings.append({"target": target.target, "procedure": result.procedure,
                                         "check": finding.check, "title": finding.title, "status": finding.status,
                                         "observed": _short(finding.observed), "expected": _short(finding.expected)})
                for action in result.actions:
                    item = {"target": target.target, "procedure": result.procedure, "id": action.id,
                            "title": action.title, "status": action.status, "outcome": _short(action.outcome),
                            "change": describe_change(action.change), "disruptive": action.disruptive}
                    if action.status == "applied":
                        applied.append(item)
                    elif action.status in ("awaiting_approval", "report", "failed"):
                        awaiting.append(item)
            for error in target.errors:
                findings.append({"target": target.target, "procedure": error.procedure or "", "check": error.kind,
                                 "title": "run error", "status": "unknown", "observed": _short(error.message),
                                 "expected": ""})
    approve = report.approve_with if report is not None and report.approve_with else None
    who = LEVEL_WHO.get(incident.level, "on-call engineer")
    if approve:
        awaits = f"{who} ({incident.level}): approve the disruptive steps with `{approve}`"
    elif awaiting:
        awaits = f"{who} ({incident.level}): act on what the run could not fix"
    elif incident.is_open and event == "escalated":
        awaits = f"{who} ({incident.level}): the incident is still open"
    else:
        awaits = ""
    message: dict[str, Any] = {
        "event": event,
        "incident": incident.key,
        "alertname": incident.alertname,
        "summary": incident.summary,
        "stack": incident.stack,
        "state": incident.state,
        "level": incident.level,
        "level_who": who,
        "level_reason": incident.level_reason,
        "procedures": list(incident.procedures),
        "fingerprint": incident.fingerprint,
        "starts_at": iso(incident.starts_at),
        "run_id": report.run_id if report is not None else incident.last_run_id,
        "run_status": report.status if report is not None else None,
        "findings": findings,
        "applied": applied,
        "awaiting": awaiting,
        "awaits": awaits,
        "approve_with": approve,
        "note": note,
        "graph": graph,
    }
    message = redact(message)
    message["text"] = render_text(message)
    return message


def render_text(message: dict[str, Any]) -> str:
    """The message as plain text (Markdown-friendly): Slack's text and the e-mail's text part."""
    title = {"opened": "opened", "escalated": "escalated", "resolved": "resolved", "approved": "approved",
             "closed": "closed"}.get(message["event"], message["event"])
    reason = f" - {message['level_reason']}" if message["level_reason"] else ""
    status = f" ({message['run_status']})" if message.get("run_status") else ""
    lines = [f"[{message['level']}] {message['incident']} {title}: {message['alertname']} on {message['stack']}",
             f"{message['summary']}",
             f"level: {message['level']} ({message['level_who']}){reason}",
             f"procedures: {', '.join(message['procedures']) or 'none known (diagnosed, never fixed)'}",
             f"run: {message['run_id'] or '-'}{status}"]
    if message["note"]:
        lines.append(f"note: {message['note']}")
    if message["findings"]:
        lines.append("found:")
        lines += [f"  - {f['procedure']} {f['check']} [{f['status']}]: {f['observed']} (expected {f['expected']})"
                  for f in message["findings"]]
    if message["applied"]:
        lines.append("applied:")
        lines += [f"  - {a['id']}: {a['change'] or a['title']} ({a['outcome']})" for a in message["applied"]]
    if message["awaiting"]:
        lines.append("awaiting:")
        lines += [f"  - {a['id']} [{a['status']}]: {a['change'] or a['title']}" for a in message["awaiting"]]
    if message["awaits"]:
        lines.append(f"awaits: {message['awaits']}")
    graph = message.get("graph")
    if graph:
        lines.append(f"graph: {graph['query']} ({len(graph['series'])} series)")
    return "\n".join(lines)


def render_html(message: dict[str, Any], report_json: str | None = None) -> str:
    """The message as one HTML page with the graph inline (the e-mail's HTML part; ``octoctl report --format
    html``)."""
    def esc(text: str) -> str:  # text content: & < and quotes escaped; a bare > is valid HTML ("old -> new")
        return html.escape(text).replace("&gt;", ">")

    def table(rows: list[dict[str, Any]], keys: list[str]) -> str:
        if not rows:
            return "<p>none</p>"
        head = "".join(f"<th>{esc(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{esc(str(r.get(k, '')))}</td>" for k in keys) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    graph = message.get("graph") or {}
    parts = [
        "<!DOCTYPE html>",
        f"<html><head><meta charset=\"utf-8\"><title>{esc(message['incident'])} {esc(message['alertname'])}</title>",
        "<style>body{font-family:sans-serif;max-width:900px;margin:1em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:90%}code{background:#eee}</style>",
        "</head><body>",
        f"<h1>[{esc(message['level'])}] {esc(message['incident'])}: {esc(message['alertname'])}</h1>",
        f"<p>{esc(message['summary'])}</p>",
        "<table>",
        *(f"<tr><th>{esc(k)}</th><td>{esc(str(message.get(k) or '-'))}</td></tr>"
          for k in ("event", "stack", "state", "level", "level_who", "level_reason", "starts_at", "run_id",
                    "run_status")),
        f"<tr><th>procedures</th><td>{esc(', '.join(message['procedures']) or 'none known')}</td></tr>",
        "</table>",
    ]
    if message.get("awaits"):
        parts.append(f"<h2>Awaits</h2><p>{esc(message['awaits'])}</p>")
    if message.get("approve_with"):
        parts.append(f"<p><code>{esc(message['approve_with'])}</code></p>")
    parts += ["<h2>Found</h2>", table(message["findings"], ["procedure", "check", "status", "observed", "expected"]),
              "<h2>Applied</h2>", table(message["applied"], ["id", "title", "change", "outcome"]),
              "<h2>Awaiting</h2>", table(message["awaiting"], ["id", "status", "title", "change", "outcome"])]
    if graph:
        parts += [f"<h2>Graph</h2><p><code>{esc(graph['query'])}</code></p>", graph.get("svg", "")]
    if message.get("note"):
        parts.append(f"<p>{esc(message['note'])}</p>")
    if report_json:
        parts.append(f"<details><summary>run report</summary><pre>{esc(report_json)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- sinks -----------------------------------------------------------------------------------------


def _secret(config: dict[str, Any], key: str, env: dict[str, str]) -> str | None:
    if config.get(f"{key}_env"):
        return env.get(str(config[f"{key}_env"]))
    value = config.get(key)
    return str(value) if value else None


def _post_json(url: str, body: dict[str, Any], timeout: float) -> None:
    request = urllib.request.Request(url, data=json.dumps(body, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "octoctl"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - a configured http(s) URL
        response.read()


def alertmanager_payload(message: dict[str, Any]) -> dict[str, Any]:
    """The message as an Alertmanager webhook payload (version 4), for receivers that take Alertmanager's format."""
    labels = {"alertname": "OctoctlIncident", "incident": message["incident"], "level": message["level"],
              "source_alert": message["alertname"], "stack": message["stack"], "event": message["event"]}
    annotations = {"summary": message["summary"], "description": message["text"],
                   "run_id": message["run_id"] or "", "awaits": message["awaits"]}
    status = "resolved" if message["state"] in ("resolved", "closed") else "firing"
    alert = {"status": status, "labels": labels, "annotations": annotations, "startsAt": message["starts_at"] or "",
             "endsAt": "", "generatorURL": "", "fingerprint": message["fingerprint"]}
    return {"version": "4", "status": status, "receiver": "octoctl", "groupKey": message["incident"],
            "groupLabels": {"incident": message["incident"]}, "commonLabels": labels,
            "commonAnnotations": annotations, "externalURL": "", "alerts": [alert], "octoctl": message}


def slack_payload(message: dict[str, Any]) -> dict[str, Any]:
    text = message["text"]
    return {"text": text.splitlines()[0],
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"```{text}```"}}]}


@dataclass
class Sink:
    config: dict[str, Any]
    env: dict[str, str]
    timeout: float = 10.0

    @property
    def name(self) -> str:
        kind = self.config["type"]
        if kind == "email":
            return f"email:{self.config.get('host', 'localhost')}:{self.config.get('port', 25)}"
        return f"{kind}:{self.config.get('name') or self.config.get('format') or 'json'}"

    def send(self, message: dict[str, Any]) -> None:
        kind = self.config["type"]
        if kind == "webhook":
            url = _secret(self.config, "url", self.env)
            if not url:
                raise ValueError("the webhook sink has no url")
            fmt = self.config.get("format", "generic")
            _post_json(url, alertmanager_payload(message) if fmt == "alertmanager" else message, self.timeout)
        elif kind == "slack":
            url = _secret(self.config, "url", self.env)
            if not url:
                raise ValueError("the slack sink has no url")
            _post_json(url, slack_payload(message), self.timeout)
        elif kind == "email":
            send_email(self.config, message, _secret(self.config, "password", self.env), self.timeout)
        else:
            raise ValueError(f"unknown sink type {kind}")


def email_message(config: dict[str, Any], message: dict[str, Any]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message["text"].splitlines()[0]
    mail["From"] = str(config.get("sender") or "octoctl@localhost")
    to = config.get("to") or []
    mail["To"] = ", ".join([to] if isinstance(to, str) else to)
    mail["X-Octoctl-Incident"] = message["incident"]
    mail.set_content(message["text"])
    mail.add_alternative(render_html(message), subtype="html")
    graph = message.get("graph") or {}
    if graph.get("svg"):
        mail.add_attachment(graph["svg"].encode(), maintype="image", subtype="svg+xml",
                            filename=f"{message['incident']}-graph.svg")
    return mail


def send_email(config: dict[str, Any], message: dict[str, Any], password: str | None, timeout: float) -> None:
    host, port = str(config.get("host", "localhost")), int(config.get("port", 25))
    mail = email_message(config, message)
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context) if config.get("ssl") else \
        smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if config.get("starttls"):
            smtp.starttls(context=context)
        if config.get("username") and password:
            smtp.login(str(config["username"]), password)
        smtp.send_message(mail)


def send_all(sinks: list[dict[str, Any]] | tuple[dict[str, Any], ...], message: dict[str, Any],
             env: dict[str, str], log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Send to every sink; a failing sink is reported (without its secrets), never fatal."""
    results = []
    for config in sinks:
        sink = Sink(dict(config), env)
        try:
            sink.send(message)
            results.append({"sink": sink.name, "ok": True})
        except (OSError, ValueError, smtplib.SMTPException, urllib.error.URLError) as exc:
            reason = redact(f"{type(exc).__name__}: {exc}")
            results.append({"sink": sink.name, "ok": False, "error": reason})
            if log is not None:
                log(f"notification through {sink.name} failed: {reason}")
    return results


def write_page(path: Path, message: dict[str, Any]) -> Path:
    path.write_text(render_html(message), encoding="utf-8")
    return path
