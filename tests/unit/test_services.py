"""octoctl logs, shell and restart without a lab: argument errors (one line, the documented exit status), log lines
masked through a stand-in container runtime, and shell command lines that carry no secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from octoctl.cli import cli
from octoctl.errors import ExitCode
from octoctl.services import Stack, log_lines, shell_command, since_seconds

SECRET = "hunter2-very-secret"
INVENTORY = f"""\
octollm:
  hosts:
    stack1:
      octollm_platform: compose
      octollm_compose_project: demo
      octollm_postgres: {{host: 127.0.0.1, port: 5432, database: octollm, user: app, password: {SECRET},
                         admin_user: postgres, admin_password: admin-{SECRET}}}
      octollm_redis: {{host: 127.0.0.1, port: 6379, password: redis-{SECRET}}}
      octollm_services:
        orchestrator: {{url: "http://127.0.0.1:8000"}}
        postgres: {{port: 5432}}
        redis: {{port: 6379}}
"""
FAKE_DOCKER = """#!/bin/sh
case "$1" in
  ps) echo demo-orchestrator-1 ;;
  logs) echo "INFO start DATABASE_URL=postgresql://app:hunter2-very-secret@postgres/octollm"
        echo "INFO user bob@example.com asked" >&2
        echo "INFO health ok" ;;
esac
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY)
    return path


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return docker


def invoke(args: list[str], tmp_path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env={"OCTOCTL_STATE_DIR": str(tmp_path / "state"), "OCTOCTL_DEBUG": ""})
    return result.exit_code, result.output


@pytest.mark.parametrize("args, words", [
    (["logs", "nosuch"], "no service 'nosuch' in the inventory of stack1"),
    (["logs", "orchestrator", "--since", "yesterday"], "--since 'yesterday'"),
    (["logs", "orchestrator", "--grep", "("], "is not a regular expression"),
    (["shell", "postgres", "--admin", "-c", "select 1", "--limit", "nosuch"], "give one stack with --limit"),
    (["restart", "nosuch"], "no service 'nosuch'"),
    # the seed's down -v needs its second confirmation: no terminal to type it on, so refused before any run
    (["emergency", "restart", "--volumes", "--approve"], "confirm with --yes-drop-volumes"),
    (["emergency", "restart", "--yes-drop-volumes"], "--yes-drop-volumes confirms --volumes"),
])
def test_argument_errors_are_one_line_and_exit_2(args: list[str], words: str, inventory: Path,
                                                 tmp_path: Path) -> None:
    code, output = invoke([*args, "-i", str(inventory)], tmp_path)
    assert code == ExitCode.USAGE, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("octoctl: error: ") and words in lines[0]


@pytest.mark.parametrize("args", [["logs", "orchestrator", "--tail", "0"], ["shell", "mysql"], ["logs"],
                                  ["restart"]])
def test_click_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    code, output = invoke(args, tmp_path)
    assert code == ExitCode.USAGE and "Traceback" not in output


def test_a_missing_inventory_is_2(tmp_path: Path) -> None:
    code, output = invoke(["logs", "orchestrator", "-i", str(tmp_path / "none")], tmp_path)
    assert code == ExitCode.USAGE and "does not exist" in output


def test_since_takes_durations_and_zoned_times() -> None:
    assert since_seconds("90s") == 90 and since_seconds("10m") == 600 and since_seconds("2h") == 7200
    assert since_seconds("2000-01-01T00:00:00Z") > 86400


def test_logs_are_masked_before_grep(inventory: Path, tmp_path: Path, fake_docker: Path) -> None:
    code, output = invoke(["logs", "orchestrator", "-i", str(inventory)], tmp_path)
    assert code == 0, output
    assert SECRET not in output and "bob@example.com" not in output
    assert "[REDACTED:" in output and "INFO health ok" in output
    code, output = invoke(["logs", "orchestrator", "--grep", "hunter2", "-i", str(inventory)], tmp_path)
    assert (code, output) == (0, "")


def test_logs_of_a_service_without_container_is_1(inventory: Path, tmp_path: Path, fake_docker: Path) -> None:
    fake_docker.write_text("#!/bin/sh\nexit 0\n")
    code, output = invoke(["logs", "redis", "-i", str(inventory)], tmp_path)
    assert code == ExitCode.HUMAN_NEEDED and "has no container" in output


def test_shell_command_lines_carry_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = Stack(host="s", platform="compose", project="demo", services={"postgres": {}, "redis": {}},
                  postgres={"user": "app", "password": SECRET, "admin_user": "postgres",
                            "admin_password": "admin-" + SECRET},
                  redis={"password": "redis-" + SECRET})
    for which, admin, env in (("postgres", False, {"PGPASSWORD": SECRET}),
                              ("postgres", True, {"PGPASSWORD": "admin-" + SECRET}),
                              ("redis", False, {"REDISCLI_AUTH": "redis-" + SECRET})):
        command = shell_command(stack, which, ("-c", "select 1"), admin)
        assert SECRET not in " ".join(command.argv) and command.secret_env == env
    # without a local client: docker exec passes the variable by name only
    monkeypatch.setattr("octoctl.services.shutil.which", lambda name: "/usr/bin/docker" if name == "docker" else None)
    monkeypatch.setattr("octoctl.services.compose_containers", lambda stack, name: [f"demo-{name}-1"])
    command = shell_command(stack, "postgres", ("-c", "select 1"))
    assert command.argv[:3] == ["docker", "exec", "-i"] and "PGPASSWORD" in command.argv
    assert SECRET not in " ".join(command.argv)


def test_log_lines_of_an_unknown_service_fail_before_reading(fake_docker: Path) -> None:
    stack = Stack(host="s", platform="compose", project="demo", services={})
    with pytest.raises(Exception, match="no service"):
        list(log_lines(stack, "ghost", None, None, None))


def test_the_quick_reference_points_at_real_commands(tmp_path: Path) -> None:
    from octoctl.render import QUICK_REFERENCE

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code, shown = invoke(["symptoms"], tmp_path)
    assert code == 0
    for _, ours in QUICK_REFERENCE:
        words = ours.split()
        assert words[0] == "octoctl" and words[1] in cli.commands, ours
        assert ours in shown
        assert f"`octoctl {words[1]} " in readme
        command = cli.commands[words[1]]
        if hasattr(command, "commands"):  # a group: octoctl emergency restart
            command = command.commands[words[2]]
        for option in (w.strip("[]") for w in words if w.startswith("[--")):
            assert any(option in p.opts for p in command.params), (ours, option)


def test_the_kubernetes_api_failures_are_one_line_errors_of_an_unreachable_stack() -> None:
    from kubernetes.client.exceptions import ApiException

    from octoctl.errors import OctoctlError
    from octoctl.services import kubernetes_errors

    refused = ConnectionRefusedError("[Errno 111] refused\nmore")
    for raised, words in ((ApiException(status=403, reason="Forbidden"), "answered 403: Forbidden"),
                          (refused, r"cannot be reached: \[Errno 111\] refused$")):
        with pytest.raises(OctoctlError, match=words) as error, kubernetes_errors():
            raise raised
        assert error.value.exit_code == ExitCode.ENVIRONMENT and "\n" not in error.value.message
    with pytest.raises(OctoctlError, match="no pod") as error, kubernetes_errors():
        raise OctoctlError("no pod", ExitCode.HUMAN_NEEDED)
    assert error.value.exit_code == ExitCode.HUMAN_NEEDED  # octoctl's own errors pass as they are
