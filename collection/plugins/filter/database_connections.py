# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for database_connections: thin wrappers over ``plugin_utils/database_connections.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

dbc = LazyPluginUtils("database_connections")


def database_connections_diagnosis(evidence, settings=None):
    return dbc.diagnose(evidence, settings)


def database_connections_plan(diagnosis, settings=None):
    return dbc.plan(diagnosis, settings)


def database_connections_prevention(evidence, settings=None):
    return dbc.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of database_connections."""

    def filters(self):
        return {
            "database_connections_diagnosis": wrap(database_connections_diagnosis),
            "database_connections_plan": wrap(database_connections_plan),
            "database_connections_prevention": wrap(database_connections_prevention),
        }
