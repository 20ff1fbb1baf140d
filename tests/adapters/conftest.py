from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rest_framework.test import APIClient

PASSWORD = "amber-kettle-orbit-42"


@pytest.fixture(autouse=True)
def adapter_store(settings, tmp_path: Path) -> Path:
    store = tmp_path / "adapter-store"
    settings.HEARTH_ADAPTER_STORE = str(store)
    # Signing up hashes a password; the production hasher costs ~0.5 s a test on this shared CPU.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return store


@pytest.fixture
def signup(db) -> Callable:
    from accounts.services import account_signup

    def _signup(email: str = "ada@example.com"):
        return account_signup(email=email, password=PASSWORD, account_name=None)

    return _signup


@pytest.fixture
def session_client(signup) -> Callable[..., tuple[APIClient, object]]:
    def _client(email: str = "ada@example.com") -> tuple[APIClient, object]:
        user, account = signup(email=email)
        client = APIClient()
        client.force_login(user)
        return client, account

    return _client


@pytest.fixture
def key_client(signup) -> Callable[..., tuple[APIClient, object]]:
    """A client that authenticates with `Authorization: Bearer hk_…` only (no session)."""
    from keys.services import api_key_create

    def _client(email: str = "bob@example.com") -> tuple[APIClient, object]:
        user, account = signup(email=email)  # the account's owner makes a key for the CLI: management scope
        _key, secret = api_key_create(account=account, name="cli", scopes=["management"], created_by=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client, account

    return _client
