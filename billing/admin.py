"""Read-mostly admin for the money tables: ledger rows and roll-ups are never edited by hand (the ingest path owns
them), so they are view-only; invoices and profiles may be looked at and, for profiles, corrected."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from billing.models import BillingProfile, CreditPurchase, Invoice, InvoiceItem, PriceVersion, UsageRecord, UsageRollup


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ("request_id", "account", "base_model", "adapter_id", "prompt_tokens", "cached_prompt_tokens",
                    "completion_tokens", "cost_usd", "status", "finished_at")
    list_filter = ("status", "base_model")
    search_fields = ("request_id",)
    date_hierarchy = "finished_at"
    list_select_related = ("account", "base_model")
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is what makes ledgers slow


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = ("hour", "account", "base_model", "api_key_id", "num_requests", "prompt_tokens",
                    "completion_tokens", "cost_usd")
    date_hierarchy = "hour"
    list_select_related = ("account", "base_model")
    show_full_result_count = False


@admin.register(PriceVersion)
class PriceVersionAdmin(ReadOnlyAdmin):
    list_display = ("id", "base_model", "price_input_per_mtok", "price_cached_input_per_mtok",
                    "price_output_per_mtok", "created_at")


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ("account", "period", "amount_usd", "status", "stripe_invoice_id", "updated_at")
    list_filter = ("status", "period")


@admin.register(InvoiceItem)
class InvoiceItemAdmin(ReadOnlyAdmin):
    list_display = ("idempotency_key", "account", "period", "base_model", "amount_usd", "stripe_invoice_item_id")


@admin.register(CreditPurchase)
class CreditPurchaseAdmin(ReadOnlyAdmin):
    list_display = ("stripe_payment_intent_id", "account", "amount_usd", "status", "created_at")


@admin.register(BillingProfile)
class BillingProfileAdmin(admin.ModelAdmin):
    list_display = ("account", "monthly_spend_limit_usd", "credit_balance_usd", "payment_status",
                    "stripe_customer_id")
    list_filter = ("payment_status",)
    readonly_fields = ("stripe_customer_id", "stripe_subscription_id", "default_payment_method_id")
