"""The worker's entry in the Redis registry (docs/contracts.md, "Redis keys"; names from contracts), rewritten every
second.

    SET  worker_key(worker_id) <JSON entry> EX 3     # gone 3 s after the last beat: a dead worker drops out
    SADD WORKERS_SET {worker_id}
    on clean shutdown: SREM WORKERS_SET {worker_id}; DEL worker_key(worker_id)

Redis being down never stops the worker serving: a failed beat is logged once (and once more when it recovers)
and retried on the next tick.
"""

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from contracts import WORKERS_SET, worker_key

log = logging.getLogger("hearth.worker.heartbeat")

ENTRY_TTL_S = 3


class Heartbeat:
    def __init__(
        self,
        *,
        redis_url: str,
        worker_id: str,
        payload: Callable[[], dict[str, Any]],
        interval_s: float = 1.0,
        ttl_s: int = ENTRY_TTL_S,
    ):
        self.worker_id = worker_id
        self._payload = payload
        self._interval_s = interval_s
        self._ttl_s = ttl_s
        # Short timeouts: a beat that hangs on a dead Redis would delay the next one past the TTL.
        self._redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self._task: asyncio.Task[None] | None = None
        self._healthy = True
        self.num_beats = 0  # successful writes, for tests and /health-style introspection

    async def beat(self) -> bool:
        entry = json.dumps(self._payload(), separators=(",", ":"))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(worker_key(self.worker_id), entry, ex=self._ttl_s)
                pipe.sadd(WORKERS_SET, self.worker_id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            if self._healthy:
                log.warning("registry heartbeat failed, retrying every %.1f s: %s", self._interval_s, exc)
            self._healthy = False
            return False
        if not self._healthy:
            log.info("registry heartbeat recovered")
        self._healthy = True
        self.num_beats += 1
        return True

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self._interval_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"heartbeat-{self.worker_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.srem(WORKERS_SET, self.worker_id)
                pipe.delete(worker_key(self.worker_id))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not remove the registry entry (it expires in %d s): %s", self._ttl_s, exc)
        finally:
            await self._redis.aclose()
