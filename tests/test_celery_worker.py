"""A Celery task through a real worker process on the real broker (no eager mode anywhere in the suite)."""

import time

import pytest
from django.core.cache import cache

from config.celery import HEARTBEAT_CACHE_KEY, heartbeat


@pytest.mark.slow
def test_heartbeat_runs_in_a_real_worker_and_is_visible_to_the_web_tier(start_celery_worker):
    worker = start_celery_worker()
    cache.delete(HEARTBEAT_CACHE_KEY)
    started = time.monotonic()

    result = heartbeat.delay()
    beat_at = result.get(timeout=60)

    assert worker.alive(), worker.log()
    assert cache.get(HEARTBEAT_CACHE_KEY) == beat_at
    assert time.monotonic() - started < 60
