"""Issue 12, item 7: the gateway's background work survives every Redis refusal, not only a lost connection. Each test
runs its own embedded Redis and makes it refuse writes for real: `CONFIG SET maxmemory` below what it holds (OOM
replies, as a full Redis gives) or `REPLICAOF` a master that isn't there (READONLY replies, as a replica after a
failover gives). The reproduction: a READONLY or OOM reply killed the usage writer silently, later usage piled up in
memory and never reached billing; the rate-limit settler and admissions had the same gap (admissions: a 500)."""

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aioredis
from devstack.services import EmbeddedRedis, free_port
from redis.exceptions import OutOfMemoryError, ReadOnlyError

from contracts import USAGE_EVENT_FIELD, USAGE_STREAM, rate_limit_keys
from gateway.db import KeyRecord
from gateway.metering import Metering, UsageEvent
from gateway.ratelimit import RateLimiter
from gateway.supervisor import Supervisor

REFUSALS = ["oom", "readonly"]


@pytest.fixture
def own_redis(tmp_path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def refuse_writes(url: str, how: str) -> None:
    admin = redis.Redis.from_url(url)
    try:
        if how == "oom":
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", "1")
        else:
            admin.replicaof("127.0.0.1", str(free_port()))  # nobody listens there: a replica that stays stale
        with pytest.raises(OutOfMemoryError if how == "oom" else ReadOnlyError):  # real refusals, not outages
            admin.set("probe", "x")
    finally:
        admin.close()


def take_writes(url: str, how: str) -> None:
    admin = redis.Redis.from_url(url)
    try:
        if how == "oom":
            admin.config_set("maxmemory", "0")
        else:
            admin.replicaof("NO", "ONE")
        admin.set("probe", "x")
    finally:
        admin.close()


def _event(request_id: str) -> UsageEvent:
    now = datetime.now(UTC).isoformat()
    return UsageEvent(request_id=request_id, account_id=1, api_key_id=1, model_id=1, adapter_id=None, prompt_tokens=3,
                      cached_prompt_tokens=0, completion_tokens=4, started_at=now, finished_at=now, status="finished")


def _stream_ids(url: str) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        return [json.loads(f[USAGE_EVENT_FIELD.encode()])["request_id"] for _, f in client.xrange(USAGE_STREAM)]
    finally:
        client.close()


async def _until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", REFUSALS)
async def test_usage_writer_spools_every_refusal_and_replays_once(own_redis, tmp_path, how):
    client = aioredis.Redis.from_url(own_redis.url)
    metering = Metering(client, tmp_path / "spool", replay_interval_s=0.1)
    supervisor = Supervisor()
    supervisor.start("usage-writer", metering.run_writer)
    supervisor.start("usage-replayer", metering.run_replayer)
    try:
        metering.emit(_event("before"))
        await _until(lambda: _stream_ids(own_redis.url) == ["before"])

        refuse_writes(own_redis.url, how)
        for i in range(3):
            metering.emit(_event(f"during-{i}"))
        await _until(lambda: metering.num_spooled == 3)
        metering.emit(_event("still-during"))  # the writer is alive and still takes events
        await _until(lambda: metering.num_spooled == 4)
        assert supervisor.running() == {"usage-writer": True, "usage-replayer": True}
        assert supervisor.num_restarts == {"usage-writer": 0, "usage-replayer": 0}

        take_writes(own_redis.url, how)
        expected = ["before", "during-0", "during-1", "during-2", "still-during"]
        await _until(lambda: sorted(_stream_ids(own_redis.url)) == sorted(expected))
        assert metering.num_replayed == 4
        metering.emit(_event("after"))
        await _until(lambda: len(_stream_ids(own_redis.url)) == 6)
        assert sorted(_stream_ids(own_redis.url)) == sorted([*expected, "after"])  # each exactly once
    finally:
        await supervisor.stop()
        await client.aclose()


async def test_a_full_queue_overflows_to_the_spool_without_dropping(own_redis, tmp_path):
    client = aioredis.Redis.from_url(own_redis.url)
    metering = Metering(client, tmp_path / "spool", replay_interval_s=0.1, queue_max=5)
    try:
        for i in range(12):  # no writer running: the queue fills, the rest goes to the spool at once
            metering.emit(_event(f"r{i}"))
        assert (metering.num_overflowed, metering.num_spooled) == (7, 7)
        await metering.drain()
        assert await metering.replay() == 7
        assert sorted(_stream_ids(own_redis.url)) == sorted(f"r{i}" for i in range(12))
    finally:
        await client.aclose()


def _key() -> KeyRecord:
    return KeyRecord(key_id=7, account_id=7, account_slug="acct-7", account_status="active", rpm_limit=None,
                     tpm_limit=None, expires_at=None, revoked_at=None)


def _tpm_tokens(url: str) -> float:
    client = redis.Redis.from_url(url)
    try:
        return float(client.hget(rate_limit_keys(7, 7)[1], "t"))  # the key's TPM bucket, raw (can be negative)
    finally:
        client.close()


@pytest.mark.parametrize("how", REFUSALS)
async def test_rate_limits_fail_open_and_corrections_apply_once_after_a_refusal(own_redis, how, caplog):
    client = aioredis.Redis.from_url(own_redis.url)
    limiter = RateLimiter(client, default_rpm=600, default_tpm=600)  # 10 tokens/s refill: slow next to 1000
    try:
        admission = await limiter.admit(_key(), 100)
        assert admission.tokens_charged == 100 and 495 < _tpm_tokens(own_redis.url) <= 500

        refuse_writes(own_redis.url, how)
        limiter.settle(_key(), admission, 1100)  # the worker used 1000 more than estimated: a debt
        with caplog.at_level(logging.WARNING, "hearth.gateway.ratelimit"):
            assert await limiter.flush() is False  # refused, kept
            open_admission = await limiter.admit(_key(), 50)  # fails open instead of raising (was a 500)
        assert open_admission.tokens_charged == 0
        assert any("redis refused" in r.getMessage() for r in caplog.records)

        take_writes(own_redis.url, how)
        await asyncio.sleep(1.1)  # past the admission breaker
        assert await limiter.flush() is True
        assert await limiter.flush() is True  # nothing left: the debt is applied once, not on every flush
        assert -600 < _tpm_tokens(own_redis.url) < -400  # 500 - 1000 (+ refill), not 500 - 2000
        assert limiter.num_settlements_expired == 0
    finally:
        await client.aclose()


async def test_a_correction_older_than_the_bucket_window_is_dropped_and_counted(own_redis, monkeypatch):
    client = aioredis.Redis.from_url(own_redis.url)
    limiter = RateLimiter(client, default_rpm=600, default_tpm=600)
    try:
        admission = await limiter.admit(_key(), 100)
        limiter.settle(_key(), admission, 1100)
        real_monotonic = time.monotonic
        monkeypatch.setattr("gateway.ratelimit.time.monotonic", lambda: real_monotonic() + 61)
        assert await limiter.flush() is True
        assert limiter.num_settlements_expired == 1
        assert 495 < _tpm_tokens(own_redis.url) <= 510  # the stale debt was not applied
    finally:
        await client.aclose()


async def test_supervisor_restarts_a_task_that_dies_and_logs_it(caplog):
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")
        await asyncio.sleep(3600)

    supervisor = Supervisor(first_delay_s=0.01)
    with caplog.at_level(logging.ERROR, "hearth.gateway.supervisor"):
        supervisor.start("flaky", flaky)
        await _until(lambda: len(runs) == 3, timeout=5)
    assert supervisor.num_restarts == {"flaky": 2} and supervisor.running() == {"flaky": True}
    assert sum("background task flaky died" in r.getMessage() for r in caplog.records) == 2
    await supervisor.stop()
    assert supervisor.running() == {}
