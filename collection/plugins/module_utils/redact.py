# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""PII redaction shared by the evidence collectors (log lines, SQL text, HTTP bodies) and the filters.

A finding never carries raw PII: every text that leaves a collector and may hold user data passes through
:func:`redact_pii`, which replaces each match with ``[REDACTED:<kind>]`` and counts the matches per kind.

Kinds (:data:`PII_PATTERNS`):

``email``
    an e-mail address.
``card``
    a payment card number: 13 to 19 digits, optionally grouped by spaces or dashes, that passes the Luhn
    check (so that timestamps, ids and phone numbers are left alone).
``api_key``
    credentials: provider keys (``sk-...``, ``sk-proj-...``, AWS ``AKIA...``, GitHub ``ghp_...``, Slack
    ``xox?-...``, Google ``AIza...``), bearer tokens, the value of ``api_key=``, ``token:``, ``secret=``,
    ``password=`` style assignments and of environment-style ones whose name ends in ``_PASSWORD``, ``_SECRET``,
    ``_TOKEN``, ``_KEY`` and the like (``POSTGRES_PASSWORD=``, ``AWS_SECRET_ACCESS_KEY=``, ``LLM_API_KEY=``), the
    password of a URL (``postgresql://user:password@host``) and SQL ``PASSWORD '...'`` literals (the name is
    kept, the value goes).
``ssn``
    a US social security number written ``123-45-6789`` (not in the default set).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

DEFAULT_PII = ("email", "card", "api_key")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# 13-19 digits, single spaces or dashes allowed between them; the Luhn check decides
_CARD = re.compile(r"(?<![\d.-])\d(?:[ -]?\d){12,18}(?![\d])")
_KEY_TOKENS = re.compile(
    r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35})"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})")
_ASSIGNMENT = re.compile(
    r"(?i)\b((?:x-)?api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|secret|"
    r"client[_-]?secret|password|passwd|pwd)(\"?'?\s*[=:]\s*\"?'?)([^\s\"',;&}]{6,})"
)
# environment-style names (upper case, as in env files and process environments): FOO_PASSWORD=..., X_API_KEY: ...
_ENV_ASSIGNMENT = re.compile(
    r"\b([A-Z][A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIALS?)|[A-Z][A-Z0-9_]*_(?:KEY|APIKEY|PWD|PASS))"
    r"(\"?'?\s*[=:]\s*\"?'?)([^\s\"',;&}]+)"
)
# scheme://user:password@host - the password goes, the user and host stay
_URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)([^\s@/'\"]+)(@)", re.IGNORECASE)
# ALTER USER x PASSWORD '...', CREATE ROLE x WITH PASSWORD '...'
_SQL_PASSWORD = re.compile(r"(?i)\b(PASSWORD\s+)('(?:[^']|'')*'|\$\$.*?\$\$)")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")

MARK = "[REDACTED:%s]"


def luhn_valid(digits):
    """True when the digit string passes the Luhn checksum (payment card numbers do)."""
    digits = re.sub(r"\D", "", str(digits))
    if not digits:
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(text, counts):
    def replace(match):
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            counts["card"] = counts.get("card", 0) + 1
            return MARK % "card"
        return match.group(0)

    return _CARD.sub(replace, text)


def _simple(pattern, kind):
    def apply(text, counts):
        result, number = pattern.subn(MARK % kind, text)
        if number:
            counts[kind] = counts.get(kind, 0) + number
        return result

    return apply


def _api_key(text, counts):
    found = [0]

    def keep_name(match):
        found[0] += 1
        return match.group(1) + match.group(2) + MARK % "api_key"

    def keep_quoted(match):
        found[0] += 1
        return match.group(1) + "'" + MARK % "api_key" + "'"

    def unless_done(match):
        return match.group(0) if match.group(3).startswith("[REDACTED:") else keep_name(match)

    def url(match):
        if match.group(2).startswith("[REDACTED:"):
            return match.group(0)
        found[0] += 1
        return match.group(1) + MARK % "api_key" + match.group(3)

    text = _BEARER.sub(keep_name, text)
    text = _URL_CREDENTIALS.sub(url, text)
    text = _SQL_PASSWORD.sub(keep_quoted, text)
    text = _ENV_ASSIGNMENT.sub(unless_done, text)
    text = _ASSIGNMENT.sub(unless_done, text)
    text, number = _KEY_TOKENS.subn(MARK % "api_key", text)
    found[0] += number
    if found[0]:
        counts["api_key"] = counts.get("api_key", 0) + found[0]
    return text


# Order matters: keys first (a key may contain an '@' or long digit runs), then e-mail, then cards.
PII_PATTERNS = {
    "api_key": _api_key,
    "email": _simple(_EMAIL, "email"),
    "card": _card,
    "ssn": _simple(_SSN, "ssn"),
}


def validate_kinds(kinds):
    """The requested kinds, checked (``None`` means the default set)."""
    if kinds is None:
        return list(DEFAULT_PII)
    unknown = [kind for kind in kinds if kind not in PII_PATTERNS]
    if unknown:
        raise ValueError("unknown PII kind(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(PII_PATTERNS))))
    return list(kinds)


def redact_pii(text, kinds=DEFAULT_PII, counts=None):
    """``(redacted_text, counts)``: every match of the PII ``kinds`` replaced by ``[REDACTED:<kind>]``.

    ``counts`` (a dict, updated in place when given) counts the replacements per kind.
    """
    counts = {} if counts is None else counts
    if text is None:
        return None, counts
    if not isinstance(text, str):
        text = str(text)
    wanted = set(kinds or ())
    for kind, apply in PII_PATTERNS.items():
        if kind in wanted:
            text = apply(text, counts)
    return text, counts


def redact_value(value, kinds=DEFAULT_PII, counts=None):
    """:func:`redact_pii` over every string in a JSON-like value (dicts, lists); returns the new value."""
    counts = {} if counts is None else counts
    if isinstance(value, str):
        return redact_pii(value, kinds, counts)[0]
    if isinstance(value, dict):
        return {key: redact_value(item, kinds, counts) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, kinds, counts) for item in value]
    return value


# a setting whose name says it holds a secret (the names _ENV_ASSIGNMENT masks in text)
_SECRET_NAME = re.compile(
    r"^([A-Z][A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIALS?)|[A-Z][A-Z0-9_]*_(?:KEY|APIKEY|PWD|PASS))$",
    re.IGNORECASE,
)


def redact_setting(name, value, secret=False):
    """A setting's value as a report may show it: hidden whole when the setting is a secret (its name says so, as
    ``LLM_API_KEY`` or ``POSTGRES_PASSWORD``, or the caller knows it is), else with the password of a URL and any
    other credential or PII masked (``postgresql://octollm:[REDACTED:api_key]@db:5432/octollm``)."""
    if value is None:
        return None
    if secret or _SECRET_NAME.match(str(name or "")):
        return MARK % "api_key"
    return redact_pii("%s" % (value,), DEFAULT_PII)[0]


def contains_pii(text, kinds=DEFAULT_PII):
    """The kinds found in ``text`` with their counts (empty when clean)."""
    return redact_pii(text, kinds)[1]
