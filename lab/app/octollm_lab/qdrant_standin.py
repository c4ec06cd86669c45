"""qdrant: a STAND-IN for Qdrant's REST API over qdrant-client in local mode.

Run: python3 -m octollm_lab.qdrant_standin

| variable | default | meaning |
|---|---|---|
| QDRANT_PORT | 6333 | |
| QDRANT_STORAGE | :memory: | directory for qdrant-client local storage, or :memory: |
| QDRANT_VERSION | 1.9.0 | version reported by GET / |

Endpoints (Qdrant's paths and envelope {"result":..., "status":"ok", "time":...}):
GET /, /healthz, /livez, /readyz, /metrics, GET /collections, GET|PUT|DELETE /collections/{name},
PUT /collections/{name}/points, POST /collections/{name}/points/search.
"""

import json
import threading
import time

from .common import env_int, env_str, service_name
from .web import App, HttpError, Response

TITLE = "qdrant - vector search engine (octollm lab stand-in)"


def to_plain(model):
    """A qdrant-client (pydantic v1 or v2) model as plain JSON data."""
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json")
    return json.loads(model.json())


def envelope(result, started, status=200):
    return Response({"result": result, "status": "ok", "time": round(time.perf_counter() - started, 6)}, status)


def error(message, started, status):
    return Response({"status": {"error": message}, "time": round(time.perf_counter() - started, 6)}, status)


class QdrantStandIn:
    def __init__(self, storage=":memory:"):
        from qdrant_client import QdrantClient, models  # imported here: only this service needs it
        self.models = models
        self.client = QdrantClient(":memory:") if storage == ":memory:" else QdrantClient(path=storage)
        self._lock = threading.Lock()  # local mode is not meant for concurrent use

    def exists(self, name):
        return name in [c.name for c in self.client.get_collections().collections]

    def list(self):
        return {"collections": [{"name": c.name} for c in self.client.get_collections().collections]}

    def info(self, name):
        info = to_plain(self.client.get_collection(name))
        info["points_count"] = self.client.count(name, exact=True).count
        return info

    def create(self, name, body):
        vectors = body.get("vectors") or {}
        if "size" not in vectors:
            raise HttpError(400, "vectors.size is required")
        distance = self.models.Distance(str(vectors.get("distance", "Cosine")).capitalize())
        self.client.create_collection(name, vectors_config=self.models.VectorParams(
            size=int(vectors["size"]), distance=distance))

    def upsert(self, name, body):
        points = [self.models.PointStruct(id=p["id"], vector=p["vector"], payload=p.get("payload") or {})
                  for p in body.get("points") or []]
        self.client.upsert(name, points=points)
        return {"operation_id": 0, "status": "completed"}

    def search(self, name, body):
        limit = int(body.get("limit", 10))
        with_payload = body.get("with_payload", False)
        if hasattr(self.client, "query_points"):
            hits = self.client.query_points(name, query=body["vector"], limit=limit,
                                            with_payload=with_payload).points
        else:
            hits = self.client.search(name, query_vector=body["vector"], limit=limit, with_payload=with_payload)
        return [to_plain(hit) for hit in hits]


def create_app(store, version="1.9.0", log=None):
    app = App(service_name("qdrant"), log)

    def guarded(func, needs_collection=True):
        def handler(request):
            started = time.perf_counter()
            name = request.params.get("name")
            with store._lock:
                if needs_collection and not store.exists(name):
                    return error(f"Not found: Collection `{name}` doesn't exist!", started, 404)
                try:
                    return envelope(func(request, name), started)
                except HttpError as exc:
                    return error(exc.message, started, exc.status)
                except (KeyError, ValueError, TypeError) as exc:
                    return error(f"Wrong input: {exc}", started, 400)
        return handler

    def create(request, name):
        if store.exists(name):
            raise HttpError(409, f"Wrong input: Collection `{name}` already exists!")
        store.create(name, request.json())
        return True

    def delete(request, name):
        return bool(store.client.delete_collection(name))

    app.add("GET", "/", lambda req: {"title": TITLE, "version": version})
    for probe in ("/healthz", "/livez", "/readyz"):
        app.add("GET", probe, lambda req, probe=probe: f"{probe[1:]} check passed")
    app.add("GET", "/collections", guarded(lambda req, name: store.list(), needs_collection=False))
    app.add("GET", "/collections/{name}", guarded(lambda req, name: store.info(name)))
    app.add("PUT", "/collections/{name}", guarded(create, needs_collection=False))
    app.add("DELETE", "/collections/{name}", guarded(delete, needs_collection=False))
    app.add("PUT", "/collections/{name}/points", guarded(lambda req, name: store.upsert(name, req.json())))
    app.add("POST", "/collections/{name}/points/search",
            guarded(lambda req, name: store.search(name, req.json())))
    return app


def main():
    store = QdrantStandIn(env_str("QDRANT_STORAGE", ":memory:"))
    create_app(store, env_str("QDRANT_VERSION", "1.9.0")).serve(env_int("QDRANT_PORT", 6333))


if __name__ == "__main__":
    main()
