"""Keys, members and the account by role and scope (README, "Roles and scopes"), and the three reproductions of
issue #12 about them: the playground key minted a permanent key; the lowest role revoked the owner's key; a member
could not be removed."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import Membership
from contracts import SCOPE_INFERENCE
from keys.models import ApiKey
from keys.selectors import api_key_verify
from keys.services import api_key_create
from tests.principals import EVERYONE, KEYS, PEOPLE, new_account, principals

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada():
    account = new_account("ada")
    return account, principals(account)


def _status(response) -> int:
    return response.status_code


# --- keys --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EVERYONE)
def test_listing_keys(ada, name):
    account, who = ada
    response = who[name].client.get("/api/v1/keys")
    if name == "owner_inference_key":
        assert _status(response) == 403 and "inference scope only" in response.json()["detail"]
    else:  # everyone in the account sees every key, masked, with its scopes, creator, last use and expiry
        assert _status(response) == 200
        rows = {k["name"]: k for k in response.json()}
        assert set(rows) == set(KEYS)
        assert rows["member_management_key"]["created_by"] == who["member"].user.email
        assert rows["owner_inference_key"]["scopes"] == ["inference"]
        assert {"last_used_at", "expires_at", "masked"} <= set(rows["owner_inference_key"])
        assert all("secret" not in k for k in rows.values())


@pytest.mark.parametrize("name", EVERYONE)
def test_only_people_create_keys(ada, name):
    account, who = ada
    before = ApiKey.objects.for_account(account).count()
    response = who[name].client.post("/api/v1/keys", {"name": "new", "scopes": ["inference", "management"]},
                                     format="json")
    if name in PEOPLE:
        assert _status(response) == 201, response.content
        assert response.json()["created_by"] == who[name].user.email
        assert response.json()["scopes"] == ["inference", "management"]
    else:
        assert _status(response) == 403, response.content
        assert ApiKey.objects.for_account(account).count() == before


def test_playground_key_cannot_mint_a_permanent_key(logged_in):
    """#12: any key, the 15-minute playground key included, could POST /api/v1/keys."""
    person = logged_in("ada@example.com")
    playground = person.post("/api/v1/playground/token").json()
    key = ApiKey.dangerously_unscoped.get(pk=playground["id"])
    assert key.scopes == [SCOPE_INFERENCE] and key.expires_at is not None
    as_key = APIClient()
    as_key.credentials(HTTP_AUTHORIZATION=f"Bearer {playground['secret']}")
    minted = as_key.post("/api/v1/keys", {"name": "forever", "scopes": ["inference", "management"]}, format="json")
    assert minted.status_code == 403
    assert as_key.get("/api/v1/keys").status_code == 403  # nor read anything else
    assert ApiKey.objects.for_account(key.account).filter(name="forever").count() == 0


def test_playground_keys_stay_in_their_account(logged_in):
    ada, eve = logged_in("ada@example.com"), logged_in("eve@example.com")
    token = ada.post("/api/v1/playground/token").json()
    assert token["id"] in [k["id"] for k in ada.get("/api/v1/keys").json()]
    assert token["id"] not in [k["id"] for k in eve.get("/api/v1/keys").json()]
    assert eve.get(f"/api/v1/keys/{token['id']}").status_code == 404
    eve.post("/api/v1/playground/token")  # Eve's next token revokes only Eve's previous one, never Ada's
    assert api_key_verify(token["secret"]) is not None


# Which principals may revoke a key created by `creator` (a member revokes only their own).
REVOKERS = {
    "owner": {"owner", "admin", "owner_management_key"},
    "member": {"owner", "admin", "owner_management_key", "member", "member_management_key"},
}


@pytest.mark.parametrize("creator", sorted(REVOKERS))
@pytest.mark.parametrize("name", EVERYONE)
def test_revoking_keys_by_role(ada, creator, name, django_capture_on_commit_callbacks):
    account, who = ada
    target, secret = api_key_create(account=account, name="target", created_by=who[creator].user)
    with django_capture_on_commit_callbacks(execute=True):
        deleted = who[name].client.delete(f"/api/v1/keys/{target.pk}")
        posted = who[name].client.post(f"/api/v1/keys/{target.pk}/revoke")
    if name in REVOKERS[creator]:
        assert _status(deleted) == 204 and _status(posted) == 200
        assert api_key_verify(secret) is None
    else:
        assert _status(deleted) == 403 and _status(posted) == 403
        assert api_key_verify(secret) is not None


def test_lowest_role_cannot_revoke_the_owners_key(ada, django_capture_on_commit_callbacks):
    """#12: the lowest role could revoke the owner's keys."""
    account, who = ada
    owners_key, secret = api_key_create(account=account, name="prod", created_by=who["owner"].user)
    with django_capture_on_commit_callbacks(execute=True):
        response = who["member"].client.delete(f"/api/v1/keys/{owners_key.pk}")
    assert response.status_code == 403 and "only the keys they created" in response.json()["detail"]
    assert api_key_verify(secret) is not None


def test_a_management_key_loses_its_power_with_its_creator(ada, django_capture_on_commit_callbacks):
    account, who = ada
    key = who["member_management_key"]
    Membership.objects.for_account(account).filter(user=key.user).update(role="admin")
    assert key.client.patch("/api/v1/account", {"name": "renamed"}, format="json").status_code == 200  # now admin
    Membership.objects.for_account(account).filter(user=key.user).delete()  # gone without the API: no revocation
    response = key.client.get("/api/v1/keys")
    assert response.status_code == 403 and "no longer a member" in response.json()["detail"]
    orphan, orphan_secret = api_key_create(account=account, name="script", scopes=["management"])  # no person
    as_orphan = APIClient()
    as_orphan.credentials(HTTP_AUTHORIZATION=f"Bearer {orphan_secret}")
    assert as_orphan.get("/api/v1/keys").status_code == 403


# --- members -----------------------------------------------------------------------------------------------------


def _membership(account, user) -> Membership:
    return Membership.objects.for_account(account).get(user=user)


@pytest.mark.parametrize("name", EVERYONE)
def test_listing_members(ada, name):
    _account, who = ada
    response = who[name].client.get("/api/v1/account/members")
    if name == "owner_inference_key":
        assert _status(response) == 403
    else:
        assert _status(response) == 200
        assert sorted(m["role"] for m in response.json()) == ["admin", "member", "owner"]


# Removing the member / the admin / the owner (a second owner exists, so only the role decides).
REMOVERS = {
    "member": {"owner", "admin", "member"},  # the member themself: leaving
    "admin": {"owner", "admin"},  # a second admin is the target: an admin removes another admin
    "owner": {"owner"},
}


@pytest.mark.parametrize("target", sorted(REMOVERS))
@pytest.mark.parametrize("name", EVERYONE)
def test_removing_members_by_role(ada, target, name, django_capture_on_commit_callbacks, signup):
    from accounts.services import membership_add

    account, who = ada
    second_owner, _ = signup(email="second-owner@example.com")
    membership_add(account=account, acting_role="owner", email=second_owner.email, role="owner")
    victim_user = second_owner if target == "owner" else who[target].user
    if target == "admin":  # a second admin, so "admin removes admin" is not the admin leaving
        victim_user, _ = signup(email="second-admin@example.com")
        membership_add(account=account, acting_role="owner", email=victim_user.email, role="admin")
    victim = _membership(account, victim_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = who[name].client.delete(f"/api/v1/account/members/{victim.pk}")
    gone = not Membership.objects.for_account(account).filter(pk=victim.pk).exists()
    if name in REMOVERS[target]:
        assert _status(response) == 204, response.content
        assert gone
    else:
        assert _status(response) == 403, response.content
        assert not gone


def test_a_member_can_be_removed_and_their_keys_go_with_them(ada, django_capture_on_commit_callbacks):
    """#12: a member could not be removed (no DELETE). Their keys were made under their role: revoked with it."""
    account, who = ada
    member = who["member"]
    inference_key, inference_secret = api_key_create(account=account, name="app", created_by=member.user)
    membership = _membership(account, member.user)
    with django_capture_on_commit_callbacks(execute=True):
        response = who["owner"].client.delete(f"/api/v1/account/members/{membership.pk}")
    assert response.status_code == 204
    assert member.user.email not in [m["email"] for m in who["owner"].client.get("/api/v1/account/members").json()]
    assert api_key_verify(inference_secret) is None
    assert who["member_management_key"].client.get("/api/v1/keys").status_code == 401  # revoked: unknown now
    assert member.client.get("/api/v1/keys").status_code == 403  # the session no longer reaches the account


def test_anyone_may_leave_but_the_last_owner(ada, django_capture_on_commit_callbacks):
    account, who = ada
    member = _membership(account, who["member"].user)
    assert who["member"].client.delete(f"/api/v1/account/members/{member.pk}").status_code == 204
    owner = _membership(account, who["owner"].user)
    response = who["owner"].client.delete(f"/api/v1/account/members/{owner.pk}")
    assert response.status_code == 400 and "needs an owner" in response.json()["role"][0]
    assert Membership.objects.for_account(account).filter(pk=owner.pk).exists()


@pytest.mark.parametrize("name", EVERYONE)
def test_only_an_owner_changes_roles(ada, name):
    account, who = ada
    member = _membership(account, who["member"].user)
    response = who[name].client.patch(f"/api/v1/account/members/{member.pk}", {"role": "admin"}, format="json")
    member.refresh_from_db()
    if name == "owner":
        assert _status(response) == 200 and response.json()["role"] == "admin" and member.role == "admin"
    else:
        assert _status(response) == 403, response.content
        assert member.role == "member"


def test_the_last_owner_is_never_demoted(ada, signup):
    from accounts.services import membership_add

    account, who = ada
    owner = _membership(account, who["owner"].user)
    refused = who["owner"].client.patch(f"/api/v1/account/members/{owner.pk}", {"role": "admin"}, format="json")
    assert refused.status_code == 400 and "needs an owner" in refused.json()["role"][0]
    bad = who["owner"].client.patch(f"/api/v1/account/members/{owner.pk}", {"role": "emperor"}, format="json")
    assert bad.status_code == 400 and "role" in bad.json()
    other, _ = signup(email="heir@example.com")
    membership_add(account=account, acting_role="owner", email=other.email, role="owner")
    stepped_down = who["owner"].client.patch(f"/api/v1/account/members/{owner.pk}", {"role": "admin"},
                                             format="json")
    assert stepped_down.status_code == 200 and stepped_down.json()["role"] == "admin"


@pytest.mark.parametrize("name", EVERYONE)
def test_adding_members_needs_an_owner_or_admin_in_person(ada, name, signup):
    _account, who = ada
    newcomer, _ = signup(email=f"new-{name.replace('_', '-')}@example.com")
    response = who[name].client.post("/api/v1/account/members", {"email": newcomer.email}, format="json")
    assert _status(response) == (201 if name in ("owner", "admin") else 403), response.content


# --- the account ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EVERYONE)
def test_account_read_and_rename(ada, name):
    _account, who = ada
    read = who[name].client.get("/api/v1/account")
    renamed = who[name].client.patch("/api/v1/account", {"name": f"by {name}"}, format="json")
    if name == "owner_inference_key":
        assert _status(read) == 403 and _status(renamed) == 403
        return
    assert _status(read) == 200
    may_rename = name in ("owner", "admin", "owner_management_key")
    assert _status(renamed) == (200 if may_rename else 403), renamed.content


def test_members_and_keys_of_another_account_are_404_whatever_the_role(ada):
    account, who = ada
    target_member = _membership(account, who["member"].user)
    target_key = who["owner_inference_key"].key
    intruders = principals(new_account("eve"))
    for name in ("owner", "owner_management_key"):
        client = intruders[name].client
        assert client.patch(f"/api/v1/account/members/{target_member.pk}", {"role": "owner"},
                            format="json").status_code in (403, 404)
        assert client.delete(f"/api/v1/account/members/{target_member.pk}").status_code in (403, 404)
        assert client.get(f"/api/v1/keys/{target_key.pk}").status_code == 404
        assert client.delete(f"/api/v1/keys/{target_key.pk}").status_code == 404
    session = intruders["owner"].client  # a person gets 404 (a key is refused before: it can't manage people)
    assert session.patch(f"/api/v1/account/members/{target_member.pk}", {"role": "owner"},
                         format="json").status_code == 404
    assert session.delete(f"/api/v1/account/members/{target_member.pk}").status_code == 404
    target_member.refresh_from_db()
    assert target_member.role == "member"
