# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The typed interface every procedure implements, and the one registry that finds them.

A procedure is the judgement of one of the seed's troubleshooting procedures: what evidence it needs, what the
evidence says (findings and the scenarios that hold), what to do about it (actions, each applied by a task file of
the procedure's role) and what prevention looks like. The shared flow (``flow.py``, driven by the internal role
``_common``) calls these methods; a procedure never runs Ansible itself.

Settings are the role's defaults (``roles/<role>/defaults/main.yml``) as the run sees them (inventory and extra vars
over the defaults), validated against ``meta/argument_specs.yml``, with the ``<role>_`` prefix removed. They are
written nowhere else: Python holds no copy of a default.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib

from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import Deployment

PLUGIN_UTILS = "ansible_collections.octollm.remediation.plugins.plugin_utils."

# Every procedure of the seed, in rank order (root causes first: exhausted resources and refused connections
# explain slow answers, full caches and failed routing); octoctl's catalog gives the same ranks.
NAMES = (
    "resource_exhaustion",
    "database_connections",
    "data_corruption",
    "cache_performance",
    "llm_api",
    "service_unavailable",
    "task_routing",
    "memory_leaks",
    "high_latency",
    "security_violations",
)
PLATFORMS = ("compose", "kubernetes")
PHASES = ("diagnose", "resolve", "prevent")


class ProcedureError(ValueError):
    """A procedure or platform that does not exist, or settings it cannot work with."""


class Context(Deployment, dict):
    """What the run knows besides the procedure's settings (never a secret).

    Keys: ``platform``, ``phase``, ``dry_run``, ``approve``, ``scenario`` (forced, or None), ``run_id``,
    ``run_dir``, and ``inventory``: the non-secret half of the inventory contract (``services``, each described over
    the seed's names, ``prometheus_url``, ``redis``/``postgres`` addresses, users and schema, ``compose`` project and
    files, ``k8s`` connection, ``backup_dir``, ``container_metrics``). ``Deployment`` gives its questions.
    """

    @property
    def platform(self):
        return self.get("platform") or "compose"

    @property
    def inventory(self):
        return self.get("inventory") or {}

    @property
    def kubernetes(self):
        return self.platform == "kubernetes"

    def service_url(self, name, default=None):
        return ((self.inventory.get("services") or {}).get(name) or {}).get("url") or default


class Procedure(object):
    """One procedure of the seed. Subclasses set the class attributes and implement the methods.

    Every method takes plain data and returns plain data (dicts and lists of the result contract,
    ``results.py``); ``settings`` is the dict that ``settings()`` returned.
    """

    #: role name, e.g. ``cache_performance``
    name = ""
    #: the seed's title, e.g. ``Cache Performance Issues``
    title = ""
    #: ``{scenario id: title}`` in the seed's order
    scenarios = {}
    #: platforms this procedure judges
    platforms = PLATFORMS
    #: ``{platform: plugin_utils module name}`` whose ``diagnose(evidence, settings, previous, applied)``,
    #: ``plan(diagnosis, settings)`` and ``prevention(evidence, settings)`` the default methods call
    modules = {}

    def settings(self, role_settings, context):
        """The settings the judgement reads: the role's settings plus what this procedure derives from the run
        (addresses from the inventory, the run's dry_run/approve/scenario). Override to add derived keys."""
        merged = dict(role_settings)
        merged.update(
            platform=context.platform,
            dry_run=bool(context.get("dry_run")),
            approve=bool(context.get("approve")),
            scenario=context.get("scenario") or None,
        )
        return merged

    def needs(self, settings, context):
        """``{kind: options}``: the evidence to gather (stack_evidence's option vocabulary, no connection)."""
        raise NotImplementedError

    def followup(self, diagnosis, settings, context):
        """More evidence that the first judgement asks for (e.g. a CPU profile of the slow service it found):
        ``{kind: options}``, empty when none. The flow gathers it and judges again."""
        return {}

    def module(self, context):
        """The judgement module of the run's platform."""
        self.check_platform(context)
        return importlib.import_module(PLUGIN_UTILS + self.modules[context.platform])

    def diagnose(self, evidence, settings, context, previous=None, applied=()):
        """``{findings, scenarios, escalation, context}``. ``previous`` (the findings before a fix) and
        ``applied`` (the scenarios whose actions were applied) are given when verifying a fix."""
        return self.module(context).diagnose(evidence, settings, previous, tuple(applied))

    def plan(self, diagnosis, evidence, settings, context):
        """The actions for the scenarios that hold (or the forced one), gated (``results.gate``)."""
        return self.module(context).plan(diagnosis, settings)

    def prevention(self, evidence, settings, context):
        """``{findings, actions}`` of the seed's prevention list, read from the live system."""
        return self.module(context).prevention(evidence, settings)

    def finish(self, applied, settings, context):
        """What to run once after this procedure's actions when at least one was ``applied`` (e.g. recreate the
        service that reads the changed settings): ``{file, title}``, ``file`` a task file of the role's
        ``tasks/<platform>/actions/`` that sets ``_common_outcome`` like an action's, whose outcome is appended to
        every applied action's (a failure marks them failed); None when nothing is to run (the default)."""
        return None

    def result_extra(self, diagnosis, settings, context):
        """Keys a procedure adds to its RESULT beside the contract's (none by default)."""
        return {}

    def evidence_timeout(self, settings, context):
        """Seconds one evidence gathering may take for this procedure (e.g. integrity queries over a large
        database), or None for the run's default (``_common_evidence_timeout``); a run waits as long as the
        longest of its procedures asks."""
        return None

    def verification(self, findings, actions, settings, context):
        """The findings of a resolve's verification: ``findings`` (judged again on fresh evidence when an action
        was applied, else the diagnosis') plus what the ``actions`` (with their outcomes) show by themselves, e.g.
        the backup a repair took. The default adds nothing."""
        return findings

    def check_platform(self, context):
        if context.platform not in self.platforms or context.platform not in self.modules:
            raise ProcedureError(
                "%s has no judgement for platform %r (it knows %s)"
                % (self.name, context.platform, ", ".join(self.platforms))
            )


_LOADED = {}


def get(name):
    """The registered procedure ``name`` (its module is imported at first use: a task pays only for the
    procedures it runs)."""
    if name not in NAMES:
        raise ProcedureError("no procedure %r; known: %s" % (name, ", ".join(NAMES)))
    if name not in _LOADED:
        module = importlib.import_module(PLUGIN_UTILS + name)
        procedure = getattr(module, "PROCEDURE", None)
        if not isinstance(procedure, Procedure):
            raise ProcedureError("plugin_utils/%s.py defines no PROCEDURE" % name)
        _LOADED[name] = procedure
    return _LOADED[name]


def registered():
    """The procedures whose module defines a ``PROCEDURE`` (without importing judgement code needlessly)."""
    found = []
    for name in NAMES:
        try:
            get(name)
        except (ImportError, ProcedureError):
            continue
        found.append(name)
    return found


def in_rank_order(names):
    return sorted(names, key=lambda name: NAMES.index(name) if name in NAMES else len(NAMES))
