"""The Celery app. Workers and beat load Django settings from DJANGO_SETTINGS_MODULE like the web server."""

import os

from celery import Celery
from django.utils import timezone

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

HEARTBEAT_CACHE_KEY = "worker-heartbeat"


@app.task(name="config.celery.heartbeat", ignore_result=False)
def heartbeat() -> str:
    """Record that a worker is alive and consuming; `/healthz` reports the age of the last beat."""
    from django.core.cache import cache

    beat_at = timezone.now().isoformat()
    cache.set(HEARTBEAT_CACHE_KEY, beat_at, timeout=None)
    return beat_at
