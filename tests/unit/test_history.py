"""The deployment history of a Compose stack (octoctl/history.py, issue 19 item 4): a revision per change only,
the environment never in clear in the index (keyed hashes; values in 0600 files), the rollback's change and
override to the previous or a named revision, its check afterwards, and the Kubernetes rollout history's rows."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from octoctl import history as hist
from octoctl.errors import ExitCode, OctoctlError

SECRET = "s3cr3t-value-that-must-not-leak"


def inspect(env: dict[str, str], image_id: str = "sha256:" + "a" * 64, memory: int = 268435456,
            command: list[str] | None = None) -> dict[str, Any]:
    return {
        "Name": "/octollm-planner-arm-1", "Image": image_id, "State": {"Running": True},
        "Config": {"Image": "octollm/lab-runtime:dev", "Env": [f"{k}={v}" for k, v in env.items()],
                   "Cmd": command or ["python3", "-m", "octollm_lab.arm"], "Entrypoint": None, "User": "",
                   "WorkingDir": "/app", "Labels": {"com.docker.compose.config-hash": "hash-" + str(sorted(env))}},
        "HostConfig": {"Memory": memory, "MemorySwap": memory, "NanoCpus": 0},
    }


BASE = {"ARM_NAME": "planner-arm", "ARM_NOTE": "good", "REDIS_PASSWORD": SECRET, "PATH": "/usr/bin"}


def state(**env: str) -> dict[str, Any]:
    return hist.container_state(inspect({**BASE, **env}))


def test_container_state_reads_what_the_container_runs() -> None:
    found = hist.container_state(inspect(BASE))
    assert found["container"] == "octollm-planner-arm-1" and found["image_id"].startswith("sha256:aaa")
    assert found["environment"]["REDIS_PASSWORD"] == SECRET and found["environment"]["ARM_NOTE"] == "good"
    assert found["config"] == {"command": ["python3", "-m", "octollm_lab.arm"], "entrypoint": None, "user": "",
                               "working_dir": "/app", "mem_limit": 268435456, "memswap_limit": 268435456,
                               "cpus": None}


def test_a_revision_is_recorded_only_when_something_changed_and_secrets_stay_out_of_the_index(
        tmp_path: Path) -> None:
    book = hist.History(tmp_path, "lab")
    first, new = book.record("planner-arm", state(), "run-1")
    assert (first.revision, new, first.changes) == (1, True, ["first recorded"])
    again, new = book.record("planner-arm", state(), "run-2")
    assert (again.revision, new) == (1, False)
    second, new = book.record("planner-arm", state(ARM_NOTE="bad"), "run-3")
    assert (second.revision, new, second.changes) == (2, True, ["env ARM_NOTE"])
    index = (tmp_path / "history" / "lab" / "planner-arm.json").read_text()
    assert SECRET not in index and "'bad'" not in index and '"bad"' not in index
    import hashlib

    assert hashlib.sha256(SECRET.encode()).hexdigest()[:16] not in index  # keyed, not a bare hash
    env_file = tmp_path / "history" / "lab" / "planner-arm" / "2.env.json"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    assert json.loads(env_file.read_text())["ARM_NOTE"] == "bad"
    assert [r.revision for r in book.revisions("planner-arm")] == [1, 2]


def test_the_rollback_to_the_previous_and_to_a_named_revision(tmp_path: Path) -> None:
    book = hist.History(tmp_path, "lab")
    book.record("planner-arm", state())
    book.record("planner-arm", state(ARM_NOTE="bad"))
    rotated = hist.container_state(inspect({**BASE, "REDIS_PASSWORD": "rotated"}))
    book.record("planner-arm", rotated)
    # a secret is never written down: a revision that ran another one cannot be brought back by octoctl
    assert SECRET not in "".join(f.read_text() for f in tmp_path.rglob("*") if f.is_file())
    with pytest.raises(OctoctlError, match="ran other values of REDIS_PASSWORD") as refused:
        hist.plan_rollback(book, "planner-arm", rotated, 1)
    assert refused.value.exit_code == ExitCode.HUMAN_NEEDED
    now = hist.container_state(inspect({**BASE, "ARM_NOTE": "worse", "NEW": "1"},
                                       image_id="sha256:" + "b" * 64, memory=536870912))
    book.record("planner-arm", now)
    previous = hist.plan_rollback(book, "planner-arm", now, 2)
    assert (previous.from_revision, previous.to_revision) == (4, 2)
    # the revision's whole environment: NEW, set since, is gone again (env_file reset, environment overridden)
    assert previous.override["environment"] == {**BASE, "ARM_NOTE": "bad"}
    assert previous.override["env_file"] == hist.RESET
    assert previous.override["image"] == "sha256:" + "a" * 64 and previous.override["pull_policy"] == "never"
    assert (previous.override["mem_limit"], previous.override["memswap_limit"]) == (268435456, 268435456)
    shown = "\n".join(previous.changes)
    assert "env ARM_NOTE: 'worse' -> 'bad'" in shown and "REDIS_PASSWORD" not in shown  # the same secret
    assert "env NEW: '1' -> (unset)" in shown
    assert SECRET not in shown and "rotated" not in shown
    assert "mem_limit: 536870912 -> 268435456" in shown
    named = hist.plan_rollback(book, "planner-arm", now, 1)
    assert named.to_revision == 1 and named.override["environment"]["ARM_NOTE"] == "good"

    path = hist.write_override(book, "planner-arm", named)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    import yaml

    text = path.read_text()
    assert "env_file: !reset []" in text and "environment: !override" in text  # Compose's merge tags
    loader = type("ComposeLoader", (yaml.SafeLoader,), {})
    loader.add_constructor("!reset", lambda loader, node: [])
    loader.add_constructor("!override", lambda loader, node: loader.construct_mapping(node))
    written = yaml.load(text, Loader=loader)  # noqa: S506 - SafeLoader with two tags
    assert written["services"]["planner-arm"]["environment"] == BASE

    # after the rollback the container runs revision 1: nothing differs
    after = hist.container_state(inspect(BASE))
    assert hist.differences(book, "planner-arm", 1, after) == []
    assert hist.differences(book, "planner-arm", 2, after) == ["env ARM_NOTE"]
    assert hist.differences(book, "planner-arm", 1, now) == [
        "image sha256:bbbbbbbbbbbb (revision 1: sha256:aaaaaaaaaaaa)", "mem_limit", "memswap_limit",
        "env ARM_NOTE", "env NEW"]
    assert book.images() == {"planner-arm": ["sha256:" + "b" * 64, "sha256:" + "a" * 64]}  # newest first
    assert hist.revision_images(tmp_path) == {"resource_exhaustion_revision_images": {
        "lab/planner-arm": ["sha256:" + "b" * 64, "sha256:" + "a" * 64]}}
    assert hist.revision_images(tmp_path / "nothing") == {}


def test_nothing_to_roll_back_to_and_an_unknown_revision(tmp_path: Path) -> None:
    book = hist.History(tmp_path, "lab")
    with pytest.raises(OctoctlError) as empty:
        hist.plan_rollback(book, "planner-arm", state(), None)
    assert empty.value.exit_code == ExitCode.HUMAN_NEEDED
    book.record("planner-arm", state())
    with pytest.raises(OctoctlError) as single:
        hist.plan_rollback(book, "planner-arm", state(), None)
    assert single.value.exit_code == ExitCode.HUMAN_NEEDED and "no previous revision" in single.value.message
    book.record("planner-arm", state(ARM_NOTE="bad"))
    with pytest.raises(OctoctlError) as unknown:
        hist.plan_rollback(book, "planner-arm", state(ARM_NOTE="bad"), 9)
    assert unknown.value.exit_code == ExitCode.USAGE and "recorded: 1, 2" in unknown.value.message


def test_a_state_seen_before_is_marked_as_the_revision_it_restores(tmp_path: Path) -> None:
    book = hist.History(tmp_path, "lab")
    book.record("planner-arm", state())
    book.record("planner-arm", state(ARM_NOTE="bad"))
    back, new = book.record("planner-arm", state())
    assert (back.revision, new, back.same_as) == (3, True, 1)
    table = hist.render("planner-arm", [dict(r.as_dict(), change=", ".join(r.changes), current=r.revision == 3)
                                        for r in book.revisions("planner-arm")], "table")
    assert "env ARM_NOTE (running)" in table.splitlines()[-1] and SECRET not in table


def test_the_kubernetes_rollout_history_rows() -> None:
    deployment = {"metadata": {"name": "judge-arm", "annotations": {hist.REVISION: "3"}}}

    def rs(name: str, revision: str, image: str, owner: str = "judge-arm") -> dict[str, Any]:
        return {"metadata": {"name": name, "annotations": {hist.REVISION: revision},
                             "ownerReferences": [{"kind": "Deployment", "name": owner}],
                             "creationTimestamp": "2026-12-07T10:00:00Z"},
                "spec": {"replicas": 1 if revision == "3" else 0,
                         "template": {"spec": {"containers": [{"image": image}]}}}}

    rows = hist.replicaset_rows(deployment, [rs("judge-arm-c", "3", "img:3"), rs("judge-arm-a", "1", "img:1"),
                                             rs("other-x", "2", "img:x", owner="other"), rs("judge-arm-b", "2",
                                                                                            "img:2")])
    assert [(r["revision"], r["image"], r["current"]) for r in rows] == [
        (1, "img:1", False), (2, "img:2", False), (3, "img:3", True)]
