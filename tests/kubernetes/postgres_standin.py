"""A throwaway PostgreSQL on 127.0.0.1 (trust auth) standing in for `kubectl port-forward svc/postgres`, for the
Kubernetes tests of the database procedures (database_connections, data_corruption). Skips where the server
binaries are missing. A plain module (not a conftest): pytest puts this folder on sys.path.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PG_BIN = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
               if (p / "initdb").exists()), None) if Path("/usr/lib/postgresql").is_dir() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres(schema: bool = False) -> Iterator[int]:
    """Start a cluster (max_connections 40, 3 reserved), role and database octollm, the lab's schema when asked;
    yields its port."""
    if PG_BIN is None:
        pytest.skip("[needs-install] no PostgreSQL server binaries on this machine")
    base = Path(tempfile.mkdtemp(prefix="octollm-k8s-pg-"))  # not under pytest's 0700 root: the server is postgres
    run_as: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("[needs-install] running as root without runuser")
        shutil.chown(base, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()
    subprocess.run([*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=40 "
                    "-c superuser_reserved_connections=3", "start"], check=True, capture_output=True)
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE ROLE octollm LOGIN")
        cur.execute("CREATE DATABASE octollm OWNER octollm")
    conn.close()
    if schema:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="octollm")
        with conn, conn.cursor() as cur:
            cur.execute((REPO / "lab" / "app" / "octollm_lab" / "schema.sql").read_text())
        conn.close()
    try:
        yield port
    finally:
        subprocess.run([*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def sql(port: int, *statements: str) -> list[tuple]:
    """Run statements as postgres in database octollm (one transaction); the last one's rows."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="octollm")
    rows: list[tuple] = []
    with conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
            rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows
