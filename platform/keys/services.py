from __future__ import annotations

import logging
import secrets
import string
from datetime import datetime

import redis
from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from contracts import API_KEY_BODY_LENGTH, KEYS_REVOKED_CHANNEL, api_key_hash
from hearth_platform.errors import ApplicationError
from hearth_platform.redis_client import get_redis
from keys.models import SECRET_PREFIX, ApiKey

log = logging.getLogger("hearth.keys")

NAME_MAX_LENGTH = ApiKey._meta.get_field("name").max_length
_BASE62 = string.digits + string.ascii_letters


def _new_secret() -> str:
    # 40 base62 chars from the OS CSPRNG: ~238 bits.
    return SECRET_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(API_KEY_BODY_LENGTH))


@transaction.atomic
def api_key_create(*, account: Account, name: str, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns it with its secret, which is never stored and can't be shown again."""
    name = (name or "").strip()
    if not name:
        raise ApplicationError("Give the key a name.", field="name", code="required")
    if len(name) > NAME_MAX_LENGTH:
        raise ApplicationError(f"Key names are at most {NAME_MAX_LENGTH} characters.", field="name", code="max_length")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("The expiry date must be in the future.", field="expires_at")
    secret = _new_secret()
    body = secret[len(SECRET_PREFIX):]
    key = ApiKey(
        account=account, name=name, hashed_key=api_key_hash(secret), prefix=body[:8], last4=body[-4:],
        expires_at=expires_at,
    )
    key.save(force_insert=True)
    log.info("api key %s created for account %s", key.pk, account.pk)
    return key, secret


def _publish_revoked(hashed_key: str) -> None:
    try:
        get_redis().publish(KEYS_REVOKED_CHANNEL, hashed_key)
    except redis.RedisError as exc:
        # The revocation stands in Postgres; gateways re-read keys when their cache entry expires.
        log.warning("could not publish key revocation to Redis: %s", exc)


@transaction.atomic
def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key (idempotent) and tell the gateways, once the revocation is committed."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        log.info("api key %s revoked", key.pk)
    hashed_key = key.hashed_key
    transaction.on_commit(lambda: _publish_revoked(hashed_key))
    return key
