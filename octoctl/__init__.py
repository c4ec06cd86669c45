"""octoctl: diagnose and fix OctoLLM deployments with the octollm.remediation Ansible collection."""

__version__ = "0.1.0"
