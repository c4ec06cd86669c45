# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for service_unavailable on Kubernetes: thin wrappers over
``plugin_utils/service_unavailable_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

suk = LazyPluginUtils("service_unavailable_kubernetes")


def service_unavailable_k8s_diagnosis(evidence, settings=None):
    return suk.diagnose(evidence, settings)


def service_unavailable_k8s_plan(diagnosis, settings=None):
    return suk.plan(diagnosis, settings)


def service_unavailable_k8s_prevention(evidence, settings=None):
    return suk.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of service_unavailable on Kubernetes."""

    def filters(self):
        return {
            "service_unavailable_k8s_diagnosis": wrap(service_unavailable_k8s_diagnosis),
            "service_unavailable_k8s_plan": wrap(service_unavailable_k8s_plan),
            "service_unavailable_k8s_prevention": wrap(service_unavailable_k8s_prevention),
        }
