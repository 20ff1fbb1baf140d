"""Self-serve billing controls: the monthly spend limit (with its warning level), saved cards, invoices with their
lines, and the usage CSV export. Tenant scope as in billing.api: request_account + the fail-closed managers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import conf, stripe_billing, stripe_cards
from billing.api import UsageQuery, require_admin
from billing.models import Invoice, InvoiceItem, UsageRollup
from billing.selectors import usage_summary
from billing.services import billing_profile_get, spend_limit_set
from billing.spend import month_start
from tenancy.api import request_account

WARN_AT = Decimal("0.8")  # the dashboard's banner: approaching at 80 % of the limit, exceeded at 100 %


def spend_state(account: Any) -> dict[str, Any]:
    profile = billing_profile_get(account=account)
    now = timezone.now()
    spent = Decimal(usage_summary(account=account, start=month_start(now), end=now, group_by="model")
                    ["total"]["cost_usd"])
    limit = profile.monthly_spend_limit_usd
    if spent >= limit:
        warning = "exceeded"
    elif spent >= limit * WARN_AT:
        warning = "approaching"
    else:
        warning = None
    return {"monthly_spend_limit_usd": str(limit), "month_to_date_usd": str(spent),
            "credit_balance_usd": str(profile.credit_balance_usd), "warning": warning}


class SpendLimitIn(serializers.Serializer):
    monthly_spend_limit_usd = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"),
                                                       max_value=Decimal("1000000"))


class SpendLimitView(APIView):
    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        return Response(spend_state(request_account(request)))

    @extend_schema(request=SpendLimitIn, responses=dict)
    def put(self, request: Request) -> Response:
        require_admin(request)
        body = SpendLimitIn(data=request.data)
        body.is_valid(raise_exception=True)
        account = request_account(request)
        spend_limit_set(account=account, limit_usd=body.validated_data["monthly_spend_limit_usd"])
        return Response(spend_state(account))


class PaymentMethodsView(APIView):
    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        account = request_account(request)
        return Response({"object": "list", "data": stripe_cards.payment_methods_list(account=account)})


class PaymentMethodDetailView(APIView):
    @extend_schema(request=None, responses={204: OpenApiResponse(description="removed")})
    def delete(self, request: Request, pm_id: str) -> Response:
        require_admin(request)
        if not stripe_cards.payment_method_remove(account=request_account(request), payment_method_id=pm_id):
            raise exceptions.NotFound("No such payment method.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class TestCardIn(serializers.Serializer):
    setup_intent_id = serializers.RegexField(r"^seti_[A-Za-z0-9_]{1,100}$")
    number = serializers.RegexField(r"^[0-9]{12,19}$")
    exp_month = serializers.IntegerField(min_value=1, max_value=12)
    exp_year = serializers.IntegerField(min_value=2000, max_value=2100)
    cvc = serializers.RegexField(r"^[0-9]{3,4}$")


class TestCardView(APIView):
    """Development and tests only (billing.conf.card_form() == "test"): confirms the SetupIntent with a test card
    through our API, where Stripe.js can't be reached. Everywhere else it does not exist (404)."""

    @extend_schema(request=TestCardIn, responses=dict)
    def post(self, request: Request) -> Response:
        if conf.card_form() != "test":
            raise exceptions.NotFound("Test-mode cards are only accepted against a Stripe test stand-in.")
        require_admin(request)
        body = TestCardIn(data=request.data)
        body.is_valid(raise_exception=True)
        account = request_account(request)
        profile = stripe_cards.test_card_confirm(account=account, **body.validated_data)
        return Response({"monthly_spend_limit_usd": str(profile.monthly_spend_limit_usd), "has_payment_method": True},
                        status=status.HTTP_201_CREATED)


def _invoice_lines(account: Any, invoice: Invoice) -> list[dict[str, Any]]:
    start, since, until = stripe_billing.period_bounds(invoice.period)
    tokens = {
        row["base_model_id"]: row
        for row in (UsageRollup.objects.for_account(account).filter(hour__gte=since, hour__lt=until)
                    .values("base_model_id").annotate(prompt_tokens=Sum("prompt_tokens"),
                                                      cached_prompt_tokens=Sum("cached_prompt_tokens"),
                                                      completion_tokens=Sum("completion_tokens")))
    }
    lines = []
    items = (InvoiceItem.objects.for_account(account).filter(period=start).select_related("base_model")
             .order_by("base_model_id", "id"))
    for item in items:
        line: dict[str, Any] = {"amount_usd": str(item.amount_usd),
                                "kind": "usage" if item.base_model_id is not None else "credits"}
        if item.base_model is not None:
            used = tokens.get(item.base_model_id, {})
            line |= {"model": item.base_model.public_name, "prompt_tokens": used.get("prompt_tokens") or 0,
                     "cached_prompt_tokens": used.get("cached_prompt_tokens") or 0,
                     "completion_tokens": used.get("completion_tokens") or 0}
        lines.append(line)
    return lines


class InvoicesView(APIView):
    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        account = request_account(request)
        invoices = Invoice.objects.for_account(account).order_by("-period")[:36]
        data = [{"id": inv.pk, "period": inv.period.strftime("%Y-%m"), "status": inv.status,
                 "amount_usd": str(inv.amount_usd), "created_at": inv.created_at,
                 "lines": _invoice_lines(account, inv)} for inv in invoices]
        return Response({"object": "list", "data": data})


CSV_COLUMNS = ("num_requests", "prompt_tokens", "cached_prompt_tokens", "completion_tokens", "cost_usd")


class UsageCsvView(APIView):
    """The usage API's rows as CSV: same query, same Decimal strings (cost_usd exactly as the ledger sums it)."""

    @extend_schema(parameters=[UsageQuery], responses={(200, "text/csv"): OpenApiResponse(description="CSV")})
    def get(self, request: Request) -> HttpResponse:
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        summary = usage_summary(account=request_account(request), **q)
        key_columns = {"day": ("day",), "model": ("model", "model_id"), "key": ("api_key_id",),
                       "model_day": ("day", "model", "model_id")}[q["group_by"]]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*key_columns, *CSV_COLUMNS])
        for row in summary["data"]:
            writer.writerow([row[c] for c in key_columns] + [row[c] for c in CSV_COLUMNS])
        writer.writerow(["total", *([""] * (len(key_columns) - 1)), *(summary["total"][c] for c in CSV_COLUMNS)])
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        filename = f"usage-{q['start']:%Y%m%d}-{q['end']:%Y%m%d}-by-{q['group_by']}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
