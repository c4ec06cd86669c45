# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What to ask ``stack_evidence`` for: the union of the procedures' needs, minus what a run already has.

A need is ``{kind: {option: value}}`` in the module's option vocabulary, without connection details (the
common role adds those from the inventory). Union rules: booleans OR, numbers max, lists union (order kept),
dicts merged key by key with these same rules (so two different strings under one name are an error), strings
must agree.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy


class NeedConflict(ValueError):
    pass


def _merge_value(key, left, right):
    if left is None:
        return copy.deepcopy(right)
    if right is None:
        return copy.deepcopy(left)
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
        merged = dict(left)
        for name, value in right.items():
            merged[name] = _merge_value("%s.%s" % (key, name), merged.get(name), value)
        return merged
    if left != right:
        raise NeedConflict("evidence option %s is asked with two different values: %r and %r" % (key, left, right))
    return left


def merge_kind(left, right):
    merged = dict(left or {})
    for key, value in (right or {}).items():
        merged[key] = _merge_value(key, merged.get(key), value)
    return merged


def union(needs):
    """``{procedure: {kind: options}}`` (or a list of needs) -> ``{kind: options}``."""
    items = needs.values() if isinstance(needs, dict) else (needs or [])
    total = {}
    for need in items:
        for kind, options in (need or {}).items():
            total[kind] = merge_kind(total.get(kind), options)
    return total


def _covers_value(have, want):
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
        return all(name in have and _covers_value(have[name], value) for name, value in want.items())
    return have == want


def covers(have, want):
    """Does evidence gathered with options ``have`` answer a need ``want`` of the same kind?"""
    return all(_covers_value((have or {}).get(key), value) for key, value in (want or {}).items())


def request(needs, cached_spec=None, refresh=False):
    """The options to collect now, per kind (empty when the cache already answers every need)."""
    wanted = union(needs)
    cached_spec = cached_spec or {}
    todo = {}
    for kind, options in wanted.items():
        if refresh:
            todo[kind] = options
        elif kind not in cached_spec or not covers(cached_spec[kind], options):
            todo[kind] = merge_kind(cached_spec.get(kind), options)
    return todo
