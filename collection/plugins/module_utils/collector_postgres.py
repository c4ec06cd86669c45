# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ``postgres`` evidence kind (psycopg2): one SQL round trip per concern, read-only.

The concerns run on ONE connection of the admin user: a superuser still gets in through the
``superuser_reserved_connections`` slots when the application has used up the others, which is exactly when a
Database Connections diagnosis needs to look. The session is read-only from its first statement
(``-c default_transaction_read_only=on`` in the startup packet, no extra round trip) and has a
``statement_timeout`` and ``lock_timeout``; it runs in autocommit, so a concern that fails does not abort the
next one. Each concern is a single ``SELECT`` that builds its answer as JSON on the server. The ``ping`` probe
connects with the application user at the same time, on its own connection, so that an authentication
failure of the application's credentials is told from an unreachable server.

Text that may hold user data (queries of ``pg_stat_activity``, task goals, action details) passes through the
PII redaction of ``module_utils/redact.py`` and is cut short. Passwords never appear in a message.

The deployment's schema (``schema``: ``search_path``, ``tables`` by meaning, ``task_statuses`` by meaning; the seed's
names where it says nothing) names the tables and status values of the ``integrity`` and ``tasks`` concerns; its
search path is set on the session before any concern runs (named queries see it too).

Named queries (``queries``) are a procedure's own reads: each one ``SELECT`` with bound parameters, run in the same
read-only session as a subquery whose rows come back as JSON, at most ``query_rows`` of them, PII redacted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from string import Template

from ansible_collections.octollm.remediation.plugins.module_utils.evidence import (
    Collector,
    CollectorError,
    error_of,
    register,
    remaining,
)
from ansible_collections.octollm.remediation.plugins.module_utils.pg_dumpfile import backups_evidence
from ansible_collections.octollm.remediation.plugins.module_utils.redact import DEFAULT_PII, redact_value

APPLICATION_NAME = "octollm-remediation"
# Backups on the host that runs the module (``module_utils/pg_dumpfile.py``): read without the server.
BACKUP_OPTIONS = dict(
    files=dict(type="list", elements="path", default=[]),
    tables=dict(type="list", elements="str", default=[]),
    count_rows=dict(type="bool", default=False),
    directory=dict(type="path"),
    pattern=dict(type="str", default="*.dump"),
    verify_newest=dict(type="bool", default=False),
    compose_service=dict(type="dict", options=dict(file=dict(type="path"), name=dict(type="str"))),
    bin_dir=dict(type="path"),
)
INTEGRITY_TABLES = ("tasks", "entities", "relationships")
# the columns the integrity checks read, by table (the seed's names)
INTEGRITY_COLUMNS = {
    "entities": ("entity_id", "properties"),
    "relationships": ("relationship_id", "from_entity_id", "to_entity_id"),
}
# the tables and task status values a schema names by meaning (the seed's names where it says nothing)
SCHEMA_TABLES = ("tasks", "action_log", "entities", "relationships")
TASK_STATUSES = ("pending", "running")
TEXT_MAX = 300
_NAME_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_PLAIN_PART = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


def sql_name(name):
    """A table name of the schema (``name`` or ``schema.name``) as SQL: plain lower-case parts as they are, others
    double-quoted; CollectorError for anything else (a name is never pasted into SQL unchecked)."""
    parts = str(name or "").split(".")
    if not 1 <= len(parts) <= 2 or not all(_NAME_PART.match(part) for part in parts):
        raise CollectorError("other", "not a table name: %r (octollm_postgres.schema.tables)" % (name,))
    return ".".join(part if _PLAIN_PART.match(part) else '"%s"' % part for part in parts)


SERVER_SQL = """
SELECT json_build_object(
  'version', current_setting('server_version'),
  'version_num', current_setting('server_version_num')::int,
  'in_recovery', pg_is_in_recovery(),
  'started_at', pg_postmaster_start_time(),
  'uptime_s', round(extract(epoch FROM now() - pg_postmaster_start_time())::numeric, 1),
  'database', current_database(),
  'database_size_bytes', pg_database_size(current_database()),
  'user', current_user,
  'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
  'backend_pid', pg_backend_pid(),
  'extensions', (SELECT coalesce(json_object_agg(extname, extversion), '{}') FROM pg_extension)
)
"""

CONNECTIONS_SQL = """
WITH a AS (
  SELECT pid, usename, coalesce(application_name, '') AS app, client_addr::text AS client, state,
         backend_type, wait_event_type, wait_event,
         round(extract(epoch FROM now() - state_change)::numeric, 1) AS state_age_s,
         round(extract(epoch FROM now() - xact_start)::numeric, 1) AS xact_age_s,
         round(extract(epoch FROM now() - query_start)::numeric, 1) AS query_age_s,
         round(extract(epoch FROM now() - backend_start)::numeric, 1) AS backend_age_s,
         left(query, %(text_max)s) AS query
  FROM pg_stat_activity
  WHERE pid <> pg_backend_pid()
), c AS (SELECT * FROM a WHERE backend_type = 'client backend')
SELECT json_build_object(
  'total', (SELECT count(*) FROM c),
  'all_backends', (SELECT count(*) FROM a),
  'max_connections', current_setting('max_connections')::int,
  'superuser_reserved_connections', current_setting('superuser_reserved_connections')::int,
  'reserved_connections', current_setting('reserved_connections', true)::int,
  'superuser_sessions', (SELECT count(*) FROM c JOIN pg_roles r ON r.rolname = c.usename WHERE r.rolsuper),
  'by_state', (SELECT coalesce(json_object_agg(s, n), '{}')
               FROM (SELECT coalesce(state, 'unknown') AS s, count(*) AS n FROM c GROUP BY 1) x),
  'by_user', (SELECT coalesce(json_object_agg(u, n), '{}')
              FROM (SELECT coalesce(usename, '') AS u, count(*) AS n FROM c GROUP BY 1) x),
  'by_application', (SELECT coalesce(json_agg(json_build_object('application_name', app, 'count', n,
                                                                'states', states) ORDER BY n DESC), '[]')
                     FROM (SELECT app, sum(k) AS n,
                                  json_object_agg(coalesce(state, 'unknown'), k) AS states
                           FROM (SELECT app, state, count(*) AS k FROM c GROUP BY 1, 2) y
                           GROUP BY app ORDER BY n DESC LIMIT 20) x),
  'waiting_on_locks', (SELECT count(*) FROM c WHERE wait_event_type = 'Lock'),
  'idle_in_transaction_count', (SELECT count(*) FROM c WHERE state LIKE 'idle in transaction%%'),
  'idle_in_transaction', (SELECT coalesce(json_agg(row_to_json(x)), '[]') FROM (
       SELECT pid, usename, app AS application_name, client, state, state_age_s, xact_age_s, query
       FROM c WHERE state LIKE 'idle in transaction%%' ORDER BY state_age_s DESC NULLS LAST LIMIT %(limit)s) x),
  'oldest_idle', (SELECT coalesce(json_agg(row_to_json(x)), '[]') FROM (
       SELECT pid, usename, app AS application_name, client, state_age_s, backend_age_s
       FROM c WHERE state = 'idle' ORDER BY state_age_s DESC NULLS LAST LIMIT %(limit)s) x),
  'long_running', (SELECT coalesce(json_agg(row_to_json(x)), '[]') FROM (
       SELECT pid, usename, app AS application_name, client, query_age_s, wait_event_type, wait_event, query
       FROM c WHERE state = 'active' ORDER BY query_age_s DESC NULLS LAST LIMIT %(limit)s) x)
)
"""

SETTINGS_SQL = """
SELECT json_build_object(
  'settings', (SELECT coalesce(json_object_agg(name, json_build_object(
       'value', setting, 'unit', unit, 'context', context, 'pending_restart', pending_restart,
       'source', source, 'boot_val', boot_val, 'reset_val', reset_val)), '{}')
     FROM pg_settings WHERE name = ANY(%(names)s))
  {file_settings}
)
"""

FILE_SETTINGS = """,
  'file_settings', (SELECT coalesce(json_object_agg(name, json_build_object(
       'value', setting, 'applied', applied, 'error', error, 'file', sourcefile)), '{}')
     FROM (SELECT DISTINCT ON (name) name, setting, applied, error, sourcefile FROM pg_file_settings
           WHERE name = ANY(%(names)s) ORDER BY name, seqno DESC) f)"""

STATEMENTS_SQL = """
SELECT coalesce(json_agg(row_to_json(x)), '[]') FROM (
  SELECT queryid::text AS queryid, left(query, %(text_max)s) AS query, calls,
         round({mean}::numeric, 3) AS mean_ms, round({total}::numeric, 3) AS total_ms,
         round({max}::numeric, 3) AS max_ms, rows,
         CASE WHEN shared_blks_hit + shared_blks_read > 0
              THEN round(shared_blks_hit::numeric / (shared_blks_hit + shared_blks_read), 4) END AS hit_ratio
  FROM pg_stat_statements
  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    {exclude}
  ORDER BY {mean} DESC
  LIMIT %(limit)s) x
"""

TABLES_SQL = """
SELECT coalesce(json_object_agg(key, info), '{}') FROM (
  SELECT CASE WHEN t.relname = ANY(%(names)s) THEN t.relname ELSE t.schemaname || '.' || t.relname END AS key,
    json_build_object(
      'schema', t.schemaname, 'table', t.relname,
      'seq_scan', t.seq_scan, 'seq_tup_read', t.seq_tup_read, 'idx_scan', t.idx_scan,
      'idx_tup_fetch', t.idx_tup_fetch, 'n_live_tup', t.n_live_tup, 'n_dead_tup', t.n_dead_tup,
      'n_mod_since_analyze', t.n_mod_since_analyze,
      'last_analyze', t.last_analyze, 'last_autoanalyze', t.last_autoanalyze,
      'last_vacuum', t.last_vacuum, 'last_autovacuum', t.last_autovacuum,
      'total_bytes', pg_total_relation_size(t.relid),
      'indexes', (SELECT coalesce(json_agg(json_build_object(
            'name', i.indexrelname, 'definition', pg_get_indexdef(i.indexrelid), 'valid', x.indisvalid,
            'ready', x.indisready, 'unique', x.indisunique, 'primary', x.indisprimary, 'scans', i.idx_scan,
            'bytes', pg_relation_size(i.indexrelid)) ORDER BY i.indexrelname), '[]')
          FROM pg_stat_user_indexes i JOIN pg_index x ON x.indexrelid = i.indexrelid WHERE i.relid = t.relid)
    ) AS info
  FROM pg_stat_user_tables t
  WHERE t.relname = ANY(%(names)s) OR (t.schemaname || '.' || t.relname) = ANY(%(names)s)) s
"""

INTEGRITY_TEMPLATE = """
WITH orphan_from AS MATERIALIZED (
  SELECT r.relationship_id, r.from_entity_id, r.to_entity_id FROM $relationships r
  WHERE NOT EXISTS (SELECT 1 FROM $entities e WHERE e.entity_id = r.from_entity_id)
), orphan_to AS MATERIALIZED (
  SELECT r.relationship_id, r.from_entity_id, r.to_entity_id FROM $relationships r
  WHERE NOT EXISTS (SELECT 1 FROM $entities e WHERE e.entity_id = r.to_entity_id)
), bad_properties AS MATERIALIZED (
  SELECT entity_id, coalesce(jsonb_typeof(properties), 'null') AS t FROM $entities
  WHERE properties IS NULL OR jsonb_typeof(properties) <> 'object'
)
SELECT json_build_object(
  'relationships_total', (SELECT count(*) FROM $relationships),
  'entities_total', (SELECT count(*) FROM $entities),
  'orphans_from', (SELECT count(*) FROM orphan_from),
  'orphans_to', (SELECT count(*) FROM orphan_to),
  'orphans_total', (SELECT count(*) FROM (SELECT relationship_id FROM orphan_from
                                          UNION SELECT relationship_id FROM orphan_to) u),
  'orphan_sample', (SELECT coalesce(json_agg(row_to_json(x) ORDER BY x.relationship_id), '[]') FROM (
       SELECT relationship_id, min(from_entity_id) AS from_entity_id, min(to_entity_id) AS to_entity_id,
              json_agg(missing ORDER BY missing) AS missing
       FROM (SELECT *, 'from' AS missing FROM orphan_from UNION ALL SELECT *, 'to' AS missing FROM orphan_to) u
       GROUP BY relationship_id ORDER BY relationship_id LIMIT %(limit)s) x),
  'invalid_properties', (SELECT count(*) FROM bad_properties),
  'invalid_properties_by_type', (SELECT coalesce(json_object_agg(t, n), '{}') FROM (
       SELECT t, count(*) AS n FROM bad_properties GROUP BY 1) x),
  'invalid_properties_sample', (SELECT coalesce(json_agg(entity_id ORDER BY entity_id), '[]') FROM (
       SELECT entity_id FROM bad_properties ORDER BY entity_id LIMIT %(limit)s) x),
  'constraints', (SELECT coalesce(json_object_agg(tbl, cons), '{}') FROM (
       SELECT CASE c.conrelid WHEN to_regclass('$t_tasks') THEN '$n_tasks'
                WHEN to_regclass('$t_entities') THEN '$n_entities'
                ELSE '$n_relationships' END AS tbl,
              json_agg(json_build_object('name', c.conname, 'type', c.contype,
                                         'definition', pg_get_constraintdef(c.oid), 'validated', c.convalidated)
                       ORDER BY c.conname) AS cons
       FROM pg_constraint c
       WHERE c.conrelid IN (to_regclass('$t_tasks'), to_regclass('$t_entities'), to_regclass('$t_relationships'))
       GROUP BY 1) x),
  'btree_indexes', (SELECT coalesce(json_agg(c.relname ORDER BY c.relname), '[]')
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
       WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready
         AND i.indrelid IN (to_regclass('$t_tasks'), to_regclass('$t_entities'), to_regclass('$t_relationships')))
)
"""

AMCHECK_ALL_TEMPLATE = """
SELECT c.relname, bt_index_check(c.oid)::text
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready
  AND i.indrelid IN (to_regclass('$t_tasks'), to_regclass('$t_entities'), to_regclass('$t_relationships'))
"""

AMCHECK_ONE_SQL = "SELECT bt_index_check(%(name)s::regclass)::text"

TASKS_TEMPLATE = """
WITH stuck AS (
  SELECT task_id, goal, constraints, status, assigned_arm, priority, created_at, updated_at,
         round(extract(epoch FROM now() - created_at)::numeric, 1) AS age_s
  FROM $tasks WHERE status = %(pending)s AND created_at < now() - make_interval(secs => %(after)s)
),
-- running tasks without progress (tasks.updated_at or a newer action_log entry) for running_after seconds;
-- dispatched_at: their last routed/retried/dispatched entry, else updated_at
running AS (
  SELECT t.task_id, t.goal, t.constraints, t.status, t.assigned_arm, t.priority, t.created_at, t.updated_at,
         coalesce(p.dispatched_at, t.updated_at) AS dispatched_at,
         greatest(t.updated_at, p.last_action_at) AS progress_at,
         round(extract(epoch FROM now() - greatest(t.updated_at, p.last_action_at))::numeric, 1) AS idle_s,
         round(extract(epoch FROM now() - coalesce(p.dispatched_at, t.updated_at))::numeric, 1) AS running_s
  FROM $tasks t
  LEFT JOIN LATERAL (SELECT max(l.timestamp) FILTER (WHERE l.action IN ('routed', 'retried', 'dispatched'))
                              AS dispatched_at,
                            max(l.timestamp) AS last_action_at
                     FROM $action_log l WHERE l.task_id = t.task_id) p ON true
  WHERE t.status = %(running)s
    AND greatest(t.updated_at, p.last_action_at) < now() - make_interval(secs => %(running_after)s)
)
SELECT json_build_object(
  'by_status', (SELECT coalesce(json_object_agg(status, n), '{}')
                FROM (SELECT status, count(*) AS n FROM $tasks GROUP BY 1) x),
  'recent_by_status', (SELECT coalesce(json_object_agg(status, n), '{}')
                FROM (SELECT status, count(*) AS n FROM $tasks
                      WHERE created_at > now() - make_interval(secs => %(window)s) GROUP BY 1) x),
  'stuck_after_seconds', %(after)s,
  'stuck_count', (SELECT count(*) FROM stuck),
  'stuck_oldest_age_s', (SELECT max(age_s) FROM stuck),
  'running_too_long', (SELECT count(*) FROM $tasks
                       WHERE status = %(running)s AND updated_at < now() - make_interval(secs => %(after)s)),
  'stuck_sample', (SELECT coalesce(json_agg(json_build_object(
         'task_id', s.task_id, 'status', s.status, 'assigned_arm', s.assigned_arm, 'priority', s.priority,
         'age_s', s.age_s, 'created_at', s.created_at, 'updated_at', s.updated_at,
         'goal', left(s.goal, 120), 'constraints', s.constraints,
         'actions', (SELECT coalesce(json_agg(json_build_object('action', a.action, 'arm', a.arm,
                                                                'details', left(a.details::text, %(text_max)s),
                                                                'timestamp', a.timestamp)
                                              ORDER BY a.timestamp DESC), '[]')
                     FROM (SELECT * FROM $action_log l WHERE l.task_id = s.task_id
                           ORDER BY l.timestamp DESC LIMIT 10) a)) ORDER BY s.created_at), '[]')
     FROM (SELECT * FROM stuck ORDER BY created_at LIMIT %(limit)s) s),
  'running_after_seconds', %(running_after)s,
  'running_count', (SELECT count(*) FROM running),
  'running_oldest_idle_s', (SELECT max(idle_s) FROM running),
  'running_sample', (SELECT coalesce(json_agg(json_build_object(
         'task_id', r.task_id, 'status', r.status, 'assigned_arm', r.assigned_arm, 'priority', r.priority,
         'created_at', r.created_at, 'updated_at', r.updated_at, 'dispatched_at', r.dispatched_at,
         'progress_at', r.progress_at, 'idle_s', r.idle_s, 'running_s', r.running_s,
         'goal', left(r.goal, 120), 'constraints', r.constraints,
         'actions', (SELECT coalesce(json_agg(json_build_object('action', a.action, 'arm', a.arm,
                                                                'details', left(a.details::text, %(text_max)s),
                                                                'timestamp', a.timestamp)
                                              ORDER BY a.timestamp DESC), '[]')
                     FROM (SELECT * FROM $action_log l WHERE l.task_id = r.task_id
                           ORDER BY l.timestamp DESC LIMIT 10) a)) ORDER BY r.progress_at), '[]')
     FROM (SELECT * FROM running ORDER BY progress_at LIMIT %(limit)s) r),
  'recent_failures', (SELECT coalesce(json_agg(row_to_json(x)), '[]') FROM (
       SELECT task_id, arm, left(details::text, %(text_max)s) AS details, timestamp FROM $action_log
       WHERE action = 'failed' AND timestamp > now() - make_interval(secs => %(window)s)
       ORDER BY timestamp DESC LIMIT %(limit)s) x)
)
"""


def schema_sql(template, tables=None):
    """A concern's SQL on the schema's tables (``{meaning: name}``, the seed's names where it names none):
    ``$<meaning>`` is the table in SQL, ``$t_<meaning>`` the same inside a to_regclass literal, ``$n_<meaning>`` the
    name as given. Every name is checked (``sql_name``): none holds a quote."""
    values = {}
    for meaning in SCHEMA_TABLES:
        name = str((tables or {}).get(meaning) or meaning)
        values[meaning] = values["t_" + meaning] = sql_name(name)
        values["n_" + meaning] = name
    return Template(template).substitute(values)


# The concerns' SQL on the seed's tables (the collector renders them on the schema's: ``schema_sql``).
INTEGRITY_SQL = schema_sql(INTEGRITY_TEMPLATE)
AMCHECK_ALL_SQL = schema_sql(AMCHECK_ALL_TEMPLATE)
TASKS_SQL = schema_sql(TASKS_TEMPLATE)

# A named query (one SELECT) as a subquery: its rows as JSON built on the server, bounded.
QUERY_SQL = "SELECT coalesce(json_agg(row_to_json(q)), '[]') FROM (SELECT * FROM (%s) s LIMIT %d) q"


def _pg_error(exc, who="PostgreSQL"):
    """A CollectorError of the right kind for a psycopg2 (or socket) failure; the message has no secret."""
    if isinstance(exc, CollectorError):
        return exc
    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    names = {klass.__name__ for klass in type(exc).__mro__}
    if any(
        marker in lowered
        for marker in (
            "password authentication failed",
            "no password supplied",
            "authentication failed",
            "pg_hba.conf",
            "permission denied to",
            "must be superuser",
            "fe_sendauth",
        )
    ) or ("role" in lowered and "does not exist" in lowered):
        kind = "auth"
    elif "QueryCanceled" in names or "timeout expired" in lowered or "statement timeout" in lowered:
        kind = "timeout"
    elif any(
        marker in lowered
        for marker in (
            "connection refused",
            "could not connect",
            "could not translate host name",
            "no route to host",
            "network is unreachable",
            "server closed the connection unexpectedly",
            "is the server running",
            "the database system is starting up",
            "the database system is shutting down",
        )
    ):
        kind = "unreachable"
    else:
        kind = "other"
    return CollectorError(kind, "%s: %s" % (who, text))


def _saturated(exc):
    text = str(exc).lower()
    return "too many clients" in text or "remaining connection slots are reserved" in text


def _number(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


@register
class PostgresCollector(Collector):
    kind = "postgres"
    SECRETS = ("password", "admin_password")
    OPTIONS = dict(
        host=dict(type="str", default="127.0.0.1"),
        port=dict(type="int", default=5432),
        database=dict(type="str", default="octollm"),
        user=dict(type="str", default="octollm"),
        password=dict(type="str", no_log=True),
        admin_user=dict(type="str"),
        admin_password=dict(type="str", no_log=True),
        sslmode=dict(type="str", default="prefer"),
        connect_timeout=dict(type="float", default=3.0),
        statement_timeout_ms=dict(type="int", default=5000),
        backups=dict(type="dict", options=BACKUP_OPTIONS),
        connections=dict(type="bool", default=True),
        sessions_limit=dict(type="int", default=10),
        settings=dict(type="list", elements="str", default=[]),
        statements=dict(type="int", default=0),
        tables=dict(type="list", elements="str", default=[]),
        integrity=dict(type="bool", default=False),
        amcheck=dict(type="bool", default=True),
        tasks=dict(type="bool", default=False),
        stuck_after_seconds=dict(type="int", default=300),
        running_after_seconds=dict(type="int", default=300),
        recent_seconds=dict(type="int", default=3600),
        sample_limit=dict(type="int", default=10),
        queries=dict(type="dict", default={}),
        query_rows=dict(type="int", default=100),
        schema=dict(type="dict", default={}),
        ping=dict(type="bool", default=True),
        redact=dict(type="list", elements="str", default=list(DEFAULT_PII)),
    )

    def _opt(self, name):
        value = self.options.get(name)
        return self.OPTIONS[name].get("default") if value is None else value

    def _driver(self):
        try:
            import psycopg2
            import psycopg2.extras  # noqa: F401 - registers the json typecasters
        except ImportError as exc:
            raise CollectorError(
                "missing_tool",
                "the Python package psycopg2 is not installed on the host that gathers evidence: %s" % exc,
            ) from exc
        return psycopg2

    def _connect(self, psycopg2, user, password, deadline):
        # libpq takes whole seconds and treats 1 as 2; the deadline still bounds it
        seconds = max(2, int(math.ceil(min(float(self._opt("connect_timeout")), remaining(deadline)))))
        statement_ms = max(100, min(int(self._opt("statement_timeout_ms")), int(remaining(deadline) * 1000)))
        started = time.monotonic()
        connection = psycopg2.connect(
            host=self._opt("host"),
            port=int(self._opt("port")),
            dbname=self._opt("database"),
            user=user,
            password=password or None,
            connect_timeout=seconds,
            sslmode=self._opt("sslmode"),
            application_name=APPLICATION_NAME,
            options="-c default_transaction_read_only=on -c statement_timeout=%d -c lock_timeout=%d"
            % (statement_ms, min(statement_ms, 2000)),
        )
        connection.autocommit = True  # each statement its own (read-only) transaction
        return connection, round((time.monotonic() - started) * 1000, 1)

    def _redact(self, value):
        return redact_value(value, self._opt("redact"), self._redactions)

    def _table_names(self):
        """``{meaning: name as configured}`` of the schema's tables (the seed's name where it names none)."""
        tables = (self._opt("schema") or {}).get("tables") or {}
        return {meaning: str(tables.get(meaning) or meaning) for meaning in SCHEMA_TABLES}

    def _sql(self, template):
        """A concern's SQL on the schema's tables (``schema_sql``)."""
        return schema_sql(template, self._table_names())

    def collect(self, deadline):
        psycopg2 = self._driver()
        self._redactions = {}
        admin = self._opt("admin_user") or self._opt("user")
        admin_password = self._opt("admin_password") if self._opt("admin_user") else self._opt("password")
        result = {
            "target": "%s:%s/%s" % (self._opt("host"), self._opt("port"), self._opt("database")),
            "user": admin,
        }
        if self.options.get("backups"):
            # files on this host, judged even when the server does not answer
            result["backups"] = backups_evidence(self.options["backups"], remaining(deadline))
        pool = ThreadPoolExecutor(max_workers=1)
        ping_job = pool.submit(self._ping, psycopg2, deadline) if self._opt("ping") else None
        try:
            try:
                connection, connect_ms = self._connect(psycopg2, admin, admin_password, deadline)
            except Exception as exc:
                error = _pg_error(exc, "PostgreSQL (%s)" % admin)
                if ping_job is not None:
                    result["ping"] = ping_job.result(timeout=remaining(deadline) + 1)
                result.update(
                    ok=False,
                    saturated=_saturated(exc),
                    error=error_of(error, self.secrets()),
                )
                return result
            try:
                self._concerns(connection, result, connect_ms, deadline)
            finally:
                connection.close()
            if ping_job is not None:
                result["ping"] = ping_job.result(timeout=remaining(deadline) + 1)
        finally:
            pool.shutdown(wait=False)
        result["redactions"] = self._redactions
        return result

    # --- concerns ------------------------------------------------------------------------------------------
    def _concerns(self, connection, result, connect_ms, deadline):
        cursor = connection.cursor()
        started = time.monotonic()
        cursor.execute("SELECT 1")
        cursor.fetchone()
        result["rtt_ms"] = round((time.monotonic() - started) * 1000, 2)
        result["connect_ms"] = connect_ms
        errors = {}
        search_path = (self._opt("schema") or {}).get("search_path")
        if search_path:
            # the deployment's schema first (the integrity and tasks concerns and named queries resolve in it)
            cursor.execute("SELECT set_config('search_path', %s, false)", (str(search_path),))
            cursor.fetchone()

        def concern(name, func):
            if remaining(deadline, 0) <= 0.2:
                errors[name] = {"kind": "timeout", "message": "%s skipped: the evidence deadline has passed" % name}
                result[name] = None
                return
            began = time.monotonic()
            try:
                result[name] = func(cursor)
            except Exception as exc:
                result[name] = None
                errors[name] = error_of(_pg_error(exc), self.secrets())
            timings[name] = round((time.monotonic() - began) * 1000, 1)

        timings = {}
        concern("server", self._server)
        server = result.get("server") or {}
        if self._opt("connections"):
            concern("connections", self._connections)
        if self._opt("settings"):
            concern("settings", self._settings)
        if int(self._opt("statements") or 0) > 0:
            concern("statements", lambda cur: self._statements(cur, server))
        if self._opt("tables"):
            concern("tables", self._tables)
        if self._opt("integrity"):
            concern("integrity", lambda cur: self._integrity(cur, server))
        if self._opt("tasks"):
            concern("tasks", self._tasks)
        if self._opt("queries"):
            concern("queries", self._queries)
        result["timings_ms"] = timings
        if errors:
            result["probe_errors"] = errors

    @staticmethod
    def _one(cursor, sql, params=None):
        cursor.execute(sql, params)
        return cursor.fetchone()[0]

    def _server(self, cursor):
        return self._one(cursor, SERVER_SQL)

    def _connections(self, cursor):
        answer = self._one(cursor, CONNECTIONS_SQL, {"limit": int(self._opt("sessions_limit")), "text_max": TEXT_MAX})
        reserved = (answer.get("superuser_reserved_connections") or 0) + (answer.get("reserved_connections") or 0)
        maximum = answer.get("max_connections") or 0
        ordinary = answer["total"] - (answer.get("superuser_sessions") or 0)
        answer["usage_ratio"] = round(answer["total"] / float(maximum), 4) if maximum else None
        answer["available_to_applications"] = maximum - reserved - ordinary
        answer["excludes_own_session"] = True
        for key in ("idle_in_transaction", "long_running"):
            answer[key] = self._redact(answer.get(key) or [])
        return answer

    def _settings(self, cursor):
        names = list(self._opt("settings"))
        try:
            answer = self._one(cursor, SETTINGS_SQL.replace("{file_settings}", FILE_SETTINGS), {"names": names})
        except Exception as exc:
            if "permission denied" not in str(exc).lower():
                raise
            answer = self._one(cursor, SETTINGS_SQL.replace("{file_settings}", ""), {"names": names})
            answer["file_settings"] = None
        answer["missing"] = [name for name in names if name not in answer["settings"]]
        return answer

    def _statements(self, cursor, server):
        extensions = server.get("extensions") or {}
        if "pg_stat_statements" not in extensions:
            return {"available": False, "reason": "extension pg_stat_statements is not installed", "top": []}
        new = (server.get("version_num") or 0) >= 130000
        exclude = ""
        if self._opt("admin_user") and self._opt("admin_user") != self._opt("user"):
            exclude = "AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        sql = STATEMENTS_SQL.format(
            mean="mean_exec_time" if new else "mean_time",
            total="total_exec_time" if new else "total_time",
            max="max_exec_time" if new else "max_time",
            exclude=exclude,
        )
        try:
            top = self._one(cursor, sql, {"limit": int(self._opt("statements")), "text_max": TEXT_MAX})
        except Exception as exc:
            if "shared_preload_libraries" in str(exc):
                reason = "pg_stat_statements is not in shared_preload_libraries"
                return {"available": False, "reason": reason, "top": []}
            raise
        return {"available": True, "reason": None, "top": self._redact(top)}

    def _tables(self, cursor):
        names = list(self._opt("tables"))
        found = self._one(cursor, TABLES_SQL, {"names": names})
        return {"tables": found, "missing": [name for name in names if name not in found]}

    def _integrity(self, cursor, server):
        limit = int(self._opt("sample_limit"))
        names = self._table_names()
        cursor.execute(
            "SELECT " + ", ".join("to_regclass(%s) IS NOT NULL" for _ in INTEGRITY_TABLES),
            [sql_name(names[meaning]) for meaning in INTEGRITY_TABLES],
        )
        present = dict(zip(INTEGRITY_TABLES, cursor.fetchone()))
        missing = [names[meaning] for meaning, there in present.items() if not there]
        if missing:
            return {"tables_missing": missing, "columns_missing": []}
        # the columns the checks read: a table of another shape is a schema that does not match, not corruption
        columns_missing = []
        for meaning, columns in sorted(INTEGRITY_COLUMNS.items()):
            cursor.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (sql_name(names[meaning]),),
            )
            have = {row[0] for row in cursor.fetchall()}
            columns_missing += ["%s.%s" % (names[meaning], column) for column in columns if column not in have]
        if columns_missing:
            return {"tables_missing": [], "columns_missing": columns_missing}
        answer = self._one(cursor, self._sql(INTEGRITY_TEMPLATE), {"limit": limit})
        answer["tables_missing"] = []
        answer["columns_missing"] = []
        constraints = answer.get("constraints") or {}
        answer["foreign_keys"] = {
            names[meaning]: [c["name"] for c in constraints.get(names[meaning], []) if c.get("type") == "f"]
            for meaning in INTEGRITY_TABLES
        }
        answer["amcheck"] = self._amcheck(cursor, server, answer.get("btree_indexes") or [])
        return answer

    def _amcheck(self, cursor, server, indexes):
        if not self._opt("amcheck"):
            return {"available": None, "checked": [], "corrupt": [], "errors": {}}
        if "amcheck" not in (server.get("extensions") or {}):
            return {"available": False, "checked": [], "corrupt": [], "errors": {}}
        try:
            cursor.execute(self._sql(AMCHECK_ALL_TEMPLATE))
            return {"available": True, "checked": [row[0] for row in cursor.fetchall()], "corrupt": [], "errors": {}}
        except Exception:  # one index failed the check (or the call was refused): look at them one by one
            pass
        checked, corrupt, errors = [], [], {}
        for name in indexes:
            try:
                cursor.execute(AMCHECK_ONE_SQL, {"name": name})
                cursor.fetchone()
                checked.append(name)
            except Exception as exc:
                error = error_of(_pg_error(exc), self.secrets())
                if error["kind"] in ("auth", "timeout"):
                    errors[name] = error
                else:
                    checked.append(name)
                    corrupt.append(name)
                    errors[name] = error
        return {"available": True, "checked": checked, "corrupt": corrupt, "errors": errors}

    def _tasks(self, cursor):
        statuses = (self._opt("schema") or {}).get("task_statuses") or {}
        answer = self._one(
            cursor,
            self._sql(TASKS_TEMPLATE),
            {
                "pending": str(statuses.get("pending") or "pending"),
                "running": str(statuses.get("running") or "running"),
                "after": int(self._opt("stuck_after_seconds")),
                "running_after": int(self._opt("running_after_seconds")),
                "window": int(self._opt("recent_seconds")),
                "limit": int(self._opt("sample_limit")),
                "text_max": TEXT_MAX,
            },
        )
        answer["stuck_oldest_age_s"] = _number(answer.get("stuck_oldest_age_s"))
        answer["stuck_sample"] = self._redact(answer.get("stuck_sample") or [])
        answer["running_oldest_idle_s"] = _number(answer.get("running_oldest_idle_s"))
        answer["running_sample"] = self._redact(answer.get("running_sample") or [])
        answer["recent_failures"] = self._redact(answer.get("recent_failures") or [])
        return answer

    def _queries(self, cursor):
        """``{name: {rows, error}}``: each named query on its own (one that fails leaves the others)."""
        answers = {}
        for name, query in sorted((self._opt("queries") or {}).items()):
            query = query if isinstance(query, dict) else {"sql": query}
            sql = str(query.get("sql") or "").strip().rstrip(";").strip()
            if not sql:
                answers[name] = {"rows": None, "error": {"kind": "other", "message": "query %s has no sql" % name}}
                continue
            try:
                rows = self._one(cursor, QUERY_SQL % (sql, int(self._opt("query_rows"))), query.get("params") or {})
                answers[name] = {"rows": self._redact(rows), "error": None}
            except Exception as exc:
                answers[name] = {"rows": None, "error": error_of(_pg_error(exc), self.secrets())}
        return answers

    # --- ping with the application's credentials ---------------------------------------------------------
    def _ping(self, psycopg2, deadline):
        user = self._opt("user")
        answer = {"user": user, "ok": False, "connect_ms": None, "elapsed_ms": None, "saturated": False, "error": None}
        started = time.monotonic()
        try:
            connection, answer["connect_ms"] = self._connect(psycopg2, user, self._opt("password"), deadline)
            try:
                cursor = connection.cursor()
                cursor.execute("SELECT 1")
                cursor.fetchone()
                answer["ok"] = True
            finally:
                connection.close()
        except Exception as exc:
            answer["saturated"] = _saturated(exc)
            answer["error"] = error_of(_pg_error(exc, "PostgreSQL (%s)" % user), self.secrets())
        answer["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
        return answer
