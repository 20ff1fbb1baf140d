"""Adapter deletions from the control plane: `hearth:adapters:deleted` (pub/sub) carries the deleted adapter's uid.

The worker drops the uid from its caches and unpublishes its prefix-cache blocks. Redis being down never stops the
worker serving; the subscription is retried. A message missed while disconnected costs only cold cache entries:
uids are never reused, the store's files are deleted before the message is sent, and the gateway stops routing the
adapter, so nothing can reach them again.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("hearth.worker.adapters")

DELETED_CHANNEL = "hearth:adapters:deleted"  # published by platform/adapters/services.py after the delete commits


class AdapterDeletions:
    def __init__(self, *, redis_url: str, on_deleted: Callable[[str], Awaitable[object]], retry_s: float = 1.0):
        self._on_deleted = on_deleted
        self._retry_s = retry_s
        # No socket timeout: a subscription is idle most of the time; the health check pings a silent connection.
        self._redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=0.5, health_check_interval=30)
        self._task: asyncio.Task[None] | None = None
        self.num_dropped = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="adapter-deletions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._redis.aclose()

    async def _run(self) -> None:
        healthy = True
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(DELETED_CHANNEL)
                    if not healthy:
                        log.info("adapter deletion subscription recovered")
                    healthy = True
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None and message["type"] == "message":
                            await self._handle(message["data"])
            except (RedisError, OSError) as exc:
                if healthy:
                    log.warning("adapter deletion subscription failed, retrying every %.1f s: %s", self._retry_s, exc)
                healthy = False
                await asyncio.sleep(self._retry_s)

    async def _handle(self, data: bytes) -> None:
        uid = data.decode(errors="replace").strip()
        if not uid:
            return
        try:
            blocks = await self._on_deleted(uid)
        except Exception:  # one bad message must not end the subscription
            log.exception("dropping deleted adapter %s failed", uid)
            return
        self.num_dropped += 1
        log.info("adapter %s deleted: dropped from the caches (%s prefix blocks unpublished)", uid, blocks)
