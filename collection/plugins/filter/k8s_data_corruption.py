# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for data_corruption on Kubernetes: thin wrappers over
``plugin_utils/data_corruption_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
(Named ``k8s_data_corruption_*``: the ``data_corruption_*`` names are the Compose file's.)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

dck = LazyPluginUtils("data_corruption_kubernetes")


def k8s_data_corruption_plan(diagnosis, evidence, settings=None):
    return dck.plan(diagnosis, evidence, settings)


def k8s_data_corruption_backup_outcome(exec_result, change, check_mode=False):
    return dck.backup_outcome(exec_result, change, check_mode)


def k8s_data_corruption_prevention(evidence, settings=None):
    return dck.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of data_corruption on Kubernetes."""

    def filters(self):
        return {
            "k8s_data_corruption_plan": wrap(k8s_data_corruption_plan),
            "k8s_data_corruption_backup_outcome": wrap(k8s_data_corruption_backup_outcome),
            "k8s_data_corruption_prevention": wrap(k8s_data_corruption_prevention),
        }
