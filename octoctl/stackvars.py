"""A stack's inventory variables as Ansible sees them (templated: lookups of files, Vault, the environment), read
in-process with ansible-core's inventory API for the commands that talk to one service directly (``logs``,
``shell``). Values stay in memory: they are never printed, logged or passed on a command line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from octoctl.errors import ExitCode, OctoctlError


def stack_vars(inventory: Path, limit: str | None, names: tuple[str, ...],
               collections_paths: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    """``(host, {name: value})`` of the one inventory host ``limit`` selects (or the inventory's only host), with
    each of ``names`` templated (absent ones are left out). Exit 2 for a missing inventory or no single host."""
    if not inventory.exists():
        raise OctoctlError(f"inventory {inventory} does not exist (pass -i/--inventory)", ExitCode.USAGE)
    import os

    # the inventory's YAML anchors override keys on purpose (<<: *arm, port: ...): no warning on the terminal
    os.environ.setdefault("ANSIBLE_DUPLICATE_YAML_DICT_KEY", "ignore")
    import warnings

    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a second command in one process: the loader is already configured
        init_plugin_loader(collections_paths or [])
    loader = DataLoader()
    try:
        manager = InventoryManager(loader=loader, sources=[str(inventory)])
        hosts = _select(manager.get_hosts("all"), limit)
    except AnsibleError as exc:
        raise OctoctlError(f"cannot read inventory {inventory}: {exc.message}", ExitCode.USAGE) from exc
    if len(hosts) != 1:
        found = ", ".join(h.name for h in hosts) or "none"
        raise OctoctlError(f"give one stack with --limit (inventory {inventory} has: {found})", ExitCode.USAGE)
    host = hosts[0]
    variables = VariableManager(loader=loader, inventory=manager).get_vars(host=host)
    templar = Templar(loader=loader, variables=variables)
    found_vars: dict[str, Any] = {}
    for name in names:
        if name in variables:
            try:
                found_vars[name] = templar.template(variables[name])
            except AnsibleError as exc:
                # the message names the variable, never its value
                raise OctoctlError(f"cannot read {name} of {host.name} from inventory {inventory}: "
                                   f"{str(exc.message).splitlines()[0][:200]}", ExitCode.ENVIRONMENT) from exc
    return host.name, found_vars


def _select(hosts: list[Any], limit: str | None) -> list[Any]:
    """The hosts a --limit names: host names or group names, with shell wildcards, separated by ``:`` or ``,``
    (a limit that matches nothing is octoctl's one-line error, not Ansible's warning)."""
    if not limit:
        return list(hosts)
    from fnmatch import fnmatch

    patterns = [p for p in re.split(r"[:,]", limit) if p]
    return [host for host in hosts
            if any(fnmatch(host.name, p) or any(fnmatch(g.name, p) for g in host.get_groups()) for p in patterns)]
