# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for memory_leaks: thin wrappers over ``plugin_utils/memory_leaks.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

ml = LazyPluginUtils("memory_leaks")


def memory_leaks_diagnosis(evidence, settings=None):
    return ml.diagnose(evidence, settings)


def memory_leaks_plan(diagnosis, settings=None):
    return ml.plan(diagnosis, settings)


def memory_leaks_prevention(evidence, settings=None):
    return ml.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of memory_leaks."""

    def filters(self):
        return {
            "memory_leaks_diagnosis": wrap(memory_leaks_diagnosis),
            "memory_leaks_plan": wrap(memory_leaks_plan),
            "memory_leaks_prevention": wrap(memory_leaks_prevention),
        }
