"""Rating (adapter = base price, cached tokens at the cached price, price history kept) and the spend limit: crossing
it makes the gateway's guard refuse with OpenAI's insufficient_quota (checked through the real openai SDK), and
credits unblock."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest
import redis
import redis.asyncio as aioredis
import uvicorn
from billing_testlib import usage_event, xadd_events
from fastapi import FastAPI

from billing.ingest import UsageConsumer
from billing.models import PriceVersion, UsageRecord
from billing.pricing import Prices
from billing.services import credits_add, payment_status_set, spend_limit_set
from gateway.billing_guard import BillingGuard, InsufficientQuota, QuotaState, request_cost
from gateway.errors import install_error_handlers

pytestmark = pytest.mark.django_db


def ingest(client: redis.Redis, events) -> None:
    xadd_events(client, events)
    UsageConsumer(client, consumer="t", block_ms=10).step()


def catalog_prices(model) -> Prices:
    return Prices(model.price_input_per_mtok, model.price_cached_input_per_mtok, model.price_output_per_mtok)


def test_adapter_request_costs_what_the_base_request_costs(rclient, tenant, smollm2):
    account, key = tenant("ada")
    base = usage_event(account.id, key.id, smollm2.id, prompt=1234, cached=200, completion=567)
    adapter = usage_event(account.id, key.id, smollm2.id, prompt=1234, cached=200, completion=567, adapter_id=42)
    ingest(rclient, [base, adapter])
    rows = {r.request_id: r for r in UsageRecord.objects.for_account(account)}
    assert rows[adapter.request_id].adapter_id == 42
    assert rows[base.request_id].cost_usd == rows[adapter.request_id].cost_usd > 0
    # The gateway's usage.cost for the same tokens is the ledger's cost, to the last digit.
    gateway_cost = request_cost(catalog_prices(smollm2), prompt_tokens=1234, cached_prompt_tokens=200,
                                completion_tokens=567)
    assert Decimal(gateway_cost) == rows[base.request_id].cost_usd


def test_cached_prompt_tokens_are_charged_at_the_cached_price(rclient, tenant, smollm2):
    account, key = tenant("bob")
    uncached = usage_event(account.id, key.id, smollm2.id, prompt=1_000_000, cached=0, completion=0)
    cached = usage_event(account.id, key.id, smollm2.id, prompt=1_000_000, cached=1_000_000, completion=0)
    half = usage_event(account.id, key.id, smollm2.id, prompt=1_000_000, cached=500_000, completion=0)
    ingest(rclient, [uncached, cached, half])
    cost = {r.request_id: r.cost_usd for r in UsageRecord.objects.for_account(account)}
    assert smollm2.price_cached_input_per_mtok != smollm2.price_input_per_mtok  # else this test proves nothing
    assert cost[uncached.request_id] == smollm2.price_input_per_mtok
    assert cost[cached.request_id] == smollm2.price_cached_input_per_mtok
    assert cost[half.request_id] == (smollm2.price_input_per_mtok + smollm2.price_cached_input_per_mtok) / 2


def test_a_price_change_does_not_rewrite_history(rclient, tenant, smollm2):
    account, key = tenant("cat")
    before = usage_event(account.id, key.id, smollm2.id, prompt=0, completion=1_000_000)
    ingest(rclient, [before])
    old_price = smollm2.price_output_per_mtok
    smollm2.price_output_per_mtok = old_price * 3
    smollm2.save()
    after = usage_event(account.id, key.id, smollm2.id, prompt=0, completion=1_000_000)
    ingest(rclient, [after])
    rows = {r.request_id: r for r in UsageRecord.objects.for_account(account).select_related("price_version")}
    assert rows[before.request_id].cost_usd == old_price
    assert rows[after.request_id].cost_usd == old_price * 3
    assert rows[before.request_id].price_version.price_output_per_mtok == old_price
    assert PriceVersion.objects.filter(base_model=smollm2).count() == 2


def guard_state(account_id: int) -> QuotaState | None:
    async def read() -> QuotaState | None:
        client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
        try:
            return await BillingGuard(client, cache_ttl_s=0).state(account_id)
        finally:
            await client.aclose()

    return asyncio.run(read())


def wait_for_refusal(account_id: int, *, refused: bool, within_s: float = 5.0) -> QuotaState:
    deadline = time.monotonic() + within_s
    while True:
        state = guard_state(account_id)
        assert state is not None
        if (state.refusal() is not None) == refused or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


@pytest.fixture
def guarded_app() -> Iterator[tuple[str, list[int]]]:
    """A minimal OpenAI-shaped app that runs the guard the way the gateway does (before admission), with the
    gateway's own error handlers; counts the requests that reach it to prove the SDK didn't retry."""
    app = FastAPI()
    install_error_handlers(app)
    hits: list[int] = []

    @app.post("/v1/chat/completions")
    async def chat(body: dict) -> dict:
        hits.append(1)
        client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
        try:
            await BillingGuard(client, cache_ttl_s=0).check(int(body["user"]))
        finally:
            await client.aclose()
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": []}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/v1", hits
    finally:
        server.should_exit = True
        thread.join(10)


def test_crossing_the_spend_limit_refuses_and_credits_unblock(rclient, tenant, smollm2, guarded_app,
                                                              django_capture_on_commit_callbacks):
    base_url, hits = guarded_app
    account, key = tenant("dan")
    with django_capture_on_commit_callbacks(execute=True):
        spend_limit_set(account=account, limit_usd="0.01")
    sdk = openai.OpenAI(base_url=base_url, api_key="hk_test", max_retries=2)

    def call() -> None:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], user=str(account.id))

    call()  # under the limit
    # 50,000 output tokens at $0.20/Mtok = $0.01: exactly the limit, so the next request is refused.
    ingest(rclient, [usage_event(account.id, key.id, smollm2.id, prompt=0, completion=50_000)])
    assert wait_for_refusal(account.id, refused=True).refusal() is not None
    hits.clear()
    with pytest.raises(openai.RateLimitError) as info:
        call()
    assert info.value.code == "insufficient_quota"
    assert info.value.body["type"] == "insufficient_quota"
    assert "monthly spend limit ($0.01)" in info.value.message
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(hits) == 1  # max_retries=2, yet the SDK did not retry

    with django_capture_on_commit_callbacks(execute=True):
        credits_add(account=account, amount_usd="5.00")
    wait_for_refusal(account.id, refused=False)
    call()


def test_failed_payment_refuses_with_a_reason(tenant, rclient, django_capture_on_commit_callbacks):
    account, _key = tenant("fay")
    with django_capture_on_commit_callbacks(execute=True):
        payment_status_set(account=account, status="payment_failed")
    state = wait_for_refusal(account.id, refused=True)
    with pytest.raises(InsufficientQuota) as info:
        asyncio.run(_check(account.id))
    assert "payment failed" in info.value.message and state.payment_status == "payment_failed"
    assert info.value.headers == {"x-should-retry": "false"}
    with django_capture_on_commit_callbacks(execute=True):
        payment_status_set(account=account, status="ok")
    wait_for_refusal(account.id, refused=False)


async def _check(account_id: int) -> None:
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        await BillingGuard(client, cache_ttl_s=0).check(account_id)
    finally:
        await client.aclose()
