# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for task_routing: thin wrappers over ``plugin_utils/task_routing.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

tr = LazyPluginUtils("task_routing")


def task_routing_diagnosis(evidence, settings=None):
    return tr.diagnose(evidence, settings)


def task_routing_plan(diagnosis, settings=None):
    return tr.plan(diagnosis, settings)


def task_routing_prevention(evidence, settings=None):
    return tr.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of task_routing."""

    def filters(self):
        return {
            "task_routing_diagnosis": wrap(task_routing_diagnosis),
            "task_routing_plan": wrap(task_routing_plan),
            "task_routing_prevention": wrap(task_routing_prevention),
        }
