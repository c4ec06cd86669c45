# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for memory_leaks on Kubernetes: thin wrappers over
``plugin_utils/memory_leaks_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

mlk = LazyPluginUtils("memory_leaks_kubernetes")


def memory_leaks_k8s_diagnosis(evidence, settings=None):
    return mlk.diagnose(evidence, settings)


def memory_leaks_k8s_plan(diagnosis, settings=None):
    return mlk.plan(diagnosis, settings)


def memory_leaks_k8s_prevention(evidence, settings=None):
    return mlk.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of memory_leaks on Kubernetes."""

    def filters(self):
        return {
            "memory_leaks_k8s_diagnosis": wrap(memory_leaks_k8s_diagnosis),
            "memory_leaks_k8s_plan": wrap(memory_leaks_k8s_plan),
            "memory_leaks_k8s_prevention": wrap(memory_leaks_k8s_prevention),
        }
