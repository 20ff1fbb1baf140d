"""Celery tasks: one ingest batch (for deployments that drive ingest from beat instead of `billing_ingest`), the
Redis rebuild, and the monthly period job."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from celery import shared_task

from billing.ingest import UsageConsumer
from billing.spend import spend_sync
from hearth_platform.redis_client import get_redis


@shared_task(name="billing.ingest_usage_batch")
def ingest_usage_batch(batch_size: int = 1000) -> dict[str, int]:
    result = UsageConsumer(get_redis(), consumer="celery", batch_size=batch_size).step(block=False)
    return {"read": result.num_read, "inserted": result.num_inserted, "duplicates": result.num_duplicates,
            "dead": result.num_dead}


@shared_task(name="billing.spend_sync")
def spend_sync_task() -> int:
    return spend_sync(get_redis())


@shared_task(name="billing.close_period")
def close_period(period: str | None = None) -> list[int]:
    """Invoices the given month (YYYY-MM-01), by default the one that just ended. Safe to re-run."""
    from billing import conf
    from billing.stripe_billing import period_close

    if conf.ledger_only():
        return []
    month = date.fromisoformat(period) if period else (datetime.now(UTC).date().replace(day=1) - timedelta(days=1))
    return [invoice.pk for invoice in period_close(period=month)]
