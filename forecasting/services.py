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

from accounts.models import Team, User
from forecasting import metrics
from forecasting.models import MetricsRun, Quota, RunStatus
from pipeline.models import AuditAction
from pipeline.services import audited_values, record_audit
from pipeline.webhooks.services import emit_metrics_recomputed

logger = logging.getLogger(__name__)

# pg_try_advisory_xact_lock key of the recompute: any constant that no other part of the app uses.
RECOMPUTE_LOCK_KEY = 4_242_001
PENDING_RECOMPUTE_CACHE_KEY = "metrics-recompute-pending"


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
        _tune_session(cursor)
        rows = _run_families(cursor, metrics.FAMILIES, params)
        _complete_run(cursor, run, rows=rows, started=started)
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
        rows = _run_units_on_connections(metrics.UNITS, params, workers)
        with transaction.atomic(), connection.cursor() as cursor:
            _complete_run(cursor, run, rows=rows, started=started)
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
    params = {
        "run_id": run.pk,
        "computed_at": computed_at,
        "tz": settings.TIME_ZONE,
        "prior_strength": settings.METRICS_PRIOR_STRENGTH,
        "lookback_days": settings.METRICS_LOOKBACK_DAYS,
    }
    return run, params


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


def _complete_run(cursor, run: MetricsRun, *, rows: int, started: float) -> None:
    _prune_old_runs(cursor, keep_after=run)
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
    """Queue one debounced recompute unless one is already pending; True if this call queued it.

    Called after a committed change. A Redis key set with NX marks the pending recompute (the task clears it
    when it starts, so changes made during a run queue the next one). Redis or the broker being away is logged
    and swallowed: a write must never fail because metrics cannot be refreshed; the scheduled recompute
    catches up.
    """
    from forecasting.tasks import recompute_metrics_task

    countdown = settings.METRICS_DEBOUNCE_SECONDS
    try:
        if not cache.add(PENDING_RECOMPUTE_CACHE_KEY, 1, timeout=countdown + settings.METRICS_RECOMPUTE_SECONDS):
            return False
    except Exception:  # any cache failure: log it, keep the write
        logger.warning("could not mark a pending metrics recompute; the scheduled one will catch up", exc_info=True)
        return False
    try:
        recompute_metrics_task.apply_async(
            kwargs={"reason": "change"},
            countdown=countdown,
            # Like the scheduled one: after an outage, a stale queued recompute is dropped, not run late.
            expires=countdown + settings.METRICS_RECOMPUTE_SECONDS * 1.5,
            retry=False,
        )
    except Exception:  # any broker failure: log it, keep the write, and let the next change try again
        logger.warning("could not queue a metrics recompute; the scheduled one will catch up", exc_info=True)
        clear_pending_recompute()
        return False
    return True


def clear_pending_recompute() -> None:
    """Forget the pending mark, so that the next change queues a new recompute."""
    try:
        cache.delete(PENDING_RECOMPUTE_CACHE_KEY)
    except Exception:  # the mark expires on its own
        logger.warning("could not clear the pending metrics recompute mark", exc_info=True)


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
