"""Metric snapshots, the recompute runs that write them, forecast snapshots taken at period start, and quotas.

Readers never compute: they read the rows of the latest complete `MetricsRun` (see `forecasting.selectors`).
A recompute writes a whole run and marks it complete last (`forecasting.services.recompute_metrics`), so a reader
sees either the previous complete run or the new one, never half of one.
"""

from datetime import datetime

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Now
from django.utils import timezone


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"


class PeriodKind(models.TextChoices):
    MONTH = "month", "Month"
    QUARTER = "quarter", "Quarter"
    YEAR = "year", "Year"
    ALL = "all", "All time"  # a metric over all history (funnel of all deals, time in stage)
    NOW = "now", "As of the recompute"  # a state at computed_at (past due, stale, in stage now, learned probability)
    QUOTA = "quota", "A quota's own period"


class GroupKind(models.TextChoices):
    COMPANY = "company", "Whole company"
    OWNER = "owner", "Owner"
    TEAM = "team", "Team (the owner's team)"
    PIPELINE = "pipeline", "Pipeline"
    SOURCE = "source", "Source"


class Metric(models.TextChoices):
    """The metric families of SPEC §3; `MetricSnapshot.values` holds the numbers each one defines."""

    DEAL_OUTCOMES = "deal_outcomes", "Win rate, average won deal size, sales cycle"
    FUNNEL = "funnel", "Funnel with stage conversion"
    LEARNED_PROBABILITY = "learned_probability", "Learned stage probability"
    FORECAST = "forecast", "Weighted forecast, commit, best case, pipeline"
    PAST_DUE = "past_due", "Open deals past their expected close date"
    STAGE_TIME = "stage_time", "Time in stage and in stage now"
    STALE = "stale", "Stale deals and deals with no next step"
    STALE_TOTALS = "stale_totals", "Stale deals' count and amount by reason, per owner, team, pipeline and source"
    LEADS = "leads", "Qualified leads, lead velocity, MQL→SQL and lead→deal conversion"
    QUOTA = "quota", "Quota attainment, coverage and deals needed"
    FORECAST_ACCURACY = "forecast_accuracy", "Forecast at period start against the won amount"
    BACKTEST = "backtest", "Forecast as it stood at past instants against the won amount"
    BACKTEST_SUMMARY = "backtest_summary", "The backtest's sums over every period, per group and instant"
    CALIBRATION = "calibration", "Brier score and reliability of the stage probabilities"


class MetricsRun(models.Model):
    """One full recompute. Readers use the latest complete run; older runs are pruned by the next recompute.

    Between full recomputes, `forecasting.services.refresh_metrics` brings the latest complete run up to date with
    changed deals in place, and stamps `refreshed_at`.
    """

    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The transaction time of the recompute: every snapshot row of the run carries the same value.
    computed_at = models.DateTimeField()
    duration_seconds = models.FloatField(null=True, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    # The last incremental refresh: every deal and activity change committed before it is in the numbers.
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # The configuration the run was computed with (`forecasting.configuration.fingerprint`): a refresh patches the
    # run only while the configuration is still this one, so that no answer mixes two configurations.
    config_fingerprint = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["status", "-computed_at"], name="metricsrun_latest_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="metricsrun_status_valid"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.status}) at {self.computed_at:%Y-%m-%d %H:%M:%S}"

    @property
    def as_of(self) -> datetime:
        """How fresh the numbers are: the last refresh, or the recompute itself (the `computed_at` readers see)."""
        return max(self.computed_at, self.refreshed_at or self.computed_at)


class MetricSnapshot(models.Model):
    """One row of one metric for one period and one group, as of `computed_at`.

    The group key sits in the column named by `group_kind` (owner_id, team_id, pipeline_id or source; none for
    the company). Metrics that are per stage or per deal also fill `stage_id` / `deal_id`, and per-pipeline
    metrics (funnel, stages) always fill `pipeline_id`. Keys are plain integers, not foreign keys: a snapshot
    describes the past and must not block deleting a user or a stage.
    Amounts in `values` are decimal strings; rates and days are numbers; null where the definition says so.
    """

    run = models.ForeignKey(MetricsRun, on_delete=models.CASCADE, related_name="snapshots")
    metric = models.CharField(max_length=32, choices=Metric.choices)
    period_kind = models.CharField(max_length=8, choices=PeriodKind.choices)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)  # exclusive
    group_kind = models.CharField(max_length=8, choices=GroupKind.choices)
    owner_id = models.BigIntegerField(null=True, blank=True)
    team_id = models.BigIntegerField(null=True, blank=True)
    pipeline_id = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=100, null=True, blank=True)
    stage_id = models.BigIntegerField(null=True, blank=True)
    deal_id = models.BigIntegerField(null=True, blank=True)
    values = models.JSONField()
    computed_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The order readers page in (forecasting.selectors.visible_snapshot_rows), to the primary key the cursor
            # ends on: a page of stale deals (one row per deal, 64,000 on a million deals) is read from the index,
            # not sorted from the whole run, whatever the statistics say of a run that is newer than they are.
            models.Index(
                fields=[
                    "run",
                    "metric",
                    "group_kind",
                    "period_start",
                    "owner_id",
                    "team_id",
                    "pipeline_id",
                    "source",
                    "stage_id",
                    "deal_id",
                    "id",
                ],
                name="metricsnapshot_page_order_idx",
            ),
            # The dashboard's stalest deals, longest in their stage first (forecasting.dashboard._stale): the first
            # twelve of a run read from the index, not a sort of its 63,000 stale deals (127 ms of the admin's
            # dashboard on L); a manager's or a rep's by walking it until twelve of theirs are found.
            models.Index(
                "run",
                "group_kind",
                KeyTransform("days_in_stage", "values").desc(nulls_last=True),
                "deal_id",
                condition=Q(metric=Metric.STALE),
                name="metricsnapshot_stalest_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(metric__in=Metric.values), name="metricsnapshot_metric_valid"),
            models.CheckConstraint(condition=Q(period_kind__in=PeriodKind.values), name="metricsnapshot_period_valid"),
            models.CheckConstraint(condition=Q(group_kind__in=GroupKind.values), name="metricsnapshot_group_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.period_kind} {self.period_start or ''} {self.group_kind}"


class ForecastSnapshot(models.Model):
    """The forecast of a period as it stood when the period started, kept (never pruned) for forecast accuracy.

    The first recompute inside a period copies that run's forecast rows for the period, every group at once
    (and a zero company row if nothing was expected); later recomputes leave them alone. `snapshotted_at` says
    how soon after the start that was (later than the start when no recompute ran at the very start).
    """

    period_kind = models.CharField(max_length=8, choices=PeriodKind.choices)
    period_start = models.DateField()
    period_end = models.DateField()
    group_kind = models.CharField(max_length=8, choices=GroupKind.choices)
    owner_id = models.BigIntegerField(null=True, blank=True)
    team_id = models.BigIntegerField(null=True, blank=True)
    pipeline_id = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=100, null=True, blank=True)
    weighted_configured = models.DecimalField(max_digits=20, decimal_places=2)
    weighted_learned = models.DecimalField(max_digits=20, decimal_places=2)
    commit = models.DecimalField(max_digits=20, decimal_places=2)
    best_case = models.DecimalField(max_digits=20, decimal_places=2)
    pipeline = models.DecimalField(max_digits=20, decimal_places=2)
    snapshotted_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["period_kind", "period_start", "group_kind", "owner_id", "team_id", "pipeline_id", "source"],
                nulls_distinct=False,
                name="forecastsnapshot_one_per_period_and_group",
            ),
        ]

    def __str__(self) -> str:
        return f"Forecast {self.period_kind} {self.period_start} {self.group_kind} at {self.snapshotted_at:%Y-%m-%d}"


class Quota(models.Model):
    """A sales target for one user or one team (exactly one) over [period_start, period_end)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="quotas"
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="quotas")
    period_start = models.DateField()
    period_end = models.DateField(help_text="Exclusive: the first day after the period.")
    amount = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_start", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, team__isnull=True) | Q(user__isnull=True, team__isnull=False),
                name="quota_user_xor_team",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="quota_amount_not_negative"),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="quota_period_not_empty"),
        ]

    def __str__(self) -> str:
        target = self.user or self.team
        return f"{target}: {self.amount} for {self.period_start}–{self.period_end}"


class PendingChange(models.Model):
    """A deal (or a deal's activity) changed since the metrics last looked: written by database triggers.

    Triggers on pipeline_deal and pipeline_activity (migration 0002) record the deal's old and new values of
    everything a metric groups or dates by, on every path that writes (services, imports, the admin, SQL), so
    an incremental refresh knows which periods, stages and deals to recompute. A refresh or a full recompute
    consumes them. Plain integers, not foreign keys: the deal may be gone.
    """

    deal_id = models.BigIntegerField()
    pipeline_id = models.BigIntegerField(null=True)
    owner_id = models.BigIntegerField(null=True)
    source = models.CharField(max_length=100, null=True)
    status = models.CharField(max_length=8, null=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True)
    furthest_open_order = models.SmallIntegerField(null=True)
    created_at = models.DateTimeField(null=True)
    closed_at = models.DateTimeField(null=True)
    expected_close_date = models.DateField(null=True)
    # What the deal adds to its forecast rows (migration 0011; null in an image recorded before it).
    stage_id = models.BigIntegerField(null=True)
    forecast_category = models.CharField(max_length=16, null=True)
    # −1 for a deal's values before the change, +1 after it, 0 for an activity's deal.
    sign = models.SmallIntegerField(db_default=0)
    recorded_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return f"Deal {self.deal_id} changed at {self.recorded_at}"


# The bounds of the learning settings (the settings page, the service and the database say the same).
LOOKBACK_DAYS_MAX = 36_500  # a hundred years: 0 already means all history
PRIOR_STRENGTH_MAX = 1_000


class MetricsSettings(models.Model):
    """The settings of the learned probabilities an admin set on the settings page: one row at most (id 1).

    Without it, `METRICS_LOOKBACK_DAYS` and `METRICS_PRIOR_STRENGTH` from the environment apply
    (`forecasting.selectors.metrics_settings`). A change takes effect at the next full recompute, which
    `forecasting.services.update_metrics_settings` queues.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    lookback_days = models.PositiveIntegerField(
        help_text="Closing dates in this many days before the recompute are learned from; 0 means all history."
    )
    prior_strength = models.PositiveIntegerField(
        help_text="k: how many closed deals' worth of weight the configured probability keeps."
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "metrics settings"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="metricssettings_singleton"),
            models.CheckConstraint(
                condition=Q(lookback_days__gte=0, lookback_days__lte=LOOKBACK_DAYS_MAX),
                name="metricssettings_lookback_days_range",
            ),
            models.CheckConstraint(
                condition=Q(prior_strength__gte=0, prior_strength__lte=PRIOR_STRENGTH_MAX),
                name="metricssettings_prior_strength_range",
            ),
        ]

    def __str__(self) -> str:
        window = "all history" if self.lookback_days == 0 else f"{self.lookback_days} days"
        return f"Learned probabilities: {window}, prior strength {self.prior_strength}"


# --- The forecast call (SPEC §3a, "Forecast submissions") ------------------------------------------------------------


class CallCategory(models.TextChoices):
    """What a forecast call states: cumulative, so best case ⊇ commit ⊇ won (SPEC §3a)."""

    COMMIT = "commit", "Commit"
    BEST_CASE = "best_case", "Best case"
    MOST_LIKELY = "most_likely", "Most likely"


# A forecast call is for a month or a quarter.
CALL_PERIOD_KINDS = (PeriodKind.MONTH, PeriodKind.QUARTER)


class ForecastSubmission(models.Model):
    """A number stated in the forecast call: by a rep for themselves (`user`), or by a manager for a team they
    manage (`team`), exactly one of the two; for one period (kind and first day, as `forecasting.periods.Period`)
    and one category. Append-only (a trigger refuses UPDATE and DELETE): a new submission supersedes, the old ones
    stay for the trend and commit reliability. Written by `forecasting.services.submit_forecast`.
    """

    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="forecast_submissions"
    )
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="forecast_submissions"
    )
    period_kind = models.CharField(max_length=8, choices=[(kind.value, kind.label) for kind in CALL_PERIOD_KINDS])
    period_start = models.DateField()
    category = models.CharField(max_length=16, choices=CallCategory.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])
    note = models.TextField(blank=True)
    submitted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        indexes = [
            # The latest submission before an instant, per member or team (roll-up, trend, commit reliability).
            models.Index(
                fields=["period_kind", "period_start", "category", "user", "submitted_at"],
                name="fsubmission_user_latest_idx",
            ),
            models.Index(
                fields=["period_kind", "period_start", "category", "team", "submitted_at"],
                name="fsubmission_team_latest_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, team__isnull=True) | Q(user__isnull=True, team__isnull=False),
                name="fsubmission_user_xor_team",
            ),
            models.CheckConstraint(
                condition=Q(period_kind__in=[kind.value for kind in CALL_PERIOD_KINDS]),
                name="fsubmission_period_kind_valid",
            ),
            models.CheckConstraint(condition=Q(category__in=CallCategory.values), name="fsubmission_category_valid"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="fsubmission_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.team}: {self.category} {self.amount} for {self.period_kind} {self.period_start}"


class ForecastAdjustment(models.Model):
    """A manager's change of a member's forecast value (`user`), or an admin's of a manager's team number (`team`),
    exactly one of the two, with the reason (`note`, required). It replaces the member's value from `adjusted_at`
    on, until a later adjustment; the submissions stay visible beside it. Append-only, like the submissions.
    Written by `forecasting.services.adjust_forecast`.
    """

    adjusted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="forecast_adjustments"
    )
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="forecast_adjustments"
    )
    period_kind = models.CharField(max_length=8, choices=[(kind.value, kind.label) for kind in CALL_PERIOD_KINDS])
    period_start = models.DateField()
    category = models.CharField(max_length=16, choices=CallCategory.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])
    note = models.TextField()
    adjusted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-adjusted_at", "-id"]
        indexes = [
            models.Index(
                fields=["period_kind", "period_start", "category", "user", "adjusted_at"],
                name="fadjustment_user_latest_idx",
            ),
            models.Index(
                fields=["period_kind", "period_start", "category", "team", "adjusted_at"],
                name="fadjustment_team_latest_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, team__isnull=True) | Q(user__isnull=True, team__isnull=False),
                name="fadjustment_user_xor_team",
            ),
            models.CheckConstraint(
                condition=Q(period_kind__in=[kind.value for kind in CALL_PERIOD_KINDS]),
                name="fadjustment_period_kind_valid",
            ),
            models.CheckConstraint(condition=Q(category__in=CallCategory.values), name="fadjustment_category_valid"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="fadjustment_amount_not_negative"),
            models.CheckConstraint(condition=Q(note__regex=r"\S"), name="fadjustment_note_required"),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.team}: {self.category} adjusted to {self.amount} for {self.period_start}"


class CallTrendPoint(models.Model):
    """What the deal history held at a past lock instant of a period's forecast call, per owner: the won amount in
    the period by then and the open commit and best case expected in it (SPEC §3a, the trend's computed columns).

    A cache, exact by construction: the trend computes a lock's points from the history once, company-wide, and
    reads them thereafter; database triggers on the history (pipeline_dealstate) and on deals' close times delete
    every point at or after the earliest instant a write touched, so a dated move, an import of history or a
    deletion is recomputed on the next read. The row with no owner marks a lock as computed (it may have no
    owner's rows at all). Locks still ahead (the week in progress) are never stored.
    """

    period_kind = models.CharField(max_length=8, choices=PeriodKind.choices)
    period_start = models.DateField()
    lock = models.DateTimeField()
    owner_id = models.BigIntegerField(null=True, blank=True)
    won = models.DecimalField(max_digits=20, decimal_places=2)
    commit_open = models.DecimalField(max_digits=20, decimal_places=2)
    best_open = models.DecimalField(max_digits=20, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["period_kind", "period_start", "lock", "owner_id"],
                nulls_distinct=False,
                name="calltrendpoint_one_per_lock_and_owner",
            ),
        ]
        indexes = [models.Index(fields=["lock"], name="calltrendpoint_lock_idx")]

    def __str__(self) -> str:
        return f"Trend {self.period_kind} {self.period_start} at {self.lock:%Y-%m-%d %H:%M} owner {self.owner_id}"
