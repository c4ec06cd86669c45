# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for data_corruption: thin wrappers over ``plugin_utils/data_corruption.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

dc = LazyPluginUtils("data_corruption")


def data_corruption_diagnosis(evidence, settings=None):
    return dc.diagnose(evidence, settings)


def data_corruption_plan(diagnosis, settings=None):
    return dc.plan(diagnosis, settings)


def data_corruption_repair_queries(actions):
    return dc.repair_queries(actions)


def data_corruption_repair_outcomes(actions, result, backup_outcome=None, check_mode=False):
    return dc.repair_outcomes(actions, result, backup_outcome, check_mode)


def data_corruption_backup_outcome(result, check_mode=False):
    return dc.backup_outcome(result, check_mode)


def data_corruption_backup_findings(actions):
    return dc.backup_findings(actions)


def data_corruption_prevention(evidence, settings=None):
    return dc.prevention(evidence, settings)


def data_corruption_restore_plan(verified, settings=None):
    return dc.restore_plan(verified, settings)


def data_corruption_restore_outcome(result, check_mode=False):
    return dc.restore_outcome(result, check_mode)


def data_corruption_restore_verification(result, verified=None):
    return dc.restore_verification(result, verified)


class FilterModule(object):
    """octollm.remediation filters of data_corruption."""

    def filters(self):
        return {
            "data_corruption_diagnosis": wrap(data_corruption_diagnosis),
            "data_corruption_plan": wrap(data_corruption_plan),
            "data_corruption_repair_queries": wrap(data_corruption_repair_queries),
            "data_corruption_repair_outcomes": wrap(data_corruption_repair_outcomes),
            "data_corruption_backup_outcome": wrap(data_corruption_backup_outcome),
            "data_corruption_backup_findings": wrap(data_corruption_backup_findings),
            "data_corruption_prevention": wrap(data_corruption_prevention),
            "data_corruption_restore_plan": wrap(data_corruption_restore_plan),
            "data_corruption_restore_outcome": wrap(data_corruption_restore_outcome),
            "data_corruption_restore_verification": wrap(data_corruption_restore_verification),
        }
