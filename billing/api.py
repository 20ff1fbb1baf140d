"""Billing endpoints: usage (from roll-ups), the account's billing state, card set-up, credits, and Stripe's webhook.
Tenant scope comes from tenancy.api.request_account and the fail-closed managers (`objects.for_account`)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import conf, credits, stripe_billing
from billing.selectors import GROUPS, usage_summary
from billing.services import billing_profile_get
from billing.spend import month_start
from hearth_platform.errors import ApplicationError, ForbiddenError
from tenancy.api import request_account, request_membership

MAX_RANGE = timedelta(days=366)


def parse_instant(value: str, field: str) -> datetime:
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApplicationError("Use an ISO 8601 date (2025-01-31) or time (2025-01-31T12:00:00Z).", field=field) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class UsageQuery(serializers.Serializer):
    start = serializers.CharField(required=False, help_text="inclusive; ISO date or time (UTC); default end - 30 days")
    end = serializers.CharField(required=False, help_text="exclusive; ISO date or time (UTC); default now")
    group_by = serializers.ChoiceField(choices=GROUPS, default="day")

    def validate(self, attrs: dict) -> dict:
        end = parse_instant(attrs["end"], "end") if attrs.get("end") else timezone.now()
        start = parse_instant(attrs["start"], "start") if attrs.get("start") else end - timedelta(days=30)
        if start >= end:
            raise ApplicationError("start must be before end.", field="start")
        if end - start > MAX_RANGE:
            raise ApplicationError("A usage query covers at most 366 days.", field="end")
        return {"start": start, "end": end, "group_by": attrs["group_by"]}


class UsageView(APIView):
    @extend_schema(parameters=[UsageQuery], responses=dict)
    def get(self, request: Request) -> Response:
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        summary = usage_summary(account=request_account(request), **q)
        return Response({"object": "usage", "start": q["start"], "end": q["end"], "group_by": q["group_by"], **summary})


def require_admin(request: Request) -> None:
    if request_membership(request)[1] not in ("owner", "admin"):
        raise ForbiddenError("Only owners and admins can manage billing.")


class BillingView(APIView):
    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        account = request_account(request)
        profile = billing_profile_get(account=account)
        month = usage_summary(account=account, start=month_start(timezone.now()), end=timezone.now(), group_by="model")
        return Response({
            "mode": "ledger_only" if conf.ledger_only() else "stripe",
            "monthly_spend_limit_usd": str(profile.monthly_spend_limit_usd),
            "credit_balance_usd": str(profile.credit_balance_usd),
            "payment_status": profile.payment_status,
            "has_payment_method": bool(profile.default_payment_method_id),
            "month_to_date_usd": month["total"]["cost_usd"],
        })


class SetupIntentView(APIView):
    @extend_schema(request=None, responses=dict)
    def post(self, request: Request) -> Response:
        require_admin(request)
        intent_id, client_secret = stripe_billing.setup_intent_create(account=request_account(request))
        return Response({"id": intent_id, "client_secret": client_secret}, status=status.HTTP_201_CREATED)


class PaymentMethodIn(serializers.Serializer):
    setup_intent_id = serializers.RegexField(r"^seti_[A-Za-z0-9_]{1,100}$")


class PaymentMethodView(APIView):
    @extend_schema(request=PaymentMethodIn, responses=dict)
    def post(self, request: Request) -> Response:
        require_admin(request)
        body = PaymentMethodIn(data=request.data)
        body.is_valid(raise_exception=True)
        profile = stripe_billing.setup_intent_complete(account=request_account(request), **body.validated_data)
        return Response({"monthly_spend_limit_usd": str(profile.monthly_spend_limit_usd), "has_payment_method": True})


_IDEMPOTENCY_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class CreditsIn(serializers.Serializer):
    amount_usd = serializers.DecimalField(max_digits=9, decimal_places=2, min_value=Decimal("1.00"),
                                          max_value=Decimal("10000.00"))


class CreditsView(APIView):
    @extend_schema(request=CreditsIn, responses=dict)
    def post(self, request: Request) -> Response:
        require_admin(request)
        body = CreditsIn(data=request.data)
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key") or None  # a retried request then charges once
        if key is not None and not _IDEMPOTENCY_KEY_RE.fullmatch(key):
            raise ApplicationError("Idempotency-Key is 1-64 letters, digits, '-' or '_'.", field="Idempotency-Key")
        purchase = credits.credits_purchase(account=request_account(request), idempotency_key=key,
                                                   **body.validated_data)
        profile = billing_profile_get(account=request_account(request))
        return Response({"payment_intent_id": purchase.stripe_payment_intent_id, "status": purchase.status,
                         "credit_balance_usd": str(profile.credit_balance_usd)}, status=status.HTTP_201_CREATED)
