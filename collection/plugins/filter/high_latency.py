# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for high_latency: thin wrappers over ``plugin_utils/high_latency.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

hl = LazyPluginUtils("high_latency")


def high_latency_diagnosis(evidence, settings=None, extra=None):
    return hl.diagnose(evidence, settings, extra)


def high_latency_plan(diagnosis, settings=None):
    return hl.plan(diagnosis, settings)


def high_latency_prevention(evidence, settings=None):
    return hl.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of high_latency."""

    def filters(self):
        return {
            "high_latency_diagnosis": wrap(high_latency_diagnosis),
            "high_latency_plan": wrap(high_latency_plan),
            "high_latency_prevention": wrap(high_latency_prevention),
        }
