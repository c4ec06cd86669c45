# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The filter resource_exhaustion's action task files need (its judgement goes through the shared ``procedure_*``
filters): which of the backups an approved deletion lists may still go when it is applied (scenario B).
Documented in ``plugins/filter/resource_exhaustion_deletable.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

rex = LazyPluginUtils("resource_exhaustion")


def resource_exhaustion_deletable(found, change, patterns):
    return rex.deletable(found, change, patterns)


class FilterModule(object):
    """octollm.remediation filters of resource_exhaustion's action task files."""

    def filters(self):
        return {
            "resource_exhaustion_deletable": wrap(resource_exhaustion_deletable),
        }
