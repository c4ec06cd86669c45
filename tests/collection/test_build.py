"""The collection builds with collection/build.sh, installs into an empty collections path, and its roles run by
their fully qualified names (what AWX and other projects consume). Installing from the git repository as an AWX
project sync does (collections/requirements.yml, ``git+<repo>#/collection/``) yields the same files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

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


# --- the standard install (issue 18, item 1) ----------------------------------------------------------------------
COLLECTION = REPO / "collection"
ROLES = sorted(path.name for path in (COLLECTION / "roles").iterdir()
               if (path / "meta" / "argument_specs.yml").is_file())
PLAYBOOKS = sorted(path.name for path in (COLLECTION / "playbooks").glob("*.yml"))


def _files(root: Path) -> set[str]:
    """The files of an installed collection, relative to its root, from its FILES.json."""
    listing = json.loads((root / "FILES.json").read_text())
    return {entry["name"] for entry in listing["files"] if entry["ftype"] == "file"}


def _assert_whole(root: Path) -> None:
    """An installed octollm.remediation holds the whole collection: every role, playbook, plugin, the runtime and
    the EDA extensions, as files that exist (not links)."""
    files = _files(root)
    assert ROLES and len([role for role in ROLES if not role.startswith("_")]) == 10, ROLES
    for role in [*ROLES, "_common"]:
        assert f"roles/{role}/meta/argument_specs.yml" in files, role
        assert f"roles/{role}/defaults/main.yml" in files, role
    for role in ROLES:
        if not role.startswith("_"):
            for phase in ("diagnose", "resolve", "prevent", "main"):
                assert f"roles/{role}/tasks/{phase}.yml" in files, (role, phase)
    for playbook in PLAYBOOKS:
        assert f"playbooks/{playbook}" in files, playbook
    assert {"playbooks/run.yml", "playbooks/prevent_all.yml", "meta/runtime.yml",
            "extensions/eda/rulebooks/octollm.yml", "roles/_common/tasks/report.yml"} <= files
    plugins = {str(path.relative_to(COLLECTION)) for path in (COLLECTION / "plugins").rglob("*.py")
               if "__pycache__" not in path.parts}
    eda = {str(path.relative_to(COLLECTION)) for path in (COLLECTION / "extensions").rglob("*")
           if path.is_file() and "__pycache__" not in path.parts}
    assert plugins and plugins <= files, sorted(plugins - files)
    assert eda <= files, sorted(eda - files)
    for name in files:
        assert (root / name).is_file() and not (root / name).is_symlink(), name
    # development files stay out
    assert not {"build.sh", "dev-link.sh", "ruff.toml", ".yamllint"} & files
    assert not any("__pycache__" in name or name.endswith(".tar.gz") for name in files)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of the committed branch (what an AWX project sync checks out)."""
    path = tmp_path_factory.mktemp("clone") / "octollm"
    done = subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return path


def _galaxy_install(root: Path, *args: str) -> None:
    done = subprocess.run(
        ["ansible-galaxy", "collection", "install", "--no-deps", "-p", str(root), *args],
        capture_output=True, text=True, env=_env(ANSIBLE_COLLECTIONS_PATH=str(root)), timeout=300,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def test_the_tarball_installs_the_whole_collection(installed: Path) -> None:
    _assert_whole(installed / "ansible_collections" / "octollm" / "remediation")


def test_the_git_install_as_awx_does_yields_the_whole_collection(clone: Path, tmp_path: Path) -> None:
    """collections/requirements.yml names the repository (type git, #/collection/); installed from a clean clone
    through that file (its URL pointed at the clone), the collection is whole and holds the tarball's files."""
    requirements = yaml.safe_load((REPO / "collections" / "requirements.yml").read_text())
    [entry] = [item for item in requirements["collections"] if "#/collection/" in str(item["name"])]
    assert entry["type"] == "git" and entry.get("version")
    url, _, subdir = entry["name"].partition("#")
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    assert url.removesuffix(".git") == galaxy["repository"], (url, galaxy["repository"])
    # the branch the requirement names, at the commit under test (also when the clone is on it already)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "-B", entry["version"]], check=True, capture_output=True)
    local = tmp_path / "requirements.yml"
    local.write_text(yaml.safe_dump({"collections": [{**entry, "name": f"git+file://{clone}/.git#{subdir}"}]}))
    root = tmp_path / "collections"
    _galaxy_install(root, "-r", str(local))
    installed = root / "ansible_collections" / "octollm" / "remediation"
    _assert_whole(installed)
    manifest = json.loads((installed / "MANIFEST.json").read_text())["collection_info"]
    assert manifest["version"] == galaxy["version"]
    # the same files as the built artifact of the same tree
    out = tmp_path / "dist"
    done = subprocess.run([str(clone / "collection" / "build.sh"), str(out)], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    tarball_root = tmp_path / "from-tarball"
    _galaxy_install(tarball_root, "--offline", done.stdout.strip().splitlines()[-1])
    assert _files(root / "ansible_collections" / "octollm" / "remediation") == _files(
        tarball_root / "ansible_collections" / "octollm" / "remediation")


def test_the_top_level_roles_and_playbooks_are_the_collection_s() -> None:
    """One home per role: the repository's roles/ and playbooks/ are links into collection/."""
    for name in ("roles", "playbooks"):
        assert (REPO / name).is_symlink() and (REPO / name).resolve() == (COLLECTION / name).resolve(), name
