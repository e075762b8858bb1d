"""A Celery task through a real worker process on the real broker (no eager mode anywhere in the suite)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import cache

from config.celery import HEARTBEAT_CACHE_KEY, heartbeat

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def celery_worker_process():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield worker
    worker.terminate()
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()


@pytest.mark.slow
def test_heartbeat_runs_in_a_real_worker_and_is_visible_to_the_web_tier(celery_worker_process):
    cache.delete(HEARTBEAT_CACHE_KEY)
    started = time.monotonic()

    result = heartbeat.delay()
    beat_at = result.get(timeout=60)

    assert celery_worker_process.poll() is None, celery_worker_process.stdout.read()
    assert cache.get(HEARTBEAT_CACHE_KEY) == beat_at
    assert time.monotonic() - started < 60
