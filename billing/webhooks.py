"""POST /api/v1/billing/stripe/webhook: Stripe's signed events. The signature is checked before anything is read
(bad or missing -> 400, nothing changes); handlers are idempotent and independent of delivery order, since Stripe
delivers at least once and in any order: an invoice's `paid` is final, and the account's payment status is derived
from all its invoices; a PaymentIntent settles its purchase once, found by id or else by its metadata."""

from __future__ import annotations

import logging
from typing import Any

import stripe
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import conf, credits, stripe_billing

log = logging.getLogger("hearth.billing.webhook")


def _handle(event: Any) -> None:
    obj = event.data.object
    if event.type in ("invoice.paid", "invoice.payment_succeeded"):
        stripe_billing.invoice_status_set(stripe_invoice_id=obj.id, paid=True)
    elif event.type == "invoice.payment_failed":
        stripe_billing.invoice_status_set(stripe_invoice_id=obj.id, paid=False)
    elif event.type in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        succeeded = event.type.endswith("succeeded")
        if credits.credit_purchase_settle(payment_intent_id=obj.id, succeeded=succeeded) is None:
            # No row: the purchase call died after Stripe confirmed it. The intent's metadata says whose it is.
            if credits.credit_purchase_recover(obj) is not None:
                credits.credit_purchase_settle(payment_intent_id=obj.id, succeeded=succeeded)


class StripeWebhookView(APIView):
    authentication_classes: list = []  # Stripe authenticates with the signature, not a session or key
    permission_classes = [AllowAny]

    @extend_schema(request=None, responses={200: dict, 400: dict})
    def post(self, request: Request) -> Response:
        secret = conf.stripe_webhook_secret()
        if not secret:
            raise exceptions.NotFound("Stripe webhooks are not configured.")
        try:
            event = stripe.Webhook.construct_event(request.body, request.headers.get("Stripe-Signature"), secret)
        except stripe.SignatureVerificationError:
            raise exceptions.ValidationError({"detail": "Invalid Stripe signature."}) from None
        except ValueError:
            raise exceptions.ValidationError({"detail": "The webhook body is not a Stripe event."}) from None
        log.info("stripe event %s %s", event.id, event.type)
        _handle(event)
        return Response({"received": True})
