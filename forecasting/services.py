"""Writes of the forecasting app: the full metrics recompute and the incremental refresh, queuing them after a
change, quotas, and the forecast call's submissions and adjustments.

How a recompute keeps its run whole (the lock, the connections, the parts) is `forecasting.recompute`'s business;
the SQL of each metric family is `forecasting.metrics`.
"""

import logging
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.http import Http404
from django.utils import timezone

from accounts.models import AuditAction, Team, User
from accounts.selectors import owners_visible_to
from accounts.services import audited_values, record_audit
from config.services import apply_fields
from forecasting import configuration, metrics, recompute
from forecasting.configuration import ConfigurationChanged
from forecasting.models import (
    CALL_PERIOD_KINDS,
    LOOKBACK_DAYS_MAX,
    PRIOR_STRENGTH_MAX,
    CallCategory,
    ForecastAdjustment,
    ForecastSubmission,
    MetricSnapshot,
    MetricsRun,
    MetricsSettings,
    Quota,
)
from forecasting.periods import Period
from forecasting.selectors import fill_past_trend_points, latest_run, learning_settings, period_is_locked

logger = logging.getLogger(__name__)

PENDING_RECOMPUTE_CACHE_KEY = "metrics-recompute-pending"
PENDING_REFRESH_CACHE_KEY = "metrics-refresh-pending"
PENDING_TREND_WARM_CACHE_KEY = "forecast-trend-warm-pending"
PENDING_HISTORY_CACHE_KEY = "metrics-history-pending"


def recompute_metrics(*, as_of: datetime | None = None) -> MetricsRun | None:
    """Recompute every metric family from scratch into a new complete run; None if another recompute is running.

    `as_of` (default: the transaction time) is the "now" of the run: its computed_at, the end of the learned
    probabilities' lookback window, "today" for past due, the age of deals in their stage.
    Runs older than the newest `METRICS_KEEP_RUNS` complete ones are deleted when the new one completes.

    With `METRICS_CONNECTIONS` = 1 the whole run is one transaction. With more, the families run side by side on
    that many connections (PostgreSQL runs each INSERT … SELECT on one core), each unit committing on its own;
    the run is marked complete last, and readers only ever take complete runs, so they see the previous run until
    then, and a run that fails or is killed is never read (the next run prunes its rows).

    A run during which the configuration changed (`forecasting.configuration`) is thrown away, so that it never
    mixes two: None then too, and the caller asks for another (`configuration_is_current` tells the two apart).
    """
    try:
        if settings.METRICS_CONNECTIONS <= 1:
            return recompute.recompute_in_one_transaction(as_of=as_of)
        return recompute.recompute_on_connections(as_of=as_of, workers=settings.METRICS_CONNECTIONS)
    except ConfigurationChanged as change:
        logger.info("metrics recompute thrown away: %s", change)
        return None


def refresh_metrics(*, as_of: datetime | None = None) -> MetricsRun | None:
    """Bring the latest complete run up to date with the deals and activities changed since, in place.

    Takes the pending changes (forecasting.changes) and recomputes only the slices they touch: the periods holding
    each old and new close, expected close and creation date, the pipelines' funnels, the stages' times, the deals'
    staleness, plus past due, quotas and forecast accuracy whole (metrics.REFRESHED); the forecast and the funnels
    it patches with each change's difference instead (recompute.DIFFERENCES), at the cost of the change. One
    transaction, so readers see the run before or after. Learned probabilities and lead metrics wait for the next
    full recompute.
    Returns the run; None when a recompute holds the lock, or before any complete run exists, or when the
    configuration is not the one the run was computed with (a stage's probability, a team, a quota, the learning
    settings changed): patching some periods with the new one would mix two configurations, so the run and the
    pending changes are left alone and the caller asks for a full recompute (`configuration_is_current`).
    """
    try:
        return recompute.refresh_latest_run(as_of=as_of)
    except ConfigurationChanged as change:
        logger.info("metrics refresh given up for a full recompute: %s", change)
        return None


def recompute_history_metrics(*, as_of: datetime | None = None) -> MetricsRun | None:
    """Compute the backtest and calibration (`metrics.HISTORY_FAMILIES`) into the latest complete run, replacing its
    rows of theirs; returns the run. A full recompute does not run them (minutes on a million deals, and only a
    change to an ended period's history changes them): it carries the previous run's rows over, and this runs daily
    (`METRICS_HISTORY_SECONDS`) and when a run has none. None when a recompute or refresh holds the lock, before any
    run, or when the configuration changed since the run (the next recompute's run is the one to fill).
    """
    try:
        return recompute.recompute_history_of_latest_run(as_of=as_of)
    except ConfigurationChanged as change:
        logger.info("metrics history families given up: %s", change)
        return None


def has_history_metrics(run: MetricsRun) -> bool:
    """Whether `run` holds any row of the history families (a new installation's first run does not)."""
    return MetricSnapshot.objects.filter(run=run, metric__in=metrics.HISTORY_METRICS).exists()


def configuration_is_current() -> bool:
    """Whether the latest complete run was computed with the configuration as it is now (False before any run):
    while it is not, only a full recompute brings the numbers up to date."""
    run = latest_run()
    if run is None:
        return False
    with connection.cursor() as cursor:
        return configuration.current_fingerprint(cursor) == run.config_fingerprint


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


def request_trend_warm() -> bool:
    """Queue one `warm_forecast_trend` unless one is already pending; True if this call queued it.

    Called after each recompute and refresh: a write reaching into the past made the database forget the trend's
    points from then on (forecasting 0007), and walking a million-deal history again takes seconds, which the
    worker pays rather than the next reader of the forecast call.
    """
    from forecasting.tasks import warm_forecast_trend_task

    return _queue_once(
        warm_forecast_trend_task,
        mark=PENDING_TREND_WARM_CACHE_KEY,
        countdown=0,
        lifetime=settings.METRICS_RECOMPUTE_SECONDS,
        what="forecast trend warm-up",
    )


def request_history_metrics() -> bool:
    """Queue one `recompute_history_metrics` unless one is already pending; True if this call queued it."""
    from forecasting.tasks import recompute_history_metrics_task

    return _queue_once(
        recompute_history_metrics_task,
        mark=PENDING_HISTORY_CACHE_KEY,
        countdown=0,
        lifetime=settings.METRICS_HISTORY_SECONDS,
        what="metrics history families",
    )


def clear_pending_history_metrics() -> None:
    """Forget the pending mark, so that the next run without history rows queues the task again."""
    _clear_mark(PENDING_HISTORY_CACHE_KEY, "metrics history families")


def clear_pending_trend_warm() -> None:
    """Forget the pending mark, so that the next recompute or refresh queues a new warm-up."""
    _clear_mark(PENDING_TREND_WARM_CACHE_KEY, "forecast trend warm-up")


def warm_forecast_trend(*, now: datetime | None = None) -> dict[str, int]:
    """Keep the trend points of the past weeks of the current month and quarter (`CALL_PERIOD_KINDS`) that the
    history's writers made the database forget, or that were never computed; returns, per period key, how many of
    its locks are past. Idempotent: a point kept is never computed again until forgotten."""
    now = now or timezone.now()
    warmed = {}
    for kind in CALL_PERIOD_KINDS:
        period = Period.containing(timezone.localdate(now), kind)
        warmed[period.key] = fill_past_trend_points(period, now=now)
    return warmed


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
    before = audited_values(quota)
    if apply_fields(quota, fields, QUOTA_EDITABLE_FIELDS, before_save=lambda _: _validate_quota(quota)):
        record_audit(actor=actor, instance=quota, action=AuditAction.UPDATED, before=before)
        transaction.on_commit(request_recompute)
    return quota


@transaction.atomic
def delete_quota(*, quota: Quota, actor: User | None) -> None:
    """Remove a quota; its metrics disappear with the next recompute, which this queues once committed."""
    record_audit(actor=actor, instance=quota, action=AuditAction.DELETED)
    quota.delete()
    transaction.on_commit(request_recompute)


# --- The learning settings (admins only; callers check the role) -------------------------------------------------


def _whole_number_error(value: Any, *, maximum: int, what: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "Give a whole number."
    if not 0 <= value <= maximum:
        return f"{what} must be between 0 and {maximum:,}."
    return None


@transaction.atomic
def update_metrics_settings(*, actor: User | None, lookback_days: int, prior_strength: int) -> MetricsSettings:
    """Set the learned probabilities' lookback window (days, 0 = all history) and prior strength k, replacing the
    environment's METRICS_LOOKBACK_DAYS and METRICS_PRIOR_STRENGTH.

    Audited (the values before are those in effect, the environment's the first time). The numbers change at the
    next full recompute, which this queues once committed; until then every answer is the previous configuration's
    (a refresh gives way to that recompute: `forecasting.configuration`).
    """
    errors = {
        name: [message]
        for name, message in (
            ("lookback_days", _whole_number_error(lookback_days, maximum=LOOKBACK_DAYS_MAX, what="The window")),
            ("prior_strength", _whole_number_error(prior_strength, maximum=PRIOR_STRENGTH_MAX, what="The strength")),
        )
        if message
    }
    if errors:
        raise ValidationError(errors)
    current = learning_settings()
    # Locked (created first if need be: get_or_create survives a concurrent first save), so that two admins saving
    # at once each audit the values the other left.
    row, _ = MetricsSettings.objects.select_for_update().get_or_create(
        pk=1, defaults={"lookback_days": current.lookback_days, "prior_strength": current.prior_strength}
    )
    before = audited_values(row)
    row.lookback_days, row.prior_strength = lookback_days, prior_strength
    if audited_values(row) == before:
        return row
    row.updated_at = timezone.now()
    row.save()
    record_audit(actor=actor, instance=row, action=AuditAction.UPDATED, before=before)
    transaction.on_commit(request_recompute)
    return row


# --- The forecast call (SPEC §3a): submissions and adjustments, append-only -------------------------------------------

AMOUNT_MAX = Decimal("999999999999.99")  # what the 14-digit amount column holds


def _call_amount(amount: Any) -> Decimal:
    """The amount as a Decimal of cents, or a ValidationError on `amount` that says what is wrong with it."""
    try:
        value = Decimal(str(amount))
    except (ArithmeticError, ValueError, TypeError):
        value = None
    if value is None or not value.is_finite():
        raise ValidationError({"amount": ["Give an amount, such as 125000.00."]})
    if value < 0:
        raise ValidationError({"amount": ["The amount must be zero or more."]})
    if value > AMOUNT_MAX or value != value.quantize(Decimal("0.01")):
        raise ValidationError({"amount": [f"Give an amount up to {AMOUNT_MAX:,} with at most 2 decimal places."]})
    return value.quantize(Decimal("0.01"))


def _check_call(period: Period, category: str, *, now: datetime) -> None:
    errors: dict[str, list[str]] = {}
    if category not in CallCategory.values:
        errors["category"] = [f"Choose one of {', '.join(CallCategory.values)}."]
    if period.kind not in CALL_PERIOD_KINDS:
        errors["period"] = ["A forecast call is for a month or a quarter."]
    elif period_is_locked(period, now=now):
        errors["period"] = [f"{period.label} has ended: its forecast call is locked."]
    if errors:
        raise ValidationError(errors)


def _emit_call_event(type: str, row: ForecastSubmission | ForecastAdjustment) -> None:
    """The webhook event of a submission or an adjustment, once its write has committed. The event list shows it to
    whoever may see the member's records; a team number's to whoever may see its submitter's (managers, admins)."""
    from forecasting.api.serializers import ForecastAdjustmentSerializer, ForecastSubmissionSerializer
    from forecasting.selectors import visible_forecast_adjustments, visible_forecast_submissions
    from pipeline.webhooks.services import emit_event

    submission = isinstance(row, ForecastSubmission)
    serializer = ForecastSubmissionSerializer if submission else ForecastAdjustmentSerializer
    owner = row.user_id or (row.submitted_by_id if submission else row.adjusted_by_id)
    emit_event(
        type=type,
        data=lambda: serializer(row).data,
        record=row,
        visible_to=visible_forecast_submissions if submission else visible_forecast_adjustments,
        record_owners=[owner],
    )


@transaction.atomic
def submit_forecast(
    *,
    user: User,
    period: Period,
    category: str,
    amount: Any,
    note: str = "",
    team: Team | None = None,
    now: datetime | None = None,
) -> ForecastSubmission:
    """State `user`'s number for `period` (a month or a quarter) in `category`: for themselves (`team` None), or, a
    manager, for a team they manage. A new submission; the earlier ones stay (SPEC §3a: a week's value is the latest
    before its lock). Refused once the period has ended (locked), for a negative amount or an unknown category
    (ValidationError), and for a team `user` does not manage (PermissionDenied). Audited; `forecast.submitted` is
    sent once committed."""
    now = now or timezone.now()
    if not user.is_active:
        raise PermissionDenied("An inactive user submits no forecast.")
    if team is not None and not team.managers.filter(pk=user.pk).exists():
        raise PermissionDenied("Only a manager of the team submits its number.")
    _check_call(period, category, now=now)
    submission = ForecastSubmission(
        submitted_by=user,
        user=None if team is not None else user,
        team=team,
        period_kind=period.kind,
        period_start=period.start,
        category=category,
        amount=_call_amount(amount),
        note=note.strip(),
        submitted_at=now,
    )
    submission.save()
    record_audit(actor=user, instance=submission, action=AuditAction.CREATED)
    transaction.on_commit(lambda: _emit_call_event("forecast.submitted", submission))
    return submission


@transaction.atomic
def adjust_forecast(
    *,
    user: User,
    member: User | Team,
    period: Period,
    category: str,
    amount: Any,
    note: str,
    now: datetime | None = None,
) -> ForecastAdjustment:
    """Replace `member`'s forecast value for `period` and `category` from now on, with the reason in `note`
    (required): a manager adjusts a member of a team they manage (not themselves), an admin anyone, and a team's
    number (`member` a Team) only an admin. A member `user` may not see is Http404, one they see but may not adjust
    PermissionDenied (SPEC §2); bad input as in `submit_forecast`, and an empty note, ValidationError. The
    submissions stay beside it. Audited; `forecast.adjusted` is sent once committed."""
    from forecasting.selectors import adjustable_members

    now = now or timezone.now()
    if isinstance(member, Team):
        if not user.is_active or not user.is_admin:
            raise PermissionDenied("Only an admin adjusts a team's number.")
    else:
        owners = owners_visible_to(user)
        if not user.is_active or (owners is not None and not owners.filter(pk=member.pk).exists()):
            raise Http404("No such member.")
        if not adjustable_members(user).filter(pk=member.pk).exists():
            raise PermissionDenied("Only a manager of the member's team (or an admin) adjusts their number.")
    errors = {}
    try:
        _check_call(period, category, now=now)
    except ValidationError as error:
        errors |= error.message_dict
    try:
        value = _call_amount(amount)
    except ValidationError as error:
        errors |= error.message_dict
    if not (note or "").strip():
        errors["note"] = ["Say why the number changes: an adjustment needs a note."]
    if errors:
        raise ValidationError(errors)
    adjustment = ForecastAdjustment(
        adjusted_by=user,
        user=None if isinstance(member, Team) else member,
        team=member if isinstance(member, Team) else None,
        period_kind=period.kind,
        period_start=period.start,
        category=category,
        amount=value,
        note=note.strip(),
        adjusted_at=now,
    )
    adjustment.save()
    record_audit(actor=user, instance=adjustment, action=AuditAction.CREATED)
    transaction.on_commit(lambda: _emit_call_event("forecast.adjusted", adjustment))
    return adjustment
