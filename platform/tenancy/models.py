"""Tenant scope that fails closed.

Every tenant-owned model inherits `TenantOwnedModel`. Its `objects` manager refuses to build a queryset until it is
told which account it acts for (`objects.for_account(account)`), so an unscoped `ApiKey.objects.filter(...)` raises
instead of silently reading every tenant's rows. Django's own machinery (admin, related managers, serializers' unique
checks) uses the default manager, which is deliberately named `dangerously_unscoped` so each use stands out in review.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from django.db import models

if TYPE_CHECKING:
    from accounts.models import Account


class UnscopedQueryError(RuntimeError):
    """Raised when tenant-owned rows are queried without naming the account they belong to."""


class TenantQuerySet(models.QuerySet):
    def for_account(self, account: Account) -> Self:
        if account is None or account.pk is None:
            raise UnscopedQueryError("for_account() needs a saved Account; refusing to run an unscoped query")
        return self.filter(account=account)


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> TenantQuerySet:
        raise UnscopedQueryError(
            f"{self.model.__name__}.objects must be scoped: use .for_account(account) "
            f"(or, knowingly, {self.model.__name__}.dangerously_unscoped)"
        )

    def for_account(self, account: Account) -> TenantQuerySet:
        return super().get_queryset().for_account(account)


class TenantOwnedModel(models.Model):
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+")

    # Declared first, so it is Django's default manager (admin, related lookups, unique validators).
    dangerously_unscoped: Any = TenantQuerySet.as_manager()
    objects: Any = TenantManager()

    class Meta:
        abstract = True
        default_manager_name = "dangerously_unscoped"
