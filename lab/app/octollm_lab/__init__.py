"""The OctoLLM lab's services, one module each: `python3 -m octollm_lab.<module>`.

orchestrator, arm (the six arms; guardian-arm adds guardian.py), llm_provider (mock OpenAI API),
qdrant_standin, docker_exporter, loadgen, seed_data (with schema.sql). Shared: common (settings,
logging), web (HTTP server, router, metrics), debug (fault switches), routing, llm_client, cache,
db, registry.
"""
