"""Routes through the gateway (stub workers stand in for the model; the worker side of adapters is tested in
tests/workers): a 70/30 route of two adapters serves within ±5 points over 1,000 requests, one `user` always gets
the same variant, the response keeps the route's name and says the variant (x-hearth-variant), usage events carry
route, variant and TTFT, weight changes apply within a second, deleting an adapter removes its variant, a route with
no ready variant is 404 with why, and another account's route is 404."""

import asyncio
import os
import time
from collections import Counter

import httpx
import openai
import pytest
from conftest import STUB_MODEL, wait_usage
from gateway_testlib import sdk, wait_for_workers

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "hi"}]


def _account_of(key):
    from accounts.models import Account

    return Account.objects.get(pk=key.account_id)


def _adapter(account, name: str, base, status: str = "ready"):
    from adapters.models import Adapter

    return Adapter.objects.for_account(account).create(account=account, name=name, base_model=base, status=status)


def _route(account, name: str, variants: list[tuple[str, int]]):
    from routes.services import route_create

    return route_create(account=account, name=name, variants=[{"model": m, "weight": w} for m, w in variants])


async def _variants_of(url: str, secret: str, model: str, n: int, user: str | None = None) -> Counter:
    body: dict = {"model": model, "messages": MESSAGES, "max_tokens": 1}
    if user:
        body["user"] = user
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60,
                                 limits=httpx.Limits(max_connections=16)) as client:
        sem = asyncio.Semaphore(16)

        async def one() -> str:
            async with sem:
                r = await client.post("/v1/chat/completions", json=body)
                assert r.status_code == 200, r.text
                assert r.json()["model"] == model
                return r.headers["x-hearth-variant"]

        return Counter(await asyncio.gather(*(one() for _ in range(n))))


def test_seventy_thirty_split_sticky_users_and_usage_events(gateway_factory, stub_worker, make_key, catalog,
                                                            django_capture_on_commit_callbacks):
    key, secret = make_key(rpm_limit=100_000, tpm_limit=100_000_000)  # 1,000 requests in a few seconds
    account = _account_of(key)
    base = catalog[STUB_MODEL]
    v3, v4 = _adapter(account, "support-v3", base), _adapter(account, "support-v4", base)
    own = f"accounts/{account.slug}/models"
    with django_capture_on_commit_callbacks(execute=True):
        route = _route(account, "support", [(f"{own}/support-v3", 70), (f"{own}/support-v4", 30)])
    stub_worker("stub-0", "--chunks", "3", "--adapters", f"{v3.uid},{v4.uid}")
    gateway = gateway_factory(catalog_ttl_s=600.0)
    wait_for_workers(gateway, STUB_MODEL, count=1)

    counts = asyncio.run(_variants_of(gateway.url, secret, f"{own}/support", 1000))
    assert set(counts) == {f"{own}/support-v3", f"{own}/support-v4"}
    assert abs(counts[f"{own}/support-v3"] / 1000 - 0.70) <= 0.05, counts
    for user in ("alice", "bob"):
        sticky = asyncio.run(_variants_of(gateway.url, secret, f"{own}/support", 20, user=user))
        assert len(sticky) == 1, (user, sticky)

    client = sdk(gateway.url, secret)
    stream = client.chat.completions.create(model=f"{own}/support", messages=MESSAGES, stream=True, user="carol")
    chunks = list(stream)
    assert {c.model for c in chunks} == {f"{own}/support"}
    variant = stream.response.headers["x-hearth-variant"]
    event = wait_usage(os.environ["REDIS_URL"], stream.response.headers["x-request-id"])
    variants = {v.adapter_id: v.pk for v in route.variants.all()}
    assert event["route_id"] == route.pk and event["model_id"] == base.pk
    assert event["variant_id"] == variants[v3.pk if variant.endswith("support-v3") else v4.pk]
    assert event["adapter_id"] == (v3.pk if variant.endswith("support-v3") else v4.pk)
    assert event["first_token_at"] is not None and event["started_at"] <= event["first_token_at"]

    # Weights change live (the gateway caches routes for 600 s here: only the change message can do it).
    from routes.services import route_update

    with django_capture_on_commit_callbacks(execute=True):
        route_update(route=route, variants=[{"model": f"{own}/support-v4", "weight": 1}])
    deadline = time.monotonic() + 5
    while asyncio.run(_variants_of(gateway.url, secret, f"{own}/support", 10)) != Counter({f"{own}/support-v4": 10}):
        assert time.monotonic() < deadline, "the new weights did not apply"
        time.sleep(0.1)


def test_deleted_adapter_leaves_the_route_and_no_ready_variant_is_404(gateway_factory, stub_worker, make_key, catalog,
                                                                     django_capture_on_commit_callbacks):
    from adapters.services import adapter_delete

    key, secret = make_key()
    account = _account_of(key)
    base = catalog[STUB_MODEL]
    v3, v4 = _adapter(account, "v3", base), _adapter(account, "v4", base, status="validating")
    own = f"accounts/{account.slug}/models"
    with django_capture_on_commit_callbacks(execute=True):
        _route(account, "ab", [(f"{own}/v3", 50), (f"{own}/v4", 50)])
    stub_worker("stub-0", "--chunks", "2", "--adapters", f"{v3.uid},{v4.uid}")
    gateway = gateway_factory(catalog_ttl_s=600.0)
    wait_for_workers(gateway, STUB_MODEL, count=1)
    # v4 is not ready: every request goes to v3
    assert asyncio.run(_variants_of(gateway.url, secret, f"{own}/ab", 20)) == Counter({f"{own}/v3": 20})
    assert f"{own}/ab" in {m.id for m in sdk(gateway.url, secret).models.list()}
    with django_capture_on_commit_callbacks(execute=True):
        adapter_delete(adapter=v3)
    client = sdk(gateway.url, secret)
    deadline = time.monotonic() + 5
    while True:
        try:
            client.chat.completions.create(model=f"{own}/ab", messages=MESSAGES)
        except openai.NotFoundError as exc:
            assert exc.code == "model_not_found" and "no ready variant" in exc.message and "v4" in exc.message
            break
        assert time.monotonic() < deadline, "the deleted adapter's variant kept serving"
        time.sleep(0.1)


def test_other_accounts_route_is_404(gateway, stub_worker, make_key, catalog):
    key_a, _secret_a = make_key()
    _key_b, secret_b = make_key()
    account_a = _account_of(key_a)
    _route(account_a, "mine", [(f"accounts/hearth/models/{STUB_MODEL}", 1)])
    client_b = sdk(gateway.url, secret_b)
    with pytest.raises(openai.NotFoundError) as info:
        client_b.chat.completions.create(model=f"accounts/{account_a.slug}/models/mine", messages=MESSAGES)
    assert info.value.code == "model_not_found"
    assert f"accounts/{account_a.slug}/models/mine" not in {m.id for m in client_b.models.list()}
