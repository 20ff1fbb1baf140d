"""The billing lifecycle against localstripe with the real Stripe SDK: `billing.close_period` is on beat's schedule and
invoices the month that just ended; invoice webhooks are idempotent and order-independent (a redelivered
`invoice.payment_failed` after `invoice.paid` leaves a paying account alone); a credit purchase whose process died
between Stripe's confirmation and our row is recovered by the webhook from the PaymentIntent's metadata."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from billing_testlib import add_card, usage_event, xadd_events
from test_stripe import invoice_event, signed, webhook

from billing import credits
from billing.credits import credits_purchase
from billing.ingest import UsageConsumer
from billing.models import BillingProfile, CreditPurchase, Invoice
from billing.services import billing_profile_get
from billing.stripe_billing import stripe_client
from billing.tasks import close_period

pytestmark = pytest.mark.django_db


def _deliver(payload: dict, django_capture_on_commit_callbacks) -> None:
    body = json.dumps(payload).encode()
    with django_capture_on_commit_callbacks(execute=True):
        status, answer = webhook(payload, signed(body))
    assert status == 200, answer


def _payment_status(account) -> str:
    return BillingProfile.objects.for_account(account).get().payment_status


def _invoice(account, period, stripe_id: str, status=Invoice.Status.OPEN) -> Invoice:
    return Invoice.objects.for_account(account).create(account=account, period=period, amount_usd=Decimal("3.00"),
                                                       status=status, stripe_invoice_id=stripe_id)


# -- close_period on a schedule -----------------------------------------------------------------------------------------


def test_close_period_is_on_beats_schedule_for_the_first_days_of_the_month(settings):
    from hearth_platform.celery import app

    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "billing.close_period")
    schedule = entry["schedule"]
    assert schedule.day_of_month == {1, 2, 3} and schedule.hour == {1} and schedule.minute == {0}
    app.loader.import_default_modules()
    assert "billing.close_period" in app.tasks  # the name beat sends is a task the workers run


def test_close_period_invoices_the_month_that_just_ended(stripe_on, tenant, smollm2, rclient):
    account, key = tenant("ivy")
    add_card(account)
    this_month = datetime.now(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=15)
    xadd_events(rclient, [usage_event(account.id, key.id, smollm2.id, prompt=0, completion=5_000_000,
                                      finished_at=last_month)])
    xadd_events(rclient, [usage_event(account.id, key.id, smollm2.id, prompt=0, completion=5_000_000,
                                      finished_at=this_month)])  # not yet billable
    UsageConsumer(rclient, consumer="t", block_ms=10).step()

    result = close_period.apply().get()  # what beat's message runs (no period: the month that ended)
    [invoice] = Invoice.objects.for_account(account)
    assert result == [invoice.pk] and invoice.period == last_month.date().replace(day=1)
    assert invoice.status == Invoice.Status.PAID and invoice.amount_usd == smollm2.price_output_per_mtok * 5
    assert stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id).status == "paid"
    assert close_period.apply().get() == [invoice.pk]  # day 2's run finds it paid
    assert Invoice.objects.for_account(account).count() == 1


# -- invoice webhooks: idempotent, order-independent --------------------------------------------------------------------


def test_a_redelivered_failure_after_paid_leaves_the_account_paying(stripe_on, tenant,
                                                                    django_capture_on_commit_callbacks):
    from test_rating_and_limits import guard_state

    account, _key = tenant("joe")
    invoice = _invoice(account, datetime.now(UTC).date().replace(day=1), "in_hearth_order1")
    failed = invoice_event("invoice.payment_failed", invoice.stripe_invoice_id)
    paid = invoice_event("invoice.paid", invoice.stripe_invoice_id)
    for event in (failed, paid, failed, paid, failed):  # first try declined, retry paid, then redeliveries
        _deliver(event, django_capture_on_commit_callbacks)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert _payment_status(account) == "ok"
    assert guard_state(account.id).refusal() is None  # the gateway's view, from Redis


def test_the_account_stays_failed_while_any_invoice_is_unpaid(stripe_on, tenant, django_capture_on_commit_callbacks):
    account, _key = tenant("kim")
    this_month = datetime.now(UTC).date().replace(day=1)
    older = _invoice(account, (this_month - timedelta(days=1)).replace(day=1), "in_hearth_older")
    newer = _invoice(account, this_month, "in_hearth_newer")
    _deliver(invoice_event("invoice.payment_failed", older.stripe_invoice_id), django_capture_on_commit_callbacks)
    _deliver(invoice_event("invoice.paid", newer.stripe_invoice_id), django_capture_on_commit_callbacks)
    assert _payment_status(account) == "payment_failed"  # last month's invoice is still unpaid
    _deliver(invoice_event("invoice.paid", older.stripe_invoice_id), django_capture_on_commit_callbacks)
    assert _payment_status(account) == "ok"


# -- credit purchases: recoverable --------------------------------------------------------------------------------------


def test_a_purchase_whose_process_died_after_stripe_confirmed_is_credited_by_the_webhook(
    stripe_on, tenant, monkeypatch, django_capture_on_commit_callbacks
):
    account, _key = tenant("lee")
    add_card(account)
    created: list[str] = []
    real_create = stripe_client().v1.payment_intents.__class__.create

    def remember(self, params, options=None):
        intent = real_create(self, params, options)
        created.append(intent.id)
        return intent

    def killed(*args, **kwargs):  # the process dies right after Stripe confirmed the charge
        raise SystemExit("worker killed")

    monkeypatch.setattr(stripe_client().v1.payment_intents.__class__, "create", remember)
    monkeypatch.setattr(credits, "_purchase_for", killed)
    with pytest.raises(SystemExit):
        credits_purchase(account=account, amount_usd=Decimal("25.00"))
    monkeypatch.undo()
    [intent_id] = created
    intent = stripe_client().v1.payment_intents.retrieve(intent_id)
    assert intent.status == "succeeded" and not CreditPurchase.objects.for_account(account).exists()
    assert intent.metadata["hearth_account_id"] == str(account.pk) and intent.metadata["hearth_purpose"] == "credits"

    event = {"id": f"evt_pi_{intent_id}", "object": "event", "type": "payment_intent.succeeded",
             "data": {"object": intent.to_dict()}}
    _deliver(event, django_capture_on_commit_callbacks)
    _deliver(event, django_capture_on_commit_callbacks)  # Stripe delivers at least once
    [purchase] = CreditPurchase.objects.for_account(account)
    assert (purchase.stripe_payment_intent_id, purchase.status, purchase.amount_usd) == (
        intent_id, CreditPurchase.Status.SUCCEEDED, Decimal("25.00"))
    assert BillingProfile.objects.for_account(account).get().credit_balance_usd == Decimal("25.00")


def test_a_payment_intent_that_is_not_a_credit_purchase_is_ignored(stripe_on, tenant,
                                                                   django_capture_on_commit_callbacks):
    account, _key = tenant("max")
    foreign = {"id": "pi_not_ours", "object": "payment_intent", "amount": 5000, "metadata": {}}
    _deliver({"id": "evt_foreign", "object": "event", "type": "payment_intent.succeeded",
              "data": {"object": foreign}}, django_capture_on_commit_callbacks)
    assert not CreditPurchase.dangerously_unscoped.filter(stripe_payment_intent_id="pi_not_ours").exists()
    assert billing_profile_get(account=account).credit_balance_usd == Decimal(0)


def test_the_payment_intent_carries_the_callers_idempotency_key(stripe_on, tenant):
    # localstripe does not deduplicate by Idempotency-Key (real Stripe does, for 24 h): what is checked here is that
    # the key reaches the PaymentIntent, derived from the client's header through the API.
    from rest_framework.test import APIClient

    from accounts.models import Membership

    account, _key = tenant("ned")
    add_card(account)
    client = APIClient()
    client.force_login(Membership.objects.for_account(account).get().user)
    bad = client.post("/api/v1/billing/credits", {"amount_usd": "10.00"}, format="json",
                      HTTP_IDEMPOTENCY_KEY="no spaces allowed")
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()
    response = client.post("/api/v1/billing/credits", {"amount_usd": "10.00"}, format="json",
                           HTTP_IDEMPOTENCY_KEY="order-42")
    assert response.status_code == 201, response.content
    intent = stripe_client().v1.payment_intents.retrieve(response.json()["payment_intent_id"])
    assert intent.metadata["hearth_key"] == f"hearth-credits-{account.pk}-order-42"
    assert intent.metadata["hearth_amount_usd"] == "10.00"
