# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation that every procedure's Kubernetes side shares: thin wrappers over
``plugin_utils/kubernetes.py``. Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

k8s = LazyPluginUtils("kubernetes")


def k8s_config_set(text, key, value):
    return k8s.config_set(text, key, value)


def k8s_restart_patch(timestamp):
    return k8s.restart_patch(timestamp)


class FilterModule(object):
    """octollm.remediation filters shared by the Kubernetes sides of the procedures."""

    def filters(self):
        return {
            "k8s_config_set": wrap(k8s_config_set),
            "k8s_restart_patch": wrap(k8s_restart_patch),
        }
