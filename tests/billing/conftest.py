"""Fixtures for billing: accounts and keys made with the control plane's own services, usage events in the gateway's
exact shape (gateway.metering.UsageEvent), and a clean usage stream per test on the session's real Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from billing_testlib import WEBHOOK_SECRET

from contracts import USAGE_DEAD_STREAM, USAGE_STREAM, billing_state_key, spend_key

PASSWORD = "amber-kettle-orbit-42"


@pytest.fixture
def rclient() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    keys = [USAGE_STREAM, USAGE_DEAD_STREAM]
    client.delete(*keys)
    for pattern in (spend_key("*", "*"), billing_state_key("*")):
        for key in client.scan_iter(pattern):
            client.delete(key)
    try:
        yield client
    finally:
        client.delete(*keys)
        client.close()


@pytest.fixture
def tenant(db) -> Callable:
    """tenant("ada") -> (account, api_key) made through the real sign-up and key services."""
    from accounts.services import account_signup
    from keys.services import api_key_create

    def _tenant(name: str = "ada"):
        _user, account = account_signup(email=f"{name}-{uuid.uuid4().hex[:6]}@example.com", password=PASSWORD,
                                        account_name=name)
        key, _secret = api_key_create(account=account, name="default")
        return account, key

    return _tenant


@pytest.fixture
def smollm2(db):
    """The seeded catalog row (re-created after a transactional test flushed the tables), at its seed prices."""
    import importlib

    from catalog.models import BaseModel

    seed = dict(importlib.import_module("catalog.migrations.0002_seed_smollm2").SMOLLM2)
    model, _ = BaseModel.objects.update_or_create(slug=seed.pop("slug"), defaults=seed)
    return model


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/v1/customers", auth=("sk_test_x", ""), timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("localstripe did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def stripe_on(settings, localstripe_url: str) -> str:
    settings.HEARTH_STRIPE_API_KEY = "sk_test_hearth"
    settings.HEARTH_STRIPE_API_BASE = localstripe_url
    settings.HEARTH_STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    return localstripe_url
