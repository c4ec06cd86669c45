"""Fault switches in application code, present on every service (see web.App).

| variable | default | meaning |
|---|---|---|
| LEAK_MEMORY_MB_PER_SECOND | 0 | start the memory leak at boot at this rate (0: off) |
| MEMORY_TRACE | false | start tracemalloc so /debug/memory shows the top allocations |
| DEBUG_DELAYS | "" | slow hops, `target=ms,...` (e.g. `planner-arm=500`) |

Endpoints: POST /debug/leak {"mb_per_second": n, "enabled": bool, "clear": bool},
GET /debug/memory, GET|POST /debug/delay {"target": name, "ms": n}.
"""

import gc
import threading
import time
import tracemalloc

from .common import env_bool, env_float, env_str

CHUNK_BYTES = 1024 * 1024


class MemoryLeaker:
    """An unbounded in-process cache that grows while enabled: the seed's `result_cache = {}`."""

    def __init__(self, log):
        self.log = log
        self.result_cache = {}  # grows forever on purpose: this is the fault
        self.mb_per_second = 0.0
        self.enabled = False
        self._lock = threading.Lock()
        self._thread = None

    def configure(self, mb_per_second=None, enabled=None, clear=False):
        with self._lock:
            if mb_per_second is not None:
                self.mb_per_second = max(0.0, float(mb_per_second))
            if enabled is not None:
                self.enabled = bool(enabled)
            if clear:
                self.result_cache.clear()
            if self.enabled and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._grow, name="memory-leak", daemon=True)
                self._thread.start()
        self.log.warning("memory leak configured", enabled=self.enabled,
                         mb_per_second=self.mb_per_second, cached_mb=self.cached_mb())
        return self.status()

    def cached_mb(self):
        return round(len(self.result_cache) * CHUNK_BYTES / 1048576, 1)

    def status(self):
        return {"enabled": self.enabled, "mb_per_second": self.mb_per_second,
                "entries": len(self.result_cache), "cached_mb": self.cached_mb()}

    def _grow(self):
        owed = 0.0
        while self.enabled:
            owed += self.mb_per_second
            while owed >= 1:
                # b"x" * n writes every page, so the memory is really resident (RSS grows).
                self.result_cache[f"result-{len(self.result_cache)}"] = b"x" * CHUNK_BYTES
                owed -= 1
            time.sleep(1)


def rss_bytes():
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def get_memory_usage():
    """The seed's helper: the top 20 object types by count."""
    gc.collect()
    object_counts = {}
    for obj in gc.get_objects():
        obj_type = type(obj).__name__
        object_counts[obj_type] = object_counts.get(obj_type, 0) + 1
    sorted_counts = sorted(object_counts.items(), key=lambda item: item[1], reverse=True)
    return sorted_counts[:20]


def top_allocations(limit=10):
    if not tracemalloc.is_tracing():
        return None
    stats = tracemalloc.take_snapshot().statistics("lineno")[:limit]
    return [{"where": str(stat.traceback), "size_bytes": stat.size, "count": stat.count}
            for stat in stats]


def memory_report(service, leaker):
    return {"service": service, "rss_bytes": rss_bytes(),
            "top_object_types": [[name, count] for name, count in get_memory_usage()],
            "tracemalloc": top_allocations(), "leak": leaker.status()}


def parse_delays(text):
    delays = {}
    for item in text.split(","):
        if "=" in item:
            target, ms = item.split("=", 1)
            delays[target.strip()] = float(ms)
    return delays


class DelayTable:
    """Extra latency per call target, in milliseconds (the slow-hop fault)."""

    def __init__(self, initial=None):
        self._delays = dict(initial or {})
        self._lock = threading.Lock()

    def set(self, target, ms):
        with self._lock:
            if ms and float(ms) > 0:
                self._delays[target] = float(ms)
            else:
                self._delays.pop(target, None)

    def get(self, target, default=0.0):
        with self._lock:
            return self._delays.get(target, default)

    def as_dict(self):
        with self._lock:
            return dict(self._delays)

    def sleep_for(self, target, default=0.0):
        ms = self.get(target, default)
        if ms > 0:
            time.sleep(ms / 1000.0)
        return ms


def start_from_env(leaker, delays):
    if env_bool("MEMORY_TRACE", False) and not tracemalloc.is_tracing():
        tracemalloc.start(10)
    rate = env_float("LEAK_MEMORY_MB_PER_SECOND", 0)
    if rate > 0:
        leaker.configure(mb_per_second=rate, enabled=True)
    for target, ms in parse_delays(env_str("DEBUG_DELAYS", "")).items():
        delays.set(target, ms)
