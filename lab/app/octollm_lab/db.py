"""PostgreSQL access: a psycopg2 ThreadedConnectionPool (the seed's Database Connection Issues).

| variable | default | meaning |
|---|---|---|
| DATABASE_URL | "" | `postgresql://user:password@host:port/db`: when set, it replaces the POSTGRES_* below |
| POSTGRES_HOST | 127.0.0.1 | |
| POSTGRES_PORT | 5432 | |
| POSTGRES_DB | octollm | |
| POSTGRES_USER | octollm | |
| POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) | "" | |
| DB_POOL_SIZE | 5 | connections kept open (pool minconn) |
| DB_POOL_MAX_OVERFLOW | 5 | extra connections on demand: maxconn = size + overflow |
| DB_POOL_TIMEOUT | 5 | seconds to wait for a free connection before "database pool exhausted" (503) |
| DB_POOL_PRE_PING | true | check a pooled connection with SELECT 1 before use |
| DB_CONNECT_TIMEOUT | 3 | seconds |
| LEAK_DB_CONNECTIONS | false | FAULT: each task keeps one connection idle in transaction, never returned |
| DB_CONNECT_AT_STARTUP | false | connect once at start-up and exit when that fails (as many deployments do) |

Metrics: octollm_db_pool_in_use, octollm_db_pool_size (maxconn), octollm_db_leaked_connections (under
METRICS_PREFIX when set, common.metric_name).
"""

import threading
import time
from contextlib import contextmanager

import psycopg2
from prometheus_client import Gauge
from psycopg2 import pool

from .common import env_bool, env_float, env_int, env_secret, env_str, metric_name

POOL_IN_USE = Gauge(metric_name("octollm_db_pool_in_use"), "Database pool connections checked out")
POOL_SIZE = Gauge(metric_name("octollm_db_pool_size"), "Database pool maximum connections")
LEAKED = Gauge(metric_name("octollm_db_leaked_connections"), "Connections held by the leak fault")


class DatabaseUnavailable(Exception):
    """Answered as 503."""


def dsn_from_env(application_name):
    url = env_secret("DATABASE_URL")
    if url:
        from psycopg2.extensions import parse_dsn

        parts = parse_dsn(url)
        return {"host": parts.get("host", "127.0.0.1"), "port": int(parts.get("port") or 5432),
                "dbname": parts.get("dbname", "octollm"), "user": parts.get("user", "octollm"),
                "password": parts.get("password", ""), "application_name": application_name,
                "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 3)}
    return {"host": env_str("POSTGRES_HOST", "127.0.0.1"), "port": env_int("POSTGRES_PORT", 5432),
            "dbname": env_str("POSTGRES_DB", "octollm"), "user": env_str("POSTGRES_USER", "octollm"),
            "password": env_secret("POSTGRES_PASSWORD"), "application_name": application_name,
            "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 3)}


class Database:
    def __init__(self, dsn, log, pool_size=5, max_overflow=5, pool_timeout=5.0,
                 pre_ping=True, leak_connections=False):
        self.dsn = dsn
        self.log = log
        self.minconn = pool_size
        self.maxconn = pool_size + max_overflow
        self.pool_timeout = pool_timeout
        self.pre_ping = pre_ping
        self.leak_connections = leak_connections
        self.leaked = []  # the fault's connections; kept referenced so they stay open
        self._pool = None
        self._lock = threading.Lock()
        POOL_SIZE.set(self.maxconn)
        POOL_IN_USE.set_function(self.in_use)
        LEAKED.set_function(lambda: len(self.leaked))

    @classmethod
    def from_env(cls, log, application_name="orchestrator"):
        return cls(dsn_from_env(application_name), log,
                   pool_size=env_int("DB_POOL_SIZE", 5), max_overflow=env_int("DB_POOL_MAX_OVERFLOW", 5),
                   pool_timeout=env_float("DB_POOL_TIMEOUT", 5), pre_ping=env_bool("DB_POOL_PRE_PING", True),
                   leak_connections=env_bool("LEAK_DB_CONNECTIONS", False))

    def in_use(self):
        current = self._pool
        return len(current._used) if current is not None else 0

    def _get_pool(self):
        with self._lock:
            if self._pool is None:
                try:
                    self._pool = pool.ThreadedConnectionPool(self.minconn, self.maxconn, **self.dsn)
                except psycopg2.Error as exc:
                    self.log.error("database connection failed", host=self.dsn["host"],
                                   port=self.dsn["port"], error=str(exc).strip())
                    raise DatabaseUnavailable(f"database unavailable: {str(exc).strip()}") from exc
            return self._pool

    def _acquire(self):
        current = self._get_pool()
        deadline = time.monotonic() + self.pool_timeout
        while True:
            try:
                conn = current.getconn()
            except pool.PoolError:
                if time.monotonic() >= deadline:
                    self.log.error("database pool exhausted", in_use=self.in_use(), max=self.maxconn,
                                   leaked=len(self.leaked), waited_s=self.pool_timeout)
                    raise DatabaseUnavailable("database pool exhausted") from None
                time.sleep(0.05)
                continue
            except psycopg2.Error as exc:
                self.log.error("database connection failed", error=str(exc).strip())
                raise DatabaseUnavailable(f"database unavailable: {str(exc).strip()}") from exc
            if not self.pre_ping or self._alive(conn):
                return conn
            current.putconn(conn, close=True)  # stale after a restart: drop it, take another

    @staticmethod
    def _alive(conn):
        if conn.closed:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            conn.rollback()
            return True
        except psycopg2.Error:
            return False

    @contextmanager
    def connection(self, leak=False):
        """A pooled connection, committed and returned on exit (rolled back on error).

        With leak=True and LEAK_DB_CONNECTIONS on, the connection is left idle in
        transaction and never returned, as the seed's `conn = await pool.acquire()` bug.
        """
        conn = self._acquire()
        broken = False
        try:
            yield conn
            conn.commit()
        except psycopg2.Error as exc:
            broken = isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
            safe_rollback(conn)
            if broken:
                self.log.error("database error", error=str(exc).strip())
                self._pool.putconn(conn, close=True)
                raise DatabaseUnavailable(f"database error: {str(exc).strip()}") from exc
            self._pool.putconn(conn)
            raise
        except BaseException:
            safe_rollback(conn)
            self._pool.putconn(conn)
            raise
        if leak and self.leak_connections:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM tasks WHERE status = 'pending'")  # opens a transaction
            self.leaked.append(conn)
            self.log.debug("connection kept", leaked=len(self.leaked))
        else:
            self._pool.putconn(conn)

    def ping(self):
        """A fresh connection outside the pool: is PostgreSQL reachable?"""
        dsn = dict(self.dsn, application_name=self.dsn["application_name"] + "-health")
        conn = psycopg2.connect(**dsn)
        try:
            conn.set_session(autocommit=True)
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            conn.close()

    def close(self):
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


def safe_rollback(conn):
    try:
        if not conn.closed:
            conn.rollback()
    except psycopg2.Error:
        pass  # the connection is broken; the caller closes it
