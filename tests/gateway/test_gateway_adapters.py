"""Adapters through the gateway, with rows made by the adapters app and stub workers (the worker-side serving of
adapters is tested in tests/workers): `/v1/models` per account, another account's adapter is 404, an adapter request
goes to a worker that holds it with `model` rewritten to `<base>:<uid>`, its usage event names the adapter, and it
costs what the same tokens cost on the base model."""

import os
import time
from decimal import Decimal

import httpx
import openai
import pytest
from conftest import STUB_MODEL, wait_usage
from gateway_testlib import sdk, wait_for_workers

from billing.pricing import Prices, cost_usd, format_usd

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "hi"}]


def _adapter(account, name: str, base, status: str = "ready"):
    from adapters.models import Adapter

    return Adapter.objects.for_account(account).create(account=account, name=name, base_model=base, status=status)


def _account_of(key):
    from accounts.models import Account

    return Account.objects.get(pk=key.account_id)


def _served_models(url: str) -> list[str]:
    return httpx.get(f"{url}/stats").json()["models"]


def _stub_cost(base, *, prompt: int, completion: int) -> str:
    prices = Prices(Decimal(base.price_input_per_mtok), Decimal(base.price_cached_input_per_mtok),
                    Decimal(base.price_output_per_mtok))
    return format_usd(cost_usd(prices, prompt_tokens=prompt, cached_prompt_tokens=0, completion_tokens=completion))


def test_models_differ_per_account_and_other_accounts_adapters_are_404(gateway, make_key, catalog):
    key_a, secret_a = make_key()
    key_b, secret_b = make_key()
    account_a, account_b = _account_of(key_a), _account_of(key_b)
    base = catalog[STUB_MODEL]
    _adapter(account_a, "support-bot", base)
    _adapter(account_a, "draft", base, status="validating")  # not servable yet: not listed
    _adapter(account_b, "other-bot", base)
    own_a = f"accounts/{account_a.slug}/models/support-bot"
    own_b = f"accounts/{account_b.slug}/models/other-bot"
    catalog_names = sorted(f"accounts/hearth/models/{slug}" for slug in catalog)

    client_a, client_b = sdk(gateway.url, secret_a), sdk(gateway.url, secret_b)
    models_a = {m.id: m for m in client_a.models.list()}
    assert sorted(models_a) == sorted([*catalog_names, own_a])
    assert models_a[own_a].owned_by == account_a.slug
    assert sorted(m.id for m in client_b.models.list()) == sorted([*catalog_names, own_b])
    assert client_a.models.retrieve(own_a).id == own_a

    with pytest.raises(openai.NotFoundError) as info:
        client_b.models.retrieve(own_a)
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as info:
        client_b.chat.completions.create(model=own_a, messages=MESSAGES)
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # the pending one is not callable by its owner either
        client_a.chat.completions.create(model=f"accounts/{account_a.slug}/models/draft", messages=MESSAGES)


def test_adapter_request_routes_to_its_holder_as_base_uid_and_is_billed_at_the_base_price(
        gateway_factory, stub_worker, make_key, catalog):
    key, secret = make_key()
    account = _account_of(key)
    base = catalog[STUB_MODEL]
    gateway = gateway_factory(catalog_ttl_s=600.0, adapter_miss_refresh_s=0.0)
    client = sdk(gateway.url, secret)
    public = f"accounts/{account.slug}/models/support-bot"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=public, messages=MESSAGES)  # caches "no adapters" for 600 s
    adapter = _adapter(account, "support-bot", base)  # ready now: callable at once, not after the catalog TTL
    other_url, _ = stub_worker("stub-0", "--chunks", "5")
    holder_url, _ = stub_worker("stub-1", "--chunks", "5", "--adapters", f"x,{adapter.uid}")
    wait_for_workers(gateway, STUB_MODEL, count=2)

    raw = client.chat.completions.with_raw_response.create(model=public, messages=MESSAGES)
    reply = raw.parse()
    stream = client.chat.completions.create(model=public, messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert reply.model == public and {c.model for c in chunks} == {public}
    # Both went to the worker holding the adapter (idle, so within the load bound), named as the worker knows it.
    assert _served_models(holder_url) == [f"{STUB_MODEL}:{adapter.uid}"] * 2
    assert _served_models(other_url) == []

    event = wait_usage(os.environ["REDIS_URL"], raw.headers["x-request-id"])
    assert (event["adapter_id"], event["model_id"], event["account_id"]) == (adapter.pk, base.pk, account.pk)
    streamed_event = wait_usage(os.environ["REDIS_URL"], stream.response.headers["x-request-id"])
    assert streamed_event["adapter_id"] == adapter.pk

    # The stub reports 7 prompt and 5 completion tokens: the adapter costs exactly the base model's rate.
    expected = _stub_cost(base, prompt=7, completion=5)
    assert raw.headers["x-hearth-cost"] == reply.usage.cost == expected
    assert chunks[-1].usage.cost == expected
    base_raw = client.chat.completions.with_raw_response.create(model=STUB_MODEL, messages=MESSAGES)
    assert base_raw.headers["x-hearth-cost"] == base_raw.parse().usage.cost == expected
    assert wait_usage(os.environ["REDIS_URL"], base_raw.headers["x-request-id"])["adapter_id"] is None


def test_deleted_adapter_is_404_at_once_not_after_the_cache_ttl(gateway_factory, make_key, catalog,
                                                                django_capture_on_commit_callbacks):
    from adapters.services import adapter_delete

    key, secret = make_key()
    account = _account_of(key)
    gateway = gateway_factory(catalog_ttl_s=600.0)
    adapter = _adapter(account, "gone-soon", catalog[STUB_MODEL])
    public = f"accounts/{account.slug}/models/gone-soon"
    client = sdk(gateway.url, secret)
    assert client.models.retrieve(public).id == public  # now cached for 600 s
    with django_capture_on_commit_callbacks(execute=True):
        adapter_delete(adapter=adapter)  # publishes the uid on ADAPTERS_DELETED_CHANNEL after commit
    deadline = time.monotonic() + 30
    while True:  # the message arrives asynchronously; without it the cached entry would live 600 s
        try:
            client.models.retrieve(public)
        except openai.NotFoundError as exc:
            assert exc.code == "model_not_found"
            break
        assert time.monotonic() < deadline, "the deleted adapter stayed callable"
        time.sleep(0.05)
