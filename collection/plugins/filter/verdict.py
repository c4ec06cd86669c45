# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The exit status a host's results would give (``plugin_utils/verdict.py``); documented in ``host_verdict.yml`` and
``approved_plan.yml``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils

verdict = LazyPluginUtils("verdict")


def host_verdict(report, procedures, dry_run=False):
    return verdict.host_verdict(report, list(procedures or []), bool(dry_run))


def approved_plan(report):
    return verdict.approved_plan(report or {})


class FilterModule(object):
    def filters(self):
        return {"host_verdict": host_verdict, "approved_plan": approved_plan}
