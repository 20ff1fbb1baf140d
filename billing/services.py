"""Billing services (HackSoft style: keyword-only, typed, atomic where they write). Every change to what the gateway's
guard decides on (limit, credits, payment status) is published to Redis after commit (billing.spend)."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import transaction

from accounts.models import Account
from billing import conf
from billing.models import BillingProfile
from billing.spend import state_publish
from hearth_platform.errors import ApplicationError
from hearth_platform.redis_client import get_redis

log = logging.getLogger("hearth.billing")

MAX_AMOUNT = Decimal("1000000")


def _publish_after_commit(profile: BillingProfile) -> None:
    def publish() -> None:
        try:
            state_publish(get_redis(), [profile])
        except Exception:  # Redis away: the ingest loop's periodic sync republishes within 30 s
            log.warning("could not publish billing state of account %s; the next sync will", profile.account_id)

    transaction.on_commit(publish)


def _clean_amount(amount: Decimal | str | int, *, field: str, allow_zero: bool = False) -> Decimal:
    try:
        value = Decimal(str(amount))
    except ArithmeticError:
        raise ApplicationError("Enter an amount in US dollars, e.g. 25.00.", field=field) from None
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero) or value > MAX_AMOUNT:
        raise ApplicationError(f"The amount must be between 0 and {MAX_AMOUNT} US dollars.", field=field)
    if value != value.quantize(Decimal("0.01")):
        raise ApplicationError("Amounts are in whole cents.", field=field)
    return value


def billing_profile_get(*, account: Account) -> BillingProfile:
    profile, created = BillingProfile.objects.for_account(account).get_or_create(
        account=account, defaults={"monthly_spend_limit_usd": conf.default_spend_limit()}
    )
    if created:
        _publish_after_commit(profile)
    return profile


@transaction.atomic
def _locked_profile(account: Account) -> BillingProfile:
    billing_profile_get(account=account)
    return BillingProfile.objects.for_account(account).select_for_update().get()


@transaction.atomic
def spend_limit_set(*, account: Account, limit_usd: Decimal | str) -> BillingProfile:
    profile = _locked_profile(account)
    profile.monthly_spend_limit_usd = _clean_amount(limit_usd, field="monthly_spend_limit_usd", allow_zero=True)
    profile.save(update_fields=["monthly_spend_limit_usd", "updated_at"])
    _publish_after_commit(profile)
    return profile


@transaction.atomic
def credits_add(*, account: Account, amount_usd: Decimal | str) -> BillingProfile:
    profile = _locked_profile(account)
    profile.credit_balance_usd += _clean_amount(amount_usd, field="amount_usd")
    profile.save(update_fields=["credit_balance_usd", "updated_at"])
    _publish_after_commit(profile)
    return profile


@transaction.atomic
def payment_method_set(*, account: Account, payment_method_id: str) -> BillingProfile:
    """A card on file raises the limit to the card tier (never lowers a limit already set higher)."""
    profile = _locked_profile(account)
    profile.default_payment_method_id = payment_method_id
    profile.monthly_spend_limit_usd = max(profile.monthly_spend_limit_usd, conf.card_spend_limit())
    profile.save(update_fields=["default_payment_method_id", "monthly_spend_limit_usd", "updated_at"])
    _publish_after_commit(profile)
    return profile


@transaction.atomic
def payment_status_set(*, account: Account, status: str) -> BillingProfile:
    profile = _locked_profile(account)
    if profile.payment_status != status:
        profile.payment_status = status
        profile.save(update_fields=["payment_status", "updated_at"])
        log.info("account %s payment status -> %s", account.pk, status)
    _publish_after_commit(profile)
    return profile
