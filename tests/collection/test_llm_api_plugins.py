"""Unit tests of the llm_api judgement (plugin_utils/llm_api.py): evidence in, findings, scenarios and plan out.
No lab needed: the evidence is built in the shape stack_evidence returns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible_collections.octollm.remediation.plugins.filter.procedure import FilterModule
from ansible_collections.octollm.remediation.plugins.plugin_utils import flow, llm_api
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context, ProcedureError
from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import procedure_settings, role_settings

FILES = {"env_file": "/state/lab.env", "secrets_file": "/state/secrets.env", "key_file": "/state/secrets/k"}
# no new key for scenario D unless a test gives one (the source is read from the controller's environment)
SETTINGS = procedure_settings("llm_api", {**FILES, "new_key_source": None})
SECRET = "sk-lab-do-not-print-me-0123456789"
ENV = (
    "LLM_API_URL=http://127.0.0.1:8200\nLLM_FALLBACK_ENABLED=false\nLLM_FALLBACK_URL=http://127.0.0.1:8201\n"
    "LLM_MAX_CONCURRENCY=8\nLLM_RATE_PER_MINUTE=600\nLLM_READ_TIMEOUT=30\nLLM_FALLBACK_API_KEY=" + SECRET + "\n"
)


def evidence(
    codes: dict[str, float] | None = None,
    key_status: str = "200",
    primary: int = 200,
    logs: dict[str, int] | None = None,
    calls: float = 0.5,
) -> dict[str, Any]:
    codes = codes or {}
    errors = sum(codes.values())
    return {
        "prometheus": {
            "ok": True,
            "queries": {
                "llm_api_error_ratio": {"value": errors / calls if calls else None},
                "llm_api_calls_per_s": {"value": calls},
                "llm_api_errors_by_code": {"series": [{"labels": {"code": c}, "value": v} for c, v in codes.items()]},
                "llm_api_calls_by_provider_status": {
                    "series": [
                        {"labels": {"provider": "primary", "status": "success"}, "value": calls - errors},
                        {"labels": {"provider": "primary", "status": "error"}, "value": errors},
                    ]
                },
                "llm_api_tokens_by_provider": {"series": [{"labels": {"provider": "primary"}, "value": 1234}]},
                "llm_api_circuit_state": {"series": [{"labels": {"provider": "primary"}, "value": 0}]},
            },
            "rules": {"names": ["HighLLMAPIErrorRate"]},
        },
        "http": {
            "ok": True,
            "probes": {
                "llm_api_primary_models": {
                    "status": primary,
                    "ok": primary == 200,
                    "error": None if primary == 200 else {"kind": "other"},
                },
                "llm_api_fallback_models": {"status": 200, "ok": True, "error": None},
            },
        },
        "containers": {
            "ok": True,
            "logs": {
                "orchestrator": {
                    "pattern_counts": logs or {},
                    "lines": [
                        "2026-11-28T19:00:00.000Z INFO orchestrator rate limit remaining=9990 reset=1s limit=10000 "
                        "provider=primary"
                    ],
                }
            },
            "exec_probes": [
                {"name": "llm_api_settings", "exit_code": 0, "ok": True, "output": ENV},
                {"name": "llm_api_key_check", "exit_code": 0, "ok": True, "output": key_status},
            ],
        },
    }


def diagnose(ev: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return llm_api.diagnose(ev, SETTINGS, **kwargs)


def holding(result: dict[str, Any]) -> set[str]:
    return {s["id"] for s in result["scenarios"] if s["holds"]}


def test_healthy_evidence_gives_only_ok() -> None:
    result = diagnose(evidence())
    assert {f["check"]: f["status"] for f in result["findings"]} == dict.fromkeys(
        [
            "llm.error_rate",
            "llm.rate_limit",
            "llm.provider_available",
            "llm.timeouts",
            "llm.api_key",
            "llm.request_rate",
        ],
        "ok",
    )
    assert holding(result) == set() and result["escalation"]["level"] is None
    assert llm_api.plan(result, SETTINGS) == []


def test_the_live_settings_never_keep_a_secret() -> None:
    result = diagnose(evidence())
    assert result["context"]["live"]["LLM_READ_TIMEOUT"] == "30"
    assert SECRET not in json.dumps(result)


def test_each_code_points_at_its_scenario() -> None:
    assert holding(diagnose(evidence({"429": 0.4}, logs={"llm_api_429": 5}))) == {"A"}
    assert holding(diagnose(evidence({"503": 0.4}, primary=503))) == {"B"}
    assert holding(diagnose(evidence({"timeout": 0.3}, logs={"llm_api_timeout": 4}))) == {"C"}
    auth = diagnose(evidence({"401": 0.5}, key_status="401", logs={"llm_api_auth": 9}))
    assert holding(auth) == {"D"}
    assert next(f for f in auth["findings"] if f["check"] == "llm.error_rate")["scenario"] == "D"


def test_plans_are_disruptive_with_exact_changes() -> None:
    plan = llm_api.plan(diagnose(evidence({"429": 0.4}, logs={"llm_api_429": 5})), SETTINGS)
    assert [(a["id"], a["status"], a["disruptive"]) for a in plan] == [
        ("llm_api.A.lower_rate", "awaiting_approval", True)
    ]
    assert plan[0]["change"]["settings"] == {
        "LLM_MAX_CONCURRENCY": {"old": "8", "new": "4"},
        "LLM_RATE_PER_MINUTE": {"old": "600", "new": "300"},
    }
    timeout = llm_api.plan(diagnose(evidence({"timeout": 0.3})), dict(SETTINGS, approve=True))
    assert timeout[0]["change"]["settings"] == {"LLM_READ_TIMEOUT": {"old": "30", "new": "60"}}
    assert timeout[0]["status"] == "planned"
    fallback = llm_api.plan(diagnose(evidence({"503": 0.4}, primary=503)), SETTINGS)
    assert fallback[0]["change"]["settings"] == {"LLM_FALLBACK_ENABLED": {"old": "false", "new": "true"}}


def test_rate_limit_fix_goes_under_the_providers_advertised_limit() -> None:
    ev = evidence({"429": 0.3}, logs={"llm_api_429": 6})
    ev["containers"]["logs"]["orchestrator"]["lines"].append(
        "2026-11-28T19:00:05.000Z INFO orchestrator rate limit remaining=0 reset=41s limit=20 provider=primary"
    )
    diagnosis = diagnose(ev)
    found = {f["check"]: f for f in diagnosis["findings"]}
    assert found["llm.rate_limit"]["evidence"]["headers"] == {
        "remaining": "0",
        "limit": "20",
        "reset": "41s",
        "provider": "primary",
    }
    plan = llm_api.plan(diagnosis, SETTINGS)
    assert plan[0]["change"]["settings"] == {
        "LLM_MAX_CONCURRENCY": {"old": "8", "new": "4"},
        "LLM_RATE_PER_MINUTE": {"old": "600", "new": "10"},
    }


def test_a_client_younger_than_the_window_is_judged_on_its_log() -> None:
    ev = evidence({"429": 0.3})
    ev["prometheus"]["queries"]["llm_api_client_age_s"] = {"value": 12.0}
    result = diagnose(ev)
    statuses = {f["check"]: f["status"] for f in result["findings"]}
    assert holding(result) == set()  # the 429s in the window were its predecessor's
    assert statuses["llm.rate_limit"] == "warning" and statuses["llm.error_rate"] == "warning"
    ev["containers"]["logs"]["orchestrator"]["pattern_counts"] = {"llm_api_429": 4}
    assert holding(diagnose(ev)) == {"A"}  # its own log still shows them
    ev["prometheus"]["queries"]["llm_api_client_age_s"] = {"value": 600.0}
    ev["containers"]["logs"]["orchestrator"]["pattern_counts"] = {}
    assert holding(diagnose(ev)) == {"A"}  # an old client: the window is its own


def test_auth_needs_a_key_source_and_leaves_the_revocation_to_a_human() -> None:
    diagnosis = diagnose(evidence({"401": 0.5}, key_status="401"))
    assert [(a["id"], a["status"]) for a in llm_api.plan(diagnosis, SETTINGS)] == [
        ("llm_api.D.report_need_key", "report")
    ]
    plan = llm_api.plan(diagnosis, dict(SETTINGS, new_key_source="file /tmp/k", approve=True))
    assert [(a["id"], a["status"]) for a in plan] == [
        ("llm_api.D.rotate_key", "planned"),
        ("llm_api.D.revoke_old_key", "report"),
    ]
    assert plan[0]["change"]["file"] == "/state/secrets.env" and "not shown" in plan[0]["change"]["new"]


def test_verification_after_a_fix_is_recovering_not_a_problem() -> None:
    before = diagnose(evidence({"timeout": 0.3}, logs={"llm_api_timeout": 4}))
    after = diagnose(evidence({"timeout": 0.3}), previous=before["findings"], recovering=("C",))
    statuses = {f["check"]: f["status"] for f in after["findings"]}
    assert statuses["llm.timeouts"] == "warning" and statuses["llm.error_rate"] == "warning"
    still = diagnose(evidence({"timeout": 0.3}, logs={"llm_api_timeout": 4}), recovering=("C",))
    assert {f["check"]: f["status"] for f in still["findings"]}["llm.timeouts"] == "problem"


def _orchestrator_log(ev: dict[str, Any], *lines: str) -> dict[str, Any]:
    stamp = "2026-11-29T19:00:00.000Z INFO orchestrator "
    ev["containers"]["logs"]["orchestrator"]["lines"] = [stamp + line for line in lines]
    ev["containers"]["logs"]["orchestrator"]["pattern_counts"] = {
        "llm_api_429": sum("llm error status=429" in line for line in lines)
    }
    return ev


REFUSED = ("rate limit remaining=0 reset=3s limit=20 provider=primary", "llm error status=429 provider=primary")
ACCEPTED = "rate limit remaining=1 reset=3s limit=20 provider=primary"


def test_after_the_rate_fix_refusals_before_the_first_accepted_answer_are_the_old_clients() -> None:
    # CI, stop 11: the recreated client's first call and its two retries met the provider's window still full of
    # the old client's requests; then the provider accepted every call
    before = diagnose(evidence({"429": 1.0}, logs={"llm_api_429": 31}))
    carried = _orchestrator_log(evidence({"429": 1.5}), *REFUSED * 3, ACCEPTED, ACCEPTED)
    after = diagnose(carried, previous=before["findings"], recovering=("A",))
    found = {f["check"]: f for f in after["findings"]}
    assert found["llm.rate_limit"]["status"] == "warning"
    assert found["llm.rate_limit"]["evidence"]["log_lines_before_first_accepted_answer"] == 3
    assert found["llm.rate_limit"]["evidence"]["log_lines"] == 0
    assert found["llm.error_rate"]["status"] == "warning"
    # refusals that go on after an accepted answer: the rate is still too high
    still = _orchestrator_log(evidence({"429": 1.5}), *REFUSED, ACCEPTED, *REFUSED * 3)
    found = {f["check"]: f for f in diagnose(still, recovering=("A",))["findings"]}
    assert found["llm.rate_limit"]["status"] == "problem" and found["llm.rate_limit"]["evidence"]["log_lines"] == 3
    # never an accepted answer: every refusal counts
    never = _orchestrator_log(evidence({"429": 1.5}), *REFUSED * 3)
    assert {f["check"]: f["status"] for f in diagnose(never, recovering=("A",))["findings"]}["llm.rate_limit"] == (
        "problem"
    )


def test_the_fallback_serving_is_a_warning() -> None:
    ev = evidence({"503": 0.4}, primary=503)
    ev["containers"]["exec_probes"][0]["output"] = ENV.replace(
        "LLM_FALLBACK_ENABLED=false", "LLM_FALLBACK_ENABLED=true"
    )
    found = {f["check"]: f for f in diagnose(ev)["findings"]}
    assert found["llm.provider_available"]["status"] == "warning"


def _with_fallback_calls(ev: dict[str, Any], calls: dict[tuple[str, str], float]) -> dict[str, Any]:
    ev["containers"]["exec_probes"][0]["output"] = ENV.replace(
        "LLM_FALLBACK_ENABLED=false", "LLM_FALLBACK_ENABLED=true"
    )
    ev["prometheus"]["queries"]["llm_api_calls_by_provider_status"] = {
        "series": [{"labels": {"provider": p, "status": st}, "value": v} for (p, st), v in calls.items()]
    }
    return ev


def test_errors_the_fallback_recovered_are_not_served_errors() -> None:
    # the circuit breaker's half-open probes of the dead primary: 17% of all calls fail, callers see none
    ev = _with_fallback_calls(
        evidence({"503": 0.1}, primary=503, calls=0.6), {("primary", "error"): 0.1, ("fallback", "success"): 0.5}
    )
    found = {f["check"]: f for f in diagnose(ev)["findings"]}
    assert found["llm.error_rate"]["status"] == "ok"
    assert found["llm.error_rate"]["observed"] == 0.0
    assert found["llm.error_rate"]["evidence"]["all_calls_error_ratio"] == round(0.1 / 0.6, 4)
    assert found["llm.provider_available"]["status"] == "warning"


def test_a_failing_fallback_leaves_the_error_rate_a_problem() -> None:
    ev = _with_fallback_calls(
        evidence({"503": 0.4}, primary=503, calls=0.6),
        {("primary", "error"): 0.2, ("fallback", "error"): 0.2, ("fallback", "success"): 0.2},
    )
    found = {f["check"]: f for f in diagnose(ev)["findings"]}
    assert found["llm.error_rate"]["status"] == "problem"
    assert found["llm.error_rate"]["scenario"] == "B"


def test_prevention_and_filters() -> None:
    prevention = llm_api.prevention(evidence(), SETTINGS)
    assert {f["check"]: f["status"] for f in prevention["findings"]} == dict.fromkeys(
        [
            "prevent.llm.rate_limits",
            "prevent.llm.fallback",
            "prevent.llm.circuit_breaker",
            "prevent.llm.cost_tracking",
            "prevent.prometheus.llm_error_rule",
        ],
        "ok",
    )
    filters = FilterModule().filters()
    run = {"procedures": ["llm_api"], "context": {"platform": "compose", "phase": "diagnose"},
           "settings": {"llm_api": role_settings("llm_api", FILES)}}
    assert filters["procedure_judgement"](evidence(), run)["llm_api"]["diagnosis"]["scenarios"][0]["id"] == "A"
    noted = filters["procedure_note"]({"x": {"status": "applied", "outcome": "done"},
                                       "y": {"status": "failed", "outcome": "no"}}, ["x", "y"], "recreated")
    assert noted["x"]["outcome"] == "done; recreated" and noted["y"]["outcome"] == "no"


def test_the_429_split_reads_the_roles_log_pattern_through_the_settings() -> None:
    """The role's llm_api_429 log pattern (its defaults) is what the evidence counts and what tells the refusals
    before the new client's first accepted answer from those after (refused_pattern): one pattern, the role's."""
    settings = procedure_settings("llm_api", {**FILES, "log_patterns": {
        "llm_api_429": "provider said no", "llm_api_503": "x", "llm_api_timeout": "y", "llm_api_auth": "z"}})
    assert settings["refused_pattern"] == "provider said no"
    assert SETTINGS["refused_pattern"] == SETTINGS["log_patterns"]["llm_api_429"] == "llm error status=429"
    needs = llm_api.PROCEDURE.needs(settings, Context(platform="compose"))
    assert needs["containers"]["logs"]["patterns"]["llm_api_429"] == "provider said no"
    stamp = "2026-11-29T19:00:00.000Z INFO orchestrator "
    ev = evidence({"429": 1.5})
    ev["containers"]["logs"]["orchestrator"]["lines"] = [stamp + "provider said no"] * 3 + [stamp + ACCEPTED]
    found = {f["check"]: f for f in llm_api.diagnose(ev, settings, recovering=("A",))["findings"]}
    assert found["llm.rate_limit"]["evidence"]["log_lines_before_first_accepted_answer"] == 3
    with pytest.raises(ProcedureError, match="llm_api_429"):
        procedure_settings("llm_api", {"log_patterns": {"llm_api_503": "x"}})


def test_needs_are_built_from_the_settings() -> None:
    settings = procedure_settings("llm_api", {"prometheus_window": "30s", "log_seconds": 30})
    needs = llm_api.PROCEDURE.needs(settings, Context(platform="compose"))
    assert set(needs) == {"prometheus", "http", "containers"}
    assert needs["prometheus"]["queries"]["llm_api_error_ratio"] == (
        'sum(rate(llm_api_calls_total{status="error"}[30s])) / sum(rate(llm_api_calls_total[30s]))')
    assert needs["prometheus"]["queries"]["llm_api_client_age_s"] == (
        'min(time() - process_start_time_seconds{service="orchestrator"})')
    assert [(p["name"], p["service"], p["header_set"]) for p in needs["http"]["probes"]] == [
        ("llm_api_primary_models", "llm-provider", "llm-provider"),
        ("llm_api_fallback_models", "llm-provider-fallback", "llm-provider-fallback")]
    containers = needs["containers"]
    assert containers["services"] == ["orchestrator"] and containers["logs"]["since_seconds"] == 30
    assert containers["logs"]["services"] == ["orchestrator"] and containers["logs"]["tail"] == 2000
    assert [p["name"] for p in containers["exec_probes"]] == ["llm_api_settings", "llm_api_key_check"]
    assert "$OPENAI_API_KEY" in containers["exec_probes"][1]["cmd"]  # expanded in the container, never here
    k8s = procedure_settings("llm_api", platform="kubernetes")
    k8s_needs = llm_api.PROCEDURE.needs(k8s, Context(platform="kubernetes", inventory={"k8s": {"namespace": "x"}}))
    assert set(k8s_needs) == {"prometheus", "http", "kubernetes"}
    pods = k8s_needs["kubernetes"]["objects"]["llm_api_pods"]
    assert pods["label_selector"] == "app=orchestrator" and pods["logs"]["patterns"] == k8s["log_patterns"]
    assert k8s["namespace"] == "octollm"


def test_the_new_key_source_is_named_never_read(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCTOLLM_LLM_NEW_API_KEY", raising=False)
    assert procedure_settings("llm_api")["new_key_source"] is None
    monkeypatch.setenv("OCTOLLM_LLM_NEW_API_KEY", SECRET)
    assert procedure_settings("llm_api")["new_key_source"] == "environment variable OCTOLLM_LLM_NEW_API_KEY"
    key = tmp_path / "new.key"
    key.write_text(SECRET)
    settings = procedure_settings("llm_api", {"new_key_file": str(key)})
    assert settings["new_key_source"] == f"file {key}" and SECRET not in json.dumps(settings)


def test_the_client_is_recreated_once_after_the_applied_actions() -> None:
    """LlmApi.finish: the shared flow recreates the orchestrator (Compose) or rolls out the consumers (Kubernetes)
    once after the applied actions, and notes it on each of them."""
    run = {"procedures": ["llm_api"], "context": {"platform": "compose", "phase": "resolve", "approve": True},
           "settings": {"llm_api": role_settings("llm_api", FILES)}}
    state = flow.judge(evidence({"timeout": 0.3}, logs={"llm_api_timeout": 4}), run)
    action_id = "llm_api.C.raise_read_timeout"
    assert [item["action"]["id"] for item in flow.to_apply(state, run)] == [action_id]
    assert flow.finishers(state, run, {}) == []  # nothing applied yet
    applied = {action_id: {"status": "applied", "outcome": "LLM_READ_TIMEOUT written"}}
    assert flow.finishers(state, run, applied) == [{"procedure": "llm_api", "action": {
        "id": "llm_api.finish.recreate", "title": "recreate orchestrator", "_apply": "recreate",
        "actions": [action_id]}}]
    k8s = dict(run, context=dict(run["context"], platform="kubernetes", inventory={"k8s": {"namespace": "octollm"}}))
    assert flow.finishers(state, k8s, applied)[0]["action"]["_apply"] == "restart"
    failed = flow.note(applied, [action_id], "recreating failed", "failed")
    assert failed[action_id] == {"status": "failed", "outcome": "LLM_READ_TIMEOUT written; recreating failed"}


# --- a deployment laid out differently (docs/deployment.md) --------------------------------------------------------
def described(services: dict[str, Any], platform: str = "compose") -> Context:
    from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import describe

    return Context(platform=platform, inventory=describe({"services": services}, role_settings("_common")))


RENAMED = {
    "orchestrator": {
        "depends_on": ["postgres", "llm-provider"],
        "settings": {"llm_api_key": "ORCH_OPENAI_KEY", "llm_base_url": "ORCH_LLM_URL", "llm_timeout": "ORCH_TIMEOUT",
                     "llm_max_concurrency": "ORCH_CONCURRENCY", "llm_rate_per_minute": None,
                     "llm_fallback_enabled": None},
        "metrics": {"llm_calls": "orch_llm_calls_total", "llm_circuit_state": "orch_circuit"},
    },
    "gateway": {"depends_on": ["llm-provider"], "settings": {"llm_api_key": "GATEWAY_KEY", "llm_base_url": None}},
    "planner-arm": {"depends_on": ["orchestrator"]},
    "llm-provider": {"url": "http://llm.internal:8200"},
}


def test_settings_and_metrics_are_the_deployments_and_the_key_is_checked_where_the_provider_is_used() -> None:
    context = described(RENAMED)
    settings = llm_api.PROCEDURE.settings(role_settings("llm_api", FILES), context)
    needs = llm_api.PROCEDURE.needs(settings, context)
    queries = needs["prometheus"]["queries"]
    assert queries["llm_api_error_ratio"] == (
        'sum(rate(orch_llm_calls_total{status="error"}[1m])) / sum(rate(orch_llm_calls_total[1m]))')
    assert queries["llm_api_circuit_state"] == "max by (provider) (orch_circuit)"
    assert queries["llm_api_tokens_by_provider"] == "sum by (provider) (llm_tokens_total)"  # the seed's
    probes = {p["name"]: p for p in needs["containers"]["exec_probes"]}
    assert list(probes) == ["llm_api_settings", "llm_api_key_check", "llm_api_key_check:gateway"]
    assert "|ORCH_TIMEOUT)=" in probes["llm_api_settings"]["cmd"] and "LLM_READ_TIMEOUT" not in probes[
        "llm_api_settings"]["cmd"]
    assert "OPENAI_API_KEY" not in json.dumps(needs) and "$ORCH_OPENAI_KEY" in probes["llm_api_key_check"]["cmd"]
    assert '"${ORCH_LLM_URL:-http://llm.internal:8200}/v1/models"' in probes["llm_api_key_check"]["cmd"]
    gateway = probes["llm_api_key_check:gateway"]
    assert gateway["service"] == "gateway" and "$GATEWAY_KEY" in gateway["cmd"]
    assert '"http://llm.internal:8200/v1/models"' in gateway["cmd"]  # no base-URL setting: the inventory's URL
    assert "planner-arm" not in {p["service"] for p in probes.values()}  # it has no LLM client
    # the renamed settings are read and changed; one the client does not set is "not set", never a default
    ev = evidence({"timeout": 0.3}, logs={"llm_api_timeout": 4})
    ev["containers"]["exec_probes"] = [
        {"name": "llm_api_settings", "exit_code": 0, "ok": True,
         "output": "ORCH_CONCURRENCY=4\nLLM_READ_TIMEOUT=30\nLLM_FALLBACK_ENABLED=true\n"},
        {"name": "llm_api_key_check", "exit_code": 0, "ok": True, "output": "200"},
        {"name": "llm_api_key_check:gateway", "exit_code": 0, "ok": True, "output": "401"},
    ]
    diagnosis = llm_api.PROCEDURE.diagnose(ev, settings, context)
    found = {f["check"]: f for f in diagnosis["findings"]}
    assert diagnosis["context"]["live"] == {"ORCH_CONCURRENCY": "4"}  # only the deployment's names
    assert found["llm.timeouts"]["evidence"]["read_timeout"] is None
    assert found["llm.api_key"]["status"] == "problem"
    assert found["llm.api_key"]["observed"] == "provider answers 401 to the key of gateway"
    assert found["llm.api_key"]["evidence"]["key_status_by_service"] == {"gateway": "401", "orchestrator": "200"}
    plan = {a["id"]: a for a in llm_api.PROCEDURE.plan(diagnosis, ev, dict(settings, approve=True), context)}
    assert plan["llm_api.C.raise_read_timeout"]["change"]["settings"] == {"ORCH_TIMEOUT": {"old": None, "new": "60"}}
    assert "ORCH_TIMEOUT (not set) -> 60" in plan["llm_api.C.raise_read_timeout"]["outcome"]
    assert plan["llm_api.D.report_need_key"]["resource"] == "secret:ORCH_OPENAI_KEY"
    rotate = llm_api.plan(diagnosis, dict(settings, approve=True, new_key_source="file /k"))[0]
    assert rotate["id"] == "llm_api.D.rotate_key" and rotate["change"]["key"] == "ORCH_OPENAI_KEY"


def test_limits_and_switches_the_client_does_not_have_are_reports() -> None:
    context = described(RENAMED)
    settings = dict(llm_api.PROCEDURE.settings(role_settings("llm_api", FILES), context), approve=True)
    ev = evidence({"429": 0.4, "503": 0.2}, primary=503, logs={"llm_api_429": 5})
    ev["containers"]["exec_probes"][0]["output"] = "LLM_MAX_CONCURRENCY=8\nLLM_FALLBACK_ENABLED=false\n"
    diagnosis = llm_api.PROCEDURE.diagnose(ev, settings, context)
    assert {"A", "B"} <= holding(diagnosis)
    plan = {a["id"]: a for a in llm_api.PROCEDURE.plan(diagnosis, ev, settings, context)}
    # concurrency named but not set, rate not a setting of this client: nothing octoctl can lower
    limits = plan["llm_api.A.report_client_limits"]
    assert limits["status"] == "report" and "ORCH_CONCURRENCY (not set)" in limits["outcome"]
    assert "llm_rate_per_minute (no such setting)" in limits["outcome"]
    # no fallback switch: never "enabled", a report
    assert plan["llm_api.B.report_no_fallback"]["status"] == "report"
    assert "no fallback switch" in plan["llm_api.B.report_no_fallback"]["outcome"]


def test_without_a_client_of_the_provider_the_key_check_is_not_offered() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils import results

    context = described({"orchestrator": {"depends_on": ["postgres"]}, "llm-provider": {}})
    settings = llm_api.PROCEDURE.settings(role_settings("llm_api", FILES), context)
    needs = llm_api.PROCEDURE.needs(settings, context)
    assert [p["name"] for p in needs["containers"]["exec_probes"]] == ["llm_api_settings"]
    ev = evidence()
    ev["containers"]["exec_probes"] = ev["containers"]["exec_probes"][:1]
    diagnosis = llm_api.PROCEDURE.diagnose(ev, settings, context)
    key = {f["check"]: f for f in diagnosis["findings"]}["llm.api_key"]
    assert key["status"] == "unknown" and key["error"]["kind"] == "not_offered"
    assert "depends on llm-provider" in key["error"]["message"]
    assert diagnosis["escalation"]["level"] is None and results.healthy(diagnosis["findings"])


def test_a_key_not_set_under_the_deployments_name_is_unknown_never_a_401() -> None:
    ev = evidence()
    ev["containers"]["exec_probes"][1]["output"] = llm_api.KEY_UNSET
    key = {f["check"]: f for f in diagnose(ev)["findings"]}["llm.api_key"]
    assert key["status"] == "unknown" and key["scenario"] == "D"
    assert "no API key is set in orchestrator under OPENAI_API_KEY" in key["error"]["message"]
    assert holding(diagnose(ev)) == set()
    assert llm_api.key_cmd({"key": "K", "url_setting": None, "url": "https://x/"}).startswith(
        '[ -n "${K:-}" ] || { echo unset; exit 0; }; ')
    with pytest.raises(ProcedureError, match="not a variable name"):
        llm_api.PROCEDURE.settings(role_settings("llm_api", FILES), described(
            {"orchestrator": {"settings": {"llm_api_key": "$(rm -rf /)"}}}))
