# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for resource_exhaustion: thin wrappers over ``plugin_utils/resource_exhaustion.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

rex = LazyPluginUtils("resource_exhaustion")


def resource_exhaustion_diagnosis(evidence, settings=None, backups=None):
    return rex.diagnose(evidence, settings, backups)


def resource_exhaustion_plan(diagnosis, settings=None):
    return rex.plan(diagnosis, settings)


def resource_exhaustion_prevention(evidence, settings=None, backups=None):
    return rex.prevention(evidence, settings, backups)


class FilterModule(object):
    """octollm.remediation filters of resource_exhaustion."""

    def filters(self):
        return {
            "resource_exhaustion_diagnosis": wrap(resource_exhaustion_diagnosis),
            "resource_exhaustion_plan": wrap(resource_exhaustion_plan),
            "resource_exhaustion_prevention": wrap(resource_exhaustion_prevention),
        }
