"""Writes of the forecasting app: the full metrics recompute, queuing one after a change, and quotas.

`recompute_metrics` writes a complete `MetricsRun` in ONE transaction: readers (who pick the latest complete
run) see the previous run until it commits, and a recompute that is killed or fails leaves no trace. A
transaction-level advisory lock makes a second concurrent recompute return at once instead of running twice.
"""

import logging
import threading
import time
from collections import deque
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from accounts.models import AuditAction, Team, User
from accounts.services import audited_values, record_audit
from forecasting import changes, metrics
from forecasting.models import MetricsRun, Quota, RunStatus
from forecasting.selectors import latest_run
from pipeline.webhooks.services import emit_metrics_recomputed

logger = logging.getLogger(__name__)

# pg_try_advisory_xact_lock key of the recompute: any constant that no other part of the app uses.
RECOMPUTE_LOCK_KEY = 4_242_001
PENDING_RECOMPUTE_CACHE_KEY = "metrics-recompute-pending"
PENDING_REFRESH_CACHE_KEY = "metrics-refresh-pending"


def recompute_metrics(*, as_of: datetime | None = None) -> MetricsRun | None:
    """Recompute every metric family from scratch into a new complete run; None if another recompute is running.

    `as_of` (default: the transaction time) is the "now" of the run: its computed_at, the end of the learned
    probabilities' lookback window, "today" for past due, the age of deals in their stage.
    Runs older than the newest `METRICS_KEEP_RUNS` complete ones are deleted when the new one completes.

    With `METRICS_CONNECTIONS` = 1 the whole run is one transaction. With more, the families run side by side on
    that many connections (PostgreSQL runs each INSERT … SELECT on one core), each unit committing on its own;
    the run is marked complete last, and readers only ever take complete runs, so they see the previous run until
    then, and a run that fails or is killed is never read (the next run prunes its rows).
    """
    if settings.METRICS_CONNECTIONS <= 1:
        return _recompute_in_one_transaction(as_of)
    return _recompute_on_connections(as_of, settings.METRICS_CONNECTIONS)


def _recompute_in_one_transaction(as_of: datetime | None) -> MetricsRun | None:
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s), now()", [RECOMPUTE_LOCK_KEY])
        acquired, now = cursor.fetchone()
        if not acquired:
            logger.info("metrics recompute skipped: another one is running")
            return None
        run, params = _start_run(as_of or now)
        consumed = _pending_change_ids(cursor)
        _tune_session(cursor)
        rows = _run_families(cursor, metrics.FAMILIES, params)
        _complete_run(cursor, run, rows=rows, started=started, consumed=consumed)
    logger.info("metrics recompute %s: %d rows in %.2f s", run.pk, rows, run.duration_seconds)
    return run


def _recompute_on_connections(as_of: datetime | None, workers: int) -> MetricsRun | None:
    started = time.monotonic()
    with connection.cursor() as cursor:
        # A session lock, held by this connection while the others work (a transaction lock would end with the
        # first commit). A killed process's connection closes, which releases it.
        cursor.execute("SELECT pg_try_advisory_lock(%s), now()", [RECOMPUTE_LOCK_KEY])
        acquired, now = cursor.fetchone()
    if not acquired:
        logger.info("metrics recompute skipped: another one is running")
        return None
    run = None
    try:
        # Committed before the units start: their rows reference it from other connections.
        run, params = _start_run(as_of or now)
        with connection.cursor() as cursor:
            consumed = _pending_change_ids(cursor)
        rows = _run_units_on_connections(metrics.UNITS, params, workers)
        with transaction.atomic(), connection.cursor() as cursor:
            _complete_run(cursor, run, rows=rows, started=started, consumed=consumed)
    except BaseException:
        if run is not None:
            _discard_run(run)
        raise
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [RECOMPUTE_LOCK_KEY])
    logger.info("metrics recompute %s: %d rows in %.2f s (%d connections)", run.pk, rows, run.duration_seconds, workers)
    return run


def _run_units_on_connections(units: list[tuple], params: dict[str, Any], workers: int) -> int:
    """Run the units on `workers` threads, each with its own connection; the first failure stops the rest."""
    pending = deque(units)
    lock = threading.Lock()
    written: list[int] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                with lock:
                    if failures or not pending:
                        return
                    unit = pending.popleft()
                with transaction.atomic(), connection.cursor() as cursor:
                    _tune_session(cursor)
                    rows = _run_families(cursor, unit, params)
                with lock:
                    written.append(rows)
        except BaseException as failure:  # noqa: BLE001 - re-raised by the caller's thread below
            with lock:
                failures.append(failure)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, name=f"metrics-{n}") for n in range(min(workers, len(units)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sum(written)


def _start_run(computed_at: datetime) -> tuple[MetricsRun, dict[str, Any]]:
    run = MetricsRun.objects.create(status=RunStatus.RUNNING, started_at=computed_at, computed_at=computed_at)
    return run, _params(run, computed_at, changes.UNSCOPED)


def _params(run: MetricsRun, computed_at: datetime, scope: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run.pk,
        "computed_at": computed_at,
        "tz": settings.TIME_ZONE,
        "prior_strength": settings.METRICS_PRIOR_STRENGTH,
        "lookback_days": settings.METRICS_LOOKBACK_DAYS,
        "period_kinds": metrics.ALL_PERIOD_KINDS,
        **scope,
    }


def _pending_change_ids(cursor) -> list[int]:
    """The changes a full recompute starting now includes: those committed before it reads anything."""
    cursor.execute("SELECT id FROM forecasting_pendingchange")
    return [row[0] for row in cursor.fetchall()]


def _tune_session(cursor) -> None:
    cursor.execute("SET LOCAL work_mem = %s", [settings.METRICS_WORK_MEM])
    # A handful of long queries: JIT compilation costs more than it saves at these sizes.
    cursor.execute("SET LOCAL jit = off")
    # A recompute stuck on a lock must not hold the advisory lock (and the last run's readers) forever.
    cursor.execute("SET LOCAL statement_timeout = %s", [settings.METRICS_STATEMENT_TIMEOUT])


def _run_families(cursor, families, params: dict[str, Any]) -> int:
    """Run the families in order; the number of snapshot rows they wrote into the run."""
    rows = 0
    for family in families:
        family_started = time.monotonic()
        written = family(cursor, params)
        rows += 0 if family in metrics.WRITES_OUTSIDE_THE_RUN else written
        logger.info("metrics %s: %d rows in %.2f s", family.__name__, written, time.monotonic() - family_started)
    return rows


def _complete_run(cursor, run: MetricsRun, *, rows: int, started: float, consumed: list[int]) -> None:
    _prune_old_runs(cursor, keep_after=run)
    # Changes committed after the run started stay pending: the next refresh takes them.
    cursor.execute("DELETE FROM forecasting_pendingchange WHERE id = ANY(%s)", [consumed])
    run.status = RunStatus.COMPLETE
    run.row_count = rows
    run.duration_seconds = time.monotonic() - started
    cursor.execute("SELECT clock_timestamp()")
    run.finished_at = cursor.fetchone()[0]
    run.save(update_fields=["status", "row_count", "duration_seconds", "finished_at"])
    # Inside the transaction: subscribers hear of the run only if it commits.
    emit_metrics_recomputed(computed_at=run.computed_at, full=True)


def _discard_run(run: MetricsRun) -> None:
    """Remove a failed run's partial rows now rather than at the next run's pruning."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM forecasting_metricsnapshot WHERE run_id = %s", [run.pk])
            cursor.execute("DELETE FROM forecasting_metricsrun WHERE id = %s", [run.pk])
    except Exception:  # the connection may be what failed: the next run's pruning removes them
        logger.warning("could not discard the failed metrics run %s", run.pk, exc_info=True)


def refresh_metrics(*, as_of: datetime | None = None) -> MetricsRun | None:
    """Bring the latest complete run up to date with the deals and activities changed since, in place.

    Takes the pending changes (forecasting.changes) and recomputes only the slices they touch: the periods holding
    each old and new close, expected close and creation date, the pipelines' funnels, the stages' times, the deals'
    staleness, plus past due, quotas and forecast accuracy whole (metrics.REFRESHED). One transaction, so readers
    see the run before or after. Learned probabilities and lead metrics wait for the next full recompute.
    Returns the run; None when a recompute holds the lock, or before any complete run exists (the caller then
    asks for a full one).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s), now()", [RECOMPUTE_LOCK_KEY])
        acquired, now = cursor.fetchone()
        if not acquired:
            return None
        run = latest_run()
        if run is None:
            return None
        cursor.execute(f"DELETE FROM forecasting_pendingchange RETURNING {changes.COLUMNS}")
        pending = cursor.fetchall()
        if not pending:
            return run
        started = time.monotonic()
        refreshed_at = as_of or now
        slices = changes.Slices.of(pending)
        params = _params(run, refreshed_at, slices.params())
        _tune_session(cursor)
        for family, metric, rows_in_scope in metrics.REFRESHED:
            if not slices.touches(metric):
                continue
            cursor.execute(
                f"DELETE FROM forecasting_metricsnapshot WHERE run_id = %(run_id)s AND metric = %(metric)s"
                f" AND {rows_in_scope}",
                {**params, "metric": metric},
            )
            deleted = cursor.rowcount
            written = family(cursor, params)
            run.row_count += written - deleted
        run.refreshed_at = refreshed_at
        run.save(update_fields=["refreshed_at", "row_count"])
        emit_metrics_recomputed(computed_at=refreshed_at, periods=slices.period_names(), full=False)
    logger.info("metrics run %s refreshed for %d changes in %.3f s", run.pk, len(pending), time.monotonic() - started)
    return run


def _prune_old_runs(cursor, *, keep_after: MetricsRun) -> None:
    """Delete all but the newest METRICS_KEEP_RUNS − 1 complete runs before `keep_after`, in raw SQL.

    (The ORM's cascade would load every snapshot row into Python first.)
    """
    keep = list(
        MetricsRun.objects.filter(status=RunStatus.COMPLETE)
        .exclude(pk=keep_after.pk)
        .order_by("-computed_at", "-id")
        .values_list("pk", flat=True)[: max(settings.METRICS_KEEP_RUNS - 1, 0)]
    )
    cursor.execute(
        "DELETE FROM forecasting_metricsnapshot WHERE run_id <> %s AND NOT (run_id = ANY(%s))", [keep_after.pk, keep]
    )
    cursor.execute("DELETE FROM forecasting_metricsrun WHERE id <> %s AND NOT (id = ANY(%s))", [keep_after.pk, keep])


def request_recompute() -> bool:
    """Queue one debounced full recompute unless one is already pending; True if this call queued it.

    Called after a committed change that a refresh does not cover (leads, quotas, imports). A Redis key set with
    NX marks the pending recompute (the task clears it when it starts, so changes made during a run queue the
    next one). Redis or the broker being away is logged and swallowed: a write must never fail because metrics
    cannot be refreshed; the scheduled recompute catches up.
    """
    from forecasting.tasks import recompute_metrics_task

    return _queue_once(
        recompute_metrics_task,
        mark=PENDING_RECOMPUTE_CACHE_KEY,
        countdown=settings.METRICS_DEBOUNCE_SECONDS,
        # Like the scheduled one: after an outage, a stale queued recompute is dropped, not run late.
        lifetime=settings.METRICS_RECOMPUTE_SECONDS * 1.5,
        what="metrics recompute",
    )


def request_refresh() -> bool:
    """Queue one incremental refresh (`refresh_metrics`) unless one is already pending; True if this call queued it.

    Called after a committed change to a deal or an activity, with METRICS_REFRESH_DELAY_SECONDS of delay (0 by
    default: a refresh of a few deals takes a fraction of a second). The changes themselves wait in PostgreSQL
    (forecasting.changes), so with Redis away nothing is lost: the scheduled refresh takes them.
    """
    from forecasting.tasks import refresh_metrics_task

    return _queue_once(
        refresh_metrics_task,
        mark=PENDING_REFRESH_CACHE_KEY,
        countdown=settings.METRICS_REFRESH_DELAY_SECONDS,
        lifetime=settings.METRICS_REFRESH_SECONDS * 1.5,
        what="metrics refresh",
    )


def _queue_once(task, *, mark: str, countdown: float, lifetime: float, what: str) -> bool:
    try:
        if not cache.add(mark, 1, timeout=countdown + lifetime):
            return False
    except Exception:  # any cache failure: log it, keep the write
        logger.warning("could not mark a pending %s; the scheduled one will catch up", what, exc_info=True)
        return False
    try:
        task.apply_async(kwargs={"reason": "change"}, countdown=countdown, expires=countdown + lifetime, retry=False)
    except Exception:  # any broker failure: log it, keep the write, and let the next change try again
        logger.warning("could not queue a %s; the scheduled one will catch up", what, exc_info=True)
        _clear_mark(mark, what)
        return False
    return True


def clear_pending_recompute() -> None:
    """Forget the pending mark, so that the next change queues a new recompute."""
    _clear_mark(PENDING_RECOMPUTE_CACHE_KEY, "metrics recompute")


def clear_pending_refresh() -> None:
    """Forget the pending mark, so that the next change queues a new refresh."""
    _clear_mark(PENDING_REFRESH_CACHE_KEY, "metrics refresh")


def _clear_mark(mark: str, what: str) -> None:
    try:
        cache.delete(mark)
    except Exception:  # the mark expires on its own
        logger.warning("could not clear the pending %s mark", what, exc_info=True)


# --- Quotas -------------------------------------------------------------------------------------------------------

QUOTA_EDITABLE_FIELDS = ("user", "team", "period_start", "period_end", "amount")


def _validate_quota(quota: Quota) -> None:
    """Per-field messages for a quota that breaks a rule (the database constraints say the same, less kindly)."""
    errors: dict[str, list[str]] = {}
    if (quota.user_id is None) == (quota.team_id is None):
        message = "Give exactly one of user and team."
        errors["user"] = [message]
        errors["team"] = [message]
    if quota.amount is None or quota.amount < 0:
        errors["amount"] = ["The amount must be zero or more."]
    if quota.period_start and quota.period_end and quota.period_end <= quota.period_start:
        errors["period_end"] = ["The end must be after the start (it is the first day after the period)."]
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def create_quota(
    *,
    actor: User | None,
    period_start: date,
    period_end: date,
    amount: Decimal,
    user: User | None = None,
    team: Team | None = None,
) -> Quota:
    """Set a sales target for one user or one team over [period_start, period_end).

    Its attainment, coverage and deals needed appear with the next recompute, which this queues once committed.
    """
    quota = Quota(user=user, team=team, period_start=period_start, period_end=period_end, amount=amount)
    _validate_quota(quota)
    quota.save()
    record_audit(actor=actor, instance=quota, action=AuditAction.CREATED)
    transaction.on_commit(request_recompute)
    return quota


@transaction.atomic
def update_quota(*, quota: Quota, actor: User | None, **fields: Any) -> Quota:
    """Change a quota's holder, period or amount; the rules of `create_quota` apply to the result."""
    unknown = sorted(set(fields) - set(QUOTA_EDITABLE_FIELDS))
    if unknown:
        raise ValidationError({name: ["This field cannot be set here."] for name in unknown})
    before = audited_values(quota)
    for name, value in fields.items():
        setattr(quota, name, value)
    _validate_quota(quota)
    if audited_values(quota) != before:
        quota.save()
        record_audit(actor=actor, instance=quota, action=AuditAction.UPDATED, before=before)
        transaction.on_commit(request_recompute)
    return quota


@transaction.atomic
def delete_quota(*, quota: Quota, actor: User | None) -> None:
    """Remove a quota; its metrics disappear with the next recompute, which this queues once committed."""
    record_audit(actor=actor, instance=quota, action=AuditAction.DELETED)
    quota.delete()
    transaction.on_commit(request_recompute)
