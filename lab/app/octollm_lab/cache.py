"""The orchestrator's Redis caches (the seed's Cache Performance Issues).

| variable | default | meaning |
|---|---|---|
| RESPONSE_CACHE_ENABLED | true | cache LLM answers in Redis |
| CACHE_TTL | 300 | seconds, SETEX of every cache key |
| ENTITY_WARM_COUNT | 100 | entities warmed (top by access_count) |

Keys: `llm:<md5(model+prompt)>` (LLM answers), `arm:capability:<name>` and `entity:<id>` (warming).
Metrics: cache_hits_total{cache_type}, cache_misses_total{cache_type}, cache_errors_total{cache_type}
(under METRICS_PREFIX when set).
A Redis error (e.g. "OOM command not allowed" under noeviction) is logged and counted, never fatal.
"""

import hashlib
import json

from prometheus_client import Counter

from .common import metric_name

CACHE_HITS = Counter(metric_name("cache_hits_total"), "Cache hits", ["cache_type"])
CACHE_MISSES = Counter(metric_name("cache_misses_total"), "Cache misses", ["cache_type"])
CACHE_ERRORS = Counter(metric_name("cache_errors_total"), "Cache read/write errors", ["cache_type"])


def llm_cache_key(model, prompt):
    return "llm:" + hashlib.md5((model + prompt).encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, redis_client, ttl, enabled, log, cache_type="llm"):
        self.redis = redis_client
        self.ttl = ttl
        self.enabled = enabled
        self.log = log
        self.cache_type = cache_type
        # the series exist (at 0) from the start, as a real exporter's should: a restarted service is not "no metrics"
        for counter in (CACHE_HITS, CACHE_MISSES, CACHE_ERRORS):
            counter.labels(cache_type)

    def get(self, key):
        try:
            value = self.redis.get(key)
        except Exception as exc:  # redis down or refusing: a miss, not a failure
            CACHE_ERRORS.labels(self.cache_type).inc()
            self.log.warning("cache read failed", key=key, error=exc)
            value = None
        (CACHE_HITS if value is not None else CACHE_MISSES).labels(self.cache_type).inc()
        return value

    def set(self, key, value):
        try:
            self.redis.setex(key, self.ttl, value)
            return True
        except Exception as exc:
            CACHE_ERRORS.labels(self.cache_type).inc()
            self.log.warning("cache write failed", key=key, error=exc)
            return False

    def get_or_compute(self, key, compute):
        """Return (value, cached)."""
        if not self.enabled:
            return compute(), False
        value = self.get(key)
        if value is not None:
            return (value.decode("utf-8") if isinstance(value, bytes) else value), True
        value = compute()
        self.set(key, value)
        return value, False


def warm_cache(redis_client, arms, entities, ttl, log):
    """SETEX arm capabilities and entities; return how many keys were written."""
    pipe = redis_client.pipeline(transaction=False)
    for arm in arms:
        pipe.setex("arm:capability:{}".format(arm["name"]), ttl, json.dumps(arm))
    for entity in entities:
        pipe.setex("entity:{}".format(entity["entity_id"]), ttl, json.dumps(entity, default=str))
    warmed = 0
    for result in pipe.execute(raise_on_error=False):
        if isinstance(result, Exception):
            CACHE_ERRORS.labels("warm").inc()
            log.warning("cache write failed", error=result)
        else:
            warmed += 1
    log.info("cache warmed", warmed=warmed, arms=len(arms), entities=len(entities))
    return warmed
