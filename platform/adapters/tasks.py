from __future__ import annotations

from celery import shared_task


@shared_task(name="adapters.validate", ignore_result=True)
def adapter_validate_task(adapter_id: int) -> str:
    from adapters.services import adapter_validate

    return adapter_validate(adapter_id=adapter_id).status
