from __future__ import annotations

from celery import shared_task

from hearth_platform.redis_client import get_redis
from keys.last_used import api_key_last_used_flush


@shared_task(name="keys.tasks.flush_key_last_used", ignore_result=True)
def flush_key_last_used() -> dict[str, int]:
    """Beat runs this every ~10 s (CELERY_BEAT_SCHEDULE): the gateways' key touches into keys_apikey.last_used_at."""
    result = api_key_last_used_flush(client=get_redis())
    return {"read": result.num_read, "updated": result.num_updated, "invalid": result.num_invalid}
