"""Prepaid credits bought with a Stripe PaymentIntent, charged to the account's default card off-session.

Recoverable at every step: the PaymentIntent carries an idempotency key (the caller's, so a retried request charges
once; else a fresh one) and, in its metadata, the account and amount; if this process dies after Stripe confirmed it
and before our row exists, the `payment_intent.succeeded` webhook recreates the row from that metadata
(credit_purchase_recover) and the credits land, once (credit_purchase_settle)."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import stripe
from django.db import IntegrityError, transaction

from accounts.models import Account
from billing.models import CreditPurchase
from billing.services import billing_profile_get, credits_add
from billing.stripe_billing import customer_ensure, metadata, stripe_client, to_cents
from hearth_platform.errors import ApplicationError

log = logging.getLogger("hearth.billing.credits")


CREDITS_PURPOSE = "credits"


def credits_purchase(*, account: Account, amount_usd: Decimal, idempotency_key: str | None = None) -> CreditPurchase:
    """Charges the default card now (a PaymentIntent, confirmed off-session); credits land when it succeeds."""
    profile = billing_profile_get(account=account)
    if not profile.default_payment_method_id:
        raise ApplicationError("Add a card before buying credits.", field="amount_usd", code="no_payment_method")
    amount_usd = Decimal(amount_usd)
    key = f"hearth-credits-{account.pk}-{idempotency_key or uuid.uuid4().hex}"
    intent = stripe_client().v1.payment_intents.create({
        "amount": to_cents(amount_usd), "currency": "usd", "customer": customer_ensure(account=account),
        "payment_method": profile.default_payment_method_id, "confirm": True, "off_session": True,
        "metadata": {"hearth_account_id": str(account.pk), "hearth_purpose": CREDITS_PURPOSE,
                     "hearth_amount_usd": str(amount_usd), "hearth_key": key},
    }, {"idempotency_key": key})
    purchase = _purchase_for(intent.id, account_id=account.pk, amount_usd=amount_usd)
    if intent.status in ("succeeded", "canceled", "requires_payment_method"):
        credit_purchase_settle(payment_intent_id=intent.id, succeeded=intent.status == "succeeded")
        purchase.refresh_from_db()
    return purchase


def _purchase_for(payment_intent_id: str, *, account_id: int, amount_usd: Decimal) -> CreditPurchase:
    """The purchase row of a PaymentIntent, made if missing (the webhook may have made it first)."""
    try:
        with transaction.atomic():
            purchase, _ = CreditPurchase.dangerously_unscoped.get_or_create(  # keyed by Stripe's id
                stripe_payment_intent_id=payment_intent_id,
                defaults={"account_id": account_id, "amount_usd": amount_usd},
            )
    except IntegrityError:  # the webhook inserted it between our read and our insert
        purchase = CreditPurchase.dangerously_unscoped.get(stripe_payment_intent_id=payment_intent_id)
    return purchase


def credit_purchase_recover(intent: stripe.StripeObject) -> CreditPurchase | None:
    """A PaymentIntent event for a purchase we have no row for: the row from the intent's own metadata, or None if
    the intent isn't one of our credit purchases."""
    meta = metadata(intent)
    if meta.get("hearth_purpose") != CREDITS_PURPOSE or not meta.get("hearth_account_id", "").isdigit():
        return None
    account_id = int(meta["hearth_account_id"])
    if not Account.objects.filter(pk=account_id).exists():
        log.warning("payment intent %s names account %s, which does not exist", intent.id, account_id)
        return None
    try:
        amount_usd = Decimal(meta["hearth_amount_usd"])
    except (KeyError, ArithmeticError):
        amount_usd = Decimal(intent.amount) / 100
    if to_cents(amount_usd) != intent.amount:  # metadata is ours, but the charged amount is what counts
        amount_usd = Decimal(intent.amount) / 100
    log.warning("credit purchase %s recovered from the payment intent's metadata (account %s)", intent.id, account_id)
    return _purchase_for(intent.id, account_id=account_id, amount_usd=amount_usd)


@transaction.atomic
def credit_purchase_settle(*, payment_intent_id: str, succeeded: bool) -> CreditPurchase | None:
    """Idempotent: the pay call and the webhook may both report the same PaymentIntent."""
    purchase = (CreditPurchase.dangerously_unscoped.select_for_update()  # found by Stripe's id, account from the row
                .filter(stripe_payment_intent_id=payment_intent_id).first())
    if purchase is None or purchase.status != CreditPurchase.Status.PENDING:
        return purchase
    purchase.status = CreditPurchase.Status.SUCCEEDED if succeeded else CreditPurchase.Status.FAILED
    purchase.save(update_fields=["status"])
    if succeeded:
        credits_add(account=Account.objects.get(pk=purchase.account_id), amount_usd=purchase.amount_usd)
    return purchase
