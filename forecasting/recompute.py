"""The recompute engine: runs the metric families (`forecasting.metrics`) into a `MetricsRun`, and keeps the run whole.

A full recompute writes a new run, either in ONE transaction (readers, who pick the latest complete run, see the
previous run until it commits, and a recompute that is killed or fails leaves no trace) or on several connections
(the families side by side in units, the run marked complete last, a failed run discarded); either way it reads the
deals and the queue of pending changes in one snapshot. An incremental refresh rewrites, in one transaction, the
slices of the latest complete run that pending changes touch, or patches them with the changes' differences. An
advisory lock makes a second concurrent recompute or refresh return at once instead of running twice.

No run mixes two configurations (`forecasting.configuration`): a run records the fingerprint of the configuration it
starts with, and a recompute or refresh that finds another one at its end (a stage's probability, a team, a quota
changed meanwhile) is rolled back or discarded and raises `ConfigurationChanged`; a refresh of a run computed with
another configuration does not start (its pending changes stay for the full recompute that replaces it).

Every family (and part of one) logs `metrics <name>: <rows> rows in <seconds> s`; the bench (config/bench/harness.py)
reads the seconds of each family from the worker's log in that form.
"""

import dataclasses
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.utils import CursorWrapper

from forecasting import changes, configuration, metrics
from forecasting.configuration import ConfigurationChanged
from forecasting.metrics import Family, MetricParams
from forecasting.models import MetricsRun, RunStatus
from forecasting.selectors import latest_run
from pipeline.webhooks.services import emit_metrics_recomputed

logger = logging.getLogger(__name__)

# pg_try_advisory_(xact_)lock key of the recompute and the refresh: any constant that no other part of the app uses.
RECOMPUTE_LOCK_KEY = 4_242_001


def part(family: Family, name: str, *, period_kinds: tuple[str, ...] | None = None, **kwargs) -> Family:
    """A part of a family, for a recompute on several connections: the same SQL over some period kinds, or (the
    family's own keyword arguments) some groups."""

    def run_part(cursor: CursorWrapper, params: MetricParams) -> int:
        if period_kinds is not None:
            params = dataclasses.replace(params, period_kinds=period_kinds)
        return family(cursor, params, **kwargs)

    run_part.__name__ = f"{family.__name__}[{name}]"
    run_part.family = family
    return run_part


def carry_history_rows(cursor: CursorWrapper, params: MetricParams) -> int:
    """The history families' rows of the newest other complete run, copied into the run of `params`
    (`_carry_history_rows`): on several connections a unit of its own, beside the families, rather than a serial
    step at the run's end. A history computation that commits later waits for the recompute lock, then rewrites them
    in this run too."""
    return _carry_history_rows(cursor, params.run_id)


# The families as units of work for a recompute on several connections (METRICS_CONNECTIONS): a unit runs in order
# on one connection (forecast reads learned_probability's rows; the snapshots and accuracy read forecast's; the
# stale totals add up stale_deals' rows), and units are independent of each other. Two of the longest families are
# cut in parts (by period kind, or by group), so that the connections finish together; longest first, as measured on
# a million deals, so that the short ones fill in at the end. (The funnel is one unit: its quarters, years and all
# time add up its months.)
UNITS: list[tuple[Family, ...]] = [
    (metrics.funnel,),
    (part(metrics.stage_time, "company, team, owner", groups=["owner", "team"]),),
    (part(metrics.stage_time, "source", groups=["source"], company=False),),
    (metrics.learned_probability, metrics.forecast, metrics.forecast_snapshots, metrics.forecast_accuracy),
    (part(metrics.deal_outcomes, "month", period_kinds=("month",)),),
    (part(metrics.deal_outcomes, "quarter", period_kinds=("quarter",)),),
    (part(metrics.deal_outcomes, "year", period_kinds=("year",)),),
    (metrics.leads,),
    (carry_history_rows,),
    (metrics.stale_deals, metrics.stale_totals),
    (metrics.quota_attainment,),
    (metrics.past_due,),
]


# --- A full recompute ---------------------------------------------------------------------------------------------


def recompute_in_one_transaction(*, as_of: datetime | None) -> MetricsRun | None:
    """Every family, in order, into a new run committed whole; None if another recompute holds the lock."""
    started = time.monotonic()
    outermost = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost:
            _consistent_snapshot(cursor)
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s), now()", [RECOMPUTE_LOCK_KEY])
        acquired, now = cursor.fetchone()
        if not acquired:
            logger.info("metrics recompute skipped: another one is running")
            return None
        run, params = _start_run(as_of or now)
        consumed = _pending_change_runs(cursor)
        _tune_session(cursor)
        rows = _run_families(cursor, metrics.FAMILIES, params)
        _complete_run(cursor, run, rows=rows, started=started, consumed=consumed, elsewhere=outermost)
    logger.info("metrics recompute %s: %d rows in %.2f s", run.pk, rows, run.duration_seconds)
    return run


def recompute_on_connections(*, as_of: datetime | None, workers: int) -> MetricsRun | None:
    """The `UNITS` on `workers` connections, each unit committing on its own, the run marked complete last (readers
    never take an incomplete run); a run that fails is discarded. None if another recompute holds the lock."""
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
        # Held open while the units run: they read the deals in the snapshot this reads the queue in.
        with transaction.atomic(), connection.cursor() as cursor:
            snapshot = _consistent_snapshot(cursor, export=True)
            consumed = _pending_change_runs(cursor)
            rows = _run_units_on_connections(UNITS, params, workers, snapshot=snapshot)
        with transaction.atomic(), connection.cursor() as cursor:
            _complete_run(cursor, run, rows=rows, started=started, consumed=consumed, carried=True)
    except BaseException:
        if run is not None:
            _discard_run(run)
        raise
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [RECOMPUTE_LOCK_KEY])
    logger.info("metrics recompute %s: %d rows in %.2f s (%d connections)", run.pk, rows, run.duration_seconds, workers)
    return run


def _run_units_on_connections(
    units: list[tuple[Family, ...]], params: MetricParams, workers: int, *, snapshot: str
) -> int:
    """Run the units on `workers` threads, each with its own connection and in the exported `snapshot`; the first
    failure stops the rest."""
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
                    _consistent_snapshot(cursor, imported=snapshot)
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


def _start_run(computed_at: datetime) -> tuple[MetricsRun, MetricParams]:
    params = MetricParams.of_run(run_id=0, computed_at=computed_at)
    with connection.cursor() as cursor:
        fingerprint = configuration.fingerprint(cursor, params)
    run = MetricsRun.objects.create(
        status=RunStatus.RUNNING, started_at=computed_at, computed_at=computed_at, config_fingerprint=fingerprint
    )
    return run, dataclasses.replace(params, run_id=run.pk)


def _refuse_another_configuration(cursor: CursorWrapper, run: MetricsRun, *, elsewhere: bool = False) -> None:
    """Raise `ConfigurationChanged` unless the configuration is still the one `run` was computed with.

    Called last, after every family ran: a family that read a newer configuration (each statement sees what was
    committed when it started) implies that this later statement sees it too. `elsewhere`: read on a connection of
    its own, since `cursor`'s transaction reads one snapshot (`_consistent_snapshot`) and sees no later change.
    """
    if elsewhere:
        other = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            with other.cursor() as other_cursor:
                current = configuration.current_fingerprint(other_cursor)
        finally:
            other.close()
    else:
        current = configuration.current_fingerprint(cursor)
    if current != run.config_fingerprint:
        raise ConfigurationChanged(f"the configuration changed since metrics run {run.pk} started")


def _consistent_snapshot(cursor: CursorWrapper, *, export: bool = False, imported: str | None = None) -> str | None:
    """Make the transaction of `cursor` (which must not have run a statement yet) read one snapshot throughout, the
    one `imported` names if given; with `export`, return its name for other connections.

    A full recompute reads the queue of pending changes and the deals in one snapshot, so that its run holds exactly
    the changes it takes off the queue: a refresh adds the others to the forecast as differences
    (`metrics.forecast_differences`), and a change counted by the run and left on the queue would count twice.
    """
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    if imported is not None:
        if not SNAPSHOT_NAME.fullmatch(imported):
            raise ValueError(f"not a snapshot name: {imported!r}")
        cursor.execute(f"SET TRANSACTION SNAPSHOT '{imported}'")
    if not export:
        return None
    cursor.execute("SELECT pg_export_snapshot()")
    return cursor.fetchone()[0]


SNAPSHOT_NAME = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")


def _pending_change_runs(cursor: CursorWrapper) -> list[tuple[int, int]]:
    """The changes a full recompute or a refresh starting now includes (those committed before it reads anything), as
    the runs of consecutive ids `(first, last)`.

    The ids come from one sequence, so a queue of a million changes is a handful of runs (a gap is a rolled-back or
    still uncommitted writer's id): the recompute's memory does not grow with the queue, and a change committed
    later inside a gap is not taken.
    """
    cursor.execute(
        """
        SELECT min(id), max(id)
        FROM (SELECT id, id - row_number() OVER (ORDER BY id) AS run FROM forecasting_pendingchange) AS ids
        GROUP BY run ORDER BY 1
        """
    )
    return [(first, last) for first, last in cursor.fetchall()]


def _delete_pending_changes(cursor: CursorWrapper, taken: list[tuple[int, int]]) -> None:
    """Delete the pending changes of the runs of ids `taken` (`_pending_change_runs`), and no change committed since."""
    cursor.execute(
        "DELETE FROM forecasting_pendingchange USING unnest(%s::bigint[], %s::bigint[]) AS taken (first, last)"
        " WHERE id BETWEEN taken.first AND taken.last",
        [[first for first, _ in taken], [last for _, last in taken]],
    )


def _tune_session(cursor: CursorWrapper) -> None:
    cursor.execute("SET LOCAL work_mem = %s", [settings.METRICS_WORK_MEM])
    # A handful of long queries: JIT compilation costs more than it saves at these sizes.
    cursor.execute("SET LOCAL jit = off")
    # A recompute stuck on a lock must not hold the advisory lock (and the last run's readers) forever.
    cursor.execute("SET LOCAL statement_timeout = %s", [settings.METRICS_STATEMENT_TIMEOUT])


def _run_families(cursor: CursorWrapper, families: Iterable[Family], params: MetricParams) -> int:
    """Run the families in order, logging each one's rows and seconds; the number of snapshot rows written into the
    run."""
    rows = 0
    for family in families:
        family_started = time.monotonic()
        written = family(cursor, params)
        rows += 0 if family in metrics.WRITES_OUTSIDE_THE_RUN else written
        logger.info("metrics %s: %d rows in %.2f s", family.__name__, written, time.monotonic() - family_started)
    return rows


def _complete_run(
    cursor: CursorWrapper,
    run: MetricsRun,
    *,
    rows: int,
    started: float,
    consumed: list[tuple[int, int]],
    elsewhere: bool = False,
    carried: bool = False,
) -> None:
    """Mark `run` complete (after the configuration check), prune the older runs and take its pending changes;
    `carried`: a unit copied the history families' rows already (`carry_history_rows`, counted in `rows`)."""
    _refuse_another_configuration(cursor, run, elsewhere=elsewhere)
    if not carried:
        # Before the pruning, which may take the previous run: its history families' rows go on in this one.
        rows += _carry_history_rows(cursor, run.pk)
    _prune_old_runs(cursor, keep_after=run)
    # Changes committed after the run started stay pending: the next refresh takes them.
    _delete_pending_changes(cursor, consumed)
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


def _prune_old_runs(cursor: CursorWrapper, *, keep_after: MetricsRun) -> None:
    """Delete all but the newest METRICS_KEEP_RUNS − 1 complete runs before `keep_after`, in raw SQL.

    (The ORM's cascade would load every snapshot row into Python first.)
    """
    keep = list(
        MetricsRun.objects.filter(status=RunStatus.COMPLETE)
        .exclude(pk=keep_after.pk)
        .order_by("-computed_at", "-id")
        .values_list("pk", flat=True)[: max(settings.METRICS_KEEP_RUNS - 1, 0)]
    )
    # A run whose history families are being computed (`recompute_history_of_latest_run` holds it) waits for the
    # next pruning: its rows are locked by that transaction.
    cursor.execute(
        "SELECT id FROM forecasting_metricsrun WHERE id <> %s AND NOT (id = ANY(%s)) FOR UPDATE SKIP LOCKED",
        [keep_after.pk, keep],
    )
    doomed = [run_id for (run_id,) in cursor.fetchall()]
    cursor.execute("DELETE FROM forecasting_metricsnapshot WHERE run_id = ANY(%s)", [doomed])
    cursor.execute("DELETE FROM forecasting_metricsrun WHERE id = ANY(%s)", [doomed])


def _carry_history_rows(cursor: CursorWrapper, run_id: int, *, source: int | None = None) -> int:
    """Copy the history families' rows (`metrics.HISTORY_METRICS`) of run `source` (default: the newest other
    complete run) into run `run_id`, with the instant they were computed at; how many."""
    cursor.execute(
        """
        INSERT INTO forecasting_metricsnapshot (run_id, metric, period_kind, period_start, period_end, group_kind,
            owner_id, team_id, pipeline_id, source, stage_id, deal_id, values, computed_at)
        SELECT %(run)s, metric, period_kind, period_start, period_end, group_kind,
            owner_id, team_id, pipeline_id, source, stage_id, deal_id, values, computed_at
        FROM forecasting_metricsnapshot
        WHERE metric = ANY(%(metrics)s) AND run_id = coalesce(%(source)s, (
            SELECT id FROM forecasting_metricsrun WHERE status = %(complete)s AND id <> %(run)s
            ORDER BY computed_at DESC, id DESC LIMIT 1
        ))
        """,
        {"run": run_id, "source": source, "metrics": HISTORY_METRIC_NAMES, "complete": RunStatus.COMPLETE},
    )
    return cursor.rowcount


# --- The history families -----------------------------------------------------------------------------------------

HISTORY_METRIC_NAMES = [metric.value for metric in metrics.HISTORY_METRICS]
# pg_try_advisory_xact_lock key of the history families: one computation at a time.
HISTORY_LOCK_KEY = 4_242_002


def recompute_history_of_latest_run(*, as_of: datetime | None) -> MetricsRun | None:
    """Rewrite, in one transaction, the history families' rows (`metrics.HISTORY_FAMILIES`: backtest, calibration)
    of the latest complete run, and of any run completed meanwhile (which carried the rows replaced here). None
    when another computation of them is running, or before any run.

    The families take minutes on a million deals, so they do not hold the recompute lock while they run: moves'
    refreshes and the scheduled recompute go on. The run is held FOR KEY SHARE, which a finishing recompute's
    pruning skips (and a refresh's update of it does not wait for); the recompute lock is taken only at the end,
    for the copy into newer runs and the row counts.
    Raises `ConfigurationChanged`, leaving every run as it was, when the configuration is not the run's.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [HISTORY_LOCK_KEY])
        if not cursor.fetchone()[0]:
            logger.info("metrics history families skipped: another computation of them is running")
            return None
        run = latest_run()
        if run is None:
            return None
        cursor.execute("SELECT 1 FROM forecasting_metricsrun WHERE id = %s FOR KEY SHARE", [run.pk])
        if cursor.fetchone() is None:  # pruned since it was read
            return None
        _refuse_another_configuration(cursor, run)
        started = time.monotonic()
        params = MetricParams.of_run(run_id=run.pk, computed_at=as_of or run.as_of)
        cursor.execute(
            "DELETE FROM forecasting_metricsnapshot WHERE run_id = %s AND metric = ANY(%s)",
            [run.pk, HISTORY_METRIC_NAMES],
        )
        deleted = cursor.rowcount
        _tune_session(cursor)
        # Minutes on a million deals, once a day, off the readers' path: a longer bound than a recompute's.
        cursor.execute("SET LOCAL statement_timeout = %s", [settings.METRICS_HISTORY_STATEMENT_TIMEOUT])
        written = _run_families(cursor, metrics.HISTORY_FAMILIES, params)
        # Waits for a recompute or refresh running now; neither waits for this transaction.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [RECOMPUTE_LOCK_KEY])
        _refuse_another_configuration(cursor, run)
        changed = {run.pk: written - deleted}
        cursor.execute(
            "SELECT id FROM forecasting_metricsrun WHERE status = %s AND id <> %s AND (computed_at, id) > (%s, %s)",
            [RunStatus.COMPLETE, run.pk, run.computed_at, run.pk],
        )
        for (newer,) in cursor.fetchall():
            cursor.execute(
                "DELETE FROM forecasting_metricsnapshot WHERE run_id = %s AND metric = ANY(%s)",
                [newer, HISTORY_METRIC_NAMES],
            )
            replaced = cursor.rowcount
            changed[newer] = _carry_history_rows(cursor, newer, source=run.pk) - replaced
        for run_id, delta in changed.items():
            cursor.execute(
                "UPDATE forecasting_metricsrun SET row_count = row_count + %s WHERE id = %s", [delta, run_id]
            )
    logger.info("metrics run %s: history families rewritten in %.2f s", run.pk, time.monotonic() - started)
    run.refresh_from_db()
    return run


# --- An incremental refresh ---------------------------------------------------------------------------------------


def refresh_latest_run(*, as_of: datetime | None) -> MetricsRun | None:
    """Rewrite, in one transaction, the slices of the latest complete run that the pending changes touch
    (`metrics.REFRESHED`, scoped by `changes.Slices`). None when a recompute holds the lock or before any run.

    Raises `ConfigurationChanged`, leaving the run and the pending changes as they were, when the configuration is
    not (or, by the end, no longer) the one the run was computed with: only a full recompute is right then."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s), now()", [RECOMPUTE_LOCK_KEY])
        acquired, now = cursor.fetchone()
        if not acquired:
            return None
        run = latest_run()
        if run is None:
            return None
        _refuse_another_configuration(cursor, run)
        # Read where they are, by the families too, and deleted last (the lock keeps any other taker away).
        taken = _pending_change_runs(cursor)
        if not taken:
            return run
        started = time.monotonic()
        refreshed_at = as_of or now
        slices = changes.Slices.of_changes(cursor, taken)
        params = MetricParams.of_run(run_id=run.pk, computed_at=refreshed_at, scope=slices.scope())
        _tune_session(cursor)
        images: list[dict] | None = None  # read once, by the first family patched with differences
        for family, metric, rows_in_scope in metrics.REFRESHED:
            if not slices.touches(metric):
                continue
            family_started = time.monotonic()
            if family in DIFFERENCES:
                images = _pending_images(cursor, params) if images is None else images
                if images and _apply_differences(cursor, run, params, family, images, family_started):
                    continue
            cursor.execute(
                f"DELETE FROM forecasting_metricsnapshot WHERE run_id = %(run_id)s AND metric = %(metric)s"
                f" AND {rows_in_scope}",
                {**params.sql(), "metric": metric.value},
            )
            deleted = cursor.rowcount
            written = family(cursor, params)
            run.row_count += written - deleted
            logger.info(
                "metrics refresh %s: %d rows in %.3f s (%d replaced)",
                family.__name__,
                written,
                time.monotonic() - family_started,
                deleted,
            )
        _refuse_another_configuration(cursor, run)  # rolls the patch back, the pending changes with it
        _delete_pending_changes(cursor, taken)
        run.refreshed_at = refreshed_at
        run.save(update_fields=["refreshed_at", "row_count"])
        emit_metrics_recomputed(computed_at=refreshed_at, periods=slices.period_names(), full=False)
    count = sum(last - first + 1 for first, last in taken)
    logger.info("metrics run %s refreshed for %d changes in %.3f s", run.pk, count, time.monotonic() - started)
    return run


# The families a refresh patches with the changes' differences rather than recomputing their slices: their numbers
# are sums and counts over deals (or follow from them), so a deal's old image can be taken out and its new one added.
DIFFERENCES = {metrics.forecast: metrics.forecast_differences, metrics.funnel: metrics.funnel_differences}
# Up to this many deal images (two per changed deal) come into Python as the differences' arrays; a bigger burst (an
# import, a bulk edit) recomputes the two families' slices like the others.
DIFFERENCES_LIMIT = 20_000


def _pending_images(cursor: CursorWrapper, params: MetricParams) -> list[dict]:
    """The deal images (sign ±1) of the changes the refresh takes, by the names of `changes.COLUMNS`; none (the
    slices are recomputed instead) beyond `DIFFERENCES_LIMIT`, so that a refresh's memory stays bounded."""
    cursor.execute(
        f"SELECT {changes.COLUMNS} FROM {metrics.CHANGES} AS changes WHERE sign <> 0 LIMIT %(limit)s",
        {**params.sql(), "limit": DIFFERENCES_LIMIT + 1},
    )
    rows = cursor.fetchall()
    if len(rows) > DIFFERENCES_LIMIT:
        return []
    names = [name.strip() for name in changes.COLUMNS.split(",")]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _apply_differences(
    cursor: CursorWrapper, run: MetricsRun, params: MetricParams, family: Family, images: list[dict], started: float
) -> bool:
    """Patch the run's rows of `family` with the changes' differences (`DIFFERENCES`); False when they cannot be
    exact and its slices are to be recomputed instead.

    Exact only if the run's rows hold every change committed before it and none after (they are added here): a full
    recompute reads the queue and the deals in one snapshot (`_consistent_snapshot`)."""
    counts = DIFFERENCES[family](cursor, params, images)
    if counts is None:
        return False
    updated, inserted, removed = counts
    run.row_count += inserted - removed
    logger.info(
        "metrics refresh %s: %d rows in %.3f s (%d differences, %d removed)",
        family.__name__,
        updated + inserted,
        time.monotonic() - started,
        len(images),
        removed,
    )
    return True
