from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

PASSWORD = "amber-kettle-orbit-42"


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
