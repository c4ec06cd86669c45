# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: procedure_run
author: OctoLLM operations
version_added: 0.2.0
short_description: The run of the shared procedure flow - procedures, platform, context and every setting
description:
  - Builds what the internal role C(_common) hands to the C(procedure_*) filters, once per run and host.
  - For each procedure named in the terms, reads its role's C(defaults/main.yml), takes each setting's value as the
    run sees it (inventory, play and extra vars over the default; a default that is a template is templated with
    the run's variables), validates and types the values against the role's C(meta/argument_specs.yml) (once per
    run, for every procedure together) and removes the C(<role>_) prefix.
  - The context holds the platform, the phase, the run's switches (C(octollm_dry_run), C(octollm_approve),
    C(octollm_scenario), C(octollm_run_id), C(octollm_run_dir)) and the non-secret half of the inventory contract
    (docs/design.md). Passwords and keys are never read here; the tasks that need them read the inventory inline.
options:
  _terms:
    description: Procedure (role) names.
    required: true
    type: list
    elements: str
  phase:
    description: The phase of the run.
    type: str
    choices: [diagnose, resolve, prevent]
    default: diagnose
"""

EXAMPLES = r"""
- name: Settings of two procedures for a diagnosis
  ansible.builtin.set_fact:
    _common_run: "{{ lookup('octollm.remediation.procedure_run', 'cache_performance', 'llm_api', phase='diagnose') }}"
"""

RETURN = r"""
_raw:
  description: One dictionary.
  type: list
  elements: dict
  contains:
    procedures:
      description: The procedures, in rank order.
      type: list
    context:
      description: Platform, phase, run switches and the non-secret inventory.
      type: dict
    settings:
      description: "C({procedure: {setting: value}}), unprefixed and typed."
      type: dict
    evidence_timeout:
      description: Seconds one evidence gathering may take, the longest the procedures ask (none when none asks).
      type: int
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase
from ansible_collections.octollm.remediation.plugins.plugin_utils import deployment
from ansible_collections.octollm.remediation.plugins.plugin_utils import procedure as procedures
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import SettingsError, spec_options, typed

COLLECTION = "octollm.remediation"

# Inventory variables of the contract copied into the context without their secrets.
_SECRET_KEYS = frozenset(("password", "admin_password", "api_key", "token"))


def _no_secrets(value):
    if isinstance(value, dict):
        return {key: _no_secrets(item) for key, item in value.items() if key not in _SECRET_KEYS}
    return value


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        names = []
        for term in terms:
            names.extend(term if isinstance(term, list) else [term])
        unknown = [name for name in names if name not in procedures.NAMES]
        if unknown or not names:
            raise AnsibleLookupError(
                "procedure_run: unknown procedures %s; known: %s"
                % (unknown or "(none given)", ", ".join(procedures.NAMES))
            )
        phase = self.get_option("phase")
        context = self._context(variables, phase)
        try:
            common = self._settings("_common", variables)
            context["inventory"] = deployment.describe(context["inventory"], common)
        except (SettingsError, ValueError) as exc:
            raise AnsibleLookupError("procedure_run: the deployment's description: %s" % to_native(exc)) from exc
        settings = {}
        errors = []
        for name in procedures.in_rank_order(names):
            try:
                # what the judgement and the action files see: the role's settings and what the procedure derives
                # from the run (addresses, files, namespace)
                settings[name] = procedures.get(name).settings(
                    self._settings(name, variables), procedures.Context(context)
                )
            except SettingsError as exc:
                errors.append(to_native(exc))
        if errors:
            raise AnsibleLookupError("invalid settings: %s" % " | ".join(errors))
        run = {"procedures": procedures.in_rank_order(names), "context": context, "settings": settings}
        run["evidence_timeout"] = _flow().evidence_timeout(run)
        return [run]

    # --- settings ---------------------------------------------------------------------------------

    def _role_dir(self, name):
        from ansible.utils.collection_loader._collection_finder import _get_collection_role_path

        found = _get_collection_role_path("%s.%s" % (COLLECTION, name))
        if not found:
            raise AnsibleLookupError("procedure_run: role %s.%s not found" % (COLLECTION, name))
        return found[1]

    def _settings(self, name, variables):
        role_dir = self._role_dir(name)
        defaults = (
            self._loader.load_from_file(os.path.join(role_dir, "defaults", "main.yml"), trusted_as_template=True) or {}
        )
        spec = self._loader.load_from_file(os.path.join(role_dir, "meta", "argument_specs.yml")) or {}
        merged = dict(defaults)
        merged.update(variables)
        templar = self._templar.copy_with_new_env(available_variables=merged)
        values = {key: templar.template(merged[key]) for key in defaults}
        return typed(name, _plain(values), spec_options(spec))

    # --- context ----------------------------------------------------------------------------------

    def _var(self, variables, name, default=None):
        """The templated value of an inventory variable; a dict's secret keys are dropped before templating
        (their lookups never run here)."""
        if name not in variables:
            return default
        raw = self._templar.copy_with_new_env(available_variables=variables)
        value = variables[name]
        if isinstance(value, str) and "{{" in value:
            value = raw.template(value)
        return _plain(raw.template(_no_secrets(value)))

    def _context(self, variables, phase):
        var = lambda name, default=None: self._var(variables, name, default)  # noqa: E731
        platform = var("octollm_platform")
        if not platform:
            platform = (
                "kubernetes"
                if ("octollm_k8s_namespace" in variables or "octollm_k8s_kubeconfig" in variables)
                else "compose"
            )
        platform = str(platform).strip().lower()
        if platform not in procedures.PLATFORMS:
            raise AnsibleLookupError(
                "octollm_platform is %r; it must be one of %s" % (platform, ", ".join(procedures.PLATFORMS))
            )
        scenario = var("octollm_scenario")
        approved_plan = var("octollm_approved_plan")
        inventory = {
            "services": var("octollm_services", {}),
            "prometheus_url": var("octollm_prometheus_url", "http://127.0.0.1:9090"),
            "redis": var("octollm_redis", {}),
            "postgres": var("octollm_postgres", {}),
            "compose": {
                "project": var("octollm_compose_project", "octollm"),
                "project_dir": var("octollm_compose_project_dir"),
                "files": var("octollm_compose_files", []),
                "env_file": var("octollm_compose_env_file"),
                "services_env_file": var("octollm_services_env_file"),
                "docker_host": var("octollm_docker_host"),
            },
            "backup_dir": var("octollm_backup_dir"),
            "metrics": var("octollm_metrics", {}),
        }
        if platform == "kubernetes":
            inventory["k8s"] = {
                "namespace": var("octollm_k8s_namespace") or "octollm",
                "kubeconfig": var("octollm_k8s_kubeconfig") or "",
                "context": var("octollm_k8s_context") or "",
                "host": var("octollm_k8s_host") or "",
                "validate_certs": bool(var("octollm_k8s_validate_certs", True)),
            }
        return {
            "platform": platform,
            "phase": phase,
            "dry_run": _bool(var("octollm_dry_run", False)),
            "approve": _bool(var("octollm_approve", False)),
            "scenario": (str(scenario).upper() if scenario else None),
            # the plan a person approved ({target: {action id: change}}): only that runs on this host
            "approved": None
            if approved_plan is None
            else dict(approved_plan.get(variables.get("inventory_hostname"), {})),
            "host": variables.get("inventory_hostname"),
            "run_id": var("octollm_run_id"),
            "run_dir": var("octollm_run_dir"),
            "inventory": inventory,
        }


def _flow():
    from ansible_collections.octollm.remediation.plugins.plugin_utils import flow

    return flow


def _bool(value):
    from ansible.module_utils.parsing.convert_bool import boolean

    return boolean(value, strict=False)


def _plain(value):
    """Ansible's lazy containers and tagged values as plain Python data."""
    from ansible_collections.octollm.remediation.plugins.plugin_utils.filtering import plain

    return plain(value)
