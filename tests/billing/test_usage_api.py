"""GET /api/v1/usage: from the roll-ups, tenant-scoped (another account's usage is invisible), 400 on bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from billing_testlib import usage_event, xadd_events
from rest_framework.test import APIClient

from billing.ingest import UsageConsumer

pytestmark = pytest.mark.django_db


def client_for(account) -> APIClient:
    from accounts.models import Membership

    member = Membership.objects.for_account(account).select_related("user").get()
    client = APIClient()
    client.force_login(member.user)
    return client


@pytest.fixture
def two_tenants(rclient, tenant, smollm2):
    from keys.services import api_key_create

    ada, ada_key = tenant("ada")
    ada_key2, _ = api_key_create(account=ada, name="second")
    bob, bob_key = tenant("bob")
    now = datetime.now(UTC).replace(minute=30)
    events = [
        usage_event(ada.id, ada_key.id, smollm2.id, prompt=100, completion=10, finished_at=now),
        usage_event(ada.id, ada_key.id, smollm2.id, prompt=200, completion=20, finished_at=now - timedelta(days=1)),
        usage_event(ada.id, ada_key2.id, smollm2.id, prompt=300, cached=100, completion=30, finished_at=now),
        usage_event(bob.id, bob_key.id, smollm2.id, prompt=9999, completion=9999, finished_at=now),
    ]
    xadd_events(rclient, events)
    UsageConsumer(rclient, consumer="t", block_ms=10).step()
    return ada, (ada_key, ada_key2), bob, now


def test_group_by_day_model_and_key(two_tenants, smollm2):
    ada, (key1, key2), _bob, now = two_tenants
    client = client_for(ada)
    start = (now - timedelta(days=3)).date().isoformat()
    end = (now + timedelta(days=1)).date().isoformat()

    by_day = client.get("/api/v1/usage", {"start": start, "end": end, "group_by": "day"}).json()
    assert [d["day"] for d in by_day["data"]] == [(now - timedelta(days=1)).date().isoformat(), now.date().isoformat()]
    assert [d["prompt_tokens"] for d in by_day["data"]] == [200, 400]
    assert by_day["total"]["num_requests"] == 3 and by_day["total"]["cached_prompt_tokens"] == 100

    by_model = client.get("/api/v1/usage", {"start": start, "end": end, "group_by": "model"}).json()
    assert [(d["model"], d["completion_tokens"]) for d in by_model["data"]] == [(smollm2.public_name, 60)]

    by_key = client.get("/api/v1/usage", {"start": start, "end": end, "group_by": "key"}).json()
    assert {d["api_key_id"]: d["prompt_tokens"] for d in by_key["data"]} == {key1.id: 300, key2.id: 300}
    assert by_key["total"]["cost_usd"] == by_day["total"]["cost_usd"] == by_model["total"]["cost_usd"]


def test_another_accounts_usage_is_invisible(two_tenants):
    ada, _keys, bob, _now = two_tenants
    ada_total = client_for(ada).get("/api/v1/usage", {"group_by": "key"}).json()["total"]
    bob_data = client_for(bob).get("/api/v1/usage", {"group_by": "key"}).json()["data"]
    assert ada_total["prompt_tokens"] == 600  # none of bob's 9999
    assert [d["prompt_tokens"] for d in bob_data] == [9999]
    # Naming ada's account while logged in as bob is refused, not answered with ada's rows.
    response = client_for(bob).get("/api/v1/usage", HTTP_X_HEARTH_ACCOUNT=ada.slug)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "hour"}, "group_by"),
        ({"start": "2025-02-01", "end": "2025-01-01"}, "start"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2020-01-01", "end": "2025-01-01"}, "end"),
    ],
)
def test_bad_range_or_group_is_400(two_tenants, params, field):
    response = client_for(two_tenants[0]).get("/api/v1/usage", params)
    assert response.status_code == 400
    assert field in response.json()


def test_usage_needs_authentication(db):
    assert APIClient().get("/api/v1/usage").status_code in (401, 403)
