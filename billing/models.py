"""The usage ledger and what hangs off it. Money is Decimal; costs are exact at 12 places (billing.pricing).

Ledger rows are written only by the ingest consumer (billing.ingest, plain SQL in one transaction with their roll-ups);
nothing updates or deletes them, so accounts and models are PROTECTed rather than cascaded."""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from tenancy.models import TenantOwnedModel

COST = {"max_digits": 24, "decimal_places": 12}
MONEY = {"max_digits": 14, "decimal_places": 2}


class PriceVersion(models.Model):
    """The three prices of a base model as they were when a request was rated. A catalog price change makes a new
    version; ledger rows keep pointing at the one they were rated with."""

    base_model = models.ForeignKey("catalog.BaseModel", on_delete=models.PROTECT, related_name="+")
    price_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    price_cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    price_output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "billing_priceversion"
        constraints = [
            models.UniqueConstraint(
                fields=["base_model", "price_input_per_mtok", "price_cached_input_per_mtok", "price_output_per_mtok"],
                name="uniq_priceversion_prices",
            )
        ]

    def __str__(self) -> str:
        return f"{self.base_model_id} v{self.pk}"


class UsageRecord(TenantOwnedModel):
    """One finished/aborted request, rated. `request_id` is unique, so a replayed event can't bill twice."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    request_id = models.CharField(max_length=64, unique=True)
    api_key_id = models.BigIntegerField()  # plain id: a deleted key must not take its usage with it
    base_model = models.ForeignKey("catalog.BaseModel", on_delete=models.PROTECT, related_name="+")
    adapter_id = models.BigIntegerField(null=True, blank=True)  # rated at the base model's price
    prompt_tokens = models.PositiveIntegerField()
    cached_prompt_tokens = models.PositiveIntegerField()
    completion_tokens = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    status = models.CharField(max_length=16)
    price_version = models.ForeignKey(PriceVersion, on_delete=models.PROTECT, related_name="+")
    cost_usd = models.DecimalField(**COST)
    # A route's request: which route and variant served it (plain ids: deleting a route keeps its history).
    route_id = models.BigIntegerField(null=True, blank=True)
    variant_id = models.BigIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)  # first token at the gateway - started_at
    ingested_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        db_table = "billing_usagerecord"
        indexes = [models.Index(fields=["account", "finished_at"], name="usage_account_finished"),
                   models.Index(fields=["route_id", "finished_at"], name="usage_route_finished",
                                condition=models.Q(route_id__isnull=False))]

    def __str__(self) -> str:
        return self.request_id


class UsageRollup(TenantOwnedModel):
    """Per account, hour, model and key: what the usage API and invoices read (about 720 rows a month per key/model
    rather than one per request)."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    hour = models.DateTimeField()
    base_model = models.ForeignKey("catalog.BaseModel", on_delete=models.PROTECT, related_name="+")
    api_key_id = models.BigIntegerField()
    num_requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    cached_prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(**COST, default=Decimal(0))

    class Meta(TenantOwnedModel.Meta):
        db_table = "billing_usagerollup"
        constraints = [
            models.UniqueConstraint(fields=["account", "hour", "base_model", "api_key_id"], name="uniq_rollup_bucket")
        ]
        # The unique index (account, hour, ...) serves the usage API's range scans too.

    def __str__(self) -> str:
        return f"{self.account_id}@{self.hour:%Y-%m-%dT%H}"


class BillingProfile(TenantOwnedModel):
    """An account's billing state. Created lazily (billing.services.billing_profile_get)."""

    class PaymentStatus(models.TextChoices):
        OK = "ok"
        PAYMENT_FAILED = "payment_failed"

    account = models.OneToOneField("accounts.Account", on_delete=models.CASCADE, related_name="+")
    monthly_spend_limit_usd = models.DecimalField(**MONEY)
    credit_balance_usd = models.DecimalField(**MONEY, default=Decimal(0))
    payment_status = models.CharField(max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.OK)
    stripe_customer_id = models.CharField(max_length=64, blank=True, default="")
    default_payment_method_id = models.CharField(max_length=64, blank=True, default="")
    # A $0 monthly subscription that our usage invoice items ride on (localstripe invoices need one; Stripe is fine).
    stripe_subscription_id = models.CharField(max_length=64, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        db_table = "billing_billingprofile"

    def __str__(self) -> str:
        return f"billing:{self.account_id}"


class InvoiceItem(TenantOwnedModel):
    """One Stripe invoice item: an account's usage of one model in one billing period (or its credits applied)."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    period = models.DateField()  # first day of the month
    base_model = models.ForeignKey("catalog.BaseModel", on_delete=models.PROTECT, related_name="+", null=True)
    amount_usd = models.DecimalField(**MONEY)
    idempotency_key = models.CharField(max_length=128, unique=True)
    stripe_invoice_item_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        db_table = "billing_invoiceitem"

    def __str__(self) -> str:
        return self.idempotency_key


class Invoice(TenantOwnedModel):
    class Status(models.TextChoices):
        DRAFT = "draft"
        OPEN = "open"
        PAID = "paid"
        PAYMENT_FAILED = "payment_failed"

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    period = models.DateField()
    amount_usd = models.DecimalField(**MONEY)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    stripe_invoice_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        db_table = "billing_invoice"
        constraints = [models.UniqueConstraint(fields=["account", "period"], name="uniq_invoice_account_period")]
        indexes = [models.Index(fields=["stripe_invoice_id"], name="invoice_stripe_id")]

    def __str__(self) -> str:
        return f"{self.account_id}:{self.period:%Y-%m}"


class CreditPurchase(TenantOwnedModel):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    amount_usd = models.DecimalField(**MONEY)
    stripe_payment_intent_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        db_table = "billing_creditpurchase"

    def __str__(self) -> str:
        return self.stripe_payment_intent_id
