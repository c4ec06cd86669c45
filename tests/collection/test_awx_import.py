"""awx/octollm.yml, the AWX objects as code (issue 18, item 3): awxkit's import code (what `awx import` runs) against
a STUB of the AWX API (tests/collection/awx_api_stub.py; no AWX server runs here) creates the objects and their
relations; every job template's playbook is a file of the project; survey answers and extra vars validate against
the roles' argument specs; every schedule's rrule parses."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from awx_api_stub import ENDPOINTS, ROOT_NAMES, AwxApiStub
from dateutil.rrule import rrulestr

REPO = Path(__file__).resolve().parents[2]
IMPORT_FILE = REPO / "awx" / "octollm.yml"
ROLES = REPO / "collection" / "roles"
PROCEDURES = sorted(r.name for r in ROLES.iterdir() if (r / "meta" / "argument_specs.yml").is_file()
                    and not r.name.startswith("_"))
PLAYBOOKS = sorted(p.name for p in (REPO / "collection" / "playbooks").glob("*.yml"))
DATA: dict[str, Any] = yaml.safe_load(IMPORT_FILE.read_text())


def _spec(role: str, entry: str = "main") -> dict[str, Any]:
    return dict(yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
                ["argument_specs"][entry]["options"])


COMMON = _spec("_common")


@pytest.fixture(scope="module")
def imported() -> Iterator[AwxApiStub]:
    from awxkit import api
    from awxkit.api.client import Connection

    with AwxApiStub() as stub:
        v2 = api.Api(connection=Connection(stub.url)).get().available_versions.v2.get()
        logging.getLogger("awxkit").setLevel(logging.CRITICAL)
        assert v2.import_assets(DATA) is True
        assert not getattr(v2, "_has_error", False)
        yield stub


def _jt(stub: AwxApiStub, name: str) -> dict[str, Any]:
    return stub.find("job_templates", name=name)


def _extra(obj: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(obj.get("extra_vars") or "") or {}


def test_the_objects_and_their_relations(imported: AwxApiStub) -> None:
    stub = imported
    org = stub.find("organizations", name="OctoLLM")
    project = stub.find("projects", name="OctoLLM remediation")
    galaxy = yaml.safe_load((REPO / "collection" / "galaxy.yml").read_text())
    assert project["scm_type"] == "git" and project["scm_url"].removesuffix(".git") == galaxy["repository"]
    assert project["organization"] == org["id"]
    ee = stub.find("execution_environments", name="OctoLLM EE")
    assert project["default_environment"] == ee["id"]
    credential = stub.find("credentials", name="OctoLLM stack secrets")
    ctype = stub.objects["credential_types"][credential["credential_type"]]
    fields = ctype["inputs"]["fields"]
    assert {f["id"] for f in fields} >= {"postgres_password", "redis_password", "llm_api_key", "kubeconfig"}
    assert all(f.get("secret") is True for f in fields), [f["id"] for f in fields if not f.get("secret")]
    injected = ctype["injectors"]["extra_vars"]
    assert all(value.strip("{} ") in {f["id"] for f in fields} for value in injected.values())
    compose = stub.find("inventories", name="OctoLLM Compose stacks")
    variables = yaml.safe_load(compose["variables"])
    for secret in (variables["octollm_postgres"]["password"], variables["octollm_redis"]["password"]):
        assert secret.strip("{} ") in injected, secret  # the inventory reads the credential's secrets
    assert [h["name"] for h in stub.related("groups", stub.find("groups", name="octollm"), "hosts")] == [
        "octollm-prod-1"]
    kubernetes = stub.find("inventories", name="OctoLLM Kubernetes")
    source = stub.find("inventory_sources", inventory=kubernetes["id"])
    assert source["source_project"] == project["id"] and (REPO / source["source_path"]).is_file()
    notifications = {n["name"] for n in stub.objects["notification_templates"].values()}
    job_templates = list(stub.objects["job_templates"].values())
    assert {jt["playbook"].rsplit("/", 1)[1] for jt in job_templates} == set(PLAYBOOKS)  # one per playbook
    for jt in job_templates:
        assert jt["project"] == project["id"] and jt["execution_environment"] == ee["id"], jt["name"]
        assert jt["inventory"] in stub.objects["inventories"], jt["name"]
        assert [c["id"] for c in stub.related("job_templates", jt, "credentials")] == [credential["id"]]
        assert {n["name"] for n in stub.related("job_templates", jt, "notification_templates_error")} == notifications
        if jt["survey_enabled"]:
            assert stub.blobs[("job_templates", jt["id"], "survey_spec")]["spec"], jt["name"]
    diagnose = _jt(stub, "OctoLLM diagnose all")
    assert sorted(_extra(diagnose)["octollm_procedures"]) == PROCEDURES and _extra(diagnose)["octollm_phase"] == (
        "diagnose")
    prevent = _jt(stub, "OctoLLM prevent all")
    assert prevent["playbook"] == "collection/playbooks/prevent_all.yml"
    for procedure in PROCEDURES:
        assert _jt(stub, f"OctoLLM {procedure}")["playbook"] == f"collection/playbooks/{procedure}.yml"
    # the jobs that run alone fail when a human is needed; the fix workflow's dry run must not (it always plans)
    for jt in job_templates:
        expected = jt["name"] not in ("OctoLLM fix plan", "OctoLLM alert")
        assert _extra(jt).get("octollm_fail_when_human_needed", False) is expected, jt["name"]
    # schedules: diagnosis every 15 minutes, prevention daily, on those templates
    schedules = {s["name"]: s for s in stub.objects["schedules"].values()}
    assert schedules["OctoLLM diagnosis every 15 minutes"]["unified_job_template"] == diagnose["id"]
    assert schedules["OctoLLM prevention daily"]["unified_job_template"] == prevent["id"]


def test_the_fix_workflow_is_dry_run_approval_apply(imported: AwxApiStub) -> None:
    stub = imported
    workflow = stub.find("workflow_job_templates", name="OctoLLM fix")
    nodes = {n["identifier"]: n for n in stub.related("workflow_job_templates", workflow, "workflow_nodes")}
    assert sorted(nodes) == ["apply", "approve", "plan"]

    def next_of(identifier: str) -> list[str]:
        return [n["identifier"] for n in stub.related("workflow_job_template_nodes", nodes[identifier],
                                                      "success_nodes")]

    assert next_of("plan") == ["approve"] and next_of("approve") == ["apply"] and next_of("apply") == []
    plan = stub.objects["job_templates"][nodes["plan"]["unified_job_template"]]
    assert _extra(plan)["octollm_dry_run"] is True and _extra(plan)["octollm_phase"] == "resolve"
    assert plan["playbook"] == "collection/playbooks/run.yml"
    approval = stub.objects["workflow_approval_templates"][nodes["approve"]["unified_job_template"]]
    assert approval["timeout"] > 0
    apply = stub.objects["job_templates"][nodes["apply"]["unified_job_template"]]
    assert apply["playbook"] == "collection/playbooks/approve.yml"
    survey = stub.blobs[("workflow_job_templates", workflow["id"], "survey_spec")]["spec"]
    [procedures] = [q for q in survey if q["variable"] == "octollm_procedures"]
    assert procedures["type"] == "multiselect" and sorted(procedures["choices"]) == PROCEDURES
    assert {n["name"] for n in stub.related("workflow_job_templates", workflow,
                                            "notification_templates_approvals")}


def test_the_emergency_restart_is_the_fix_workflow_with_its_request(imported: AwxApiStub) -> None:
    """Plan (dry run) -> approval -> exactly that plan, with service_unavailable_emergency_restart for every node."""
    stub = imported
    workflow = stub.find("workflow_job_templates", name="OctoLLM emergency restart")
    assert _extra(workflow) == {"octollm_phase": "resolve", "octollm_procedures": ["service_unavailable"],
                                "service_unavailable_emergency_restart": True}
    nodes = {n["identifier"]: n for n in stub.related("workflow_job_templates", workflow, "workflow_nodes")}
    assert sorted(nodes) == ["apply", "approve", "plan"]
    jobs = stub.objects["job_templates"]
    assert jobs[nodes["plan"]["unified_job_template"]]["name"] == "OctoLLM fix plan"
    assert jobs[nodes["apply"]["unified_job_template"]]["name"] == "OctoLLM fix apply approved plan"
    assert stub.objects["workflow_approval_templates"][nodes["approve"]["unified_job_template"]]["timeout"] > 0


def _assets(collection: str, assets: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for asset in assets:
        yield collection, asset
        subs = ENDPOINTS[collection][2]
        for name, related in (asset.get("related") or {}).items():
            kind = subs.get(name)
            assert kind is not None, (collection, name)  # a relation the API has
            if kind.startswith("create:"):
                yield from _assets(kind.split(":", 1)[1], related)


def test_every_field_is_one_awx_takes() -> None:
    """awxkit drops a field the endpoint does not list: a misspelt field would vanish without a word."""
    for top, assets in DATA.items():
        for collection, asset in _assets(ROOT_NAMES[top], assets):
            unknown = set(asset) - set(ENDPOINTS[collection][1]) - {"natural_key", "related"}
            assert not unknown, (collection, asset.get("name") or asset.get("identifier"), unknown)


def test_every_playbook_path_is_a_file_of_the_project() -> None:
    """AWX lists a project's playbooks without following symlinks: the path is the real file."""
    for jt in DATA["job_templates"]:
        path = REPO / jt["playbook"]
        assert path.is_file(), jt["playbook"]
        assert not any(p.is_symlink() for p in [path, *path.parents] if p != path.parents[-1]), jt["playbook"]
        assert path.resolve() == path.absolute(), jt["playbook"]


#: run-wide variables the playbooks read (not a role's settings), and what their values may be
_PHASES = COMMON["_common_phase"]["choices"]
_RUN_VARS = {"octollm_phase": lambda v: v in _PHASES, "phase": lambda v: v in _PHASES,
             "octollm_procedures": lambda v: isinstance(v, list) and set(v) <= set(PROCEDURES),
             "octollm_dry_run": lambda v: str(v).lower() in ("true", "false"),
             "octollm_approve": lambda v: str(v).lower() in ("true", "false"),
             "octollm_scenario": lambda v: isinstance(v, str),
             # playbooks/rollback.yml's survey (it builds service_unavailable_rollback from them)
             "rollback_service": lambda v: isinstance(v, str),
             "rollback_to_revision": lambda v: isinstance(v, int) and v >= 0}


def _validate(role_spec: dict[str, Any], name: str, value: Any) -> None:
    result = ArgumentSpecValidator({name: role_spec[name]}).validate({name: value})
    assert not result.error_messages, (name, value, result.error_messages)


def _check_vars(template: str, variables: dict[str, Any], procedures: list[str]) -> None:
    specs = {p: _spec(p) for p in procedures}
    for name, value in variables.items():
        if name in COMMON:
            _validate(COMMON, name, value)
        elif name in _RUN_VARS:
            assert _RUN_VARS[name](value), (template, name, value)
        else:
            owners = [p for p in procedures if name in specs[p]]
            assert owners, (template, name)  # a setting no role of this template has
            _validate(specs[owners[0]], name, value)


@pytest.mark.parametrize("template", [*DATA["job_templates"], *DATA["workflow_job_templates"]],
                         ids=lambda t: t["name"])
def test_survey_and_extra_vars_validate_against_the_argument_specs(template: dict[str, Any]) -> None:
    playbook = str(template.get("playbook", ""))
    own = Path(playbook).stem
    procedures = [own] if own in PROCEDURES else PROCEDURES
    _check_vars(template["name"], _extra(template), procedures)
    survey = (template.get("related") or {}).get("survey_spec") or {}
    assert bool(survey) == template["survey_enabled"], template["name"]
    for question in survey.get("spec", []):
        answers = question.get("choices") or [question["default"]]
        if question["type"] == "multiselect":
            answers = [answers]
        elif question["default"] not in ("", None):
            answers = [*answers, question["default"]]
        if question["default"] in ("", None) and not question["required"]:
            continue
        for answer in answers:
            _check_vars(template["name"], {question["variable"]: answer}, procedures)


def test_every_rrule_parses() -> None:
    schedules = [s for jt in [*DATA["job_templates"], *DATA["workflow_job_templates"]]
                 for s in (jt.get("related") or {}).get("schedules", [])]
    assert len(schedules) >= 2
    every = {}
    for schedule in schedules:
        rule = rrulestr(schedule["rrule"].replace(" RRULE:", "\nRRULE:"))
        first, second = list(rule[:2])
        every[schedule["name"]] = second - first
    assert every["OctoLLM diagnosis every 15 minutes"] == timedelta(minutes=15)
    assert every["OctoLLM prevention daily"] == timedelta(days=1)
