"""The stack check every diagnosis and fix makes (plugin_utils/stack.py): is every service up and answering?"""

from __future__ import annotations

from ansible_collections.octollm.remediation.plugins.plugin_utils import flow, stack
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Context

SERVICES = {
    "orchestrator": {"url": "http://127.0.0.1:8000"},
    "planner-arm": {"url": "http://127.0.0.1:8100"},
    "postgres": {"port": 5432},
    "redis": {"port": 6379},
    "qdrant": {"url": "http://127.0.0.1:6333", "health_path": "/healthz"},
    "llm-provider": {"url": "http://127.0.0.1:8200"},
}


def compose(**changes):
    return Context(platform="compose", phase="diagnose", inventory={"services": SERVICES, **changes})


def container(service, running=True, health="healthy", **more):
    return {"service": service, "running": running, "state": "running" if running else "exited", "health": health,
            **more}


def evidence(containers=None, answers=None):
    names = ["orchestrator", "planner-arm", "postgres", "redis", "qdrant", "llm-provider"]
    return {
        "containers": {"ok": True,
                       "containers": containers if containers is not None else [container(n) for n in names]},
        "http": {"ok": True, "probes": answers if answers is not None else {
            "stack_health_orchestrator": {"status": 200}, "stack_health_planner-arm": {"status": 200},
            "stack_health_qdrant": {"status": 200}}},
    }


def by_check(result):
    return {item["check"]: item for item in result["findings"]}


def test_needs_probe_the_seed_health_endpoints_and_list_the_containers() -> None:
    need = stack.needs(compose())
    assert need["containers"] == {}
    assert {(p["service"], p["path"]) for p in need["http"]["probes"]} == {
        ("orchestrator", "/health"), ("planner-arm", "/health"), ("qdrant", "/healthz")}  # no guessed path
    kube = stack.needs(Context(platform="kubernetes", inventory={"services": SERVICES, "k8s": {"namespace": "o"}}))
    assert kube["kubernetes"] == {"objects": {"stack_pods": {"kind": "Pod"}}} and "containers" not in kube


def test_a_healthy_stack_is_ok_everywhere() -> None:
    result = stack.judge(evidence(), compose())
    assert result["down"] == [] and {f["status"] for f in result["findings"]} == {"ok"}
    assert len(result["findings"]) == len(SERVICES)


def test_a_stopped_data_store_is_down_whatever_else_answers() -> None:
    names = ["orchestrator", "planner-arm", "postgres", "qdrant", "llm-provider"]
    stopped = [container(n) for n in names] + [container("redis", running=False, exit_code=0, health=None)]
    result = stack.judge(evidence(stopped), compose())
    assert result["down"] == ["redis"]
    assert by_check(result)["stack.redis"]["status"] == "problem"
    assert by_check(result)["stack.redis"]["observed"].startswith("exited")


def test_a_running_service_that_does_not_answer_is_down() -> None:
    answers = {"stack_health_orchestrator": {"status": 503},
               "stack_health_planner-arm": {"error": {"kind": "unreachable"}},
               "stack_health_qdrant": {"status": 200}}
    result = stack.judge(evidence(answers=answers), compose())
    assert result["down"] == ["orchestrator", "planner-arm"]
    assert "/health answered 503" in by_check(result)["stack.orchestrator"]["observed"]


def test_unhealthy_or_restarting_containers_are_down() -> None:
    names = ["orchestrator", "postgres", "redis", "qdrant", "llm-provider"]
    records = [container(n) for n in names] + [container("planner-arm", health="unhealthy")]
    assert stack.judge(evidence(records), compose())["down"] == ["planner-arm"]
    records[-1] = container("planner-arm", restarting=True, state="restarting")
    assert stack.judge(evidence(records), compose())["down"] == ["planner-arm"]


def test_what_cannot_be_seen_is_unknown_never_ok() -> None:
    runtime_down = {"containers": {"ok": False, "error": {"kind": "unreachable", "message": "docker", "source":
                                                          "containers"}}, "http": evidence()["http"]}
    result = stack.judge(runtime_down, compose())
    assert {f["status"] for f in result["findings"]} == {"unknown"} and result["down"] == []
    assert by_check(result)["stack.redis"]["error"]["source"] == "containers"
    gone = [c for c in evidence()["containers"]["containers"] if c["service"] != "llm-provider"]
    assert by_check(stack.judge(evidence(gone), compose()))["stack.llm-provider"]["status"] == "unknown"


def test_pods_must_be_ready() -> None:
    def pod(app, ready):
        ready_condition = {"type": "Ready", "status": "True" if ready else "False"}
        return {"metadata": {"labels": {"app": app}}, "status": {"phase": "Running", "conditions": [ready_condition]}}

    context = Context(platform="kubernetes", inventory={"services": {"redis": {}, "postgres": {}}, "k8s": {}})
    pods = {"items": [pod("redis", False), pod("postgres", True)]}
    kube = {"kubernetes": {"ok": True, "objects": {"stack_pods": pods}}}
    result = stack.judge(kube, context)
    assert result["down"] == ["redis"] and by_check(result)["stack.postgres"]["status"] == "ok"


def test_the_flow_checks_the_stack_in_diagnoses_and_fixes_only() -> None:
    from ansible_collections.octollm.remediation.plugins.plugin_utils.settings import role_settings

    settings = {"cache_performance": role_settings("cache_performance", {"warm_keys": [], "warm_patterns": {}})}
    for phase, checked in (("diagnose", True), ("resolve", True), ("prevent", False)):
        run = {"procedures": ["cache_performance"], "settings": settings,
               "context": {"platform": "compose", "phase": phase, "inventory": {"services": SERVICES}}}
        assert ("containers" in flow.request(run)) is checked
        state = flow.judge(evidence(), run)
        assert ("stack" in flow.report(evidence(), run, state)) is checked
