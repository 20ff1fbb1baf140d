from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import redis
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, User
from contracts import API_KEY_BODY_LENGTH, API_KEY_SCOPES, KEYS_REVOKED_CHANNEL, SCOPE_INFERENCE, api_key_hash
from hearth_platform.errors import ApplicationError
from hearth_platform.redis_client import get_redis
from keys.models import SECRET_PREFIX, ApiKey

log = logging.getLogger("hearth.keys")

NAME_MAX_LENGTH = ApiKey._meta.get_field("name").max_length
_BASE62 = string.digits + string.ascii_letters


def _new_secret() -> str:
    # 40 base62 chars from the OS CSPRNG: ~238 bits.
    return SECRET_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(API_KEY_BODY_LENGTH))


def _clean_scopes(scopes: Iterable[str] | None) -> list[str]:
    chosen = [SCOPE_INFERENCE] if scopes is None else list(dict.fromkeys(scopes))
    if not chosen:
        raise ApplicationError("Give the key at least one scope.", field="scopes", code="required")
    unknown = [s for s in chosen if s not in API_KEY_SCOPES]
    if unknown:
        raise ApplicationError(f"Scopes are {', '.join(API_KEY_SCOPES)}; not {', '.join(map(str, unknown))}.",
                               field="scopes")
    return chosen


def _check_key_limits(account: Account, rpm_limit: int | None, tpm_limit: int | None) -> None:
    from accounts.rate_limits import effective_limits

    account_rpm, account_tpm = effective_limits(account)
    for field, value, ceiling in (("rpm_limit", rpm_limit, account_rpm), ("tpm_limit", tpm_limit, account_tpm)):
        if value is None:
            continue
        if value < 1:
            raise ApplicationError("A key's limit is at least 1 per minute.", field=field, code="min_value")
        if value > ceiling:
            raise ApplicationError(f"A key's limit is at most the account's, {ceiling} per minute.", field=field,
                                   code="max_value")


@transaction.atomic
def api_key_create(
    *, account: Account, name: str, expires_at: datetime | None = None, scopes: Iterable[str] | None = None,
    created_by: User | None = None, rpm_limit: int | None = None, tpm_limit: int | None = None,
    max_cost_per_request: Decimal | None = None,
) -> tuple[ApiKey, str]:
    """Create a key (default scope: inference only); returns it with its secret, which is never stored and can't be
    shown again. `created_by`: the person who asked for it (a member manages only their own keys). `rpm_limit` /
    `tpm_limit`: this key's own limits, at most the account's (a key can only be held lower)."""
    name = (name or "").strip()
    if not name:
        raise ApplicationError("Give the key a name.", field="name", code="required")
    if len(name) > NAME_MAX_LENGTH:
        raise ApplicationError(f"Key names are at most {NAME_MAX_LENGTH} characters.", field="name", code="max_length")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("The expiry date must be in the future.", field="expires_at")
    chosen_scopes = _clean_scopes(scopes)
    _check_key_limits(account, rpm_limit, tpm_limit)
    secret = _new_secret()
    body = secret[len(SECRET_PREFIX):]
    key = ApiKey(
        account=account, name=name, hashed_key=api_key_hash(secret), prefix=body[:8], last4=body[-4:],
        expires_at=expires_at, scopes=chosen_scopes, created_by=created_by, rpm_limit=rpm_limit, tpm_limit=tpm_limit,
        max_cost_per_request=max_cost_per_request,
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


@transaction.atomic
def api_key_revoke_created_by(*, account: Account, user_id: int) -> int:
    """Revoke every active key a person created in the account (they are leaving it); returns how many."""
    keys = list(ApiKey.objects.for_account(account).filter(created_by_id=user_id, revoked_at__isnull=True))
    for key in keys:
        api_key_revoke(key=key)
    return len(keys)
