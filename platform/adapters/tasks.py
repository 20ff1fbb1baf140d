from __future__ import annotations

from celery import shared_task

from adapters import conf

# Soft limit: SoftTimeLimitExceeded inside the task, which fails the adapter with a reason. Hard limit: the pool kills
# the child; the adapter stays `validating` and the requeue sweep retries it (up to conf.max_validation_attempts()).
_SOFT_LIMIT_S = conf.validation_time_limit_s()


@shared_task(name="adapters.validate", ignore_result=True, soft_time_limit=_SOFT_LIMIT_S,
             time_limit=_SOFT_LIMIT_S + 30)
def adapter_validate_task(adapter_id: int) -> str:
    from adapters.services import adapter_validate

    adapter = adapter_validate(adapter_id=adapter_id)
    return adapter.status if adapter is not None else "deleted"


@shared_task(name="adapters.requeue_pending", ignore_result=True)
def adapter_requeue_pending_task(older_than_s: float = 60.0) -> int:
    """Uploads whose validation was never queued (broker down at upload time) or whose task was lost stay `pending`,
    and those whose task died mid-way stay `validating`; queue them again. Safe to overlap: validation only starts
    from `pending`, under a row lock."""
    from adapters.services import adapter_requeue_pending

    return adapter_requeue_pending(older_than_s=older_than_s)
