"""Tooling of the OctoLLM lab: bring it up, report its health, break it and heal it.

The lab proves octoctl; it is not octoctl: this package never imports it. ``octoctl lab`` is a thin command line
over it (``octoctl/lab_cli.py``), which maps :class:`LabError` kinds to its exit statuses.

- :mod:`octollm_labctl.lab`: :class:`Lab` (its state directory and Compose project) and :class:`LabSettings`;
- :mod:`octollm_labctl.faults`: the registry of faults, one small module per component they break.
"""

from octollm_labctl.errors import Kind, LabError
from octollm_labctl.lab import Lab, LabSettings

__all__ = ["Kind", "Lab", "LabError", "LabSettings"]
