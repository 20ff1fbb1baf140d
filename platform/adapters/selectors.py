from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Account
from adapters.models import Adapter


def adapter_list(*, account: Account) -> QuerySet[Adapter]:
    return Adapter.objects.for_account(account).select_related("account", "base_model").order_by("-created_at", "-id")


def adapter_get_by_name(*, account: Account, name: str) -> Adapter | None:
    return adapter_list(account=account).filter(name=name).first()
