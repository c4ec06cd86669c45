"""The execution environment image built on the Debian base (issue 18, item 2: ee/Containerfile.debian, built by
scripts/build-images.sh) holds what execution-environment.yml's dependency files ask for: ansible-core and
ansible-runner as pinned there (ansible-navigator runs ansible-playbook in it through ansible-runner), every Python
requirement of ee/requirements.txt, the Debian packages bindep selects from ee/bindep.txt, and octollm.remediation
at galaxy.yml's version with every collection it depends on in range. tests/lab/test_lab_navigator.py runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IMAGE = f"octollm/ee:{os.environ.get('OCTOLLM_LAB_TAG', 'dev')}"
# run inside the image: the installed distributions and collections, as JSON
PROBE = r"""
import importlib.metadata as md, json, subprocess
dists = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in md.distributions()}
collections = json.loads(subprocess.run(["ansible-galaxy", "collection", "list", "--format", "json"],
                                        capture_output=True, text=True, check=True).stdout)
print(json.dumps({"dists": dists, "collections": collections}))
"""


def _requirements(lines: list[str]) -> list[str]:
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


@pytest.mark.docker
def test_the_ee_image_holds_the_ee_s_dependencies() -> None:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: scripts/build-images.sh builds it")
    spec = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    probe = subprocess.run(["docker", "run", "--rm", "--network=none", IMAGE, "python3", "-c", PROBE],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    dists = found["dists"]
    wanted = [spec["dependencies"][key]["package_pip"] for key in ("ansible_core", "ansible_runner")]
    wanted += _requirements((REPO / "ee" / "requirements.txt").read_text().splitlines())
    for line in wanted:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        assert name in dists and dists[name] in requirement.specifier, (line, dists.get(name))

    collections = {name: info["version"] for path in found["collections"].values() for name, info in path.items()}
    galaxy = yaml.safe_load((REPO / "collection" / "galaxy.yml").read_text())
    assert collections.get("octollm.remediation") == galaxy["version"]
    for name, versions in galaxy["dependencies"].items():
        assert name in collections and collections[name] in SpecifierSet(versions.replace(" ", "")), (name, versions)

    packages = subprocess.run([str(Path(sys.executable).parent / "bindep"), "-l", "newline", "-f", "ee/bindep.txt"],
                              cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert packages  # bindep's Debian selection of ee/bindep.txt
    dpkg = subprocess.run(["docker", "run", "--rm", "--network=none", IMAGE, "dpkg-query", "-W", "-f",
                           "${Package} ${Status}\n", *packages], capture_output=True, text=True, timeout=60)
    installed = {line.split()[0] for line in dpkg.stdout.splitlines() if line.endswith("install ok installed")}
    assert installed == set(packages), dpkg.stdout + dpkg.stderr
    runner = subprocess.run(["docker", "run", "--rm", "--network=none", IMAGE, "ansible-runner", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert runner.returncode == 0 and runner.stdout.strip() == dists["ansible-runner"], runner.stdout + runner.stderr
