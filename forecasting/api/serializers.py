"""Shapes of the metrics API's answers: a row per metric family (read from a snapshot's `values`), the page of
rows with the run's `computed_at`, the recompute's answers, and quotas with the metrics of the latest recompute.
"""

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from accounts.models import Team, User
from config.api import iso_datetime
from forecasting import selectors
from forecasting.api.params import ID_MAX, CallPeriodField
from forecasting.metrics import result_keys
from forecasting.models import (
    CallCategory,
    ForecastAdjustment,
    ForecastSubmission,
    GroupKind,
    Metric,
    PeriodKind,
    Quota,
)
from forecasting.periods import RANGE, key_of

# --- Rows ---------------------------------------------------------------------------------------------------------


# Row fields read one key of a snapshot's `values` (`in_values=False`: of the dict being serialized).
def _source(name: str, in_values: bool) -> dict:
    return {"source": f"values.{name}"} if in_values else {}


def _count(name: str, help_text: str, *, null: bool = False, in_values: bool = True) -> serializers.IntegerField:
    return serializers.IntegerField(help_text=help_text, allow_null=null, **_source(name, in_values))


def _number(name: str, help_text: str, *, null: bool = True, in_values: bool = True) -> serializers.FloatField:
    return serializers.FloatField(help_text=help_text, allow_null=null, **_source(name, in_values))


def _amount(name: str, help_text: str, *, null: bool = False, in_values: bool = True) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=20, decimal_places=2, help_text=help_text, allow_null=null, **_source(name, in_values)
    )


def reads(metric: Metric, *, in_values: bool = True, besides: tuple[str, ...] = ()):
    """Tie a serializer to the `values` keys `metric` declares (forecasting.metrics.VALUES), which its SQL writes: a
    field reading any other key fails at import rather than answering null. `in_values=False`: the fields read a
    dict of those values directly, by their names (but those of `besides`)."""

    def check(serializer: type[serializers.Serializer]) -> type[serializers.Serializer]:
        fields = serializer._declared_fields
        if in_values:
            read = {f.source.removeprefix("values.") for f in fields.values() if (f.source or "").startswith("values.")}
        else:
            read = set(fields) - set(besides)
        unknown = sorted(read - set(result_keys(metric)))
        if unknown:
            raise ImproperlyConfigured(f"{serializer.__name__} reads {unknown}, which {metric} does not write")
        serializer.values_of = metric
        return serializer

    return check


class GroupKeySerializer(serializers.Serializer):
    """Which group a row is about: the column named by `group_kind` holds its key, the others are null."""

    group_kind = serializers.ChoiceField(choices=GroupKind.choices)
    owner_id = serializers.IntegerField(allow_null=True)
    team_id = serializers.IntegerField(allow_null=True)
    pipeline_id = serializers.IntegerField(allow_null=True)
    source = serializers.CharField(allow_null=True)


class SnapshotRowSerializer(serializers.Serializer):
    """A row's period, [period_start, period_end) (null for metrics over all history or as of the recompute), and
    its group: the column named by `group_kind` holds the group's key, the others are null."""

    period_kind = serializers.ChoiceField(
        choices=[*PeriodKind.choices, (RANGE, "A custom range [start, end)")],
        help_text="month, quarter, year; `range` for a custom range (start & end), `all` for all time.",
    )
    period_start = serializers.DateField(allow_null=True)
    period_end = serializers.DateField(allow_null=True, help_text="Exclusive: the first day after the period.")
    group_kind = serializers.ChoiceField(choices=GroupKind.choices)
    owner_id = serializers.IntegerField(allow_null=True)
    team_id = serializers.IntegerField(allow_null=True)
    pipeline_id = serializers.IntegerField(allow_null=True)
    source = serializers.CharField(allow_null=True)


@reads(Metric.DEAL_OUTCOMES)
class WinRateRowSerializer(SnapshotRowSerializer):
    won = _count("won", "Deals won in the period.")
    lost = _count("lost", "Deals lost in the period.")
    win_rate = _number("win_rate", "won / (won + lost), from 0 to 1; null when nothing closed.")
    won_amount = _amount("won_amount", "Σ amount of the deals won.")
    avg_won_amount = _amount("avg_won_amount", "Mean amount of the deals won; null when none.", null=True)


@reads(Metric.DEAL_OUTCOMES)
class SalesCycleRowSerializer(SnapshotRowSerializer):
    won = _count("won", "Deals won in the period.")
    lost = _count("lost", "Deals lost in the period.")
    won_cycle_days_mean = _number("won_cycle_days_mean", "Mean days from creation to close of the deals won.")
    won_cycle_days_median = _number("won_cycle_days_median", "Median of the same.")
    lost_cycle_days_mean = _number("lost_cycle_days_mean", "Mean days from creation to close of the deals lost.")
    lost_cycle_days_median = _number("lost_cycle_days_median", "Median of the same.")


@reads(Metric.FUNNEL)
class FunnelRowSerializer(SnapshotRowSerializer):
    stage_id = serializers.IntegerField(help_text="The open stage of this row.")
    order = _count("order", "The stage's order in its pipeline.")
    reached = _count("reached", "Deals of the cohort whose furthest stage is at least this one.")
    next_reached = _count("next_reached", "`reached` of the next open stage; null for the last.", null=True)
    won = _count("won", "Deals of the cohort won.")
    cohort_deals = _count("cohort_deals", "Deals in the cohort (created in the period, or all).")
    conversion = _number("conversion", "next_reached (won, for the last stage) / reached; null when none reached.")


@reads(Metric.STAGE_TIME)
class StageTimeRowSerializer(SnapshotRowSerializer):
    stage_id = serializers.IntegerField()
    stays = _count("stays", "Completed stays in the stage.")
    days_mean = _number("days_mean", "Mean days of the completed stays; null when none.")
    days_median = _number("days_median", "Median days of the completed stays; null when none.")
    in_stage_now = _count("in_stage_now", "Open deals in the stage now.")
    now_age_days_mean = _number("now_age_days_mean", "Mean days those deals have been in it; null when none.")
    now_age_days_median = _number("now_age_days_median", "Median of the same.")
    now_age_days_max = _number("now_age_days_max", "The longest of the same.")


@reads(Metric.LEADS)
class LeadRowSerializer(SnapshotRowSerializer):
    qualified = _count("qualified", "Leads that reached `sql` in the period.")
    qualified_previous = _count("qualified_previous", "The same in the period before.")
    lead_velocity_rate = _number("lead_velocity_rate", "(qualified − previous) / previous × 100; null when 0 before.")
    created = _count("created", "Leads created in the period.")
    created_reached_mql = _count("created_reached_mql", "Of those, how many reached `mql`.")
    created_reached_sql = _count("created_reached_sql", "Of those, how many reached `sql`.")
    created_converted = _count("created_converted", "Of those, how many were converted into a deal.")
    mql_to_sql_rate = _number("mql_to_sql_rate", "created_reached_sql / created_reached_mql; null when no MQL.")
    lead_to_deal_rate = _number("lead_to_deal_rate", "created_converted / created; null when none created.")


@reads(Metric.STALE)
class StaleDealRowSerializer(serializers.Serializer):
    deal_id = serializers.IntegerField()
    owner_id = serializers.IntegerField()
    team_id = serializers.IntegerField(allow_null=True, help_text="The owner's team.")
    pipeline_id = serializers.IntegerField()
    stage_id = serializers.IntegerField()
    source = serializers.CharField(allow_null=True)
    days_in_stage = _number("days_in_stage", "Days since the deal entered its stage.", null=False)
    rotting_days = _count("rotting_days", "The stage's rotting days.")
    rotting = serializers.BooleanField(
        source="values.rotting", help_text="The former name of in_stage_too_long, with the same value."
    )
    in_stage_too_long = serializers.BooleanField(
        source="values.in_stage_too_long", help_text="days_in_stage > rotting_days."
    )
    no_next_step = serializers.BooleanField(source="values.no_next_step", help_text="No planned activity ahead.")
    no_activity = serializers.BooleanField(
        source="values.no_activity",
        help_text="Rotting by inactivity: days_since_touch > rotting_days (a touch: its creation, an edit of a "
        "field, a move, a done activity or a note).",
    )
    days_since_touch = _number("days_since_touch", "Days since the deal's last touch.", null=False)
    stage_entered_at = serializers.DateTimeField(source="values.stage_entered_at")
    last_touched_at = serializers.DateTimeField(source="values.last_touched_at")
    amount = _amount("amount", "The deal's amount (null when it has none).", null=True)
    currency = serializers.CharField(source="values.currency")


class StaleReasonSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    amount = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="Σ amount (a missing one: 0).")


class StaleReasonsSerializer(serializers.Serializer):
    """The stale deals of the whole list (every page, with its filters) by reason; `total` counts a deal stale for
    several reasons once, so it may be less than the sum of the reasons."""

    total = StaleReasonSerializer()
    in_stage_too_long = StaleReasonSerializer()
    no_next_step = StaleReasonSerializer()
    no_activity = StaleReasonSerializer()


@reads(Metric.FORECAST)
class ForecastRowSerializer(SnapshotRowSerializer):
    weighted_configured = _amount("weighted_configured", "Σ amount × configured probability of open deals.")
    weighted_learned = _amount("weighted_learned", "Σ amount × learned probability of open deals.")
    commit = _amount("commit", "Σ amount of open deals in the `commit` category.")
    best_case = _amount("best_case", "commit + Σ amount of open deals in the `best_case` category.")
    pipeline = _amount("pipeline", "Σ amount of all open deals expected to close in the period.")
    open_count = _count("open_count", "Open deals expected to close in the period.")
    won_amount = _amount("won_amount", "Σ amount of the deals won in the period.")
    won_count = _count("won_count", "Deals won in the period.")


@reads(Metric.PAST_DUE)
class PastDueRowSerializer(GroupKeySerializer):
    today = serializers.DateField(source="values.today", help_text="The recompute's date, in the configured zone.")
    count = _count("count", "Open deals whose expected close date is before today.")
    amount = _amount("amount", "Σ amount of those.")
    no_close_date_count = _count("no_close_date_count", "Open deals without an expected close date.")
    no_close_date_amount = _amount("no_close_date_amount", "Σ amount of those.")


@reads(Metric.LEARNED_PROBABILITY)
class LearnedProbabilityRowSerializer(GroupKeySerializer):
    stage_id = serializers.IntegerField()
    w = _count("w", "Deals that reached the stage and were won in the lookback window.")
    l = _count("l", "Deals that reached the stage and were lost in the lookback window.")  # noqa: E741
    k = _number("k", "Prior strength.", null=False)
    p0 = _number("p0", "The stage's configured probability, from 0 to 1.", null=False)
    p = _number("p", "(w + k·p0) / (w + l + k): the learned probability, from 0 to 1.")
    lookback_days = _count("lookback_days", "The window in days before the recompute; 0 means all history.")


@reads(Metric.FORECAST_ACCURACY)
class ForecastAccuracyRowSerializer(SnapshotRowSerializer):
    forecast_configured = _amount("forecast_configured", "The weighted forecast (configured) at the period's start.")
    forecast_learned = _amount("forecast_learned", "The weighted forecast (learned) at the period's start.")
    commit = _amount("commit", "Commit at the period's start.")
    best_case = _amount("best_case", "Best case at the period's start.")
    actual_won = _amount("actual_won", "Σ amount won in the period.")
    ape_configured = _number("ape_configured", "|actual − forecast| / actual × 100; null when nothing was won.")
    ape_learned = _number("ape_learned", "The same for the learned forecast.")
    snapshotted_at = serializers.DateTimeField(source="values.snapshotted_at", help_text="When it was kept.")


@reads(Metric.BACKTEST)
class BacktestRowSerializer(SnapshotRowSerializer):
    at = serializers.DateTimeField(source="values.at", help_text="The instant T the forecast stood at.")
    week = _count("week", "0 at the period's start (local midnight), n at its n-th Monday.")
    open_count = _count("open_count", "Deals in open(P, T): open at T with a close date at T inside the period.")
    pipeline = _amount("pipeline", "Σ amount of open(P, T).")
    weighted_configured = _amount("weighted_configured", "Σ amount × the stage's configured probability.")
    weighted_learned = _amount(
        "weighted_learned", "Σ amount × the stage's learned probability at T (from the closes known at T)."
    )
    commit = _amount("commit", "Σ amount of open(P, T) whose forecast category at T was commit.")
    best_case = _amount("best_case", "commit + Σ amount of those whose category was best_case.")
    actual_won = _amount("actual_won", "Σ amount won in the period, as known now.")
    ape_configured = _number("ape_configured", "|actual − forecast| / actual, a fraction; null when nothing was won.")
    ape_learned = _number("ape_learned", "The same for the learned forecast.")
    ape_commit = _number("ape_commit", "The same for commit.")
    ape_best_case = _number("ape_best_case", "The same for best case.")


class BacktestSummarySerializer(serializers.Serializer):
    """WAPE and bias over every row of the answer (all its pages) at one instant of their periods."""

    week = serializers.IntegerField(help_text="0: at the periods' starts; n: at their n-th Monday.")
    rows = serializers.IntegerField(help_text="The rows (periods × groups) summed.")
    actual_won = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="Σ actual.")
    wape_configured = serializers.FloatField(
        allow_null=True, help_text="Σ |actual − forecast| / Σ actual; null when nothing was won."
    )
    bias_configured = serializers.FloatField(
        allow_null=True, help_text="Σ (forecast − actual) / Σ actual: above 0, the forecast was too high."
    )
    wape_learned = serializers.FloatField(allow_null=True)
    bias_learned = serializers.FloatField(allow_null=True)
    wape_commit = serializers.FloatField(allow_null=True)
    bias_commit = serializers.FloatField(allow_null=True)
    wape_best_case = serializers.FloatField(allow_null=True)
    bias_best_case = serializers.FloatField(allow_null=True)


class ReliabilityBinSerializer(serializers.Serializer):
    bin = serializers.IntegerField(help_text="b of [b/10, (b+1)/10); the last bin, 9, holds 1.0 too.")
    count = serializers.IntegerField(help_text="Predictions in the bin.")
    mean_p = serializers.FloatField(allow_null=True, help_text="Their mean probability; null when empty.")
    win_rate = serializers.FloatField(allow_null=True, help_text="The share of them whose deal was won.")


class ReliabilityField(serializers.ListField):
    """The 10 bins of a reliability table, the empty ones too (the snapshot keeps the non-empty ones)."""

    child = ReliabilityBinSerializer()

    def to_representation(self, data):
        by_bin = {entry["bin"]: entry for entry in data or []}
        return [by_bin.get(b, {"bin": b, "count": 0, "mean_p": None, "win_rate": None}) for b in range(10)]


@reads(Metric.CALIBRATION)
class CalibrationRowSerializer(SnapshotRowSerializer):
    stage_id = serializers.IntegerField(allow_null=True, help_text="The open stage; null for the whole pipeline.")
    predictions = _count("predictions", "One per closed deal and open stage it entered.")
    won = _count("won", "Predictions whose deal was won.")
    win_rate = _number("win_rate", "won / predictions.")
    mean_configured = _number("mean_configured", "The mean configured probability predicted, 0 to 1.")
    mean_learned = _number("mean_learned", "The mean learned probability at entry, 0 to 1.")
    brier_configured = _number("brier_configured", "mean (p − y)² of the configured probabilities: 0 is perfect.")
    brier_learned = _number("brier_learned", "The same for the learned probabilities at entry.")
    bins_configured = ReliabilityField(source="values.bins_configured", help_text="The 10 bins, configured.")
    bins_learned = ReliabilityField(source="values.bins_learned", help_text="The 10 bins, learned at entry.")


def page_of(name: str, row: type[serializers.Serializer], **extra: serializers.Field) -> type[serializers.Serializer]:
    """The response of a metric read: the API's page envelope, the run's `computed_at`, the metric and group."""
    fields = {
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "count": serializers.IntegerField(required=False, help_text="Rows in all pages; only with `?count=true`."),
        "computed_at": serializers.DateTimeField(
            allow_null=True,
            help_text="How fresh these rows are: the last refresh of the recompute they come from (every deal and "
            "activity change committed before it is counted), or the recompute itself; null before the first.",
        ),
        "age_seconds": serializers.IntegerField(
            allow_null=True,
            help_text="How old these numbers are: seconds from computed_at to this answer; null before the first "
            "recompute. Changes made since are not in them yet.",
        ),
        "out_of_date": serializers.BooleanField(
            help_text="True when the scheduled recompute is late for these numbers (older than two recompute "
            "intervals): the broker or the workers are away, and the numbers will catch up once they are back."
        ),
        "metric": serializers.ChoiceField(choices=Metric.choices),
        "group": serializers.ChoiceField(choices=GroupKind.choices),
        "results": row(many=True),
        **extra,
    }
    return extend_schema_serializer(many=False)(type(name, (serializers.Serializer,), fields))


class RecomputeQueuedSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    status_url = serializers.URLField(help_text="GET it to follow the recompute.")


class RecomputeStatusSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    state = serializers.ChoiceField(
        choices=["PENDING", "STARTED", "RETRY", "FAILURE", "SUCCESS", "REVOKED"],
        help_text="Celery's state of the task; PENDING also for an unknown or expired task id.",
    )
    run_id = serializers.IntegerField(
        allow_null=True,
        help_text="The run written, once SUCCESS (null if another recompute was running and this one was skipped).",
    )


# --- Quotas -------------------------------------------------------------------------------------------------------


@reads(Metric.QUOTA, in_values=False, besides=("computed_at",))
class QuotaMetricsSerializer(serializers.Serializer):
    """From the latest recompute (SPEC §3): attainment, coverage and deals needed of the quota's period."""

    computed_at = serializers.DateTimeField(
        help_text="How fresh these numbers are: the last refresh of the recompute they come from, or the recompute."
    )
    quota = _amount("quota", "The quota's amount when it was computed.", in_values=False)
    won_amount = _amount("won_amount", "Σ amount won in the period.", in_values=False)
    attainment = _number("attainment", "won_amount / quota; null for a zero quota.", in_values=False)
    open_amount = _amount("open_amount", "Σ amount of open deals expected to close in the period.", in_values=False)
    remaining = _amount("remaining", "max(quota − won_amount, 0).", in_values=False)
    coverage = _number("coverage", "open_amount / remaining; null when nothing remains.", in_values=False)
    trailing_win_rate = _number(
        "trailing_win_rate", "Win rate over the four complete quarters before now.", in_values=False
    )
    trailing_avg_won_amount = _amount(
        "trailing_avg_won_amount", "Average won deal size over the same quarters.", null=True, in_values=False
    )
    deals_needed = _count(
        "deals_needed",
        "ceil(remaining / trailing average won deal size / trailing win rate); 0 when nothing remains, null when "
        "the trailing quarters won nothing.",
        null=True,
        in_values=False,
    )


class QuotaSerializer(serializers.ModelSerializer):
    """A sales target for exactly one user or one team over [period_start, period_end)."""

    user = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.none(), allow_null=True, required=False, help_text="The user (or give a team)."
    )
    team = serializers.PrimaryKeyRelatedField(
        queryset=Team.objects.none(), allow_null=True, required=False, help_text="The team (or give a user)."
    )
    metrics = QuotaMetricsSerializer(
        read_only=True, allow_null=True, help_text="Null until a recompute has run since the quota was set."
    )

    class Meta:
        model = Quota
        fields = ["id", "user", "team", "period_start", "period_end", "amount", "created_at", "metrics"]
        read_only_fields = ["id", "created_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            # Only holders the writer may set a quota for; any other id is one that "does not exist".
            self.fields["user"].queryset = selectors.quota_users_assignable_by(user=user)
            self.fields["team"].queryset = selectors.quota_teams_assignable_by(user=user)


# --- The waterfall and slippage, computed when asked from the deal history -----------------------------------------


class CountAmountSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    amount = serializers.DecimalField(max_digits=20, decimal_places=2)


class WaterfallBucketSerializer(serializers.Serializer):
    name = serializers.CharField()
    side = serializers.ChoiceField(choices=["in", "out", "kept"])
    count = serializers.IntegerField()
    amount = serializers.DecimalField(
        max_digits=20,
        decimal_places=2,
        help_text="At `to` for the in buckets, at `from` for the out buckets, the difference for amount_up and "
        "amount_down (0 for unchanged).",
    )
    deals = serializers.URLField(help_text="The list of this bucket's deals.")


class WaterfallRowSerializer(serializers.Serializer):
    key = serializers.JSONField(
        allow_null=True, help_text="The group: an owner, team or pipeline id, a source's name; null for the company."
    )
    open_from = CountAmountSerializer(help_text="open(P, from): the deals and amount at `from`.")
    buckets = WaterfallBucketSerializer(many=True)
    open_to = CountAmountSerializer(
        help_text="open(P, to) = open_from + Σ in − Σ out + amount_up − amount_down (counts: without the kept)."
    )


class WaterfallDealSerializer(serializers.Serializer):
    deal = serializers.IntegerField(source="deal_id")
    title = serializers.CharField(allow_null=True, help_text="Null for a deal deleted since.")
    bucket = serializers.CharField()
    amount = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="What it counts in its bucket.")
    from_stage = serializers.IntegerField(source="from_stage_id", allow_null=True)
    from_owner = serializers.IntegerField(source="from_owner_id", allow_null=True)
    from_amount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    from_close_date = serializers.DateField(allow_null=True)
    to_stage = serializers.IntegerField(source="to_stage_id", allow_null=True, help_text="Null when deleted.")
    to_owner = serializers.IntegerField(source="to_owner_id", allow_null=True)
    to_amount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    to_close_date = serializers.DateField(allow_null=True)


class SlippageRowSerializer(serializers.Serializer):
    key = serializers.JSONField(allow_null=True, help_text="The group at the period's start; null for the company.")
    open_count = serializers.IntegerField(help_text="Deals in open(P, start of P).")
    open_amount = serializers.DecimalField(max_digits=20, decimal_places=2)
    slipped_count = serializers.IntegerField(
        help_text="Of those, open at the end of P (now, while P runs) with a close date after P."
    )
    slipped_amount = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="Their amount at P's start.")
    slipped_share = serializers.DecimalField(
        max_digits=7, decimal_places=4, allow_null=True, help_text="slipped_amount ÷ open_amount; null when 0."
    )


def history_page_of(name: str, row: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The response of a read computed from the deal history: the page envelope and when it was computed."""
    fields = {
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "count": serializers.IntegerField(required=False, help_text="Rows in all pages; only with `?count=true`."),
        "computed_at": serializers.DateTimeField(help_text="Computed when asked: the answer's time."),
        "results": row(many=True),
    }
    return type(name, (serializers.Serializer,), fields)


# --- Pacing, computed when asked ----------------------------------------------------------------------------------


class PaceOfPeriodSerializer(serializers.Serializer):
    period = serializers.CharField(help_text="One of the last four periods of the same kind, the latest first.")
    won_by_day = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="Won by the end of the same day.")
    won = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="Won in the whole period.")
    share = serializers.FloatField(allow_null=True, help_text="won_by_day ÷ won; null when it won nothing.")


class PacingRowSerializer(serializers.Serializer):
    key = serializers.IntegerField(allow_null=True, help_text="The team or owner id; null for the company.")
    won_to_date = serializers.DecimalField(max_digits=20, decimal_places=2)
    quota = serializers.DecimalField(
        max_digits=20,
        decimal_places=2,
        allow_null=True,
        help_text="For exactly this period (the company: its teams' added up); null without one.",
    )
    expected_share = serializers.FloatField(
        allow_null=True,
        help_text="The median over the last four periods that won anything of the share of their wins reached by "
        "this day; null when none did.",
    )
    expected_won_to_date = serializers.DecimalField(
        max_digits=20, decimal_places=2, allow_null=True, help_text="quota × expected_share."
    )
    pace = serializers.FloatField(
        allow_null=True, help_text="won_to_date ÷ (quota × expected_share): 1 is on pace; null when undefined."
    )
    weighted_learned = serializers.DecimalField(
        max_digits=20,
        decimal_places=2,
        allow_null=True,
        help_text="The learned weighted forecast of the period (the latest recompute's).",
    )
    trailing_win_rate = serializers.FloatField(
        allow_null=True, help_text="Won ÷ closed over the four complete quarters before today's; null if none closed."
    )
    remaining = serializers.DecimalField(
        max_digits=20,
        decimal_places=2,
        allow_null=True,
        help_text="max(quota − won_to_date − weighted_learned, 0).",
    )
    pipeline_needed = serializers.DecimalField(
        max_digits=20,
        decimal_places=2,
        allow_null=True,
        help_text="remaining ÷ trailing_win_rate: the new pipeline that would win the rest; 0 when nothing remains, "
        "null without a quota or a win rate.",
    )
    history = PaceOfPeriodSerializer(many=True)

    def to_representation(self, instance: selectors.PacingRow) -> dict:
        history = [
            {"period": pace.period.key, "won_by_day": pace.won_by_day, "won": pace.won, "share": pace.share}
            for pace in instance.history
        ]
        fields = [name for name in self.fields if name != "history"]
        return super().to_representation({name: getattr(instance, name) for name in fields} | {"history": history})


class PacingPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    count = serializers.IntegerField(required=False, help_text="Rows in all pages; only with `?count=true`.")
    computed_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Of the recompute the learned forecast and the win rates come from; null before the first (the "
        "won amounts are read when asked).",
    )
    period = serializers.CharField()
    day = serializers.IntegerField(help_text="The day of the period today (1 on its first day, 0 before it begins).")
    days = serializers.IntegerField(help_text="The days in the period.")
    results = PacingRowSerializer(many=True)


# --- The forecast call -------------------------------------------------------------------------------------------


class _CallSerializer(serializers.ModelSerializer):
    period = serializers.SerializerMethodField(help_text="A month `2026-11` or a quarter `2026-Q4`.")

    def get_period(self, row) -> str:
        return key_of(row.period_kind, row.period_start)


class ForecastSubmissionSerializer(_CallSerializer):
    """A number stated in the forecast call, by a rep for themselves (`user`) or a manager for a team (`team`)."""

    class Meta:
        model = ForecastSubmission
        fields = ["id", "submitted_by", "user", "team", "period", "category", "amount", "note", "submitted_at"]
        read_only_fields = fields


class ForecastAdjustmentSerializer(_CallSerializer):
    """A manager's (or an admin's) change of a member's (or a team's) number, with its reason."""

    class Meta:
        model = ForecastAdjustment
        fields = ["id", "adjusted_by", "user", "team", "period", "category", "amount", "note", "adjusted_at"]
        read_only_fields = fields


class ForecastSubmissionInputSerializer(serializers.Serializer):
    period = CallPeriodField()
    category = serializers.ChoiceField(choices=CallCategory.choices)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
    user = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=ID_MAX,
        help_text="Yourself (the default): nobody submits for another.",
    )
    team = serializers.PrimaryKeyRelatedField(
        queryset=Team.objects.all(), required=False, allow_null=True, help_text="A team you manage, for its number."
    )

    def validate(self, attrs: dict) -> dict:
        if attrs.get("user") is not None and attrs.get("team") is not None:
            raise serializers.ValidationError({"team": ["Give a team or a user, not both."]})
        return attrs


class ForecastAdjustmentInputSerializer(serializers.Serializer):
    period = CallPeriodField()
    category = serializers.ChoiceField(choices=CallCategory.choices)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)
    note = serializers.CharField(max_length=10_000, help_text="Why the number changes (required).")
    user = serializers.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, help_text="The member whose number you adjust."
    )
    team = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=ID_MAX,
        help_text="The team whose manager's number you adjust (admins).",
    )

    def validate(self, attrs: dict) -> dict:
        if (attrs.get("user") is None) == (attrs.get("team") is None):
            raise serializers.ValidationError({"user": ["Give exactly one of user and team."]})
        return attrs


class CallEntrySerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=20, decimal_places=2)
    at = serializers.DateTimeField()
    note = serializers.CharField()
    by = serializers.IntegerField(source="by_id", help_text="The user who stated it.")


class MemberCallSerializer(serializers.Serializer):
    user = serializers.IntegerField(source="user_id")
    name = serializers.CharField()
    computed = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="From the metrics (SPEC §3a).")
    submitted = CallEntrySerializer(allow_null=True, help_text="The latest submission, if any.")
    adjusted = CallEntrySerializer(allow_null=True, help_text="The latest adjustment, if any.")
    submitted_at = serializers.DateTimeField(allow_null=True)
    value = serializers.DecimalField(
        max_digits=20, decimal_places=2, help_text="Adjusted, else submitted, else computed; cumulative."
    )
    won = serializers.DecimalField(max_digits=20, decimal_places=2)
    quota = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    gap = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True, help_text="quota − value.")


class TeamCallSerializer(serializers.Serializer):
    team = serializers.IntegerField(source="team_id", allow_null=True, help_text="Null: the users of no team.")
    name = serializers.CharField()
    members = MemberCallSerializer(many=True)
    computed = serializers.DecimalField(max_digits=20, decimal_places=2)
    submitted = CallEntrySerializer(allow_null=True, help_text="The manager's number for the team, if any.")
    adjusted = CallEntrySerializer(allow_null=True, help_text="An admin's adjustment of it, if any.")
    submitted_at = serializers.DateTimeField(allow_null=True)
    value = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="Σ member values.")
    call = serializers.DecimalField(
        max_digits=20, decimal_places=2, help_text="Adjusted, else submitted, else value: the team's number."
    )
    won = serializers.DecimalField(max_digits=20, decimal_places=2)
    quota = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    gap = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)


class RollupSerializer(serializers.Serializer):
    period = serializers.CharField(source="period.key")
    category = serializers.CharField()
    at = serializers.DateTimeField()
    computed_at = serializers.DateTimeField(allow_null=True, help_text="Freshness of the computed values.")
    company = serializers.BooleanField(help_text="Whether the total is the whole company's (admins).")
    teams = TeamCallSerializer(many=True)
    computed = serializers.DecimalField(max_digits=20, decimal_places=2)
    value = serializers.DecimalField(max_digits=20, decimal_places=2)
    call = serializers.DecimalField(max_digits=20, decimal_places=2)
    won = serializers.DecimalField(max_digits=20, decimal_places=2)
    quota = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    gap = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)


class TrendWeekSerializer(serializers.Serializer):
    lock = serializers.DateTimeField(help_text="The week's lock instant.")
    submitted = serializers.DecimalField(max_digits=20, decimal_places=2)
    adjusted = serializers.DecimalField(max_digits=20, decimal_places=2)
    computed_commit = serializers.DecimalField(max_digits=20, decimal_places=2)
    computed_best_case = serializers.DecimalField(max_digits=20, decimal_places=2)
    won = serializers.DecimalField(max_digits=20, decimal_places=2)
    quota = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)


class TrendSerializer(serializers.Serializer):
    period = serializers.CharField()
    category = serializers.CharField()
    weeks = TrendWeekSerializer(many=True)


class ReliabilityPeriodSerializer(serializers.Serializer):
    period = serializers.CharField(source="period.key")
    commit = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)
    won = serializers.DecimalField(max_digits=20, decimal_places=2)
    ape = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
    bias = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)


class RepReliabilitySerializer(serializers.Serializer):
    user = serializers.IntegerField(source="user_id")
    name = serializers.CharField()
    periods = ReliabilityPeriodSerializer(many=True)
    ape = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
    bias = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)


# --- The roll-up and trend answers, shaped by hand ------------------------------------------------------------------
# A roll-up for a 20-team company holds some 3,000 fields; even a generic walk compiled from the serializer (an
# attribute path and a converter per field) cost more than the SQL. These give exactly what `RollupSerializer` and
# `TrendSerializer` give (tests/forecasting/api/test_forecast_call_api.py compares the JSON in two time zones);
# the serializers stay the schema.


def _money(value) -> str | None:
    return None if value is None else f"{value:.2f}"


def _entry(entry) -> dict | None:
    if entry is None:
        return None
    return {"amount": f"{entry.amount:.2f}", "at": iso_datetime(entry.at), "note": entry.note, "by": entry.by_id}


def rollup_representation(rollup) -> dict:
    """What `RollupSerializer(rollup).data` gives, for a `forecasting.selectors.Rollup`."""
    teams = []
    for team in rollup.teams:
        members = []
        for member in team.members:
            submitted = _entry(member.submitted)
            members.append(
                {
                    "user": member.user_id,
                    "name": member.name,
                    "computed": f"{member.computed:.2f}",
                    "submitted": submitted,
                    "adjusted": _entry(member.adjusted),
                    "submitted_at": submitted and submitted["at"],
                    "value": f"{member.value:.2f}",
                    "won": f"{member.won:.2f}",
                    "quota": _money(member.quota),
                    "gap": _money(member.gap),
                }
            )
        submitted = _entry(team.submitted)
        teams.append(
            {
                "team": team.team_id,
                "name": team.name,
                "members": members,
                "computed": f"{team.computed:.2f}",
                "submitted": submitted,
                "adjusted": _entry(team.adjusted),
                "submitted_at": submitted and submitted["at"],
                "value": f"{team.value:.2f}",
                "call": f"{team.call:.2f}",
                "won": f"{team.won:.2f}",
                "quota": _money(team.quota),
                "gap": _money(team.gap),
            }
        )
    return {
        "period": rollup.period.key,
        "category": rollup.category,
        "at": iso_datetime(rollup.at),
        "computed_at": None if rollup.computed_at is None else iso_datetime(rollup.computed_at),
        "company": rollup.company,
        "teams": teams,
        "computed": f"{rollup.computed:.2f}",
        "value": f"{rollup.value:.2f}",
        "call": f"{rollup.call:.2f}",
        "won": f"{rollup.won:.2f}",
        "quota": _money(rollup.quota),
        "gap": _money(rollup.gap),
    }


def trend_representation(period: str, category: str, weeks) -> dict:
    """What `TrendSerializer({"period": …, "category": …, "weeks": weeks}).data` gives, for the `TrendWeek`s."""
    return {
        "period": period,
        "category": category,
        "weeks": [
            {
                "lock": iso_datetime(week.lock),
                "submitted": f"{week.submitted:.2f}",
                "adjusted": f"{week.adjusted:.2f}",
                "computed_commit": f"{week.computed_commit:.2f}",
                "computed_best_case": f"{week.computed_best_case:.2f}",
                "won": f"{week.won:.2f}",
                "quota": _money(week.quota),
            }
            for week in weeks
        ],
    }
