from django.urls import path

from billing import api, webhooks

urlpatterns = [
    path("usage", api.UsageView.as_view(), name="usage"),
    path("billing", api.BillingView.as_view(), name="billing"),
    path("billing/setup-intent", api.SetupIntentView.as_view(), name="billing-setup-intent"),
    path("billing/payment-method", api.PaymentMethodView.as_view(), name="billing-payment-method"),
    path("billing/credits", api.CreditsView.as_view(), name="billing-credits"),
    path("billing/stripe/webhook", webhooks.StripeWebhookView.as_view(), name="billing-stripe-webhook"),
]
