from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from contracts import API_KEY_PREFIX as SECRET_PREFIX
from contracts import API_KEY_SCOPES, SCOPE_INFERENCE
from tenancy.models import TenantOwnedModel


def default_scopes() -> list[str]:
    return [SCOPE_INFERENCE]


class ApiKey(TenantOwnedModel):
    """An API key. Only the SHA-256 hex of the full secret is stored; the secret is shown once at creation.

    The gateway reads this table with plain SQL (docs/contracts.md, `keys_apikey`)."""

    name = models.CharField(max_length=100)
    hashed_key = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, db_index=True)  # first 8 chars after "hk_"
    last4 = models.CharField(max_length=4)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # What the key may call (contracts.API_KEY_SCOPES); the gateway refuses a key without `inference` on /v1.
    scopes = ArrayField(models.CharField(max_length=16, choices=[(s, s) for s in API_KEY_SCOPES]), default=default_scopes)
    # The person who made it: a member manages only their own keys, and a management key acts with its creator's
    # current role (no creator, or one who left the account: it manages nothing).
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # Per-key limits, at most the account's (null: the account's limits only); the gateway's key buckets enforce them.
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    # USD a request made with this key may cost when it sets no max_cost itself (gateway/budget.py); null: no cap.
    max_cost_per_request = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        db_table = "keys_apikey"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{SECRET_PREFIX}…{self.last4}"
