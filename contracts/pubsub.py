"""A Redis pub/sub subscription that lives as long as the process (asyncio, redis.asyncio).

It resubscribes after any Redis error, logging once when it fails and once when it recovers, and then calls
`on_resubscribed`: messages published while it was away are lost, so owners drop what they would have changed.
A handler that raises is logged and the subscription goes on (one bad message must not end it).
"""

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("hearth.pubsub")

MessageHandler = Callable[[str], Awaitable[object] | object]


async def listen_forever(
    client: aioredis.Redis,
    channel: str,
    on_message: MessageHandler,
    on_resubscribed: Callable[[], object] | None = None,
    *,
    retry_s: float = 0.5,
    poll_s: float = 1.0,
) -> None:
    """Runs until cancelled. Each message's data is decoded, stripped, and passed on unless empty; `on_message` may be
    a plain function or a coroutine function. `poll_s` bounds a read, so a socket timeout on `client` never fires on
    an idle subscription."""
    connected_before = False
    healthy = True
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            if connected_before and on_resubscribed is not None:
                on_resubscribed()
            if not healthy:
                log.info("%s subscription recovered", channel)
            connected_before, healthy = True, True
            while True:
                message = await pubsub.get_message(timeout=poll_s)
                if message is not None and message.get("type") == "message":
                    await _deliver(channel, message.get("data"), on_message)
        except (RedisError, OSError) as exc:
            if healthy:
                log.warning("%s subscription lost (%s: %s); retrying every %.1f s", channel, type(exc).__name__,
                            exc, retry_s)
            healthy = False
            await asyncio.sleep(retry_s)
        finally:
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass


async def _deliver(channel: str, data: object, on_message: MessageHandler) -> None:
    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data or "")
    text = text.strip()
    if not text:
        return
    try:
        result = on_message(text)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a handler's bug must not end the subscription
        log.exception("handling a message on %s failed", channel)
