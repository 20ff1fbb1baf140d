"""Rate limits: RPM/TPM token buckets per key and per account, 429 with OpenAI's headers, the SDK's retry honouring
retry-after-ms, and the TPM estimate settled against the worker's real usage. The upstream is the stub worker
(tests/gateway/stub_worker.py): these tests are about the gateway's arithmetic, not about generation."""

import os
import time

import httpx
import openai
import pytest
import redis
from conftest import STUB_MODEL
from gateway_testlib import sdk, wait_for_workers

from contracts import api_key_hash as hash_key
from gateway.ratelimit import _SCRIPT, RateLimiter, format_reset

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "hi"}]
HEADERS = ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
           "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]


@pytest.fixture
def stub_gateway(gateway, stub_worker):
    stub_worker("stub-0", "--chunks", "10")
    wait_for_workers(gateway, STUB_MODEL)
    return gateway


def _bucket_tokens(key_record, suffix: str) -> float:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        name = next(k for k in RateLimiter.bucket_keys(key_record) if k.endswith(suffix))
        return float(client.hget(name, "t"))
    finally:
        client.close()


def test_rpm_limit_gives_429_with_headers(stub_gateway, make_key):
    _key, secret = make_key(rpm_limit=2)
    client = sdk(stub_gateway.url, secret)
    for remaining in (1, 0):
        raw = client.chat.completions.with_raw_response.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=3)
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-remaining-requests"] == str(remaining)
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=3)
    response = exc.value.response
    assert exc.value.code == "rate_limit_exceeded" and exc.value.type == "requests"
    assert all(h in response.headers for h in HEADERS)
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    # 2 requests per minute refill one every 30 s; some of the first has already trickled back.
    assert 1 <= int(response.headers["retry-after"]) <= 30
    assert response.headers["x-request-id"].startswith("req_")


def test_account_limit_is_shared_by_its_keys(stub_gateway, make_key):
    key, secret = make_key(rpm_limit=1)
    _other_key, other_secret = make_key(account=key.account)
    sdk(stub_gateway.url, secret).chat.completions.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=3)
    with pytest.raises(openai.RateLimitError):
        sdk(stub_gateway.url, other_secret).chat.completions.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=3)


def test_a_keys_own_limit_holds_it_below_the_account(stub_gateway, make_key):
    from keys.services import api_key_create

    key, _secret = make_key(rpm_limit=10)
    _held, held_secret = api_key_create(account=key.account, name="held", rpm_limit=1)
    _free, free_secret = api_key_create(account=key.account, name="free")
    held = sdk(stub_gateway.url, held_secret)
    raw = held.chat.completions.with_raw_response.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=3)
    assert raw.headers["x-ratelimit-limit-requests"] == "1"
    with pytest.raises(openai.RateLimitError):
        held.chat.completions.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=3)
    free = sdk(stub_gateway.url, free_secret).chat.completions.with_raw_response.create(
        model=STUB_MODEL, messages=MESSAGES, max_tokens=3)
    assert free.headers["x-ratelimit-limit-requests"] == "10"  # the account's bucket still has room


def test_tpm_estimate_is_settled_with_real_usage(stub_gateway, make_key):
    _key, secret = make_key(tpm_limit=1_000)
    client = sdk(stub_gateway.url, secret)
    # Admission charges ceil((2 chars + 16 role chars) / 4) + max_tokens 500 = 505; the stub then reports
    # 7 prompt + 10 completion tokens, and the settlement refunds the difference.
    client.chat.completions.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=500)
    key_record = _record(stub_gateway, secret)
    deadline = time.monotonic() + 5
    while (used := 1_000 - _bucket_tokens(key_record, "}:tpm")) > 100 and time.monotonic() < deadline:
        time.sleep(0.02)  # the settlement runs after the response
    # 17 real tokens, less what refilled between admission and settlement (1,000/min = 0.017 per ms).
    assert 14 <= used <= 17


def test_tokens_over_the_limit_give_429_tokens(stub_gateway, make_key):
    _key, secret = make_key(tpm_limit=100)
    client = sdk(stub_gateway.url, secret)
    client.chat.completions.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=100)  # capped at 100, settles 17
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=100)
    assert exc.value.type == "tokens"
    assert exc.value.response.headers["x-ratelimit-limit-tokens"] == "100"


def test_sdk_retries_429_after_retry_after(stub_gateway, make_key):
    _key, secret = make_key(rpm_limit=120)  # refills one request every 500 ms
    client = sdk(stub_gateway.url, secret)
    client.models.list()  # auth cached
    _charge_requests(_record(stub_gateway, secret), cost=120)
    sent: list[httpx.Request] = []
    retrying = sdk(stub_gateway.url, secret, max_retries=2, sent=sent)
    reply = retrying.chat.completions.create(model=STUB_MODEL, messages=MESSAGES, max_tokens=3)
    assert reply.choices[0].message.content
    assert len(sent) == 2  # one 429, then the retry the SDK timed from retry-after-ms


def test_reset_format_follows_openai():
    assert [format_reset(ms) for ms in (20, 1000, 1500, 60_000, 372_500)] == ["20ms", "1s", "1.5s", "1m0s", "6m12.5s"]


def _record(gateway, secret: str):
    return gateway.services.auth._cache[hash_key(secret)][1]  # the key as this gateway cached it


def _charge_requests(record, *, cost: int) -> None:
    """Takes `cost` requests from the key's and account's RPM buckets with the gateway's own Lua script."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        script = client.register_script(_SCRIPT)
        limits = RateLimiter(client, default_rpm=600, default_tpm=200_000).limits_for(record)  # type: ignore[arg-type]
        out = script(keys=RateLimiter.bucket_keys(record),
                     args=[0, limits.key_rpm, cost, limits.key_tpm, 0, limits.account_rpm, cost, limits.account_tpm, 0])
        assert out[0] == 1
    finally:
        client.close()
