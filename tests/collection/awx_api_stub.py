"""A STUB of the AWX REST API (not AWX): enough of /api/v2/ for awxkit's import code (``awx import``) to run against,
recording every request. No AWX server can run here; the stub keeps objects in memory, answers OPTIONS with the POST
fields AWX documents for each endpoint (an unknown field in an import file is dropped by awxkit, so the test checks
the file's fields against these), creates, lists (filtered by the query's string fields), associates (204) and
takes survey specs and approval templates (JSON blobs).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

S, INT, B, J, ID = "string", "integer", "boolean", "json", "id"  # OPTIONS field types awxkit reads
_UJT = {"name": S, "description": S}
_JOB = {**_UJT, "inventory": ID, "extra_vars": S, "ask_inventory_on_launch": B,
        "ask_limit_on_launch": B, "ask_variables_on_launch": B, "survey_enabled": B, "allow_simultaneous": B}
_SCHEDULE = {**_UJT, "rrule": S, "enabled": B, "extra_data": J, "unified_job_template": ID}
#: collection -> (object type, POST fields, related sub-endpoints: name -> "create:<collection>" | "attach" | "blob")
ENDPOINTS: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "organizations": ("organization", {**_UJT, "max_hosts": INT}, {}),
    "users": ("user", {"username": S}, {}),
    "teams": ("team", {**_UJT, "organization": ID}, {}),
    "applications": ("o_auth2_application", {**_UJT, "organization": ID}, {}),
    "execution_environments": ("execution_environment",
                               {**_UJT, "image": S, "pull": S, "organization": ID, "credential": ID}, {}),
    "credential_types": ("credential_type", {**_UJT, "kind": S, "inputs": J, "injectors": J}, {}),
    "credentials": ("credential", {**_UJT, "organization": ID, "credential_type": ID, "inputs": J}, {}),
    "notification_templates": ("notification_template", {**_UJT, "organization": ID, "notification_type": S,
                                                         "notification_configuration": J, "messages": J}, {}),
    "projects": ("project", {**_UJT, "organization": ID, "scm_type": S, "scm_url": S, "scm_branch": S,
                             "scm_clean": B, "scm_delete_on_update": B, "scm_update_on_launch": B,
                             "scm_update_cache_timeout": INT, "allow_override": B, "default_environment": ID,
                             "credential": ID},
                 {"schedules": "create:schedules", "notification_templates_error": "attach"}),
    "inventories": ("inventory", {**_UJT, "organization": ID, "kind": S, "variables": S},
                    {"hosts": "create:hosts", "groups": "create:groups"}),
    "hosts": ("host", {**_UJT, "inventory": ID, "enabled": B, "variables": S}, {}),
    "groups": ("group", {**_UJT, "inventory": ID, "variables": S}, {"hosts": "attach", "children": "attach"}),
    "inventory_sources": ("inventory_source", {**_UJT, "inventory": ID, "source": S, "source_path": S,
                                               "source_project": ID, "overwrite": B, "overwrite_vars": B,
                                               "update_on_launch": B, "update_cache_timeout": INT,
                                               "execution_environment": ID},
                          {"schedules": "create:schedules", "credentials": "attach"}),
    "job_templates": ("job_template", {**_JOB, "job_type": S, "project": ID, "playbook": S, "verbosity": INT,
                                       "timeout": INT, "execution_environment": ID},
                      {"survey_spec": "blob", "schedules": "create:schedules", "credentials": "attach",
                       "notification_templates_error": "attach", "notification_templates_success": "attach",
                       "notification_templates_started": "attach"}),
    "workflow_job_templates": ("workflow_job_template", {**_JOB, "organization": ID},
                               {"survey_spec": "blob", "schedules": "create:schedules",
                                "workflow_nodes": "create:workflow_job_template_nodes",
                                "notification_templates_error": "attach", "notification_templates_success": "attach",
                                "notification_templates_started": "attach",
                                "notification_templates_approvals": "attach"}),
    "workflow_job_template_nodes": ("workflow_job_template_node",
                                    {"identifier": S, "unified_job_template": ID, "workflow_job_template": ID,
                                     "all_parents_must_converge": B},
                                    {"success_nodes": "attach", "failure_nodes": "attach", "always_nodes": "attach",
                                     "credentials": "attach", "create_approval_template": "blob"}),
    "schedules": ("schedule", _SCHEDULE, {}),
    "workflow_approval_templates": ("workflow_approval_template", {**_UJT, "timeout": INT}, {}),
    "system_job_templates": ("system_job_template", {}, {}),
}
#: the API root's names (awxkit's resources) -> collection
ROOT_NAMES = {name: name for name in ENDPOINTS} | {
    "inventory": "inventories", "unified_job_templates": "unified_job_templates", "labels": "labels", "roles": "roles"}
#: the parent field a sub-collection's POST sets
PARENT_FIELD = {("job_templates", "schedules"): "unified_job_template",
                ("workflow_job_templates", "schedules"): "unified_job_template",
                ("projects", "schedules"): "unified_job_template",
                ("inventory_sources", "schedules"): "unified_job_template",
                ("workflow_job_templates", "workflow_nodes"): "workflow_job_template",
                ("inventories", "hosts"): "inventory", ("inventories", "groups"): "inventory"}
#: foreign keys -> the collection they point into
FK_COLLECTION = {"organization": "organizations", "inventory": "inventories", "project": "projects",
                 "source_project": "projects", "credential_type": "credential_types",
                 "execution_environment": "execution_environments", "default_environment": "execution_environments",
                 "workflow_job_template": "workflow_job_templates", "credential": "credentials"}
UJT_COLLECTIONS = ("job_templates", "workflow_job_templates", "projects", "inventory_sources",
                   "workflow_approval_templates")


class AwxApiStub:
    """The stub's state: objects by collection, relations, blobs and the request log."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in ENDPOINTS}
        self.relations: dict[tuple[str, int, str], list[tuple[str, int]]] = {}
        self.blobs: dict[tuple[str, int, str], Any] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self._next = 1
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AwxApiStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- objects --------------------------------------------------------------------------------------------
    def find(self, collection: str, **fields: Any) -> dict[str, Any]:
        found = [o for o in self.objects[collection].values() if all(o.get(k) == v for k, v in fields.items())]
        assert len(found) == 1, (collection, fields, len(found))
        return found[0]

    def related(self, collection: str, obj: dict[str, Any], name: str) -> list[dict[str, Any]]:
        return [self.objects[c][i] for c, i in self.relations.get((collection, obj["id"], name), [])]

    def _ujt_collection(self, ident: int) -> str:
        return next(c for c in UJT_COLLECTIONS if ident in self.objects[c])

    def _render(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        kind, _, subs = ENDPOINTS[collection]
        url = f"/api/v2/{collection}/{obj['id']}/"
        related = {name: f"{url}{name}/" for name in subs}
        for field, target in FK_COLLECTION.items():
            if obj.get(field) is not None and (field in ENDPOINTS[collection][1] or field == "organization"):
                related[field] = f"/api/v2/{target}/{obj[field]}/"
        if obj.get("unified_job_template") is not None:
            ujt = self._ujt_collection(obj["unified_job_template"])
            related["unified_job_template"] = f"/api/v2/{ujt}/{obj['unified_job_template']}/"
        rendered = {**obj, "type": kind, "url": url, "related": related, "summary_fields": {}}
        if collection == "projects":  # the first project update is over at once (awxkit waits for it)
            rendered.update(status="successful", last_update_failed=False, last_updated="2026-01-01T00:00:00Z",
                            scm_revision="stub")
        return rendered

    def _create(self, collection: str, body: dict[str, Any], parent: tuple[str, int, str] | None) -> dict[str, Any]:
        fields = ENDPOINTS[collection][1]
        unknown = set(body) - set(fields)
        assert not unknown, (collection, unknown)
        with self._lock:
            obj = {"id": self._next, **body}
            self._next += 1
        if parent is not None:
            field = PARENT_FIELD[(parent[0], parent[2])]
            obj[field] = parent[1]
        self.objects[collection][obj["id"]] = obj
        if collection == "workflow_job_template_nodes":
            obj.setdefault("unified_job_template", None)
        if collection == "job_templates":  # AWX derives a job template's organization from its project
            obj["organization"] = self.objects["projects"][obj["project"]]["organization"]
        return obj

    # --- HTTP -------------------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any, str]:
        allow = "GET, POST, HEAD, OPTIONS"
        if path in ("/api/", "/api"):
            return 200, {"available_versions": {"v2": "/api/v2/"}, "current_version": "/api/v2/"}, allow
        if path == "/api/v2/":
            return 200, {name: f"/api/v2/{collection}/" for name, collection in ROOT_NAMES.items()}, allow
        if path == "/api/v2/me/":
            return 200, {"count": 1, "results": [{"id": 1, "type": "user", "username": "stub"}]}, allow
        match = re.fullmatch(r"/api/v2/(\w+)/(?:(\d+)/(?:(\w+)/)?)?", path)
        if not match or match.group(1) not in ENDPOINTS:
            return 404, {"detail": f"stub: no {path}"}, allow
        collection, ident, sub = match.group(1), match.group(2), match.group(3)
        if ident is None:  # the list
            if method == "OPTIONS":
                fields = {name: {"type": kind} for name, kind in ENDPOINTS[collection][1].items()}
                return 200, {"actions": {"POST": fields}, "search_fields": ["name"]}, allow
            if method == "POST":
                return 201, self._render(collection, self._create(collection, body, None)), allow
            items = [o for o in self.objects[collection].values()
                     if all(str(o.get(k)) == v for k, v in query.items() if k in ENDPOINTS[collection][1])]
            return 200, {"count": len(items), "next": None, "previous": None,
                         "results": [self._render(collection, o) for o in items]}, allow
        obj = self.objects[collection].get(int(ident))
        if obj is None:
            return 404, {"detail": "not found"}, allow
        if sub is None:
            if method in ("PUT", "PATCH"):
                obj.update(body)
            return 200, self._render(collection, obj), allow
        kind = ENDPOINTS[collection][2].get(sub)
        if kind is None:
            return 404, {"detail": f"stub: no {sub} on {collection}"}, allow
        key = (collection, obj["id"], sub)
        if kind == "blob":
            if method == "POST":
                self.blobs[key] = body
                if sub == "create_approval_template":
                    template = self._create("workflow_approval_templates", body, None)
                    obj["unified_job_template"] = template["id"]
                    return 201, self._render("workflow_approval_templates", template), allow
            return 200, self.blobs.get(key, {}), allow
        if kind.startswith("create:"):
            target = kind.split(":", 1)[1]
            if method == "OPTIONS":
                fields = {name: {"type": t} for name, t in ENDPOINTS[target][1].items()}
                return 200, {"actions": {"POST": fields}, "search_fields": ["name"]}, allow
            if method == "POST":
                created = self._create(target, body, key)
                self.relations.setdefault(key, []).append((target, created["id"]))
                return 201, self._render(target, created), allow
            items = [self.objects[c][i] for c, i in self.relations.get(key, [])]
            return 200, {"count": len(items), "next": None, "previous": None,
                         "results": [self._render(target, o) for o in items]}, allow
        # attach: POST {id} associates (AWX answers 204), GET lists
        target_collection = {"credentials": "credentials", "hosts": "hosts", "children": "groups"}.get(
            sub, "workflow_job_template_nodes" if sub.endswith("_nodes") else "notification_templates")
        if method == "OPTIONS":
            return 200, {"actions": {"POST": {"id": {"type": "integer"}}}, "search_fields": ["name"]}, allow
        if method == "POST":
            assert int(body["id"]) in self.objects[target_collection], (sub, body)
            self.relations.setdefault(key, []).append((target_collection, int(body["id"])))
            return 204, None, allow
        items = [self.objects[c][i] for c, i in self.relations.get(key, [])]
        return 200, {"count": len(items), "next": None, "previous": None,
                     "results": [self._render(c, self.objects[c][i]) for c, i in self.relations.get(key, [])]
                     if items else []}, allow

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                stub.requests.append((self.command, parts.path, body))
                try:
                    status, payload, allow = stub._route(self.command, parts.path, dict(parse_qsl(parts.query)), body)
                except AssertionError as exc:
                    status, payload, allow = 400, {"detail": f"stub: {exc}"}, ""
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Allow", allow)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_OPTIONS = do_DELETE = _serve

            def log_message(self, *args: object) -> None:
                pass

        return Handler
