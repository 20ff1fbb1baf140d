"""Billing's APIViews by role and scope, and between accounts (README, "Roles and scopes"): everyone in the account
reads usage, billing state, cards and invoices; only owners and admins (or a management key one of them created)
change the limit, add or remove cards and buy credits; an inference key reads nothing; another account sees only its
own figures and can't touch this account's card set-up. Real Stripe SDK against localstripe where money moves."""

from __future__ import annotations

from decimal import Decimal

import pytest
from billing_testlib import add_card

from billing.services import billing_profile_get
from tests.principals import EVERYONE, new_account, principals

pytestmark = pytest.mark.django_db

MANAGERS = {"owner", "admin", "owner_management_key"}
READS = ["/api/v1/usage", "/api/v1/usage.csv", "/api/v1/billing", "/api/v1/billing/spend-limit",
         "/api/v1/billing/payment-methods", "/api/v1/billing/invoices"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # strength isn't tested here


@pytest.fixture
def ada():
    account = new_account("ada")
    return account, principals(account)


def test_reads_by_role(ada, stripe_on):
    _account, who = ada
    seen = {(name, path): who[name].client.get(path).status_code for name in EVERYONE for path in READS}
    expected = {(name, path): 403 if name == "owner_inference_key" else 200 for name in EVERYONE for path in READS}
    assert seen == expected


def test_spend_limit_by_role(ada):
    account, who = ada
    seen, expected = {}, {}
    for n, name in enumerate(EVERYONE):
        before = billing_profile_get(account=account).monthly_spend_limit_usd
        wanted = Decimal(f"3.{n}0")
        response = who[name].client.put("/api/v1/billing/spend-limit", {"monthly_spend_limit_usd": str(wanted)},
                                        format="json")
        after = billing_profile_get(account=account).monthly_spend_limit_usd
        seen[name] = (response.status_code, after)
        expected[name] = (200, wanted) if name in MANAGERS else (403, before)
    assert seen == expected


def test_card_setup_credits_and_card_removal_by_role(ada, stripe_on):
    account, who = ada
    seen, expected = {}, {}
    for name in EVERYONE:
        client = who[name].client
        intent = client.post("/api/v1/billing/setup-intent")
        credits = client.post("/api/v1/billing/credits", {"amount_usd": "5.00"}, format="json")
        seen[name] = (intent.status_code, credits.status_code, "Add a card" in str(credits.json()))
        # a manager gets past the role check to the card check (400); everyone else is stopped at it
        expected[name] = (201, 400, True) if name in MANAGERS else (403, 403, False)
    assert seen == expected
    card = add_card(account).default_payment_method_id
    denied = {name: who[name].client.delete(f"/api/v1/billing/payment-methods/{card}").status_code
              for name in EVERYONE if name not in MANAGERS}
    assert denied == dict.fromkeys(denied, 403)
    assert who["owner_management_key"].client.delete(f"/api/v1/billing/payment-methods/{card}").status_code == 204
    assert billing_profile_get(account=account).default_payment_method_id in ("", None)


def test_another_account_sees_and_changes_only_its_own(ada, stripe_on, django_capture_on_commit_callbacks):
    account, who = ada
    eve_account = new_account("eve")
    eve = principals(eve_account)
    for name in ("owner", "owner_management_key"):
        with django_capture_on_commit_callbacks(execute=True):
            assert eve[name].client.put("/api/v1/billing/spend-limit", {"monthly_spend_limit_usd": "1.00"},
                                        format="json").status_code == 200
        assert eve[name].client.get("/api/v1/billing").json()["monthly_spend_limit_usd"] == "1.00"
    assert who["owner"].client.get("/api/v1/billing").json()["monthly_spend_limit_usd"] != "1.00"
    # Ada's card set-up can't be completed into Eve's account, nor Ada's card removed by Eve.
    ada_intent = who["owner"].client.post("/api/v1/billing/setup-intent").json()["id"]
    stolen = eve["owner"].client.post("/api/v1/billing/payment-method", {"setup_intent_id": ada_intent},
                                      format="json")
    assert stolen.status_code == 400 and "another account" in str(stolen.json())
    profile = add_card(account)
    assert eve["owner"].client.delete(
        f"/api/v1/billing/payment-methods/{profile.default_payment_method_id}").status_code == 404
    assert eve["owner"].client.get("/api/v1/billing/payment-methods").json()["data"] == []
    assert billing_profile_get(account=account).default_payment_method_id == profile.default_payment_method_id
    # Credits Eve buys land on Eve's balance only.
    add_card(eve_account)
    bought = eve["owner"].client.post("/api/v1/billing/credits", {"amount_usd": "5.00"}, format="json")
    assert bought.status_code == 201, bought.content
    assert bought.json()["credit_balance_usd"] == "5.00"
    assert billing_profile_get(account=account).credit_balance_usd == Decimal("0")
    assert who["owner"].client.get("/api/v1/billing").json()["credit_balance_usd"] in ("0", "0.00")
