# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for database_connections on Kubernetes: thin wrappers over
``plugin_utils/database_connections_kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

dck = LazyPluginUtils("database_connections_kubernetes")


def database_connections_k8s_diagnosis(evidence, settings=None):
    return dck.diagnose(evidence, settings)


def database_connections_k8s_plan(diagnosis, settings=None):
    return dck.plan(diagnosis, settings)


def database_connections_k8s_prevention(evidence, settings=None):
    return dck.prevention(evidence, settings)


class FilterModule(object):
    """octollm.remediation filters of database_connections on Kubernetes."""

    def filters(self):
        return {
            "database_connections_k8s_diagnosis": wrap(database_connections_k8s_diagnosis),
            "database_connections_k8s_plan": wrap(database_connections_k8s_plan),
            "database_connections_k8s_prevention": wrap(database_connections_k8s_prevention),
        }
