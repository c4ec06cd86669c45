# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Judgement of the seed's "Service Unavailable": findings, scenarios, plan and prevention checks (Compose).

Input is the evidence of ``stack_evidence`` (kinds ``containers`` with stats, log tails, exec probes and
``compose_config``, the reduced result of ``docker compose config``, and ``http`` health probes) and the role's
settings. Every service that is down (not running, restarting, unhealthy, a health
endpoint that does not answer 200, crash-looping or OOM-killed) is classified by its root cause:

- C  database connection failure: a database service (postgres, redis) is down, or the application containers
     cannot reach it (port probes from inside, ``pg_isready``, Redis ``PING``). Fixable: start the stopped database
     (not disruptive: a database that is down has nothing to lose; its container is started, never recreated) or
     restart a running one that fails (disruptive), first, then wait for the services that failed with it.
- B  out of memory: the container was OOM-killed (``OOMKilled`` or the cgroup's ``oom_kill`` counter) or runs at
     its memory limit. Fixable: raise the limit by a bounded step in the Compose override file, recreate.
- D  configuration error: ``docker compose config`` fails, or the service's recent log lines show a configuration
     error at start, or it exits at start on a database, DNS or connection-refused error while its databases are up
     (the setting that names the host is wrong). Report: the setting with its value (from the container's
     environment, secrets masked), the log line, and the exact step for a human.
- A  container crashed (anything else): exited, restarting, unhealthy. Fixable: start or restart it and wait for
     its healthcheck.

Services are those of the deployment as the inventory describes it (``octollm_services``, docs/deployment.md): the
containers evidence finds each one's containers (Compose project and service, container names, labels) and names
them after it. A fix acts on the deployment: through its own Compose files and project (``octollm_compose_*``) for a
service of that project, else through the container runtime on the service's containers; its verification checks
that the container which runs and answers afterwards is the one the fix started, with the image it ran before.
Readiness (``ready_path``) is probed where the inventory names it; each probe service's dependencies are its
``depends_on``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.octollm.remediation.plugins.plugin_utils.deployment import found_by
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import age_seconds
from ansible_collections.octollm.remediation.plugins.plugin_utils.procedure import Procedure
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import (
    action,
    escalation,
    finding,
    gate,
    human_bytes,
    redis_bytes,
    unknown,
)

NAME = "service_unavailable"

SCENARIOS = {
    "A": "Container crashed",
    "B": "Out of memory",
    "C": "Database connection failure",
    "D": "Configuration error",
}

# Names of the probes in the evidence (built by ``probes``, read by the checks).
HEALTH_PROBE_PREFIX = "service_unavailable_health_"
READY_PROBE_PREFIX = "service_unavailable_ready_"
# Exit statuses of a process killed by a signal (128 + SIGKILL, SIGTERM), not one that gave up at start.
SIGNAL_EXITS = (137, 143)
DEPENDENCY_PROBE_PREFIX = "service_unavailable_dependencies_"
PG_ISREADY_PROBE = "service_unavailable_pg_isready"
REDIS_PING_PROBE = "service_unavailable_redis_ping"
# Restart policies that bring a service back by themselves (prevention).
RESTART_POLICIES = ("unless-stopped", "always")
# The dependency probe run inside a probe service's container: one line "<host:port> ok|fail" per target.
DEPENDENCY_CMD = (
    "for t in %s; do "
    'if nc -z -w 2 "${t%%:*}" "${t##*:}" >/dev/null 2>&1; then echo "$t ok"; else echo "$t fail"; fi; done'
)

_ORDER = {"C": 0, "B": 1, "D": 2, "A": 3}
# the kinds of startup failure read from a service's log (service_unavailable_startup_error_patterns), and what a
# report says of each
STARTUP_KINDS = {
    "dns": "a host it connects to does not resolve",
    "connection_refused": "a connection it opens is refused",
    "database": "it cannot connect to its database",
    "configuration": "it cannot read its configuration",
}
# a host named in a log line: quoted, or after host/to/at/connecting to
_HOST_IN_LINE = re.compile(
    r"(?i)\b(?:host(?: name)?|server at|connecting to|connect to|to)\s+[\"']?([A-Za-z0-9][A-Za-z0-9_.-]*)[\"']?"
    r"(?:[:,\s]+(?:port\s+)?(\d{2,5})\b)?"
)
_QUOTED_WORD = re.compile(r"[\"']([A-Za-z0-9][A-Za-z0-9_.-]*)[\"']")
_PORT_IN_LINE = re.compile(r"(?i)(?::|\bport\s+)(\d{2,5})\b")
_HOST_OF_URL = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?\[?([^:/\s\]@]+)\]?(?::(\d+))?", re.IGNORECASE)


def _settings(settings):
    return dict(settings or {})


def _kind(evidence, kind):
    result = (evidence or {}).get(kind)
    if result is None:
        return None, {"kind": "other", "message": "%s evidence was not gathered" % kind}
    if not result.get("ok", False):
        return None, result.get("error") or {"kind": "other", "message": "%s evidence failed" % kind}
    return result, None


def compose_config(config):
    """``(services, error)`` from the containers evidence's ``compose_config`` (``docker compose config``, reduced:
    per service ``mem_limit``, ``depends_on`` and ``env_quoted_in_logs``; never an environment value). Not checked
    (None, None) when it was not asked for or could not run (no docker CLI, a time-out)."""
    if not config or config.get("error"):
        return None, None
    if config.get("rc") not in (0, None) or config.get("services") is None:
        text = " ".join(str(config.get("stderr") or "docker compose config failed").split())
        return None, text[:400]
    return config.get("services") or {}, None


class Facts:
    """The containers evidence grouped by service, read once."""

    def __init__(self, evidence, settings):
        self.s = settings
        self.containers, self.containers_error = _kind(evidence, "containers")
        self.http, self.http_error = _kind(evidence, "http")
        data = self.containers or {}
        self.config = data.get("compose_config")
        self.declared, self.config_error = compose_config(self.config)
        excluded = set(settings["excluded_services"] or [])
        self.records = [r for r in data.get("containers") or [] if r.get("service") not in excluded]
        self.logs = data.get("logs") or {}
        self.probes = {p.get("name"): p for p in data.get("exec_probes") or []}
        self.by_service = {}
        for record in self.records:
            self.by_service.setdefault(record.get("service") or "?", []).append(record)
        # the services as the inventory describes them (ServiceUnavailable.settings), and the named settings' values
        # each one's containers hold (masked by the collector)
        self.described = settings.get("described") or {}
        self.environment = {}
        for record in self.records:
            for key, value in (record.get("environment") or {}).items():
                self.environment.setdefault(record.get("service") or "?", {}).setdefault(key, value)

    # --- per-container states --------------------------------------------------------------------------
    @staticmethod
    def down(record):
        return not record.get("running") or record.get("restarting") or record.get("state") == "restarting"

    def recent(self, record):
        """Started within the restart window (a restart counted long ago is history, not an incident)."""
        age = age_seconds(record.get("started_at"), self.s.get("now"))
        return age is None or age <= self.s["restart_window_seconds"]

    def oom(self, record):
        stats = record.get("stats") or {}
        return bool(record.get("oom_killed")) or bool(stats.get("oom_kills"))

    def memory_high(self, record):
        stats = record.get("stats") or {}
        percent = stats.get("memory_percent")
        return percent is not None and percent >= self.s["memory_high_percent"]

    def _config_line_indices(self, service):
        """Indices (in the service's log lines) of the last five that show a configuration error."""
        entry = self.logs.get(service) or {}
        try:
            pattern = re.compile(self.s["config_error_pattern"])
        except re.error:
            return []
        return [index for index, line in enumerate(entry.get("lines") or []) if pattern.search(line)][-5:]

    def config_lines(self, service):
        lines = (self.logs.get(service) or {}).get("lines") or []
        return [lines[index] for index in self._config_line_indices(service)]

    def bad_setting(self, service):
        """The name of the setting a configuration error points at (never its value): the environment variable of
        the service (from ``docker compose config``) whose value the error line quotes, else a quoted upper-case
        name in the service's recent log lines (a traceback's source line), else an upper-case word of the error."""
        lines = self.config_lines(service)
        indices = set(self._config_line_indices(service))
        spec = (self.declared or {}).get(service) or {}
        # the collector names the variables whose value a log line quotes (the value never leaves it)
        quoted_in = spec.get("env_quoted_in_logs") or {}
        keys = sorted(key for key, found in quoted_in.items() if indices & set(found or []))
        if len(keys) == 1:
            return keys[0]
        entry = self.logs.get(service) or {}
        for line in reversed(entry.get("lines") or []):
            names = _QUOTED_NAME.findall(line)
            if names:  # a source line may name several: all of them, the person picks
                return " or ".join(sorted(set(names), key=names.index))
        return _setting_named(lines)

    def error_lines(self, service):
        entry = self.logs.get(service) or {}
        return (entry.get("matches") or [])[-5:]

    def health_answer(self, service):
        if self.http is None:
            return None
        return (self.http.get("probes") or {}).get(HEALTH_PROBE_PREFIX + service)

    def dependency_probe_names(self):
        return [DEPENDENCY_PROBE_PREFIX + name for name in self.s["probe_services"]]

    def targets(self, service=None):
        """The host:port pairs probed from a probe service (its described depends_on, else the seed's list)."""
        described = self.s.get("probe_targets")
        if described is None:
            return list(self.s["dependency_targets"] or [])
        if service is None:
            every = []
            for name in self.s["probe_services"]:
                every.extend(item for item in described.get(name) or [] if item not in every)
            return every
        return list(described.get(service) or [])

    def dependencies(self):
        """``{target: ok}`` from the first dependency probe that ran, and that probe."""
        for name in self.s["probe_services"]:
            probe = self.probes.get(DEPENDENCY_PROBE_PREFIX + name)
            if not probe or probe.get("exit_code") is None:
                continue
            wanted = self.targets(name)
            found = {}
            for line in (probe.get("output") or "").splitlines():
                words = line.split()
                if len(words) == 2 and words[0] in wanted:
                    found[words[0]] = words[1] == "ok"
            if found:
                return found, probe
        return None, [self.probes.get(name) for name in self.dependency_probe_names()]

    # --- startup failures ---------------------------------------------------------------------------------
    def _startup_patterns(self):
        patterns = []
        for kind, regex in list((self.s.get("startup_error_patterns") or {}).items()) + [
            ("configuration", self.s["config_error_pattern"])
        ]:
            try:
                patterns.append((kind, re.compile(regex)))
            except (re.error, TypeError):
                continue
        return patterns

    def startup(self, service):
        """What the service's log says of its failure at start: ``{kind, line, setting, settings}`` of the newest
        log line that matches a startup error (dns, connection_refused, database, configuration), or None. The
        setting is the one whose value holds the host (or port) the line names, else the first startup setting
        (``startup_settings``) the service has; ``settings`` gives each named one's value from the container's
        environment (masked by the collector: a secret whole, a URL's password), None when it is not set."""
        lines = (self.logs.get(service) or {}).get("lines") or []
        patterns = self._startup_patterns()
        for line in reversed(lines):
            for kind, regex in patterns:
                if regex.search(line):
                    return self._startup_item(service, kind, line)
        return None

    def _startup_item(self, service, kind, line):
        env = self.environment.get(service) or {}
        names = (self.s.get("startup_setting_names") or {}).get(service) or {}
        if kind == "configuration":
            named = [item for item in (self.bad_setting(service) or "").split(" or ") if item]
        else:
            named = _settings_in_line(line, env, kind)
            if not named:
                meanings = list(self.s.get("startup_settings") or [])
                if "redis" in line.lower() and "redis_host" in meanings:
                    meanings.remove("redis_host")
                    meanings.insert(0, "redis_host")
                candidates = [names[meaning] for meaning in meanings if names.get(meaning)]
                present = [name for name in candidates if name in env]
                named = (present or candidates)[:1]
        return {
            "kind": kind,
            "what": STARTUP_KINDS.get(kind, kind),
            "line": line,
            "setting": " or ".join(named) or None,
            "settings": dict((name, env.get(name)) for name in named),
        }

    def databases_down(self, service):
        """The databases a service depends on (its described depends_on, else every database) that are down."""
        depends = (self.described.get(service) or {}).get("depends_on") or []
        candidates = [name for name in self.s["databases"] if not depends or name in depends]
        return [
            name for name in candidates
            if self.by_service.get(name) and all(self.down(record) for record in self.by_service[name])
        ]

    # --- classification -----------------------------------------------------------------------------------
    def exits_at_start(self, record):
        """Whether a container fails at start: restarting, exited within ``startup_seconds`` of its start, or
        restarted by the runtime that recently (a container killed after a long run did not fail at start)."""
        if record.get("restarting") or record.get("state") == "restarting":
            return True
        started = age_seconds(record.get("started_at"), self.s.get("now"))
        if not record.get("running"):
            if record.get("exit_code") in SIGNAL_EXITS and not self.oom(record):
                return False  # killed from outside (SIGKILL, SIGTERM): whenever it happened, not a failure to start
            finished = age_seconds(record.get("finished_at"), self.s.get("now"))
            return started is not None and finished is not None and started - finished <= self.s["startup_seconds"]
        return (record.get("restart_count") or 0) > 0 and started is not None and started <= self.s["startup_seconds"]

    def starting(self, records):
        """Whether the service's containers fail at start (see ``exits_at_start``)."""
        return any(self.exits_at_start(record) for record in records)

    def cause(self, service, records):
        """The scenario that explains a service being down."""
        if service in self.s["databases"]:
            return "C"
        if any(self.oom(record) or self.memory_high(record) for record in records):
            return "B"
        if self.config_error:
            return "D"
        startup = self.startup(service) if records and self.starting(records) else None
        if startup and startup["kind"] != "configuration":
            # a database it depends on is down: it starts again once that is back (A, after the database's C);
            # else the host, port or credentials it is given are wrong: a configuration error (D)
            return "A" if self.databases_down(service) else "D"
        if self.config_lines(service):
            return "D"
        return "A"


def _service_evidence(f, service, records):
    item = {
        "service": service,
        "containers": [
            {
                "name": r.get("name"),
                "state": r.get("state"),
                "health": r.get("health"),
                "exit_code": r.get("exit_code"),
                "oom_killed": r.get("oom_killed"),
                "restart_count": r.get("restart_count"),
                "started_at": r.get("started_at"),
                "finished_at": r.get("finished_at"),
                "error": r.get("error"),
                "memory_limit": r.get("memory_limit"),
                "memory_percent": (r.get("stats") or {}).get("memory_percent"),
                "oom_kills": (r.get("stats") or {}).get("oom_kills"),
                "health_output": (r.get("health_log") or {}).get("output"),
            }
            for r in records
        ],
        "error_lines": f.error_lines(service),
    }
    config = f.config_lines(service)
    if config:
        item["config_lines"] = config
    startup = f.startup(service) if records and f.starting(records) else None
    if startup:
        item["startup"] = startup
    return item


def _scenario_of(items):
    causes = sorted({item["cause"] for item in items}, key=lambda sid: _ORDER[sid])
    return causes[0] if causes else None


# --- checks --------------------------------------------------------------------------------------------------
def check_running(f, identity=False):
    title = "Every container of the project is running"
    expected = "running"
    if f.containers is None:
        return unknown("containers.running", title, expected, f.containers_error, "A"), []
    affected = []
    for service, records in sorted(f.by_service.items()):
        down = [r for r in records if f.down(r)]
        if down:
            item = _service_evidence(f, service, down)
            item["cause"] = f.cause(service, down)
            affected.append(item)
    # a service the inventory finds by container name or labels names containers that must exist
    for service, spec in sorted(f.described.items()):
        if spec.get("found_by") in ("name", "labels") and not f.by_service.get(service):
            how = (
                "container %s" % ", ".join(spec.get("container_names") or [])
                if spec["found_by"] == "name"
                else "labels %s" % ", ".join("%s=%s" % pair for pair in sorted((spec.get("labels") or {}).items()))
            )
            affected.append(
                {"service": service, "containers": [{"name": None, "state": "no container (%s)" % how,
                                                     "exit_code": None, "oom_killed": False}],
                 "error_lines": [], "cause": "A", "missing": how}
            )
    if not f.records and not affected:
        return (
            finding(
                "containers.running",
                title,
                "problem",
                "no container of project %s" % (f.containers or {}).get("project"),
                expected,
                {"project": (f.containers or {}).get("project")},
                "A",
            ),
            [],
        )
    extra = {"identity": identities(f)} if identity else {}
    if not affected:
        return finding("containers.running", title, "ok", "%d running" % len(f.records), expected, extra), []
    observed = ", ".join(
        "%s %s%s"
        % (
            item["service"],
            item["containers"][0]["state"],
            "" if item.get("missing") else " (exit %s%s%s)" % (
                item["containers"][0]["exit_code"],
                ", OOM-killed" if item["containers"][0]["oom_killed"] else "",
                ", at start: %s" % item["startup"]["what"] if item.get("startup") else "",
            ),
        )
        for item in affected
    )
    return (
        finding(
            "containers.running", title, "problem", observed, expected, dict(extra, services=affected),
            _scenario_of(affected)
        ),
        affected,
    )


def identities(f):
    """``{service: [{name, id, image, image_id, running, health}]}``: which containers each service runs now (a
    verification compares them with those a fix started)."""
    return {
        service: [
            {
                "name": r.get("name"),
                "id": r.get("id"),
                "image": r.get("image"),
                "image_id": r.get("image_id"),
                "running": not f.down(r),
                "health": r.get("health"),
            }
            for r in records
        ]
        for service, records in sorted(f.by_service.items())
    }


def check_health(f):
    title = "Running containers pass their healthchecks"
    expected = "healthy"
    if f.containers is None:
        return unknown("containers.health", title, expected, f.containers_error, "A"), []
    affected = []
    for service, records in sorted(f.by_service.items()):
        bad = [r for r in records if not f.down(r) and r.get("health") == "unhealthy"]
        if bad:
            item = _service_evidence(f, service, bad)
            item["cause"] = f.cause(service, bad)
            affected.append(item)
    if not affected:
        starting = [r.get("name") for r in f.records if r.get("health") == "starting"]
        evidence = {"starting": starting} if starting else {}
        return finding("containers.health", title, "ok", "no unhealthy container", expected, evidence), []
    observed = ", ".join(
        "%s unhealthy (%s)" % (item["service"], (item["containers"][0]["health_output"] or "")[:80])
        for item in affected
    )
    return (
        finding(
            "containers.health", title, "problem", observed, expected, {"services": affected}, _scenario_of(affected)
        ),
        affected,
    )


def check_restarts(f):
    s = f.s
    title = "No container is crash-looping"
    expected = "< %d restarts in %ss" % (s["restart_max"], s["restart_window_seconds"])
    if f.containers is None:
        return unknown("containers.restarts", title, expected, f.containers_error, "A"), []
    affected = []
    warned = []
    for service, records in sorted(f.by_service.items()):
        looping = [
            r for r in records if (r.get("restart_count") or 0) >= s["restart_max"] and (f.down(r) or f.recent(r))
        ]
        if looping:
            item = _service_evidence(f, service, looping)
            item["cause"] = f.cause(service, looping)
            affected.append(item)
            continue
        recent = [r for r in records if (r.get("restart_count") or 0) > 0 and f.recent(r) and not f.oom(r)]
        if recent:
            warned.append({"service": service, "restarts": {r.get("name"): r.get("restart_count") for r in recent}})
    if affected:
        observed = ", ".join(
            "%s restarted %s times" % (item["service"], item["containers"][0]["restart_count"]) for item in affected
        )
        return (
            finding(
                "containers.restarts",
                title,
                "problem",
                observed,
                expected,
                {"services": affected},
                _scenario_of(affected),
            ),
            affected,
        )
    if warned:
        observed = ", ".join("%s restarted recently" % item["service"] for item in warned)
        return finding("containers.restarts", title, "warning", observed, expected, {"services": warned}, "A"), []
    return finding("containers.restarts", title, "ok", "no recent restart", expected), []


def check_memory(f):
    s = f.s
    title = "No container was OOM-killed or runs at its memory limit"
    expected = "no OOM kill, working set < %s%% of the limit" % s["memory_high_percent"]
    if f.containers is None:
        return unknown("containers.oom", title, expected, f.containers_error, "B"), []
    affected = []
    high = []
    for service, records in sorted(f.by_service.items()):
        killed = [r for r in records if f.oom(r)]
        if killed:
            item = _service_evidence(f, service, killed)
            item["cause"] = "B"
            affected.append(item)
            continue
        full = [r for r in records if f.memory_high(r)]
        if full:
            item = _service_evidence(f, service, full)
            item["cause"] = "B"
            high.append(item)
    if affected:
        observed = ", ".join(
            "%s OOM-killed (limit %s)" % (item["service"], human_bytes(item["containers"][0]["memory_limit"]))
            for item in affected
        )
        return finding("containers.oom", title, "problem", observed, expected, {"services": affected}, "B"), affected
    if high:
        observed = ", ".join(
            "%s at %s%% of %s"
            % (
                item["service"],
                item["containers"][0]["memory_percent"],
                human_bytes(item["containers"][0]["memory_limit"]),
            )
            for item in high
        )
        return finding("containers.oom", title, "warning", observed, expected, {"services": high}, "B"), high
    return finding("containers.oom", title, "ok", "no OOM kill", expected), []


def check_health_endpoints(f, running):
    title = "Health endpoints answer 200"
    expected = "200"
    if f.http is None:
        return unknown("http.health", title, expected, f.http_error, "A"), []
    probes = {
        name[len(HEALTH_PROBE_PREFIX) :]: answer
        for name, answer in (f.http.get("probes") or {}).items()
        if name.startswith(HEALTH_PROBE_PREFIX)
    }
    if not probes:
        return finding("http.health", title, "ok", "no health endpoint probed", expected), []
    failing = []
    for service, answer in sorted(probes.items()):
        records = f.by_service.get(service) or []
        if answer.get("ok") and records and all(f.down(r) for r in records):
            # something answers on its port, but not the deployment's container: the service is down all the same
            failing.append(
                {
                    "service": service,
                    "status": answer.get("status"),
                    "error": None,
                    "body": None,
                    "answered_by_another": ", ".join(r.get("name") or "?" for r in records) + " not running",
                    "cause": f.cause(service, records),
                }
            )
            continue
        if answer.get("ok"):
            continue
        item = {
            "service": service,
            "status": answer.get("status"),
            "error": answer.get("error"),
            "body": (answer.get("body") if isinstance(answer.get("body"), str) else json.dumps(answer.get("body")))
            if answer.get("body") is not None
            else None,
            "cause": f.cause(service, records) if records else "A",
        }
        if item["body"]:
            item["body"] = item["body"][:200]
        failing.append(item)
    if not failing:
        return finding("http.health", title, "ok", "%d endpoints 200" % len(probes), expected), []
    observed = ", ".join(
        "%s %s%s"
        % (
            item["service"],
            item["status"] or (item["error"] or {}).get("kind", "no answer"),
            " but %s: another process answers" % item["answered_by_another"] if item.get("answered_by_another") else "",
        )
        for item in failing
    )
    return (
        finding("http.health", title, "problem", observed, expected, {"endpoints": failing}, _scenario_of(failing)),
        failing,
    )


def check_ready(f):
    """Readiness (``ready_path``) of the services the inventory gives one: 503 means not ready to serve."""
    title = "Readiness endpoints answer 200"
    expected = "200"
    if f.http is None:
        return unknown("http.ready", title, expected, f.http_error, "A"), []
    probes = {
        name[len(READY_PROBE_PREFIX):]: answer
        for name, answer in (f.http.get("probes") or {}).items()
        if name.startswith(READY_PROBE_PREFIX)
    }
    failing = []
    for service, answer in sorted(probes.items()):
        if answer.get("ok"):
            continue
        records = f.by_service.get(service) or []
        body = answer.get("body")
        failing.append(
            {
                "service": service,
                "path": (f.described.get(service) or {}).get("ready_path"),
                "status": answer.get("status"),
                "error": answer.get("error"),
                "body": (body if isinstance(body, str) else json.dumps(body))[:200] if body is not None else None,
                "cause": f.cause(service, records) if records else "A",
            }
        )
    if not failing:
        return finding("http.ready", title, "ok", "%d ready" % len(probes), expected), []
    observed = ", ".join(
        "%s %s %s" % (item["service"], item["path"], item["status"] or (item["error"] or {}).get("kind", "no answer"))
        for item in failing
    )
    return (
        finding("http.ready", title, "problem", observed, expected, {"endpoints": failing}, _scenario_of(failing)),
        failing,
    )


def check_dependencies(f):
    targets = f.targets()
    title = "%s reachable from the application containers" % (
        ", ".join(target.split(":")[0] for target in targets) or "their dependencies"
    )
    expected = ", ".join(targets)
    if f.containers is None:
        return unknown("dependencies.reachable", title, expected, f.containers_error, "C"), []
    found, probe = f.dependencies()
    if found is None:
        errors = [p.get("error") for p in probe or [] if p and p.get("error")]
        error = errors[0] if errors else {"kind": "other", "message": "no dependency probe ran"}
        # the application containers are down: not an environment fault, so never "unreachable" here
        return unknown(
            "dependencies.reachable",
            title,
            expected,
            {"kind": "other", "message": "could not probe from inside the stack: %s" % error.get("message", "")},
            "C",
            {"probes": [p for p in probe or [] if p]},
        ), []
    evidence = {"from": probe.get("container"), "targets": found}
    pg = f.probes.get(PG_ISREADY_PROBE)
    rd = f.probes.get(REDIS_PING_PROBE)
    evidence["pg_isready"] = {"ok": pg.get("ok"), "output": pg.get("output"), "error": pg.get("error")} if pg else None
    evidence["redis_ping"] = {"ok": rd.get("ok"), "output": rd.get("output"), "error": rd.get("error")} if rd else None
    bad = [target for target, ok in found.items() if not ok]
    if pg and not pg.get("ok"):
        bad.append("pg_isready")
    if rd and not (rd.get("ok") and "PONG" in (rd.get("output") or "")):
        bad.append("redis PING")
    if not bad:
        return finding("dependencies.reachable", title, "ok", "all reachable", expected, evidence), []
    databases = []
    for target in bad:
        name = target.split(":")[0]
        service = {"pg_isready": "postgres", "redis PING": "redis"}.get(target, name)
        if service in f.s["databases"] and service not in databases:
            databases.append(service)
    evidence["unreachable"] = bad
    return (
        finding(
            "dependencies.reachable",
            title,
            "problem",
            "unreachable: %s" % ", ".join(bad),
            expected,
            evidence,
            "C" if databases else "A",
        ),
        [{"service": service, "cause": "C"} for service in databases],
    )


def check_config(f):
    title = "The Compose configuration is valid"
    expected = "docker compose config succeeds"
    if f.declared is None and f.config_error is None:
        note = ((f.config or {}).get("error") or {}).get("message") or "no config result"
        return finding("compose.config", title, "ok", "not checked", expected, {"note": note})
    if f.config_error:
        return finding("compose.config", title, "problem", f.config_error, expected, {"stderr": f.config_error}, "D")
    return finding("compose.config", title, "ok", "%d services" % len(f.declared), expected)


def diagnose(evidence, settings=None, previous=None, applied=()):
    """``{findings, scenarios, escalation, context}`` from the evidence (a verification judges afresh: ``previous``
    and ``applied`` are not needed)."""
    s = _settings(settings)
    f = Facts(evidence, s)
    # after a fix: which containers run now, for the verification's identity check
    running, down = check_running(f, identity=previous is not None)
    health, unhealthy = check_health(f)
    restarts, looping = check_restarts(f)
    memory, oom = check_memory(f)
    endpoints, failing = check_health_endpoints(f, down)
    deps, dbs = check_dependencies(f)
    config_finding = check_config(f)
    findings = [running, health, restarts, memory, endpoints, deps, config_finding]
    if ready_services(s):
        ready, not_ready = check_ready(f)
        findings.insert(5, ready)
        failing = failing + not_ready

    # one cause per service: the root cause wins (C, then B, D, A)
    services = {}
    for item in down + unhealthy + looping + oom + failing + dbs:
        # at the limit but still running: B only when something else says the service is down
        if (
            memory["status"] == "warning"
            and item in oom
            and not any(other["service"] == item["service"] for other in down + unhealthy + looping + failing)
        ):
            continue
        current = services.get(item["service"])
        if current is None or _ORDER[item["cause"]] < _ORDER[current]:
            services[item["service"]] = item["cause"]
    # a running service that fails only because a database it depends on is down: C, it waits for the database
    down_databases = {name for name, cause in services.items() if cause == "C" and name in s["databases"]}
    waits_for = {}
    for name, cause in list(services.items()):
        needs = set(((f.declared or {}).get(name) or {}).get("depends_on") or {}) & down_databases
        running = all(not f.down(r) for r in f.by_service.get(name) or [{}])
        if cause == "A" and needs and running and f.by_service.get(name):
            services[name] = "C"
            waits_for[name] = sorted(needs)
    scenarios = []
    for sid, stitle in SCENARIOS.items():
        mine = sorted(name for name, cause in services.items() if cause == sid)
        if sid == "D" and config_finding["status"] == "problem":
            mine = mine or ["compose"]
        if mine:
            reason = "%s: %s" % (stitle.lower(), ", ".join(mine))
        elif any(item["status"] == "unknown" for item in findings):
            reason = "not checked: %s" % ", ".join(item["check"] for item in findings if item["status"] == "unknown")
        else:
            reason = "no service down for this cause"
        scenarios.append({"id": sid, "title": stitle, "holds": bool(mine), "reason": reason})
    context = {
        "services": services,
        "waits_for": waits_for,
        "records": {
            name: [
                {
                    "name": r.get("name"),
                    "running": bool(r.get("running")) and not f.down(r),
                    "health": r.get("health"),
                    "memory_limit": r.get("memory_limit"),
                    "oom": f.oom(r),
                    "id": r.get("id"),
                    "image": r.get("image"),
                    "image_id": r.get("image_id"),
                    "found_by": r.get("found_by"),
                    "project": r.get("project"),
                    "compose_service": r.get("compose_service"),
                }
                for r in records
            ]
            for name, records in f.by_service.items()
        },
        "declared": {
            name: {
                "mem_limit": (spec or {}).get("mem_limit"),
                "depends_on": sorted((spec or {}).get("depends_on") or {}),
            }
            for name, spec in (f.declared or {}).items()
        },
        "config_error": f.config_error,
        "config_lines": {name: f.config_lines(name) for name in services},
        "config_settings": {name: f.bad_setting(name) for name, cause in services.items() if cause == "D"},
        "startup": {
            name: f.startup(name)
            for name, cause in services.items()
            if cause == "D" and f.by_service.get(name) and f.starting(f.by_service[name])
        },
    }
    return {
        "findings": findings,
        "scenarios": scenarios,
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


# --- plan ----------------------------------------------------------------------------------------------------
def _mb(value):
    return "%dm" % int(-(-int(value) // (1024 * 1024)))


def memory_step(current, declared, settings):
    """The new limit: the larger of the live and declared limits times the factor, at least +step, capped."""
    base = max(int(current or 0), int(redis_bytes(declared) or 0) if declared else 0)
    if not base:
        return None
    step_min = redis_bytes(settings["memory_step_min"]) or 0
    cap = redis_bytes(settings["memory_limit_max"]) or 0
    target = max(int(base * float(settings["memory_step_factor"])), base + step_min)
    if cap:
        target = min(target, cap)
    target = -(-target // (1024 * 1024)) * 1024 * 1024
    return target if target > base else None


def _dependents(ctx, database):
    return sorted(
        name for name, spec in (ctx.get("declared") or {}).items() if database in (spec.get("depends_on") or [])
    )


def target(s, service, state):
    """How a fix reaches a service: ``{runtime, found_by, project, compose_service, containers, before}``. Through the
    deployment's own Compose files and project (``compose``: ``octollm_compose_project``, ``_project_dir``,
    ``_files``) when its containers are that project's; else through the container runtime (``docker``) on its
    containers by name (found by name or labels, or under another Compose project whose files the inventory does not
    name). ``before``: the containers it ran (id and image), for the verification."""
    spec = (s.get("described") or {}).get(service) or {}
    main = s.get("compose_project")
    if state:
        how = "compose" if all(item.get("found_by") in (None, "compose") for item in state) else state[0]["found_by"]
        projects = set(item.get("project") for item in state if item.get("found_by") in (None, "compose"))
        project = projects.pop() if len(projects) == 1 else (spec.get("project") or main)
        compose_service = next((item["compose_service"] for item in state if item.get("compose_service")), None)
    else:
        how = spec.get("found_by") or "compose"
        project = spec.get("project") or main
        compose_service = None
    compose_service = compose_service or spec.get("compose_service") or service
    runtime = "compose" if how == "compose" and project in (None, main) else "docker"
    return {
        "runtime": runtime,
        "found_by": how,
        "project": project or main,
        "compose_service": compose_service,
        "containers": [item["name"] for item in state if item.get("name")],
        "before": [
            {key: item.get(key) for key in ("name", "id", "image", "image_id")}
            for item in state
            if item.get("name")
        ],
    }


def _how(reach, op, no_recreate):
    """The command a fix runs, as a person would type it."""
    if reach["runtime"] == "compose":
        return "docker compose -p %s %s %s" % (
            reach["project"],
            "restart" if op == "restart" else "up -d --no-deps" + (" --no-recreate" if no_recreate else ""),
            reach["compose_service"],
        )
    return "docker %s %s" % ("restart" if op == "restart" else "start", " ".join(reach["containers"]) or "?")


def _stop_how(reaches):
    """The commands a tier's stop runs, as a person would type them."""
    compose = [r["compose_service"] for r in reaches if r["runtime"] == "compose"]
    docker = [name for r in reaches if r["runtime"] != "compose" for name in r["containers"]]
    project = next((r["project"] for r in reaches if r["runtime"] == "compose"), None)
    return "; ".join(([("docker compose -p %s stop %s" % (project, " ".join(compose)))] if compose else [])
                     + (["docker stop %s" % " ".join(docker)] if docker else []))


def plan(diagnosis, settings=None):
    """Actions for the services that are down, root causes first; gated by approval. Then a restart of each service
    of ``restart_services`` that has none yet (``octoctl restart SERVICE``). With ``emergency_restart``, the seed's
    complete system restart instead (``emergency_plan``)."""
    s = _settings(settings)
    if s.get("emergency_restart"):
        return emergency_plan(diagnosis, s)
    actions = _plan(diagnosis, s)
    asked = _requested_restarts(actions, diagnosis.get("context") or {}, s) + _requested_rollback(actions, s)
    return actions + gate(
        asked,
        dry_run=s.get("dry_run", False),
        approve=s.get("approve", False),
        allow_disruptive=s.get("allow_disruptive", False),
    )


EMERGENCY_BACKUP = "%s.E.backup_postgres" % NAME


def emergency_plan(diagnosis, s):
    """The seed's complete system restart, done safely (``octoctl emergency restart``): a verified backup of
    PostgreSQL first; the tiers (``emergency_tiers``: arms, the orchestrator, the data stores) stopped in that order,
    each only once the backup is verified; then started in reverse, each service through Scenario A's start (up
    --wait: healthy before the next). Services with no container are left out; every step is disruptive and the
    whole plan waits for one approval. With ``emergency_volumes`` (the seed's down -v) the backup is taken once the
    writers (every tier but the last, the data stores) are stopped, so that it holds every committed row; the data
    is removed after the data stores stop, and PostgreSQL restored from the backup right after it starts again."""
    ctx = diagnosis.get("context") or {}
    records = ctx.get("records") or {}
    tiers = [[svc for svc in tier if records.get(svc)] for tier in s["emergency_tiers"] or []]
    tiers = [tier for tier in tiers if tier]
    tables = list(s.get("emergency_backup_tables") or [])
    backup = action(
        EMERGENCY_BACKUP, "E", "verified backup of PostgreSQL (pg_dump custom format) before the restart",
        "backup:postgres:%s" % s.get("database"),
        {"format": "custom", "database": s.get("database"), "directory": s.get("emergency_backup_dir") or None,
         "count_tables": tables,
         "verify": "non-empty, pg_restore --list, row counts of %s in the file equal the snapshot's" % ", ".join(
             tables)},
        "planned", "pg_dump -Fc from one snapshot, then pg_restore --list and the row counts of the file",
        disruptive=True, apply="backup_postgres")
    volumes_too = bool(s.get("emergency_volumes"))
    actions = [] if volumes_too else [backup]
    for index, tier in enumerate(tiers):
        if volumes_too and index == len(tiers) - 1:
            actions.append(backup)  # the writers are stopped: the backup holds every committed row
        guarded = any(a is backup for a in actions)
        reach = {service: target(s, service, records.get(service) or []) for service in tier}
        item = action(
            "%s.E.stop_%d" % (NAME, index + 1), "E", "stop %s" % ", ".join(tier), "stack:tier:%d" % (index + 1),
            {"services": tier, "op": "stop", "after": EMERGENCY_BACKUP if guarded else None},
            "planned", _stop_how(list(reach.values())) + (" (once the backup is verified)" if guarded else ""),
            disruptive=True, apply="compose_stop")
        item["_targets"] = reach
        actions.append(item)
    data_tier = tiers[-1] if tiers else []
    restore = None
    if s.get("emergency_volumes"):
        paths, volumes = list(s.get("emergency_data_paths") or []), list(s.get("emergency_data_volumes") or [])
        if not (paths or volumes):
            actions.append(action(
                "%s.E.remove_data" % NAME, "E", "remove the stack's data", "stack:data", {"paths": [], "volumes": []},
                "report", "no data described (service_unavailable_emergency_data_paths, _data_volumes): nothing is "
                "removed"))
        else:
            actions.append(action(
                "%s.E.remove_data" % NAME, "E", "remove the stack's data (the seed's down -v)", "stack:data",
                {"paths": paths, "volumes": volumes, "after": EMERGENCY_BACKUP,
                 "containers": [r["name"] for svc in data_tier for r in records.get(svc) or []] if volumes else []},
                "planned", "rm -rf %s (once the backup is verified; restored from it below)" % " ".join(
                    paths + ["volume:%s" % v for v in volumes]),
                disruptive=True, destructive=True, apply="remove_data"))
            restore = action(
                "%s.E.restore_postgres" % NAME, "E", "restore PostgreSQL from the verified backup",
                "restore:postgres:%s" % s.get("database"),
                {"tables": tables, "after": EMERGENCY_BACKUP, "backup": "the file of %s" % EMERGENCY_BACKUP},
                "planned", "pg_backup state=restored: the tables as in the backup, in one transaction",
                disruptive=True, apply="restore_postgres")
    for tier in reversed(tiers):
        for service in tier:
            reach = target(s, service, records.get(service) or [])
            item = action(
                "%s.E.start_%s" % (NAME, service.replace("-", "_")), "E", "start %s and wait until it is healthy"
                % service, "compose:%s" % service,
                {"container": ", ".join(r["name"] for r in records.get(service) or []) or service,
                 "service": service, "op": "up", "recreate": "never"},
                "planned", _how(reach, "up", True) + ", then wait for its healthcheck", disruptive=True,
                apply="compose_service")
            item["_target"] = reach
            actions.append(item)
            if restore and service == "postgres":  # before anything writes to the new database
                actions.append(restore)
    gated = gate(actions, dry_run=s.get("dry_run", False), approve=s.get("approve", False),
                 allow_disruptive=s.get("allow_disruptive", False))
    return gated


def _requested_restarts(planned, ctx, s):
    """Scenario A's restart of each service of ``restart_services`` (an operator asked for it) that the ``planned``
    actions do not touch yet: ``docker compose restart`` then up --wait (the compose_service action), disruptive."""
    records = ctx.get("records") or {}
    touched = set((item.get("change") or {}).get("service") for item in planned)
    actions = []
    for service in s.get("restart_services") or []:
        if service in touched:
            continue
        state = records.get(service) or []
        running = bool(state) and all(item["running"] for item in state)
        op = "restart" if running else "up"
        actions.append(
            action(
                "%s.A.%s_%s" % (NAME, op, service.replace("-", "_")),
                "A",
                "%s %s and wait until it is healthy (asked for)" % ("restart" if running else "start", service),
                "compose:%s" % service,
                {"container": ", ".join(item["name"] for item in state) or service, "service": service, "op": op},
                "planned",
                "docker compose %s %s, then wait for its healthcheck" % ("restart" if running else "up -d --no-deps",
                                                                         service),
                disruptive=True,
                apply="compose_service",
            )
        )
    return actions


def _requested_rollback(planned, s):
    """The rollback an operator asked for on Compose (``rollback``: ``{service, to_revision, compose}``, built by
    ``octoctl rollback SERVICE``): the service brought up through the deployment's own Compose project with the
    recorded revision's image, configuration and environment in one more Compose file (``compose.override_file``,
    mode 0600 in octoctl's state: it holds the revision's values), then waited for (the compose_service action);
    disruptive. ``compose.changes`` is the change as shown, secrets masked."""
    asked = s.get("rollback") or {}
    compose = asked.get("compose") or {}
    service = asked.get("service")
    if not service or not compose:
        return []
    if service in set((item.get("change") or {}).get("service") for item in planned):
        return []
    changes = list(compose.get("changes") or [])
    return [
        action(
            "%s.D.rollback_%s" % (NAME, service.replace("-", "_")),
            "D",
            "roll %s back from revision %s to %s (asked for)" % (service, compose.get("from_revision"),
                                                                 asked.get("to_revision")),
            "compose:%s" % service,
            {
                "service": service,
                "op": "up",
                "from_revision": compose.get("from_revision"),
                "to_revision": asked.get("to_revision"),
                "files": list(compose.get("files") or []),
                "changes": changes,
            },
            "planned",
            "docker compose up -d --no-deps --wait %s with %s: %s" % (
                service, compose.get("override_file"), "; ".join(changes) or "no change"),
            disruptive=True,
            apply="compose_service",
        )
    ]


def _plan(diagnosis, s):
    ctx = diagnosis.get("context") or {}
    forced = s.get("scenario") or None
    services = dict(ctx.get("services") or {})
    records = ctx.get("records") or {}
    actions = []
    order = sorted(services.items(), key=lambda item: (_ORDER[item[1]], item[0]))
    waits_for = ctx.get("waits_for") or {}
    for service, cause in order:
        if forced and cause != forced:
            continue
        if service in waits_for:
            continue  # recovers with its database: the database's action waits for it
        state = records.get(service) or []
        running = bool(state) and all(item["running"] for item in state)
        reach = target(s, service, state)
        if cause in ("A", "C") and reach["runtime"] == "docker" and not reach["containers"]:
            actions.append(
                action(
                    "%s.%s.report_missing_%s" % (NAME, cause, service.replace("-", "_")),
                    cause,
                    "report that %s has no container" % service,
                    "container:%s" % service,
                    {"service": service, "found_by": reach["found_by"]},
                    "report",
                    "L1: the inventory finds %s by %s, and no such container exists: create it as the deployment "
                    "does (octoctl starts and restarts containers, it never creates one it has no definition of)"
                    % (service, reach["found_by"]),
                )
            )
        elif cause in ("A", "C"):
            op = "restart" if running else "up"
            wait_for = sorted(name for name, needs in waits_for.items() if service in needs)
            # starting a stopped database loses nothing (no session, its data on its volume): not disruptive, and
            # its container is started as it is (never recreated); restarting a running one is disruptive
            start_database = cause == "C" and not running and service in s["databases"]
            how = _how(reach, op, start_database)
            if cause == "C":
                title = "%s the database %s, then check connectivity" % ("start" if not running else "restart", service)
                then = _dependents(ctx, service)
                outcome = "%s (wait for healthy), then wait until %s healthy again; dependents checked after: %s" % (
                    how,
                    ", ".join(wait_for) or "nothing else is",
                    ", ".join(then) or "none",
                )
            else:
                title = "%s %s and wait until it is healthy" % ("restart" if running else "start", service)
                outcome = "%s, then wait for its healthcheck" % how
            change = {"container": ", ".join(item["name"] for item in state) or service, "service": service, "op": op}
            if wait_for:
                change["then_wait"] = wait_for
                # their containers: their healthchecks are polled once the database is back
                change["then_wait_containers"] = [
                    item["name"] for name in wait_for for item in records.get(name) or [] if item.get("name")
                ]
            if start_database:
                change["recreate"] = "never"
            item = action(
                "%s.%s.%s_%s" % (NAME, cause, op, service.replace("-", "_")),
                cause,
                title,
                "compose:%s" % service,
                change,
                "planned",
                outcome,
                disruptive=not start_database,
                apply="compose_service",
            )
            # how the action file reaches the service, and what ran before (the verification's identity check)
            item["_target"] = reach
            actions.append(item)
        elif cause == "B":
            current = max([item.get("memory_limit") or 0 for item in state] or [0])
            declared = ((ctx.get("declared") or {}).get(service) or {}).get("mem_limit")
            new = memory_step(current, declared, s)
            if not new or reach["runtime"] != "compose":
                actions.append(
                    action(
                        "%s.B.report_memory_%s" % (NAME, service.replace("-", "_")),
                        "B",
                        "raise the memory limit of %s (%s)"
                        % (service, "at the cap" if reach["runtime"] == "compose" else "not under its Compose files"),
                        "compose:%s" % service,
                        {"service": service, "key": "mem_limit", "old": _mb(current) if current else None},
                        "report",
                        "L1: %s is OOM-killed at %s, the cap service_unavailable_memory_limit_max (%s): find the leak "
                        "(memory_leaks procedure) or raise the cap"
                        % (service, human_bytes(current), s["memory_limit_max"])
                        if reach["runtime"] == "compose"
                        else "L1: %s is OOM-killed at %s; its containers (%s) are not under the inventory's Compose "
                        "files: raise their memory limit where they are defined, or find the leak (memory_leaks)"
                        % (service, human_bytes(current), ", ".join(reach["containers"]) or "none"),
                    )
                )
                continue
            compose_name = reach["compose_service"]
            item = action(
                "%s.B.raise_memory_%s" % (NAME, service.replace("-", "_")),
                "B",
                "raise the memory limit of %s and recreate it" % service,
                "compose:%s" % service,
                {
                    "service": service,
                    "key": "services.%s.mem_limit" % compose_name,
                    "old": _mb(current) if current else None,
                    "declared": declared if declared is None else _mb(redis_bytes(declared) or 0),
                    "new": _mb(new),
                    "file": s.get("override_file"),
                    "op": "up (recreate)",
                },
                "planned",
                "write mem_limit %s (and memswap_limit) for %s to %s, then docker compose up -d --no-deps --wait %s"
                % (_mb(new), compose_name, s.get("override_file") or "the override file", compose_name),
                disruptive=True,
                apply="raise_memory",
            )
            item["_target"] = reach
            actions.append(item)
        elif cause == "D":
            lines = (ctx.get("config_lines") or {}).get(service) or []
            startup = (ctx.get("startup") or {}).get(service) or {}
            setting = startup.get("setting") or (ctx.get("config_settings") or {}).get(service) or _setting_named(lines)
            change = {"service": service, "setting": setting, "lines": lines[-3:], "files": s.get("env_files") or []}
            if startup:
                # read, not guessed: the log line, and the setting with its value (masked) from the container
                change.update(kind=startup["kind"], line=startup["line"], settings=startup.get("settings") or {})
                if not lines:
                    change["lines"] = [startup["line"]]
            named = startup_text(startup) if startup.get("settings") else ""
            if startup and startup["kind"] != "configuration":
                detail = ": %s - %s; it logs %s" % (startup["what"], named or "no setting names it", json.dumps(
                    startup["line"]))
            elif setting:
                detail = " (setting %s)" % (named or setting)
            else:
                detail = ": %s" % (lines[-1] if lines else "see the logs")
            actions.append(
                action(
                    "%s.D.report_config_%s" % (NAME, service.replace("-", "_")),
                    "D",
                    "report the configuration error of %s" % service,
                    "compose:%s" % service,
                    change,
                    "report",
                    "L1: %s fails at start on its configuration%s; fix it in %s, check with `docker compose config`, "
                    "then `%s`"
                    % (
                        service,
                        detail,
                        ", ".join(s.get("env_files") or []) or "the services' env file",
                        _how(reach, "up", False),
                    ),
                )
            )
    if ctx.get("config_error") and (not forced or forced == "D"):
        actions.append(
            action(
                "%s.D.report_compose_config" % NAME,
                "D",
                "report the invalid Compose configuration",
                "compose:config",
                {"error": ctx["config_error"]},
                "report",
                "L1: `docker compose config` fails: %s; fix the Compose files or the env file it names"
                % ctx["config_error"],
            )
        )
    return gate(
        actions,
        dry_run=s.get("dry_run", False),
        approve=s.get("approve", False),
        allow_disruptive=s.get("allow_disruptive", False),
    )


_SETTING = re.compile(r"\b([A-Z][A-Z0-9_]{2,})\b")
_QUOTED_NAME = re.compile(r"[\"']([A-Z][A-Z0-9]*_[A-Z0-9_]+)[\"']")


def _host_port(value):
    """``(host, port)`` a setting's value names: a URL's, or the value itself as a host or a port."""
    text = str(value or "").strip()
    found = _HOST_OF_URL.match(text)
    if found:
        return found.group(1).lower(), found.group(2)
    if text.isdigit():
        return None, text
    host, _, port = text.partition(":")
    return host.lower() or None, port if port.isdigit() else None


def _settings_in_line(line, env, kind):
    """The settings (names) whose value holds the host the log line names, else (not for a name that does not
    resolve) the port it names."""
    hosts = set()
    ports = set()
    for host, port in _HOST_IN_LINE.findall(line):
        hosts.add(host.lower())
        if port:
            ports.add(port)
    hosts.update(word.lower() for word in _QUOTED_WORD.findall(line))
    ports.update(_PORT_IN_LINE.findall(line))
    by_host, by_port = [], []
    for name, value in sorted(env.items()):
        host, port = _host_port(value)
        if host and host in hosts:
            by_host.append(name)
        elif port and port in ports and not host:
            by_port.append(name)
    return by_host or ([] if kind == "dns" else by_port)


def startup_text(startup):
    """``DATABASE_URL=postgresql://octollm:[REDACTED:api_key]@db-old:5432/octollm`` (each named setting with its
    masked value, "not set" when the container has none)."""
    parts = []
    for name, value in (startup.get("settings") or {}).items():
        parts.append("%s=%s" % (name, value) if value is not None else "%s (not set)" % name)
    return " or ".join(parts)


def _setting_named(lines):
    for line in reversed(lines or []):
        for word in _SETTING.findall(line):
            if word not in ("ERROR", "INFO", "WARNING", "CRITICAL", "DEBUG", "FATAL"):
                return word
    return None


def override_with(override, service, mem_limit):
    """The override document with ``services.<service>.mem_limit`` (and memswap_limit) set; other keys kept."""
    doc = dict(override or {})
    services = dict(doc.get("services") or {})
    entry = dict(services.get(service) or {})
    entry["mem_limit"] = mem_limit
    entry["memswap_limit"] = mem_limit
    services[service] = entry
    doc["services"] = services
    return doc


# --- prevention ----------------------------------------------------------------------------------------------
def prevention(evidence, settings=None):
    """The seed's prevention list, read from the live containers (docker inspect)."""
    s = _settings(settings)
    f = Facts(evidence, s)
    checks = [
        (
            "prevent.containers.healthcheck",
            "Every service has a healthcheck",
            "healthcheck",
            lambda r: r.get("healthcheck"),
            "healthcheck: {test: [...], interval: 10s, timeout: 2s, retries: 3}",
        ),
        (
            "prevent.containers.restart_policy",
            "Every service restarts by itself (restart: unless-stopped)",
            "unless-stopped",
            lambda r: (r.get("restart_policy") or {}).get("name") in RESTART_POLICIES,
            "restart: unless-stopped",
        ),
        (
            "prevent.containers.memory_limit",
            "Every service has a memory limit",
            "mem_limit",
            lambda r: bool(r.get("memory_limit")),
            "mem_limit: <bytes>",
        ),
        (
            "prevent.containers.memory_reservation",
            "Every service has a memory reservation",
            "mem_reservation",
            lambda r: bool(r.get("memory_reservation")),
            "mem_reservation: <bytes>",
        ),
        (
            "prevent.containers.cpu_limit",
            "Every service has a CPU limit",
            "cpus",
            lambda r: bool(r.get("nano_cpus")),
            "cpus: <n>",
        ),
    ]
    findings = []
    actions = []
    for check, title, expected, test, line in checks:
        if f.containers is None:
            findings.append(unknown(check, title, expected, f.containers_error))
            continue
        missing = sorted({r.get("service") for r in f.records if not test(r)})
        if missing:
            findings.append(
                finding(check, title, "warning", "missing on %s" % ", ".join(missing), expected, {"services": missing})
            )
            actions.append(
                action(
                    "%s.prevent.report_%s" % (NAME, check.rsplit(".", 1)[-1]),
                    None,
                    "add %s to %s" % (expected, ", ".join(missing)),
                    "compose:prevent:%s" % expected,
                    {"services": missing, "line": line},
                    "report",
                    "L1: add `%s` to %s in the Compose file (or %s), then docker compose up -d"
                    % (line, ", ".join(missing), s.get("override_file") or "the override file"),
                )
            )
        else:
            findings.append(finding(check, title, "ok", "all %d services" % len(f.by_service), expected))
    return {"findings": findings, "actions": gate(actions, dry_run=s.get("dry_run", False)), "context": {}}


# --- evidence needs --------------------------------------------------------------------------------------------
def describe_services(context):
    """``{service: {url, port, health_path, ready_path, found_by, project, compose_service, container_names, labels,
    depends_on}}``: the services as the inventory describes them (``context.service``)."""
    project = (context.inventory.get("compose") or {}).get("project")
    described = {}
    for name in sorted(context.inventory.get("services") or {}):
        spec = context.service(name)
        entry = {
            "url": spec.get("url"),
            "port": spec.get("port"),
            "health_path": spec.get("health_path") or "",
            "ready_path": spec.get("ready_path") or "",
            "project": spec.get("compose_project") or project,
            "compose_service": spec.get("compose_service") or name,
            "container_names": [str(item) for item in spec.get("container_names") or []],
            "labels": dict((str(k), str(v)) for k, v in (spec.get("labels") or {}).items()),
            "depends_on": [str(item) for item in spec.get("depends_on") or []],
        }
        entry["found_by"] = found_by(entry)
        described[name] = entry
    return described


def probe_targets(context, settings):
    """``{probe service: [host:port]}`` from each probe service's described ``depends_on`` (a dependency's host is its
    first container name or its Compose service; a dependency without a port is not probed), or None while the
    inventory names no service's dependencies (the seed's ``dependency_targets`` then). A fallback probe service
    that is described without dependencies probes those of the services before it, from the same network: when the
    orchestrator is down, its database is still probed from inside the stack."""
    if not context.dependencies_described():
        return None
    described = describe_services(context)
    targets = {}
    for name in settings["probe_services"] or []:
        found = []
        for dependency in (described.get(name) or {}).get("depends_on") or []:
            spec = described.get(dependency) or {}
            if not spec.get("port"):
                continue
            host = (spec.get("container_names") or [None])[0] or spec.get("compose_service") or dependency
            found.append("%s:%s" % (host, spec["port"]))
        if not (described.get(name) or {}).get("depends_on"):
            found = [item for earlier in targets.values() for item in earlier]
            found = [item for index, item in enumerate(found) if item not in found[:index]]
        targets[name] = found
    return targets


def setting_names(context, meanings=None):
    """``{service: {meaning: name}}`` of the described services' settings (``meanings``: those only), None left out."""
    names = {}
    for service in sorted(context.inventory.get("services") or {}):
        spec = context.service(service)
        every = list(meanings) if meanings is not None else sorted(
            set(context.inventory.get("setting_names") or {}) | set(spec.get("settings") or {})
        )
        mine = {}
        for meaning in every:
            name = context.setting_name(service, meaning)
            if name:
                mine[meaning] = str(name)
        names[service] = mine
    return names


def ready_services(settings):
    """The services the inventory gives a readiness path (and a url to reach it at)."""
    return sorted(
        name for name, spec in (settings.get("described") or {}).items() if spec.get("url") and spec.get("ready_path")
    )


def health_path(name, spec, settings):
    """The described health path, else the role's path for the service (the seed's services without /health), else
    /health."""
    return (spec or {}).get("health_path") or (settings["health_paths"] or {}).get(name) or "/health"


def probes(services, settings):
    """``{exec_probes, http_probes}``: the health endpoint of every service with a url (and its readiness where the
    inventory names one), the dependency probes from inside the stack (one per probe service, the first that runs is
    used), pg_isready and Redis PING."""
    s = settings
    described = s.get("described") or {}
    http_probes = [
        {
            "name": HEALTH_PROBE_PREFIX + name,
            "service": name,
            "path": health_path(name, described.get(name) or spec, s),
            "timeout": 3.0,
            "expect_status": [200],
        }
        for name, spec in sorted((services or {}).items())
        if isinstance(spec, dict) and spec.get("url")
    ]
    http_probes.extend(
        {
            "name": READY_PROBE_PREFIX + name,
            "service": name,
            "path": described[name]["ready_path"],
            "timeout": 3.0,
            "expect_status": [200],
        }
        for name in ready_services(s)
    )
    exec_probes = []
    for name in s["probe_services"] or []:
        targets = (s.get("probe_targets") or {}).get(name) if s.get("probe_targets") is not None else s[
            "dependency_targets"]
        if not targets:
            continue  # it depends on nothing that can be probed
        exec_probes.append(
            {"service": name, "name": DEPENDENCY_PROBE_PREFIX + name, "cmd": DEPENDENCY_CMD % " ".join(targets),
             "timeout": 8.0}
        )
    if s["pg_isready_cmd"]:
        exec_probes.append(
            {"service": "postgres", "name": PG_ISREADY_PROBE, "cmd": s["pg_isready_cmd"], "timeout": 5.0}
        )
    if s["redis_ping_cmd"]:
        exec_probes.append({"service": "redis", "name": REDIS_PING_PROBE, "cmd": s["redis_ping_cmd"], "timeout": 5.0})
    return {"exec_probes": exec_probes, "http_probes": http_probes}


def verify_identity(findings, actions):
    """The verification's identity check (``fix.identity``) of the starts and restarts that were applied: each
    container the fix started (``change.fixed``, read by the action file after it) runs now, found as the service's
    container, with the image the service ran before the fix - not merely something answering on its port."""
    fixed = [
        item for item in actions or []
        if item.get("status") == "applied" and isinstance((item.get("change") or {}).get("fixed"), list)
    ]
    if not fixed:
        return []
    title = "The container that runs and answers is the one the fix started"
    expected = "each started container runs as its service's, with the image it ran before"
    running = next((item for item in findings if item.get("check") == "containers.running"), None)
    identity = ((running or {}).get("evidence") or {}).get("identity")
    scenario = fixed[0].get("scenario")
    if identity is None:
        return [unknown("fix.identity", title, expected,
                        {"kind": "other", "message": "the containers after the fix were not read"}, scenario)]
    problems, confirmed = [], []
    evidence = {}
    for item in fixed:
        change = item["change"]
        service = change.get("service")
        now = identity.get(service) or []
        running_now = dict((c.get("id"), c) for c in now if c.get("running"))
        images_before = set(b.get("image") for b in (item.get("_target") or {}).get("before") or [] if b.get("image"))
        evidence[service] = {"started": change["fixed"], "now": now, "images_before": sorted(images_before)}
        if not change["fixed"]:
            problems.append("%s: the fix left no container of it" % service)
        for started in change["fixed"]:
            label = "%s (%s)" % (started.get("name"), started.get("id"))
            if started.get("id") not in running_now:
                problems.append(
                    "%s: %s, which the fix started, is not the container that runs now (running: %s)"
                    % (service, label, ", ".join("%s (%s)" % (c["name"], c["id"]) for c in running_now.values())
                       or "none")
                )
            elif images_before and started.get("image") not in images_before:
                problems.append(
                    "%s: %s runs image %s; before the fix it ran %s"
                    % (service, label, started.get("image"), ", ".join(sorted(images_before)))
                )
            else:
                confirmed.append("%s: %s runs %s" % (service, label, started.get("image")))
    if problems:
        return [finding("fix.identity", title, "problem", "; ".join(problems), expected, evidence, scenario)]
    return [finding("fix.identity", title, "ok", "; ".join(confirmed), expected, evidence)]


# Kubernetes: the API reads of one evidence task (names prefixed: the evidence is shared by the procedures).
K8S_READS = {
    "service_unavailable_pods": {"kind": "Pod"},
    "service_unavailable_deployments": {"kind": "Deployment", "api_version": "apps/v1"},
    "service_unavailable_statefulsets": {"kind": "StatefulSet", "api_version": "apps/v1"},
    "service_unavailable_replicasets": {"kind": "ReplicaSet", "api_version": "apps/v1"},
    "service_unavailable_services": {"kind": "Service"},
    "service_unavailable_endpoints": {"kind": "Endpoints"},
    "service_unavailable_events": {"kind": "Event", "field_selector": "type=Warning"},
    "service_unavailable_pdbs": {"kind": "PodDisruptionBudget", "api_version": "policy/v1"},
}


# --- the procedure ------------------------------------------------------------------------------------
class ServiceUnavailable(Procedure):
    name = NAME
    title = "Service Unavailable"
    scenarios = SCENARIOS
    modules = {"compose": "service_unavailable", "kubernetes": "service_unavailable_kubernetes"}

    def settings(self, role_settings, context):
        s = super(ServiceUnavailable, self).settings(role_settings, context)
        compose = context.inventory.get("compose") or {}
        # the deployment as the inventory describes it: its services and how a fix reaches them, each probe
        # service's dependencies, the names of the settings a startup failure is read against
        s["described"] = describe_services(context)
        s["compose_project"] = compose.get("project")
        s["compose_project_dir"] = compose.get("project_dir")
        s["probe_targets"] = probe_targets(context, s)
        s["startup_setting_names"] = setting_names(context, s["startup_settings"])
        # scenario B writes the last Compose file named *override* (the lab's state dir holds it)
        overrides = [path for path in compose.get("files") or [] if "override" in str(path)]
        s["override_file"] = overrides[-1] if overrides else None
        # the env file a configuration error (D) is fixed in
        s["env_files"] = [compose["services_env_file"]] if compose.get("services_env_file") else []
        if context.kubernetes:
            s["namespace"] = context.inventory["k8s"]["namespace"]
        # the emergency restart's backup: the deployment's database and tables (by meaning), where it goes
        s["database"] = (context.inventory.get("postgres") or {}).get("database") or "octollm"
        s["emergency_backup_tables"] = [context.table(m) for m in s["emergency_backup_tables"] or []]
        if not s["emergency_backup_dir"]:
            from ansible_collections.octollm.remediation.plugins.plugin_utils.data_corruption import default_backup_dir

            s["emergency_backup_dir"] = default_backup_dir(context.get("run_dir"))
        return s

    def needs(self, settings, context):
        """On Compose every container (stats, log tails, the exec probes from inside the stack, ``docker compose
        config``) and the health endpoints; on Kubernetes the API reads."""
        if context.kubernetes:
            return {"kubernetes": {"objects": K8S_READS}}
        # what the inventory describes now (the settings may have been derived from another inventory in a test)
        s = dict(settings, described=describe_services(context), probe_targets=probe_targets(context, settings))
        found = probes(context.inventory.get("services"), s)
        containers = {
            "stats": True,
            "stats_sample_seconds": s["stats_sample_seconds"],
            "logs": {"tail": s["log_tail"], "since_seconds": s["log_since_seconds"]},
            "exec_probes": found["exec_probes"],
        }
        # the values of the described settings (masked by the collector): what a startup failure report names
        names = sorted(set(name for mine in setting_names(context).values() for name in mine.values()))
        if names:
            containers["environment"] = {"names": names}
        compose = context.inventory.get("compose") or {}
        if compose.get("project_dir"):
            containers["compose_config"] = {
                "project_dir": compose["project_dir"],
                "files": list(compose.get("files") or []),
                "env_file": compose.get("env_file") or None,
            }
        return {"containers": containers, "http": {"probes": found["http_probes"]}}


    def verification(self, findings, actions, settings, context):
        """The fresh findings, and whether the containers (Compose) or pods (Kubernetes: new uids) that run after a
        start or restart are those the fix started, with the image the service ran before (``fix.identity``)."""
        if context.kubernetes:
            from ansible_collections.octollm.remediation.plugins.plugin_utils.service_unavailable_kubernetes import (
                verify_identity as verify_pods,
            )

            return list(findings) + verify_pods(findings, actions)
        return list(findings) + verify_identity(findings, actions)


PROCEDURE = ServiceUnavailable()
