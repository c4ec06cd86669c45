# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of octollm.remediation for service_unavailable: thin wrappers over ``plugin_utils/service_unavailable.py``.

One file per procedure, so that a procedure's plugin that fails to import never hides another's filters.
Each filter is documented in ``plugins/filter/<name>.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import LazyPluginUtils, wrap

su = LazyPluginUtils("service_unavailable")


def service_unavailable_diagnosis(evidence, settings=None, config=None):
    return su.diagnose(evidence, settings, config)


def service_unavailable_plan(diagnosis, settings=None):
    return su.plan(diagnosis, settings)


def service_unavailable_prevention(evidence, settings=None):
    return su.prevention(evidence, settings)


def service_unavailable_override(override, service, mem_limit):
    return su.override_with(override, service, mem_limit)


def service_unavailable_probes(
    services, health_paths=None, probe_services=None, dependency_cmd=None, pg_isready_cmd=None, redis_cmd=None
):
    return su.probes(services, health_paths, probe_services, dependency_cmd, pg_isready_cmd, redis_cmd)


class FilterModule(object):
    """octollm.remediation filters of service_unavailable."""

    def filters(self):
        return {
            "service_unavailable_diagnosis": wrap(service_unavailable_diagnosis),
            "service_unavailable_plan": wrap(service_unavailable_plan),
            "service_unavailable_prevention": wrap(service_unavailable_prevention),
            "service_unavailable_override": wrap(service_unavailable_override),
            "service_unavailable_probes": wrap(service_unavailable_probes),
        }
