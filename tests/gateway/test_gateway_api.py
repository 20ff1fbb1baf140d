"""Chat and completions through a real gateway to a real SmolLM2 worker, with the official openai SDK."""

import os
from decimal import Decimal

import httpx
import pytest
from conftest import SMOLLM2, wait_usage
from gateway_testlib import sdk, wait_for_workers

from billing.pricing import Prices, cost_usd, format_usd

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PUBLIC = f"accounts/hearth/models/{SMOLLM2}"
MESSAGES = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture
def client(gateway, real_worker, make_key):
    wait_for_workers(gateway, SMOLLM2)
    _key, secret = make_key()
    return sdk(gateway.url, secret)


def _ledger_cost(base, usage) -> str:
    """What billing's ledger charges for this usage (billing.pricing, the catalog row's prices)."""
    prices = Prices(Decimal(base.price_input_per_mtok), Decimal(base.price_cached_input_per_mtok),
                    Decimal(base.price_output_per_mtok))
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    return format_usd(cost_usd(prices, prompt_tokens=usage.prompt_tokens, cached_prompt_tokens=cached or 0,
                               completion_tokens=usage.completion_tokens))


def test_chat_streamed_usage_equals_non_streamed_and_is_metered(client, catalog):
    redis_url = os.environ["REDIS_URL"]
    full = client.chat.completions.with_raw_response.create(model=PUBLIC, messages=MESSAGES, max_tokens=6,
                                                            temperature=0)
    assert full.headers["x-request-id"].startswith("req_")
    reply = full.parse()
    assert reply.model == PUBLIC
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens == 6 and reply.usage.prompt_tokens > 0

    stream = client.chat.completions.create(model=PUBLIC, messages=MESSAGES, max_tokens=6, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    streamed = chunks[-1].usage
    # Same request, same counts; only cached_tokens may differ (the second run hits the worker's prefix cache).
    assert (streamed.prompt_tokens, streamed.completion_tokens, streamed.total_tokens) == (
        reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    assert {c.model for c in chunks} == {PUBLIC}
    assert all(c.usage is None for c in chunks[:-1])  # the worker's per-chunk usage never reaches the client

    event = wait_usage(redis_url, full.headers["x-request-id"])
    assert event["status"] == "finished"
    assert (event["prompt_tokens"], event["completion_tokens"]) == (reply.usage.prompt_tokens, 6)
    streamed_event = wait_usage(redis_url, stream.response.headers["x-request-id"])
    assert (streamed_event["prompt_tokens"], streamed_event["completion_tokens"]) == (reply.usage.prompt_tokens, 6)
    assert streamed_event["cached_prompt_tokens"] == streamed.prompt_tokens_details.cached_tokens
    assert streamed_event["status"] == "finished" and streamed_event["adapter_id"] is None

    # Every response carries its cost by the ledger's formula: header and usage.cost on the plain response, usage.cost
    # in the stream's usage chunk (whose prompt hit the prefix cache, so cached tokens are priced as such).
    assert full.headers["x-hearth-cost"] == reply.usage.cost == _ledger_cost(catalog[SMOLLM2], reply.usage)
    assert streamed.cost == _ledger_cost(catalog[SMOLLM2], streamed)
    assert Decimal(streamed.cost) > 0


def test_stream_without_include_usage_has_no_usage_chunk_but_is_metered(client):
    stream = client.chat.completions.create(model=SMOLLM2, messages=MESSAGES, max_tokens=4, temperature=0,
                                            stream=True)
    chunks = list(stream)
    assert chunks and all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    event = wait_usage(os.environ["REDIS_URL"], stream.response.headers["x-request-id"])
    assert event["completion_tokens"] == 4 and event["prompt_tokens"] > 0


def test_cancelled_stream_is_metered_with_its_prompt_tokens(gateway, real_worker, make_key):
    """The client hangs up mid-stream: no final usage chunk ever comes, yet the prompt is billed from the usage the
    worker put on the chunks it did send; the client's bytes carry `"usage":null` on every chunk, as before."""
    wait_for_workers(gateway, SMOLLM2)
    _key, secret = make_key()
    full = sdk(gateway.url, secret).chat.completions.create(model=SMOLLM2, messages=MESSAGES, max_tokens=2,
                                                            temperature=0)
    body = {"model": SMOLLM2, "messages": MESSAGES, "max_tokens": 64, "temperature": 0, "stream": True,
            "ignore_eos": True}
    lines = []
    with httpx.Client(timeout=60) as http, http.stream(
            "POST", f"{gateway.url}/v1/chat/completions", json=body,
            headers={"authorization": f"Bearer {secret}"}) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data:"):
                lines.append(line)
            if len(lines) >= 3:
                break  # hang up mid-stream
    assert all('"usage":null' in line and '"prompt_tokens"' not in line for line in lines), lines
    event = wait_usage(os.environ["REDIS_URL"], request_id, timeout=30)
    assert event["status"] == "aborted"
    assert event["prompt_tokens"] == full.usage.prompt_tokens > 0
    assert 2 <= event["completion_tokens"] < 64


def test_completions_streamed_and_not(client):
    prompt = "The capital of France is"
    full = client.completions.create(model=SMOLLM2, prompt=prompt, max_tokens=5, temperature=0)
    assert full.model == SMOLLM2 and full.usage.completion_tokens == 5
    stream = client.completions.create(model=SMOLLM2, prompt=prompt, max_tokens=5, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (full.usage.prompt_tokens, full.usage.completion_tokens)


def test_models_lists_the_catalog_for_the_key(client, catalog):
    from catalog.models import BaseModel

    BaseModel.objects.filter(slug="stub-model").update(is_active=False)
    ids = [m.id for m in client.models.list()]
    assert ids == [PUBLIC]
    assert client.models.retrieve(PUBLIC).id == PUBLIC
    assert client.models.retrieve(SMOLLM2).id == PUBLIC  # the bare slug resolves too
