# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What every filter file of the collection shares: plain data in, filter errors out."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


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
