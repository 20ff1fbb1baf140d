from django.urls import path

from billing import api, api_controls, webhooks

urlpatterns = [
    path("usage", api.UsageView.as_view(), name="usage"),
    path("usage.csv", api_controls.UsageCsvView.as_view(), name="usage-csv"),
    path("billing", api.BillingView.as_view(), name="billing"),
    path("billing/spend-limit", api_controls.SpendLimitView.as_view(), name="billing-spend-limit"),
    path("billing/payment-methods", api_controls.PaymentMethodsView.as_view(), name="billing-payment-methods"),
    path("billing/payment-methods/<str:pm_id>", api_controls.PaymentMethodDetailView.as_view(),
         name="billing-payment-method-detail"),
    path("billing/test-card", api_controls.TestCardView.as_view(), name="billing-test-card"),
    path("billing/invoices", api_controls.InvoicesView.as_view(), name="billing-invoices"),
    path("billing/setup-intent", api.SetupIntentView.as_view(), name="billing-setup-intent"),
    path("billing/payment-method", api.PaymentMethodView.as_view(), name="billing-payment-method"),
    path("billing/credits", api.CreditsView.as_view(), name="billing-credits"),
    path("billing/stripe/webhook", webhooks.StripeWebhookView.as_view(), name="billing-stripe-webhook"),
]
