from unittest import mock

import pytest
from django.db import IntegrityError
from rest_framework.test import APIClient

from accounts.models import Account, Membership, User
from accounts.services import account_signup

PASSWORD = "amber-kettle-orbit-42"  # same as conftest.PASSWORD


def _csrf(client: APIClient) -> str:
    response = client.get("/api/v1/auth/csrf")
    assert response.status_code == 200
    token = response.json()["csrf_token"]
    assert client.cookies["csrftoken"].value
    return token


@pytest.mark.django_db
def test_signup_login_logout_with_csrf_enforced():
    client = APIClient(enforce_csrf_checks=True)
    body = {"email": "Grace@Example.com", "password": PASSWORD, "account_name": "Grace's lab"}

    refused = client.post("/api/v1/auth/signup", body, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert not User.objects.filter(email="grace@example.com").exists()

    token = _csrf(client)
    created = client.post("/api/v1/auth/signup", body, format="json", HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201, created.content
    assert created.json()["user"]["email"] == "grace@example.com"
    account = Account.objects.get(slug=created.json()["account"]["slug"])
    assert account.name == "Grace's lab" and account.slug == "graces-lab"
    membership = Membership.objects.for_account(account).get()
    assert membership.role == "owner" and membership.user.email == "grace@example.com"
    assert "password" not in created.content.decode()

    login = {"email": "grace@example.com", "password": PASSWORD}
    fresh = APIClient(enforce_csrf_checks=True)
    assert fresh.post("/api/v1/auth/login", login, format="json").status_code == 403
    token = _csrf(fresh)
    logged_in = fresh.post("/api/v1/auth/login", login, format="json", HTTP_X_CSRFTOKEN=token)
    assert logged_in.status_code == 200, logged_in.content
    new_token = logged_in.json()["csrf_token"]

    me = fresh.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["memberships"][0]["account"]["slug"] == account.slug
    assert me.json()["memberships"][0]["role"] == "owner"

    # an unsafe request from a session needs the (rotated) token
    assert fresh.post("/api/v1/keys", {"name": "x"}, format="json").status_code == 403
    assert fresh.post("/api/v1/keys", {"name": "x"}, format="json", HTTP_X_CSRFTOKEN=new_token).status_code == 201
    assert fresh.post("/api/v1/auth/logout").status_code == 403
    assert fresh.post("/api/v1/auth/logout", HTTP_X_CSRFTOKEN=new_token).status_code == 204
    assert fresh.get("/api/v1/me").status_code in (401, 403)


@pytest.mark.django_db
def test_wrong_password_is_a_clear_400():
    account_signup(email="linus@example.com", password=PASSWORD)
    client = APIClient()
    response = client.post("/api/v1/auth/login", {"email": "linus@example.com", "password": "nope-nope-nope"},
                           format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": "E-mail or password is incorrect."}


SIGNUP_BAD_INPUT = [
    ({"password": PASSWORD}, "email", "required"),
    ({"email": "a@example.com"}, "password", "required"),
    ({"email": "not-an-email", "password": PASSWORD}, "email", "valid"),
    ({"email": "a@" + "x" * 250 + ".com", "password": PASSWORD}, "email", ""),
    ({"email": "a@example.com", "password": "short"}, "password", "too short"),
    ({"email": "a@example.com", "password": "password123"}, "password", "common"),
    ({"email": "a@example.com", "password": "83749283749283"}, "password", "numeric"),
    ({"email": "a@example.com", "password": PASSWORD, "account_name": "n" * 101}, "account_name", "100"),
    ({"email": "a@example.com", "password": PASSWORD, "account_name": "   "}, "account_name", ""),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field", "words"), SIGNUP_BAD_INPUT)
def test_signup_bad_input_is_400_and_writes_nothing(body, field, words):
    response = APIClient().post("/api/v1/auth/signup", body, format="json")
    assert response.status_code == 400, response.content
    messages = response.json()[field]
    assert any(words in m.lower() for m in messages), messages
    assert User.objects.count() == 0 and Account.objects.count() == 0


@pytest.mark.django_db
def test_duplicate_email_is_400_case_insensitively():
    account_signup(email="ada@example.com", password=PASSWORD)
    response = APIClient().post("/api/v1/auth/signup", {"email": "ADA@example.com", "password": PASSWORD},
                                format="json")
    assert response.status_code == 400
    assert "already exists" in response.json()["email"][0]
    assert User.objects.count() == 1 and Account.objects.count() == 1


@pytest.mark.django_db
def test_signup_is_all_or_nothing():
    with mock.patch("accounts.services.Membership.save", side_effect=IntegrityError("boom")):
        with pytest.raises(IntegrityError):
            account_signup(email="half@example.com", password=PASSWORD)
    assert User.objects.count() == 0 and Account.objects.count() == 0


@pytest.mark.django_db
def test_slugs_are_unique_and_never_hearth():
    _u1, a1 = account_signup(email="hearth@example.com", password=PASSWORD)
    _u2, a2 = account_signup(email="hearth@example.org", password=PASSWORD)
    assert a1.slug != "hearth" and a2.slug != a1.slug
    _u3, a3 = account_signup(email="sym@example.com", password=PASSWORD, account_name="!!!")
    assert a3.slug == "account" and a3.name == "!!!"


@pytest.mark.django_db
def test_anonymous_is_401_everywhere_but_auth():
    client = APIClient()
    for url in ["/api/v1/me", "/api/v1/account", "/api/v1/account/members", "/api/v1/keys", "/api/v1/models"]:
        assert client.get(url).status_code == 401, url
