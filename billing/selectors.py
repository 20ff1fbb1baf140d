"""Reads for the usage API: from the hourly roll-ups, never the raw ledger (a 30-day query touches at most
720 rows per model and key)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDay

from accounts.models import Account
from billing.models import UsageRollup

GROUPS = ("day", "model", "key", "model_day")
_SUMS = {
    "num_requests": Sum("num_requests"),
    "prompt_tokens": Sum("prompt_tokens"),
    "cached_prompt_tokens": Sum("cached_prompt_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "cost_usd": Sum("cost_usd"),
}


def rollup_range(*, account: Account, start: datetime, end: datetime) -> QuerySet:
    return UsageRollup.objects.for_account(account).filter(hour__gte=start, hour__lt=end)


def usage_summary(*, account: Account, start: datetime, end: datetime, group_by: str) -> dict[str, Any]:
    rows = rollup_range(account=account, start=start, end=end)
    if group_by == "day":
        grouped = rows.annotate(day=TruncDay("hour")).values("day").annotate(**_SUMS).order_by("day")
    elif group_by == "model":
        grouped = (rows.values("base_model_id", "base_model__public_name").annotate(**_SUMS)
                   .order_by("base_model__public_name"))
    elif group_by == "model_day":  # the per-model daily chart
        grouped = (rows.annotate(day=TruncDay("hour")).values("day", "base_model_id", "base_model__public_name")
                   .annotate(**_SUMS).order_by("day", "base_model__public_name"))
    else:
        grouped = rows.values("api_key_id").annotate(**_SUMS).order_by("api_key_id")
    data = []
    for row in grouped:
        item: dict[str, Any]
        if group_by == "day":
            item = {"day": row["day"].date().isoformat()}
        elif group_by == "model":
            item = {"model": row["base_model__public_name"], "model_id": row["base_model_id"]}
        elif group_by == "model_day":
            item = {"day": row["day"].date().isoformat(), "model": row["base_model__public_name"],
                    "model_id": row["base_model_id"]}
        else:
            item = {"api_key_id": row["api_key_id"]}
        data.append(item | _amounts(row))
    total = rows.aggregate(**_SUMS)
    return {"data": data, "total": _amounts(total)}


def _amounts(row: dict[str, Any]) -> dict[str, Any]:
    cost = row["cost_usd"] if row["cost_usd"] is not None else Decimal(0)
    return {
        "num_requests": row["num_requests"] or 0,
        "prompt_tokens": row["prompt_tokens"] or 0,
        "cached_prompt_tokens": row["cached_prompt_tokens"] or 0,
        "completion_tokens": row["completion_tokens"] or 0,
        "cost_usd": format(cost.normalize(), "f") if cost else "0",
    }
