"""Keys and errors: unknown, revoked (on every gateway within 1 s), expired, suspended; models the key can't use;
bad bodies; OpenAI's error shape and the SDK's retry behaviour. No worker is needed for any of these."""

import time
from datetime import timedelta

import httpx
import openai
import pytest
from conftest import SMOLLM2
from gateway_testlib import sdk

pytestmark = pytest.mark.django_db(transaction=True)


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert response.headers["x-request-id"].startswith("req_")
    return body["error"]


def test_unknown_key_is_401_and_not_retried(gateway, make_key):
    sent: list[httpx.Request] = []
    client = sdk(gateway.url, "hk_" + "A" * 40, max_retries=2, sent=sent)
    with pytest.raises(openai.AuthenticationError) as exc:
        client.models.list()
    assert exc.value.code == "invalid_api_key" and exc.value.status_code == 401
    assert "hk_…AAAA" in exc.value.message and "A" * 40 not in exc.value.message  # masked, never echoed
    assert len(sent) == 1  # the SDK does not retry a 401
    for header in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer not-a-key"}):
        err = _error(httpx.get(f"{gateway.url}/v1/models", headers=header))
        assert err["code"] == "invalid_api_key"


def test_revoked_key_refused_by_every_gateway_within_one_second(gateway_factory, make_key):
    from keys.services import api_key_revoke

    first, second = gateway_factory(), gateway_factory()
    key, secret = make_key()
    clients = [sdk(g.url, secret) for g in (first, second)]
    for client in clients:
        assert client.models.list().data  # cached as valid in both processes
    api_key_revoke(key=key)
    revoked_at = time.monotonic()
    for client in clients:
        while True:
            try:
                client.models.list()
            except openai.AuthenticationError as exc:
                assert exc.code == "invalid_api_key" and "revoked" in exc.message
                break
            assert time.monotonic() - revoked_at < 1.0, "a revoked key still worked after 1 s"
            time.sleep(0.02)
    assert time.monotonic() - revoked_at < 1.0


def test_expired_key_and_suspended_account_are_refused(gateway, make_key):
    from django.utils import timezone
    from keys.models import ApiKey

    key, secret = make_key()
    ApiKey.objects.for_account(key.account).filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(openai.AuthenticationError) as exc:
        sdk(gateway.url, secret).models.list()
    assert exc.value.code == "invalid_api_key" and "expired" in exc.value.message

    _key, suspended_secret = make_key(status="suspended")
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk(gateway.url, suspended_secret).models.list()
    assert denied.value.code == "account_suspended"


def test_a_management_only_key_is_refused_on_v1(gateway, make_key):
    _key, secret = make_key(scopes=["management"])
    sent: list[httpx.Request] = []
    with pytest.raises(openai.AuthenticationError) as exc:
        sdk(gateway.url, secret, max_retries=2, sent=sent).models.list()
    assert exc.value.status_code == 401 and exc.value.code == "insufficient_scope" and len(sent) == 1
    assert "Missing scopes: inference" in exc.value.message and secret[3:] not in exc.value.message
    err = _error(httpx.post(f"{gateway.url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                            json={"model": SMOLLM2, "messages": [{"role": "user", "content": "hi"}]}))
    assert err["code"] == "insufficient_scope"
    _key, both = make_key(scopes=["inference", "management"])
    assert sdk(gateway.url, both).models.list().data  # a key with both scopes calls models too


def test_model_the_key_cannot_use_is_404_and_not_retried(gateway, make_key):
    _key, secret = make_key()
    sent: list[httpx.Request] = []
    client = sdk(gateway.url, secret, max_retries=2, sent=sent)
    for name in ("accounts/someone-else/models/their-adapter", "gpt-4o"):
        with pytest.raises(openai.NotFoundError) as exc:
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        assert exc.value.code == "model_not_found" and name in exc.value.message
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve(name)
    assert len(sent) == 4


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": SMOLLM2}, "messages"),
        ({"model": SMOLLM2, "messages": []}, "messages"),
        ({"model": SMOLLM2, "messages": [{"role": "wizard", "content": "x"}]}, "messages.[0].role"),
        ({"model": SMOLLM2, "messages": [{"role": "user", "content": "x"}], "temperature": 7}, "temperature"),
        ({"model": SMOLLM2, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"model": SMOLLM2, "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}, "frobnicate"),
        ({"model": SMOLLM2, "messages": [{"role": "user", "content": "x"}], "stream_options": {}}, "stream_options"),
    ],
)
def test_bad_bodies_are_400_with_param(gateway, make_key, body, param):
    _key, secret = make_key()
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 400
    err = _error(response)
    assert err["type"] == "invalid_request_error" and err["param"] == param


def test_unparseable_json_and_unknown_route(gateway, make_key):
    _key, secret = make_key()
    auth = {"Authorization": f"Bearer {secret}", "content-type": "application/json"}
    response = httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{not json", headers=auth)
    assert response.status_code == 400 and "JSON" in _error(response)["message"]
    response = httpx.get(f"{gateway.url}/v1/nothing-here", headers=auth)
    assert response.status_code == 404 and _error(response)["code"] == "unknown_url"
