"""Celery entry points of the metrics engine: thin, idempotent, calling `forecasting.services`."""

import logging
from collections.abc import Callable

from celery import shared_task
from django.db import OperationalError

from forecasting import services
from forecasting.selectors import latest_run

logger = logging.getLogger(__name__)


def metrics_task(name: str, *, retry_backoff_max: int) -> Callable:
    """The decorator of a metrics task named `name`: acknowledged when done, so that a task whose worker died
    mid-run is redelivered; retried with backoff (at most `retry_backoff_max` seconds apart, five times) while the
    database is unreachable; its result kept, since the dashboard follows a queued recompute to its end."""
    return shared_task(
        name=name,
        acks_late=True,
        autoretry_for=(OperationalError,),
        retry_backoff=True,
        retry_backoff_max=retry_backoff_max,
        max_retries=5,
        ignore_result=False,
    )


@metrics_task("forecasting.recompute_metrics", retry_backoff_max=300)
def recompute_metrics_task(reason: str = "schedule") -> int | None:
    """Recompute every metric; returns the new run's id, or None when another recompute was running.

    Idempotent: running it twice only produces a fresher run. A recompute queued by a change (`reason="change"`)
    that finds another one running asks for a new one, since the running one may have started before the change;
    so does any recompute thrown away because the configuration changed while it ran.
    """
    if reason == "change":
        services.clear_pending_recompute()
    run = services.recompute_metrics()
    if run is None:
        if reason == "change" or not services.configuration_is_current():
            services.request_recompute()
        return None
    services.request_trend_warm()
    if not services.has_history_metrics(run):
        services.request_history_metrics()
    return run.pk


@metrics_task("forecasting.recompute_history_metrics", retry_backoff_max=300)
def recompute_history_metrics_task(reason: str = "schedule") -> int | None:
    """The backtest and calibration of the latest run; returns its id, or None when it could not run now.

    Idempotent: it rewrites the run's rows of those families. It does not ask for itself again when it could not
    run: another computation of them is then running (and gives its rows to newer runs), or there is no run yet, or
    the configuration changed (the recompute that follows asks for it when its run has none; the schedule anyway).
    Asking again at once would queue it over and over for the minutes the other one runs.
    """
    services.clear_pending_history_metrics()
    run = services.recompute_history_metrics()
    return None if run is None else run.pk


@metrics_task("forecasting.refresh_metrics", retry_backoff_max=60)
def refresh_metrics_task(reason: str = "schedule") -> int | None:
    """Bring the latest run up to date with the changed deals; returns its id, or None when it could not yet.

    Idempotent: the pending changes are consumed in the refresh's transaction. Before any complete run, a full
    recompute is asked for instead, and so it is when the configuration changed since the latest run (the changes
    stay pending for it); while a full recompute runs, the refresh is asked for again after it (the changes the
    recompute did not see stay pending).
    """
    if reason == "change":
        services.clear_pending_refresh()
    run = services.refresh_metrics()
    if run is None:
        if latest_run() is None or not services.configuration_is_current():
            services.request_recompute()
        else:
            services.request_refresh()
        return None
    services.request_trend_warm()
    return run.pk


@metrics_task("forecasting.warm_forecast_trend", retry_backoff_max=60)
def warm_forecast_trend_task(reason: str = "change") -> dict[str, int]:
    """Keep the forecast trend's past points of the current month and quarter (`services.warm_forecast_trend`),
    so that the first reader after a recompute does not walk the deal history. Idempotent."""
    services.clear_pending_trend_warm()
    return services.warm_forecast_trend()
