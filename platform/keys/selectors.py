from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Account
from contracts import API_KEY_RE, api_key_hash
from keys.models import ApiKey


def api_key_list(*, account: Account) -> QuerySet[ApiKey]:
    return ApiKey.objects.for_account(account).select_related("created_by").order_by("-created_at", "-id")


def api_key_get(*, account: Account, key_id: int) -> ApiKey | None:
    return api_key_list(account=account).filter(pk=key_id).first()


def api_key_verify(secret: str) -> tuple[ApiKey, Account] | None:
    """The key and its account for a usable secret; None for malformed, unknown, revoked or expired keys."""
    if not isinstance(secret, str) or not API_KEY_RE.fullmatch(secret):
        return None
    # The secret itself names the tenant, so this lookup is cross-account by nature.
    key = ApiKey.dangerously_unscoped.select_related("account").filter(hashed_key=api_key_hash(secret)).first()
    if key is None or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return None
    return key, key.account
