# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The health table's filters (``playbooks/health.yml``, ``octoctl health``), over ``plugin_utils/health.py``.

Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

health = LazyPluginUtils("health")
stack = LazyPluginUtils("stack")


def health_needs(run):
    """``{stack: needs, health: needs}``: what one stack_evidence task gathers for the table."""
    context = health.settings_of(run)[1]
    return {stack.KEY: stack.needs(context), health.KEY: health.needs(run)}


def health_table(evidence, run):
    return health.judge(evidence or {}, run)


class FilterModule(object):
    """octollm.remediation: the health table."""

    def filters(self):
        return {
            "health_needs": wrap(health_needs),
            "health_table": wrap(health_table),
        }
