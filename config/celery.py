"""The Celery app. Workers and beat load Django settings from DJANGO_SETTINGS_MODULE like the web server."""

import os

from celery import Celery
from django.utils import timezone
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

HEARTBEAT_CACHE_KEY = "worker-heartbeat"

# A scheduled run still waiting in the queue this many intervals after it was due is dropped (PostHog's
# `add_periodic_task_with_expiry`): after an outage one fresh run is worth more than a backlog of stale ones.
SCHEDULE_EXPIRY_INTERVALS = 1.5


# Queues (SPEC §5): a full recompute takes minutes on a large company and an import as long, so they have queues of
# their own; the refresh after a change, webhook deliveries and the heartbeat are short and must never wait behind
# them. Tasks are routed by name (CELERY_TASK_ROUTES); anything unrouted goes to the default queue.
DEFAULT_QUEUE = "celery"
TASK_ROUTES = {
    "forecasting.recompute_metrics": {"queue": "recompute"},
    # Minutes on a million deals, daily: one of the long workers' slots (LONG_WORKER_CONCURRENCY, 2 by default).
    "forecasting.recompute_history_metrics": {"queue": "recompute"},
    "forecasting.refresh_metrics": {"queue": "refresh"},
    "pipeline.webhooks.*": {"queue": "webhooks"},
    "pipeline.run_import_job": {"queue": "imports"},
}
# The workers of a deploy (docker-compose.yml): one group for the long tasks, one for the short ones.
WORKER_GROUPS = {"long": ("recompute", "imports"), "short": (DEFAULT_QUEUE, "refresh", "webhooks")}
QUEUES = tuple(name for group in WORKER_GROUPS.values() for name in group)


def task_queues() -> list[Queue]:
    """Every queue, for `CELERY_TASK_QUEUES`: a worker started without `-Q` (`make run`, the tests, a one-host
    deploy) consumes them all; a worker of a group is started with `-Q` and its group's queues."""
    return [Queue(name) for name in QUEUES]


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
