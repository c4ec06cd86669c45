"""The one exception type octoctl raises, and the documented exit statuses."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """octoctl's exit statuses (see ``octoctl --help``). With several targets or procedures the highest wins."""

    HEALTHY = 0
    """Healthy, or fixed and verified, and nothing is left for a human."""
    HUMAN_NEEDED = 1
    """Problems remain, a fix failed verification, steps await approval, a dry run found work, or it escalates."""
    USAGE = 2
    """Usage error, unknown symptom, unreadable inventory, unknown run id."""
    ENVIRONMENT = 3
    """A target is unreachable, a tool or the collection is missing, credentials were rejected."""
    INTERNAL = 4
    """octoctl's own error (a bug, or a result that breaks the contract)."""


class OctoctlError(Exception):
    """An error with a one-line message for the user and the exit status it maps to."""

    def __init__(self, message: str, exit_code: int = ExitCode.INTERNAL) -> None:
        super().__init__(message)
        self.message = " ".join(str(message).split())
        self.exit_code = ExitCode(exit_code)

    def __str__(self) -> str:
        return self.message
