# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for llm_api on Kubernetes: thin wrappers over
``plugin_utils/llm_api_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

lak = LazyPluginUtils("llm_api_kubernetes")


def llm_api_k8s_diagnosis(evidence, settings=None, previous=None, recovering=None):
    return lak.diagnose(evidence, settings, previous, tuple(recovering or ()))


def llm_api_k8s_plan(diagnosis, settings=None):
    return lak.plan(diagnosis, settings)


def llm_api_k8s_prevention(evidence, settings=None):
    return lak.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of llm_api on Kubernetes."""

    def filters(self):
        return {
            "llm_api_k8s_diagnosis": wrap(llm_api_k8s_diagnosis),
            "llm_api_k8s_plan": wrap(llm_api_k8s_plan),
            "llm_api_k8s_prevention": wrap(llm_api_k8s_prevention),
        }
