"""The gateway's key touches (Redis hash, key id -> unix seconds) land in keys_apikey.last_used_at: forward only,
unknown ids ignored, nothing lost when a touch arrives during a flush, on real Redis and Postgres."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contracts import KEYS_LAST_USED_HASH
from keys import last_used
from keys.last_used import api_key_last_used_flush
from keys.services import api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def rclient() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def hash_key(rclient: redis.Redis) -> Iterator[str]:
    # The embedded Redis is shared by concurrent test runs (and their gateways): each test gets its own hash.
    key = f"test:{uuid.uuid4().hex}:keys:last_used"
    yield key
    rclient.delete(key)


@pytest.fixture
def two_keys(signup):
    _user, account = signup()
    first, _ = api_key_create(account=account, name="first")
    second, _ = api_key_create(account=account, name="second")
    return first, second


def at(secs: int) -> datetime:
    return datetime.fromtimestamp(secs, UTC)


def test_values_land_in_one_statement_and_the_hash_empties(rclient, hash_key, two_keys):
    first, second = two_keys
    now = int(time.time())
    rclient.hset(hash_key, mapping={first.id: now - 5, second.id: now})

    with CaptureQueriesContext(connection) as queries:
        result = api_key_last_used_flush(client=rclient, key=hash_key)

    assert (result.num_read, result.num_updated, result.num_invalid) == (2, 2, 0)
    assert [q["sql"].lstrip().split()[0] for q in queries.captured_queries if "keys_apikey" in q["sql"]] == ["UPDATE"]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.last_used_at, second.last_used_at) == (at(now - 5), at(now))
    assert rclient.exists(hash_key) == 0


def test_an_older_timestamp_never_moves_it_back(rclient, hash_key, two_keys):
    first, _ = two_keys
    now = int(time.time())
    rclient.hset(hash_key, first.id, now)
    api_key_last_used_flush(client=rclient, key=hash_key)

    rclient.hset(hash_key, first.id, now - 3600)  # a gateway with a late clock, or a replayed batch
    result = api_key_last_used_flush(client=rclient, key=hash_key)

    assert result.num_updated == 0
    first.refresh_from_db()
    assert first.last_used_at == at(now)
    assert rclient.exists(hash_key) == 0


def test_unknown_and_malformed_ids_are_dropped_without_blocking_the_rest(rclient, hash_key, two_keys):
    first, _ = two_keys
    now = int(time.time())
    rclient.hset(hash_key, mapping={
        first.id: now, 987_654_321: now,  # unknown id: skipped by the join
        "not-a-number": now, 2**70: now, first.id + 10**6: "yesterday", -1: now,  # malformed: dropped
    })

    result = api_key_last_used_flush(client=rclient, key=hash_key)

    assert (result.num_read, result.num_updated, result.num_invalid) == (6, 1, 4)
    first.refresh_from_db()
    assert first.last_used_at == at(now)
    assert rclient.exists(hash_key) == 0  # nothing left to fail again on the next flush


def test_an_empty_hash_is_a_no_op(rclient, hash_key, two_keys):
    with CaptureQueriesContext(connection) as queries:
        result = api_key_last_used_flush(client=rclient, key=hash_key)
    assert (result.num_read, result.num_updated) == (0, 0)
    assert queries.captured_queries == []


def test_a_touch_written_during_the_flush_survives_for_the_next_one(rclient, hash_key, two_keys, monkeypatch):
    first, second = two_keys
    now = int(time.time())
    rclient.hset(hash_key, mapping={first.id: now - 10, second.id: now - 10})
    update = last_used.api_key_last_used_update

    def update_while_a_gateway_writes(*, used):
        rclient.hset(hash_key, first.id, now)  # lands between our HGETALL and our delete
        return update(used=used)

    monkeypatch.setattr(last_used, "api_key_last_used_update", update_while_a_gateway_writes)
    api_key_last_used_flush(client=rclient, key=hash_key)
    assert rclient.hgetall(hash_key) == {str(first.id).encode(): str(now).encode()}

    monkeypatch.setattr(last_used, "api_key_last_used_update", update)
    api_key_last_used_flush(client=rclient, key=hash_key)
    first.refresh_from_db()
    assert first.last_used_at == at(now)
    assert rclient.exists(hash_key) == 0


def test_a_failed_update_leaves_the_hash_for_the_next_flush(rclient, hash_key, two_keys, monkeypatch):
    first, _ = two_keys
    now = int(time.time())
    rclient.hset(hash_key, first.id, now)

    def broken(*, used):
        raise RuntimeError("postgres went away")

    monkeypatch.setattr(last_used, "api_key_last_used_update", broken)
    with pytest.raises(RuntimeError):
        api_key_last_used_flush(client=rclient, key=hash_key)
    assert rclient.hgetall(hash_key) == {str(first.id).encode(): str(now).encode()}


def test_the_beat_task_flushes_the_gateway_hash(rclient, two_keys):
    from keys.tasks import flush_key_last_used

    first, _ = two_keys
    now = int(time.time())
    rclient.hset(KEYS_LAST_USED_HASH, first.id, now)
    # Another test run's gateway may write its own ids to the shared hash meanwhile: unknown here, so skipped.
    assert flush_key_last_used()["updated"] >= 1
    first.refresh_from_db()
    assert first.last_used_at >= at(now)  # >=: that other run's key may share this id (each run numbers from 1)
    schedule = settings.CELERY_BEAT_SCHEDULE.values()
    assert any(entry["task"] == flush_key_last_used.name for entry in schedule)
