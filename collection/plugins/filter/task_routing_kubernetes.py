# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for task_routing on Kubernetes: thin wrappers over
``plugin_utils/task_routing_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

trk = LazyPluginUtils("task_routing_kubernetes")


def task_routing_k8s_diagnosis(evidence, settings=None):
    return trk.diagnose(evidence, settings)


def task_routing_k8s_plan(diagnosis, settings=None):
    return trk.plan(diagnosis, settings)


def task_routing_k8s_prevention(evidence, settings=None):
    return trk.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of task_routing on Kubernetes."""

    def filters(self):
        return {
            "task_routing_k8s_diagnosis": wrap(task_routing_k8s_diagnosis),
            "task_routing_k8s_plan": wrap(task_routing_k8s_plan),
            "task_routing_k8s_prevention": wrap(task_routing_k8s_prevention),
        }
