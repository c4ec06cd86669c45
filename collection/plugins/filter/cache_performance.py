# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for cache_performance: thin wrappers over ``plugin_utils/cache_performance.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

cp = LazyPluginUtils("cache_performance")


def cache_performance_diagnosis(evidence, settings=None, previous=None, recovering=None):
    return cp.diagnose(evidence, settings, previous, tuple(recovering or ()))


def cache_performance_plan(diagnosis, settings=None):
    return cp.plan(diagnosis, settings)


def cache_performance_prevention(evidence, settings=None):
    return cp.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of cache_performance."""

    def filters(self):
        return {
            "cache_performance_diagnosis": wrap(cache_performance_diagnosis),
            "cache_performance_plan": wrap(cache_performance_plan),
            "cache_performance_prevention": wrap(cache_performance_prevention),
        }
