"""Make ``ansible_collections.octollm.remediation`` importable from the development collections path.

The plugins import each other by their collection path, so the tests use Ansible's collection loader on
``<repo>/.collections`` (created by ``collection/dev-link.sh``; this conftest links it when missing).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".collections"


def _install_finder() -> None:
    link = COLLECTIONS / "ansible_collections" / "octollm" / "remediation"
    if not link.exists():
        subprocess.run([str(REPO / "collection" / "dev-link.sh"), str(COLLECTIONS)], check=True, capture_output=True)
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    _AnsibleCollectionFinder(paths=[str(COLLECTIONS)], scan_sys_paths=False)._install()


_install_finder()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
