"""Cross-tenant access is 404 on every tenant-owned endpoint, through a session or an API key."""

import pytest
from rest_framework.test import APIClient

from devstack.services import REPO_ROOT
from hearth_platform.urls import router
from keys.models import ApiKey
from keys.selectors import api_key_verify
from tenancy.api import AccountScopedViewSet

# Every account-scoped viewset -> the test that shows another account gets 404 (file, function).
CROSS_TENANT_TESTS = {
    "keys.api.ApiKeyViewSet": ("tests/platform/test_tenancy.py", "test_other_accounts_key_is_404"),
    "accounts.api.MemberViewSet": ("tests/platform/test_tenancy.py", "test_other_accounts_members_are_invisible"),
    "adapters.api.AdapterViewSet": ("tests/adapters/test_adapter_api.py", "test_other_accounts_get_404"),
    "routes.api.RouteViewSet": ("tests/platform/test_routes.py", "test_other_accounts_routes_are_404"),
}


def test_every_tenant_owned_viewset_has_a_cross_tenant_test():
    # A new account-scoped endpoint fails this until its cross-tenant 404 test is named above.
    registered = {
        f"{viewset.__module__}.{viewset.__qualname__}"
        for _prefix, viewset, _basename in router.registry
        if issubclass(viewset, AccountScopedViewSet)
    }
    assert {"keys.api.ApiKeyViewSet", "accounts.api.MemberViewSet"} <= registered
    assert registered <= set(CROSS_TENANT_TESTS), registered - set(CROSS_TENANT_TESTS)
    for name in registered:
        path, function = CROSS_TENANT_TESTS[name]
        assert f"def {function}(" in (REPO_ROOT / path).read_text(), (name, path, function)


# Every /api/v1 URL (by name), so the guard also covers plain APIViews (billing's, the account's, the playground's).
# Tenant-owned ones name the test where another account gets 404 or sees only its own rows (file, function); the
# rest say why they hold no tenant data. A new URL fails the guard until it is in one of the two tables.
TENANT_URL_TESTS = {
    "apikey-list": ("tests/platform/test_tenancy.py", "test_other_accounts_key_is_404"),
    "apikey-detail": ("tests/platform/test_tenancy.py", "test_other_accounts_key_is_404"),
    "apikey-revoke": ("tests/platform/test_tenancy.py", "test_other_accounts_key_is_404"),
    "member-list": ("tests/platform/test_tenancy.py", "test_other_accounts_members_are_invisible"),
    "member-detail": ("tests/platform/test_roles.py", "test_members_and_keys_of_another_account_are_404_whatever_the_role"),
    "adapter-list": ("tests/adapters/test_adapter_api.py", "test_other_accounts_get_404"),
    "adapter-detail": ("tests/adapters/test_adapter_roles.py", "test_another_account_gets_404_whatever_its_role"),
    "route-list": ("tests/platform/test_routes.py", "test_other_accounts_routes_are_404"),
    "route-detail": ("tests/platform/test_routes.py", "test_other_accounts_routes_are_404"),
    "route-stats": ("tests/platform/test_routes.py", "test_other_accounts_routes_are_404"),
    "account": ("tests/platform/test_tenancy.py", "test_choosing_an_account_you_do_not_belong_to_is_refused"),
    "usage": ("tests/billing/test_usage_api.py", "test_another_accounts_usage_is_invisible"),
    "usage-csv": ("tests/billing/test_controls.py", "test_usage_csv_equals_the_usage_api"),
    "billing": ("tests/billing/test_billing_roles.py", "test_another_account_sees_and_changes_only_its_own"),
    "billing-spend-limit": ("tests/billing/test_billing_roles.py", "test_another_account_sees_and_changes_only_its_own"),
    "billing-payment-methods": ("tests/billing/test_controls.py", "test_cards_listed_and_removed_other_account_404"),
    "billing-payment-method-detail": ("tests/billing/test_controls.py",
                                      "test_cards_listed_and_removed_other_account_404"),
    "billing-test-card": ("tests/billing/test_controls.py", "test_test_card_form_adds_a_card_only_in_test_mode"),
    "billing-invoices": ("tests/billing/test_controls.py", "test_invoices_list_lines_by_model_and_tenant_scope"),
    "billing-setup-intent": ("tests/billing/test_billing_roles.py", "test_another_account_sees_and_changes_only_its_own"),
    "billing-payment-method": ("tests/billing/test_billing_roles.py",
                               "test_another_account_sees_and_changes_only_its_own"),
    "billing-credits": ("tests/billing/test_billing_roles.py", "test_another_account_sees_and_changes_only_its_own"),
    "playground-token": ("tests/platform/test_roles.py", "test_playground_keys_stay_in_their_account"),
}
NOT_TENANT_OWNED = {
    "auth-csrf": "a CSRF token, no data",
    "auth-signup": "creates a person and their own new account",
    "auth-login": "the person's session",
    "auth-logout": "the person's session",
    "me": "the person and the accounts they belong to, scoped by the person",
    "basemodel-list": "the public catalog",
    "basemodel-detail": "the public catalog",
    "dashboard-config": "deployment configuration",
    "billing-stripe-webhook": "Stripe-signed events; the account is found from the event's own ids",
}


def _api_v1_url_names() -> set[str]:
    from django.urls import URLResolver, get_resolver

    names: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif route.startswith("api/v1/"):
                assert pattern.name, f"unnamed URL {route}: name it so the tenancy guard can track it"
                names.add(pattern.name)

    walk(get_resolver().url_patterns, "")
    return names


def test_every_api_url_is_tenant_checked_or_says_why_not():
    names = _api_v1_url_names()
    assert {"usage", "billing-credits", "account", "apikey-list"} <= names  # the walk sees APIViews and viewsets
    unclassified = names - set(TENANT_URL_TESTS) - set(NOT_TENANT_OWNED)
    assert not unclassified, f"name a cross-tenant test (TENANT_URL_TESTS) or a reason (NOT_TENANT_OWNED): {unclassified}"
    assert not set(TENANT_URL_TESTS) & set(NOT_TENANT_OWNED)
    for name in names & set(TENANT_URL_TESTS):
        path, function = TENANT_URL_TESTS[name]
        assert f"def {function}(" in (REPO_ROOT / path).read_text(), (name, path, function)


def test_scoped_base_refuses_an_unscoped_queryset():
    with pytest.raises(TypeError):
        type("Leaky", (AccountScopedViewSet,), {"queryset": ApiKey.dangerously_unscoped.all()})
    with pytest.raises(TypeError):
        type("Leaky2", (AccountScopedViewSet,), {"get_queryset": lambda self: ApiKey.dangerously_unscoped.all()})


@pytest.fixture
def two_tenants(logged_in):
    alice, mallory = logged_in("alice@example.com"), logged_in("mallory@example.com")
    alice_key = alice.post("/api/v1/keys", {"name": "alice-prod"}, format="json").json()
    mallory_key = mallory.post("/api/v1/keys", {"name": "mallory", "scopes": ["management"]}, format="json").json()
    via_key = APIClient()
    via_key.credentials(HTTP_AUTHORIZATION=f"Bearer {mallory_key['secret']}")
    return alice, alice_key, mallory, via_key


@pytest.mark.parametrize("who", ["session", "api_key"])
def test_other_accounts_key_is_404(two_tenants, who, django_capture_on_commit_callbacks):
    _alice, alice_key, mallory, via_key = two_tenants
    intruder = mallory if who == "session" else via_key
    key_id = alice_key["id"]
    with django_capture_on_commit_callbacks(execute=True):
        responses = [
            intruder.get(f"/api/v1/keys/{key_id}"),
            intruder.delete(f"/api/v1/keys/{key_id}"),
            intruder.post(f"/api/v1/keys/{key_id}/revoke"),
        ]
    for response in responses:
        assert response.status_code == 404, (response.request, response.content)
        assert "alice" not in response.content.decode()
    assert api_key_verify(alice_key["secret"]) is not None  # still works: nothing was revoked
    assert key_id not in [k["id"] for k in intruder.get("/api/v1/keys").json()]


def test_other_accounts_members_are_invisible(two_tenants):
    alice, _alice_key, mallory, via_key = two_tenants
    for client, me in ((alice, "alice@example.com"), (mallory, "mallory@example.com"), (via_key, "mallory@example.com")):
        assert [m["email"] for m in client.get("/api/v1/account/members").json()] == [me]
    assert alice.get("/api/v1/account").json()["slug"] != mallory.get("/api/v1/account").json()["slug"]


def test_choosing_an_account_you_do_not_belong_to_is_refused(two_tenants):
    alice, _alice_key, mallory, _via_key = two_tenants
    alice_slug = alice.get("/api/v1/account").json()["slug"]
    response = mallory.get("/api/v1/keys", HTTP_X_HEARTH_ACCOUNT=alice_slug)
    assert response.status_code == 403 and "not a member" in response.json()["detail"]
    for method, path in (("get", "/api/v1/account"), ("patch", "/api/v1/account"), ("get", "/api/v1/usage"),
                         ("get", "/api/v1/billing"), ("get", "/api/v1/account/members")):
        response = getattr(mallory, method)(path, {"name": "taken"} if method == "patch" else None, format="json",
                                            HTTP_X_HEARTH_ACCOUNT=alice_slug)
        assert response.status_code == 403 and "not a member" in response.json()["detail"], (method, path)
    assert alice.get("/api/v1/account").json()["slug"] == alice_slug
    assert alice.get("/api/v1/account").json()["name"] != "taken"
