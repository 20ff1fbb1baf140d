"""Predicted outputs end to end, every part real: the openai SDK sends `prediction` through a gateway process to a
SmolLM2 worker; the client sees accepted/rejected prediction tokens in usage (whole and streamed), and the ledger
bills completion_tokens with the rejected prediction tokens in them (README, "Predicted outputs"), at the catalog
price by billing.pricing."""

import json
import os
from decimal import Decimal

import pytest

from billing.events import parse_event
from billing.ledger import write_batch
from billing.pricing import Prices, cost_usd
from tests.gateway.conftest import wait_usage
from tests.gateway.gateway_testlib import sdk

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SMOLLM2 = "smollm2-135m-instruct"
MESSAGES = [{"role": "user", "content": "Write a Python function that adds two numbers."}]


def test_prediction_counts_reach_the_client_and_the_ledger(gateway, e2e_account, smollm2_catalog) -> None:
    from billing.models import UsageRecord

    client = sdk(gateway.url, e2e_account("predict").secret)
    ask = dict(model=SMOLLM2, messages=MESSAGES, max_tokens=40, temperature=0)
    plain = client.chat.completions.create(**ask)
    text = plain.choices[0].message.content
    predicted = text[: len(text) // 2] + " something else entirely " + text[len(text) // 2 + 10 :]
    raw = client.chat.completions.with_raw_response.create(**ask, prediction={"type": "content", "content": predicted})
    reply = raw.parse()
    assert reply.choices[0].message.content == text
    details = reply.usage.completion_tokens_details
    assert details.accepted_prediction_tokens > 0 and details.rejected_prediction_tokens > 0
    assert reply.usage.completion_tokens == plain.usage.completion_tokens + details.rejected_prediction_tokens

    stream = client.chat.completions.create(**ask, prediction={"type": "content", "content": predicted}, stream=True,
                                            stream_options={"include_usage": True})  # fmt: skip
    last = list(stream)[-1].usage
    assert last.completion_tokens_details.rejected_prediction_tokens == details.rejected_prediction_tokens
    assert last.completion_tokens == reply.usage.completion_tokens

    event = wait_usage(os.environ["REDIS_URL"], raw.headers["x-request-id"])
    assert event["completion_tokens"] == reply.usage.completion_tokens
    result = write_batch([parse_event(json.dumps(event))])
    assert result.num_inserted == 1 and not result.rejected
    row = UsageRecord.dangerously_unscoped.get(request_id=event["request_id"])
    base = smollm2_catalog
    prices = Prices(Decimal(base.price_input_per_mtok), Decimal(base.price_cached_input_per_mtok),
                    Decimal(base.price_output_per_mtok))  # fmt: skip
    usage = reply.usage
    cached = usage.prompt_tokens_details.cached_tokens or 0
    assert row.completion_tokens == usage.completion_tokens
    assert row.cost_usd == cost_usd(prices, prompt_tokens=usage.prompt_tokens, cached_prompt_tokens=cached,
                                    completion_tokens=usage.completion_tokens) > 0  # fmt: skip
