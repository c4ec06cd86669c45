"""The orchestrator's registry of arms: registrations, and health polled from each arm.

| variable | default | meaning |
|---|---|---|
| EXPECTED_ARMS | the six lab arms | names reported as "unregistered" in /health until they register |
| ARM_HEALTH_INTERVAL | 10 | seconds between health polls of the registered arms |
| ARM_HEALTH_TIMEOUT | 2 | seconds |
| ARM_REGISTRATION_TTL | 120 | seconds a registration shared through Redis stays valid for other replicas |

Registrations are kept in memory and mirrored to the Redis hash `octollm:arms`, so that
orchestrator replicas sharing one port (an arm registers with whichever one answers) all
learn every arm. An arm that stops registering drops out of the others after the TTL.
"""

import json
import threading
import time

import requests

from .routing import DEFAULT_ARMS, ArmCapability

REDIS_HASH = "octollm:arms"
HEALTHY, UNHEALTHY, UNREGISTERED = "healthy", "unhealthy", "unregistered"


class ArmRegistry:
    def __init__(self, log, redis_client=None, expected=tuple(DEFAULT_ARMS), health_timeout=2.0,
                 registration_ttl=120.0, session=None):
        self.log = log
        self.redis = redis_client
        self.expected = list(expected)
        self.health_timeout = health_timeout
        self.registration_ttl = registration_ttl
        self.session = session or requests.Session()
        self._arms = {}     # name -> ArmCapability
        self._health = {}   # name -> (status, checked_at)
        self._registered_at = {}
        self._lock = threading.Lock()

    def register(self, capability, registered_at=None, mirror=True):
        now = registered_at or time.time()
        with self._lock:
            known = self._arms.get(capability.name)
            self._arms[capability.name] = capability
            self._registered_at[capability.name] = now
            if mirror or known is None:
                self._health[capability.name] = (HEALTHY, now)
        if mirror:
            self.log.info("arm registered", name=capability.name, url=capability.url,
                          domain=capability.domain, keywords=",".join(capability.keywords))
            self._mirror(capability, now)

    def _mirror(self, capability, now):
        if self.redis is None:
            return
        try:
            self.redis.hset(REDIS_HASH, capability.name,
                            json.dumps(dict(capability.to_dict(), registered_at=now)))
        except Exception as exc:
            self.log.warning("arm registry mirror failed", name=capability.name, error=exc)

    def sync_from_redis(self):
        if self.redis is None:
            return
        try:
            entries = self.redis.hgetall(REDIS_HASH)
        except Exception as exc:
            self.log.debug("arm registry sync failed", error=exc)
            return
        now = time.time()
        for raw in entries.values():
            data = json.loads(raw)
            registered_at = float(data.pop("registered_at", 0))
            name = data.get("name")
            if now - registered_at > self.registration_ttl:
                continue
            if registered_at > self._registered_at.get(name, 0):
                self.register(ArmCapability.from_dict(data), registered_at, mirror=False)

    def arms(self):
        with self._lock:
            return dict(self._arms)

    def get(self, name):
        with self._lock:
            return self._arms.get(name)

    def is_healthy(self, name):
        with self._lock:
            return self._health.get(name, (UNREGISTERED, 0))[0] == HEALTHY

    def set_health(self, name, status):
        with self._lock:
            previous = self._health.get(name, (UNREGISTERED, 0))[0]
            self._health[name] = (status, time.time())
        if previous != status:
            log = self.log.info if status == HEALTHY else self.log.warning
            log("arm health changed", name=name, status=status, previous=previous)

    def health_summary(self):
        with self._lock:
            summary = {name: UNREGISTERED for name in self.expected}
            summary.update({name: status for name, (status, _) in self._health.items()})
            return summary

    def describe(self):
        with self._lock:
            return [dict(arm.to_dict(), health=self._health.get(name, (UNREGISTERED, 0))[0],
                         last_health_check=self._health.get(name, (None, 0))[1],
                         registered_at=self._registered_at.get(name))
                    for name, arm in sorted(self._arms.items())]

    def poll_once(self):
        for name, arm in self.arms().items():
            try:
                response = self.session.get(arm.url + "/health", timeout=self.health_timeout)
                status = HEALTHY if response.status_code == 200 else UNHEALTHY
            except requests.RequestException:
                status = UNHEALTHY
            self.set_health(name, status)

    def start(self, interval):
        def loop():
            while True:
                self.sync_from_redis()
                self.poll_once()
                time.sleep(interval)
        threading.Thread(target=loop, name="arm-health", daemon=True).start()
