import hashlib
import json
import re
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from contracts import KEYS_REVOKED_CHANNEL
from keys.models import ApiKey
from keys.selectors import api_key_verify
from keys.services import api_key_create, api_key_revoke
from tenancy.models import UnscopedQueryError

SECRET_RE = re.compile(r"^hk_[0-9A-Za-z]{40}$")


def _create_via_api(client: APIClient, name: str = "prod", scopes: list[str] | None = None) -> dict:
    body = {"name": name} if scopes is None else {"name": name, "scopes": scopes}
    response = client.post("/api/v1/keys", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_secret_is_shown_once_and_never_stored(logged_in):
    client = logged_in()
    created = _create_via_api(client)
    secret = created["secret"]
    assert SECRET_RE.match(secret)
    assert created["masked"] == f"hk_…{secret[-4:]}"

    with connection.cursor() as cur:
        cur.execute("SELECT * FROM keys_apikey WHERE id = %s", [created["id"]])
        row = cur.fetchone()
        columns = [c.name for c in cur.description]
    values = dict(zip(columns, row, strict=True))
    assert values["hashed_key"] == hashlib.sha256(secret.encode()).hexdigest()
    body = secret[len("hk_"):]
    for column, value in values.items():
        assert body not in str(value), f"column {column} holds the secret"

    detail = client.get(f"/api/v1/keys/{created['id']}")
    listing = client.get("/api/v1/keys")
    assert detail.status_code == 200 and listing.status_code == 200
    for response in (detail, listing):
        assert body not in response.content.decode()
        assert "secret" not in response.content.decode()
    assert detail.json()["masked"] == created["masked"]


def test_secrets_are_distinct_and_verify(signup):
    _user, account = signup()
    secrets_ = {api_key_create(account=account, name=f"k{i}")[1] for i in range(20)}
    assert len(secrets_) == 20
    for secret in secrets_:
        key, acct = api_key_verify(secret)
        assert acct == account and key.account_id == account.pk


@pytest.mark.parametrize("bad", ["", "hk_", "sk-abc", "hk_" + "a" * 39, "hk_" + "!" * 40, None])
def test_malformed_or_unknown_secrets_do_not_verify(signup, bad):
    assert api_key_verify(bad) is None


def test_unknown_well_formed_secret_does_not_verify(signup):
    _user, account = signup()
    _key, secret = api_key_create(account=account, name="real")
    assert api_key_verify("hk_" + "Z" * 40) is None
    assert api_key_verify(secret[:-1] + ("a" if secret[-1] != "a" else "b")) is None


def test_revoked_key_does_not_verify(signup):
    _user, account = signup()
    key, secret = api_key_create(account=account, name="to-revoke")
    assert api_key_verify(secret) is not None
    api_key_revoke(key=key)
    assert api_key_verify(secret) is None


def test_expired_key_does_not_verify(signup):
    _user, account = signup()
    key, secret = api_key_create(account=account, name="short", expires_at=timezone.now() + timedelta(hours=1))
    assert api_key_verify(secret) is not None
    ApiKey.objects.for_account(account).filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_key_verify(secret) is None


def test_revoke_publishes_hashed_key_on_redis(signup, django_capture_on_commit_callbacks):
    _user, account = signup()
    key, secret = api_key_create(account=account, name="watched")
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(KEYS_REVOKED_CHANNEL)
    try:
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        with django_capture_on_commit_callbacks(execute=True):
            api_key_revoke(key=key)
        message = pubsub.get_message(timeout=5)
        assert message is not None and message["type"] == "message"
        assert message["data"].decode() == key.hashed_key
        assert secret[3:] not in message["data"].decode()
    finally:
        pubsub.close()
        client.close()


def test_revoke_via_delete_and_post(logged_in, django_capture_on_commit_callbacks):
    client = logged_in()
    first, second = _create_via_api(client, "one"), _create_via_api(client, "two")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/keys/{first['id']}").status_code == 204
        response = client.post(f"/api/v1/keys/{second['id']}/revoke")
    assert response.status_code == 200 and response.json()["revoked_at"] and response.json()["is_active"] is False
    assert api_key_verify(first["secret"]) is None and api_key_verify(second["secret"]) is None
    # revoking again is harmless
    assert client.post(f"/api/v1/keys/{second['id']}/revoke").status_code == 200


def test_bearer_key_acts_for_its_account(logged_in):
    client = logged_in()
    created = _create_via_api(client, "bearer", scopes=["management"])
    assert created["scopes"] == ["management"]
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {created['secret']}")
    response = bearer.get("/api/v1/keys")
    assert response.status_code == 200
    assert [k["id"] for k in response.json()] == [created["id"]]
    assert bearer.get("/api/v1/me").status_code == 403  # a key is not a person


def test_an_inference_key_is_refused_by_the_control_plane(logged_in):
    client = logged_in()
    created = _create_via_api(client, "app")
    assert created["scopes"] == ["inference"]  # the default
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {created['secret']}")
    response = bearer.get("/api/v1/keys")
    assert response.status_code == 403 and "inference scope only" in response.json()["detail"]


@pytest.mark.parametrize(("scopes", "words"), [([], "at least"), (["admin"], "not a valid choice"), ("inference", "list")])
def test_bad_scopes_are_400(logged_in, scopes, words):
    response = logged_in().post("/api/v1/keys", {"name": "x", "scopes": scopes}, format="json")
    assert response.status_code == 400 and words in str(response.json()["scopes"]).lower(), response.json()


def test_bad_bearer_is_401_with_a_message(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer hk_" + "x" * 40)
    response = client.get("/api/v1/keys")
    assert response.status_code == 401
    assert "API key" in response.json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_unscoped_queries_fail_closed():
    with pytest.raises(UnscopedQueryError):
        list(ApiKey.objects.all())
    with pytest.raises(UnscopedQueryError):
        ApiKey.objects.filter(name="x")
    with pytest.raises(UnscopedQueryError):
        ApiKey.objects.for_account(None)


def test_key_bad_input(logged_in):
    client = logged_in()
    cases = [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "expires_at": "not a date"}, "expires_at"),
        ({"name": "ok", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/keys", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json(), response.json()
        assert json.dumps(response.json())  # a message, not a traceback
    assert client.get("/api/v1/keys").json() == []
    assert client.get("/api/v1/keys/999999").status_code == 404
    assert client.get("/api/v1/keys/not-a-number").status_code == 404
    assert client.delete("/api/v1/keys/999999").status_code == 404


def test_expiry_and_per_key_limits_at_creation_are_listed(logged_in):
    from datetime import UTC, datetime

    client = logged_in()
    expires = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    created = client.post("/api/v1/keys", {"name": "batch", "expires_at": expires.isoformat(), "rpm_limit": 30,
                                           "tpm_limit": 5000}, format="json")
    assert created.status_code == 201, created.content
    listed = {k["id"]: k for k in client.get("/api/v1/keys").json()}[created.json()["id"]]
    assert listed["rpm_limit"] == 30 and listed["tpm_limit"] == 5000 and listed["last_used_at"] is None
    assert datetime.fromisoformat(listed["expires_at"].replace("Z", "+00:00")) == expires
    account_rpm = client.get("/api/v1/account").json()["rate_limits"]["rpm"]["limit"]
    too_high = client.post("/api/v1/keys", {"name": "x", "rpm_limit": account_rpm + 1}, format="json")
    assert too_high.status_code == 400 and str(account_rpm) in too_high.json()["rpm_limit"][0]
    assert client.post("/api/v1/keys", {"name": "x", "tpm_limit": 0}, format="json").status_code == 400
    past = client.post("/api/v1/keys", {"name": "x", "expires_at": "2020-01-01T00:00:00Z"}, format="json")
    assert past.status_code == 400 and "future" in past.json()["expires_at"][0]


def test_a_per_request_budget_cap_is_set_at_creation_and_listed(logged_in):
    # max_cost_per_request (#19): the gateway applies it to a request that sets no max_cost itself
    client = logged_in()
    created = client.post("/api/v1/keys", {"name": "capped", "max_cost_per_request": "0.0025"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["max_cost_per_request"] == "0.002500"
    listed = {k["id"]: k for k in client.get("/api/v1/keys").json()}[created.json()["id"]]
    assert listed["max_cost_per_request"] == "0.002500"
    assert client.post("/api/v1/keys", {"name": "plain"}, format="json").json()["max_cost_per_request"] is None
    for bad in ("0", "-1", "abc", "0.0000001"):
        response = client.post("/api/v1/keys", {"name": "x", "max_cost_per_request": bad}, format="json")
        assert response.status_code == 400 and "max_cost_per_request" in response.json(), (bad, response.content)
