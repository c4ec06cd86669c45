"""Fault helper: a steady read load whose queries need idx_tasks_created_at and idx_entities_type.

Runs in its own container (octollm-fault-pg-seqscan-load) as the application user; without the indexes every
query is a sequential scan of tasks (seeded large) or entities. Prints "running" once the first round is done.
"""
import os
import signal
import time

import psycopg2

QUERIES = [
    "SELECT count(*) FROM tasks WHERE created_at > now() - interval '5 minutes'",
    "SELECT task_id, status FROM tasks WHERE created_at > now() - interval '1 minute'"
    " ORDER BY created_at DESC LIMIT 20",
    "SELECT entity_id, name FROM entities WHERE entity_type = 'tool' ORDER BY access_count DESC LIMIT 20",
]
rate = float(os.environ.get("LOAD_QPS", "6"))
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
conn = psycopg2.connect(
    host=os.environ.get("POSTGRES_HOST", "127.0.0.1"), port=int(os.environ.get("POSTGRES_PORT", "5432")),
    dbname=os.environ.get("POSTGRES_DB", "octollm"), user=os.environ.get("POSTGRES_USER", "octollm"),
    password=os.environ["POSTGRES_PASSWORD"], application_name="report-worker", connect_timeout=5,
)
conn.autocommit = True
first = True
while True:
    for query in QUERIES:
        with conn.cursor() as cur:
            cur.execute(query)
            cur.fetchall()
        time.sleep(1.0 / rate)
    if first:
        print("running", flush=True)
        first = False
