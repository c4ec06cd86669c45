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
import re

from ansible_collections.octollm.remediation.plugins.module_utils.collector_containers import found_by

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
    inventory["discovery"] = discovery(inventory)
    return inventory


def discovery(inventory):
    """``{service: {project, compose_service, container_names, labels}}``: how the containers of each service the
    inventory describes are found (the containers evidence's ``discovery``): by ``container_names`` (containers not
    under Compose), else by Docker ``labels``, else by Compose project (``compose_project``, default
    ``octollm_compose_project``) and Compose service."""
    project = (inventory.get("compose") or {}).get("project") or "octollm"
    found = {}
    for name, spec in (inventory.get("services") or {}).items():
        spec = spec or {}
        found[name] = {
            "project": spec.get("compose_project") or project,
            "compose_service": spec.get("compose_service") or name,
            "container_names": [str(item) for item in spec.get("container_names") or []],
            "labels": dict((str(key), str(value)) for key, value in (spec.get("labels") or {}).items()),
        }
    return found


def _quoted(value):
    return '"%s"' % str(value).replace("\\", "\\\\").replace('"', '\\"')


def selector(metric, matchers):
    """``metric{matchers}``, merged into the selector a metric name may already carry
    (``kube_pod_container_resource_limits{resource="memory"}``); empty matchers are dropped."""
    matchers = [item for item in matchers if item]
    name, brace, rest = str(metric).partition("{")
    if brace:
        inner = rest.rstrip().rstrip("}").strip()
        if inner:
            matchers = [inner] + matchers
    return "%s{%s}" % (name, ",".join(matchers)) if matchers else name


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

    def container_selectors(self, meaning, namespace=None):
        """The PromQL selectors of a container metric (``memory``, ``memory_limit``, ``cpu_seconds``) that together
        cover the deployment's containers, with the exporter's labels (``context.container_metrics``): on Kubernetes
        (``namespace``) the namespace's containers; on Docker one selector per Compose project its services run
        under and one for the containers found by name (``container_label``) or, with cAdvisor, by Docker labels.
        Join them with ``or``; a series names its container by ``container_metrics.container_label``."""
        preset = self.container_metrics
        metric = preset.get(meaning) or meaning
        extra = [preset.get("matchers") or ""]
        if namespace is not None:
            return [selector(metric, ['%s=%s' % (preset.get("project_label") or "namespace", _quoted(namespace))]
                             + extra)]
        project = (self.inventory.get("compose") or {}).get("project") or "octollm"
        projects, names, labelled = [project], [], []
        for entry in (self.inventory.get("discovery") or {}).values():
            how = found_by(entry)
            if how == "name":
                names.extend(entry["container_names"])
            elif how == "labels":
                labelled.append(entry["labels"])
            elif entry.get("project") and entry["project"] not in projects:
                projects.append(entry["project"])
        selectors = [
            selector(metric, ["%s=%s" % (preset.get("project_label"), _quoted(item))] + extra) for item in projects
        ]
        if names:
            pattern = "|".join(re.escape(item) for item in sorted(set(names)))
            selectors.append(selector(metric, ["%s=~%s" % (preset.get("container_label") or "name",
                                                            _quoted(pattern))] + extra))
        if preset.get("preset") == "cadvisor":
            for labels in labelled:  # cAdvisor exports a container's Docker labels as container_label_<name>
                selectors.append(selector(metric, [
                    "container_label_%s=%s" % (re.sub(r"[^A-Za-z0-9_]", "_", key), _quoted(value))
                    for key, value in sorted(labels.items())
                ] + extra))
        return selectors


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


# SQL identifiers of the deployment's schema (octollm_postgres.schema.tables): checked, never pasted as given.
_NAME_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_PLAIN_PART = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


def sql_name(name):
    """A table of the schema (``name`` or ``schema.name``) as SQL: plain lower-case parts as they are, others
    double-quoted; ValueError for anything else (a name is never pasted into SQL unchecked)."""
    parts = str(name or "").split(".")
    if not 1 <= len(parts) <= 2 or not all(_NAME_PART.match(part) for part in parts):
        raise ValueError("not a table name: %r (octollm_postgres.schema.tables)" % (name,))
    return ".".join(part if _PLAIN_PART.match(part) else '"%s"' % part for part in parts)
