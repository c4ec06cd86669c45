# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A deployment as the inventory describes it, over the seed's names (docs/design.md "Describing a deployment").

The seed's names live in ``roles/_common/defaults/main.yml`` (``_common_service_defaults``, ``_common_setting_names``,
``_common_metric_names``, ``_common_postgres_schema``, ``_common_container_metric_presets``); the inventory's
``octollm_services.<service>``, ``octollm_postgres.schema`` and ``octollm_metrics`` say how a stack differs. The
``procedure_run`` lookup merges both once (``describe``); procedures ask the run's context
(``Context.service``, ``setting_name``, ``metric``, ``probe``, ``schema``, ``container_metrics``), never a lab name.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

NOT_OFFERED = "not_offered"
# the seed's health endpoint of the OctoLLM services (the orchestrator and the arms)
SEED_HEALTH = "/health"


def _merged(base, override):
    """``base`` with ``override`` merged in, dicts key by key (an override of None removes nothing: it is a value)."""
    out = copy.deepcopy(base or {})
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def service(name, entry, common):
    """One service's description: its inventory entry over the seed's (``common``: the unprefixed ``_common``
    settings of the run)."""
    entry = entry if isinstance(entry, dict) else {}
    spec = _merged(common.get("service_defaults") or {}, entry)
    spec["settings"] = _merged(common.get("setting_names") or {}, entry.get("settings"))
    spec["metrics"] = _merged(common.get("metric_names") or {}, entry.get("metrics"))
    spec["compose_service"] = spec.get("compose_service") or name
    spec["k8s_selector"] = spec.get("k8s_selector") or "app=%s" % name
    if not spec.get("health_path") and (name == "orchestrator" or name.endswith("-arm")):
        spec["health_path"] = SEED_HEALTH
    spec["probes"] = dict(entry.get("probes") or {})
    return spec


def describe(inventory, common):
    """The run's inventory with every service described, PostgreSQL's schema and the container metrics' names."""
    inventory = dict(inventory)
    # the seed's names, for a service the inventory does not describe
    inventory["setting_names"] = dict(common.get("setting_names") or {})
    inventory["metric_names"] = dict(common.get("metric_names") or {})
    inventory["services"] = {
        name: service(name, entry, common) for name, entry in (inventory.get("services") or {}).items()
    }
    postgres = dict(inventory.get("postgres") or {})
    postgres["schema"] = _merged(common.get("postgres_schema") or {}, postgres.get("schema"))
    inventory["postgres"] = postgres
    metrics = dict(inventory.get("metrics") or {})
    preset = metrics.get("containers") or common.get("container_metrics") or "lab"
    presets = common.get("container_metric_presets") or {}
    if preset not in presets:
        raise ValueError(
            "octollm_metrics.containers is %r; it must be one of %s" % (preset, ", ".join(sorted(presets)))
        )
    inventory["container_metrics"] = dict(presets[preset], preset=preset)
    return inventory


_SEED_NAMES = {}


def seed_names():
    """``{setting_names, metric_names}``: the seed's names, read from ``_common``'s defaults (for a context whose
    inventory was not described, as a test or a tool builds it; a run's is always described)."""
    if not _SEED_NAMES:
        from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import role_settings

        common = role_settings("_common")
        _SEED_NAMES.update(setting_names=common["setting_names"], metric_names=common["metric_names"])
    return _SEED_NAMES


class Deployment(object):
    """Questions a procedure asks about the deployment (mixed into the run's Context)."""

    def _seed(self, key):
        names = self.inventory.get(key)
        return seed_names()[key] if names is None else names

    def service(self, name):
        """The service's description (``{}`` for a service the inventory does not name)."""
        return (self.inventory.get("services") or {}).get(name) or {}

    def service_names(self):
        return sorted(self.inventory.get("services") or {})

    def setting_name(self, name, meaning):
        """The name of a service's setting (``db_pool_size`` -> ``DB_POOL_SIZE``), or None when it has none; the
        seed's name for a service the inventory does not describe."""
        spec = self.service(name)
        if "settings" not in spec:
            return (self._seed("setting_names") or {}).get(meaning)
        return (spec.get("settings") or {}).get(meaning)

    def metric(self, meaning, service=None):
        """The name of an application metric, the service's own when it renames it."""
        if service is not None:
            named = (self.service(service).get("metrics") or {}).get(meaning)
            if named:
                return named
        for spec in (self.inventory.get("services") or {}).values():
            named = (spec.get("metrics") or {}).get(meaning)
            if named:
                return named
        return (self._seed("metric_names") or {}).get(meaning)

    def probe(self, name, probe):
        """The path of an optional endpoint a service offers (``debug_memory``, ``route_score``, ...), or None:
        not offered by this deployment."""
        return (self.service(name).get("probes") or {}).get(probe)

    def dependents(self, name):
        """The services whose ``depends_on`` names ``name`` (e.g. the LLM provider's clients), sorted."""
        return sorted(
            other
            for other, spec in (self.inventory.get("services") or {}).items()
            if name in ((spec or {}).get("depends_on") or [])
        )

    def dependencies_described(self):
        """Whether the inventory names any service's dependencies (else the seed's layout is assumed)."""
        return any((spec or {}).get("depends_on") for spec in (self.inventory.get("services") or {}).values())

    @property
    def schema(self):
        return (self.inventory.get("postgres") or {}).get("schema") or {}

    def table(self, meaning):
        return (self.schema.get("tables") or {}).get(meaning) or meaning

    def task_status(self, meaning):
        return (self.schema.get("task_statuses") or {}).get(meaning) or meaning

    @property
    def container_metrics(self):
        return self.inventory.get("container_metrics") or {}


def not_offered(check, title, expected, what, evidence=None, scenario=None):
    """A finding on an optional probe the deployment does not offer: ``unknown`` with the error kind
    ``not_offered``, which neither escalates nor changes the exit status by itself."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils.results import unknown

    return unknown(
        check,
        title,
        expected,
        {"kind": NOT_OFFERED, "message": "%s: not offered by this deployment" % what},
        scenario,
        evidence,
    )
