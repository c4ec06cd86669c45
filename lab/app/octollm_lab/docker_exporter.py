"""docker-exporter: per-container CPU, memory, restarts, OOM kills and health from the Docker API.

Run: python3 -m octollm_lab.docker_exporter (needs the Docker socket)

| variable | default | meaning |
|---|---|---|
| EXPORTER_PORT | 9417 | |
| DOCKER_HOST | unix:///var/run/docker.sock | read by the docker SDK |
| EXPORTER_CACHE_SECONDS | 1 | pause between two readings of the Docker API (a scrape serves the latest) |
| EXPORTER_WORKERS | 32 | containers read concurrently |
| EXPORTER_DOCKER_TIMEOUT | 10 | seconds per Docker API call |
| EXPORTER_COMPOSE_PROJECT | "" | only containers of this Compose project ("" = all) |

Metrics, labels name, compose_service, compose_project: container_memory_usage_bytes,
container_memory_working_set_bytes (usage less inactive file cache, as cAdvisor),
container_spec_memory_limit_bytes (0 when unlimited), container_cpu_usage_seconds_total,
container_restart_count, container_oom_killed (0/1), container_running (0/1),
container_health_status{status} (1 for the current one of starting, healthy, unhealthy, none).
Also docker_exporter_up (Docker API reachable) and docker_exporter_scrape_duration_seconds.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .common import Logger, env_float, env_int, env_str, service_name
from .web import App

LABELS = ["name", "compose_service", "compose_project"]
HEALTH_STATES = ("starting", "healthy", "unhealthy", "none")


def one_shot_stats(api, container_id):
    """One stats sample without the daemon's 1 s priming (Docker 20.10+ `one-shot`)."""
    try:
        return api.stats(container_id, stream=False, one_shot=True)
    except TypeError:  # docker SDK < 6.1 has no one_shot argument: ask the API directly
        url = api._url("/containers/{0}/stats", container_id)
        return api._result(api._get(url, params={"stream": False, "one-shot": True}), True)


def read_container(api, container_id):
    info = api.inspect_container(container_id)
    state = info.get("State") or {}
    labels = (info.get("Config") or {}).get("Labels") or {}
    reading = {
        "labels": [info.get("Name", "").lstrip("/"), labels.get("com.docker.compose.service", ""),
                   labels.get("com.docker.compose.project", "")],
        "running": bool(state.get("Running")), "oom_killed": bool(state.get("OOMKilled")),
        "restart_count": info.get("RestartCount", 0),
        "health": ((state.get("Health") or {}).get("Status") or "none"),
        "limit": (info.get("HostConfig") or {}).get("Memory") or 0,
        "usage": None, "working_set": None, "cpu_seconds": None,
    }
    if reading["running"]:
        stats = one_shot_stats(api, container_id)
        memory = stats.get("memory_stats") or {}
        usage = memory.get("usage", 0)
        detail = memory.get("stats") or {}
        inactive = detail.get("inactive_file", detail.get("total_inactive_file", 0))
        reading["usage"] = usage
        reading["working_set"] = max(0, usage - inactive)
        cpu = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage", 0)
        reading["cpu_seconds"] = cpu / 1e9
    return reading


class DockerCollector:
    """Reads the Docker API in a background loop; a scrape serves the latest reading at once.

    The daemon publishes stats once a second, so one stats call waits up to 1 s: reading on
    each scrape would make a scrape slower than the lab's scrape interval.
    """

    def __init__(self, log, refresh_seconds=1.0, workers=32, project="", timeout=10, client_factory=None):
        self.log = log
        self.refresh_seconds = refresh_seconds
        self.project = project
        self.timeout = timeout
        self.client_factory = client_factory
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self._client = None
        self._latest = None  # (readings, up, duration)
        self._lock = threading.Lock()

    def _api(self):
        if self._client is None:
            import docker  # imported here: only this service needs it
            factory = self.client_factory or (lambda: docker.from_env(timeout=self.timeout))
            self._client = factory()
        return self._client.api

    def refresh(self):
        started = time.monotonic()
        try:
            api = self._api()
            filters = {"label": "com.docker.compose.project=" + self.project} if self.project else None
            ids = [c["Id"] for c in api.containers(all=True, filters=filters)]
            readings = [r for r in self.pool.map(lambda cid: self._read(api, cid), ids) if r]
            up = True
        except Exception as exc:
            self.log.error("docker api error", error=exc)
            self._client = None
            readings, up = [], False
        with self._lock:
            self._latest = (readings, up, time.monotonic() - started)

    def start(self):
        def loop():
            while True:
                self.refresh()
                time.sleep(self.refresh_seconds)
        threading.Thread(target=loop, name="docker-refresh", daemon=True).start()

    def snapshot(self):
        """(readings, up, duration) of the latest reading."""
        if self._latest is None:
            self.refresh()
        with self._lock:
            return self._latest

    def _read(self, api, container_id):
        try:
            return read_container(api, container_id)
        except Exception as exc:  # a container that vanished mid-scrape
            self.log.debug("container read failed", id=container_id[:12], error=exc)
            return None

    def describe(self):
        return []  # no Docker call at registration time

    def collect(self):
        readings, up, duration = self.snapshot()
        gauges = {name: GaugeMetricFamily(name, doc, labels=LABELS) for name, doc in (
            ("container_memory_usage_bytes", "Memory usage including cache"),
            ("container_memory_working_set_bytes", "Memory usage less inactive file cache"),
            ("container_spec_memory_limit_bytes", "Memory limit (0: unlimited)"),
            ("container_restart_count", "Restarts by the Docker restart policy"),
            ("container_oom_killed", "1 when the last exit was an OOM kill"),
            ("container_running", "1 when the container is running"))}
        cpu = CounterMetricFamily("container_cpu_usage_seconds", "CPU time consumed", labels=LABELS)
        health = GaugeMetricFamily("container_health_status", "Docker health status",
                                   labels=LABELS + ["status"])
        for r in readings:
            labels = r["labels"]
            gauges["container_spec_memory_limit_bytes"].add_metric(labels, r["limit"])
            gauges["container_restart_count"].add_metric(labels, r["restart_count"])
            gauges["container_oom_killed"].add_metric(labels, int(r["oom_killed"]))
            gauges["container_running"].add_metric(labels, int(r["running"]))
            if r["usage"] is not None:
                gauges["container_memory_usage_bytes"].add_metric(labels, r["usage"])
                gauges["container_memory_working_set_bytes"].add_metric(labels, r["working_set"])
                cpu.add_metric(labels, r["cpu_seconds"])
            for status in HEALTH_STATES:
                health.add_metric(labels + [status], int(r["health"] == status))
        yield from gauges.values()
        yield cpu
        yield health
        yield GaugeMetricFamily("docker_exporter_up", "Docker API reachable", value=int(up))
        yield GaugeMetricFamily("docker_exporter_scrape_duration_seconds", "Time to read the Docker API",
                                value=duration)


def main():
    log = Logger(service_name("docker-exporter"))
    collector = DockerCollector(log, env_float("EXPORTER_CACHE_SECONDS", 1), env_int("EXPORTER_WORKERS", 32),
                                env_str("EXPORTER_COMPOSE_PROJECT"), env_float("EXPORTER_DOCKER_TIMEOUT", 10))
    REGISTRY.register(collector)
    collector.start()
    app = App(log.service, log)
    app.add("GET", "/", lambda req: "docker-exporter: see /metrics\n")
    app.add("GET", "/health", lambda req: {"status": "ok"})
    app.serve(env_int("EXPORTER_PORT", 9417))


if __name__ == "__main__":
    main()
