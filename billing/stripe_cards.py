"""Saved cards: list and remove the account's payment methods in Stripe. The default card is the one the period
job charges (BillingProfile.default_payment_method_id); removing it clears the default."""

from __future__ import annotations

from typing import Any

import stripe
from django.db import transaction

from accounts.models import Account
from billing.models import BillingProfile
from billing.services import billing_profile_get
from billing.stripe_billing import customer_ensure, setup_intent_complete, stripe_client
from hearth_platform.errors import ApplicationError


def payment_methods_list(*, account: Account) -> list[dict[str, Any]]:
    profile = billing_profile_get(account=account)
    if not profile.stripe_customer_id:
        return []
    methods = stripe_client().v1.payment_methods.list({"customer": profile.stripe_customer_id, "type": "card"})
    out = []
    for pm in methods.data:
        card = pm.card
        out.append({"id": pm.id, "brand": getattr(card, "brand", None), "last4": getattr(card, "last4", None),
                    "exp_month": getattr(card, "exp_month", None), "exp_year": getattr(card, "exp_year", None),
                    "is_default": pm.id == profile.default_payment_method_id})
    return out


def payment_method_remove(*, account: Account, payment_method_id: str) -> bool:
    """Detach one of the account's cards; False when the id is not one of this account's cards (-> 404)."""
    owned = {pm["id"] for pm in payment_methods_list(account=account)}
    if payment_method_id not in owned:
        return False
    client = stripe_client()
    client.v1.payment_methods.detach(payment_method_id)
    with transaction.atomic():
        profile = BillingProfile.objects.for_account(account).select_for_update().get()
        if profile.default_payment_method_id == payment_method_id:
            profile.default_payment_method_id = ""
            profile.save(update_fields=["default_payment_method_id", "updated_at"])
            client.v1.customers.update(customer_ensure(account=account),
                                       {"invoice_settings": {"default_payment_method": ""}})
    return True


def test_card_confirm(*, account: Account, setup_intent_id: str, number: str, exp_month: int, exp_year: int,
                      cvc: str) -> BillingProfile:
    """What Stripe.js does in the browser, done server-side for the test-mode form (billing.conf.card_form() ==
    "test"): a card PaymentMethod, the SetupIntent confirmed with it, then the usual completion."""
    client = stripe_client()
    intent = client.v1.setup_intents.retrieve(setup_intent_id)
    if intent.customer != customer_ensure(account=account):
        raise ApplicationError("This card set-up belongs to another account.", field="setup_intent_id")
    try:
        pm = client.v1.payment_methods.create({"type": "card", "card": {
            "number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc}})
        client.v1.setup_intents.confirm(setup_intent_id, {"payment_method": pm.id})
    except stripe.StripeError as exc:
        raise ApplicationError(exc.user_message or "The card was declined.", field="number",
                               code="card_declined") from None
    return setup_intent_complete(account=account, setup_intent_id=setup_intent_id)
