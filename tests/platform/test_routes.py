"""Routes (A/B splits) through the control-plane API: create with weighted variants (catalog model or own
adapters), change live (a message on contracts.ROUTES_CHANGED_CHANNEL), refusals in DRF's shape, roles, another
account's route and adapters 404, deleting an adapter removes its variant, and per-variant figures from the ledger."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
from rest_framework.test import APIClient

from contracts import ROUTES_CHANGED_CHANNEL, USAGE_EVENT_FIELD, USAGE_STREAM

pytestmark = pytest.mark.django_db
BASE = "accounts/hearth/models/smollm2-135m-instruct"


@pytest.fixture
def smollm2(db):
    import importlib

    from catalog.models import BaseModel

    seed = dict(importlib.import_module("catalog.migrations.0002_seed_smollm2").SMOLLM2)
    model, _ = BaseModel.objects.update_or_create(slug=seed.pop("slug"), defaults=seed)
    return model


def owner_client(logged_in, email: str) -> tuple[APIClient, object]:
    from accounts.models import Account

    client = logged_in(email)
    account = Account.objects.get(pk=client.get("/api/v1/account").json()["id"])
    return client, account


def adapter(account, smollm2, name: str, status: str = "ready"):
    from adapters.models import Adapter

    row = Adapter(account=account, name=name, base_model=smollm2, status=status)
    row.save()
    return row


def test_create_list_update_and_live_change_message(logged_in, smollm2, django_capture_on_commit_callbacks):
    client, account = owner_client(logged_in, "ada@example.com")
    adapter(account, smollm2, "support-v3")
    adapter(account, smollm2, "support-v4")
    pubsub = redis.Redis.from_url(os.environ["REDIS_URL"]).pubsub()
    pubsub.subscribe(ROUTES_CHANGED_CHANNEL)
    pubsub.get_message(timeout=1)
    body = {"name": "support", "variants": [
        {"model": f"accounts/{account.slug}/models/support-v3", "weight": 90},
        {"model": f"accounts/{account.slug}/models/support-v4", "weight": 10}]}
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post("/api/v1/routes", body, format="json")
    assert resp.status_code == 201, resp.content
    route = resp.json()
    assert route["model"] == f"accounts/{account.slug}/models/support"
    assert [(v["weight"], v["share"], v["ready"]) for v in route["variants"]] == [(90, 0.9, True), (10, 0.1, True)]
    message = pubsub.get_message(timeout=2)
    assert message and message["data"] == str(account.pk).encode()
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.patch(f"/api/v1/routes/{route['id']}", {"variants": [
            {"model": BASE, "weight": 1}, {"model": f"accounts/{account.slug}/models/support-v4", "weight": 3}]},
            format="json")
    assert resp.status_code == 200, resp.content
    assert [(v["model"], v["share"]) for v in resp.json()["variants"]] == [
        (BASE, 0.25), (f"accounts/{account.slug}/models/support-v4", 0.75)]
    assert pubsub.get_message(timeout=2)["data"] == str(account.pk).encode()
    assert [r["name"] for r in client.get("/api/v1/routes").json()] == ["support"]
    pubsub.close()


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Bad Name", "variants": [{"model": BASE, "weight": 1}]}, "name"),
    ({"name": "r", "variants": []}, "variants"),
    ({"name": "r", "variants": [{"model": BASE, "weight": 0}]}, "variants"),
    ({"name": "r", "variants": [{"model": "accounts/hearth/models/nope", "weight": 1}]}, "variants[0].model"),
    ({"name": "r", "variants": [{"model": "gpt-4", "weight": 1}]}, "variants[0].model"),
    ({"name": "r", "variants": [{"model": "accounts/hearth/models/all-minilm-l6-v2", "weight": 1}]},
     "variants[0].model"),
    ({"name": "r", "variants": [{"model": BASE, "weight": 1}, {"model": BASE, "weight": 2}]}, "variants[1].model"),
])
def test_bad_routes_are_400_with_the_field(logged_in, smollm2, body, field):
    client, _account = owner_client(logged_in, "ada@example.com")
    resp = client.post("/api/v1/routes", body, format="json")
    assert resp.status_code == 400, resp.content
    assert field in resp.json(), resp.json()


def test_name_clash_with_an_adapter_and_failed_adapter_refused(logged_in, smollm2):
    client, account = owner_client(logged_in, "ada@example.com")
    adapter(account, smollm2, "taken")
    adapter(account, smollm2, "broken", status="failed")
    assert client.post("/api/v1/routes", {"name": "taken", "variants": [{"model": BASE, "weight": 1}]},
                       format="json").status_code == 400
    resp = client.post("/api/v1/routes", {"name": "r", "variants": [
        {"model": f"accounts/{account.slug}/models/broken", "weight": 1}]}, format="json")
    assert resp.status_code == 400 and "variants[0].model" in resp.json()


def test_other_accounts_routes_are_404(logged_in, smollm2):
    ada, ada_account = owner_client(logged_in, "ada@example.com")
    bob, _bob_account = owner_client(logged_in, "bob@example.com")
    adapter(ada_account, smollm2, "secret-lora")
    route = ada.post("/api/v1/routes", {"name": "mine", "variants": [{"model": BASE, "weight": 1}]},
                     format="json").json()
    for method, path in [("get", f"/api/v1/routes/{route['id']}"), ("patch", f"/api/v1/routes/{route['id']}"),
                         ("delete", f"/api/v1/routes/{route['id']}"), ("get", f"/api/v1/routes/{route['id']}/stats")]:
        resp = getattr(bob, method)(path, {"variants": [{"model": BASE, "weight": 1}]} if method == "patch" else None,
                                    format="json")
        assert resp.status_code == 404, (method, path, resp.content)
    assert bob.get("/api/v1/routes").json() == []
    # another account's adapter can't be a variant of bob's route
    resp = bob.post("/api/v1/routes", {"name": "steal", "variants": [
        {"model": f"accounts/{ada_account.slug}/models/secret-lora", "weight": 1}]}, format="json")
    assert resp.status_code == 400 and "variants[0].model" in resp.json()


def test_members_read_but_cannot_change_routes(logged_in, smollm2, signup):
    from accounts.services import membership_add

    owner, account = owner_client(logged_in, "ada@example.com")
    route = owner.post("/api/v1/routes", {"name": "r", "variants": [{"model": BASE, "weight": 1}]},
                       format="json").json()
    user, _ = signup(email="mo@example.com")
    membership_add(account=account, acting_role="owner", email="mo@example.com", role="member")
    member = APIClient()
    member.force_login(user)
    member.credentials(HTTP_X_HEARTH_ACCOUNT=account.slug)
    assert member.get(f"/api/v1/routes/{route['id']}").status_code == 200
    assert member.post("/api/v1/routes", {"name": "x", "variants": [{"model": BASE, "weight": 1}]},
                       format="json").status_code == 403
    assert member.delete(f"/api/v1/routes/{route['id']}").status_code == 403


def test_deleting_an_adapter_removes_its_variant(logged_in, smollm2, django_capture_on_commit_callbacks):
    from adapters.services import adapter_delete

    client, account = owner_client(logged_in, "ada@example.com")
    v3, v4 = adapter(account, smollm2, "v3"), adapter(account, smollm2, "v4")
    route = client.post("/api/v1/routes", {"name": "ab", "variants": [
        {"model": f"accounts/{account.slug}/models/v3", "weight": 70},
        {"model": f"accounts/{account.slug}/models/v4", "weight": 30}]}, format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        adapter_delete(adapter=v4)
    variants = client.get(f"/api/v1/routes/{route['id']}").json()["variants"]
    assert [(v["model"], v["share"]) for v in variants] == [(f"accounts/{account.slug}/models/v3", 1.0)]
    assert v3.pk


def test_per_variant_stats_from_the_ledger(logged_in, smollm2):
    from billing.ingest import UsageConsumer
    from keys.services import api_key_create

    client, account = owner_client(logged_in, "ada@example.com")
    adapter(account, smollm2, "v3")
    route = client.post("/api/v1/routes", {"name": "ab", "variants": [
        {"model": BASE, "weight": 1}, {"model": f"accounts/{account.slug}/models/v3", "weight": 1}]},
        format="json").json()
    base_variant, lora_variant = (v["id"] for v in route["variants"])
    key, _ = api_key_create(account=account, name="k")
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    r.delete(USAGE_STREAM)
    now = datetime.now(UTC)

    def event(variant: int, ttft_ms: int, total_ms: int, status: str = "finished") -> dict:
        started = now - timedelta(seconds=5)
        return {"request_id": f"req_{uuid.uuid4().hex}", "account_id": account.pk, "api_key_id": key.pk,
                "model_id": smollm2.pk, "adapter_id": None, "prompt_tokens": 10, "cached_prompt_tokens": 0,
                "completion_tokens": 5, "started_at": started.isoformat(),
                "finished_at": (started + timedelta(milliseconds=total_ms)).isoformat(), "status": status,
                "route_id": route["id"], "variant_id": variant,
                "first_token_at": (started + timedelta(milliseconds=ttft_ms)).isoformat()}

    events = [event(base_variant, 100, 1000), event(base_variant, 300, 3000), event(base_variant, 200, 2000),
              event(lora_variant, 50, 500, status="error")]
    for e in events:
        r.xadd(USAGE_STREAM, {USAGE_EVENT_FIELD: json.dumps(e)})
    UsageConsumer(r, consumer="t", block_ms=10).step()
    stats = client.get(f"/api/v1/routes/{route['id']}/stats").json()
    by_variant = {row["variant_id"]: row for row in stats["data"]}
    base = by_variant[base_variant]
    assert base["num_requests"] == 3 and base["prompt_tokens"] == 30 and base["completion_tokens"] == 15
    assert base["ttft_ms_p50"] == 200.0 and base["latency_ms_p50"] == 2000.0
    assert 2900 < base["latency_ms_p99"] <= 3000 and base["error_rate"] == 0.0
    assert by_variant[lora_variant]["error_rate"] == 1.0
    assert stats["total"]["num_requests"] == 4
    assert Decimal(stats["total"]["cost_usd"]) == sum(Decimal(row["cost_usd"]) for row in stats["data"])
    assert client.get(f"/api/v1/routes/{route['id']}/stats", {"start": "2026-01-01", "end": "2025-01-01"}
                      ).status_code == 400
    r.delete(USAGE_STREAM)
    r.close()


def test_an_embedding_model_cannot_be_a_variant(logged_in, smollm2):
    from catalog.models import BaseModel

    BaseModel.objects.update_or_create(slug="minilm-test", defaults=dict(
        public_name="accounts/hearth/models/minilm-test", display_name="MiniLM", architecture="bert",
        context_length=256, weights_uri="test://minilm", kind="embedding", price_input_per_mtok="0.01",
        price_cached_input_per_mtok="0.01", price_output_per_mtok="0"))
    client, _account = owner_client(logged_in, "ada@example.com")
    resp = client.post("/api/v1/routes", {"name": "r", "variants": [
        {"model": "accounts/hearth/models/minilm-test", "weight": 1}]}, format="json")
    assert resp.status_code == 400 and "embedding" in resp.json()["variants[0].model"][0]
