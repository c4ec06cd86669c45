# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A procedure's settings: its role's defaults as the run sees them, typed by its argument spec, unprefixed.

The defaults (``roles/<role>/defaults/main.yml``) and the argument spec (``meta/argument_specs.yml``) are the only
place a setting is written. The ``procedure_run`` lookup templates the values the run sees (inventory and extra
vars over the defaults) and hands them to ``typed()``; tests call ``role_settings()``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator


class SettingsError(ValueError):
    pass


def _yaml(path):
    import yaml

    with open(path, "r") as handle:
        return yaml.safe_load(handle) or {}


def roles_dir():
    """``roles/`` of the collection this file belongs to (the development layout links it beside plugins/)."""
    here = os.path.dirname(os.path.realpath(__file__))
    for candidate in (
        os.path.join(here, "..", "..", "roles"),  # installed collection: plugins/plugin_utils -> roles
        os.path.join(here, "..", "..", "..", "roles"),  # the repository: collection/plugins/plugin_utils -> roles
    ):
        if os.path.isdir(candidate):
            return os.path.normpath(candidate)
    raise SettingsError("no roles/ directory beside %s" % here)


def spec_options(spec, entry_point="main"):
    """The options of one entry point of a loaded ``argument_specs.yml``."""
    specs = (spec or {}).get("argument_specs") or {}
    entry = specs.get(entry_point) or specs.get("main") or {}
    return entry.get("options") or {}


def typed(role, values, options):
    """``values`` (``{<role>_<name>: value}``) validated and coerced by the argument spec ``options``, returned
    as ``{<name>: value}``. Raise SettingsError with every problem at once."""
    result = ArgumentSpecValidator(options).validate(dict(values))
    if result.error_messages:
        raise SettingsError("%s: %s" % (role, "; ".join(result.error_messages)))
    prefix = role + "_"
    return {
        (key[len(prefix) :] if key.startswith(prefix) else key): value
        for key, value in result.validated_parameters.items()
    }


def role_settings(role, overrides=None, base=None):
    """The settings of ``role`` from its defaults and ``overrides`` (``{<name>: value}``, unprefixed), typed by
    its spec; for tests and tools, which cannot template Jinja defaults: give those as overrides (a Jinja default
    left alone becomes empty). Overrides the spec does not know (keys a procedure derives from the run, such as
    ``dry_run``) are passed through as they are."""
    base = base or roles_dir()
    defaults = _yaml(os.path.join(base, role, "defaults", "main.yml"))
    options = spec_options(_yaml(os.path.join(base, role, "meta", "argument_specs.yml")))
    values = dict(defaults)
    extra = {}
    for key, value in (overrides or {}).items():
        if role + "_" + key in options:
            values[role + "_" + key] = value
        else:
            extra[key] = value
    for key, value in list(values.items()):
        if isinstance(value, str) and "{{" in value:
            kind = options.get(key, {}).get("type")
            values[key] = {"list": [], "dict": {}}.get(kind, "" if kind in ("str", "path", None) else None)
    settings = typed(role, values, options)
    settings.update(extra)
    return settings


def procedure_settings(role, overrides=None, platform="compose", inventory=None, base=None):
    """What a procedure's judgement receives in a run (``Procedure.settings``) on ``platform`` with ``inventory``
    (the run's non-secret inventory), from its role's defaults and ``overrides``; overrides that the spec does not
    know (derived keys such as ``config_file``, or ``approve``) are applied last. For tests and tools."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import describe
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context, get

    base = base or roles_dir()
    options = spec_options(_yaml(os.path.join(base, role, "meta", "argument_specs.yml")))
    known = {key: value for key, value in (overrides or {}).items() if role + "_" + key in options}
    extra = {key: value for key, value in (overrides or {}).items() if role + "_" + key not in options}
    inventory = dict(inventory or {})
    if platform == "kubernetes":
        inventory.setdefault("k8s", {"namespace": "octollm"})
    # described over the seed's names, as the procedure_run lookup does
    inventory = describe(inventory, role_settings("_common", base=base))
    settings = get(role).settings(role_settings(role, known, base), Context(platform=platform, inventory=inventory))
    settings.update(extra)
    return settings
