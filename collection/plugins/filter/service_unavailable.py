# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The filter service_unavailable's action task files still need (its judgement goes through the shared
``procedure_*`` filters): the Compose override document with a new memory limit (scenario B).
Documented in ``plugins/filter/service_unavailable_override.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

su = LazyPluginUtils("service_unavailable")


def service_unavailable_override(override, service, mem_limit):
    return su.override_with(override, service, mem_limit)


class FilterModule(object):
    """octollm.remediation filters of service_unavailable's action task files."""

    def filters(self):
        return {
            "service_unavailable_override": wrap(service_unavailable_override),
        }
