# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What to ask ``stack_evidence`` for: the union of the procedures' needs, minus what a run already has.

A need is ``{kind: {option: value}}`` in the module's option vocabulary, without connection details (the
common role adds those from the inventory). Union rules: booleans OR, numbers max, lists union (order kept),
dicts merged key by key with these same rules (so two different strings under one name are an error), strings
must agree. Selectors (``containers.services``, ``containers.logs.services``) narrow what is collected, and absent
or empty means every service: so a need without one wants everything, and the union keeps no selector then.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy


class NeedConflict(ValueError):
    pass


# Options whose list narrows what is collected; absent or empty means all (stack_evidence's DOCUMENTATION).
SELECTORS = frozenset(("containers.services", "containers.logs.services", "containers.pii_scan.services"))


def _selects_all(value):
    return not value


def _merge_selector(left, right):
    """None (absent: every service) when either side wants every service, else the union of both lists."""
    if _selects_all(left) or _selects_all(right):
        return None
    return left + [item for item in right if item not in left]


def _merge_value(key, left, right):
    if isinstance(left, bool) or isinstance(right, bool):
        return bool(left) or bool(right)
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return max(left, right)
    if isinstance(left, list) and isinstance(right, list):
        merged = list(left)
        merged.extend(item for item in right if item not in merged)
        return merged
    if isinstance(left, dict) and isinstance(right, dict):
        # nested option blocks (containers.logs) merge by the same rules; two different strings still conflict
        return _merge_options(key, left, right)
    if left != right:
        raise NeedConflict("evidence option %s is asked with two different values: %r and %r" % (key, left, right))
    return left


def _merge_options(path, left, right):
    merged = {}
    for name in list(left) + [name for name in right if name not in left]:
        key = "%s.%s" % (path, name)
        if key in SELECTORS:
            selector = _merge_selector(left.get(name), right.get(name))
            if selector is not None:
                merged[name] = selector
        elif name not in right or right[name] is None:
            merged[name] = copy.deepcopy(left[name])
        elif name not in left or left[name] is None:
            merged[name] = copy.deepcopy(right[name])
        else:
            merged[name] = _merge_value(key, left[name], right[name])
    return merged


def merge_kind(kind, left, right):
    """The options of one kind that answer both ``left`` and ``right`` (None: that side does not ask the kind)."""
    if left is None:
        return copy.deepcopy(right or {})
    if right is None:
        return copy.deepcopy(left)
    return _merge_options(kind, left, right)


def union(needs):
    """``{procedure: {kind: options}}`` (or a list of needs) -> ``{kind: options}``."""
    items = needs.values() if isinstance(needs, dict) else (needs or [])
    total = {}
    for need in items:
        for kind, options in (need or {}).items():
            total[kind] = merge_kind(kind, total.get(kind), options)
    return total


def _covers_value(key, have, want):
    if key in SELECTORS:
        # evidence of every service answers any selection; a selection answers only a subset of itself
        return _selects_all(have) or (not _selects_all(want) and all(item in have for item in want))
    if want is None:
        return True
    if have is None:
        return False
    if isinstance(want, bool) or isinstance(have, bool):
        return bool(have) or not bool(want)
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return have >= want
    if isinstance(want, list) and isinstance(have, list):
        return all(item in have for item in want)
    if isinstance(want, dict) and isinstance(have, dict):
        return _covers_options(key, have, want)
    return have == want


def _covers_options(path, have, want):
    names = set(want) | set(name for name in have if "%s.%s" % (path, name) in SELECTORS)
    return all(_covers_value("%s.%s" % (path, name), have.get(name), want.get(name)) for name in names)


def covers(kind, have, want):
    """Does evidence of ``kind`` gathered with options ``have`` answer a need ``want``?"""
    return _covers_options(kind, have or {}, want or {})


def request(needs, cached_spec=None, refresh=False):
    """The options to collect now, per kind (empty when the cache already answers every need)."""
    wanted = union(needs)
    cached_spec = cached_spec or {}
    todo = {}
    for kind, options in wanted.items():
        if refresh:
            todo[kind] = options
        elif kind not in cached_spec or not covers(kind, cached_spec[kind], options):
            todo[kind] = merge_kind(kind, cached_spec.get(kind), options)
    return todo
