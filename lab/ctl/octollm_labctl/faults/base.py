"""What a fault is: a name, the component it breaks, what it does, how to inject it and how to heal it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from octollm_labctl.lab import Lab

Inject = Callable[[Lab, str | None], dict[str, Any]]
"""Break the lab (at a target, or the fault's default); return the record that ``heal`` receives."""
Heal = Callable[[Lab, dict[str, Any]], None]
"""Undo the fault from its record (``{"service": default_target}`` when none was recorded)."""


@dataclass(frozen=True)
class Fault:
    name: str
    component: str
    summary: str
    inject: Inject
    heal: Heal
    default_target: str | None = None
