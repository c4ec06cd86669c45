# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""An Event-Driven Ansible event source: an HTTP receiver of Alertmanager webhook payloads.

``ansible.eda`` (which has an alertmanager source) is not on the package registries this project can use, so the
collection carries its own. Alertmanager posts webhook payloads of version 4::

    {"version": "4", "status": "firing", "receiver": "...", "groupKey": "...", "groupLabels": {...},
     "commonLabels": {...}, "commonAnnotations": {...}, "externalURL": "...",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...}, "startsAt": "...",
                 "endsAt": "...", "generatorURL": "...", "fingerprint": "..."}]}

Each alert becomes one event::

    {"alert": {"status", "labels", "annotations", "fingerprint", "startsAt", "endsAt", "generatorURL"},
     "meta": {"receiver", "groupKey", "externalURL", "endpoint"}}

(ansible-rulebook adds ``meta.source``, ``meta.received_at`` and ``meta.uuid``.)

A body that is not such a payload is answered 400 with the reason (``{"error": "..."}``) and emits nothing; a
good one is answered 202 with the number of events. ``GET /health`` answers 200.

Arguments (rulebook ``sources``):

``host``
    address to bind (default ``127.0.0.1``).
``port``
    port to bind (default ``5000``).
``path``
    the path Alertmanager posts to (default ``/alerts``).
``max_alerts``
    refuse payloads with more alerts than this (default 1000).

Example::

    sources:
      - octollm.remediation.alertmanager:
          host: 127.0.0.1
          port: 5000
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import asyncio
import json

from aiohttp import web

SOURCE = "octollm.remediation.alertmanager"
STATUSES = ("firing", "resolved")
ALERT_KEYS = ("status", "labels", "annotations", "fingerprint", "startsAt", "endsAt", "generatorURL")


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook payload; the message says why."""


def _mapping_of_strings(value, where):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError("%s must be an object" % where)
    for key, item in value.items():
        if not isinstance(item, str):
            raise PayloadError("%s.%s must be a string" % (where, key))
    return dict(value)


def _alert(raw, index, default_status):
    where = "alerts[%d]" % index
    if not isinstance(raw, dict):
        raise PayloadError("%s must be an object" % where)
    status = raw.get("status") or default_status
    if status not in STATUSES:
        raise PayloadError("%s.status must be firing or resolved, not %r" % (where, status))
    labels = _mapping_of_strings(raw.get("labels"), where + ".labels")
    if not labels.get("alertname"):
        raise PayloadError("%s.labels.alertname is missing" % where)
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise PayloadError("%s.fingerprint is missing" % where)
    alert = {
        "status": status,
        "labels": labels,
        "annotations": _mapping_of_strings(raw.get("annotations"), where + ".annotations"),
        "fingerprint": fingerprint,
    }
    for key in ("startsAt", "endsAt", "generatorURL"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise PayloadError("%s.%s must be a string" % (where, key))
        alert[key] = value or ""
    if not alert["startsAt"]:
        raise PayloadError("%s.startsAt is missing" % where)
    return alert


def parse_payload(body, max_alerts=1000):
    """The events of one webhook body (bytes or str); PayloadError with the reason when it is malformed."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise PayloadError("the body is not JSON: %s" % exc) from None
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a JSON object")
    version = payload.get("version")
    if version is not None and str(version) != "4":
        raise PayloadError("unsupported payload version %r (Alertmanager webhook version 4 is expected)" % version)
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts must be a list")
    if len(alerts) > max_alerts:
        raise PayloadError("too many alerts in one payload (%d > %d)" % (len(alerts), max_alerts))
    default_status = payload.get("status") if payload.get("status") in STATUSES else None
    meta = {
        "receiver": payload.get("receiver") or "",
        "groupKey": payload.get("groupKey") or "",
        "externalURL": payload.get("externalURL") or "",
    }
    return [{"alert": _alert(raw, i, default_status), "meta": dict(meta)} for i, raw in enumerate(alerts)]


def make_app(queue, path="/alerts", max_alerts=1000):
    """The aiohttp application: POST ``path`` puts one event per alert on ``queue``."""

    async def receive(request):
        body = await request.read()
        try:
            events = parse_payload(body, max_alerts)
        except PayloadError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        for event in events:
            event["meta"]["endpoint"] = path
            await queue.put(event)
        return web.json_response({"events": len(events)}, status=202)

    async def health(request):
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post(path, receive)
    app.router.add_get("/health", health)
    return app


async def main(queue, args):
    """The event source's entry point (ansible-rulebook calls it with the rulebook's arguments)."""
    host = args.get("host") or "127.0.0.1"
    port = int(args.get("port") or 5000)
    app = make_app(queue, args.get("path") or "/alerts", int(args.get("max_alerts") or 1000))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await asyncio.Future()
    finally:
        await runner.cleanup()


if __name__ == "__main__":

    class _PrintQueue:
        async def put(self, event):
            print(json.dumps(event))

    asyncio.run(main(_PrintQueue(), {"port": 5000}))
