"""Redis down: a key the gateway has cached is still served, usage goes to the spool file, and the spool is replayed
into the stream once Redis is back. This test stops and restarts its own embedded Redis (the session's is shared with
the other tests); the upstream is a stub worker heartbeating into that Redis."""

import json
import time

import pytest
import redis
from conftest import STUB_MODEL
from devstack.services import EmbeddedRedis
from gateway_testlib import sdk, wait_for_workers

from contracts import USAGE_STREAM

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def own_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _stream_events(url: str) -> dict[str, dict]:
    client = redis.Redis.from_url(url)
    try:
        return {e["request_id"]: e for e in (json.loads(f[b"event"]) for _, f in client.xrange(USAGE_STREAM))}
    finally:
        client.close()


def test_cached_keys_served_and_usage_spooled_then_replayed(gateway_factory, stub_worker, make_key, own_redis):
    gateway = gateway_factory(redis_url=own_redis.url, spool_replay_interval_s=0.2)
    stub_worker("stub-0", "--chunks", "4", redis_url=own_redis.url)
    wait_for_workers(gateway, STUB_MODEL)
    _key, secret = make_key()
    client = sdk(gateway.url, secret)
    client.chat.completions.create(model=STUB_MODEL, messages=MESSAGES)  # the key is now cached

    own_redis.stop()
    served = client.chat.completions.with_raw_response.create(model=STUB_MODEL, messages=MESSAGES)
    assert served.parse().usage.completion_tokens == 4
    stream = client.chat.completions.create(model=STUB_MODEL, messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream)
    spooled_ids = {served.headers["x-request-id"], stream.response.headers["x-request-id"]}
    metering = gateway.services.metering
    deadline = time.monotonic() + 5
    while metering.num_spooled < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    spool_lines = [json.loads(line) for path in metering._spool_dir.glob("*.jsonl") for line in
                   path.read_text().splitlines()]
    assert spooled_ids <= {e["request_id"] for e in spool_lines}

    own_redis.start()  # same port, empty
    deadline = time.monotonic() + 10
    while not spooled_ids <= set(_stream_events(own_redis.url)) and time.monotonic() < deadline:
        time.sleep(0.1)
    events = _stream_events(own_redis.url)
    assert spooled_ids <= set(events), "spooled usage was not replayed"
    assert all(events[rid]["completion_tokens"] == 4 and events[rid]["status"] == "finished" for rid in spooled_ids)
    assert all(path.stat().st_size == 0 for path in metering._spool_dir.glob("*.jsonl"))  # replayed once, not twice
