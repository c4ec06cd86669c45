# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for security_violations' action tasks (its judgement goes through the shared
``procedure_*`` filters): ``security_violations_redact``, which the scenario D task file uses to redact a log in
place. Documented in ``plugins/filter/security_violations_redact.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

sv = LazyPluginUtils("security_violations")


def security_violations_redact(text):
    return sv.redact_text(text)


class FilterModule(object):
    """octollm.remediation filters of security_violations' action tasks."""

    def filters(self):
        return {
            "security_violations_redact": wrap(security_violations_redact),
        }
