# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for data_corruption's action task files: the repair transaction and the outcomes
of the backup, the repair and the restore, over ``plugin_utils/data_corruption.py`` (the same on Kubernetes, where
the backup is streamed out of the pod by ``pg_backup``). The judgement goes through the shared ``procedure_*``
filters.

Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

dc = LazyPluginUtils("data_corruption")


def data_corruption_repair_queries(actions):
    return dc.repair_queries(actions)


def data_corruption_repair_outcomes(actions, result, backup_outcome=None, check_mode=False):
    return dc.repair_outcomes(actions, result, backup_outcome, check_mode)


def data_corruption_backup_outcome(result, check_mode=False):
    return dc.backup_outcome(result, check_mode)


def data_corruption_restore_outcome(result, check_mode=False):
    return dc.restore_outcome(result, check_mode)


class FilterModule(object):
    """octollm.remediation filters of data_corruption's action task files."""

    def filters(self):
        return {
            "data_corruption_repair_queries": wrap(data_corruption_repair_queries),
            "data_corruption_repair_outcomes": wrap(data_corruption_repair_outcomes),
            "data_corruption_backup_outcome": wrap(data_corruption_backup_outcome),
            "data_corruption_restore_outcome": wrap(data_corruption_restore_outcome),
        }
