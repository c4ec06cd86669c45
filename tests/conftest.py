"""Shared fixtures: one lab for the whole suite, reset between tests; strict skips under CI."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

NEEDS_LAB = ("lab", "docker", "molecule", "minimal")
# A skip whose reason starts with this names something set-up must install (a server binary, a Python package,
# the collections): under CI=true it fails the run like a skipped lab test.
NEEDS_INSTALL = "[needs-install]"


def _docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI a lab, Docker or Molecule test, or one that needs an installed server binary, may not skip: a skip
    there hides a missing install step."""
    outcome = yield
    report = outcome.get_result()
    xfailed = hasattr(report, "wasxfail")  # a tracked known defect, not a skipped test
    needs_install = report.skipped and NEEDS_INSTALL in str(report.longrepr)
    if os.environ.get("CI") == "true" and report.skipped and not xfailed \
            and (needs_install or any(item.get_closest_marker(m) for m in NEEDS_LAB)):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is a failure: {report.longrepr}"


@pytest.fixture(autouse=True)
def _lab_profile(request: pytest.FixtureRequest) -> None:
    """A lab test runs on the profile it is written for: `minimal` tests on the minimal profile, the other lab, Docker
    and Molecule tests on the full lab (the state directory records the profile that is up; a mismatch is a skip,
    which CI turns into a failure)."""
    if not any(request.node.get_closest_marker(m) for m in NEEDS_LAB):
        return
    from octollm_labctl.lab import default_state_dir, recorded_profile

    wanted = "minimal" if request.node.get_closest_marker("minimal") else "full"
    up = recorded_profile(default_state_dir())
    if up != wanted:
        pytest.skip(f"the lab's {up} profile is up; this test needs its {wanted} profile "
                    f"(octoctl lab up --profile {wanted})")


@pytest.fixture(scope="session")
def lab():  # type: ignore[no-untyped-def]
    """The running lab (scripts/test.sh brings it up); skipped without Docker, which CI turns into a failure."""
    if not _docker_ready():
        pytest.skip("no Docker engine")
    from octollm_labctl.lab import Lab

    the_lab = Lab()
    if not (the_lab.state / "compose.env").exists():
        the_lab.up()
    the_lab.wait_healthy(timeout=180)
    return the_lab


def _alerts_active() -> list[str]:
    """Alerts pending or firing in the lab's Prometheus (a healed fault's symptoms take a window to clear)."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen("http://127.0.0.1:9090/api/v1/alerts", timeout=5) as resp:
            alerts = json.load(resp)["data"]["alerts"]
    except OSError:
        return ["prometheus unreachable"]
    return [a["labels"].get("alertname", "?") for a in alerts if a.get("state") in ("pending", "firing")]


def settle(the_lab, timeout: float = 150) -> None:  # type: ignore[no-untyped-def]
    """Heal every fault, then wait until services are healthy and no alert is pending or firing."""
    import time

    from octollm_labctl import faults

    faults.heal_all(the_lab)
    the_lab.wait_healthy(timeout=180)
    deadline = time.monotonic() + timeout
    while (active := _alerts_active()) and time.monotonic() < deadline:
        time.sleep(2)
    if active:
        raise AssertionError(f"the lab did not settle: alerts still active: {', '.join(sorted(set(active)))}")


@pytest.fixture
def healthy_lab(lab):  # type: ignore[no-untyped-def]
    """The lab, healed and settled (healthy, no alert pending or firing) before and after the test."""
    settle(lab)
    yield lab
    settle(lab)
