"""Settings from the environment, with defaults relative to the repository octoctl lives in.

| variable | default | what |
|---|---|---|
| ``OCTOCTL_INVENTORY`` | ``<repo>/inventory/lab`` | inventory used when ``-i`` is not given |
| ``OCTOCTL_STATE_DIR`` | ``${XDG_STATE_HOME:-~/.local/state}/octoctl`` | octoctl's state; runs in ``runs/`` |
| ``OCTOCTL_RETENTION_DAYS`` | ``30`` | runs older than this are pruned at each run (``0`` keeps them) |
| ``OCTOCTL_MAX_RUNS`` | ``200`` | at most this many runs are kept (``0``: no limit) |
| ``OCTOCTL_COLLECTIONS_PATH`` | ``<repo>/.collections`` if it exists | becomes ``ANSIBLE_COLLECTIONS_PATH`` |
| ``OCTOCTL_PLAYBOOK`` | ``octollm.remediation.run`` | the playbook octoctl runs (FQCN or path) |

``<repo>`` is the parent of the ``octoctl`` package directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from octoctl.errors import ExitCode, OctoctlError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent

COLLECTION_NAMESPACE = "octollm"
COLLECTION_NAME = "remediation"
DEFAULT_PLAYBOOK = f"{COLLECTION_NAMESPACE}.{COLLECTION_NAME}.run"
DEFAULT_RETENTION_DAYS = 30
DEFAULT_MAX_RUNS = 200
ANSIBLE_DEFAULT_COLLECTIONS_PATH = "~/.ansible/collections:/usr/share/ansible/collections"


def _non_negative_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise OctoctlError(f"{name} must be a whole number >= 0, not {raw!r}", ExitCode.USAGE)
    return value


@dataclass(frozen=True)
class Settings:
    """Everything octoctl takes from its environment."""

    repo_root: Path
    inventory: Path
    state_dir: Path
    collections_path: str | None
    """What octoctl sets ANSIBLE_COLLECTIONS_PATH to; None leaves Ansible's own setting alone."""
    playbook: str
    retention_days: int
    max_runs: int
    env: Mapping[str, str]

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, repo_root: Path | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        repo = repo_root or REPO_ROOT
        home = Path(env.get("HOME") or Path.home())
        inventory = Path(env["OCTOCTL_INVENTORY"]) if env.get("OCTOCTL_INVENTORY") else repo / "inventory" / "lab"
        if env.get("OCTOCTL_STATE_DIR"):
            state_dir = Path(env["OCTOCTL_STATE_DIR"]).expanduser()
        else:
            xdg = env.get("XDG_STATE_HOME") or str(home / ".local" / "state")
            state_dir = Path(xdg).expanduser() / "octoctl"
        collections_path: str | None
        if env.get("OCTOCTL_COLLECTIONS_PATH"):
            collections_path = env["OCTOCTL_COLLECTIONS_PATH"]
        elif (repo / ".collections").is_dir():
            collections_path = str(repo / ".collections")
        else:
            collections_path = None
        return cls(
            repo_root=repo,
            inventory=inventory,
            state_dir=state_dir,
            collections_path=collections_path,
            playbook=env.get("OCTOCTL_PLAYBOOK") or DEFAULT_PLAYBOOK,
            retention_days=_non_negative_int(env, "OCTOCTL_RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
            max_runs=_non_negative_int(env, "OCTOCTL_MAX_RUNS", DEFAULT_MAX_RUNS),
            env=env,
        )

    # --- where Ansible will look for the collection -------------------------------------------

    def effective_collections_paths(self) -> list[Path]:
        """The directories Ansible searches for collections, in its order (an approximation of its rules:
        the configured path, then ``ansible_collections`` on the Python path, which Ansible scans by default)."""
        if self.collections_path is not None:
            configured = self.collections_path
        else:
            configured = (
                self.env.get("ANSIBLE_COLLECTIONS_PATH")
                or self.env.get("ANSIBLE_COLLECTIONS_PATHS")
                or ANSIBLE_DEFAULT_COLLECTIONS_PATH
            )
        paths = [Path(p).expanduser() for p in configured.split(os.pathsep) if p]
        paths += [Path(p) for p in sys.path if p and Path(p, "ansible_collections").is_dir()]
        return paths

    def collection_root(self) -> Path | None:
        """The first ``ansible_collections/octollm/remediation`` directory on the search path, as Ansible picks it."""
        for base in self.effective_collections_paths():
            candidates = [base / "ansible_collections" / COLLECTION_NAMESPACE / COLLECTION_NAME]
            if base.name == "ansible_collections":
                candidates.append(base / COLLECTION_NAMESPACE / COLLECTION_NAME)
            for candidate in candidates:
                if candidate.is_dir():
                    return candidate
        return None

    def role_has_phase(self, role: str, phase: str) -> bool:
        root = self.collection_root()
        return root is not None and (root / "roles" / role / "tasks" / f"{phase}.yml").is_file()

    def tool_path(self) -> str:
        """PATH for Ansible's tools: the interpreter's bin directory first when it holds ansible-playbook
        (a virtualenv that is not activated), then the caller's PATH."""
        path = self.env.get("PATH", os.defpath)
        bindir = Path(sys.executable).parent
        if (bindir / "ansible-playbook").exists() and str(bindir) not in path.split(os.pathsep):
            return os.pathsep.join([str(bindir), path])
        return path
