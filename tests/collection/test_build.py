"""The collection builds with collection/build.sh, installs into an empty collections path, and its roles run by
their fully qualified names (what AWX and other projects consume)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
THIRD_PARTY = REPO / ".collections" / "ansible_collections"
BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [str(REPO / "collection" / "build.sh"), str(out)], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == out
    return path


@pytest.fixture(scope="module")
def installed(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty collections path with the artifact installed, plus the third-party collections it needs."""
    if not (THIRD_PARTY / "community" / "general").is_dir():
        pytest.skip("[needs-install] third-party collections missing: run scripts/install-collections.sh")
    root = tmp_path_factory.mktemp("collections")
    done = subprocess.run(
        ["ansible-galaxy", "collection", "install", "--offline", "--no-deps", "-p", str(root), str(artifact)],
        capture_output=True,
        text=True,
        env=_env(ANSIBLE_COLLECTIONS_PATH=str(root)),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    for namespace in ("community", "kubernetes", "ansible"):
        for collection in (THIRD_PARTY / namespace).iterdir():
            target = root / "ansible_collections" / namespace / collection.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(collection, target_is_directory=True)
    return root


def test_artifact_holds_roles_and_playbooks_as_files(artifact: Path) -> None:
    with tarfile.open(artifact) as tar:
        members = {member.name: member for member in tar.getmembers()}
    for name in (
        "MANIFEST.json",
        "FILES.json",
        "meta/runtime.yml",
        "plugins/modules/stack_evidence.py",
        "plugins/filter/procedure.py",
        "plugins/lookup/procedure_run.py",
        "plugins/plugin_utils/procedure.py",
        "roles/cache_performance/tasks/main.yml",
        "roles/cache_performance/meta/argument_specs.yml",
        "roles/_common/tasks/report.yml",
        "playbooks/run.yml",
        "playbooks/cache_performance.yml",
        "playbooks/prevent_all.yml",
    ):
        assert name in members, name
    assert not any(member.issym() for member in members.values())
    assert not any("__pycache__" in name for name in members)


def test_installed_collection_exposes_roles_by_fqcn(installed: Path) -> None:
    listing = subprocess.run(
        ["ansible-galaxy", "collection", "list", "octollm.remediation", "--format", "json"],
        capture_output=True,
        text=True,
        env=_env(ANSIBLE_COLLECTIONS_PATH=str(installed)),
    )
    assert listing.returncode == 0, listing.stderr
    found = json.loads(listing.stdout)
    assert any(str(installed) in path for path in found), found
    doc = subprocess.run(
        ["ansible-doc", "-t", "role", "octollm.remediation.cache_performance", "-e", "diagnose"],
        capture_output=True,
        text=True,
        env=_env(ANSIBLE_COLLECTIONS_PATH=str(installed)),
    )
    assert doc.returncode == 0 and "cache_performance_allow_disruptive" in doc.stdout, doc.stderr


@pytest.mark.lab
def test_installed_role_diagnoses_the_lab(installed: Path, lab: object, tmp_path: Path) -> None:
    play = tmp_path / "diagnose.yml"
    play.write_text(
        "- name: Diagnose through the installed collection\n"
        "  hosts: octollm\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Run the cache performance diagnosis by its FQCN\n"
        "      ansible.builtin.include_role:\n"
        "        name: octollm.remediation.cache_performance\n"
        "        tasks_from: diagnose\n"
    )
    done = subprocess.run(
        ["ansible-playbook", "-i", str(REPO / "inventory" / "lab"), str(play)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(
            ANSIBLE_COLLECTIONS_PATH=str(installed),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_SHOW_CUSTOM_STATS="true",
        ),
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    output = json.loads(done.stdout)
    report = output["global_custom_stats"]["octollm_report"]["lab"]["cache_performance"]
    assert report["procedure"] == "cache_performance" and report["phase"] == "diagnose"
    assert report["platform"] == "compose"
    checks = {finding["check"] for finding in report["findings"]}
    assert {"cache.hit_rate", "redis.eviction_policy", "redis.memory", "cache.warm_keys"} <= checks
    for finding in report["findings"]:
        assert finding["status"] in ("ok", "warning", "problem", "unknown")
    # the role came from the installed artifact, not from the development links
    paths = json.dumps(output["plays"])
    assert str(REPO / ".collections") not in paths
