# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Turn Redis key names into patterns by normalising ids, hashes, numbers and timestamps.

``llm:5d41402abc4b2a76b9719d911017c592`` -> ``llm:<hash>``, ``entity:42`` -> ``entity:<n>``,
``task:17:user9:1700000000`` -> ``task:<n>:user<n>:<ts>``, ``arm:capability:coder-arm`` stays.
The number of variable segments tells how specific a key is (the seed's scenario B).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

SEPARATORS = re.compile(r"([:/|#])")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
HEX = re.compile(r"^(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{16,}$")
DIGITS = re.compile(r"^\d+$")
ISO_TS = re.compile(r"^\d{4}-?\d{2}-?\d{2}([T _]?\d{2}[:.]?\d{2}([:.]?\d{2}([.,]\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
TOKEN = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_\-=+]{24,}$")
FLOAT = re.compile(r"^\d+\.\d+$")
# ISO date-times hold colons, the usual key separator: they are replaced before the key is split.
ISO_IN_KEY = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
DIGIT_RUN = re.compile(r"\d+")

PLACEHOLDERS = ("<uuid>", "<hash>", "<ts>", "<n>", "<token>", "<f>")


def _is_epoch(text):
    if len(text) == 10:
        return 946684800 <= int(text) <= 4102444800  # 2000..2100 in seconds
    if len(text) == 13:
        return 946684800000 <= int(text) <= 4102444800000  # milliseconds
    return False


def normalise_segment(segment):
    """The pattern of one key segment (between separators)."""
    if not segment or segment in PLACEHOLDERS:
        return segment
    if UUID.match(segment):
        return "<uuid>"
    if DIGITS.match(segment):
        return "<ts>" if _is_epoch(segment) else "<n>"
    if ISO_TS.match(segment):
        return "<ts>"
    if FLOAT.match(segment):
        return "<f>"
    if HEX.match(segment):
        return "<hash>"
    if TOKEN.match(segment):
        return "<token>"
    return DIGIT_RUN.sub("<n>", segment)


def normalise_key(key):
    """The pattern of a key name (str or bytes)."""
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    key = ISO_IN_KEY.sub("<ts>", key)
    parts = SEPARATORS.split(key)
    return "".join(part if SEPARATORS.match(part) else normalise_segment(part) for part in parts)


def variable_segments(pattern):
    """How many segments of a pattern hold a placeholder."""
    return sum(1 for part in SEPARATORS.split(pattern) if any(p in part for p in PLACEHOLDERS))


def has_timestamp(pattern):
    return "<ts>" in pattern


def pattern_glob(pattern):
    """A SCAN MATCH glob for a pattern (placeholders become ``*``)."""
    glob = re.sub(r"<(uuid|hash|ts|n|token|f)>", "*", pattern)
    return re.sub(r"\*+", "*", glob)
