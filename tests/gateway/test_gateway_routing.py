"""Routing and failure handling with stub workers (tests/gateway/stub_worker.py, real processes that heartbeat into
Redis like workers do): spreading by load, region preference, fall-through when a worker can't be reached, 503 with
none, and a worker dying mid-request (502 / an SSE error event, and usage for what was delivered). The bounded-load
affinity rule is tested on `routing.candidates` directly; test_gateway_adapters.py routes a real adapter request."""

import asyncio
import json
import os

import httpx
import openai
import pytest
import redis
from conftest import STUB_MODEL, free_port, wait_usage
from gateway_testlib import sdk, wait_for_workers

from contracts import WORKERS_SET, worker_key
from gateway.registry import WorkerInfo
from gateway.routing import candidates

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "hi"}]


def _served(url: str) -> int:
    return httpx.get(f"{url}/stats").json()["requests"]


def test_requests_spread_by_load(gateway, stub_worker, make_key):
    urls = [stub_worker(f"stub-{i}", "--chunks", "10", "--chunk-delay-ms", "20")[0] for i in range(2)]
    wait_for_workers(gateway, STUB_MODEL, count=2)
    _key, secret = make_key()

    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
        async def one() -> str:
            stream = await client.chat.completions.create(model=STUB_MODEL, messages=MESSAGES, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream])
        texts = await asyncio.gather(*[one() for _ in range(20)])
        assert all(texts)
        await client.close()

    asyncio.run(run())
    served = [_served(u) for u in urls]
    assert sum(served) == 20
    assert min(served) >= 7, served  # least-loaded with in-flight counts alternates; random ties allow some skew


def test_same_region_preferred_then_fall_through_on_connect_failure(gateway, stub_worker, make_key):
    far_url, _ = stub_worker("stub-0", "--chunks", "3", "--region", "far")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    dead = {"worker_id": "stub-1", "url": f"http://127.0.0.1:{free_port()}", "base_model": STUB_MODEL,
            "region": "local", "max_loras": 4, "resident_adapters": [], "num_running": 0, "num_waiting": 0,
            "num_free_blocks": 10, "updated_at": 0}
    client.set(worker_key("stub-1"), json.dumps(dead), ex=60)  # a local worker that no longer listens
    client.sadd(WORKERS_SET, "stub-1")
    client.close()
    wait_for_workers(gateway, STUB_MODEL, count=2)
    _key, secret = make_key()
    reply = sdk(gateway.url, secret).chat.completions.create(model=STUB_MODEL, messages=MESSAGES)
    assert reply.choices[0].message.content  # the local (dead) worker came first; the far one answered
    assert _served(far_url) == 1


def test_no_worker_is_503(gateway, make_key):
    _key, secret = make_key()
    with pytest.raises(openai.InternalServerError) as exc:
        sdk(gateway.url, secret).chat.completions.create(model=STUB_MODEL, messages=MESSAGES)
    assert exc.value.status_code == 503 and exc.value.code == "no_capacity"


def test_worker_dying_mid_stream_ends_stream_with_error_and_meters_delivered(gateway, stub_worker, make_key):
    stub_worker("stub-0", "--chunks", "50", "--chunk-delay-ms", "5", "--die-after-chunks", "5")
    wait_for_workers(gateway, STUB_MODEL)
    _key, secret = make_key()
    stream = sdk(gateway.url, secret).chat.completions.create(model=STUB_MODEL, messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            received.append(chunk)
    assert "failed mid-stream" in exc.value.message
    assert len(received) == 5
    event = wait_usage(os.environ["REDIS_URL"], stream.response.headers["x-request-id"])
    # The worker died before its usage chunk: the gateway billed the 5 content chunks it delivered.
    assert (event["status"], event["completion_tokens"], event["prompt_tokens"]) == ("error", 5, 0)


def test_worker_dying_mid_response_is_502(gateway, stub_worker, make_key):
    stub_worker("stub-0", "--die-after-chunks", "0")
    wait_for_workers(gateway, STUB_MODEL)
    _key, secret = make_key()
    with pytest.raises(openai.InternalServerError) as exc:
        sdk(gateway.url, secret).chat.completions.create(model=STUB_MODEL, messages=MESSAGES)
    assert exc.value.status_code == 502 and exc.value.code == "upstream_error"


def _worker(worker_id: str, load: int, adapters: tuple[str, ...] = (), region: str = "local") -> WorkerInfo:
    return WorkerInfo(worker_id, f"http://{worker_id}", "base", region, 4, frozenset(adapters), num_running=load)


def test_adapter_affinity_is_bounded_by_load():
    holder, idle = _worker("holder", 2, ("ad1",)), _worker("idle", 0)
    order = candidates([holder, idle], base_model="base", adapter_uid="ad1", region="local", load_factor=1.25)
    assert order[0] is holder  # 2 <= 1.25 * (mean 1 + 1): it holds the adapter and has room
    busy = _worker("holder", 6, ("ad1",))
    order = candidates([busy, idle], base_model="base", adapter_uid="ad1", region="local", load_factor=1.25)
    assert order[0] is idle  # 6 > 1.25 * (3 + 1): too loaded, the least loaded worker takes it
    order = candidates([busy, idle], base_model="base", adapter_uid=None, region="local", load_factor=1.25)
    assert [w.worker_id for w in order] == ["idle", "holder"]
    remote = _worker("remote", 0, ("ad1",), region="far")
    order = candidates([remote, busy], base_model="base", adapter_uid="ad1", region="local", load_factor=1.25)
    assert order[0] is busy  # the caller's region comes before affinity
    assert candidates([idle], base_model="other", adapter_uid=None, region="local", load_factor=1.25) == []
