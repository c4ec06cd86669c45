"""`octoctl restart SERVICE` (issue 19): Service Unavailable plans scenario A's restart of a service it is asked to
restart (service_unavailable_restart_services), gated by approval like its own restarts, once per service."""

from __future__ import annotations

from ansible_collections.octollm.remediation.plugins.plugin_utils import service_unavailable as su
from test_service_unavailable_plugins import DECLARED, HEALTHY, SETTINGS, evidence, record


def test_a_healthy_service_asked_for_is_restarted_only_with_approval() -> None:
    result = su.diagnose(evidence(*HEALTHY, config=DECLARED), SETTINGS)
    assert su.plan(result, SETTINGS) == []
    name = HEALTHY[1]["service"]
    asked = dict(SETTINGS, restart_services=[name])
    (waiting,) = su.plan(result, asked)
    assert waiting["id"] == "service_unavailable.A.restart_" + name.replace("-", "_")
    assert waiting["status"] == "awaiting_approval" and waiting["disruptive"] is True
    assert waiting["change"] == {"container": HEALTHY[1]["name"], "service": name, "op": "restart"}
    assert waiting["_apply"] == "compose_service"
    (approved,) = su.plan(result, dict(asked, approve=True))
    assert approved["status"] == "planned"


def test_a_service_the_plan_already_starts_is_not_restarted_twice() -> None:
    crashed = record("judge-arm", running=False, state="exited", exit_code=137, health="unhealthy", stats=None)
    result = su.diagnose(evidence(HEALTHY[0], crashed, HEALTHY[2], HEALTHY[3], config=DECLARED), SETTINGS)
    actions = su.plan(result, dict(SETTINGS, restart_services=["judge-arm"], approve=True))
    assert [(a["id"], a["change"]["op"]) for a in actions] == [("service_unavailable.A.up_judge_arm", "up")]


def test_a_rollback_asked_for_on_compose_brings_the_service_up_with_the_revisions_file() -> None:
    """`octoctl rollback SERVICE` on Compose (issue 19 item 4): scenario D's rollback of the recorded revision,
    through the compose_service action with the project's files and octoctl's override, gated by approval."""
    result = su.diagnose(evidence(*HEALTHY, config=DECLARED), SETTINGS)
    name = HEALTHY[1]["service"]
    compose = {"from_revision": 3, "override_file": "/state/history/lab/rollback/x.yaml",
               "files": ["/lab/compose.yaml", "/state/history/lab/rollback/x.yaml"],
               "changes": ["env ARM_NOTE: 'bad' -> 'good'", "env API_KEY: *** -> ***"]}
    asked = dict(SETTINGS, rollback={"service": name, "to_revision": 2, "compose": compose})
    (waiting,) = su.plan(result, asked)
    assert waiting["id"] == "service_unavailable.D.rollback_" + name.replace("-", "_")
    assert (waiting["status"], waiting["disruptive"], waiting["_apply"]) == ("awaiting_approval", True,
                                                                             "compose_service")
    assert waiting["change"] == {"service": name, "op": "up", "from_revision": 3, "to_revision": 2,
                                 "files": compose["files"], "changes": compose["changes"]}
    assert "env ARM_NOTE: 'bad' -> 'good'; env API_KEY: *** -> ***" in waiting["outcome"]
    (approved,) = su.plan(result, dict(asked, approve=True))
    assert approved["status"] == "planned"
    # Kubernetes' form of the setting (no recorded revision) plans nothing on Compose
    assert su.plan(result, dict(SETTINGS, rollback={"service": name, "to_revision": 0})) == []
