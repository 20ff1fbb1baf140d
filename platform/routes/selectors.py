from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from accounts.models import Account
from routes.models import Route, RouteVariant


def route_list(*, account: Account) -> QuerySet[Route]:
    variants = RouteVariant.objects.for_account(account).select_related("base_model", "adapter", "adapter__account")
    return (Route.objects.for_account(account).select_related("account")
            .prefetch_related(Prefetch("variants", queryset=variants)).order_by("name", "id"))
