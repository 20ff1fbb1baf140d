"""Adapter deletions from the control plane: ADAPTERS_DELETED_CHANNEL (contracts; pub/sub) carries the deleted
adapter's uid.

The worker drops the uid from its caches and unpublishes its prefix-cache blocks. Redis being down never stops the
worker serving; the subscription is retried (contracts.pubsub). A message missed while disconnected costs only cold
cache entries: uids are never reused, the store's files are deleted before the message is sent, and the gateway stops
routing the adapter, so nothing can reach them again.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from contracts import ADAPTERS_DELETED_CHANNEL
from contracts.pubsub import listen_forever

log = logging.getLogger("hearth.worker.adapters")


class AdapterDeletions:
    def __init__(self, *, redis_url: str, on_deleted: Callable[[str], Awaitable[object]], retry_s: float = 1.0):
        self._on_deleted = on_deleted
        self._retry_s = retry_s
        # No socket timeout: a subscription is idle most of the time; the health check pings a silent connection.
        self._redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=0.5, health_check_interval=30)
        self._task: asyncio.Task[None] | None = None
        self.num_dropped = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(
            listen_forever(self._redis, ADAPTERS_DELETED_CHANNEL, self._handle, retry_s=self._retry_s),
            name="adapter-deletions",
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._redis.aclose()

    async def _handle(self, uid: str) -> None:
        try:
            blocks = await self._on_deleted(uid)
        except Exception:  # one bad message must not end the subscription
            log.exception("dropping deleted adapter %s failed", uid)
            return
        self.num_dropped += 1
        log.info("adapter %s deleted: dropped from the caches (%s prefix blocks unpublished)", uid, blocks)
