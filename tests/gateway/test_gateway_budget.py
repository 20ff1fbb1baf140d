"""`max_cost` (issue 19, part 1): the completion limit is the largest that keeps the worst case within the budget,
exactly, in Decimal, with prices of many decimal places; and through a real gateway and a real SmolLM2 worker the
cap holds for plain, streamed, n > 1 and cancelled requests, in the response and in the usage event the ledger rates."""

import os
from decimal import Decimal

import httpx
import openai
import pytest
from conftest import SMOLLM2, wait_usage
from gateway_testlib import sdk, wait_for_workers
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.pricing import Prices, cost_usd
from gateway.budget import MAX_COST_HEADER, Budget, BudgetExceeded, parse_max_cost
from gateway.errors import InvalidRequest
from gateway.schemas import ChatCompletionRequest

PRICES = Prices(Decimal("0.123457"), Decimal("0.061729"), Decimal("0.987653"))  # USD per million, 6 places


def _cost(prices: Prices, prompt: int, completion: int) -> Decimal:
    return cost_usd(prices, prompt_tokens=prompt, cached_prompt_tokens=0, completion_tokens=completion)


def test_the_limit_holds_exactly_at_the_boundary():
    at = _cost(PRICES, 300, 7)  # 0.000043951... : exact at 12 places
    assert Budget(at).completion_limit(PRICES, prompt_token_bound=300, num_choices=1) == 7
    one_below = at - Decimal("0.000000000001")
    assert Budget(one_below).completion_limit(PRICES, prompt_token_bound=300, num_choices=1) == 6
    assert Budget(at).completion_limit(PRICES, prompt_token_bound=300, num_choices=2) == 3  # 7 // 2
    with pytest.raises(BudgetExceeded) as info:
        Budget(_cost(PRICES, 300, 0) - Decimal("0.000000000001")).completion_limit(
            PRICES, prompt_token_bound=300, num_choices=1)
    assert info.value.param == "max_cost" and info.value.code == "budget_exceeded" and info.value.status_code == 400
    with pytest.raises(BudgetExceeded):  # the prompt fits but not one token for each of 8 choices
        Budget(at).completion_limit(PRICES, prompt_token_bound=300, num_choices=8)


def test_the_dearer_of_input_and_cached_prices_bounds_the_prompt():
    odd = Prices(Decimal("0.1"), Decimal("0.3"), Decimal("0.2"))  # cached dearer than input: still within budget
    limit = Budget(Decimal("0.00004")).completion_limit(odd, prompt_token_bound=100, num_choices=1)
    assert limit == 50  # 100 prompt tokens at the cached 0.3 leave $0.00001: 50 tokens at 0.2
    assert cost_usd(odd, prompt_tokens=100, cached_prompt_tokens=100, completion_tokens=limit) <= Decimal("0.00004")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(input_=st.integers(0, 10**9), cached=st.integers(0, 10**9), output=st.integers(1, 10**9),
       prompt=st.integers(0, 200_000), choices=st.integers(1, 16), budget=st.integers(1, 10**13))
def test_the_limit_is_the_largest_that_fits(input_, cached, output, prompt, choices, budget):
    # prices in micro-USD per million (6 places), budget in 1e-12 USD: every value the wire can carry
    prices = Prices(Decimal(input_) / 10**6, Decimal(cached) / 10**6, Decimal(output) / 10**6)
    max_cost = Decimal(budget) / 10**12
    dear = Prices(max(prices.input_per_mtok, prices.cached_input_per_mtok), prices.cached_input_per_mtok,
                  prices.output_per_mtok)
    try:
        limit = Budget(max_cost).completion_limit(prices, prompt_token_bound=prompt, num_choices=choices)
    except BudgetExceeded:
        assert _cost(dear, prompt, choices) > max_cost  # not even one token a choice fits
        return
    assert limit is not None and limit >= 1
    assert _cost(dear, prompt, choices * limit) <= max_cost < _cost(dear, prompt, choices * (limit + 1))


@pytest.mark.parametrize("value", ["0", "-0.01", "abc", "NaN", "inf", "1e-3", "", "10000000"])
def test_max_cost_must_be_a_positive_decimal_string(value):
    with pytest.raises(InvalidRequest) as info:
        parse_max_cost(value, source="body")
    assert info.value.param == "max_cost"


def test_the_prompt_bound_counts_bytes_and_template_allowances():
    body = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "héllo"}])
    assert body.prompt_token_bound() == 256 + 16 + len("héllo".encode())


# ---- through the gateway and a real worker ---------------------------------------------------------------------

PUBLIC = f"accounts/hearth/models/{SMOLLM2}"
MESSAGES = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


@pytest.fixture
def priced(gateway, real_worker, make_key, catalog):
    wait_for_workers(gateway, SMOLLM2)
    _key, secret = make_key()
    row = catalog[SMOLLM2]
    prices = Prices(Decimal(row.price_input_per_mtok), Decimal(row.price_cached_input_per_mtok),
                    Decimal(row.price_output_per_mtok))
    return gateway, secret, prices


def _budget_for(prices: Prices, body: ChatCompletionRequest, completion_tokens: int) -> Decimal:
    return _cost(prices, body.prompt_token_bound(), completion_tokens)


def _event_cost(prices: Prices, request_id: str) -> Decimal:
    event = wait_usage(os.environ["REDIS_URL"], request_id)
    return cost_usd(prices, prompt_tokens=event["prompt_tokens"], cached_prompt_tokens=event["cached_prompt_tokens"],
                    completion_tokens=event["completion_tokens"])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_max_cost_cuts_plain_streamed_and_n2_requests_within_budget(priced):
    gateway, secret, prices = priced
    client = sdk(gateway.url, secret)
    body = ChatCompletionRequest(model=PUBLIC, messages=MESSAGES)
    max_cost = _budget_for(prices, body, 5)

    raw = client.chat.completions.with_raw_response.create(model=PUBLIC, messages=MESSAGES, max_tokens=200,
                                                           extra_body={"max_cost": str(max_cost)})
    reply = raw.parse()
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5
    assert reply.usage.prompt_tokens <= body.prompt_token_bound()  # the bound is a bound
    assert Decimal(reply.usage.cost) <= max_cost and Decimal(raw.headers["x-hearth-cost"]) <= max_cost
    assert _event_cost(prices, raw.headers["x-request-id"]) <= max_cost

    stream = client.chat.completions.create(model=PUBLIC, messages=MESSAGES, max_tokens=200, n=2, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_headers={MAX_COST_HEADER: str(max_cost)})
    chunks = list(stream)
    finishes = {c.choices[0].index: c.choices[0].finish_reason for c in chunks if c.choices and
                c.choices[0].finish_reason}
    assert finishes == {0: "length", 1: "length"}  # 5 tokens between two choices: 2 each
    usage = chunks[-1].usage
    assert usage.completion_tokens == 4 and Decimal(usage.cost) <= max_cost
    assert _event_cost(prices, stream.response.headers["x-request-id"]) <= max_cost

    # A budget the client's own max_tokens is inside: untouched, not cut
    roomy = client.chat.completions.create(model=PUBLIC, messages=MESSAGES, max_tokens=3,
                                           extra_body={"max_cost": "1"})
    assert roomy.usage.completion_tokens == 3 and Decimal(roomy.usage.cost) <= 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_prompt_over_budget_is_400_and_a_cancelled_stream_stays_within(priced):
    gateway, secret, prices = priced
    client = sdk(gateway.url, secret)
    body = ChatCompletionRequest(model=PUBLIC, messages=MESSAGES)
    too_little = _budget_for(prices, body, 0) - Decimal("0.000000000001")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=PUBLIC, messages=MESSAGES, extra_body={"max_cost": str(too_little)})
    assert info.value.code == "budget_exceeded" and info.value.param == "max_cost"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=PUBLIC, messages=MESSAGES, extra_headers={MAX_COST_HEADER: "lots"})
    assert info.value.param == "max_cost"
    with pytest.raises(openai.BadRequestError):  # a JSON number is not a decimal string
        client.chat.completions.create(model=PUBLIC, messages=MESSAGES, extra_body={"max_cost": 0.01})

    max_cost = _budget_for(prices, body, 40)
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=60,
                      headers={"authorization": f"Bearer {secret}"},
                      json={"model": PUBLIC, "messages": MESSAGES, "stream": True, "max_cost": str(max_cost)}) as r:
        request_id = r.headers["x-request-id"]
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                break  # one token in, then the client hangs up
    assert _event_cost(prices, request_id) <= max_cost


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_keys_default_cap_applies_when_the_request_sets_none(priced):
    from accounts.models import Account
    from keys.services import api_key_create

    gateway, _secret, prices = priced
    body = ChatCompletionRequest(model=PUBLIC, messages=MESSAGES)
    cap = _budget_for(prices, body, 4).quantize(Decimal("0.000001"), rounding="ROUND_FLOOR")  # the column's 6 places
    account = Account.objects.create(slug=f"capped-{os.getpid()}", name="Capped")
    key, secret = api_key_create(account=account, name="capped", max_cost_per_request=cap)
    assert key.max_cost_per_request == cap
    client = sdk(gateway.url, secret)

    capped = client.chat.completions.create(model=PUBLIC, messages=MESSAGES, max_tokens=200)
    assert capped.choices[0].finish_reason == "length" and 1 <= capped.usage.completion_tokens <= 4
    assert Decimal(capped.usage.cost) <= cap
    # The request's own max_cost wins over the key's default
    own = client.chat.completions.create(model=PUBLIC, messages=MESSAGES, max_tokens=8, extra_body={"max_cost": "1"})
    assert own.usage.completion_tokens == 8
