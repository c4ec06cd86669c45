"""The one exception type the lab tooling raises, and what kind of failure it is.

The lab tooling does not know octoctl: a command line over it (``octoctl lab``) maps each kind to its own exit
status.
"""

from __future__ import annotations

from enum import Enum


class Kind(Enum):
    """What went wrong, in the lab's terms."""

    USAGE = "usage"
    """An unknown fault, a target the fault does not take, or a lab not in the state the fault needs."""
    ENVIRONMENT = "environment"
    """Docker, a tool, a port or a service of the lab is missing or does not answer."""
    UNHEALTHY = "unhealthy"
    """The lab, or a container a fault acts on, is not healthy or not running."""
    INTERNAL = "internal"
    """The lab tooling's own failure: a fault did not take hold."""


class LabError(Exception):
    """An error with a one-line message for the user and its kind."""

    def __init__(self, message: str, kind: Kind = Kind.INTERNAL) -> None:
        super().__init__(message)
        self.message = " ".join(str(message).split())
        self.kind = kind

    def __str__(self) -> str:
        return self.message
