"""The metrics, forecast and quota endpoints of /api/v1/ (SPEC §3, §4), on the API's shared base.

Metric reads are list-only viewsets over the snapshot selectors: their rows come from `metric_rows`
through `config.api.VisibleViewSet`, paginated like every other list (`config.rest.ApiPagination`), with the
`computed_at` of the run they come from (null before the first recompute), how old that is (`age_seconds`,
`out_of_date`), the metric and the group beside the page. Query parameters: `period` (`2026-11`, `2026-Q4`,
`2026`, `all`) or `start` & `end` (YYYY-MM-DD: one row per group for [start, end), computed when asked where no
snapshot holds it, `forecasting.selectors.metric_rows`; with `period_kind`, the periods of that kind within it);
`group` (company, owner, team, pipeline, source); and the filters `pipeline`, `team`, `owner`, `source`. A read of
one period answers a row for every group the caller may see, empty ones included. Bad parameters answer 400 with a
message per parameter.

Quotas are a resource: everyone reads the quotas they may see; admins (and managers, for the teams they manage
and those teams' members) create, change and delete them through `forecasting.services`.
"""

import dataclasses
import logging
from typing import Any
from urllib.parse import urlencode

from celery.result import AsyncResult
from django.urls import reverse
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Team
from accounts.selectors import visible_users
from config.api import DestroyMixin, UpdateMixin, VisibleViewSet, representation_etag
from config.rest import ApiPagination, OrderingFilter
from forecasting import selectors, services
from forecasting.api.filters import ForecastAdjustmentFilter, ForecastSubmissionFilter, QuotaFilter
from forecasting.api.params import (
    BacktestQuerySerializer,
    CalendarPeriodMetricQuerySerializer,
    CalibrationQuerySerializer,
    CommitReliabilityQuerySerializer,
    PacingQuerySerializer,
    PeriodMetricQuerySerializer,
    RollupQuerySerializer,
    SlippageQuerySerializer,
    StagePeriodMetricQuerySerializer,
    StageTimeQuerySerializer,
    StaleDealsQuerySerializer,
    TrendQuerySerializer,
    WaterfallDealsQuerySerializer,
    WaterfallQuerySerializer,
)
from forecasting.api.serializers import (
    BacktestRowSerializer,
    BacktestSummarySerializer,
    CalibrationRowSerializer,
    ForecastAccuracyRowSerializer,
    ForecastAdjustmentInputSerializer,
    ForecastAdjustmentSerializer,
    ForecastRowSerializer,
    ForecastSubmissionInputSerializer,
    ForecastSubmissionSerializer,
    FunnelRowSerializer,
    LeadRowSerializer,
    LearnedProbabilityRowSerializer,
    PacingPageSerializer,
    PacingRowSerializer,
    PastDueRowSerializer,
    QuotaSerializer,
    RecomputeQueuedSerializer,
    RecomputeStatusSerializer,
    RepReliabilitySerializer,
    RollupSerializer,
    SalesCycleRowSerializer,
    SlippageRowSerializer,
    StageTimeRowSerializer,
    StaleDealRowSerializer,
    StaleReasonsSerializer,
    TrendSerializer,
    WaterfallDealSerializer,
    WaterfallRowSerializer,
    WinRateRowSerializer,
    history_page_of,
    page_of,
    rollup_representation,
    trend_representation,
)
from forecasting.models import (
    ForecastAdjustment,
    ForecastSubmission,
    GroupKind,
    Metric,
    MetricSnapshot,
    MetricsRun,
    PeriodKind,
    Quota,
)
from forecasting.periods import Window
from forecasting.selectors import (
    Freshness,
    SnapshotQuery,
    freshness,
    metric_rows,
    stale_reasons,
    visible_snapshot_rows,
)

logger = logging.getLogger(__name__)


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
    live_at = None  # when the rows were computed, for rows computed when asked
    rows = None  # what visible_queryset() answered, before paging

    def snapshot_query(self) -> SnapshotQuery:
        params = self.query_serializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        window = data.get("period") if isinstance(data.get("period"), Window) else None
        period = None if window else data.get("period")
        period_kind = period.kind if period else None
        if "start" in data:
            period_kind = data.get("period_kind", PeriodKind.MONTH)
        return SnapshotQuery(
            metric=self.metric,
            group_kind=data.get("group", GroupKind.OWNER),  # stale deals: one row per deal, keyed by its owner
            period_kind=None if window else period_kind or self.default_period_kind,
            period_start=period.start if period else None,
            window=window,
            range_start=data.get("start"),
            range_end=data.get("end"),
            pipeline_id=data.get("pipeline"),
            team_id=data.get("team"),
            owner_id=data.get("owner"),
            source=data.get("source"),
        )

    def visible_queryset(self):
        self.query = self.snapshot_query()
        read = metric_rows(user=self.request.user, query=self.query)
        self.run, self.live_at, self.rows = read.run, read.live_at, read.rows
        return read.rows

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rows = self.get_queryset()
        page = self.paginate_queryset(rows)
        envelope = self.paginator.envelope(self.get_serializer(page, many=True).data)
        results = envelope.pop("results")  # last, after the run's freshness
        # Rows computed when asked are as fresh as the answer.
        fresh = freshness(self.run) if self.live_at is None else Freshness(self.live_at, 0, False)
        return Response(
            {
                **envelope,
                "computed_at": fresh.computed_at,
                "age_seconds": fresh.age_seconds,
                "out_of_date": fresh.out_of_date,
                "metric": self.metric,
                "group": self.query.group_kind,
                "results": results,
            }
        )


ONE_PERIOD = (
    "A custom range (`start` & `end`) or `period=all` answers one row per group, computed when asked (its "
    "`computed_at` is then the answer's time) unless the range is exactly a month, quarter or year, whose snapshot "
    "answers. A read of one period has a row for every group the caller may see (but sources), one with nothing in "
    "it holding counts 0 and rates null."
)


def _documented(response: type[serializers.Serializer], description: str):
    """Document a metric viewset's list: its query parameters and its page of rows."""

    def decorate(cls: type[MetricViewSet]) -> type[MetricViewSet]:
        return extend_schema_view(
            list=extend_schema(parameters=[cls.query_serializer], responses=response, description=description)
        )(cls)

    return decorate


@_documented(
    page_of("WinRatePage", WinRateRowSerializer),
    "Win rate and average won deal size of deals closed in each period, for the company or per group. " + ONE_PERIOD,
)
class WinRateViewSet(MetricViewSet):
    metric = Metric.DEAL_OUTCOMES
    serializer_class = WinRateRowSerializer


@_documented(
    page_of("SalesCyclePage", SalesCycleRowSerializer),
    "Sales cycle length in days (mean and median), separately for deals won and lost in each period. " + ONE_PERIOD,
)
class SalesCycleViewSet(MetricViewSet):
    metric = Metric.DEAL_OUTCOMES
    serializer_class = SalesCycleRowSerializer


@_documented(
    page_of("FunnelPage", FunnelRowSerializer),
    "The funnel of each pipeline, one row per open stage: without a period, of all deals (period_kind `all`); "
    "with one, of the deals created in it. Skipped stages count as passed through. Not per pipeline group: "
    "every row is a pipeline's. " + ONE_PERIOD,
)
class FunnelViewSet(MetricViewSet):
    metric = Metric.FUNNEL
    serializer_class = FunnelRowSerializer
    query_serializer = StagePeriodMetricQuerySerializer
    default_period_kind = PeriodKind.ALL


@_documented(
    page_of("StageTimePage", StageTimeRowSerializer),
    "Time in stage over all completed stays in history, and the open deals in each stage now with their age. "
    "Not per period.",
)
class StageTimeViewSet(MetricViewSet):
    metric = Metric.STAGE_TIME
    serializer_class = StageTimeRowSerializer
    query_serializer = StageTimeQuerySerializer


@_documented(
    page_of("LeadMetricsPage", LeadRowSerializer),
    "Qualified leads and lead velocity per period (by the date leads reached `sql`), and MQL→SQL and "
    "lead→deal conversion of the leads created in the period (in a custom range, velocity is against the range of "
    "the same length before it; over all time, null). " + ONE_PERIOD,
)
class LeadMetricsViewSet(MetricViewSet):
    metric = Metric.LEADS
    serializer_class = LeadRowSerializer
    query_serializer = StagePeriodMetricQuerySerializer


@_documented(
    page_of(
        "StaleDealPage",
        StaleDealRowSerializer,
        reasons=StaleReasonsSerializer(
            allow_null=True,
            help_text="With `reasons=true`: count and amount of the stale deals of every page by reason; `total` "
            "counts each deal once. Else null.",
        ),
    ),
    "One row per stale open deal the user may see, with each reason it is stale for: in its stage longer than the "
    "stage's rotting days (`in_stage_too_long`), with no next step (no planned activity ahead), or with no activity "
    "for longer than the rotting days (`no_activity`: its last touch, a creation, edit, move, done activity or note, "
    "is older); as of the recompute. `reasons=true` adds them up over the whole list. `group` is always `owner`.",
)
class StaleDealsViewSet(MetricViewSet):
    metric = Metric.STALE
    serializer_class = StaleDealRowSerializer
    query_serializer = StaleDealsQuerySerializer

    reasons: dict | None = None  # the run's stale totals for the read, once asked for

    def stale_totals(self) -> dict:
        """The read's count and amount by reason, added up from its run's stale totals (`Metric.STALE_TOTALS`), with
        the same filters and visibility as its rows."""
        if self.reasons is None:
            query = dataclasses.replace(self.query, metric=Metric.STALE_TOTALS)
            totals = (
                visible_snapshot_rows(user=self.request.user, query=query, run=self.run)[1]
                if self.run is not None
                else MetricSnapshot.objects.none()
            )
            self.reasons = stale_reasons(totals)
        return self.reasons

    def count_rows(self, rows) -> int:
        """The list's exact length (`?count=true`) is its stale totals' count: a row per stale deal, each once."""
        return self.stale_totals()["total"]["count"]

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        params = self.query_serializer(data=request.query_params)
        params.is_valid(raise_exception=True)  # already checked by the read: this only reads `reasons` back
        results = response.data.pop("results")  # still last
        asked = params.validated_data["reasons"] and self.rows is not None
        response.data["reasons"] = StaleReasonsSerializer(self.stale_totals()).data if asked else None
        response.data["results"] = results
        return response


@_documented(
    page_of(
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
    "won amount; beside the page, the past due deals and the learned probabilities of the same recompute. "
    + ONE_PERIOD,
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
    page_of("ForecastAccuracyPage", ForecastAccuracyRowSerializer),
    "Per ended period: the forecast kept at its start (configured and learned) against the won amount, with the "
    "absolute percentage error of each.",
)
class ForecastAccuracyViewSet(MetricViewSet):
    metric = Metric.FORECAST_ACCURACY
    serializer_class = ForecastAccuracyRowSerializer
    query_serializer = CalendarPeriodMetricQuerySerializer


@_documented(
    page_of(
        "BacktestPage",
        BacktestRowSerializer,
        summary=BacktestSummarySerializer(many=True, help_text="WAPE and bias per instant over every row answered."),
    ),
    "The backtest (SPEC §3a) of every ended month and quarter inside the recorded history: the forecast as it stood "
    "at the period's start (`week` 0) and at each Monday inside it (`week` n), reconstructed from the deal history "
    "with the configured probabilities and with those the CRM would have learned from what was known then, against "
    "what was won in the period; the APE of each row and, in `summary`, WAPE and bias per instant over all the rows "
    "the query answers (every page). Without a period: every month (`period_kind` with `start` and `end` for "
    "quarters). A snapshot of the latest full recompute.",
)
class BacktestViewSet(MetricViewSet):
    metric = Metric.BACKTEST
    serializer_class = BacktestRowSerializer
    query_serializer = BacktestQuerySerializer
    default_period_kind = PeriodKind.MONTH

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        summary = selectors.backtest_summary(user=request.user, query=self.query, run=self.run) if self.run else []
        response.data["summary"] = BacktestSummarySerializer(summary, many=True).data
        return response


@_documented(
    page_of("CalibrationPage", CalibrationRowSerializer),
    "How well the stage probabilities predicted (SPEC §3a): over the deals closed in the window (a quarter, a year "
    "or all time, the default), per pipeline and open stage (and per pipeline, `stage_id` null), each deal counting "
    "once per open stage it entered with that stage's configured probability and its learned probability at the "
    "start of the day it entered, against whether it was won: the Brier score and a 10-bin reliability table of "
    "each. A snapshot of the latest full recompute.",
)
class CalibrationViewSet(MetricViewSet):
    metric = Metric.CALIBRATION
    serializer_class = CalibrationRowSerializer
    query_serializer = CalibrationQuerySerializer

    def snapshot_query(self) -> SnapshotQuery:
        params = self.query_serializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        period = data.get("period")
        return SnapshotQuery(
            metric=self.metric,
            group_kind=data["group"],
            period_kind=period.kind if period else PeriodKind.ALL,
            period_start=period.start if period else None,
            pipeline_id=data.get("pipeline"),
            team_id=data.get("team"),
            owner_id=data.get("owner"),
            source=data.get("source"),
        )


# --- Recompute ----------------------------------------------------------------------------------------------------


class ManagersAndAdmins(permissions.IsAuthenticated):
    message = "Only managers and admins may start or follow a recompute."

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and (request.user.is_admin or request.user.is_manager)


class QueueUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The task queue is unavailable; try again later."
    default_code = "queue_unavailable"


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
class QuotaViewSet(UpdateMixin, DestroyMixin, VisibleViewSet):
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

    def perform_update(self, quota: Quota, data: dict) -> Quota:
        return services.update_quota(quota=quota, actor=self.request.user, **data)

    def perform_destroy(self, quota: Quota) -> None:
        services.delete_quota(quota=quota, actor=self.request.user)


# --- Reads computed when asked: the waterfall, slippage, pacing, the forecast call's roll-up and trend ------------


class ComputedReadView(APIView):
    """A read that no queryset backs: a selector computes its rows for `request.user` and applies SPEC §2's
    visibility itself (the metric rows' rule), which tests/api/test_access_matrix.py checks role by role."""


class HistoryReadView(ComputedReadView):
    """A read computed now from the deal history (SPEC §3a): its query parameters validated by `query_serializer`
    (400 naming the parameter), its rows a list walked by cursor like every other."""

    query_serializer: type[serializers.Serializer]
    row_serializer: type[serializers.Serializer]

    def rows(self, request: Request, params: dict) -> list:
        raise NotImplementedError

    def represent(self, request: Request, params: dict, page: list) -> list:
        return self.row_serializer(page, many=True).data

    def get(self, request: Request) -> Response:
        query = self.query_serializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        computed_at = timezone.now()
        paginator = ApiPagination()
        page = paginator.paginate_queryset(self.rows(request, query.validated_data), request, view=self)
        envelope = paginator.envelope(self.represent(request, query.validated_data, page))
        results = envelope.pop("results")
        return Response({**envelope, "computed_at": computed_at, "results": results})


def _waterfall_args(request: Request, params: dict) -> dict:
    return {
        "user": request.user,
        "period": params["period"],
        "at_from": params["from"],
        "at_to": params["to"],
        "group": params["group"],
    }


@extend_schema(
    parameters=[WaterfallQuerySerializer],
    responses={200: history_page_of("WaterfallPage", WaterfallRowSerializer)},
    description="The pipeline waterfall of a close period from `from` to `to` (SPEC §3a): per group, the open "
    "pipeline at `from`, every deal of it or of the open pipeline at `to` in exactly one bucket, and the open "
    "pipeline at `to`; open_from + Σ in − Σ out + amount_up − amount_down = open_to, to the cent. Groups as the "
    "metrics' (company, pipeline and source rows: admins). Computed when asked from the deal history; `from` and "
    "`to` must lie in the recorded history (400 on the parameter otherwise).",
)
class WaterfallView(HistoryReadView):
    query_serializer = WaterfallQuerySerializer

    def rows(self, request: Request, params: dict) -> list:
        return selectors.waterfall(**_waterfall_args(request, params))

    def represent(self, request: Request, params: dict, page: list) -> list:
        base = {key: request.query_params[key] for key in ("period", "from", "to") if key in request.query_params}
        base["group"] = params["group"]
        link = request.build_absolute_uri(reverse("forecast-waterfall-deals"))
        rows = []
        for row in page:
            where = dict(base)
            if params["group"] != GroupKind.COMPANY:
                where["key"] = "none" if row.key in (None, "") else str(row.key)
            rows.append(
                {
                    "key": row.key,
                    "open_from": {"count": row.open_from_count, "amount": row.open_from_amount},
                    "buckets": [
                        {
                            "name": bucket.name,
                            "side": bucket.side,
                            "count": bucket.count,
                            "amount": bucket.amount,
                            "deals": f"{link}?{urlencode({**where, 'bucket': bucket.name})}",
                        }
                        for bucket in row.buckets
                    ],
                    "open_to": {"count": row.open_to_count, "amount": row.open_to_amount},
                }
            )
        return WaterfallRowSerializer(rows, many=True).data


@extend_schema(
    parameters=[WaterfallDealsQuerySerializer],
    responses={200: history_page_of("WaterfallDealPage", WaterfallDealSerializer)},
    description="The deals of one bucket of one group's waterfall (the `deals` link of a bucket), by deal id, with "
    "their state at `from` and at `to`. Empty for a group the caller may not see.",
)
class WaterfallDealsView(HistoryReadView):
    query_serializer = WaterfallDealsQuerySerializer
    row_serializer = WaterfallDealSerializer

    def rows(self, request: Request, params: dict) -> list:
        return selectors.waterfall_deals(
            **_waterfall_args(request, params), key=params.get("key"), bucket=params["bucket"]
        )


@extend_schema(
    parameters=[SlippageQuerySerializer],
    responses={200: history_page_of("SlippagePage", SlippageRowSerializer)},
    description="Slippage of a period per group (SPEC §3a): of the deals in its open pipeline at its start, those "
    "open at its end (now, while it runs) with a close date after it, their amount and its share of the starting "
    "amount. Computed when asked from the deal history (not a snapshot of the recompute).",
)
class SlippageView(HistoryReadView):
    query_serializer = SlippageQuerySerializer

    def rows(self, request: Request, params: dict) -> list:
        return selectors.slippage(user=request.user, period=params["period"], group=params["group"])

    def represent(self, request: Request, params: dict, page: list) -> list:
        rows = [{**dataclasses.asdict(row), "slipped_share": row.slipped_share} for row in page]
        return SlippageRowSerializer(rows, many=True).data


@extend_schema(
    parameters=[PacingQuerySerializer],
    responses={200: PacingPageSerializer},
    description="Pacing of a period (SPEC §3a) per group: won to date against what the quota and the pace of the "
    "last four periods of the same kind expect by today (the median share of a period's wins reached by the same "
    "day), and the pipeline still needed beyond the learned weighted forecast at the trailing-four-quarter win "
    "rate, with every input. Company rows for admins; teams and owners by the metric rows' rule.",
)
class PacingView(ComputedReadView):
    def get(self, request: Request) -> Response:
        query = PacingQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        pacing = selectors.forecast_pacing(
            user=request.user, period=query.validated_data["period"], group=query.validated_data["group"]
        )
        paginator = ApiPagination()
        page = paginator.paginate_queryset(list(pacing.rows), request, view=self)
        envelope = paginator.envelope(PacingRowSerializer(page, many=True).data)
        results = envelope.pop("results")
        return Response(
            {
                **envelope,
                "computed_at": pacing.computed_at,
                "period": pacing.period.key,
                "day": pacing.day,
                "days": pacing.days,
                "results": results,
            }
        )


# --- The forecast call (SPEC §3a): submissions and adjustments (append-only), the roll-up, the trend ---------------

CALL_ORDERING = ["-id"]


@extend_schema_view(
    list=extend_schema(
        description="The forecast submissions you may see (your own; with REP_VISIBILITY=team your team's; a manager "
        "their teams' members' and team numbers; an admin all), newest first. Every submission is kept."
    ),
    create=extend_schema(
        request=ForecastSubmissionInputSerializer,
        responses={201: ForecastSubmissionSerializer},
        description="State your number for a month or quarter not yet ended, in a category; with `team`, a manager's "
        "number for a team they manage. A new submission supersedes (there is no update or delete). 400 for a "
        "negative amount, an unknown category or an ended (locked) period; 403 for someone else's number.",
    ),
)
class ForecastSubmissionViewSet(VisibleViewSet):
    """Forecast submissions: create, list, retrieve."""

    model = ForecastSubmission
    serializer_class = ForecastSubmissionSerializer
    filter_backends = [filters.DjangoFilterBackend, OrderingFilter]
    filterset_class = ForecastSubmissionFilter
    ordering_fields = ["submitted_at", "id"]

    def get_serializer_class(self):
        return ForecastSubmissionInputSerializer if self.action == "create" else ForecastSubmissionSerializer

    def visible_queryset(self):
        return selectors.visible_forecast_submissions(self.request.user).order_by(*CALL_ORDERING)

    def create(self, request: Request) -> Response:
        data = self.validated_data()
        someone = data.pop("user", None)
        if someone is not None and someone != request.user.pk:
            raise exceptions.PermissionDenied("You submit your own number (or, a manager, a team's): nobody else's.")
        submission = services.submit_forecast(user=request.user, **data)
        return self.detail_response(submission, status_code=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        description="The forecast adjustments you may see (by the rule of the submissions), newest first."
    ),
    create=extend_schema(
        request=ForecastAdjustmentInputSerializer,
        responses={201: ForecastAdjustmentSerializer},
        description="Replace a member's number from now on, with a note saying why: a manager for the members of "
        "the teams they manage, an admin for anyone and (`team`) for a manager's team number. 404 for a member "
        "you may not see, 403 for one you see but may not adjust, 400 without a note.",
    ),
)
class ForecastAdjustmentViewSet(VisibleViewSet):
    """Forecast adjustments: create, list, retrieve."""

    model = ForecastAdjustment
    serializer_class = ForecastAdjustmentSerializer
    filter_backends = [filters.DjangoFilterBackend, OrderingFilter]
    filterset_class = ForecastAdjustmentFilter
    ordering_fields = ["adjusted_at", "id"]

    def get_serializer_class(self):
        return ForecastAdjustmentInputSerializer if self.action == "create" else ForecastAdjustmentSerializer

    def visible_queryset(self):
        return selectors.visible_forecast_adjustments(self.request.user).order_by(*CALL_ORDERING)

    def create(self, request: Request) -> Response:
        data = self.validated_data()
        user_id, team_id = data.pop("user", None), data.pop("team", None)
        if team_id is not None:
            member = Team.objects.filter(pk=team_id).first()
        else:
            member = visible_users(request.user).filter(pk=user_id).first()
        if member is None:
            raise exceptions.NotFound("No such member or team.")
        adjustment = services.adjust_forecast(user=request.user, member=member, **data)
        return self.detail_response(adjustment, status_code=status.HTTP_201_CREATED)


@extend_schema(
    parameters=[RollupQuerySerializer],
    responses={200: RollupSerializer},
    description="The forecast call of a period and category (SPEC §3a): per team you may see, each member's "
    "computed value (from the latest recompute), their latest submission and adjustment, value (adjusted, else "
    "submitted, else computed; cumulative: best case ≥ commit ≥ won), won, quota and gap; the team's sums and its "
    "manager's number; the total (the company's, for an admin).",
)
class ForecastRollupView(ComputedReadView):
    def get(self, request: Request) -> Response:
        query = RollupQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rollup = selectors.forecast_rollup(user=request.user, **query.validated_data)
        return Response(rollup_representation(rollup))


@extend_schema(
    parameters=[TrendQuerySerializer],
    responses={200: TrendSerializer},
    description="The weekly trend of a period's forecast call (SPEC §3a): per lock instant up to this week's, the "
    "members' submitted and adjusted totals (a week's value: the latest submission before its lock, else carried "
    "forward, else computed), the computed commit and best case and the won amount as the deal history held them "
    "then, and the quota. Over the members you may see (of `team`, when given).",
)
class ForecastTrendView(ComputedReadView):
    def get(self, request: Request) -> Response:
        query = TrendQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        team = None
        if "team" in params:
            team = Team.objects.filter(pk=params["team"]).first()
            if team is None:
                raise exceptions.ValidationError({"team": ["No such team."]})
        weeks = selectors.forecast_trend(
            user=request.user, period=params["period"], category=params["category"], team=team
        )
        return Response(trend_representation(params["period"].key, params["category"], weeks))


@extend_schema(
    parameters=[CommitReliabilityQuerySerializer],
    responses={200: RepReliabilitySerializer(many=True)},
    description="Commit reliability (SPEC §3a): per member you may see with a commit submitted by the midpoint of "
    "any of the last ended periods, that commit against the won amount, with APE and bias per period and over them.",
)
class CommitReliabilityView(ComputedReadView):
    def get(self, request: Request) -> Response:
        query = CommitReliabilityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.commit_reliability(
            user=request.user, periods=query.validated_data["periods"], kind=query.validated_data["period_kind"]
        )
        return Response(RepReliabilitySerializer(rows, many=True).data)
