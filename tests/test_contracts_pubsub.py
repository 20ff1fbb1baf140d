"""contracts.pubsub.listen_forever against a real (embedded) Redis: plain and coroutine handlers, a handler that raises
doesn't end the subscription, and after Redis goes away and comes back it resubscribes and tells its owner."""

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis
from devstack.services import EmbeddedRedis

from contracts.pubsub import listen_forever

CHANNEL = "test-contracts-pubsub"  # not a Hearth name: this test owns it


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def _publish_until_heard(client: aioredis.Redis, message: str, heard: list[str]) -> bool:
    """Publish until a subscriber exists and has received it (subscribing is asynchronous)."""
    for _ in range(200):
        try:
            if await client.publish(CHANNEL, message) >= 1 and await _until(lambda: message in heard, 2.0):
                return True
        except (aioredis.RedisError, OSError):
            pass
        await asyncio.sleep(0.05)
    return False


def test_messages_handlers_and_resubscribe_after_an_outage(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    port = server.port

    async def scenario() -> None:
        heard: list[str] = []
        resubscribed: list[int] = []
        listener = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        publisher = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

        async def on_message(text: str) -> None:  # a coroutine handler; "boom" makes it raise
            if text == "boom":
                raise RuntimeError("handler bug")
            heard.append(text)

        task = asyncio.create_task(listen_forever(listener, CHANNEL, on_message, lambda: resubscribed.append(1),
                                                  retry_s=0.1, poll_s=0.2))
        try:
            assert await _publish_until_heard(publisher, "first", heard)
            await publisher.publish(CHANNEL, "boom")
            await publisher.publish(CHANNEL, "  \n")  # blank: dropped, not delivered
            assert await _publish_until_heard(publisher, "after-the-bug", heard)
            assert heard == ["first", "after-the-bug"] and not resubscribed

            server.stop()
            await asyncio.sleep(0.6)  # the listener fails and retries meanwhile; it must not die
            assert not task.done()
            server.port = port
            server.start()
            await publisher.aclose()
            publisher = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            assert await _publish_until_heard(publisher, "after-the-outage", heard)
            assert resubscribed == [1]  # the owner learns that messages may have been lost
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await listener.aclose()
            await publisher.aclose()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_plain_function_handler(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()

    async def scenario() -> None:
        heard: list[str] = []
        client = aioredis.Redis.from_url(url)
        task = asyncio.create_task(listen_forever(client, CHANNEL, heard.append, poll_s=0.2))
        try:
            assert await _publish_until_heard(client, "hashed-key", heard)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
