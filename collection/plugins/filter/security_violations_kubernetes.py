# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for security_violations on Kubernetes: thin wrappers over
``plugin_utils/security_violations_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

svk = LazyPluginUtils("security_violations_kubernetes")


def security_violations_k8s_diagnosis(evidence, settings=None, previous=None, recovering=None):
    return svk.diagnose(evidence, settings, previous, tuple(recovering or ()))


def security_violations_k8s_plan(diagnosis, settings=None):
    return svk.plan(diagnosis, settings)


def security_violations_k8s_prevention(evidence, settings=None):
    return svk.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of security_violations on Kubernetes."""

    def filters(self):
        return {
            "security_violations_k8s_diagnosis": wrap(security_violations_k8s_diagnosis),
            "security_violations_k8s_plan": wrap(security_violations_k8s_plan),
            "security_violations_k8s_prevention": wrap(security_violations_k8s_prevention),
        }
