# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "Database Connection Issues": findings, scenarios, plan and prevention checks.

Input is the evidence of ``stack_evidence`` (kinds ``postgres``, ``http``, ``containers``, ``prometheus``, ``logs``)
and the role's settings (every threshold comes from ``roles/database_connections/defaults/main.yml``). Scenarios:

- A  pool exhausted: the application's pool is full (``/health`` db_pool in_use = max, or "database pool
     exhausted" in its log) without a leak. Fixable: raise DB_POOL_SIZE / DB_POOL_MAX_OVERFLOW in the services'
     env file within what max_connections leaves, and recreate the service (disruptive).
- B  too many connections: sessions near max_connections (or new logins refused), not explained by a leak.
     Fixable: terminate idle sessions older than a threshold (disruptive), or raise max_connections (a restart:
     disruptive) when a target is given.
- C  connection leak: an application holds many sessions idle in transaction. Fixable in part: terminate the
     leaked sessions (disruptive); the code must be fixed by a human (report, L1).
- D  network partition: PostgreSQL answers but the application cannot reach it. Report (host networking in the
     lab has no Compose network to recreate).

Before any scenario, the seed's diagnosis step 1, "Verify database is running" (``pg.running``): a PostgreSQL whose
container is stopped (Compose) or whose StatefulSet is scaled to zero (Kubernetes) is started, then the services that
failed with it are waited for; the scenarios are judged once it answers. Starting a database that is down is not
disruptive (nothing runs to be interrupted; its data is on its volume); restarting one that runs would be.

An outage overrides B's idle-age rule: while the application's logins are refused for want of a slot (its login
fails with "too many clients" / "remaining connection slots are reserved", or the client backends reach
max_connections minus the reserved ones), the idle sessions of the top idle client are terminated whatever their age
(with approval). The sessions of the stack's own applications (the inventory's ``octollm_postgres.applications``) and
of ``protected_applications`` are never terminated for being idle, nor are superusers'.

The deployment's names (docs/deployment.md): the application's settings by meaning (``database_url``, or ``db_host``
and ``db_port``: the address the TCP probe from its container tries; ``db_pool_size`` and ``db_pool_max_overflow``:
what scenario A raises) come from the run's context, never the lab's names; a pool setting the application does not
set is "not set". The pool figures (``checks.db_pool`` of a JSON body: ``in_use``, ``max``, ``leaked``) are an optional
probe (``octollm_services.<app>.probes.db_pool``, the path that answers them): a deployment that does not offer it
gets ``app.pool`` unknown ``not_offered`` (unless its log says the pool is exhausted), and prevention judges the pool
from its settings instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import SEED_HEALTH, not_offered
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import (
    env_values,
    evidence_kind,
    gated,
    rule_loaded,
    scenarios_named,
    selected_scenarios,
    slug,
    to_int,
)
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    percent,
    unknown,
)

PROCEDURE = "database_connections"

# Names of the probes this procedure asks for (``needs`` builds them with the same names).
HEALTH_PROBE = "database_connections_app_health"
# the optional pool figures, when the deployment offers them at another path than the health endpoint
POOL_PROBE = "database_connections_app_pool"
EXEC_PROBE = "database_connections_app_to_postgres"
ENV_SOURCE = "database_connections_env"
POOL_LOG_PATTERN = "database_connections_pool_exhausted"
# The application's settings this procedure reads, by meaning (docs/deployment.md; the names come from the run).
DB_MEANINGS = ("database_url", "db_host", "db_port", "db_pool_size", "db_pool_max_overflow")
POOL_MEANINGS = ("db_pool_size", "db_pool_max_overflow")
NOT_SET = "not set"
# the line of the exec probe that names the address it tries and the setting it came from
TARGET_MARK = "octoctl-db-target"

SCENARIOS = {
    "A": "Connection pool exhausted",
    "B": "Too many open connections",
    "C": "Connection leak",
    "D": "Network partition",
}

# The seed's diagnosis step 1 ("Verify database is running"): no scenario of its own, fixed before any scenario.
START_ACTION = "database_connections.start_postgres"

CHECK_SCENARIO = {
    "app.pool": "A",
    "pg.connections": "B",
    "pg.idle_in_transaction": "C",
    "app.connectivity": "D",
}


def _seconds(value):
    """A PostgreSQL duration setting ("5min", "30s", "0", 60000 in ms) in seconds."""
    if value is None:
        return None
    text = str(value).strip().lower()
    units = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}
    for unit in ("ms", "min", "s", "h", "d"):
        if text.endswith(unit):
            number = text[: -len(unit)].strip()
            try:
                return float(number) * units[unit]
            except ValueError:
                return None
    try:
        return float(text) / 1000.0  # a bare number is milliseconds (the setting's unit)
    except ValueError:
        return None


class Facts:
    """What the checks share, read once from the evidence."""

    def __init__(self, evidence, settings):
        self.s = settings
        self.pg, self.pg_error = evidence_kind(evidence, "postgres")
        pg_raw = (evidence or {}).get("postgres") or {}
        self.ping = pg_raw.get("ping") or {}
        self.saturated = bool(pg_raw.get("saturated") or self.ping.get("saturated"))
        self.http, self.http_error = evidence_kind(evidence, "http")
        self.containers, self.containers_error = evidence_kind(evidence, "containers")
        self.prom, self.prom_error = evidence_kind(evidence, "prometheus")
        self.logs, self.logs_error = evidence_kind(evidence, "logs")
        pg = self.pg or {}
        self.conn = pg.get("connections") or {}
        self.conn_error = (pg.get("probe_errors") or {}).get("connections")
        settings_answer = pg.get("settings") or {}
        self.pg_settings = settings_answer.get("settings") or {}
        self.file_settings = settings_answer.get("file_settings") or {}
        self.health = ((self.http or {}).get("probes") or {}).get(HEALTH_PROBE)
        self.exec_probe = None
        for probe in (self.containers or {}).get("exec_probes") or []:
            if probe.get("name") == EXEC_PROBE:
                self.exec_probe = probe
        self.env = env_values(self.logs, ENV_SOURCE)
        # what the exec probe read in the application's container: its pool settings and the database address
        self.live_env, self.target = probe_output((self.exec_probe or {}).get("output"))
        svc = ((self.containers or {}).get("services") or {}).get(settings["app_service"]) or {}
        self.replicas = svc.get("running") or svc.get("containers") or (1 if self.containers else None)
        log_entry = ((self.containers or {}).get("logs") or {}).get(settings["app_service"]) or {}
        self.pool_log_count = (log_entry.get("pattern_counts") or {}).get(POOL_LOG_PATTERN)
        records = (self.containers or {}).get("containers") or []
        self.db_containers = [r for r in records if r.get("service") == settings["db_service"]]
        self.app_running = any(r.get("running") for r in records if r.get("service") == settings["app_service"])
        # the containers of each service (what a wait for their healthchecks names)
        self.container_names = {}
        for record in records:
            if record.get("running") and record.get("name"):
                self.container_names.setdefault(record.get("service"), []).append(record["name"])
        # the services to wait for once a stopped database is started: those whose containers run but fail their
        # healthcheck, and the application (its healthcheck fails with the database a few probes later)
        self.failing_services = sorted(
            {
                r.get("service")
                for r in records
                if r.get("running")
                and r.get("service") not in (None, settings["db_service"])
                and (r.get("health") in ("unhealthy", "starting") or r.get("service") == settings["app_service"])
            }
        )

    # shorthands
    @property
    def max_connections(self):
        return self.conn.get("max_connections")

    @property
    def reserved(self):
        return (self.conn.get("superuser_reserved_connections") or 0) + (self.conn.get("reserved_connections") or 0)

    def pool_probe(self):
        """The answer of the probe that carries the pool figures (None when the deployment does not offer it)."""
        path = self.s.get("db_pool_path")
        if not path:
            return None
        if path == self.s.get("health_path", SEED_HEALTH):
            return self.health
        return ((self.http or {}).get("probes") or {}).get(POOL_PROBE)

    def db_pool(self):
        body = (self.pool_probe() or {}).get("body")
        if isinstance(body, dict):
            return (body.get("checks") or {}).get("db_pool")
        return None

    def pool_settings(self):
        """``{name: value}`` of the application's pool settings (the env file's value, else the running
        container's; "not set" when neither sets it). A meaning the deployment has no setting for is left out."""
        out = {}
        for meaning in POOL_MEANINGS:
            name = (self.s.get("setting_names") or {}).get(meaning)
            if name:
                value = self.env.get(name, self.live_env.get(name))
                out[name] = NOT_SET if value in (None, "") else value
        return out

    def leaks(self):
        """``{application: [sessions]}`` idle in transaction longer than the threshold."""
        groups = {}
        for session in self.conn.get("idle_in_transaction") or []:
            if (session.get("state_age_s") or 0) < self.s["idle_in_transaction_max_seconds"]:
                continue
            if session.get("application_name") in self.s["protected_applications"]:
                continue
            groups.setdefault(session.get("application_name") or "", []).append(session)
        return groups

    def leaking(self):
        return {app: sessions for app, sessions in self.leaks().items() if len(sessions) >= self.s["leak_min_sessions"]}

    def spared(self):
        """application_name values whose sessions are never terminated for being idle: ``protected_applications``
        and the stack's own applications (the inventory's ``octollm_postgres.applications``)."""
        return list(dict.fromkeys(list(self.s["protected_applications"]) + list(self.s["stack_applications"])))

    def old_idle(self):
        """Idle sessions older than the termination threshold, not superusers, not spared applications."""
        out = []
        spared = self.spared()
        for session in self.conn.get("oldest_idle") or []:
            if (session.get("state_age_s") or 0) < self.s["idle_terminate_after_seconds"]:
                continue
            if session.get("usename") == self.s["admin_user"]:
                continue
            if session.get("application_name") in spared:
                continue
            out.append(session)
        return out

    def logins_refused(self):
        """Why the application's logins are refused for want of a connection slot (a list of reasons; empty when
        they are not): its login fails with "too many clients" / "remaining connection slots are reserved" (our
        ping with its user, or its own /health), or the client backends reach max_connections minus the reserved
        slots."""
        reasons = []
        if self.ping.get("saturated"):
            message = ((self.ping.get("error") or {}).get("message") or "too many clients").split(": ", 1)[-1]
            reasons.append("the application user's login is refused (%s)" % message[:120])
        health = str(self.health_postgres() or "").lower()
        if "too many clients" in health or "remaining connection slots" in health:
            reasons.append("%s's /health: %s" % (self.s["app_service"], str(self.health_postgres())[:120]))
        total = self.conn.get("total")
        if total is not None and self.max_connections:
            limit = self.max_connections - self.reserved
            if total >= limit:
                reasons.append(
                    "%d client backends reach max_connections %d minus %d reserved"
                    % (total, self.max_connections, self.reserved)
                )
        return reasons

    def idle_clients(self):
        """``[(application_name, idle sessions)]`` of the clients whose idle sessions may be terminated, most
        first: every application but the spared ones, without the admin user's sessions (superusers are never
        terminated)."""
        spared = set(self.spared())
        admin = {}
        for session in self.conn.get("oldest_idle") or []:
            if session.get("usename") == self.s["admin_user"]:
                name = session.get("application_name") or ""
                admin[name] = admin.get(name, 0) + 1
        clients = []
        for entry in self.conn.get("by_application") or []:
            name = entry.get("application_name") or ""
            idle = int((entry.get("states") or {}).get("idle") or 0) - admin.get(name, 0)
            if name in spared or idle <= 0:
                continue
            clients.append((name, idle))
        return sorted(clients, key=lambda item: (-item[1], item[0]))

    def health_postgres(self):
        body = (self.health or {}).get("body")
        if isinstance(body, dict):
            return (body.get("checks") or {}).get("postgres")
        return None

    def usage(self):
        total = self.conn.get("total")
        maximum = self.max_connections
        if total is None or not maximum:
            return None
        return round(total / float(maximum), 4)


def probe_output(output):
    """``(settings, target)`` from the exec probe's output: its ``NAME=value`` lines (the pool settings it printed)
    and the address it tried (``{setting, host, port}``, from the mark line), each empty when absent."""
    values, target = {}, {}
    for line in str(output or "").splitlines():
        line = line.strip()
        if line.startswith(TARGET_MARK + " "):
            parts = line.split()
            if len(parts) == 4:
                target = {"setting": parts[1], "host": parts[2], "port": parts[3]}
        elif "=" in line and " " not in line.split("=", 1)[0]:
            key, value = line.split("=", 1)
            values[key] = value
    return values, target


def probe_text(output):
    """The exec probe's output without the lines octoctl printed itself (what the TCP client said)."""
    return " ".join(
        line.strip()
        for line in str(output or "").splitlines()
        if line.strip() and not line.strip().startswith(TARGET_MARK) and "=" not in line.split(" ", 1)[0]
    )


def exec_probe_cmd(s):
    """The shell run in the application's container: print its pool settings (not secrets), find the database
    address its own settings name (the URL's host and port, never its password; else host and port; else the
    role's ``db_host_from_app`` and the inventory's port), print it with the setting it came from, then try a TCP
    connection to it (the probe's exit status is the connection's)."""
    names = s.get("setting_names") or {}
    pool = [names[m] for m in POOL_MEANINGS if names.get(m)]
    parts = []
    if pool:
        parts.append('for k in %s; do v=$(printenv "$k"); [ -n "$v" ] && echo "$k=$v"; done' % " ".join(pool))
    url, host, port = names.get("database_url"), names.get("db_host"), names.get("db_port")
    default = "h=%s; p=%s; src=default" % (s["db_host_from_app"], s["db_port_from_app"])
    branches = []
    if url:
        branches.append(
            'u=$(printenv %s); if [ -n "$u" ]; then '
            "hp=$(printf '%%s' \"$u\" | sed -E 's#^[^:]*://##; s#^.*@##; s#[/?].*$##'); "
            'h=${hp%%:*}; p=${hp##*:}; [ "$p" = "$hp" ] && p=%s; src=%s' % (url, s["db_port_from_app"], url)
        )
    if host:
        branches.append(
            'h=$(printenv %s); if [ -n "$h" ]; then p=%s; src=%s'
            % (host, "$(printenv %s)" % port if port else "", host)
        )
    script = default
    for branch in reversed(branches):
        script = "%s; else %s; fi" % (branch, script)
    parts.append(script)
    parts.append('p=${p:-%s}; echo "%s $src $h $p"; nc -z -w 2 "$h" "$p"' % (s["db_port_from_app"], TARGET_MARK))
    return "; ".join(parts)


# --- checks ------------------------------------------------------------------------------------------
def check_running(f):
    """The seed's diagnosis step 1 on Compose: PostgreSQL's container runs. ``evidence.stopped`` marks one that a
    start brings back (a container that exists and is not running, and is not being restarted by Docker)."""
    s = f.s
    title = "PostgreSQL is running (container %s)" % s["db_service"]
    expected = "running"
    if f.containers is None:
        if f.pg is not None:
            return finding("pg.running", title, "ok", "answers", expected, {"note": "no container evidence"})
        return unknown("pg.running", title, expected, f.containers_error)
    records = f.db_containers
    evidence = {
        "service": s["db_service"],
        "containers": [
            {key: r.get(key) for key in ("name", "state", "health", "exit_code", "oom_killed", "finished_at")}
            for r in records
        ],
    }
    if not records:
        if f.pg is not None:
            # not a container of this project (an external or managed PostgreSQL): it answers, that is enough
            return finding("pg.running", title, "ok", "answers (no container of the project)", expected, evidence)
        return unknown(
            "pg.running",
            title,
            expected,
            {"kind": "other", "message": "no container of service %s in the project" % s["db_service"]},
            evidence=evidence,
        )
    running = [r for r in records if r.get("running") and not r.get("restarting")]
    if running:
        health = running[0].get("health")
        return finding("pg.running", title, "ok", "running" + (" (%s)" % health if health else ""), expected, evidence)
    first = records[0]
    if first.get("restarting") or first.get("state") == "restarting":
        evidence["note"] = "Docker is restarting it (a crash loop: service_unavailable)"
        return finding("pg.running", title, "problem", "restarting", expected, evidence)
    observed = "%s (exit code %s%s)" % (
        first.get("state") or "stopped",
        first.get("exit_code"),
        ", OOM-killed" if first.get("oom_killed") else "",
    )
    evidence["stopped"] = True
    evidence["dependants_failing"] = f.failing_services
    return finding("pg.running", title, "problem", observed, expected, evidence)


def check_up(f):
    title = "PostgreSQL accepts connections (admin, reserved slots)"
    expected = "connects"
    if f.pg is None:
        return unknown("pg.up", title, expected, f.pg_error, evidence={"ping": f.ping, "saturated": f.saturated})
    server = f.pg.get("server") or {}
    evidence = {
        "version": server.get("version"),
        "uptime_s": server.get("uptime_s"),
        "connect_ms": f.pg.get("connect_ms"),
        "rtt_ms": f.pg.get("rtt_ms"),
        "in_recovery": server.get("in_recovery"),
    }
    return finding("pg.up", title, "ok", "up (%s ms)" % f.pg.get("rtt_ms"), expected, evidence)


def check_login(f, saturation="B"):
    title = "The application user can log in"
    expected = "SELECT 1 as %s" % (f.ping.get("user") or "the application user")
    if not f.ping:
        return unknown("pg.app_login", title, expected, f.pg_error or {"kind": "other", "message": "no ping"})
    evidence = {
        "user": f.ping.get("user"),
        "connect_ms": f.ping.get("connect_ms"),
        "saturated": f.ping.get("saturated"),
    }
    if f.ping.get("ok"):
        return finding("pg.app_login", title, "ok", "ok (%s ms)" % f.ping.get("connect_ms"), expected, evidence)
    error = dict(f.ping.get("error") or {"kind": "other", "message": "login failed"})
    # PostgreSQL refused or did not answer the application's login: the component, not octoctl's environment
    error.setdefault("source", "postgres")
    if f.ping.get("saturated"):
        # refused for want of a slot: that is scenario B's symptom, not a failed probe
        return finding("pg.app_login", title, "problem", "refused: too many clients", expected, evidence, saturation)
    return unknown("pg.app_login", title, expected, error, evidence=evidence)


def check_connections(f, leaked_total):
    s = f.s
    title = "Connections in use stay under %s of max_connections" % percent(s["usage_ratio_max"])
    expected = "< %s of max_connections" % percent(s["usage_ratio_max"])
    if f.pg is None or not f.conn:
        return unknown("pg.connections", title, expected, f.conn_error or f.pg_error, "B")
    usage = f.usage()
    evidence = {
        "total": f.conn.get("total"),
        "max_connections": f.max_connections,
        "reserved": f.reserved,
        "available_to_applications": f.conn.get("available_to_applications"),
        "usage_ratio": usage,
        "by_state": f.conn.get("by_state"),
        "by_application": (f.conn.get("by_application") or [])[:10],
        "app_login_refused": bool(f.ping.get("saturated")),
    }
    observed = "%s of %s (%s)" % (f.conn.get("total"), f.max_connections, percent(usage))
    high = (usage is not None and usage >= s["usage_ratio_max"]) or bool(f.ping.get("saturated"))
    if not high:
        return finding("pg.connections", title, "ok", observed, expected, evidence)
    without_leak = (f.conn.get("total") or 0) - leaked_total
    evidence["without_leaked"] = without_leak
    if leaked_total and without_leak / float(f.max_connections) < s["usage_ratio_max"]:
        evidence["note"] = "the leaked sessions (scenario C) explain the usage"
        return finding("pg.connections", title, "problem", observed, expected, evidence, "C")
    return finding("pg.connections", title, "problem", observed, expected, evidence, "B")


def check_active(f):
    s = f.s
    title = "No long-running or lock-waiting sessions"
    expected = "no query over %ss, none waiting on locks" % s["long_query_seconds"]
    if f.pg is None or not f.conn:
        return unknown("pg.active_sessions", title, expected, f.conn_error or f.pg_error)
    long_running = [
        q for q in f.conn.get("long_running") or [] if (q.get("query_age_s") or 0) >= s["long_query_seconds"]
    ]
    waiting = f.conn.get("waiting_on_locks") or 0
    evidence = {
        "non_idle": {k: v for k, v in (f.conn.get("by_state") or {}).items() if k != "idle"},
        "long_running": long_running[:5],
        "waiting_on_locks": waiting,
    }
    observed = "%d long-running, %d waiting on locks" % (len(long_running), waiting)
    status = "warning" if long_running or waiting else "ok"
    return finding("pg.active_sessions", title, status, observed, expected, evidence)


def check_idle_in_transaction(f):
    s = f.s
    title = "No application leaks sessions idle in transaction"
    expected = "< %d sessions of one application idle in transaction over %ss" % (
        s["leak_min_sessions"],
        s["idle_in_transaction_max_seconds"],
    )
    if f.pg is None or not f.conn:
        return unknown("pg.idle_in_transaction", title, expected, f.conn_error or f.pg_error, "C")
    groups = f.leaks()
    by_app = [
        {
            "application_name": app,
            "sessions": len(sessions),
            "oldest_s": max(x.get("state_age_s") or 0 for x in sessions),
            "users": sorted({x.get("usename") for x in sessions if x.get("usename")}),
            "sample_query": (sessions[0].get("query") or "")[:120],
        }
        for app, sessions in sorted(groups.items(), key=lambda item: -len(item[1]))
    ]
    evidence = {
        "idle_in_transaction_total": f.conn.get("idle_in_transaction_count"),
        "by_application": by_app,
        "listed": len(f.conn.get("idle_in_transaction") or []),
    }
    leaking = f.leaking()
    if leaking:
        observed = ", ".join(
            "%s: %d sessions" % (item["application_name"], item["sessions"])
            for item in by_app
            if item["application_name"] in leaking
        )
        return finding("pg.idle_in_transaction", title, "problem", observed, expected, evidence, "C")
    if by_app:
        observed = "%d old sessions idle in transaction" % sum(item["sessions"] for item in by_app)
        return finding("pg.idle_in_transaction", title, "warning", observed, expected, evidence, "C")
    return finding(
        "pg.idle_in_transaction",
        title,
        "ok",
        "%s idle in transaction" % (f.conn.get("idle_in_transaction_count") or 0),
        expected,
        evidence,
    )


def check_pool(f, leaking):
    s = f.s
    title = "The %s's connection pool has free connections" % s["app_service"]
    expected = "in_use < max, no 'database pool exhausted'"
    pool = f.db_pool()
    evidence = {
        "db_pool": pool,
        "pool_exhausted_log_lines": f.pool_log_count,
        "env": f.pool_settings(),
        "replicas": f.replicas,
    }
    if not s.get("db_pool_path"):
        if (f.pool_log_count or 0) > 0:
            observed = "%d 'database pool exhausted' lines (no pool figures)" % f.pool_log_count
            if any(app in s["app_application_names"] for app in leaking):
                evidence["note"] = "the application leaks sessions: a leak (scenario C), not a small pool"
                return finding("app.pool", title, "problem", observed, expected, evidence, "C")
            return finding("app.pool", title, "problem", observed, expected, evidence, "A")
        return not_offered(
            "app.pool", title, expected, "the pool figures (checks.db_pool, probes.db_pool)", evidence, "A"
        )
    if f.pool_probe() is None or (pool is None and f.pool_probe().get("error")):
        error = (f.pool_probe() or {}).get("error") or f.http_error
        return unknown("app.pool", title, expected, error, "A", evidence)
    if pool is None:
        # the deployment says it offers the figures: an answer without them is not a silent ok
        error = {"kind": "other", "message": "%s answered without checks.db_pool" % s["db_pool_path"]}
        return unknown("app.pool", title, expected, error, "A", evidence)
    observed = "%s of %s in use, %s leaked" % (pool.get("in_use"), pool.get("max"), pool.get("leaked", 0))
    full = pool.get("max") and (pool.get("in_use") or 0) >= pool["max"]
    errors = (f.pool_log_count or 0) > 0
    if not (full or errors):
        return finding("app.pool", title, "ok", observed, expected, evidence)
    if errors and not full:
        observed += "; %d 'database pool exhausted' lines" % f.pool_log_count
    if (pool.get("leaked") or 0) > 0 or any(app in s["app_application_names"] for app in leaking):
        evidence["note"] = "the pool holds leaked connections: a leak (scenario C), not a small pool"
        return finding("app.pool", title, "problem", observed, expected, evidence, "C")
    return finding("app.pool", title, "problem", observed, expected, evidence, "A")


def check_connectivity(f, saturation="B"):
    s = f.s
    title = "The %s reaches PostgreSQL (/health and a TCP probe from its container)" % s["app_service"]
    expected = "/health postgres ok; a TCP connection from its container to the address its settings name"
    body = (f.health or {}).get("body") if f.health else None
    app_pg = ((body or {}).get("checks") or {}).get("postgres") if isinstance(body, dict) else None
    probe = f.exec_probe
    evidence = {
        "health_status": (f.health or {}).get("status"),
        "health_postgres": app_pg,
        "exec_probe": {k: (probe or {}).get(k) for k in ("cmd", "exit_code", "output", "ok", "elapsed_ms", "error")}
        if probe
        else None,
    }
    if f.target:
        # the address the application is configured with, and the setting that names it (never a password)
        evidence["database_address"] = dict(f.target)
    if f.health is None and probe is None:
        return unknown("app.connectivity", title, expected, f.http_error or f.containers_error, "D")
    tcp_ok = probe.get("ok") if probe and (probe.get("error") or {}).get("kind") != "unreachable" else None
    health_ok = app_pg == "ok" if app_pg is not None else None
    if health_ok is False or tcp_ok is False:
        text = str(app_pg or "")
        lowered = text.lower()
        if "too many clients" in lowered or "remaining connection slots" in lowered:
            evidence["note"] = "the application is refused for want of connection slots (scenario %s)" % saturation
            return finding("app.connectivity", title, "problem", text[:160], expected, evidence, saturation)
        if f.pg is None:
            # PostgreSQL does not answer us either: not a partition between the two
            evidence["note"] = "PostgreSQL does not answer the diagnosis either (see pg.up)"
            return finding("app.connectivity", title, "problem", text[:160] or "TCP probe failed", expected, evidence)
        if "could not translate host name" in lowered or "name or service not known" in lowered:
            evidence["dns"] = "the application cannot resolve the database host name"
        target = (
            " to %s:%s (%s)" % (f.target.get("host"), f.target.get("port"), f.target.get("setting")) if f.target else ""
        )
        observed = (
            text[:160]
            if health_ok is False
            else "TCP probe%s failed: %s" % (target, probe_text((probe or {}).get("output"))[:120])
        )
        return finding("app.connectivity", title, "problem", observed, expected, evidence, "D")
    if health_ok is None and tcp_ok is None:
        return unknown(
            "app.connectivity",
            title,
            expected,
            (probe or {}).get("error") or (f.health or {}).get("error") or f.http_error,
            "D",
            evidence,
        )
    return finding("app.connectivity", title, "ok", "reachable", expected, evidence)


def diagnose(evidence, settings, previous=None, applied=()):
    """``{findings, scenarios, escalation, context}``; ``context`` feeds the plan and is never reported. A
    verification (``previous``, ``applied``) is judged as a first diagnosis: every check reads the present state."""
    s = settings
    f = Facts(evidence, s)
    leaking = f.leaking()
    leaked_total = sum(len(sessions) for sessions in leaking.values())
    connections = check_connections(f, leaked_total)
    # refused logins are the symptom of what fills the slots: the leak (C) when it explains the usage, else B
    saturation = connections["scenario"] or "B"
    findings = [
        check_running(f),
        check_up(f),
        check_login(f, saturation),
        connections,
        check_active(f),
        check_idle_in_transaction(f),
        check_pool(f, leaking),
        check_connectivity(f, saturation),
    ]
    scenarios = scenarios_named(SCENARIOS, findings, CHECK_SCENARIO)
    pool = f.db_pool() or {}
    running = findings[0]
    refused = f.logins_refused()
    if refused:
        connections["evidence"] = dict(connections["evidence"] or {}, logins_refused=refused)
    context = {
        "db_stopped": bool((running.get("evidence") or {}).get("stopped")),
        "db_state": running.get("observed"),
        "db_containers": [c.get("name") for c in (running.get("evidence") or {}).get("containers") or []],
        "dependants_failing": f.failing_services,
        "app_running": f.app_running,
        "container_names": f.container_names,
        "logins_refused": refused,
        "idle_clients": [{"application_name": name, "idle": count} for name, count in f.idle_clients()[:5]],
        "spared": f.spared(),
        "leaking": {app: [x.get("pid") for x in sessions] for app, sessions in leaking.items()},
        "old_idle": [
            {"pid": x.get("pid"), "application_name": x.get("application_name"), "state_age_s": x.get("state_age_s")}
            for x in f.old_idle()
        ],
        "old_idle_listed_all": len(f.conn.get("oldest_idle") or []) < s["sessions_limit"],
        "max_connections": f.max_connections,
        "reserved": f.reserved,
        "total": f.conn.get("total"),
        "by_application": f.conn.get("by_application") or [],
        "pool_max": pool.get("max"),
        "env": f.pool_settings(),
        "replicas": f.replicas or 1,
        "dns": any((item.get("evidence") or {}).get("dns") for item in findings),
        "health_postgres": ((f.health or {}).get("body") or {}).get("checks", {}).get("postgres")
        if isinstance((f.health or {}).get("body"), dict)
        else None,
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


# --- plan ----------------------------------------------------------------------------------------------
# Idle sessions older than the threshold, or (while the application's logins are refused) of the named clients
# whatever their age; never superusers', never the spared applications'.
TERMINATE_IDLE_SQL = (
    "SELECT a.pid, a.application_name, pg_terminate_backend(a.pid) AS terminated FROM pg_stat_activity a "
    "JOIN pg_roles r ON r.rolname = a.usename WHERE a.backend_type = 'client backend' AND a.state = 'idle' "
    "AND (a.state_change < now() - make_interval(secs => %(older_than_s)s) "
    "OR coalesce(a.application_name, '') = ANY(%(clients)s)) AND NOT r.rolsuper "
    "AND a.pid <> pg_backend_pid() AND NOT (coalesce(a.application_name, '') = ANY(%(protected)s))"
)
TERMINATE_LEAK_SQL = (
    "SELECT a.pid, a.application_name, pg_terminate_backend(a.pid) AS terminated FROM pg_stat_activity a "
    "WHERE a.backend_type = 'client backend' AND a.state LIKE 'idle in transaction%%' "
    "AND coalesce(a.application_name, '') = %(application_name)s "
    "AND a.state_change < now() - make_interval(secs => %(older_than_s)s) AND a.pid <> pg_backend_pid()"
)


def pg_array_args(params):
    """The SQL parameters with every list as a PostgreSQL array literal (``{"a","b"}``, each element quoted and
    escaped). community.postgresql.postgresql_query turns a list into ``{'a'}`` (Python's repr, quotes included), which
    matches no application_name; a string is passed as it is."""
    out = {}
    for key, value in (params or {}).items():
        if isinstance(value, (list, tuple)):
            items = ['"%s"' % str(item).replace("\\", "\\\\").replace('"', '\\"') for item in value]
            value = "{%s}" % ",".join(items)
        out[key] = value
    return out


def _names(ctx, services):
    """The running containers of ``services`` (their healthchecks are waited for)."""
    names = ctx.get("container_names") or {}
    return [name for service in services for name in names.get(service) or []]


def start_action(ctx, s):
    """Start the stopped PostgreSQL (``docker compose up`` of its service, never recreating the container), wait for
    its healthcheck, then for the services that failed with it. Not disruptive: a database that is down has no
    session to lose and keeps its data on its volume (a restart of a running one would be disruptive)."""
    service = s["db_service"]
    dependants = [name for name in ctx.get("dependants_failing") or [] if name != service]
    return action(
        START_ACTION,
        None,
        "start PostgreSQL (%s), then check the services that failed with it" % service,
        "compose:%s" % service,
        {
            "service": service,
            "container": ", ".join(ctx.get("db_containers") or []) or service,
            "op": "up (no recreate)",
            "state": ctx.get("db_state"),
            "then_wait": dependants,
            "then_wait_containers": _names(ctx, dependants),
        },
        "planned",
        "docker compose up -d --no-deps --no-recreate --wait %s (it is %s), then wait until %s healthy again"
        % (service, ctx.get("db_state") or "stopped", ", ".join(dependants) or "the services that need it are"),
        apply="start_database",
    )


def terminate_idle_action(ctx, s):
    """Scenario B's termination of idle sessions, or None when none may be terminated: those idle for longer than
    the threshold, and, while the application's logins are refused, every idle session of the top idle client
    whatever its age (the outage overrides the idle-age rule). Never superusers, never the spared applications."""
    old = ctx.get("old_idle") or []
    refused = ctx.get("logins_refused") or []
    clients = [item["application_name"] for item in (ctx.get("idle_clients") or [])[:1]] if refused else []
    young = (ctx.get("idle_clients") or [{}])[0].get("idle", 0) if clients else 0
    apps = {}
    for item in old:
        name = item.get("application_name") or ""
        if name not in clients:
            apps[name or "-"] = apps.get(name or "-", 0) + 1
    if clients:
        apps[clients[0] or "-"] = young
    if not apps:
        return None
    params = {
        "older_than_s": int(s["idle_terminate_after_seconds"]),
        "clients": clients,
        "protected": list(ctx.get("spared") or s["protected_applications"]),
    }
    rows = sum(apps.values())
    change = {
        "sql": TERMINATE_IDLE_SQL,
        "params": params,
        # rows is an int in the contract; the listing of sessions may be cut at sessions_limit
        "rows": rows,
        "rows_at_least": not ctx.get("old_idle_listed_all", True),
        "by_application": apps,
    }
    if ctx.get("app_running"):
        # the application's healthcheck failed while it was refused: wait until it answers again (Compose)
        change["then_wait"] = [s["app_service"]]
        change["then_wait_containers"] = _names(ctx, [s["app_service"]])
    if clients:
        title = "terminate the idle sessions of %s (logins refused) and idle sessions older than %ss" % (
            clients[0] or "<no application_name>",
            params["older_than_s"],
        )
        why = (
            "the application's logins are refused (%s): the top idle client %s loses its idle sessions "
            "whatever their age"
            % (
                "; ".join(refused),
                clients[0] or "<no application_name>",
            )
        )
    else:
        title = "terminate idle sessions older than %ss" % params["older_than_s"]
        why = "idle for more than %ss" % params["older_than_s"]
    return action(
        "database_connections.B.terminate_idle",
        "B",
        title,
        "postgres:sessions:idle",
        change,
        "planned",
        "pg_terminate_backend on %d idle sessions (%s): %s; superusers and %s are spared%s"
        % (
            rows,
            ", ".join("%s: %d" % kv for kv in sorted(apps.items())),
            why,
            ", ".join(params["protected"]),
            "; then wait until %s is healthy" % s["app_service"] if change.get("then_wait") else "",
        ),
        disruptive=True,
        apply="terminate_sessions",
    )


def pool_names(s):
    """``(size, overflow)``: the names of the application's pool settings (None: the deployment has none)."""
    names = s.get("setting_names") or {}
    return names.get("db_pool_size"), names.get("db_pool_max_overflow")


def pool_target(ctx, s):
    """``(size_old, overflow_old, size_new, overflow_new, budget)``; new values None when there is no room."""
    size_name, overflow_name = pool_names(s)
    size = to_int(ctx.get("env", {}).get(size_name)) if size_name else None
    overflow = to_int(ctx.get("env", {}).get(overflow_name)) if overflow_name else None
    if size is None or overflow is None:
        return size, overflow, None, None, None
    replicas = max(1, int(ctx.get("replicas") or 1))
    maximum = ctx.get("max_connections") or 0
    ours = sum(
        entry.get("count", 0)
        for entry in ctx.get("by_application") or []
        if entry.get("application_name") in s["app_application_names"]
    )
    others = max(0, (ctx.get("total") or 0) - ours)
    # connections the application may open in total, leaving the reserved slots, other clients and a headroom
    budget = maximum - (ctx.get("reserved") or 0) - others - int(s["pool_connections_headroom"])
    per_replica = budget // replicas
    factor = float(s["pool_size_factor"])
    new_size, new_overflow = max(size + 1, int(size * factor)), max(overflow, int(overflow * factor))
    while new_size + new_overflow > per_replica and new_overflow > overflow:
        new_overflow -= 1
    while new_size + new_overflow > per_replica and new_size > size:
        new_size -= 1
    if new_size + new_overflow <= size + overflow:
        return size, overflow, None, None, per_replica
    return size, overflow, new_size, new_overflow, per_replica


def pool_unknown(ctx, s):
    """Why scenario A cannot raise the pool: the deployment names no pool setting, a setting is not set (the
    application's own default applies, which is not known), or there is no env file to write; empty when it can."""
    reasons = []
    values = ctx.get("env") or {}
    for meaning, name in zip(POOL_MEANINGS, pool_names(s)):
        if not name:
            reasons.append("the deployment has no %s setting" % meaning)
        elif to_int(values.get(name)) is None:
            reasons.append("%s is %s" % (name, values.get(name) or NOT_SET))
    if not reasons and not s.get("env_file") and s.get("platform", "compose") == "compose":
        reasons.append("no services' env file to change (octollm_services_env_file)")
    return reasons


def plan(diagnosis, settings):
    """The actions for the scenarios that hold (or the forced ``scenario``), gated by approval."""
    s = settings
    ctx = diagnosis.get("context") or {}
    if ctx.get("db_stopped"):
        # nothing else can be judged while PostgreSQL is down: start it; the scenarios are judged once it answers
        return gated([start_action(ctx, s)], s)
    selected = selected_scenarios(diagnosis, s, ("C", "B", "A", "D"))
    actions = []
    for sid in selected:
        if sid == "C":
            leaking = ctx.get("leaking") or {}
            if not leaking:
                actions.append(
                    action(
                        "database_connections.C.report_leak",
                        "C",
                        "report a connection leak",
                        "app:leak",
                        {},
                        "report",
                        "L1: no application holds old sessions idle in transaction now",
                    )
                )
            for app, pids in sorted(leaking.items()):
                params = {"application_name": app, "older_than_s": int(s["idle_in_transaction_max_seconds"])}
                change = {"sql": TERMINATE_LEAK_SQL, "params": params, "rows": len(pids), "pids": sorted(pids)[:20]}
                if ctx.get("app_running"):
                    # as B's: the application's healthcheck failed while the leak held the slots; the verification
                    # reads it once it answers again (Compose)
                    change["then_wait"] = [s["app_service"]]
                    change["then_wait_containers"] = _names(ctx, [s["app_service"]])
                actions.append(
                    action(
                        "database_connections.C.terminate_leaked_%s" % slug(app),
                        "C",
                        "terminate the sessions %s leaked idle in transaction" % (app or "<no application_name>"),
                        "postgres:sessions:%s" % (app or "-"),
                        change,
                        "planned",
                        "pg_terminate_backend on %d sessions of %s idle in transaction over %ss (their open "
                        "transactions roll back)%s"
                        % (
                            len(pids),
                            app or "<no application_name>",
                            params["older_than_s"],
                            "; then wait until %s is healthy" % s["app_service"] if change.get("then_wait") else "",
                        ),
                        disruptive=True,
                        apply="terminate_sessions",
                    )
                )
                actions.append(
                    action(
                        "database_connections.C.report_leak_%s" % slug(app),
                        "C",
                        "report the leaking application %s" % (app or "<no application_name>"),
                        "app:%s:code" % (app or "-"),
                        {"application_name": app, "sessions": len(pids)},
                        "report",
                        "L1: %s leaves connections idle in transaction (%d sessions): fix its code to release them "
                        "(async with pool.acquire() / a context manager, commit or roll back every transaction); "
                        "terminating them only buys time" % (app or "<no application_name>", len(pids)),
                    )
                )
        elif sid == "B":
            terminate = terminate_idle_action(ctx, s)
            target = to_int(s.get("max_connections_target"), 0) or 0
            if terminate:
                actions.append(terminate)
            elif target and ctx.get("max_connections") and target > ctx["max_connections"]:
                actions.append(
                    action(
                        "database_connections.B.raise_max_connections",
                        "B",
                        "raise max_connections to %d (restart of PostgreSQL)" % target,
                        "postgres:max_connections",
                        {
                            "key": "max_connections",
                            "old": ctx["max_connections"],
                            "new": target,
                            "container": "postgres",
                            "op": "ALTER SYSTEM SET + restart",
                        },
                        "planned",
                        "ALTER SYSTEM SET max_connections = %d (community.postgresql.postgresql_set), then restart "
                        "PostgreSQL: max_connections only changes at server start" % target,
                        disruptive=True,
                        apply="raise_max_connections",
                    )
                )
            else:
                actions.append(
                    action(
                        "database_connections.B.report_connections",
                        "B",
                        "report too many connections",
                        "postgres:max_connections",
                        {"max_connections": ctx.get("max_connections")},
                        "report",
                        "L1: no idle session is older than %ss to terminate%s; find the client that opens them (%s) "
                        "or set database_connections_max_connections_target to raise max_connections (a restart)"
                        % (
                            s["idle_terminate_after_seconds"],
                            " and no other client than the stack's own holds idle sessions"
                            if ctx.get("logins_refused")
                            else "",
                            ", ".join(
                                "%s: %s" % (e.get("application_name") or "-", e.get("count"))
                                for e in (ctx.get("by_application") or [])[:3]
                            ),
                        ),
                    )
                )
        elif sid == "A":
            size, overflow, new_size, new_overflow, per_replica = pool_target(ctx, s)
            service = s["app_service"]
            size_name, overflow_name = pool_names(s)
            unknown_pool = pool_unknown(ctx, s)
            if unknown_pool:
                actions.append(
                    action(
                        "database_connections.A.report_pool",
                        "A",
                        "report an exhausted pool whose settings are not known",
                        "compose:%s" % service,
                        {"settings": ctx.get("env") or {}, "missing": unknown_pool},
                        "report",
                        "L1: the pool of %s is exhausted, and %s: set the pool's size explicitly (within "
                        "max_connections), or name the settings in octollm_services.%s.settings"
                        % (service, "; ".join(unknown_pool), service),
                    )
                )
                continue
            if new_size is None:
                actions.append(
                    action(
                        "database_connections.A.report_pool",
                        "A",
                        "report an exhausted pool with no room to grow",
                        "compose:%s" % service,
                        {size_name: size, overflow_name: overflow, "budget_per_replica": per_replica},
                        "report",
                        "L1: the pool of %s cannot grow within max_connections (%s per replica left); raise "
                        "max_connections or lower other clients' use first" % (service, per_replica),
                    )
                )
                continue
            actions.append(
                action(
                    "database_connections.A.raise_pool",
                    "A",
                    "raise the pool of %s and recreate it" % service,
                    "compose:%s" % service,
                    {
                        "file": s["env_file"],
                        "keys": {
                            size_name: {"old": str(size), "new": str(new_size)},
                            overflow_name: {"old": str(overflow), "new": str(new_overflow)},
                        },
                        "container": service,
                        "op": "recreate (docker compose up, new environment)",
                        "budget_per_replica": per_replica,
                    },
                    "planned",
                    "%s %s -> %s, %s %s -> %s in %s (max %d per replica within max_connections), then recreate %s"
                    % (
                        size_name,
                        size,
                        new_size,
                        overflow_name,
                        overflow,
                        new_overflow,
                        s["env_file"],
                        per_replica,
                        service,
                    ),
                    disruptive=True,
                    apply="set_env_and_recreate",
                )
            )
        elif sid == "D":
            dns = ctx.get("dns")
            actions.append(
                action(
                    "database_connections.D.report_network",
                    "D",
                    "report a network partition between %s and PostgreSQL" % s["app_service"],
                    "network:%s-postgres" % s["app_service"],
                    {"dns_failure": bool(dns), "health_postgres": ctx.get("health_postgres")},
                    "report",
                    "L1: %s cannot reach PostgreSQL while it answers the diagnosis (%s). %s"
                    % (
                        s["app_service"],
                        ctx.get("health_postgres") or "TCP probe failed",
                        "Name resolution fails: check extra_hosts / DNS for the database host."
                        if dns
                        else "With host networking there is no Compose network to recreate: check the host's firewall "
                        "and routes; on a bridge network, recreate it (docker compose down && up).",
                    ),
                )
            )
    return gated(actions, s)


# --- prevention ---------------------------------------------------------------------------------------
def prevention(evidence, settings):
    """``{findings, actions, context}``: pool limits, idle_in_transaction_session_timeout, alert rules."""
    s = settings
    f = Facts(evidence, s)
    findings = []
    # 1. pool limits fit max_connections
    title = "The %s's pool fits max_connections" % s["app_service"]
    pool = f.db_pool()
    if not s.get("db_pool_path"):
        # no pool figures offered: the pool's most connections from its settings (size + overflow), when both set
        values = f.pool_settings()
        numbers = [to_int(values.get(name)) for name in pool_names(s)]
        pool = {"max": sum(numbers), "source": "settings"} if None not in numbers else None
    if f.pg is None or not f.conn:
        findings.append(
            unknown("prevent.app.pool_limits", title, "pool max x replicas <= available", f.conn_error or f.pg_error)
        )
    elif pool is None and not s.get("db_pool_path"):
        findings.append(
            not_offered(
                "prevent.app.pool_limits",
                title,
                "pool max x replicas <= available",
                "the pool figures (probes.db_pool), and the pool settings are %s"
                % (", ".join("%s=%s" % item for item in sorted(f.pool_settings().items())) or "not named"),
            )
        )
    elif pool is None or not pool.get("max"):
        error = (f.pool_probe() or {}).get("error") or f.http_error or {"kind": "other", "message": "no pool figures"}
        findings.append(unknown("prevent.app.pool_limits", title, "pool max x replicas <= available", error))
    else:
        available = (f.max_connections or 0) - f.reserved
        wanted = pool["max"] * (f.replicas or 1)
        findings.append(
            finding(
                "prevent.app.pool_limits",
                title,
                "ok" if wanted <= available else "problem",
                "%d x %d = %d of %d" % (pool["max"], f.replicas or 1, wanted, available),
                "<= %d (max_connections - reserved)" % available,
                {
                    "pool_max": pool["max"],
                    "pool_source": pool.get("source") or s.get("db_pool_path"),
                    "replicas": f.replicas,
                    "max_connections": f.max_connections,
                    "reserved": f.reserved,
                    "env": f.pool_settings(),
                },
                "A" if wanted > available else None,
            )
        )
    # 2. idle_in_transaction_session_timeout set
    title = "idle_in_transaction_session_timeout ends leaked transactions"
    setting = f.pg_settings.get("idle_in_transaction_session_timeout")
    target_s = _seconds(s["idle_in_transaction_timeout"])
    if f.pg is None or setting is None:
        findings.append(
            unknown(
                "prevent.pg.idle_in_transaction_timeout",
                title,
                "> 0",
                f.pg_error
                or (f.pg or {}).get("probe_errors", {}).get("settings")
                or {"kind": "other", "message": "setting not read"},
            )
        )
    else:
        live_s = _seconds(setting.get("value"))
        findings.append(
            finding(
                "prevent.pg.idle_in_transaction_timeout",
                title,
                "ok" if live_s else "problem",
                "%s%s" % (setting.get("value"), setting.get("unit") or "") if live_s else "0 (disabled)",
                "> 0 (target %s)" % s["idle_in_transaction_timeout"],
                {
                    "value": setting.get("value"),
                    "unit": setting.get("unit"),
                    "source": setting.get("source"),
                    "context": setting.get("context"),
                },
                None if live_s else "C",
            )
        )
    # 3. alert rules
    findings.append(rule_loaded("prevent.prometheus.connection_rule", s["connection_rule"], f.prom, f.prom_error))
    findings.append(rule_loaded("prevent.prometheus.down_rule", s["down_rule"], f.prom, f.prom_error))

    by_check = {item["check"]: item for item in findings}
    actions = []
    timeout = by_check["prevent.pg.idle_in_transaction_timeout"]
    if timeout["status"] == "problem":
        older = [x for x in f.conn.get("idle_in_transaction") or [] if (x.get("state_age_s") or 0) >= (target_s or 0)]
        actions.append(
            action(
                "database_connections.prevent.idle_in_transaction_timeout",
                "C",
                "set idle_in_transaction_session_timeout = %s" % s["idle_in_transaction_timeout"],
                "postgres:idle_in_transaction_session_timeout",
                {
                    "key": "idle_in_transaction_session_timeout",
                    "old": timeout["evidence"].get("value"),
                    "new": s["idle_in_transaction_timeout"],
                    "op": "ALTER SYSTEM SET + pg_reload_conf()",
                    "sessions_it_would_end": len(older),
                },
                "planned",
                "ALTER SYSTEM SET idle_in_transaction_session_timeout = '%s' and reload (no restart)%s"
                % (
                    s["idle_in_transaction_timeout"],
                    "; it ends %d sessions idle in transaction longer than that" % len(older) if older else "",
                ),
                disruptive=bool(older),
                apply="set_pg_setting",
            )
        )
    if by_check["prevent.app.pool_limits"]["status"] == "problem":
        actions.append(
            action(
                "database_connections.prevent.report_pool_limits",
                "A",
                "report a pool larger than max_connections",
                "compose:%s:pool" % s["app_service"],
                by_check["prevent.app.pool_limits"]["evidence"],
                "report",
                "L1: lower %s + %s (x replicas) under max_connections - reserved, or raise max_connections"
                % tuple(name or "the pool's %s" % meaning for meaning, name in zip(POOL_MEANINGS, pool_names(s))),
            )
        )
    for check in ("prevent.prometheus.connection_rule", "prevent.prometheus.down_rule"):
        if by_check[check]["status"] == "problem":
            actions.append(
                action(
                    "database_connections.prevent.report_%s" % check.rsplit(".", 1)[1],
                    None,
                    "report a missing alert rule",
                    "prometheus:rules:%s" % check.rsplit(".", 1)[1],
                    {"check": check},
                    "report",
                    "L1: add the seed's alert rule to Prometheus and reload it",
                )
            )
    actions = gated(actions, s)
    return {"findings": findings, "actions": actions, "context": {}}


# --- the procedure ------------------------------------------------------------------------------------
# The workloads' kinds on Kubernetes (the action files patch these kinds).
APP_WORKLOAD_KIND = "Deployment"
DB_WORKLOAD_KIND = "StatefulSet"
SETTINGS_READ = ["max_connections", "superuser_reserved_connections", "idle_in_transaction_session_timeout"]


def k8s_objects(s):
    """The Kubernetes API reads (stack_evidence kind ``kubernetes``), named ``database_connections_<read>``: the
    application's and PostgreSQL's pods, the pool ConfigMap, the two workloads, the postgres Service and its
    Endpoints, the NetworkPolicies, PDBs, HPAs and the Warning events."""
    reads = {
        "app_pods": {"kind": "Pod", "label_selector": "app=%s" % s["k8s_app_label"]},
        "db_pods": {"kind": "Pod", "label_selector": "app=%s" % s["k8s_db_label"]},
        "configmap": {"kind": "ConfigMap", "name": s["k8s_pool_configmap"]},
        "app_workload": {"kind": APP_WORKLOAD_KIND, "api_version": "apps/v1", "name": s["k8s_app_workload"]},
        "db_workload": {"kind": DB_WORKLOAD_KIND, "api_version": "apps/v1", "name": s["k8s_db_workload"]},
        "service": {"kind": "Service", "name": s["k8s_db_service"]},
        "endpoints": {"kind": "Endpoints", "name": s["k8s_db_service"]},
        "netpols": {"kind": "NetworkPolicy", "api_version": "networking.k8s.io/v1"},
        "pdbs": {"kind": "PodDisruptionBudget", "api_version": "policy/v1"},
        "hpas": {"kind": "HorizontalPodAutoscaler", "api_version": "autoscaling/v2"},
        "events": {"kind": "Event", "field_selector": "type=Warning"},
    }
    return {"database_connections_" + read: item for read, item in reads.items()}


class DatabaseConnections(Procedure):
    name = PROCEDURE
    title = "Database Connection Issues"
    scenarios = SCENARIOS
    modules = {"compose": "database_connections", "kubernetes": "database_connections_kubernetes"}

    def settings(self, role_settings, context):
        s = super(DatabaseConnections, self).settings(role_settings, context)
        postgres = context.inventory.get("postgres") or {}
        s["admin_user"] = postgres.get("admin_user") or "postgres"
        # the stack's own applications (application_name values): never terminated for being idle
        s["stack_applications"] = [str(name) for name in postgres.get("applications") or []]
        s["db_port_from_app"] = int(postgres.get("port") or 5432)
        # the deployment's names (docs/deployment.md): the application's settings by meaning (None: it has no such
        # setting), its health endpoint, and the optional probe that answers the pool figures (None: not offered)
        app = s["app_service"]
        s["setting_names"] = {meaning: context.setting_name(app, meaning) for meaning in DB_MEANINGS}
        s["health_path"] = context.service(app).get("health_path") or SEED_HEALTH
        s["db_pool_path"] = context.probe(app, "db_pool")
        if context.kubernetes:
            s["namespace"] = context.inventory["k8s"]["namespace"]
            service = (context.inventory.get("services") or {}).get("postgres") or {}
            s["db_port"] = int(service.get("port") or 5432)
            s["dns_names"] = [s["k8s_db_service"], "%s.%s.svc" % (s["k8s_db_service"], s["namespace"])]
        return s

    def needs(self, settings, context):
        s = settings
        need = {
            "postgres": {
                "connections": True,
                "sessions_limit": s["sessions_limit"],
                "settings": list(SETTINGS_READ),
                "ping": True,
            },
            "http": {
                "probes": [
                    {
                        "name": HEALTH_PROBE,
                        "service": s["app_service"],
                        "path": s["health_path"],
                        "expect_status": [200, 503],
                    }
                ]
            },
            "prometheus": {"rules": True},
        }
        if s["db_pool_path"] and s["db_pool_path"] != s["health_path"]:
            need["http"]["probes"].append(
                {
                    "name": POOL_PROBE,
                    "service": s["app_service"],
                    "path": s["db_pool_path"],
                    "expect_status": [200, 503],
                }
            )
        if context.kubernetes:
            # no Docker: no exec probe, no container logs, no env file; the API's view instead
            need["kubernetes"] = {"objects": k8s_objects(s)}
            return need
        need["containers"] = {
            "exec_probes": [
                {
                    "name": EXEC_PROBE,
                    "service": s["app_service"],
                    "cmd": exec_probe_cmd(s),
                    "timeout": 5,
                }
            ],
            "logs": {
                "tail": 200,
                "services": [s["app_service"]],
                "since_seconds": 60,
                "patterns": {POOL_LOG_PATTERN: "database pool exhausted"},
            },
        }
        pool = [s["setting_names"][m] for m in POOL_MEANINGS if s["setting_names"].get(m)]
        if s["env_file"] and pool:
            need["logs"] = {
                "sources": [
                    {
                        "name": ENV_SOURCE,
                        "path": s["env_file"],
                        "pattern": "^(%s)=" % "|".join(re.escape(name) for name in pool),
                        "max_lines": 10,
                    }
                ]
            }
        return need


PROCEDURE = DatabaseConnections()
