"""API-key authentication: Bearer hk_… -> SHA-256 hex -> keys_apikey row, cached in-process.

Positive results live `key_cache_ttl_s`, negative ones `key_negative_ttl_s`. Revocation does not wait for the TTL:
the control plane publishes the revoked key's hash on KEYS_REVOKED_CHANNEL (contracts) and every gateway process drops it on
receipt (a missed message while Redis was away clears the whole positive cache on resubscribe). Last use goes to the
Redis hash KEYS_LAST_USED_HASH (key id -> unix seconds), flushed once a second, for the control plane to write
into keys_apikey.last_used_at in batches.
"""

import asyncio
import logging
import time
from datetime import UTC, datetime

import redis.asyncio as aioredis

from contracts import API_KEY_RE, KEYS_LAST_USED_HASH, KEYS_REVOKED_CHANNEL, SCOPE_INFERENCE, api_key_hash
from contracts.pubsub import listen_forever
from gateway.db import Database, KeyRecord
from gateway.errors import AccountSuspended, InvalidApiKey, ServiceUnavailable
from gateway.outages import DB_ERRORS

log = logging.getLogger("hearth.gateway.auth")

# A hash revoked by message stays refused this long even if a read races the control plane's commit.
_REVOKED_MEMORY_S = 300.0


def _masked(secret: str) -> str:
    return f"hk_…{secret[-4:]}" if len(secret) >= 8 else "hk_…"


class Authenticator:
    def __init__(
        self, db: Database, *, ttl_s: float, negative_ttl_s: float, max_entries: int, stale_s: float = 0.0
    ) -> None:
        self._db = db
        self._stale_s = stale_s
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._inflight: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._revoked: dict[str, float] = {}
        self._last_used: dict[int, int] = {}

    async def authenticate(self, authorization: str | None) -> KeyRecord:
        secret = _bearer(authorization)
        if secret is None:
            raise InvalidApiKey(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        incorrect = f"Incorrect API key provided: {_masked(secret)}."
        if not API_KEY_RE.fullmatch(secret):
            raise InvalidApiKey(incorrect)
        hashed = api_key_hash(secret)
        now = time.monotonic()
        if self._revoked.get(hashed, 0.0) > now:
            raise InvalidApiKey(f"The API key {_masked(secret)} has been revoked.")
        record = await self._lookup(hashed, now)
        if record is None:
            raise InvalidApiKey(incorrect)
        if record.revoked_at is not None:
            raise InvalidApiKey(f"The API key {_masked(secret)} has been revoked.")
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise InvalidApiKey(f"The API key {_masked(secret)} has expired.")
        if SCOPE_INFERENCE not in record.scopes:  # a management-only key: 401 as OpenAI answers a missing scope
            raise InvalidApiKey(
                f"The API key {_masked(secret)} has insufficient permissions for this operation. Missing scopes: "
                f"{SCOPE_INFERENCE}. Create a key with the {SCOPE_INFERENCE} scope to call models.",
                code="insufficient_scope",
            )
        if record.account_status != "active":
            raise AccountSuspended(f"The account {record.account_slug} is {record.account_status}.")
        self._last_used[record.key_id] = int(time.time())
        return record

    async def _lookup(self, hashed: str, now: float) -> KeyRecord | None:
        hit = self._cache.get(hashed)
        if hit is not None and hit[0] > now:
            return hit[1]
        task = self._inflight.get(hashed)
        if task is None:  # one query per key however many requests miss at once; a disconnecting caller
            task = asyncio.ensure_future(self._db.key_by_hash(hashed))  # must not cancel it for the others
            self._inflight[hashed] = task
            task.add_done_callback(lambda t: self._store(hashed, now, t))
        try:
            return await asyncio.shield(task)
        except DB_ERRORS as exc:
            # Postgres away: a key this process knew keeps its last answer for stale_s past its TTL (revocations
            # still arrive by pub/sub); an unknown one can't be checked.
            if hit is not None and hit[0] + self._stale_s > now:
                return hit[1]
            raise ServiceUnavailable("The API key could not be checked right now. Please retry shortly.") from exc

    def _store(self, hashed: str, now: float, task: "asyncio.Future[KeyRecord | None]") -> None:
        self._inflight.pop(hashed, None)
        if task.cancelled() or task.exception() is not None:
            return
        record = task.result()
        if len(self._cache) >= self._max_entries:
            self._cache.clear()  # crude but bounded; a full cache means a flood of distinct (mostly bad) keys
        if self._revoked.get(hashed, 0.0) <= time.monotonic():
            self._cache[hashed] = (now + (self._ttl_s if record is not None else self._negative_ttl_s), record)

    def revoke(self, hashed: str) -> None:
        self._cache.pop(hashed, None)
        now = time.monotonic()
        self._revoked[hashed] = now + _REVOKED_MEMORY_S
        if len(self._revoked) > 10_000:
            self._revoked = {h: t for h, t in self._revoked.items() if t > now}

    def forget_positive(self) -> None:
        self._cache = {h: v for h, v in self._cache.items() if v[1] is None}

    async def listen_revocations(self, client: aioredis.Redis) -> None:
        """Runs for the life of the process; after an outage every cached positive result is dropped, since revocations
        published meanwhile were lost."""
        await listen_forever(client, KEYS_REVOKED_CHANNEL, self.revoke, self.forget_positive)

    async def flush_last_used(self, client: aioredis.Redis) -> None:
        if not self._last_used:
            return
        batch, self._last_used = self._last_used, {}
        try:
            await client.hset(KEYS_LAST_USED_HASH, mapping={str(k): v for k, v in batch.items()})
        except (aioredis.RedisError, OSError):
            for key_id, ts in batch.items():  # keep for the next flush; newer touches win
                self._last_used.setdefault(key_id, ts)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

