"""Tooling of the OctoLLM lab: bring it up and report its health.

The lab proves octoctl; it is not octoctl: this package never imports it. ``octoctl lab`` is a thin command line
over it (``octoctl/lab_cli.py``), which maps :class:`LabError` kinds to its exit statuses.

- :mod:`octollm_labctl.lab`: :class:`Lab` (its state directory and Compose project) and :class:`LabSettings`.
"""

from octollm_labctl.errors import Kind, LabError
from octollm_labctl.lab import Lab, LabSettings

__all__ = ["Kind", "Lab", "LabError", "LabSettings"]
