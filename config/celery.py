"""The Celery app. Workers and beat load Django settings from DJANGO_SETTINGS_MODULE like the web server."""

import os

from celery import Celery
from django.utils import timezone

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

HEARTBEAT_CACHE_KEY = "worker-heartbeat"

# A scheduled run still waiting in the queue this many intervals after it was due is dropped (PostHog's
# `add_periodic_task_with_expiry`): after an outage one fresh run is worth more than a backlog of stale ones.
SCHEDULE_EXPIRY_INTERVALS = 1.5


def scheduled(task: str, *, every_seconds: float, kwargs: dict | None = None) -> dict:
    """A `CELERY_BEAT_SCHEDULE` entry running `task` every `every_seconds`, expiring 1.5 intervals after it is due.

    Every entry of the schedule is made here, so that none can forget its expiry.
    """
    entry = {
        "task": task,
        "schedule": every_seconds,
        "options": {"expires": every_seconds * SCHEDULE_EXPIRY_INTERVALS},
    }
    if kwargs:
        entry["kwargs"] = kwargs
    return entry


@app.task(name="config.celery.heartbeat", ignore_result=False)
def heartbeat() -> str:
    """Record that a worker is alive and consuming; `/healthz` reports the age of the last beat."""
    from django.core.cache import cache

    beat_at = timezone.now().isoformat()
    cache.set(HEARTBEAT_CACHE_KEY, beat_at, timeout=None)
    return beat_at
