"""What the Kubernetes tests share to read evidence and results: the evidence of a role's gather task (the
collectors, called directly against the emulator), a RESULT's findings and actions by key, a task of a role's file.

A plain module (not a conftest): the tests import it by name, as pytest puts their folder on sys.path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from k8s_emulator import KubernetesAPIEmulator


def by_check(findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["check"]: item for item in findings}


def by_id(actions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in actions}


def collect_evidence(
    k8s_api: KubernetesAPIEmulator, tmp_path: Path, objects: dict[str, dict[str, Any]], **collectors: Any
) -> dict[str, Any]:
    """The evidence of a role's one gather task (stack_evidence's collectors, called directly): ``objects`` read
    from the emulator in namespace octollm, after the requests of any other ``collectors`` (``redis=``, ``http=``)."""
    from ansible_collections.octollm.remediation.plugins.module_utils.collectors import run_all

    kubeconfig = str(k8s_api.kubeconfig(tmp_path / "kubeconfig"))
    return run_all(
        {**collectors, "kubernetes": {"kubeconfig": kubeconfig, "namespace": "octollm", "objects": objects}}, 20
    )


def task_args(path: Path, module: str) -> dict[str, Any]:
    """The arguments of the first task of the role file ``path`` (blocks, rescue and always included) that calls
    ``module``."""

    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            for key in ("block", "rescue", "always"):
                yield from walk(item.get(key) or [])

    return next(t[module] for t in walk(yaml.safe_load(path.read_text())) if module in t)
