"""The registry entry in real (embedded) Redis: its fields and TTL, surviving Redis going away, removal on exit."""

import asyncio
import json
import os
import time

import redis
from devstack.services import EmbeddedRedis

from contracts import WORKERS_SET, worker_key
from tests.workers.server._serve import MODEL, wait_until
from workers.server.heartbeat import Heartbeat

CONTRACT_FIELDS = {
    "worker_id", "url", "base_model", "kind", "region", "max_loras", "resident_adapters", "num_running", "num_waiting",
    "num_free_blocks", "updated_at",
}


def _entry(r: redis.Redis, worker_id: str) -> dict | None:
    raw = r.get(worker_key(worker_id))
    return json.loads(raw) if raw else None


def test_running_worker_registers_with_contract_fields_and_ttl(worker):
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        entry = wait_until(lambda: _entry(r, worker.worker_id))
        assert entry and set(entry) == CONTRACT_FIELDS
        assert entry["worker_id"] == worker.worker_id and entry["url"] == worker.base
        assert entry["base_model"] == MODEL and entry["region"] == "test" and entry["max_loras"] == 4
        assert entry["kind"] == "chat"
        assert entry["resident_adapters"] == [] and entry["num_free_blocks"] > 0
        assert 0 < r.ttl(worker_key(worker.worker_id)) <= 3
        assert r.sismember(WORKERS_SET, worker.worker_id)
        # Rewritten every second.
        assert wait_until(lambda: (_entry(r, worker.worker_id) or {}).get("updated_at", 0) > entry["updated_at"], 5)
    finally:
        r.close()


def test_heartbeat_survives_redis_going_away_and_recovers(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    port = server.port
    r = redis.Redis.from_url(url)

    async def scenario() -> None:
        beat = Heartbeat(redis_url=url, worker_id="hb-test", payload=lambda: {"worker_id": "hb-test"},
                         interval_s=0.1)
        await beat.start()
        try:
            assert await _until(lambda: r.sismember(WORKERS_SET, "hb-test"))
            server.stop()
            failed_at = beat.num_beats
            await asyncio.sleep(1.0)  # beats fail here; the task must keep going
            assert beat.num_beats == failed_at
            assert beat._task is not None and not beat._task.done()
            server.port = port
            server.start()
            assert await _until(lambda: _entry(r, "hb-test") == {"worker_id": "hb-test"})
        finally:
            await beat.stop()
        assert not r.sismember(WORKERS_SET, "hb-test") and _entry(r, "hb-test") is None

    try:
        asyncio.run(scenario())
    finally:
        r.close()
        server.stop()


def test_heartbeat_without_redis_never_raises():
    async def scenario() -> None:
        beat = Heartbeat(redis_url="redis://127.0.0.1:1/0", worker_id="nowhere", payload=dict, interval_s=0.05)
        assert await beat.beat() is False
        await beat.start()
        await asyncio.sleep(0.3)
        assert not beat._task.done()
        await beat.stop()  # logs that it could not deregister; does not raise

    asyncio.run(scenario())


async def _until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())
