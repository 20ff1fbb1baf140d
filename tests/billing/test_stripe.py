"""Stripe through the official SDK against localstripe (a real HTTP server on a free loopback port, started for the
session with --from-scratch and stopped after): customer and card set-up, invoice items that a re-run doesn't
duplicate, an invoice created and paid, credits bought with a PaymentIntent, and the webhook's signature check."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import stripe
from billing_testlib import WEBHOOK_SECRET, add_card, usage_event, xadd_events
from rest_framework.test import APIClient

from billing.credits import credits_purchase
from billing.ingest import UsageConsumer
from billing.models import BillingProfile, CreditPurchase, Invoice, InvoiceItem
from billing.stripe_billing import (
    customer_ensure,
    invoice_items_push,
    period_close,
    stripe_client,
)

pytestmark = pytest.mark.django_db


def test_customer_is_created_once_and_a_card_raises_the_limit(stripe_on, tenant):
    account, _key = tenant("ada")
    customer_id = customer_ensure(account=account)
    assert customer_ensure(account=account) == customer_id
    before = BillingProfile.objects.for_account(account).get().monthly_spend_limit_usd
    profile = add_card(account)
    assert profile.default_payment_method_id.startswith("pm_")
    assert profile.monthly_spend_limit_usd > before
    customer = stripe_client().v1.customers.retrieve(customer_id)
    assert customer.invoice_settings.default_payment_method == profile.default_payment_method_id


def test_period_job_pushes_items_once_and_the_invoice_is_paid(stripe_on, tenant, smollm2, rclient):
    account, key = tenant("bob")
    add_card(account)
    # 10M output tokens at the seed's output price: a whole-cent amount that survives rounding exactly.
    xadd_events(rclient, [usage_event(account.id, key.id, smollm2.id, prompt=0, completion=5_000_000)
                          for _ in range(2)])
    UsageConsumer(rclient, consumer="t", block_ms=10).step()
    period = datetime.now(UTC).date().replace(day=1)

    first = invoice_items_push(account=account, period=period)
    again = invoice_items_push(account=account, period=period)
    assert [i.pk for i in again] == [i.pk for i in first] and len(first) == 1
    customer_id = customer_ensure(account=account)
    pending = stripe_client().v1.invoice_items.list({"customer": customer_id}).data
    assert len(pending) == 1 and pending[0].amount == int(smollm2.price_output_per_mtok * 10 * 100)

    [invoice] = period_close(period=period)
    assert invoice.status == Invoice.Status.PAID
    assert stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id).status == "paid"
    assert invoice.amount_usd == smollm2.price_output_per_mtok * 10
    # Re-running the whole period job creates nothing new in Stripe or here.
    stripe_invoices = {i.id for i in stripe_client().v1.invoices.list({"customer": customer_id}).data}
    assert invoice.stripe_invoice_id in stripe_invoices
    period_close(period=period)
    assert InvoiceItem.objects.for_account(account).count() == 1
    assert Invoice.objects.for_account(account).count() == 1
    assert {i.id for i in stripe_client().v1.invoices.list({"customer": customer_id}).data} == stripe_invoices
    assert stripe_client().v1.invoice_items.list({"customer": customer_id}).data == []


def test_credits_bought_with_a_payment_intent(stripe_on, tenant):
    account, _key = tenant("cat")
    add_card(account)
    purchase = credits_purchase(account=account, amount_usd=Decimal("25.00"))
    assert purchase.status == CreditPurchase.Status.SUCCEEDED
    assert stripe_client().v1.payment_intents.retrieve(purchase.stripe_payment_intent_id).amount == 2500
    assert BillingProfile.objects.for_account(account).get().credit_balance_usd == Decimal("25.00")


def signed(payload: bytes, secret: str = WEBHOOK_SECRET) -> str:
    # Stripe's scheme: v1 = HMAC-SHA256(secret, "<timestamp>.<body>")
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def webhook(payload: dict, signature: str | None) -> tuple[int, dict]:
    body = json.dumps(payload).encode()
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature else {}
    response = APIClient().post("/api/v1/billing/stripe/webhook", body, content_type="application/json", **headers)
    return response.status_code, response.json()


def invoice_event(event_type: str, invoice_id: str) -> dict:
    return {"id": f"evt_{event_type}_{invoice_id}", "object": "event", "type": event_type,
            "data": {"object": {"id": invoice_id, "object": "invoice"}}}


def test_webhook_signature_and_payment_failure_flow(stripe_on, tenant, django_capture_on_commit_callbacks):
    account, _key = tenant("dan")
    invoice = Invoice.objects.for_account(account).create(account=account, period=datetime.now(UTC).date().replace(
        day=1), amount_usd=Decimal("3.00"), status=Invoice.Status.OPEN, stripe_invoice_id="in_hearthtest1")
    failed = json.dumps(invoice_event("invoice.payment_failed", invoice.stripe_invoice_id)).encode()

    for signature in (None, "t=1,v1=deadbeef", signed(failed, secret="whsec_wrong")):
        status, body = webhook(json.loads(failed), signature)
        assert status == 400 and "signature" in body["detail"].lower()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    assert BillingProfile.objects.for_account(account).filter(payment_status="payment_failed").count() == 0

    with django_capture_on_commit_callbacks(execute=True):
        assert webhook(json.loads(failed), signed(failed))[0] == 200
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAYMENT_FAILED
    assert BillingProfile.objects.for_account(account).get().payment_status == "payment_failed"
    from test_rating_and_limits import guard_state

    assert "payment failed" in (guard_state(account.id).refusal() or "")

    paid = json.dumps(invoice_event("invoice.paid", invoice.stripe_invoice_id)).encode()
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook(json.loads(paid), signed(paid))[0] == 200
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert guard_state(account.id).refusal() is None


def test_ledger_only_mode_refuses_payments_clearly(settings, tenant):
    settings.HEARTH_STRIPE_API_KEY = ""
    account, _key = tenant("eve")
    from accounts.models import Membership

    client = APIClient()
    client.force_login(Membership.objects.for_account(account).get().user)
    assert client.get("/api/v1/billing").json()["mode"] == "ledger_only"
    response = client.post("/api/v1/billing/setup-intent")
    assert response.status_code == 400 and "not configured" in response.json()["detail"]
    assert stripe.api_key is None  # nothing global was configured
