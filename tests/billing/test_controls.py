"""Self-serve billing controls: spend limit GET/PUT (owners/admins; effective in the gateway's Redis hash at once),
its warning level, saved cards listed and removed (real Stripe SDK against localstripe), invoices with their lines,
and the usage CSV (the same Decimal strings as the usage API). Another account gets 404 / sees nothing; a member
can't change the limit or remove a card."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from billing_testlib import add_card, usage_event, xadd_events
from rest_framework.test import APIClient

from billing.ingest import UsageConsumer
from billing.stripe_billing import period_close

pytestmark = pytest.mark.django_db


def login(account, role: str | None = None) -> APIClient:
    """A client logged in as the account's owner, or as a new person added with `role`."""
    import uuid

    from accounts.models import Membership
    from accounts.services import account_signup, membership_add

    client = APIClient()
    if role is None:
        user = Membership.objects.for_account(account).select_related("user").get(role="owner").user
    else:
        user, _own = account_signup(email=f"{role}-{uuid.uuid4().hex[:6]}@example.com",
                                    password="amber-kettle-orbit-42", account_name=f"{role}-own")
        membership_add(account=account, acting_role="owner", email=user.email, role=role)
    client.force_login(user)
    client.credentials(HTTP_X_HEARTH_ACCOUNT=account.slug)
    return client


def test_spend_limit_get_put_publishes_to_the_gateway_hash(rclient, tenant, django_capture_on_commit_callbacks):
    from contracts import billing_state_key

    account, _key = tenant("ada")
    owner = login(account)
    state = owner.get("/api/v1/billing/spend-limit").json()
    assert state["warning"] is None and state["month_to_date_usd"] == "0"
    with django_capture_on_commit_callbacks(execute=True):
        resp = owner.put("/api/v1/billing/spend-limit", {"monthly_spend_limit_usd": "12.34"}, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["monthly_spend_limit_usd"] == "12.34"
    # what the gateway's billing guard reads, written on commit
    assert rclient.hget(billing_state_key(account.id), "limit_micros") == b"12340000"
    bad = owner.put("/api/v1/billing/spend-limit", {"monthly_spend_limit_usd": "-1"}, format="json")
    assert bad.status_code == 400 and "monthly_spend_limit_usd" in bad.json()
    assert owner.put("/api/v1/billing/spend-limit", {"monthly_spend_limit_usd": "1.005"},
                     format="json").status_code == 400


def test_member_cannot_change_the_limit_admin_can(rclient, tenant):
    account, _key = tenant("ada")
    member = login(account, "member")
    assert member.get("/api/v1/billing/spend-limit").status_code == 200
    resp = member.put("/api/v1/billing/spend-limit", {"monthly_spend_limit_usd": "99"}, format="json")
    assert resp.status_code == 403 and "detail" in resp.json()
    admin = login(account, "admin")
    assert admin.put("/api/v1/billing/spend-limit", {"monthly_spend_limit_usd": "99"}, format="json").status_code == 200


def test_warning_levels_follow_month_to_date_spend(rclient, tenant, smollm2):
    from billing.services import spend_limit_set

    account, key = tenant("ada")
    # 1M output tokens at the seed's output price
    xadd_events(rclient, [usage_event(account.id, key.id, smollm2.id, prompt=0, completion=1_000_000)])
    UsageConsumer(rclient, consumer="t", block_ms=10).step()
    spent = smollm2.price_output_per_mtok
    owner = login(account)
    spend_limit_set(account=account, limit_usd=(spent * 2).quantize(Decimal("0.01")))
    assert owner.get("/api/v1/billing/spend-limit").json()["warning"] is None
    spend_limit_set(account=account, limit_usd=(spent / Decimal("0.9")).quantize(Decimal("0.01")))
    assert owner.get("/api/v1/billing/spend-limit").json()["warning"] == "approaching"
    spend_limit_set(account=account, limit_usd=Decimal("0"))
    state = owner.get("/api/v1/billing/spend-limit").json()
    assert state["warning"] == "exceeded" and Decimal(state["month_to_date_usd"]) == spent


def test_cards_listed_and_removed_other_account_404(stripe_on, tenant):
    ada, _ = tenant("ada")
    bob, _ = tenant("bob")
    profile = add_card(ada)
    add_card(bob)
    owner = login(ada)
    cards = owner.get("/api/v1/billing/payment-methods").json()["data"]
    assert [c["id"] for c in cards] == [profile.default_payment_method_id]
    assert cards[0]["last4"] == "4242" and cards[0]["is_default"] is True
    bob_card = login(bob).get("/api/v1/billing/payment-methods").json()["data"][0]["id"]
    assert owner.delete(f"/api/v1/billing/payment-methods/{bob_card}").status_code == 404
    assert login(ada, "member").delete(f"/api/v1/billing/payment-methods/{cards[0]['id']}").status_code == 403
    assert owner.delete(f"/api/v1/billing/payment-methods/{cards[0]['id']}").status_code == 204
    assert owner.get("/api/v1/billing/payment-methods").json()["data"] == []
    assert owner.get("/api/v1/billing").json()["has_payment_method"] is False
    assert len(login(bob).get("/api/v1/billing/payment-methods").json()["data"]) == 1


def test_invoices_list_lines_by_model_and_tenant_scope(stripe_on, tenant, smollm2, rclient):
    ada, key = tenant("ada")
    bob, _ = tenant("bob")
    add_card(ada)
    last_month = (date.today().replace(day=1) - timedelta(days=1)).replace(day=15)
    when = datetime.combine(last_month, datetime.min.time(), tzinfo=UTC)
    xadd_events(rclient, [usage_event(ada.id, key.id, smollm2.id, prompt=0, completion=10_000_000, finished_at=when)])
    UsageConsumer(rclient, consumer="t", block_ms=10).step()
    period_close(period=last_month)
    invoices = login(ada).get("/api/v1/billing/invoices").json()["data"]
    assert len(invoices) == 1
    inv = invoices[0]
    assert inv["period"] == last_month.strftime("%Y-%m") and inv["status"] == "paid"
    expected = (smollm2.price_output_per_mtok * 10).quantize(Decimal("0.01"))
    assert Decimal(inv["amount_usd"]) == expected
    usage_lines = [line for line in inv["lines"] if line["kind"] == "usage"]
    assert usage_lines == [{"kind": "usage", "amount_usd": str(expected), "model": smollm2.public_name,
                            "prompt_tokens": 0, "cached_prompt_tokens": 0, "completion_tokens": 10_000_000}]
    assert login(bob).get("/api/v1/billing/invoices").json()["data"] == []


def test_usage_csv_equals_the_usage_api(rclient, tenant, smollm2):
    ada, key = tenant("ada")
    bob, bob_key = tenant("bob")
    now = datetime.now(UTC).replace(minute=30)
    xadd_events(rclient, [
        usage_event(ada.id, key.id, smollm2.id, prompt=123, cached=7, completion=45, finished_at=now),
        usage_event(ada.id, key.id, smollm2.id, prompt=1, completion=2, finished_at=now - timedelta(days=1)),
        usage_event(bob.id, bob_key.id, smollm2.id, prompt=999, completion=999, finished_at=now),
    ])
    UsageConsumer(rclient, consumer="t", block_ms=10).step()
    client = login(ada)
    query = {"start": (now - timedelta(days=3)).date().isoformat(),
             "end": (now + timedelta(days=1)).date().isoformat()}
    for group in ("day", "model", "key", "model_day"):
        api = client.get("/api/v1/usage", {**query, "group_by": group}).json()
        resp = client.get("/api/v1/usage.csv", {**query, "group_by": group})
        assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(resp.content.decode())))
        assert len(rows) == len(api["data"]) + 1
        for row, item in zip(rows, api["data"], strict=False):
            assert row["cost_usd"] == item["cost_usd"]  # the exact Decimal string
            assert int(row["prompt_tokens"]) == item["prompt_tokens"]
            assert int(row["completion_tokens"]) == item["completion_tokens"]
        assert rows[-1]["cost_usd"] == api["total"]["cost_usd"]
        assert int(rows[-1]["prompt_tokens"]) == 124  # bob's usage is not in ada's export
    assert client.get("/api/v1/usage.csv", {"group_by": "hour"}).status_code == 400
    assert APIClient().get("/api/v1/usage.csv").status_code in (401, 403)


def test_test_card_form_adds_a_card_only_in_test_mode(stripe_on, tenant, settings):
    from billing.conf import card_form

    account, _ = tenant("ada")
    bob, _ = tenant("bob")
    owner = login(account)
    assert card_form() == "test"
    assert owner.get("/api/v1/config").json()["card_form"] == "test"
    intent = owner.post("/api/v1/billing/setup-intent").json()
    card = {"setup_intent_id": intent["id"], "number": "4242424242424242", "exp_month": 12, "exp_year": 2034,
            "cvc": "123"}
    # another account can't confirm this account's set-up
    assert login(bob).post("/api/v1/billing/test-card", card, format="json").status_code == 400
    assert login(account, "member").post("/api/v1/billing/test-card", card, format="json").status_code == 403
    bad = owner.post("/api/v1/billing/test-card", {**card, "number": "42"}, format="json")
    assert bad.status_code == 400 and "number" in bad.json()
    resp = owner.post("/api/v1/billing/test-card", card, format="json")
    assert resp.status_code == 201, resp.content
    cards = owner.get("/api/v1/billing/payment-methods").json()["data"]
    assert len(cards) == 1 and cards[0]["last4"] == "4242" and cards[0]["is_default"]
    # against real Stripe the endpoint does not exist: cards go through Stripe.js there
    settings.HEARTH_STRIPE_API_BASE = "https://api.stripe.com"
    assert card_form() == "none"
    assert owner.post("/api/v1/billing/test-card", card, format="json").status_code == 404
    settings.HEARTH_STRIPE_PUBLISHABLE_KEY = "pk_test_x"
    assert owner.get("/api/v1/config").json() | {"gateway_url": None} == {
        "gateway_url": None, "card_form": "elements", "stripe_publishable_key": "pk_test_x"}
