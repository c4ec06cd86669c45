# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for llm_api: thin wrappers over ``plugin_utils/llm_api.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

llm = LazyPluginUtils("llm_api")


def llm_api_diagnosis(evidence, settings=None, previous=None, recovering=None):
    return llm.diagnose(evidence, settings, previous, tuple(recovering or ()))


def llm_api_plan(diagnosis, settings=None):
    return llm.plan(diagnosis, settings)


def llm_api_prevention(evidence, settings=None):
    return llm.prevention(evidence, settings)


def llm_api_note(outcomes, text, status=None):
    return llm.note(outcomes, text, status)


class FilterModule(object):
    """octollm.remediation filters of llm_api."""

    def filters(self):
        return {
            "llm_api_diagnosis": wrap(llm_api_diagnosis),
            "llm_api_plan": wrap(llm_api_plan),
            "llm_api_prevention": wrap(llm_api_prevention),
            "llm_api_note": wrap(llm_api_note),
        }
