# Load the Celery app with Django, so `task.delay()` in the control plane uses the configured broker (Redis), not
# Celery's default one.
from .celery import app as celery_app

__all__ = ["celery_app"]
