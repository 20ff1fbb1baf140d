import pytest
from rest_framework.test import APIClient

from accounts.models import Account, Membership


def test_owner_adds_existing_user_with_role(logged_in, signup):
    owner = logged_in("owner@example.com")
    signup(email="bob@example.com")
    response = owner.post("/api/v1/account/members", {"email": "Bob@example.com", "role": "admin"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["role"] == "admin"
    emails = sorted(m["email"] for m in owner.get("/api/v1/account/members").json())
    assert emails == ["bob@example.com", "owner@example.com"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"email": "ghost@example.com"}, "email", "nobody has signed up"),
        ({"email": "bad"}, "email", "valid"),
        ({"email": "bob@example.com", "role": "emperor"}, "role", "not a valid choice"),
        ({}, "email", "required"),
    ],
)
def test_add_member_bad_input(logged_in, signup, body, field, words):
    owner = logged_in("owner@example.com")
    signup(email="bob@example.com")
    response = owner.post("/api/v1/account/members", body, format="json")
    assert response.status_code == 400, response.content
    assert any(words in m.lower() for m in response.json()[field]), response.json()
    assert len(owner.get("/api/v1/account/members").json()) == 1


def test_duplicate_member_and_role_rules(logged_in, signup):
    owner = logged_in("owner@example.com")
    bob, _ = signup(email="bob@example.com")
    signup(email="carol@example.com")
    assert owner.post("/api/v1/account/members", {"email": "bob@example.com"}, format="json").status_code == 201
    again = owner.post("/api/v1/account/members", {"email": "bob@example.com"}, format="json")
    assert again.status_code == 400 and "already a member" in again.json()["email"][0]

    account = Account.objects.get(memberships__user__email="owner@example.com")
    as_bob = APIClient()
    as_bob.force_login(bob)
    headers = {"HTTP_X_HEARTH_ACCOUNT": account.slug}
    refused = as_bob.post("/api/v1/account/members", {"email": "carol@example.com"}, format="json", **headers)
    assert refused.status_code == 403 and "owners and admins" in refused.json()["detail"]
    assert as_bob.patch("/api/v1/account", {"name": "mine"}, format="json", **headers).status_code == 403
    assert Membership.objects.for_account(account).count() == 2


def test_account_rename_and_limits_read_only(logged_in):
    owner = logged_in()
    response = owner.patch("/api/v1/account", {"name": "Renamed", "rpm_limit": 1}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Renamed"
    assert response.json()["rpm_limit"] is None
    too_long = owner.patch("/api/v1/account", {"name": "n" * 101}, format="json")
    assert too_long.status_code == 400 and "100" in too_long.json()["name"][0]
