# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The filter database_connections' action task files need (its judgement goes through the shared ``procedure_*``
filters): SQL parameters whose lists reach PostgreSQL as arrays. Documented in
``plugins/filter/database_connections_pg_array_args.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

dc = LazyPluginUtils("database_connections")


def database_connections_pg_array_args(params):
    return dc.pg_array_args(params)


class FilterModule(object):
    """octollm.remediation filters of database_connections' action task files."""

    def filters(self):
        return {
            "database_connections_pg_array_args": wrap(database_connections_pg_array_args),
        }
