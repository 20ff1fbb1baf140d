"""GET /api/v1/account shows the account's effective RPM/TPM limits and what is left in the gateway's own buckets
(charged here by the gateway's real Lua script on the session's Redis, so the two sides can't drift)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from contracts import DEFAULT_RPM_LIMIT, DEFAULT_TPM_LIMIT, rate_limit_keys

pytestmark = pytest.mark.django_db
LUA = Path(__file__).resolve().parents[2] / "gateway" / "token_buckets.lua"


@pytest.fixture
def rclient():
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield client
    for key in client.scan_iter("hearth:rl:*"):
        client.delete(key)
    client.close()


def charge(client: redis.Redis, account_id: int, key_id: int, rpm: int, tpm: int, tokens: int) -> None:
    """What gateway.ratelimit sends for one request: key and account buckets, one request and `tokens` tokens."""
    script = client.register_script(LUA.read_text())
    script(keys=rate_limit_keys(account_id, key_id), args=["0", rpm, 1, tpm, tokens, rpm, 1, tpm, tokens])


def test_defaults_then_usage_from_the_gateway_buckets(logged_in, rclient):
    client = logged_in()
    body = client.get("/api/v1/account").json()
    assert body["rate_limits"] == {"rpm": {"limit": DEFAULT_RPM_LIMIT, "remaining": DEFAULT_RPM_LIMIT},
                                   "tpm": {"limit": DEFAULT_TPM_LIMIT, "remaining": DEFAULT_TPM_LIMIT}}
    for _ in range(3):
        charge(rclient, body["id"], 7, DEFAULT_RPM_LIMIT, DEFAULT_TPM_LIMIT, 1000)
    limits = client.get("/api/v1/account").json()["rate_limits"]
    # 3 requests and 3,000 tokens charged; the buckets refill continuously (600/min = one request per 100 ms,
    # 200k/min = 3.3 tokens per ms), so allow for a slow machine between the charges and the read.
    assert DEFAULT_RPM_LIMIT - 3 <= limits["rpm"]["remaining"] < DEFAULT_RPM_LIMIT
    assert DEFAULT_TPM_LIMIT - 3000 <= limits["tpm"]["remaining"] < DEFAULT_TPM_LIMIT


def test_account_limits_override_defaults_and_other_accounts_are_separate(logged_in, rclient):
    from accounts.models import Account

    ada = logged_in("ada@example.com")
    bob = logged_in("bob@example.com")
    ada_id = ada.get("/api/v1/account").json()["id"]
    Account.objects.filter(pk=ada_id).update(rpm_limit=10, tpm_limit=5000)
    charge(rclient, ada_id, 1, 10, 5000, 4000)
    limits = ada.get("/api/v1/account").json()["rate_limits"]
    assert limits["rpm"]["limit"] == 10 and limits["rpm"]["remaining"] == 9
    assert limits["tpm"]["limit"] == 5000 and 1000 <= limits["tpm"]["remaining"] < 1500  # 83 tokens/s refill
    assert bob.get("/api/v1/account").json()["rate_limits"]["tpm"]["remaining"] == DEFAULT_TPM_LIMIT


def test_redis_down_shows_limits_without_usage(logged_in, monkeypatch):
    import accounts.rate_limits as rl

    class Down:
        def pipeline(self, **_kw):  # noqa: ANN202
            raise redis.ConnectionError("down")

    monkeypatch.setattr(rl, "get_redis", lambda: Down())  # the boundary: Redis unreachable
    body = logged_in().get("/api/v1/account").json()
    assert body["rate_limits"]["rpm"] == {"limit": DEFAULT_RPM_LIMIT, "remaining": None}
