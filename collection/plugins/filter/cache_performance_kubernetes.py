# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for cache_performance on Kubernetes: thin wrappers over
``plugin_utils/cache_performance_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

cpk = LazyPluginUtils("cache_performance_kubernetes")


def cache_performance_k8s_diagnosis(evidence, settings=None, previous=None, recovering=None):
    return cpk.diagnose(evidence, settings, previous, tuple(recovering or ()))


def cache_performance_k8s_plan(diagnosis, settings=None):
    return cpk.plan(diagnosis, settings)


def cache_performance_k8s_prevention(evidence, settings=None):
    return cpk.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of cache_performance on Kubernetes."""

    def filters(self):
        return {
            "cache_performance_k8s_diagnosis": wrap(cache_performance_k8s_diagnosis),
            "cache_performance_k8s_plan": wrap(cache_performance_k8s_plan),
            "cache_performance_k8s_prevention": wrap(cache_performance_k8s_prevention),
        }
