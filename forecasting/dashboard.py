"""The forecast dashboard's read model: everything the page shows, read from ONE complete metrics run.

Nothing here computes a metric: it picks the snapshot rows of the latest run through
`forecasting.selectors.visible_snapshot_rows` (so a rep sees only their own rows, a manager their teams', an
admin the company's) and arranges them for the page. The number of queries does not depend on the data.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone

from accounts.models import Team, User
from config.templating import kept_reverse
from forecasting.models import GroupKind, Metric, MetricsRun, PeriodKind
from forecasting.periods import Period
from forecasting.selectors import (
    SnapshotQuery,
    backtest_summary,
    latest_run,
    stale_reasons,
    visible_snapshot_rows,
    waterfall,
)
from pipeline.models import DealStatus, ForecastCategory, StageKind
from pipeline.selectors import STALE_REASONS, history_starts_at, visible_deals, visible_pipelines, visible_stages

STALE_DEALS_SHOWN = 12
ACCURACY_PERIODS_SHOWN = 6


# --- Whose numbers ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Whose numbers the dashboard shows: the company (admins), one managed team (managers), or one person."""

    group_kind: str
    label: str
    team_id: int | None = None
    owner_id: int | None = None

    @property
    def filters(self) -> dict[str, int]:
        return {key: value for key, value in (("team_id", self.team_id), ("owner_id", self.owner_id)) if value}


def scopes_for(user: User) -> list[Scope]:
    """The scopes `user` may choose between, the default first: an admin the company, a manager each team they
    manage, anyone else (and a manager of no team) their own numbers."""
    if user.is_admin:
        return [Scope(GroupKind.COMPANY, "Whole company")]
    if user.is_manager:
        teams = [Scope(GroupKind.TEAM, team.name, team_id=team.pk) for team in Team.objects.filter(managers=user)]
        if teams:
            return teams
    return [Scope(GroupKind.OWNER, "My numbers", owner_id=user.pk)]


# --- The dashboard ----------------------------------------------------------------------------------------------------


@dataclass
class Dashboard:
    run: MetricsRun | None
    period: Period
    scope: Scope
    pipeline: Any = None
    pipelines: list = field(default_factory=list)
    forecast: dict = field(default_factory=dict)
    past_due: dict = field(default_factory=dict)
    quota: dict | None = None
    outcomes: dict = field(default_factory=dict)
    reps: list[dict] = field(default_factory=list)
    funnel: list[dict] = field(default_factory=list)
    stage_times: list[dict] = field(default_factory=list)
    bottleneck: dict | None = None
    stale_count: int = 0
    stale_reasons: dict = field(default_factory=dict)  # forecasting.selectors.stale_reasons
    stale: list[dict] = field(default_factory=list)
    leads: dict = field(default_factory=dict)
    accuracy: list[dict] = field(default_factory=list)
    # The backtest of the last ended months (quarters for a quarter or a year): per period, its rows at the start
    # and at the last Monday inside it; and WAPE and bias at the periods' starts over every backtested period.
    backtest: list[dict] = field(default_factory=list)
    backtest_summary: dict | None = None
    # The calibration of the pipeline's stage probabilities over all closed deals: the pipeline's row, each stage's
    # (with its Stage), and the stage whose configured probability is furthest from how often its deals won.
    calibration: dict | None = None
    calibration_stages: list[dict] = field(default_factory=list)
    calibration_worst: dict | None = None
    # What the learned probabilities of the run were learned with: lookback_days (0 = all history) and k.
    learning: dict | None = None
    funnel_of_period: bool = False

    def links(self) -> dict:
        """The deal table's address behind each number that is a sum over deals (SPEC §3's definition, this
        period and scope): following one lists exactly those deals, and the table's totals are the number."""
        period, scope = self.period, self.scope
        group = {"team": scope.team_id, "owner": scope.owner_id}
        closed = {**group, "closed_after": period.start, "closed_before": period.end}
        expected = {
            **group,
            "status": DealStatus.OPEN,
            "expected_close_after": period.start,
            "expected_close_before": period.end - timedelta(days=1),
        }
        cohort = {"created_after": period.start, "created_before": period.end} if self.funnel_of_period else {}
        # Past due: before the run's "today", which the number was computed with (not the reader's today).
        today = self.past_due.get("today")
        past_due = None
        if today:
            before = date.fromisoformat(today) - timedelta(days=1)
            past_due = deal_table_url(**group, status=DealStatus.OPEN, expected_close_before=before)
        return {
            "won": deal_table_url(**closed, status=DealStatus.WON),
            "lost": deal_table_url(**closed, status=DealStatus.LOST),
            "closed": deal_table_url(**closed),
            "pipeline": deal_table_url(**expected),
            "commit": deal_table_url(**expected, forecast_category=[ForecastCategory.COMMIT]),
            "best_case": deal_table_url(
                **expected, forecast_category=[ForecastCategory.COMMIT, ForecastCategory.BEST_CASE]
            ),
            "stale": deal_table_url(**group, stale="true"),
            "stale_reasons": {reason: deal_table_url(**group, stale=reason) for reason in STALE_REASONS},
            "past_due": past_due,
            "funnel": {
                row["stage"].pk: deal_table_url(**group, **cohort, reached_stage=row["stage"].pk) for row in self.funnel
            },
            "reps": {
                rep["owner_id"]: deal_table_url(
                    owner=rep["owner_id"], closed_after=period.start, closed_before=period.end
                )
                for rep in self.reps
            },
        }

    def chart_data(self) -> dict:
        """The numbers the charts draw (read by static/js/dashboard.js from a JSON script block)."""
        forecast = self.forecast
        links = self.links()
        return {
            "forecast": {
                "labels": [
                    "Won",
                    "Commit",
                    "Best case",
                    "Pipeline",
                    ["Weighted", "configured"],
                    ["Weighted", "learned"],
                ],
                "values": [
                    _float(forecast.get(name))
                    for name in (
                        "won_amount",
                        "commit",
                        "best_case",
                        "pipeline",
                        "weighted_configured",
                        "weighted_learned",
                    )
                ],
                "quota": _float(self.quota["quota"]) if self.quota else None,
                # A bar opens the deal table of its deals; the weighted sums are not a sum of amounts: no link.
                "links": [links["won"], links["commit"], links["best_case"], links["pipeline"], None, None],
            },
            "funnel": {
                "labels": [row["stage"].name for row in self.funnel],
                "reached": [row["reached"] for row in self.funnel],
                "conversion": [row["conversion"] for row in self.funnel],
                "links": [links["funnel"][row["stage"].pk] for row in self.funnel],
            },
            "stage_time": {
                "labels": [row["stage"].name for row in self.stage_times],
                "median": [round(row["days_median"] or 0, 1) for row in self.stage_times],
                "bottleneck": next((i for i, row in enumerate(self.stage_times) if row["is_bottleneck"]), None),
            },
            "reliability": {
                name: [
                    {"x": round(entry["mean_p"], 4), "y": round(entry["win_rate"], 4), "count": entry["count"]}
                    for entry in (self.calibration or {}).get(f"bins_{name}", [])
                ]
                for name in ("configured", "learned")
            },
            "reps": {
                "labels": [row["name"] for row in self.reps],
                "win_rate": [None if row["win_rate"] is None else round(row["win_rate"] * 100, 1) for row in self.reps],
            },
        }


def deal_table_url(**params: Any) -> str:
    """The deal table's address with `params` (None dropped, a list repeated)."""
    kept = {name: value for name, value in params.items() if value not in (None, "", [])}
    return f"{kept_reverse('pipeline:deal_table')}?{urlencode(kept, doseq=True)}"


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _backtest(rows, period: Period, *, user: User, scope: Scope, run: MetricsRun) -> tuple[list[dict], dict | None]:
    """The backtest panel: the last ended periods of the dashboard's kind (a year's: quarters), each with its row at
    the start and at its last Monday, and WAPE and bias at the periods' starts over every one backtested. Two
    queries."""
    kind = period.kind if period.kind in (PeriodKind.MONTH, PeriodKind.QUARTER) else PeriodKind.QUARTER
    backtest = rows(Metric.BACKTEST, period_kind=kind)
    recent: dict[date, list] = {}
    # At most 14 instants a quarter (its start and 13 Mondays): enough rows for the periods shown.
    for row in backtest.order_by("-period_start")[: ACCURACY_PERIODS_SHOWN * 14]:
        if row.period_start in recent or len(recent) < ACCURACY_PERIODS_SHOWN:
            recent.setdefault(row.period_start, []).append(row.values)
    shown = []
    for start, instants in recent.items():
        instants.sort(key=lambda values: values["week"])
        shown.append({"period": Period.of(kind, start), "start": instants[0], "last": instants[-1]})
    every_period = SnapshotQuery(metric=Metric.BACKTEST, group_kind=scope.group_kind, period_kind=kind, **scope.filters)
    summary = backtest_summary(user=user, query=every_period, run=run)
    at_start = next((entry for entry in summary if entry["week"] == 0), None)
    return shown, at_start and {**at_start, "kind": kind}


def _calibration(board: Dashboard, found, stages: dict) -> None:
    """The calibration panel from the pipeline's all-time calibration rows (one query): the pipeline's reliability,
    each open stage's, and the stage whose deals won least like its configured probability said."""
    for row in found:
        if row.stage_id is None:
            board.calibration = row.values
        elif row.stage_id in stages:
            board.calibration_stages.append({"stage": stages[row.stage_id], **row.values})
    board.calibration_stages.sort(key=lambda row: row["stage"].order)
    board.calibration_worst = max(
        board.calibration_stages,
        key=lambda row: abs(row["mean_configured"] - row["win_rate"]),
        default=None,
    )


def build_dashboard(
    *, user: User, period: Period, scope: Scope, pipeline_id: int | None = None, funnel_of_period: bool = False
) -> Dashboard:
    """Everything the dashboard shows for `scope` in `period`, from the latest complete run (empty before one).

    The funnel is over all deals, or with `funnel_of_period` over the cohort of deals created in `period`.
    """
    pipelines = list(visible_pipelines(user))
    pipeline = next((p for p in pipelines if p.pk == pipeline_id), pipelines[0] if pipelines else None)
    run = latest_run()
    board = Dashboard(
        run=run, period=period, scope=scope, pipeline=pipeline, pipelines=pipelines, funnel_of_period=funnel_of_period
    )
    if run is None:
        return board

    def rows(metric: str, **query: Any):
        query = {"group_kind": scope.group_kind, **scope.filters, **query}
        return visible_snapshot_rows(user=user, query=SnapshotQuery(metric=metric, **query), run=run)[1]

    in_period = {"period_kind": period.kind, "period_start": period.start}
    forecast = rows(Metric.FORECAST, **in_period).first()
    board.forecast = forecast.values if forecast else {}
    past_due = rows(Metric.PAST_DUE).first()
    board.past_due = past_due.values if past_due else {}
    outcomes = rows(Metric.DEAL_OUTCOMES, **in_period).first()
    board.outcomes = outcomes.values if outcomes else {}
    leads = rows(Metric.LEADS, **in_period).first()
    board.leads = leads.values if leads else {}
    board.quota = _quota(rows, scope=scope, period=period, forecast=board.forecast)
    board.reps = _reps(user=user, run=run, scope=scope, in_period=in_period)
    accuracy = list(rows(Metric.FORECAST_ACCURACY, period_kind=period.kind).order_by("-period_start"))
    board.accuracy = [
        {"period": Period.of(period.kind, row.period_start), **row.values} for row in accuracy[:ACCURACY_PERIODS_SHOWN]
    ]
    board.backtest, board.backtest_summary = _backtest(rows, period, user=user, scope=scope, run=run)
    if pipeline is not None:
        stages = {stage.pk: stage for stage in visible_stages(user).filter(pipeline=pipeline, kind=StageKind.OPEN)}
        cohort = in_period if funnel_of_period else {"period_kind": PeriodKind.ALL}
        funnel = rows(Metric.FUNNEL, pipeline_id=pipeline.pk, **cohort)
        learned = {row.stage_id: row.values for row in rows(Metric.LEARNED_PROBABILITY, pipeline_id=pipeline.pk)}
        if learned:
            some = next(iter(learned.values()))
            board.learning = {"lookback_days": some["lookback_days"], "k": some["k"]}
        board.funnel = sorted(
            (
                {"stage": stages[row.stage_id], "learned": learned.get(row.stage_id), **row.values}
                for row in funnel
                if row.stage_id in stages
            ),
            key=lambda row: row["stage"].order,
        )
        _calibration(board, rows(Metric.CALIBRATION, period_kind=PeriodKind.ALL, pipeline_id=pipeline.pk), stages)
        times = rows(Metric.STAGE_TIME, pipeline_id=pipeline.pk)
        board.stage_times = sorted(
            ({"stage": stages[row.stage_id], **row.values} for row in times if row.stage_id in stages),
            key=lambda row: row["stage"].order,
        )
        slowest = max(
            (row for row in board.stage_times if row["days_median"] is not None),
            key=lambda row: row["days_median"],
            default=None,
        )
        for row in board.stage_times:
            row["is_bottleneck"] = row is slowest
        board.bottleneck = slowest
    _stale(board, user=user, rows=rows)
    return board


def _quota(rows, *, scope: Scope, period: Period, forecast: dict) -> dict | None:
    """The quota of the scope for exactly this period, with attainment, coverage and deals needed.

    The company has no quota of its own: an admin sees the teams' quotas for the period added up (attainment and
    coverage recomputed from the sums, deals needed as the sum of each team's).
    """
    group_kind = GroupKind.TEAM if scope.group_kind == GroupKind.COMPANY else scope.group_kind
    quotas = [
        row.values
        for row in rows(Metric.QUOTA, group_kind=group_kind, period_kind=PeriodKind.QUOTA, period_start=period.start)
        if row.period_end == period.end
    ]
    if not quotas:
        return None
    if len(quotas) == 1:
        return quotas[0]
    total = sum(Decimal(q["quota"]) for q in quotas)
    won = sum(Decimal(q["won_amount"]) for q in quotas)
    open_amount = sum(Decimal(q["open_amount"]) for q in quotas)
    remaining = max(total - won, Decimal(0))
    needed = [q["deals_needed"] for q in quotas]
    return {
        "quota": str(total),
        "won_amount": str(won),
        "attainment": float(won / total) if total else None,
        "open_amount": str(open_amount),
        "remaining": str(remaining),
        "coverage": float(open_amount / remaining) if remaining else None,
        "deals_needed": None if None in needed else sum(needed),
    }


def _reps(*, user: User, run: MetricsRun, scope: Scope, in_period: dict) -> list[dict]:
    """Win rate and average won deal size of each person in the scope who closed a deal in the period."""
    query = SnapshotQuery(metric=Metric.DEAL_OUTCOMES, group_kind=GroupKind.OWNER, owner_id=scope.owner_id, **in_period)
    rows = list(visible_snapshot_rows(user=user, query=query, run=run)[1])
    people = {person.pk: person for person in User.objects.filter(pk__in=[row.owner_id for row in rows])}
    reps = []
    for row in rows:
        person = people.get(row.owner_id)
        if person is None or (scope.team_id and person.team_id != scope.team_id):
            continue
        reps.append(
            {
                "name": str(person),
                "owner_id": person.pk,
                **row.values,
                "avg_won_amount": _money(row.values.get("avg_won_amount")),
            }
        )
    return sorted(reps, key=lambda rep: (-(rep["win_rate"] or 0), rep["name"]))


def stalest_first(stale: QuerySet) -> QuerySet:
    """Rows of the stale-deals metric, longest in their stage first: the order `metricsnapshot_stalest_idx` holds,
    so that the first of a run are read from it."""
    return stale.order_by(F("values__days_in_stage").desc(nulls_last=True), "deal_id")


def _stale(board: Dashboard, *, user: User, rows) -> None:
    """The stalest deals of the scope (longest in their stage first), how many there are (each once) and how many
    are stale for each reason."""
    stale = rows(Metric.STALE, group_kind=GroupKind.OWNER)
    board.stale_reasons = stale_reasons(rows(Metric.STALE_TOTALS, group_kind=GroupKind.OWNER))
    board.stale_count = board.stale_reasons["total"]["count"]
    top = list(stalest_first(stale)[:STALE_DEALS_SHOWN])
    deals = visible_deals(user).filter(pk__in=[row.deal_id for row in top]).select_related("stage", "owner")
    deals = {deal.pk: deal for deal in deals}
    board.stale = [{"deal": deals[row.deal_id], **row.values} for row in top if row.deal_id in deals]


# --- The pipeline waterfall of the period: "this period since last week" -------------------------------------------

WATERFALL_LABELS = {
    "created": "Created",
    "reopened": "Reopened",
    "reassigned_in": "Reassigned in",
    "pulled_in": "Pulled in",
    "won": "Won",
    "lost": "Lost",
    "deleted": "Deleted",
    "reassigned_out": "Reassigned out",
    "pushed_out": "Pushed out",
    "pulled_out": "Pulled out",
    "amount_up": "Amount up",
    "amount_down": "Amount down",
    "unchanged": "Unchanged",
}


@dataclass(frozen=True)
class WaterfallPanel:
    """The dashboard's waterfall of the scope's group for the period from `at_from` to `at_to`, or why not."""

    at_from: datetime
    at_to: datetime
    from_day: date
    to_day: date
    note: str = ""  # what was adjusted or why nothing is drawn
    row: Any = None  # forecasting.selectors.WaterfallRow, None when nothing to draw
    deals_query: dict = field(default_factory=dict)  # the drill-down's query parameters, without the bucket

    def bars(self) -> list[dict]:
        """open(A), every bucket that moved the pipeline, open(B): what the chart draws, with each bar's span."""
        if self.row is None:
            return []
        level = float(self.row.open_from_amount)
        bars = [{"label": "Start", "bucket": None, "span": [0, level], "count": self.row.open_from_count}]
        for bucket in self.row.buckets:
            if not bucket.count or bucket.name == "unchanged":
                continue
            sign = -1 if bucket.side == "out" or bucket.name == "amount_down" else 1
            after = level + sign * float(bucket.amount)
            bars.append(
                {
                    "label": WATERFALL_LABELS[bucket.name],
                    "bucket": bucket.name,
                    "span": [min(level, after), max(level, after)],
                    "count": bucket.count,
                    "side": "out" if sign < 0 else "in",
                }
            )
            level = after
        bars.append({"label": "Now" if self.to_day >= timezone.localdate() else "End", "bucket": None,
                     "span": [0, float(self.row.open_to_amount)], "count": self.row.open_to_count})  # fmt: skip
        return bars


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, ZoneInfo(settings.TIME_ZONE))


def waterfall_panel(*, user: User, period: Period, scope: Scope, from_day: date | None, to_day: date | None):
    """The waterfall of `period` for `scope` from the start of `from_day` (default: a week ago) to the end of
    `to_day` (default: today; now at the latest), both inside the recorded history."""
    today = timezone.localdate()
    to_day = min(to_day or today, today)
    from_day = from_day or today - timedelta(days=7)
    notes = []
    starts = history_starts_at()
    if starts is not None and _local_midnight(from_day) < starts:
        from_day = starts.astimezone(ZoneInfo(settings.TIME_ZONE)).date() + timedelta(days=1)
        notes.append(f"The history begins on {starts:%b %-d, %Y}: the waterfall starts on {from_day:%b %-d}.")
    at_from, at_to = _local_midnight(from_day), min(_local_midnight(to_day + timedelta(days=1)), timezone.now())
    panel = {"at_from": at_from, "at_to": at_to, "from_day": from_day, "to_day": to_day}
    if starts is None or at_from >= at_to:
        notes.append("Nothing to compare: pick a start before the end." if starts else "No history is recorded yet.")
        return WaterfallPanel(**panel, note=" ".join(notes))
    key = scope.team_id or scope.owner_id
    rows = waterfall(user=user, period=period, at_from=at_from, at_to=at_to, group=scope.group_kind)
    row = next((row for row in rows if row.key == key), None)
    query = {"period": period.key, "from": at_from.isoformat(), "to": at_to.isoformat(), "group": scope.group_kind}
    if key is not None:
        query["key"] = str(key)
    if row is None:
        notes.append(f"No open deals expected to close in {period.label} at either time.")
    return WaterfallPanel(**panel, note=" ".join(notes), row=row, deals_query=query)
