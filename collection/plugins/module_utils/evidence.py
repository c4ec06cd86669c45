# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The evidence collector registry shared by ``octollm.remediation.stack_evidence``.

A collector is a class with a ``kind`` (the module option that configures it), ``OPTIONS`` (an
argument spec for that option, with ``no_log`` on secrets) and ``collect(options, deadline)``, which
returns a JSON-able dict. Collectors register themselves with :func:`register`; the module builds its
argument spec from the registry and runs the requested kinds concurrently, one thread per kind.

A failing probe is evidence, not a crash: :func:`run_collector` turns any exception into
``{"ok": False, "error": {"kind": ..., "message": ...}}`` with the kinds of docs/design.md
(unreachable, auth, missing_tool, timeout, other), and every message passes through :func:`redact`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import time
from concurrent.futures import ThreadPoolExecutor

COLLECTORS = {}

ERROR_KINDS = ("unreachable", "auth", "missing_tool", "timeout", "other")

MESSAGE_MAX = 300


class CollectorError(Exception):
    """A probe failure whose kind is known (raised by collectors)."""

    def __init__(self, kind, message):
        super(CollectorError, self).__init__(message)
        self.kind = kind if kind in ERROR_KINDS else "other"
        self.message = message


def register(cls):
    """Class decorator: add a collector to the registry under ``cls.kind``."""
    COLLECTORS[cls.kind] = cls
    return cls


def redact(message, secrets):
    """Remove every secret from a message and shorten it."""
    text = str(message)
    for secret in secrets or ():
        if secret and isinstance(secret, str) and len(secret) >= 3:
            text = text.replace(secret, "********")
    text = " ".join(text.split())
    if len(text) > MESSAGE_MAX:
        text = text[: MESSAGE_MAX - 3] + "..."
    return text


def _mro_names(exc):
    return {klass.__name__ for klass in type(exc).__mro__}


def classify(exc):
    """The design.md error kind of an exception (never raises)."""
    if isinstance(exc, CollectorError):
        return exc.kind
    names = _mro_names(exc)
    text = str(exc).lower()
    if isinstance(exc, ImportError) or "ModuleNotFoundError" in names:
        return "missing_tool"
    if names & {"AuthenticationError", "AuthenticationWrongNumberOfArgsError", "NoPermissionError"}:
        return "auth"
    if any(
        word in text
        for word in (
            "noauth",
            "wrongpass",
            "invalid password",
            "invalid username-password",
            "authentication required",
            "no password is set",
        )
    ):
        return "auth"
    code = getattr(exc, "code", None)
    if "HTTPError" in names and code in (401, 403, 407):
        return "auth"
    if isinstance(exc, socket.timeout) or "TimeoutError" in names or "timed out" in text:
        return "timeout"
    reason = getattr(exc, "reason", None)
    if reason is not None and reason is not exc and not isinstance(reason, str):
        inner = classify(reason)
        if inner != "other":
            return inner
    if isinstance(exc, (ConnectionError, socket.gaierror, socket.herror)) or "ConnectionError" in names:
        return "unreachable"
    if "URLError" in names:
        return "unreachable"
    return "other"


def error_of(exc, secrets=()):
    """``{"kind", "message"}`` for an exception, secrets removed."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, CollectorError):
        message = exc.message
    return {
        "kind": classify(exc),
        "message": redact(
            "%s: %s" % (type(exc).__name__, message) if not isinstance(exc, CollectorError) else message, secrets
        ),
    }


class Collector:
    """Base class: subclasses set ``kind``, ``OPTIONS``, ``SECRETS`` and implement ``collect``."""

    kind = None
    OPTIONS = {}
    SECRETS = ()  # option names whose values never appear in a message

    def __init__(self, options):
        self.options = options or {}

    def secrets(self):
        return [self.options.get(name) for name in self.SECRETS if self.options.get(name)]

    def collect(self, deadline):  # pragma: no cover - interface
        raise NotImplementedError


def run_collector(kind, options, deadline):
    """Run one collector; always returns a dict with ``ok``, ``error`` and ``elapsed_ms``."""
    started = time.monotonic()
    collector = COLLECTORS[kind](options)
    try:
        result = collector.collect(deadline)
        result.setdefault("ok", True)
        result.setdefault("error", None)
    except Exception as exc:  # a failing probe is evidence
        result = {"ok": False, "error": error_of(exc, collector.secrets())}
    if isinstance(result.get("error"), dict):
        # which evidence kind failed: the stack's components (postgres, redis, http...) or octoctl's own access to the
        # runtime (containers: the Docker API, kubernetes: the API server)
        result["error"].setdefault("source", kind)
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def run_all(requests, timeout):
    """Run ``{kind: options}`` concurrently (one thread per kind) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    results = {}
    if not requests:
        return results
    pool = ThreadPoolExecutor(max_workers=len(requests))
    try:
        futures = {kind: pool.submit(run_collector, kind, options, deadline) for kind, options in requests.items()}
        for kind, future in futures.items():
            try:
                results[kind] = future.result(timeout=max(0.1, deadline - time.monotonic()) + 1.0)
            except Exception as exc:  # the thread overran the deadline
                results[kind] = {
                    "ok": False,
                    "error": {
                        "source": kind,
                        "kind": "timeout",
                        "message": redact(
                            "%s evidence not collected within %ss (%s)" % (kind, timeout, type(exc).__name__), ()
                        ),
                    },
                }
    finally:
        pool.shutdown(wait=False)  # every probe has its own socket timeout: a straggler ends by itself
    return results


def remaining(deadline, floor=0.2):
    """Seconds left before the deadline (at least ``floor``)."""
    return max(floor, deadline - time.monotonic())
