# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for resource_exhaustion on Kubernetes: thin wrappers over
``plugin_utils/resource_exhaustion_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

rek = LazyPluginUtils("resource_exhaustion_kubernetes")


def resource_exhaustion_k8s_diagnosis(evidence, settings=None):
    return rek.diagnose(evidence, settings)


def resource_exhaustion_k8s_plan(diagnosis, settings=None):
    return rek.plan(diagnosis, settings)


def resource_exhaustion_k8s_prevention(evidence, settings=None):
    return rek.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of resource_exhaustion on Kubernetes."""

    def filters(self):
        return {
            "resource_exhaustion_k8s_diagnosis": wrap(resource_exhaustion_k8s_diagnosis),
            "resource_exhaustion_k8s_plan": wrap(resource_exhaustion_k8s_plan),
            "resource_exhaustion_k8s_prevention": wrap(resource_exhaustion_k8s_prevention),
        }
