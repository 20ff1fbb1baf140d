from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import redis
from rest_framework.test import APIClient

PASSWORD = "amber-kettle-orbit-42"


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    """Log-in and sign-up are throttled per IP in Redis, and every test client is 127.0.0.1: each test starts with
    fresh counts (the session's Redis is private to this run)."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        for key in client.scan_iter("hearth:throttle:*"):
            client.delete(key)
        yield
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # PBKDF2 at Django 5.2's 1,000,000 iterations costs ~0.5 s per sign-up/log-in on this CPU; hashing strength is
    # not what these tests check (Django's own docs suggest this for test runs).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def signup(db) -> Callable:
    from accounts.services import account_signup

    def _signup(email: str = "ada@example.com", password: str = PASSWORD, account_name: str | None = None):
        return account_signup(email=email, password=password, account_name=account_name)

    return _signup


@pytest.fixture
def logged_in(signup) -> Callable[..., APIClient]:
    """A session-authenticated client for a fresh person (CSRF not enforced; the auth tests enforce it)."""

    def _client(email: str = "ada@example.com") -> APIClient:
        user, _account = signup(email=email)
        client = APIClient()
        client.force_login(user)
        return client

    return _client
