"""Billing settings from the environment (read at call time, so tests can override them with Django's settings or the
environment). Django settings of the same name win over the environment."""

from __future__ import annotations

import os
from decimal import Decimal

from django.conf import settings


def _get(name: str, default: str) -> str:
    value = getattr(settings, name, None)
    return str(value) if value is not None else os.environ.get(name, default)


def default_spend_limit() -> Decimal:
    """Monthly spend limit of an account with no payment method (USD)."""
    return Decimal(_get("HEARTH_BILLING_DEFAULT_SPEND_LIMIT", "10"))


def card_spend_limit() -> Decimal:
    """Monthly spend limit once a card is on file (USD)."""
    return Decimal(_get("HEARTH_BILLING_CARD_SPEND_LIMIT", "1000"))


def stripe_api_key() -> str:
    return _get("HEARTH_STRIPE_API_KEY", "")


def stripe_api_base() -> str:
    return _get("HEARTH_STRIPE_API_BASE", "https://api.stripe.com")


def stripe_webhook_secret() -> str:
    return _get("HEARTH_STRIPE_WEBHOOK_SECRET", "")


def ledger_only() -> bool:
    """No Stripe key: usage is metered, rated and limited, but nothing is invoiced or charged."""
    return not stripe_api_key()


def stripe_publishable_key() -> str:
    """pk_… for Stripe.js / Elements in the dashboard (the card never touches our servers)."""
    return _get("HEARTH_STRIPE_PUBLISHABLE_KEY", "")


def card_form() -> str:
    """How the dashboard takes a card: `elements` (Stripe.js, real Stripe), `test` (a test-mode form confirmed
    through our API: only with an sk_test_ key against a Stripe stand-in such as localstripe, never api.stripe.com),
    or `none` (ledger only)."""
    if ledger_only():
        return "none"
    if stripe_publishable_key():
        return "elements"
    if stripe_api_key().startswith("sk_test_") and "api.stripe.com" not in stripe_api_base():
        return "test"
    return "none"
