"""The metrics, forecast and quota endpoints of /api/v1/ (SPEC §3, §4), on the API's shared base.

Metric reads are list-only viewsets over the snapshot selectors: their rows come from `visible_snapshot_rows`
through `config.api.VisibleViewSet`, paginated like every other list (`config.rest.ApiPagination`), with the
`computed_at` of the run they come from (null before the first recompute), how old that is (`age_seconds`,
`out_of_date`), the metric and the group beside the page. Query parameters: `period` (`2026-11`, `2026-Q4`,
`2026`) or `start` & `end` (YYYY-MM-DD: the periods of `period_kind`, default month, lying within [start, end));
`group` (company, owner, team, pipeline, source); and the filters `pipeline`, `team`, `owner`, `source`. Bad
parameters answer 400 with a message per parameter.

Quotas are a resource: everyone reads the quotas they may see; admins (and managers, for the teams they manage
and those teams' members) create, change and delete them through `forecasting.services`.
"""

import logging
import re
from datetime import date
from typing import Any

from celery.result import AsyncResult
from django.db import transaction
from django.urls import reverse
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_serializer, extend_schema_view
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Team, User
from config.api import VisibleViewSet, representation_etag
from config.rest import OrderingFilter
from forecasting import selectors, services
from forecasting.models import GroupKind, Metric, MetricSnapshot, MetricsRun, PeriodKind, Quota
from forecasting.selectors import SnapshotQuery, freshness, visible_snapshot_rows
from pipeline.api.filters import IdFilter

logger = logging.getLogger(__name__)

PERIOD_PATTERN = re.compile(r"^(?P<year>\d{4})(?:-(?:(?P<month>\d{2})|Q(?P<quarter>[1-4])))?$")
# The same shape without Python's named groups, for the schema (ECMA regular expressions).
PERIOD_SCHEMA_PATTERN = r"^\d{4}(-(\d{2}|Q[1-4]))?$"
PER_PERIOD_KINDS = [PeriodKind.MONTH, PeriodKind.QUARTER, PeriodKind.YEAR]
STAGE_GROUPS = [GroupKind.COMPANY, GroupKind.OWNER, GroupKind.TEAM, GroupKind.SOURCE]


def parse_period(text: str) -> tuple[str, date]:
    """'2026-11' → (month, 2026-11-01); '2026-Q4' → (quarter, 2026-10-01); '2026' → (year, 2026-01-01)."""
    match = PERIOD_PATTERN.match(text)
    if not match:
        raise serializers.ValidationError("Write a period as 2026-11, 2026-Q4 or 2026.")
    year = int(match["year"])
    if year < 1:
        raise serializers.ValidationError("The year must be at least 1.")
    if match["month"]:
        month = int(match["month"])
        if not 1 <= month <= 12:
            raise serializers.ValidationError("The month must be 01 to 12.")
        return PeriodKind.MONTH, date(year, month, 1)
    if match["quarter"]:
        return PeriodKind.QUARTER, date(year, 3 * (int(match["quarter"]) - 1) + 1, 1)
    return PeriodKind.YEAR, date(year, 1, 1)


# --- Query parameters ---------------------------------------------------------------------------------------------


class MetricFilterSerializer(serializers.Serializer):
    """The filters every metric read takes."""

    pipeline = serializers.IntegerField(required=False, min_value=1, help_text="Only this pipeline's rows.")
    team = serializers.IntegerField(required=False, min_value=1, help_text="Only rows of this team (of its members).")
    owner = serializers.IntegerField(required=False, min_value=1, help_text="Only rows of this owner.")
    source = serializers.CharField(required=False, allow_blank=True, max_length=100, help_text="Only this source.")

    # Parameters of other metrics: refused here rather than silently ignored.
    refused: tuple[str, ...] = ("period", "start", "end", "period_kind")

    def validate(self, attrs: dict) -> dict:
        refused = sorted(name for name in self.refused if name in self.initial_data)
        if refused:
            raise serializers.ValidationError({name: ["This metric is not per period."] for name in refused})
        return attrs

    def validate_source(self, value: str) -> str:
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


class PeriodMetricQuerySerializer(MetricFilterSerializer):
    """Filters, a group and a period (one, or a range)."""

    refused = ()
    group = serializers.ChoiceField(
        choices=GroupKind.values, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )
    period = serializers.RegexField(
        PERIOD_SCHEMA_PATTERN,
        required=False,
        help_text="One period: a month `2026-11`, a quarter `2026-Q4` or a year `2026`.",
    )
    start = serializers.DateField(required=False, help_text="With `end`: every period within [start, end).")
    end = serializers.DateField(required=False, help_text="With `start`: the first day after the range.")
    period_kind = serializers.ChoiceField(
        choices=PER_PERIOD_KINDS, required=False, help_text="With `start` and `end`: which periods (default month)."
    )

    def validate_period(self, value: str) -> tuple[str, date]:
        return parse_period(value)

    def validate(self, attrs: dict) -> dict:
        if "period" in attrs and ("start" in attrs or "end" in attrs):
            raise serializers.ValidationError({"period": ["Give either period or start and end, not both."]})
        if ("start" in attrs) != ("end" in attrs):
            missing = "end" if "start" in attrs else "start"
            raise serializers.ValidationError({missing: ["Give start and end together."]})
        if "start" in attrs and attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": ["The end must be after the start."]})
        if "period_kind" in attrs and "start" not in attrs:
            raise serializers.ValidationError({"period_kind": ["period_kind goes with start and end."]})
        return attrs


class StagePeriodMetricQuerySerializer(PeriodMetricQuerySerializer):
    """Filters, a group (not pipeline: every row of a per-stage metric is a pipeline's) and a period."""

    group = serializers.ChoiceField(
        choices=STAGE_GROUPS, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )


class StageTimeQuerySerializer(MetricFilterSerializer):
    """Filters and a group: time in stage is over all history, not per period."""

    group = serializers.ChoiceField(
        choices=STAGE_GROUPS, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )


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

    period_kind = serializers.ChoiceField(choices=PeriodKind.choices)
    period_start = serializers.DateField(allow_null=True)
    period_end = serializers.DateField(allow_null=True, help_text="Exclusive: the first day after the period.")
    group_kind = serializers.ChoiceField(choices=GroupKind.choices)
    owner_id = serializers.IntegerField(allow_null=True)
    team_id = serializers.IntegerField(allow_null=True)
    pipeline_id = serializers.IntegerField(allow_null=True)
    source = serializers.CharField(allow_null=True)


class WinRateRowSerializer(SnapshotRowSerializer):
    won = _count("won", "Deals won in the period.")
    lost = _count("lost", "Deals lost in the period.")
    win_rate = _number("win_rate", "won / (won + lost), from 0 to 1; null when nothing closed.")
    won_amount = _amount("won_amount", "Σ amount of the deals won.")
    avg_won_amount = _amount("avg_won_amount", "Mean amount of the deals won; null when none.", null=True)


class SalesCycleRowSerializer(SnapshotRowSerializer):
    won = _count("won", "Deals won in the period.")
    lost = _count("lost", "Deals lost in the period.")
    won_cycle_days_mean = _number("won_cycle_days_mean", "Mean days from creation to close of the deals won.")
    won_cycle_days_median = _number("won_cycle_days_median", "Median of the same.")
    lost_cycle_days_mean = _number("lost_cycle_days_mean", "Mean days from creation to close of the deals lost.")
    lost_cycle_days_median = _number("lost_cycle_days_median", "Median of the same.")


class FunnelRowSerializer(SnapshotRowSerializer):
    stage_id = serializers.IntegerField(help_text="The open stage of this row.")
    order = _count("order", "The stage's order in its pipeline.")
    reached = _count("reached", "Deals of the cohort whose furthest stage is at least this one.")
    next_reached = _count("next_reached", "`reached` of the next open stage; null for the last.", null=True)
    won = _count("won", "Deals of the cohort won.")
    cohort_deals = _count("cohort_deals", "Deals in the cohort (created in the period, or all).")
    conversion = _number("conversion", "next_reached (won, for the last stage) / reached; null when none reached.")


class StageTimeRowSerializer(SnapshotRowSerializer):
    stage_id = serializers.IntegerField()
    stays = _count("stays", "Completed stays in the stage.")
    days_mean = _number("days_mean", "Mean days of the completed stays; null when none.")
    days_median = _number("days_median", "Median days of the completed stays; null when none.")
    in_stage_now = _count("in_stage_now", "Open deals in the stage now.")
    now_age_days_mean = _number("now_age_days_mean", "Mean days those deals have been in it; null when none.")
    now_age_days_median = _number("now_age_days_median", "Median of the same.")
    now_age_days_max = _number("now_age_days_max", "The longest of the same.")


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


class StaleDealRowSerializer(serializers.Serializer):
    deal_id = serializers.IntegerField()
    owner_id = serializers.IntegerField()
    team_id = serializers.IntegerField(allow_null=True, help_text="The owner's team.")
    pipeline_id = serializers.IntegerField()
    stage_id = serializers.IntegerField()
    source = serializers.CharField(allow_null=True)
    days_in_stage = _number("days_in_stage", "Days since the deal entered its stage.", null=False)
    rotting_days = _count("rotting_days", "The stage's rotting days.")
    rotting = serializers.BooleanField(source="values.rotting", help_text="days_in_stage > rotting_days.")
    no_next_step = serializers.BooleanField(source="values.no_next_step", help_text="No planned activity ahead.")
    stage_entered_at = serializers.DateTimeField(source="values.stage_entered_at")


class ForecastRowSerializer(SnapshotRowSerializer):
    weighted_configured = _amount("weighted_configured", "Σ amount × configured probability of open deals.")
    weighted_learned = _amount("weighted_learned", "Σ amount × learned probability of open deals.")
    commit = _amount("commit", "Σ amount of open deals in the `commit` category.")
    best_case = _amount("best_case", "commit + Σ amount of open deals in the `best_case` category.")
    pipeline = _amount("pipeline", "Σ amount of all open deals expected to close in the period.")
    open_count = _count("open_count", "Open deals expected to close in the period.")
    won_amount = _amount("won_amount", "Σ amount of the deals won in the period.")
    won_count = _count("won_count", "Deals won in the period.")


class PastDueRowSerializer(GroupKeySerializer):
    today = serializers.DateField(source="values.today", help_text="The recompute's date, in the configured zone.")
    count = _count("count", "Open deals whose expected close date is before today.")
    amount = _amount("amount", "Σ amount of those.")
    no_close_date_count = _count("no_close_date_count", "Open deals without an expected close date.")
    no_close_date_amount = _amount("no_close_date_amount", "Σ amount of those.")


class LearnedProbabilityRowSerializer(GroupKeySerializer):
    stage_id = serializers.IntegerField()
    w = _count("w", "Deals that reached the stage and were won in the lookback window.")
    l = _count("l", "Deals that reached the stage and were lost in the lookback window.")  # noqa: E741
    k = _number("k", "Prior strength.", null=False)
    p0 = _number("p0", "The stage's configured probability, from 0 to 1.", null=False)
    p = _number("p", "(w + k·p0) / (w + l + k): the learned probability, from 0 to 1.")
    lookback_days = _count("lookback_days", "The window in days before the recompute; 0 means all history.")


class ForecastAccuracyRowSerializer(SnapshotRowSerializer):
    forecast_configured = _amount("forecast_configured", "The weighted forecast (configured) at the period's start.")
    forecast_learned = _amount("forecast_learned", "The weighted forecast (learned) at the period's start.")
    commit = _amount("commit", "Commit at the period's start.")
    best_case = _amount("best_case", "Best case at the period's start.")
    actual_won = _amount("actual_won", "Σ amount won in the period.")
    ape_configured = _number("ape_configured", "|actual − forecast| / actual × 100; null when nothing was won.")
    ape_learned = _number("ape_learned", "The same for the learned forecast.")
    snapshotted_at = serializers.DateTimeField(source="values.snapshotted_at", help_text="When it was kept.")


def _page_of(name: str, row: type[serializers.Serializer], **extra: serializers.Field) -> type[serializers.Serializer]:
    """The response of a metric read: the API's page envelope, the run's `computed_at`, the metric and group."""
    fields = {
        "count": serializers.IntegerField(help_text="Rows in all pages."),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
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


# --- Metric reads -------------------------------------------------------------------------------------------------


class MetricViewSet(VisibleViewSet):
    """A read of one metric's snapshot rows: those of the latest complete recompute that the user may see."""

    model = MetricSnapshot
    filter_backends: list = []  # the query parameters are the query serializer's
    metric: str
    query_serializer: type[serializers.Serializer] = PeriodMetricQuerySerializer
    default_period_kind: str | None = None  # when no period is asked for (None: every period)
    # What visible_queryset() read: the request's query and the run its rows come from (None before the first).
    query: SnapshotQuery | None = None
    run: MetricsRun | None = None

    def snapshot_query(self) -> SnapshotQuery:
        params = self.query_serializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        period_kind, period_start = data.get("period", (None, None))
        if "start" in data:
            period_kind = data.get("period_kind", PeriodKind.MONTH)
        return SnapshotQuery(
            metric=self.metric,
            group_kind=data.get("group", GroupKind.OWNER),  # stale deals: one row per deal, keyed by its owner
            period_kind=period_kind or self.default_period_kind,
            period_start=period_start,
            range_start=data.get("start"),
            range_end=data.get("end"),
            pipeline_id=data.get("pipeline"),
            team_id=data.get("team"),
            owner_id=data.get("owner"),
            source=data.get("source"),
        )

    def visible_queryset(self):
        self.query = self.snapshot_query()
        self.run, rows = visible_snapshot_rows(user=self.request.user, query=self.query)
        return rows

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rows = self.get_queryset()
        page = self.paginate_queryset(rows)
        envelope = self.get_paginated_response(self.get_serializer(page, many=True).data).data
        fresh = freshness(self.run)
        return Response(
            {
                "count": envelope["count"],
                "next": envelope["next"],
                "previous": envelope["previous"],
                "computed_at": fresh.computed_at,
                "age_seconds": fresh.age_seconds,
                "out_of_date": fresh.out_of_date,
                "metric": self.metric,
                "group": self.query.group_kind,
                "results": envelope["results"],
            }
        )


def _documented(response: type[serializers.Serializer], description: str):
    """Document a metric viewset's list: its query parameters and its page of rows."""

    def decorate(cls: type[MetricViewSet]) -> type[MetricViewSet]:
        return extend_schema_view(
            list=extend_schema(parameters=[cls.query_serializer], responses=response, description=description)
        )(cls)

    return decorate


@_documented(
    _page_of("WinRatePage", WinRateRowSerializer),
    "Win rate and average won deal size of deals closed in each period, for the company or per group.",
)
class WinRateViewSet(MetricViewSet):
    metric = Metric.DEAL_OUTCOMES
    serializer_class = WinRateRowSerializer


@_documented(
    _page_of("SalesCyclePage", SalesCycleRowSerializer),
    "Sales cycle length in days (mean and median), separately for deals won and lost in each period.",
)
class SalesCycleViewSet(MetricViewSet):
    metric = Metric.DEAL_OUTCOMES
    serializer_class = SalesCycleRowSerializer


@_documented(
    _page_of("FunnelPage", FunnelRowSerializer),
    "The funnel of each pipeline, one row per open stage: without a period, of all deals (period_kind `all`); "
    "with one, of the deals created in it. Skipped stages count as passed through. Not per pipeline group: "
    "every row is a pipeline's.",
)
class FunnelViewSet(MetricViewSet):
    metric = Metric.FUNNEL
    serializer_class = FunnelRowSerializer
    query_serializer = StagePeriodMetricQuerySerializer
    default_period_kind = PeriodKind.ALL


@_documented(
    _page_of("StageTimePage", StageTimeRowSerializer),
    "Time in stage over all completed stays in history, and the open deals in each stage now with their age. "
    "Not per period.",
)
class StageTimeViewSet(MetricViewSet):
    metric = Metric.STAGE_TIME
    serializer_class = StageTimeRowSerializer
    query_serializer = StageTimeQuerySerializer


@_documented(
    _page_of("LeadMetricsPage", LeadRowSerializer),
    "Qualified leads and lead velocity per period (by the date leads reached `sql`), and MQL→SQL and "
    "lead→deal conversion of the leads created in the period.",
)
class LeadMetricsViewSet(MetricViewSet):
    metric = Metric.LEADS
    serializer_class = LeadRowSerializer
    query_serializer = StagePeriodMetricQuerySerializer


@_documented(
    _page_of("StaleDealPage", StaleDealRowSerializer),
    "One row per stale open deal the user may see: rotting (longer in its stage than the stage's rotting days), "
    "with no next step (no planned activity ahead), or both; as of the recompute. `group` is always `owner`.",
)
class StaleDealsViewSet(MetricViewSet):
    metric = Metric.STALE
    serializer_class = StaleDealRowSerializer
    query_serializer = MetricFilterSerializer


@_documented(
    _page_of(
        "ForecastPage",
        ForecastRowSerializer,
        past_due=PastDueRowSerializer(many=True, help_text="Open deals past their expected close date, per group."),
        learned_probabilities=LearnedProbabilityRowSerializer(
            many=True,
            help_text="Each open stage's learned probability with its inputs (w, l, k, p0), per group; empty for "
            "group=pipeline (every row is a pipeline's).",
        ),
    ),
    "The weighted forecast of each period (configured and learned probabilities), commit, best case, pipeline and "
    "won amount; beside the page, the past due deals and the learned probabilities of the same recompute.",
)
class ForecastViewSet(MetricViewSet):
    metric = Metric.FORECAST
    serializer_class = ForecastRowSerializer

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        response.data["past_due"] = []
        response.data["learned_probabilities"] = []
        if self.run is None:
            return response
        query = self.query
        groups = {
            "group_kind": query.group_kind,
            "pipeline_id": query.pipeline_id,
            "team_id": query.team_id,
            "owner_id": query.owner_id,
            "source": query.source,
        }
        # From the same run as the forecast rows, even if a recompute committed in between.
        _, past_due = visible_snapshot_rows(
            user=request.user, query=SnapshotQuery(metric=Metric.PAST_DUE, **groups), run=self.run
        )
        response.data["past_due"] = PastDueRowSerializer(past_due, many=True).data
        if query.group_kind != GroupKind.PIPELINE:
            _, learned = visible_snapshot_rows(
                user=request.user, query=SnapshotQuery(metric=Metric.LEARNED_PROBABILITY, **groups), run=self.run
            )
            response.data["learned_probabilities"] = LearnedProbabilityRowSerializer(learned, many=True).data
        return response


@_documented(
    _page_of("ForecastAccuracyPage", ForecastAccuracyRowSerializer),
    "Per ended period: the forecast kept at its start (configured and learned) against the won amount, with the "
    "absolute percentage error of each.",
)
class ForecastAccuracyViewSet(MetricViewSet):
    metric = Metric.FORECAST_ACCURACY
    serializer_class = ForecastAccuracyRowSerializer


# --- Recompute ----------------------------------------------------------------------------------------------------


class ManagersAndAdmins(permissions.IsAuthenticated):
    message = "Only managers and admins may start or follow a recompute."

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and (request.user.is_admin or request.user.is_manager)


class QueueUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The task queue is unavailable; try again later."
    default_code = "queue_unavailable"


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


class RecomputeView(APIView):
    """Queue a full metrics recompute now (managers and admins)."""

    permission_classes = [ManagersAndAdmins]

    @extend_schema(
        request=None,
        responses={202: RecomputeQueuedSerializer},
        description="Queue a full recompute of every metric (managers and admins). Answers 202 at once with the "
        "URL to follow it; readers keep the last complete run until the new one commits.",
    )
    def post(self, request: Request) -> Response:
        from forecasting.tasks import recompute_metrics_task

        try:
            result = recompute_metrics_task.apply_async(kwargs={"reason": "request"}, retry=False)
        except Exception as error:  # the broker is away: say so rather than fail with a 500
            logger.warning("could not queue a requested metrics recompute", exc_info=True)
            raise QueueUnavailable() from error
        status_url = request.build_absolute_uri(reverse("metrics-recompute-status", args=[result.id]))
        return Response({"task_id": result.id, "status_url": status_url}, status=status.HTTP_202_ACCEPTED)


class RecomputeStatusView(APIView):
    """The state of a requested recompute (managers and admins)."""

    permission_classes = [ManagersAndAdmins]

    @extend_schema(responses={200: RecomputeStatusSerializer})
    def get(self, request: Request, task_id) -> Response:
        result = AsyncResult(str(task_id))
        try:
            state = result.state
            run_id = result.result if state == "SUCCESS" else None
        except Exception as error:  # the result backend is away
            logger.warning("could not read the state of metrics recompute %s", task_id, exc_info=True)
            raise QueueUnavailable() from error
        return Response({"task_id": str(task_id), "state": state, "run_id": run_id})


# --- Quotas -------------------------------------------------------------------------------------------------------


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


class QuotaFilter(filters.FilterSet):
    user = IdFilter(field_name="user", help_text="Quotas of this user.")
    team = IdFilter(field_name="team", help_text="Quotas of this team.")
    period_from = filters.DateFilter(
        field_name="period_end", lookup_expr="gt", help_text="Quotas whose period runs on or after this date."
    )
    period_to = filters.DateFilter(
        field_name="period_start", lookup_expr="lt", help_text="Quotas whose period starts before this date."
    )

    class Meta:
        model = Quota
        fields = ["user", "team", "period_from", "period_to"]


@extend_schema_view(
    list=extend_schema(
        description="The quotas you may see (your own; a manager also their teams' and members'; "
        "an admin all), newest period first, each with its attainment, coverage and deals needed."
    ),
    create=extend_schema(
        responses={201: QuotaSerializer},
        description="Set a quota: admins for anyone, managers for the teams they manage and their members (not "
        "themselves). Its metrics appear after the next recompute, which this queues.",
    ),
    destroy=extend_schema(responses={204: None}),
)
class QuotaViewSet(VisibleViewSet):
    """Quotas, with the metrics of the latest recompute."""

    model = Quota
    serializer_class = QuotaSerializer
    filter_backends = [filters.DjangoFilterBackend, OrderingFilter]  # nothing to search in a quota
    filterset_class = QuotaFilter
    ordering_fields = ["period_start", "period_end", "amount", "id"]

    def visible_queryset(self):
        return selectors.visible_quotas(user=self.request.user)

    def editable_queryset(self):
        return selectors.editable_quotas(user=self.request.user)

    def with_metrics(self, quotas: list[Quota]) -> list[Quota]:
        run, metrics = selectors.quota_metrics(quota_ids=[quota.pk for quota in quotas])
        for quota in quotas:
            values = metrics.get(quota.pk)
            quota.metrics = None if values is None else values | {"computed_at": run.as_of}
        return quotas

    def represent(self, instance: Quota) -> dict:
        if not hasattr(instance, "metrics"):
            self.with_metrics([instance])
        return super().represent(instance)

    def etag(self, instance: Quota, data: dict | None = None) -> str:
        # The quota itself: a recompute changes its metrics, not what a writer would overwrite.
        data = dict(self.represent(instance) if data is None else data)
        data.pop("metrics", None)
        return representation_etag(data)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(self.with_metrics(list(page)), many=True).data)

    def create(self, request: Request) -> Response:
        if not (request.user.is_admin or request.user.is_manager):
            raise exceptions.PermissionDenied("Only admins and managers set quotas.")
        quota = services.create_quota(actor=request.user, **self.validated_data())
        return self.detail_response(quota, status_code=status.HTTP_201_CREATED)

    def update(self, request: Request, pk: Any = None, partial: bool = False) -> Response:
        with transaction.atomic():
            quota = self.get_editable_object(lock=True)
            self.check_if_match(quota)
            quota = services.update_quota(
                quota=quota, actor=request.user, **self.validated_data(quota, partial=partial)
            )
        return self.detail_response(quota)

    def partial_update(self, request: Request, pk: Any = None) -> Response:
        return self.update(request, pk, partial=True)

    def destroy(self, request: Request, pk: Any = None) -> Response:
        with transaction.atomic():
            quota = self.get_editable_object(lock=True)
            self.check_if_match(quota)
            services.delete_quota(quota=quota, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
