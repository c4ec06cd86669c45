"""execution-environment.yml (issue 18, item 2, files only): ansible-builder (schema v3) accepts it and writes a
build context with its dependency files; the Python file covers every third-party module the collection imports.
Building the image needs AWX's base image (no registry here) and is not done by this test."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# import name -> the requirement that provides it, where they differ
PROVIDED_BY = {"psycopg2": "psycopg2-binary", "yaml": "pyyaml"}


def _third_party_imports() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "collection").rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            found |= {name.split(".")[0] for name in names}
    return {name for name in found
            if name not in sys.stdlib_module_names and name not in ("ansible", "ansible_collections")}


def test_ansible_builder_creates_the_build_context(tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert spec["version"] == 3
    context = tmp_path / "context"
    done = subprocess.run(
        [str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", str(context)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    containerfile = next(context / name for name in ("Containerfile", "Dockerfile") if (context / name).is_file())
    text = containerfile.read_text()
    assert spec["images"]["base_image"]["name"] in text
    build = context / "_build"
    for key, name in (("python", "requirements.txt"), ("system", "bindep.txt"), ("galaxy", "requirements.yml")):
        assert (build / name).read_text() == (REPO / spec["dependencies"][key]).read_text(), key
    # the image holds octollm.remediation itself (from this repository, as collections/requirements.yml names it);
    # its galaxy.yml brings the collections it depends on
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    project = yaml.safe_load((REPO / "collections" / "requirements.yml").read_text())
    assert galaxy["collections"] == project["collections"]


def test_the_python_requirements_cover_the_collection_s_imports() -> None:
    lines = (REPO / "ee" / "requirements.txt").read_text().splitlines()
    packages = {line.split("#")[0].strip().split(">")[0].split("=")[0].split("<")[0].strip().lower()
                for line in lines if line.split("#")[0].strip()}
    imports = _third_party_imports()
    assert {"redis", "psycopg2", "kubernetes"} <= imports  # the scan sees the plugins' imports
    missing = {name for name in imports if PROVIDED_BY.get(name, name).lower() not in packages}
    assert not missing, missing
