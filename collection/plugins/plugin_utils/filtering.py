# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What every filter file of the collection shares: plain data in, filter errors out."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib

from ansible.errors import AnsibleFilterError

PLUGIN_UTILS = "ansible_collections.octollm.remediation.plugins.plugin_utils."


class LazyPluginUtils(object):
    """A plugin_utils module imported at its first use, not when its filter file loads.

    To find one filter of a collection, Ansible loads every filter file of it, in every forked worker: with eager
    imports each task that used any filter compiled all the judgement code (~0.25 s of CPU, ~10 s in a diagnosis
    of every procedure). Lazily, a task compiles only the module its filter calls.
    """

    def __init__(self, name):
        self._name = name
        self._module = None

    def __getattr__(self, attribute):
        if self._module is None:
            self._module = importlib.import_module(PLUGIN_UTILS + self._name)
        return getattr(self._module, attribute)


def plain(value):
    """Ansible's lazy containers and tagged strings as plain Python data."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def wrap(func):
    def filter_function(*args, **kwargs):
        try:
            return func(*[plain(arg) for arg in args], **{key: plain(val) for key, val in kwargs.items()})
        except AnsibleFilterError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise AnsibleFilterError("%s: %s" % (func.__name__, exc)) from exc

    filter_function.__name__ = func.__name__
    filter_function.__doc__ = func.__doc__
    return filter_function
