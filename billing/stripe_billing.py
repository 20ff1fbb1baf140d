"""Stripe through the official SDK (a StripeClient per call site, api base from HEARTH_STRIPE_API_BASE so tests and
development can point it at localstripe). Without HEARTH_STRIPE_API_KEY billing is "ledger only": usage is metered,
rated and limited, and nothing here is called.

Idempotency is two-layered: every create carries a deterministic Idempotency-Key (`hearth-<what>-<account>-<period>`,
which real Stripe honours for 24 h), and the same key is stored on our own row (unique) and in the object's metadata,
so re-running a period job long after finds its work done instead of billing twice."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

import stripe
from django.db import transaction
from django.db.models import Sum

from accounts.models import Account
from billing import conf
from billing.models import BillingProfile, Invoice, InvoiceItem, UsageRollup
from billing.services import billing_profile_get, payment_method_set, payment_status_set
from hearth_platform.errors import ApplicationError

log = logging.getLogger("hearth.billing.stripe")
CENT = Decimal("0.01")


class StripeNotConfigured(ApplicationError):
    pass


@lru_cache(maxsize=1)
def _announce_ledger_only() -> None:
    log.warning("billing runs in ledger-only mode: HEARTH_STRIPE_API_KEY is not set, so nothing is invoiced")


def stripe_client() -> stripe.StripeClient:
    if conf.ledger_only():
        _announce_ledger_only()
        raise StripeNotConfigured("Payments are not configured on this Hearth installation.", code="ledger_only")
    return stripe.StripeClient(conf.stripe_api_key(), base_addresses={"api": conf.stripe_api_base()}, max_network_retries=2)


def to_cents(amount: Decimal) -> int:
    return int((amount.quantize(CENT, rounding=ROUND_HALF_UP) * 100).to_integral_value())


def metadata(obj: stripe.StripeObject) -> dict[str, str]:
    return obj.metadata.to_dict() if getattr(obj, "metadata", None) else {}


def customer_ensure(*, account: Account) -> str:
    """The account's Stripe Customer, created the first time billing needs one."""
    profile = billing_profile_get(account=account)
    if profile.stripe_customer_id:
        return profile.stripe_customer_id
    customer = stripe_client().v1.customers.create(
        {"name": account.name, "metadata": {"hearth_account_id": str(account.pk)}},
        {"idempotency_key": f"hearth-customer-{account.pk}"},
    )
    with transaction.atomic():
        profile = BillingProfile.objects.for_account(account).select_for_update().get()
        if not profile.stripe_customer_id:
            profile.stripe_customer_id = customer.id
            profile.save(update_fields=["stripe_customer_id", "updated_at"])
    return profile.stripe_customer_id


def setup_intent_create(*, account: Account) -> tuple[str, str]:
    """(id, client_secret) for the dashboard's card form (Stripe.js confirms it in the browser)."""
    intent = stripe_client().v1.setup_intents.create(
        {"customer": customer_ensure(account=account), "usage": "off_session",
         "metadata": {"hearth_account_id": str(account.pk)}}
    )
    return intent.id, intent.client_secret or ""


def setup_intent_complete(*, account: Account, setup_intent_id: str) -> BillingProfile:
    """After the browser confirmed the SetupIntent: make its card the default one and raise the spend limit."""
    client = stripe_client()
    customer_id = customer_ensure(account=account)
    intent = client.v1.setup_intents.retrieve(setup_intent_id)
    if intent.customer != customer_id:
        raise ApplicationError("This card set-up belongs to another account.", field="setup_intent_id")
    if intent.status != "succeeded" or not intent.payment_method:
        raise ApplicationError("The card set-up has not succeeded yet.", field="setup_intent_id", code="not_ready")
    pm_id = intent.payment_method if isinstance(intent.payment_method, str) else intent.payment_method.id
    pm = client.v1.payment_methods.retrieve(pm_id)
    if pm.customer != customer_id:
        client.v1.payment_methods.attach(pm_id, {"customer": customer_id})
    client.v1.customers.update(customer_id, {"invoice_settings": {"default_payment_method": pm_id}})
    return payment_method_set(account=account, payment_method_id=pm_id)


def period_bounds(period: date) -> tuple[date, datetime, datetime]:
    """(first day, its first instant, the next month's first instant), in UTC."""
    start = period.replace(day=1)
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, datetime.combine(start, time.min, tzinfo=UTC), datetime.combine(end, time.min, tzinfo=UTC)


USAGE_PLAN = "hearth-usage-monthly"


def subscription_ensure(*, account: Account) -> str:
    """The account's $0 monthly subscription to the usage plan; its invoices carry the usage invoice items."""
    profile = billing_profile_get(account=account)
    if profile.stripe_subscription_id:
        return profile.stripe_subscription_id
    client = stripe_client()
    try:
        client.v1.plans.retrieve(USAGE_PLAN)
    except stripe.InvalidRequestError:
        product = client.v1.products.create({"name": "Hearth usage"}, {"idempotency_key": "hearth-product-usage"})
        client.v1.plans.create({"id": USAGE_PLAN, "amount": 0, "currency": "usd", "interval": "month",
                                "product": product.id}, {"idempotency_key": "hearth-plan-usage"})
    sub = client.v1.subscriptions.create(
        {"customer": customer_ensure(account=account), "items": [{"plan": USAGE_PLAN}],
         "metadata": {"hearth_account_id": str(account.pk)}},
        {"idempotency_key": f"hearth-sub-{account.pk}"},
    )
    BillingProfile.objects.for_account(account).update(stripe_subscription_id=sub.id)
    return sub.id


def invoice_items_push(*, account: Account, period: date) -> list[InvoiceItem]:
    """One invoice item per model for the account's usage in the period (cents, half-up per line), then the
    prepaid credits applied against it as a negative item. Re-running creates nothing new."""
    start, since, until = period_bounds(period)
    usage = (UsageRollup.objects.for_account(account).filter(hour__gte=since, hour__lt=until)
             .values("base_model_id", "base_model__public_name").annotate(cost=Sum("cost_usd")).order_by("base_model_id"))
    items: list[InvoiceItem] = []
    total = Decimal(0)
    for line in usage:
        amount = line["cost"].quantize(CENT, rounding=ROUND_HALF_UP)
        total += amount
        key = f"hearth-ii-{account.pk}-{line['base_model_id']}-{start:%Y%m}"
        items.append(_invoice_item(account, start, key, amount, f"{line['base_model__public_name']} usage, {start:%B %Y}",
                                   base_model_id=line["base_model_id"]))
    if total > 0:
        items.extend(_apply_credits(account, start, total))
    return [i for i in items if i is not None]


def _apply_credits(account: Account, start: date, total: Decimal) -> list[InvoiceItem]:
    key = f"hearth-ii-{account.pk}-credits-{start:%Y%m}"
    if InvoiceItem.objects.for_account(account).filter(idempotency_key=key).exists():
        return []
    with transaction.atomic():
        profile = BillingProfile.objects.for_account(account).select_for_update().get()
        applied = min(profile.credit_balance_usd, total)
        if applied <= 0:
            return []
        profile.credit_balance_usd -= applied
        profile.save(update_fields=["credit_balance_usd", "updated_at"])
        return [_invoice_item(account, start, key, -applied, f"Prepaid credits applied, {start:%B %Y}")]


def _invoice_item(account: Account, start: date, key: str, amount: Decimal, description: str, *,
                  base_model_id: int | None = None) -> InvoiceItem:
    existing = InvoiceItem.objects.for_account(account).filter(idempotency_key=key).first()
    if existing is not None:
        return existing
    client = stripe_client()
    customer_id = customer_ensure(account=account)
    # A crash after Stripe created the item and before our row was saved: find it by its key in metadata.
    pending = client.v1.invoice_items.list({"customer": customer_id, "limit": 100})
    found = next((ii for ii in pending.data if metadata(ii).get("hearth_key") == key), None)
    stripe_item = found or client.v1.invoice_items.create(
        {"customer": customer_id, "amount": to_cents(amount), "currency": "usd", "description": description,
         "metadata": {"hearth_key": key, "hearth_account_id": str(account.pk)}},
        {"idempotency_key": key},
    )
    item, _ = InvoiceItem.objects.for_account(account).get_or_create(
        idempotency_key=key,
        defaults={"account": account, "period": start, "base_model_id": base_model_id, "amount_usd": amount,
                  "stripe_invoice_item_id": stripe_item.id},
    )
    return item


def invoice_create_and_pay(*, account: Account, period: date) -> Invoice | None:
    """The period's invoice from its pending items, finalized and charged to the default card."""
    start, _since, _until = period_bounds(period)
    items = InvoiceItem.objects.for_account(account).filter(period=start)
    amount = items.aggregate(total=Sum("amount_usd"))["total"]
    if amount is None:
        return None
    invoice, _ = Invoice.objects.for_account(account).get_or_create(
        account=account, period=start, defaults={"amount_usd": amount}
    )
    if invoice.status == Invoice.Status.PAID:
        return invoice
    client = stripe_client()
    if not invoice.stripe_invoice_id:
        stripe_invoice = client.v1.invoices.create(
            {"customer": customer_ensure(account=account), "subscription": subscription_ensure(account=account),
             "description": f"Hearth usage, {start:%B %Y}",
             "metadata": {"hearth_account_id": str(account.pk), "hearth_period": f"{start:%Y%m}"}},
            {"idempotency_key": f"hearth-inv-{account.pk}-{start:%Y%m}"},
        )
        invoice.stripe_invoice_id = stripe_invoice.id
        invoice.status = Invoice.Status.OPEN
        invoice.save(update_fields=["stripe_invoice_id", "status", "updated_at"])
    try:
        paid = client.v1.invoices.pay(invoice.stripe_invoice_id)
    except stripe.StripeError as exc:  # declined card: the webhook says the same; either one flags the account
        log.warning("invoice %s of account %s not paid: %s", invoice.stripe_invoice_id, account.pk, exc.user_message)
        invoice_status_set(stripe_invoice_id=invoice.stripe_invoice_id, paid=False)
        invoice.refresh_from_db()
        return invoice
    invoice_status_set(stripe_invoice_id=invoice.stripe_invoice_id, paid=paid.status == "paid")
    invoice.refresh_from_db()
    return invoice


def invoice_status_set(*, stripe_invoice_id: str, paid: bool) -> Invoice | None:
    """From a webhook or the pay call, in any order and any number of times. `paid` is final: a late or redelivered
    `invoice.payment_failed` can't undo it. The account's payment status follows all of its invoices: failed while
    any is unpaid after a failed charge, ok once none is (a failure of last month stays failed when this month's
    invoice is paid)."""
    with transaction.atomic():
        invoice = (Invoice.dangerously_unscoped.select_for_update()  # by Stripe's id; the row names its account
                   .filter(stripe_invoice_id=stripe_invoice_id).first())
        if invoice is None:
            return None
        new_status = Invoice.Status.PAID if paid else Invoice.Status.PAYMENT_FAILED
        if invoice.status != Invoice.Status.PAID and invoice.status != new_status:
            invoice.status = new_status
            invoice.save(update_fields=["status", "updated_at"])
        elif invoice.status == Invoice.Status.PAID and not paid:
            log.info("invoice %s: payment failure reported after it was paid; ignored", stripe_invoice_id)
        account = Account.objects.get(pk=invoice.account_id)
        failing = Invoice.objects.for_account(account).filter(status=Invoice.Status.PAYMENT_FAILED).exists()
        payment_status_set(account=account, status=BillingProfile.PaymentStatus.PAYMENT_FAILED if failing
                           else BillingProfile.PaymentStatus.OK)
    return invoice


def period_close(*, period: date) -> list[Invoice]:
    """The monthly job: for every account with usage in the period, push items, then invoice and charge."""
    start, since, until = period_bounds(period)
    account_ids = (UsageRollup.dangerously_unscoped.filter(hour__gte=since, hour__lt=until)  # all tenants, by design
                   .values_list("account_id", flat=True).distinct())
    invoices = []
    for account in Account.objects.filter(pk__in=list(account_ids)).order_by("pk"):
        invoice_items_push(account=account, period=start)
        invoice = invoice_create_and_pay(account=account, period=start)
        if invoice is not None:
            invoices.append(invoice)
    return invoices
