"""Fault helper: an application that writes session keys without TTL into Redis, forever.

Runs in its own container (octollm-fault-redis-filler). It fills memory up to maxmemory, then keeps
writing FILL_KEYS_PER_SECOND keys, so memory freed by expiring cache keys is taken again: under
`noeviction` the cache can no longer store anything. Removing the container stops it.
"""
import os
import time
import uuid

import redis

client = redis.Redis(host="127.0.0.1", port=6379, password=os.environ["REDIS_PASSWORD"], socket_timeout=5)
prefix = os.environ.get("FILL_PREFIX", "fill:session:")
rate = float(os.environ.get("FILL_KEYS_PER_SECOND", "100"))
value = b"x" * int(os.environ.get("FILL_VALUE_BYTES", "4096"))


def write(count):
    pipe = client.pipeline(transaction=False)
    for _ in range(count):
        pipe.set(prefix + uuid.uuid4().hex, value)
    try:
        pipe.execute()
        return True
    except redis.exceptions.ResponseError as exc:  # OOM: memory is full
        if "OOM" not in str(exc) and "maxmemory" not in str(exc):
            raise
        return False


while write(500):  # fill fast until Redis refuses
    pass
print("full", flush=True)
while True:
    write(max(1, int(rate / 10)))
    time.sleep(0.1)
