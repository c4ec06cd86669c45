"""Fault helper: hold every PostgreSQL connection the application role may open, then sleep.

Runs in its own container (octollm-fault-pg-connections); removing the container releases them.
HOLD_MODE=idle leaves the sessions idle; idle-in-transaction opens a transaction in each (a leak).
"""
import os
import signal
import time

import psycopg2

mode = os.environ.get("HOLD_MODE", "idle")
held = []
while True:
    try:
        conn = psycopg2.connect(
            host=os.environ.get("POSTGRES_HOST", "127.0.0.1"), port=int(os.environ.get("POSTGRES_PORT", "5432")),
            dbname=os.environ.get("POSTGRES_DB", "octollm"), user=os.environ.get("POSTGRES_USER", "octollm"),
            password=os.environ["POSTGRES_PASSWORD"], application_name="batch-worker", connect_timeout=5,
        )
    except psycopg2.OperationalError as exc:
        print(f"stopped: {str(exc).strip().splitlines()[0]}", flush=True)
        break
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM tasks")
    if mode == "idle":
        conn.commit()
    held.append(conn)
print(f"holding {len(held)} connections mode={mode}", flush=True)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
while True:
    time.sleep(3600)
