"""The lab faults' edits of the state dir's Compose override (octollm_labctl.faults.common), without Docker."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from octollm_labctl.faults.common import edit_override, override_env
from octollm_labctl.lab import OVERRIDE_HEADER


def _lab(tmp_path: Path, services: dict[str, object]) -> Any:  # stands in for octollm_labctl.Lab: only .state is used
    (tmp_path / "compose.override.yaml").write_text(OVERRIDE_HEADER + yaml.safe_dump({"services": services}))
    return SimpleNamespace(state=tmp_path)


def _services(tmp_path: Path) -> dict[str, object]:
    text = (tmp_path / "compose.override.yaml").read_text()
    assert text.startswith(OVERRIDE_HEADER)
    return dict(yaml.safe_load(text)["services"])


def test_environment_is_merged_then_removed_and_a_fix_keeps_its_limit(tmp_path: Path) -> None:
    lab = _lab(tmp_path, {"judge-arm": {"mem_limit": "384m"}})
    override_env(lab, "judge-arm", {"ARM_DOMAIN": "misc"})
    override_env(lab, "judge-arm", {"ARM_KEYWORDS": "misc"})
    assert _services(tmp_path) == {
        "judge-arm": {"mem_limit": "384m", "environment": {"ARM_DOMAIN": "misc", "ARM_KEYWORDS": "misc"}}
    }
    override_env(lab, "judge-arm", None)
    assert _services(tmp_path) == {"judge-arm": {"mem_limit": "384m"}}


def test_an_entry_left_empty_is_dropped(tmp_path: Path) -> None:
    lab = _lab(tmp_path, {})
    edit_override(lab, "orchestrator", lambda entry: entry.__setitem__("mem_limit", 0))
    assert _services(tmp_path) == {"orchestrator": {"mem_limit": 0}}
    edit_override(lab, "orchestrator", lambda entry: entry.pop("mem_limit"))
    assert _services(tmp_path) == {}
