# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for high_latency on Kubernetes: thin wrappers over
``plugin_utils/high_latency_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

hlk = LazyPluginUtils("high_latency_kubernetes")


def high_latency_k8s_diagnosis(evidence, settings=None, extra=None):
    return hlk.diagnose(evidence, settings, extra)


def high_latency_k8s_plan(diagnosis, settings=None):
    return hlk.plan(diagnosis, settings)


def high_latency_k8s_prevention(evidence, settings=None):
    return hlk.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of high_latency on Kubernetes."""

    def filters(self):
        return {
            "high_latency_k8s_diagnosis": wrap(high_latency_k8s_diagnosis),
            "high_latency_k8s_plan": wrap(high_latency_k8s_plan),
            "high_latency_k8s_prevention": wrap(high_latency_k8s_prevention),
        }
