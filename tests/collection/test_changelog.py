"""The collection's changelog is kept with antsibull-changelog fragments (collection/changelogs/); a release takes
its version from galaxy.yml, the one place it is written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collection"
TOOL = Path(sys.executable).parent / "antsibull-changelog"


def test_the_fragments_lint() -> None:
    assert list((COLLECTION / "changelogs" / "fragments").glob("*.yml"))
    done = subprocess.run([str(TOOL), "lint"], cwd=COLLECTION, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_a_release_takes_galaxy_yml_s_version(tmp_path: Path) -> None:
    shutil.copy(COLLECTION / "galaxy.yml", tmp_path / "galaxy.yml")
    shutil.copytree(COLLECTION / "changelogs", tmp_path / "changelogs")
    (tmp_path / "plugins").mkdir()
    done = subprocess.run([str(TOOL), "release", "--date", "2026-12-07"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    version = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())["version"]
    changes = yaml.safe_load((tmp_path / "changelogs" / "changelog.yaml").read_text())
    assert list(changes["releases"]) == [version]
    assert "prevent_all.yml" in (tmp_path / "CHANGELOG.rst").read_text()
