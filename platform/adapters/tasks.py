from __future__ import annotations

from celery import shared_task


@shared_task(name="adapters.validate", ignore_result=True)
def adapter_validate_task(adapter_id: int) -> str:
    from adapters.services import adapter_validate

    return adapter_validate(adapter_id=adapter_id).status


@shared_task(name="adapters.requeue_pending", ignore_result=True)
def adapter_requeue_pending_task(older_than_s: float = 60.0) -> int:
    """Uploads whose validation was never queued (broker down at upload time) or whose task was lost stay `pending`;
    queue them again. Safe to overlap: validation only starts from `pending`, under a row lock."""
    from adapters.services import adapter_requeue_pending

    return adapter_requeue_pending(older_than_s=older_than_s)
