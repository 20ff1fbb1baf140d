from __future__ import annotations

from django.db import models

from contracts import API_KEY_PREFIX as SECRET_PREFIX
from tenancy.models import TenantOwnedModel


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

    class Meta(TenantOwnedModel.Meta):
        db_table = "keys_apikey"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{SECRET_PREFIX}…{self.last4}"
