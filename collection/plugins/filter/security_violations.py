# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for security_violations: thin wrappers over ``plugin_utils/security_violations.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

sv = LazyPluginUtils("security_violations")


def security_violations_diagnosis(evidence, settings=None, previous=None, recovering=None):
    return sv.diagnose(evidence, settings, previous, tuple(recovering or ()))


def security_violations_plan(diagnosis, settings=None):
    return sv.plan(diagnosis, settings)


def security_violations_prevention(evidence, settings=None):
    return sv.prevention(evidence, settings)


def security_violations_redact(text):
    return sv.redact_text(text)


class FilterModule(object):
    """octollm.remediation filters of security_violations."""

    def filters(self):
        return {
            "security_violations_diagnosis": wrap(security_violations_diagnosis),
            "security_violations_plan": wrap(security_violations_plan),
            "security_violations_prevention": wrap(security_violations_prevention),
            "security_violations_redact": wrap(security_violations_redact),
        }
