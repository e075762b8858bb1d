"""Read endpoints of the metrics (SPEC §4), as plain DRF APIViews over the snapshot selectors.

Every response carries the `computed_at` of the run it comes from (null before the first recompute). Query
parameters: `period` (`2026-11`, `2026-Q4`, `2026`) or `start` & `end` (YYYY-MM-DD, the periods of
`period_kind`, default month, lying within [start, end)); `group` (company, owner, team, pipeline, source);
and the filters `pipeline`, `team`, `owner`, `source`. A period with no row has nothing to report: for win
rates that means null (nothing closed).
"""

import logging
import re
from datetime import date
from typing import Any

from celery.result import AsyncResult
from django.urls import reverse
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from forecasting.models import GroupKind, Metric, MetricSnapshot, PeriodKind
from forecasting.selectors import SnapshotQuery, quota_metrics, visible_quotas, visible_snapshot_rows

logger = logging.getLogger(__name__)

PERIOD_PATTERN = re.compile(r"^(?P<year>\d{4})(?:-(?:(?P<month>\d{2})|Q(?P<quarter>[1-4])))?$")
ROW_KEYS = ["period_kind", "period_start", "period_end", "group_kind", "owner_id", "team_id", "pipeline_id", "source"]


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


class MetricQuerySerializer(serializers.Serializer):
    period = serializers.CharField(required=False)
    start = serializers.DateField(required=False)
    end = serializers.DateField(required=False)
    period_kind = serializers.ChoiceField(
        choices=[PeriodKind.MONTH, PeriodKind.QUARTER, PeriodKind.YEAR], required=False
    )
    group = serializers.ChoiceField(choices=GroupKind.values, default=GroupKind.COMPANY)
    pipeline = serializers.IntegerField(required=False, min_value=1)
    team = serializers.IntegerField(required=False, min_value=1)
    owner = serializers.IntegerField(required=False, min_value=1)
    source = serializers.CharField(required=False, allow_blank=True, max_length=100)

    def validate_period(self, value: str) -> tuple[str, date]:
        return parse_period(value)

    def validate(self, attrs: dict) -> dict:
        if "period" in attrs and ("start" in attrs or "end" in attrs):
            raise serializers.ValidationError("Give either period or start and end, not both.")
        if ("start" in attrs) != ("end" in attrs):
            raise serializers.ValidationError("Give start and end together.")
        if "start" in attrs and attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": "The end must be after the start."})
        return attrs


class SnapshotPagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 200


class SnapshotView(APIView):
    """A read of one metric's snapshot rows; subclasses name the metric and the values they show."""

    permission_classes = [IsAuthenticated]
    metric: str
    run = None  # the run the response reads, set by get()
    fields: list[str] | None = None  # the values shown; None means all
    per_stage = False  # funnel and stage metrics: their rows are per stage, keyed stage_id
    default_period_kind: str | None = None  # when no period is asked for (None: every period)
    allowed_groups = GroupKind.values
    has_periods = True  # False: the metric is over all history or as of now, and a period is refused

    def query(self, request: Request) -> SnapshotQuery:
        params = MetricQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if not self.has_periods and {"period", "start", "end"} & set(data):
            raise serializers.ValidationError({"period": "This metric is not per period."})
        if data["group"] not in self.allowed_groups:
            raise serializers.ValidationError({"group": f"Choose one of: {', '.join(self.allowed_groups)}."})
        period_kind, period_start = data.get("period", (None, None))
        if "start" in data:
            period_kind = data.get("period_kind", PeriodKind.MONTH)
        return SnapshotQuery(
            metric=self.metric,
            group_kind=data["group"],
            period_kind=period_kind or self.default_period_kind,
            period_start=period_start,
            range_start=data.get("start"),
            range_end=data.get("end"),
            pipeline_id=data.get("pipeline"),
            team_id=data.get("team"),
            owner_id=data.get("owner"),
            source=data.get("source"),
        )

    def row(self, snapshot: MetricSnapshot) -> dict[str, Any]:
        shown = {key: getattr(snapshot, key) for key in ROW_KEYS}
        if self.per_stage:
            shown["stage_id"] = snapshot.stage_id
        values = snapshot.values if self.fields is None else {name: snapshot.values.get(name) for name in self.fields}
        return shown | values

    def get(self, request: Request) -> Response:
        query = self.query(request)
        run, rows = visible_snapshot_rows(user=request.user, query=query)
        self.run = run
        paginator = SnapshotPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return Response(
            {
                "computed_at": run.computed_at if run else None,
                "metric": self.metric,
                "group": query.group_kind,
                "count": paginator.page.paginator.count,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "results": [self.row(snapshot) for snapshot in page],
            }
        )


class WinRateView(SnapshotView):
    metric = Metric.DEAL_OUTCOMES
    fields = ["won", "lost", "win_rate", "won_amount", "avg_won_amount"]


class SalesCycleView(SnapshotView):
    metric = Metric.DEAL_OUTCOMES
    fields = [
        "won",
        "lost",
        "won_cycle_days_mean",
        "won_cycle_days_median",
        "lost_cycle_days_mean",
        "lost_cycle_days_median",
    ]


class FunnelView(SnapshotView):
    """Without a period: the funnel of all deals; with one: of the deals created in it."""

    metric = Metric.FUNNEL
    per_stage = True
    default_period_kind = PeriodKind.ALL
    allowed_groups = [GroupKind.COMPANY, GroupKind.OWNER, GroupKind.TEAM, GroupKind.SOURCE]


class StageTimeView(SnapshotView):
    """Over all completed stays in history, and the open deals in each stage now."""

    metric = Metric.STAGE_TIME
    per_stage = True
    has_periods = False
    allowed_groups = [GroupKind.COMPANY, GroupKind.OWNER, GroupKind.TEAM, GroupKind.SOURCE]


class LeadMetricsView(SnapshotView):
    metric = Metric.LEADS
    allowed_groups = [GroupKind.COMPANY, GroupKind.OWNER, GroupKind.TEAM, GroupKind.SOURCE]


class StaleDealsView(SnapshotView):
    """One row per stale deal (rotting, no next step, or both) that the user may see; `group` does not apply."""

    metric = Metric.STALE
    has_periods = False

    def query(self, request: Request) -> SnapshotQuery:
        query = super().query(request)
        return SnapshotQuery(
            metric=self.metric,
            group_kind=GroupKind.OWNER,
            pipeline_id=query.pipeline_id,
            team_id=query.team_id,
            owner_id=query.owner_id,
            source=query.source,
        )

    def row(self, snapshot: MetricSnapshot) -> dict[str, Any]:
        return {
            "deal_id": snapshot.deal_id,
            "owner_id": snapshot.owner_id,
            "team_id": snapshot.team_id,
            "pipeline_id": snapshot.pipeline_id,
            "stage_id": snapshot.stage_id,
            "source": snapshot.source,
            **snapshot.values,
        }


class ForecastView(SnapshotView):
    """The forecast rows, with past due and the learned probabilities (w, l, k, p0, p) of the same run."""

    metric = Metric.FORECAST

    def get(self, request: Request) -> Response:
        response = super().get(request)
        query = self.query(request)
        group_only = SnapshotQuery(
            metric=Metric.PAST_DUE,
            group_kind=query.group_kind,
            pipeline_id=query.pipeline_id,
            team_id=query.team_id,
            owner_id=query.owner_id,
            source=query.source,
        )
        if self.run is None:
            response.data |= {"past_due": [], "learned_probabilities": []}
            return response
        # From the same run as the forecast rows, even if a recompute committed in between.
        _, past_due = visible_snapshot_rows(user=request.user, query=group_only, run=self.run)
        response.data["past_due"] = [self.row(snapshot) for snapshot in past_due]
        if query.group_kind != GroupKind.PIPELINE:
            learned_query = SnapshotQuery(
                metric=Metric.LEARNED_PROBABILITY,
                group_kind=query.group_kind,
                pipeline_id=query.pipeline_id,
                team_id=query.team_id,
                owner_id=query.owner_id,
                source=query.source,
            )
            _, learned = visible_snapshot_rows(user=request.user, query=learned_query, run=self.run)
            response.data["learned_probabilities"] = [
                {"pipeline_id": row.pipeline_id, "stage_id": row.stage_id, "group_kind": row.group_kind}
                | {"owner_id": row.owner_id, "team_id": row.team_id, "source": row.source}
                | row.values
                for row in learned
            ]
        return response


class ForecastAccuracyView(SnapshotView):
    """Per ended period: the forecast kept at its start (configured and learned) against the won amount (APE)."""

    metric = Metric.FORECAST_ACCURACY


class RecomputeView(APIView):
    """POST: queue a full recompute now (managers and admins); answers 202 with a URL to follow it."""

    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        from forecasting.tasks import recompute_metrics_task

        if not (request.user.is_admin or request.user.is_manager):
            return Response({"detail": "Only managers and admins may start a recompute."}, status=403)
        try:
            result = recompute_metrics_task.apply_async(kwargs={"reason": "request"}, retry=False)
        except Exception:  # the broker is away: say so rather than fail with a 500
            logger.warning("could not queue a requested metrics recompute", exc_info=True)
            return Response({"detail": "The task queue is unavailable; try again later."}, status=503)
        status_url = request.build_absolute_uri(reverse("metrics-recompute-status", args=[result.id]))
        return Response({"task_id": result.id, "status_url": status_url}, status=status.HTTP_202_ACCEPTED)


class RecomputeStatusView(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request: Request, task_id: str) -> Response:
        if not (request.user.is_admin or request.user.is_manager):
            return Response({"detail": "Only managers and admins may follow a recompute."}, status=403)
        result = AsyncResult(str(task_id))
        try:
            state = result.state
            run_id = result.result if state == "SUCCESS" else None
        except Exception:  # the result backend is away
            logger.warning("could not read the state of metrics recompute %s", task_id, exc_info=True)
            return Response({"detail": "The task queue is unavailable; try again later."}, status=503)
        return Response({"task_id": str(task_id), "state": state, "run_id": run_id})


class QuotaSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    user_id = serializers.IntegerField(allow_null=True)
    team_id = serializers.IntegerField(allow_null=True)
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)


class QuotaListView(APIView):
    """The quotas the user may see (their own, their teams'), each with its attainment, coverage and deals needed.

    Quotas are set up by admins in the Django admin; a quota added since the last recompute has `metrics` null.
    """

    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        quotas = list(visible_quotas(user=request.user).order_by("-period_start", "id"))
        run, metrics = quota_metrics(quota_ids=[quota.pk for quota in quotas])
        results = [QuotaSerializer(quota).data | {"metrics": metrics.get(quota.pk)} for quota in quotas]
        return Response(
            {"computed_at": run.computed_at if run else None, "next": None, "previous": None, "results": results}
        )
