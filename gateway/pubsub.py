"""A Redis pub/sub subscription that lives as long as the process: it resubscribes after an outage and tells its
owner, since messages published while it was away are lost (owners drop what those messages would have changed)."""

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

log = logging.getLogger("hearth.gateway")


async def listen_forever(
    client: aioredis.Redis, channel: str, on_message: Callable[[str], None], on_resubscribed: Callable[[], None]
) -> None:
    first = True
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            if not first:
                on_resubscribed()
            first = False
            async for message in pubsub.listen():
                data = message.get("data")
                if isinstance(data, bytes):
                    on_message(data.decode().strip())
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            log.warning("%s subscription lost (%s); resubscribing", channel, type(exc).__name__)
            await asyncio.sleep(0.5)
        finally:
            try:
                await pubsub.aclose()
            except (aioredis.RedisError, OSError):
                pass
