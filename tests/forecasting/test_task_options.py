"""The metrics tasks' Celery options (forecasting.tasks): each is redelivered when its worker dies mid-run, retried
with backoff while the database is unreachable, and keeps its result (the dashboard follows a queued recompute)."""

import pytest
from django.db import OperationalError

from forecasting import tasks


@pytest.mark.parametrize(
    ("task", "name", "backoff_max"),
    [
        (tasks.recompute_metrics_task, "forecasting.recompute_metrics", 300),
        (tasks.recompute_history_metrics_task, "forecasting.recompute_history_metrics", 300),
        (tasks.refresh_metrics_task, "forecasting.refresh_metrics", 60),
        (tasks.warm_forecast_trend_task, "forecasting.warm_forecast_trend", 60),
    ],
)
def test_each_metrics_task_is_redelivered_retried_while_the_database_is_away_and_keeps_its_result(
    task, name, backoff_max
):
    assert task.name == name
    assert (task.acks_late, task.autoretry_for, task.retry_backoff) == (True, (OperationalError,), True)
    assert (task.retry_backoff_max, task.max_retries, task.ignore_result) == (backoff_max, 5, False)
