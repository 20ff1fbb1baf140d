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


def test_scoped_base_refuses_an_unscoped_queryset():
    with pytest.raises(TypeError):
        type("Leaky", (AccountScopedViewSet,), {"queryset": ApiKey.dangerously_unscoped.all()})
    with pytest.raises(TypeError):
        type("Leaky2", (AccountScopedViewSet,), {"get_queryset": lambda self: ApiKey.dangerously_unscoped.all()})


@pytest.fixture
def two_tenants(logged_in):
    alice, mallory = logged_in("alice@example.com"), logged_in("mallory@example.com")
    alice_key = alice.post("/api/v1/keys", {"name": "alice-prod"}, format="json").json()
    mallory_key = mallory.post("/api/v1/keys", {"name": "mallory"}, format="json").json()
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
