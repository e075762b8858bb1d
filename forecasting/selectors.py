"""Reads of the metric snapshots, limited to what the user may see (SPEC §2).

Readers always read the latest complete `MetricsRun`, so every answer comes from one whole recompute.
Visibility of a row follows the group it describes: a row about one owner (and each stale-deal row, whose
owner_id is the deal's) is visible to whoever may see that owner's records; a row about a team to the team's
managers (and its members when REP_VISIBILITY is "team"); company-, pipeline- and source-wide rows, which add
up everyone's deals, to admins only.
"""

import dataclasses
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, DecimalField, F, IntegerField, Q, QuerySet, Sum, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Abs, Cast, Coalesce
from django.utils import timezone

from accounts.models import Role, Team, User
from accounts.selectors import owners_visible_to
from forecasting.models import (
    CallCategory,
    CallTrendPoint,
    ForecastAdjustment,
    ForecastSubmission,
    GroupKind,
    Metric,
    MetricSnapshot,
    MetricsRun,
    MetricsSettings,
    PeriodKind,
    Quota,
    RunStatus,
)
from forecasting.periods import ALL_TIME, Period, Window
from pipeline.models import Pipeline, Stage, StageKind
from pipeline.selectors import STALE_REASONS


@dataclass(frozen=True)
class LearningSettings:
    """The settings of the learned probabilities in effect, and whether an admin set them (else the environment's)."""

    lookback_days: int  # 0: all history
    prior_strength: int
    set_by_admin: bool


def learning_settings() -> LearningSettings:
    """Those an admin set on the settings page (the `MetricsSettings` row), else the environment's
    METRICS_LOOKBACK_DAYS and METRICS_PRIOR_STRENGTH."""
    stored = MetricsSettings.objects.filter(pk=1).first()
    if stored is not None:
        return LearningSettings(stored.lookback_days, stored.prior_strength, set_by_admin=True)
    return LearningSettings(settings.METRICS_LOOKBACK_DAYS, settings.METRICS_PRIOR_STRENGTH, set_by_admin=False)


def learning_of_run(run: MetricsRun) -> LearningSettings | None:
    """The learning settings `run`'s learned probabilities were computed with (None when it has none: no open
    stage), which may differ from those in effect now until the next recompute."""
    values = (
        MetricSnapshot.objects.filter(run=run, metric=Metric.LEARNED_PROBABILITY).values_list("values", flat=True)
    ).first()
    if values is None:
        return None
    return LearningSettings(values["lookback_days"], int(values["k"]), set_by_admin=False)


def latest_run() -> MetricsRun | None:
    """The newest complete recompute, or None before the first one."""
    return MetricsRun.objects.filter(status=RunStatus.COMPLETE).order_by("-computed_at", "-id").first()


# Numbers older than this many recompute intervals are out of date: the scheduled recompute is late, so the broker or
# the workers are away (SPEC §7: the metrics say how stale they are).
STALE_AFTER_INTERVALS = 2


@dataclass(frozen=True)
class Freshness:
    """How old the numbers of a run are: what the dashboard and the metrics API tell their readers."""

    computed_at: datetime | None  # None before the first recompute
    age_seconds: int | None
    out_of_date: bool


def freshness(run: MetricsRun | None, *, now: datetime | None = None) -> Freshness:
    """The age of `run`'s numbers at `now` (default: now), and whether the scheduled recompute is late for them.

    The numbers are as fresh as the run's last refresh (`as_of`); they are out of date when the full recompute,
    which also moves what time alone changes (ages, past due, staleness), is late.
    """
    if run is None:
        return Freshness(computed_at=None, age_seconds=None, out_of_date=False)
    now = now or timezone.now()
    late = (now - run.computed_at).total_seconds() > STALE_AFTER_INTERVALS * settings.METRICS_RECOMPUTE_SECONDS
    return Freshness(
        computed_at=run.as_of,
        age_seconds=max(int((now - run.as_of).total_seconds()), 0),
        out_of_date=late,
    )


@dataclass(frozen=True)
class SnapshotQuery:
    """What a reader asks for: one metric, a period (or a range of periods), a group, optional filters."""

    metric: str
    group_kind: str = GroupKind.COMPANY
    period_kind: str | None = None
    period_start: date | None = None
    range_start: date | None = None  # periods lying within [range_start, range_end)
    range_end: date | None = None
    pipeline_id: int | None = None
    team_id: int | None = None
    owner_id: int | None = None
    source: str | None = None
    window: Window | None = None  # a custom range or all time: one row per group (`metric_rows`)


GROUP_FILTERS = ("pipeline_id", "team_id", "owner_id", "source")
READ_ORDER = ("period_start", "owner_id", "team_id", "pipeline_id", "source", "stage_id", "deal_id")


def _visible(rows: QuerySet[MetricSnapshot], user: User) -> QuerySet[MetricSnapshot]:
    owners = owners_visible_to(user)
    if owners is None:
        return rows
    if not user.is_active:
        return rows.none()
    return rows.filter(
        Q(group_kind=GroupKind.OWNER, owner_id__in=owners)
        | Q(group_kind=GroupKind.TEAM, team_id__in=_teams_seen_by(user))
    )


def _teams_seen_by(user: User) -> QuerySet:
    """Teams whose team-wide rows `user` may see: those they manage, and their own when reps see their team's."""
    teams = Q(managers=user)
    if settings.REP_VISIBILITY == "team" and user.team_id:
        teams |= Q(pk=user.team_id)
    return Team.objects.filter(teams).values("pk")


def visible_snapshot_rows(
    *, user: User, query: SnapshotQuery, run: MetricsRun | None = None
) -> tuple[MetricsRun | None, QuerySet[MetricSnapshot]]:
    """The run (default: the latest) and its rows answering `query` that `user` may see, in period/group order.

    Pass the `run` of an earlier read to combine several metrics from one and the same recompute.
    """
    run = run or latest_run()
    if run is None:
        return None, MetricSnapshot.objects.none()
    rows = MetricSnapshot.objects.filter(run=run, metric=query.metric, group_kind=query.group_kind)
    if query.period_kind is not None:
        rows = rows.filter(period_kind=query.period_kind)
    if query.period_start is not None:
        rows = rows.filter(period_start=query.period_start)
    if query.range_start is not None:
        rows = rows.filter(period_start__gte=query.range_start)
    if query.range_end is not None:
        rows = rows.filter(period_end__lte=query.range_end)
    for field in GROUP_FILTERS:
        value = getattr(query, field)
        if value is not None:
            rows = rows.filter(**{field: value})
    rows = _visible(rows, user).order_by(*READ_ORDER)
    return run, rows


# --- Reads of one period: every visible group, and windows computed live --------------------------------------------

GROUP_COLUMN = {GroupKind.OWNER: "owner_id", GroupKind.TEAM: "team_id", GroupKind.PIPELINE: "pipeline_id"}
GROUP_COLUMN |= {GroupKind.SOURCE: "source"}


@dataclass(frozen=True)
class MetricRows:
    """What `metric_rows` read: the latest run (None before the first), the rows, and for rows computed live the
    time they were computed at (None for a run's rows)."""

    run: MetricsRun | None
    rows: Sequence[MetricSnapshot]
    live_at: datetime | None = None


def metric_rows(*, user: User, query: SnapshotQuery) -> MetricRows:
    """The rows answering `query` that `user` may see, as the metrics API serves them.

    A window (`query.window`) has one row per group: a range that is exactly a month, quarter or year, and all time
    for the funnel, are read from the latest run's snapshot; any other is computed now, in SQL over the indexed base
    tables (the family's own SQL with the window as its one period, `forecasting.metrics.Live`), over the deals of
    the groups `user` may see only. A read of one period (a window, `period_start`, or the funnel's all time) of a
    metric in `forecasting.metrics.FILLED` answers a row for every group `user` may see, one with nothing to count
    holding counts 0 and rates null (SPEC §3); sources, open-ended, are the ones the period's rows have.
    """
    from forecasting import metrics  # which reads this module's learning settings

    window = query.window
    if window is not None:
        period = window.calendar_period()
        if period is not None:
            query = dataclasses.replace(query, window=None, period_kind=period.kind, period_start=period.start)
        elif window.kind == ALL_TIME and query.metric == Metric.FUNNEL:
            query = dataclasses.replace(query, window=None, period_kind=PeriodKind.ALL, period_start=None)
    if query.window is None:
        run, rows = visible_snapshot_rows(user=user, query=query)
        one_period = query.period_start is not None or query.period_kind == PeriodKind.ALL
        if run is None or not one_period or query.metric not in metrics.FILLED:
            return MetricRows(run, rows)
        groups = _groups_of(user, query)
        return MetricRows(run, _with_every_group(query, list(rows), groups, run=run, at=run.as_of))
    if query.metric not in metrics.LIVE:
        raise ValueError(f"{query.metric} is not computed for a window")
    run = latest_run()
    now = timezone.now()
    groups = _groups_of(user, query)
    rows = [] if groups.none else _live(query, groups, run=run, at=now)
    return MetricRows(run, _with_every_group(query, rows, groups, run=run, at=now), live_at=now)


def stale_reasons(totals: QuerySet[MetricSnapshot]) -> dict[str, dict[str, Any]]:
    """Count and amount of stale deals by reason, and in `total` each deal once (a deal stale for several reasons is
    one row), added up from `totals`: a run's stale totals (`Metric.STALE_TOTALS`, one row per owner, team, pipeline
    and source), visible and filtered as the stale deals' own rows would be. One aggregate over those few rows,
    whatever the number of stale deals."""
    aggregates: dict[str, Any] = {}
    for key in ("total", *STALE_REASONS):
        count = Cast(KT(f"values__{key}_count"), IntegerField())
        amount = Cast(KT(f"values__{key}_amount"), DecimalField(max_digits=20, decimal_places=2))
        aggregates[f"{key}_count"] = Coalesce(Sum(count), Value(0))
        aggregates[f"{key}_amount"] = Coalesce(Sum(amount), Value(Decimal(0)))
    sums = totals.order_by().aggregate(**aggregates)
    return {key: {"count": sums[f"{key}_count"], "amount": sums[f"{key}_amount"]} for key in ("total", *STALE_REASONS)}


def _intrinsic(metric: str) -> tuple[str, ...]:
    """Group columns a metric's rows always fill: a funnel row is a pipeline's."""
    return ("pipeline_id",) if metric == Metric.FUNNEL else ()


@dataclass(frozen=True)
class _Groups:
    """The groups of a read's kind that its caller may see and its filters keep."""

    none: bool = False  # no row of this kind is visible, or the filters keep none
    keys: tuple[dict[str, Any], ...] | None = ()  # the groups answered even when empty; None: not enumerated
    owners: tuple[int, ...] | None = None  # whose deals a live read reads (None: everyone's)
    teams: tuple[int, ...] | None = None


def _groups_of(user: User, query: SnapshotQuery) -> _Groups:
    """Which groups of `query.group_kind` `user` sees (SPEC §2: their own owner row, the rows of the teams they
    manage, everything for an admin) and the filters keep. Filters select rows by their columns, as in
    `visible_snapshot_rows`: one on a column the rows leave empty keeps nothing. Empty groups are answered for
    active users only (a departed rep's past deals still give them a row), and not for sources, open-ended."""
    kind = query.group_kind
    owners = owners_visible_to(user)
    admin = owners is None
    kept = {GROUP_COLUMN.get(kind), *_intrinsic(query.metric)}
    unmatched = any(getattr(query, field) is not None and field not in kept for field in GROUP_FILTERS)
    if not user.is_active or unmatched or (kind not in (GroupKind.OWNER, GroupKind.TEAM) and not admin):
        return _Groups(none=True)
    if kind == GroupKind.COMPANY:
        return _Groups(keys=({},))
    if kind == GroupKind.SOURCE:
        return _Groups(keys=None)
    if kind == GroupKind.PIPELINE:
        pipelines = Pipeline.objects.order_by("pk")
        if query.pipeline_id is not None:
            pipelines = pipelines.filter(pk=query.pipeline_id)
        return _Groups(keys=tuple({"pipeline_id": pk} for pk in pipelines.values_list("pk", flat=True)))
    if kind == GroupKind.OWNER:
        users = User.objects.order_by("pk") if admin else User.objects.filter(pk__in=owners).order_by("pk")
        if query.owner_id is not None:
            users = users.filter(pk=query.owner_id)
        found = list(users.values_list("pk", "is_active"))
        return _Groups(
            none=not found,
            keys=tuple({"owner_id": pk} for pk, active in found if active),
            owners=None if admin and query.owner_id is None else tuple(pk for pk, _ in found),
        )
    teams = Team.objects.order_by("pk") if admin else Team.objects.filter(pk__in=_teams_seen_by(user)).order_by("pk")
    if query.team_id is not None:
        teams = teams.filter(pk=query.team_id)
    found = list(teams.values_list("pk", flat=True))
    everyone = admin and query.team_id is None
    return _Groups(
        # An admin's team rows include the one of the owners without a team (team_id null), as in a run's rows.
        none=not found and not everyone,
        keys=tuple({"team_id": pk} for pk in found),
        teams=None if everyone else tuple(found),
    )


def _keeps(query: SnapshotQuery, row: MetricSnapshot) -> bool:
    """Whether `row` passes the query's filters, which select rows by their columns (as `visible_snapshot_rows`)."""
    return all(getattr(query, field) in (None, getattr(row, field)) for field in GROUP_FILTERS)


def _live(query: SnapshotQuery, groups: _Groups, *, run: MetricsRun | None, at: datetime) -> list[MetricSnapshot]:
    """The rows of `query.window` computed now by the metric's family, over the deals of `groups` only."""
    from forecasting import metrics

    live = metrics.Live(
        window=query.window,
        group=query.group_kind,
        owners=groups.owners,
        teams=groups.teams,
        pipelines=(query.pipeline_id,) if query.pipeline_id is not None else None,
    )
    # The forecast's learned probabilities are those of the latest run (none before the first: p0).
    params = dataclasses.replace(metrics.MetricParams.of_run(run_id=run.pk if run else 0, computed_at=at), live=live)
    with connection.cursor() as cursor:
        metrics.LIVE[query.metric](cursor, params)
        fetched = cursor.fetchall()
    names = ("run_id", "metric", "period_kind", "period_start", "period_end", "group_kind", *GROUP_COLUMN.values())
    names += ("stage_id", "deal_id", "values", "computed_at")
    rows = []
    for values in fetched:
        row = MetricSnapshot(**dict(zip(names, values, strict=True)))
        row.run_id = run.pk if run else None
        row.values = json.loads(row.values) if isinstance(row.values, str) else row.values
        if _keeps(query, row):
            rows.append(row)
    return rows


def _with_every_group(
    query: SnapshotQuery, rows: list[MetricSnapshot], groups: _Groups, *, run: MetricsRun, at: datetime
) -> list[MetricSnapshot]:
    """`rows` and a row with nothing to count (`forecasting.metrics.empty_values`) for every group of `groups` that
    has none (for a funnel, every open stage of every pipeline the query keeps), in the read order."""
    from forecasting import metrics

    if groups.none or not groups.keys or query.metric not in metrics.FILLED:
        return rows
    if query.window is not None:
        kind, start, end = query.window.kind, query.window.start, query.window.end
    elif query.period_start is not None:
        kind, start = query.period_kind, query.period_start
        end = Period.of(kind, start).end
    else:
        kind, start, end = PeriodKind.ALL, None, None
    if query.metric == Metric.FUNNEL:
        stages = Stage.objects.filter(kind=StageKind.OPEN).order_by("pipeline_id", "order")
        if query.pipeline_id is not None:
            stages = stages.filter(pipeline_id=query.pipeline_id)
        by_pipeline: dict[int, list[tuple[int, int]]] = {}
        for pipeline_id, stage_id, order in stages.values_list("pipeline_id", "pk", "order"):
            by_pipeline.setdefault(pipeline_id, []).append((stage_id, order))
        details = [
            ({"pipeline_id": pipeline_id, "stage_id": stage_id}, {"order": order, "next_reached": 0})
            if index + 1 < len(pipeline_stages)
            else ({"pipeline_id": pipeline_id, "stage_id": stage_id}, {"order": order, "next_reached": None})
            for pipeline_id, pipeline_stages in by_pipeline.items()
            for index, (stage_id, order) in enumerate(pipeline_stages)
        ]
    else:
        details = [({}, {})]
    key_columns = (*GROUP_COLUMN.values(), "stage_id")
    present = {tuple(getattr(row, column) for column in key_columns) for row in rows}
    filled = list(rows)
    for group in groups.keys:
        for columns, known in details:
            row = MetricSnapshot(
                run_id=run.pk if run else None,
                metric=query.metric,
                period_kind=kind,
                period_start=start,
                period_end=end,
                group_kind=query.group_kind,
                **{column: None for column in GROUP_COLUMN.values()} | group | columns,
                values=metrics.empty_values(query.metric, **known),
                computed_at=at,
            )
            if tuple(getattr(row, column) for column in key_columns) not in present and _keeps(query, row):
                filled.append(row)
    return sorted(filled, key=lambda row: [(value is None, value) for value in map(row.__getattribute__, READ_ORDER)])


# --- Backtest (SPEC §3a) ---------------------------------------------------------------------------------------------

# The forecasts a backtest row holds, by the name the summary gives them.
BACKTEST_FORECASTS = {
    "configured": "weighted_configured",
    "learned": "weighted_learned",
    "commit": "commit",
    "best_case": "best_case",
}


def backtest_summary(*, user: User, query: SnapshotQuery, run: MetricsRun | None) -> list[dict[str, Any]]:
    """WAPE and bias (SPEC §3a) of each forecast over the backtest rows answering `query` that `user` may see, per
    instant of their periods (`week`): WAPE = Σ |actual − forecast| / Σ actual, bias = Σ (forecast − actual) /
    Σ actual; null when nothing was won. One aggregate query: over every period, of the run's per-group sums over
    all periods (`metric backtest_summary`, a row per group and week), else of the rows themselves (one period or a
    range: a few instants per group)."""
    if query.period_start is None and query.range_start is None:
        _, sums_of = visible_snapshot_rows(
            user=user, query=dataclasses.replace(query, metric=Metric.BACKTEST_SUMMARY), run=run
        )
        stored = {"rows": "rows", "actual_won": "actual_won"}
        stored |= {f"{kind}_{name}": f"{kind}_{name}" for name in BACKTEST_FORECASTS for kind in ("error", "over")}
        sums = {name: Sum(_amount(key)) for name, key in stored.items()}
        found = (
            sums_of.order_by()
            .annotate(week=Cast(KT("values__week"), IntegerField()))
            .values("week")
            .annotate(**sums)
            .order_by("week")
        )
    else:
        _, rows = visible_snapshot_rows(user=user, query=query, run=run)
        forecasts = {f"f_{name}": _amount(key) for name, key in BACKTEST_FORECASTS.items()}
        sums = {"rows": Count("id"), "actual_won": Sum("actual")}
        for name in BACKTEST_FORECASTS:
            sums[f"error_{name}"] = Sum(Abs(F(f"f_{name}") - F("actual")))
            sums[f"over_{name}"] = Sum(F(f"f_{name}") - F("actual"))
        found = (
            rows.order_by()
            .annotate(week=Cast(KT("values__week"), IntegerField()), actual=_amount("actual_won"), **forecasts)
            .values("week")
            .annotate(**sums)
            .order_by("week")
        )
    summary = []
    for entry in found:
        actual = entry["actual_won"]
        row = {"week": entry["week"], "rows": int(entry["rows"]), "actual_won": actual}
        for name in BACKTEST_FORECASTS:
            row[f"wape_{name}"] = float(entry[f"error_{name}"] / actual) if actual else None
            row[f"bias_{name}"] = float(entry[f"over_{name}"] / actual) if actual else None
        summary.append(row)
    return summary


def _amount(key: str) -> Cast:
    return Cast(KT(f"values__{key}"), DecimalField(max_digits=20, decimal_places=2))


def visible_quotas(*, user: User) -> QuerySet[Quota]:
    """Quotas of the users whose records `user` may see, and of the teams whose team-wide metric rows `user` may
    see: those they manage, and their own when REP_VISIBILITY is "team" (all, for an admin)."""
    owners = owners_visible_to(user)
    quotas = Quota.objects.select_related("user", "team")
    if owners is None:
        return quotas
    if not user.is_active:
        return quotas.none()
    return quotas.filter(Q(user__in=owners) | Q(team__in=_teams_seen_by(user)))


def editable_quotas(*, user: User) -> QuerySet[Quota]:
    """Quotas `user` may change: all for an admin; for a manager, those of the teams they manage and of those
    teams' members other than themselves (nobody sets their own target); none for anyone else."""
    quotas = Quota.objects.select_related("user", "team")
    if not user.is_active:
        return quotas.none()
    if user.is_admin:
        return quotas
    if not user.is_manager:
        return quotas.none()
    # Through a subquery of the teams, not a join to their managers: one row per quota without DISTINCT, which a
    # locking read (the API's writes) may not use.
    managed = Team.objects.filter(managers=user).values("pk")
    return quotas.filter(Q(team__in=managed) | (Q(user__team__in=managed) & ~Q(user=user)))


def quota_users_assignable_by(*, user: User) -> QuerySet[User]:
    """Users `user` may set a quota for: anyone (admin), the members of the teams a manager manages but
    themselves, nobody otherwise."""
    if not user.is_active or not (user.is_admin or user.is_manager):
        return User.objects.none()
    if user.is_admin:
        return User.objects.all()
    return User.objects.filter(team__managers=user).exclude(pk=user.pk).distinct()


def quota_teams_assignable_by(*, user: User) -> QuerySet[Team]:
    """Teams `user` may set a quota for: any (admin), those a manager manages, none otherwise."""
    if not user.is_active or not (user.is_admin or user.is_manager):
        return Team.objects.none()
    return Team.objects.all() if user.is_admin else Team.objects.filter(managers=user).distinct()


def quota_metrics(*, quota_ids: list[int]) -> tuple[MetricsRun | None, dict[int, dict]]:
    """The latest run and its attainment/coverage/deals-needed values for each of `quota_ids` (already visible)."""
    run = latest_run()
    if run is None:
        return None, {}
    rows = MetricSnapshot.objects.filter(run=run, metric=Metric.QUOTA, values__quota_id__in=quota_ids)
    return run, {row.values["quota_id"]: row.values for row in rows}


# --- Pacing: won so far against the pace of the last periods (SPEC §3a) ---------------------------------------------

PACING_GROUPS = (GroupKind.COMPANY, GroupKind.TEAM, GroupKind.OWNER)  # the groups a quota is set for
PACING_HISTORY = 4  # periods of the same kind whose pace the expected share is the median of

_PACING_GROUP_SQL = {GroupKind.COMPANY: "NULL::bigint", GroupKind.OWNER: "d.owner_id", GroupKind.TEAM: "u.team_id"}


@dataclass(frozen=True)
class PaceOfPeriod:
    """One of the last periods of the same kind: its won amount by the same day, its whole won amount, and the
    share the first is of the second (None when it won nothing: no pace to learn from)."""

    period: Period
    won_by_day: Decimal
    won: Decimal

    @property
    def share(self) -> Decimal | None:
        return self.won_by_day / self.won if self.won else None


@dataclass(frozen=True)
class PacingRow:
    """The pacing of one group in a period (SPEC §3a), with every input beside the numbers derived from them.

    `key` is the group's id (owner, team), None for the company (and for the owners of no team)."""

    key: int | None
    won_to_date: Decimal
    quota: Decimal | None  # the quota for exactly this period (the company: its teams' added up); None without one
    history: tuple[PaceOfPeriod, ...]  # the last periods of the same kind, the latest first
    weighted_learned: Decimal | None  # the learned weighted forecast of the period (None before the first recompute)
    trailing_won: int  # deals won and closed (won or lost) over the four complete quarters before today's
    trailing_closed: int

    @property
    def trailing_win_rate(self) -> Decimal | None:
        return Decimal(self.trailing_won) / self.trailing_closed if self.trailing_closed else None

    @property
    def expected_share(self) -> Decimal | None:
        """The median, over the last periods that won anything, of the share of their wins reached by this day."""
        shares = sorted(pace.share for pace in self.history if pace.share is not None)
        if not shares:
            return None
        middle = len(shares) // 2
        return shares[middle] if len(shares) % 2 else (shares[middle - 1] + shares[middle]) / 2

    @property
    def expected_won_to_date(self) -> Decimal | None:
        """What the quota and the pace of the past say should have been won by now."""
        share = self.expected_share
        return None if self.quota is None or share is None else self.quota * share

    @property
    def pace(self) -> Decimal | None:
        """Won to date ÷ (quota × expected share): 1 is on pace; None without a quota, a pace, or when 0 is expected."""
        expected = self.expected_won_to_date
        return self.won_to_date / expected if expected else None

    @property
    def remaining(self) -> Decimal | None:
        """What the quota still needs beyond the won amount and the learned weighted forecast: max(…, 0)."""
        if self.quota is None or self.weighted_learned is None:
            return None
        return max(self.quota - self.won_to_date - self.weighted_learned, Decimal(0))

    @property
    def pipeline_needed(self) -> Decimal | None:
        """The new pipeline that wins the remainder at the trailing win rate, to the cent; 0 when nothing remains,
        None without a quota, a forecast, or a win rate (nothing closed, or nothing won)."""
        remaining = self.remaining
        if remaining is None or remaining == 0:
            return remaining
        if not self.trailing_won:
            return None
        # remaining ÷ (won / closed) as one exact division: a rounded rate such as 1/3 would be off in the cents.
        return (remaining * self.trailing_closed / self.trailing_won).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Pacing:
    """The pacing of a period at an instant: day `day` of `days` (0 before it begins), one row per group."""

    period: Period
    at: datetime
    day: int
    days: int
    computed_at: datetime | None  # of the recompute the learned forecast and the win rates come from
    rows: tuple[PacingRow, ...]


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, ZoneInfo(settings.TIME_ZONE))


def forecast_pacing(*, user: User, period: Period, group: str, at: datetime | None = None) -> Pacing:
    """The pacing of `period` at `at` (default: now) per group `user` may see (the metric rows' rule: company rows
    for admins only), for the company, each team or each owner (SPEC §3a).

    Day d counts the days of the period begun by `at` in TIME_ZONE (1 on its first day). The expected share is the
    median over the last four periods of the same kind that won anything of (won amount by the end of their day d ÷
    their won amount); won amounts are of the deals won now, by closed_at, in the owner's current team as the
    metrics count them. The learned weighted forecast and the trailing win rates (won and lost counts of the four
    complete quarters before the one `at` falls in) are the latest recompute's. One SQL query reads the wins of the
    five periods; every other read is one query, whatever the number of groups.
    """
    group = GroupKind(group)
    if group not in PACING_GROUPS:
        raise ValueError(f"Pacing is per company, team or owner, not {group.value}.")
    at = at or timezone.now()
    today = timezone.localtime(at, ZoneInfo(settings.TIME_ZONE)).date()
    days = (period.end - period.start).days
    day = min(max((today - period.start).days + 1, 0), days)
    past = [period]
    for _ in range(PACING_HISTORY):
        past.append(past[-1].previous())
    run = latest_run()
    keys = _pacing_keys(user, group)
    rows = [] if keys == set() else _won_by_day(user, group, period, past, day, at)
    won: dict = {}
    for key, index, by_day, total in rows:
        if keys is None or key in keys:
            won[key, index] = (by_day, total)
    groups = (keys or set()) | {key for key, _ in won}
    quotas = _pacing_quotas(user, group, period, groups)
    forecasts, trailing = _pacing_metrics(user, group, period, today, run) if run else ({}, {})
    zero = Decimal("0.00")
    result = []
    for key in sorted(groups, key=lambda key: (key is None, key)):
        won_to_date = won.get((key, 0), (zero, zero))[0]
        history = tuple(
            PaceOfPeriod(past[index], *won.get((key, index), (zero, zero))) for index in range(1, len(past))
        )
        result.append(
            PacingRow(
                key=key,
                won_to_date=won_to_date,
                quota=quotas.get(key),
                history=history,
                weighted_learned=forecasts.get(key, zero if run else None),
                trailing_won=trailing.get(key, (0, 0))[0],
                trailing_closed=trailing.get(key, (0, 0))[1],
            )
        )
    return Pacing(period, at, day, days, run.as_of if run else None, tuple(result))


def _pacing_keys(user: User, group: str) -> set | None:
    """The groups answered even with nothing won: the company (admins), the teams `user` sees, the active owners
    whose records they see; None (an admin's teams and owners): every one there is."""
    visible, keys = _group_visible(user, group)
    if not visible:
        return set()
    if group == GroupKind.COMPANY:
        return {None}
    if group == GroupKind.TEAM:
        return set(Team.objects.values_list("pk", flat=True)) if keys is None else keys
    active = User.objects.filter(is_active=True)
    if keys is not None:
        active = active.filter(pk__in=keys)
    return set(active.values_list("pk", flat=True))


def _won_by_day(user: User, group: str, period: Period, past: list[Period], day: int, at: datetime) -> list[tuple]:
    """(group, index in `past`, won by the cutoff, won in the period) of each group that won in one of `past`: the
    cutoff is `at` for the period itself (index 0), the end of day `day` (at most the period's end) for the others."""
    froms = [_local_midnight(each.start) for each in past]
    tos = [_local_midnight(each.end) for each in past]
    cutoffs = [min(at, tos[0])] + [
        min(_local_midnight(date.fromordinal(each.start.toordinal() + day)), _local_midnight(each.end))
        for each in past[1:]
    ]
    owners = owners_visible_to(user)
    sql = f"""
    SELECT {_PACING_GROUP_SQL[group]} AS grp, p.idx - 1,
           coalesce(sum(d.amount) FILTER (WHERE d.closed_at < p.cutoff), 0), coalesce(sum(d.amount), 0)
      FROM pipeline_deal d
      JOIN accounts_user u ON u.id = d.owner_id
      JOIN unnest(%(froms)s::timestamptz[], %(tos)s::timestamptz[], %(cutoffs)s::timestamptz[])
           WITH ORDINALITY AS p(starts, ends, cutoff, idx)
        ON d.closed_at >= p.starts AND d.closed_at < p.ends
     WHERE d.status = 'won' AND d.closed_at >= %(since)s AND d.closed_at < %(until)s
       AND (%(owners)s::bigint[] IS NULL OR d.owner_id = ANY(%(owners)s::bigint[]))
     GROUP BY 1, 2"""
    params = {
        "froms": froms,
        "tos": tos,
        "cutoffs": cutoffs,
        "since": min(froms),
        "until": max(tos),
        "owners": None if owners is None else list(User.objects.filter(pk__in=owners).values_list("pk", flat=True)),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _pacing_quotas(user: User, group: str, period: Period, groups: set) -> dict:
    """Each group's quota for exactly `period`: an owner's, a team's, the company's teams' added up."""
    quotas = visible_quotas(user=user).filter(period_start=period.start, period_end=period.end)
    if group == GroupKind.OWNER:
        return dict(quotas.filter(user__in=[key for key in groups if key]).values_list("user_id", "amount"))
    team_quotas = list(quotas.filter(team__isnull=False).values_list("team_id", "amount"))
    if group == GroupKind.TEAM:
        return dict(team_quotas)
    return {None: sum(amount for _, amount in team_quotas)} if team_quotas else {}


def _pacing_metrics(user: User, group: str, period: Period, today: date, run: MetricsRun) -> tuple[dict, dict]:
    """From `run`: each group's learned weighted forecast of `period` (the forecast family's `weighted_learned`), and
    its deals won and closed over the four complete quarters before today's (the win-rate family's counts)."""
    column = GROUP_COLUMN.get(group)

    def key_of(row: MetricSnapshot):
        return getattr(row, column) if column else None

    forecast = SnapshotQuery(
        metric=Metric.FORECAST, group_kind=group, period_kind=period.kind, period_start=period.start
    )
    _, rows = visible_snapshot_rows(user=user, query=forecast, run=run)
    forecasts = {key_of(row): Decimal(row.values["weighted_learned"]) for row in rows}
    quarter = Period.containing(today, PeriodKind.QUARTER)
    first = quarter
    for _ in range(4):
        first = first.previous()
    outcomes = SnapshotQuery(
        metric=Metric.DEAL_OUTCOMES,
        group_kind=group,
        period_kind=PeriodKind.QUARTER,
        range_start=first.start,
        range_end=quarter.start,
    )
    _, rows = visible_snapshot_rows(user=user, query=outcomes, run=run)
    counts: dict = {}
    for row in rows:
        won, lost = counts.get(key_of(row), (0, 0))
        counts[key_of(row)] = (won + row.values["won"], lost + row.values["lost"])
    return forecasts, {key: (won, won + lost) for key, (won, lost) in counts.items()}


# --- The pipeline waterfall and slippage, over the deal history (SPEC §3a) -----------------------------------------

# The buckets of a waterfall in the order SPEC §3a lists them, with the side of the identity each is on.
WATERFALL_IN = ("created", "reopened", "reassigned_in", "pulled_in")
WATERFALL_OUT = ("won", "lost", "deleted", "reassigned_out", "pushed_out", "pulled_out")
WATERFALL_KEPT = ("amount_up", "amount_down", "unchanged")
WATERFALL_BUCKETS = WATERFALL_IN + WATERFALL_OUT + WATERFALL_KEPT

# A deal's group at an instant, read from its state then (`a`/`b`: the state's columns, `ua`/`ub` its owner): the
# team is the owner's team now (team membership has no history); the source is the deal's now (the history does not
# keep it), "" for a deal deleted since.
_GROUP_SQL = {
    GroupKind.COMPANY: ("NULL::bigint", "NULL::bigint"),
    GroupKind.OWNER: ("a_owner_id", "b_owner_id"),
    GroupKind.TEAM: ("ua.team_id", "ub.team_id"),
    GroupKind.PIPELINE: ("sa.pipeline_id", "sb.pipeline_id"),
    GroupKind.SOURCE: ("coalesce(d.source, '')", "coalesce(d.source, '')"),
}

# The state columns a history read takes from an interval (all of them in the indexes of pipeline 0024).
_STATE_COLUMNS = "s.deal_id, s.stage_id, s.owner_id, s.amount, s.expected_close_date"
_OWNERS = "(%(owners)s::bigint[] IS NULL OR s.owner_id = ANY(%(owners)s::bigint[]))"


_TEAM_JOINS = """LEFT JOIN accounts_user ua ON ua.id = f.a_owner_id
          LEFT JOIN accounts_user ub ON ub.id = f.b_owner_id"""


def _open_intervals(*holding: str) -> str:
    """The intervals with an open stage and a close date in [p_start, p_end), of `owners` (null: everyone's), that
    meet each condition of `holding` (one SELECT each, added up): those still open come from
    `dealstate_current_idx`, the closed ones from `dealstate_to_idx`, both index-only."""
    in_period = f"""
       AND s.stage_id = ANY(ARRAY(SELECT id FROM pipeline_stage WHERE kind = 'open'))
       AND s.expected_close_date >= %(p_start)s AND s.expected_close_date < %(p_end)s AND {_OWNERS}"""
    return "\n    UNION ALL".join(
        f"""
    SELECT {_STATE_COLUMNS} FROM pipeline_dealstate s
     WHERE {condition}{in_period}"""
        for condition in holding
    )


# Of the open pipeline of P at a and at b (a < b), the intervals holding both instants (the deal did not change in
# between), the interval holding a that ended by b, and the interval holding b that began after a.
_KEPT = _open_intervals("s.valid_to IS NULL AND s.valid_from <= %(a)s", "s.valid_to > %(b)s AND s.valid_from <= %(a)s")
_LEFT_A = _open_intervals("s.valid_to > %(a)s AND s.valid_to <= %(b)s AND s.valid_from <= %(a)s")
_REACHED_B = _open_intervals(
    "s.valid_to IS NULL AND s.valid_from > %(a)s AND s.valid_from <= %(b)s",
    "s.valid_to > %(b)s AND s.valid_from > %(a)s AND s.valid_from <= %(b)s",
)

# The group of a kept interval `k` (its stage `st`, its owner `u`, its deal `d`), as `_GROUP_SQL` reads a state's.
_KEPT_GROUP_SQL = {
    GroupKind.COMPANY: ("NULL::bigint", ""),
    GroupKind.OWNER: ("k.owner_id", ""),
    GroupKind.TEAM: ("u.team_id", "LEFT JOIN accounts_user u ON u.id = k.owner_id"),
    GroupKind.PIPELINE: ("st.pipeline_id", "JOIN pipeline_stage st ON st.id = k.stage_id"),
    GroupKind.SOURCE: ("coalesce(d.source, '')", "LEFT JOIN pipeline_deal d ON d.id = k.deal_id"),
}


def _kept_unchanged_sql(group: str) -> str:
    """Per group, the count and amount of the deals whose one interval held both a and b in the open pipeline of
    P: `unchanged`, each in its group at both instants, read from the index alone (columns as the waterfall's)."""
    grp, join = _KEPT_GROUP_SQL[GroupKind(group)]
    return f"""
    SELECT {grp}, 'unchanged', count(*), 0.00, count(*), coalesce(sum(k.amount), 0), count(*),
           coalesce(sum(k.amount), 0)
      FROM ({_KEPT}) k {join}
     GROUP BY 1"""


# A kept interval's columns as a state's (the same at a and at b).
_KEPT_AS = (("stage_id", "stage_id"), ("owner_id", "owner_id"), ("amount", "amount"), ("expected_close_date", "close"))


def _two_states_sql(group: str, *, kept: bool = True) -> str:
    """Per deal that was in the open pipeline of [p_start, p_end) at `a` or at `b`: its state at each instant
    (columns a_*, b_*, null where it did not exist), its group at each, and whether it was in that pipeline then.
    Without `kept`, only the deals that changed between a and b (the rest: `_kept_unchanged_sql`).

    Set-based, from the intervals that touch [a, b] only, read index-only. A deal whose interval holding a also
    holds b is the same at both. Any other has two intervals (or one: created, deleted): one of open(P, a) that
    ended by b, or one of open(P, b) that began after a, or both, joined by deal; a deal that has only one of the
    two has its state at the other instant in an interval that ended in (a, b] (at a), or began in (a, b] (at b;
    none: deleted). The cost follows the period's deals and the changes between a and b, not the history's size,
    and no deal is looked up one by one.
    """
    group_a, group_b = _GROUP_SQL[GroupKind(group)]
    in_period = "{s}_kind = 'open' AND {s}_close >= %(p_start)s AND {s}_close < %(p_end)s"
    same = ", ".join(f"{column} AS {side}_{name}" for side in "ab" for column, name in _KEPT_AS)
    kept_rows = f"UNION ALL SELECT deal_id, {same} FROM ({_KEPT}) k" if kept else ""
    return f"""
    WITH open_a AS ({_LEFT_A}
    ), open_b AS ({_REACHED_B}
    ), ended AS (
        -- The state at a of the deals it changed before b: the intervals holding a that ended in (a, b].
        SELECT {_STATE_COLUMNS} FROM pipeline_dealstate s
         WHERE s.valid_to > %(a)s AND s.valid_to <= %(b)s AND s.valid_from <= %(a)s
    ), began AS (
        -- The state at b of the deals it changed after a: the intervals holding b that began in (a, b].
        SELECT {_STATE_COLUMNS} FROM pipeline_dealstate s
         WHERE s.valid_to IS NULL AND s.valid_from > %(a)s AND s.valid_from <= %(b)s
        UNION ALL
        SELECT {_STATE_COLUMNS} FROM pipeline_dealstate s
         WHERE s.valid_to > %(b)s AND s.valid_from > %(a)s AND s.valid_from <= %(b)s
    ), pairs AS (
        SELECT coalesce(oa.deal_id, ob.deal_id) AS deal_id, oa.deal_id IS NOT NULL AS known_a,
               ob.deal_id IS NOT NULL AS known_b,
               oa.stage_id AS a_stage_id, oa.owner_id AS a_owner_id, oa.amount AS a_amount,
               oa.expected_close_date AS a_close,
               ob.stage_id AS b_stage_id, ob.owner_id AS b_owner_id, ob.amount AS b_amount,
               ob.expected_close_date AS b_close
          FROM open_a oa FULL JOIN open_b ob ON ob.deal_id = oa.deal_id
    ), filled AS (
        SELECT p.deal_id,
               CASE WHEN known_a THEN a_stage_id ELSE e.stage_id END AS a_stage_id,
               CASE WHEN known_a THEN a_owner_id ELSE e.owner_id END AS a_owner_id,
               CASE WHEN known_a THEN a_amount ELSE e.amount END AS a_amount,
               CASE WHEN known_a THEN a_close ELSE e.expected_close_date END AS a_close,
               CASE WHEN known_b THEN b_stage_id ELSE g.stage_id END AS b_stage_id,
               CASE WHEN known_b THEN b_owner_id ELSE g.owner_id END AS b_owner_id,
               CASE WHEN known_b THEN b_amount ELSE g.amount END AS b_amount,
               CASE WHEN known_b THEN b_close ELSE g.expected_close_date END AS b_close
          FROM pairs p
          LEFT JOIN ended e ON NOT p.known_a AND e.deal_id = p.deal_id
          LEFT JOIN began g ON NOT p.known_b AND g.deal_id = p.deal_id
        {kept_rows}
    ), kinds AS (
        SELECT f.*, sa.kind AS a_kind, sb.kind AS b_kind, {group_a} AS a_group, {group_b} AS b_group
          FROM filled f
          LEFT JOIN pipeline_stage sa ON sa.id = f.a_stage_id
          LEFT JOIN pipeline_stage sb ON sb.id = f.b_stage_id
          {_TEAM_JOINS if group == GroupKind.TEAM else ""}
          {"LEFT JOIN pipeline_deal d ON d.id = f.deal_id" if group == GroupKind.SOURCE else ""}
    ), states AS (
        SELECT deal_id, a_stage_id, a_kind, a_owner_id, a_close, coalesce(a_amount, 0) AS a_amount,
               b_stage_id, b_kind, b_owner_id, b_close, coalesce(b_amount, 0) AS b_amount, a_group, b_group,
               coalesce({in_period.format(s="a")}, false) AS in_a,
               coalesce({in_period.format(s="b")}, false) AS in_b
          FROM kinds
    )"""


# One row per deal and group it was in the open pipeline of, at `a` (its group then) or at `b` (its group then, when
# that is another group or it was not in at `a`), classified by the first rule of SPEC §3a that matches; `amount` is
# the bucket's: at `b` for the in buckets, at `a` for the out buckets, the difference for the kept ones.
_CLASSIFIED_SQL = """
, sides AS (
    SELECT states.*, a_group AS grp, true AS grp_in_a,
           in_b AND b_group IS NOT DISTINCT FROM a_group AS grp_in_b
      FROM states WHERE in_a
    UNION ALL
    SELECT states.*, b_group AS grp, false AS grp_in_a, true AS grp_in_b
      FROM states WHERE in_b AND NOT (in_a AND b_group IS NOT DISTINCT FROM a_group)
), classified AS (
    SELECT sides.*,
           CASE
               WHEN grp_in_a AND grp_in_b THEN
                   CASE WHEN b_amount > a_amount THEN 'amount_up'
                        WHEN b_amount < a_amount THEN 'amount_down' ELSE 'unchanged' END
               WHEN grp_in_b THEN
                   CASE WHEN a_kind IS NULL THEN 'created'
                        WHEN a_kind <> 'open' THEN 'reopened'
                        WHEN a_group IS DISTINCT FROM grp THEN 'reassigned_in' ELSE 'pulled_in' END
               ELSE
                   CASE WHEN b_kind = 'won' THEN 'won'
                        WHEN b_kind = 'lost' THEN 'lost'
                        WHEN b_kind IS NULL THEN 'deleted'
                        WHEN b_group IS DISTINCT FROM grp THEN 'reassigned_out'
                        WHEN b_close IS NULL OR b_close >= %(p_end)s THEN 'pushed_out'
                        ELSE 'pulled_out' END
           END AS bucket,
           CASE WHEN grp_in_a AND grp_in_b THEN abs(b_amount - a_amount)
                WHEN grp_in_b THEN b_amount ELSE a_amount END AS bucket_amount
      FROM sides
)
"""


@dataclass(frozen=True)
class WaterfallBucket:
    name: str
    side: str  # "in", "out" or "kept"
    count: int
    amount: Decimal  # at B for the in buckets, at A for the out ones, |B − A| for amount_up / amount_down


@dataclass(frozen=True)
class WaterfallRow:
    """The waterfall of one group: open(P, A), the buckets, open(P, B). `key` is the group's id (owner, team,
    pipeline), its name (source), None for the company (and for deals of no team)."""

    key: int | str | None
    open_from_count: int
    open_from_amount: Decimal
    buckets: tuple[WaterfallBucket, ...]
    open_to_count: int
    open_to_amount: Decimal


def _params(period: Period, at_from: datetime, at_to: datetime, *, group: str, keys: set | None) -> dict:
    """The parameters of a history read; `owners` limits it to the deals of the visible groups (`keys`, None: all):
    a deal is in a group's row only through an owner of that group at `a` or at `b`."""
    owners = None
    if keys is not None:
        owners = list(keys) if group == GroupKind.OWNER else list(_members_of(keys))
    return {"p_start": period.start, "p_end": period.end, "a": at_from, "b": at_to, "owners": owners}


def _members_of(team_ids: set) -> QuerySet:
    return User.objects.filter(team_id__in=team_ids).values_list("pk", flat=True)


def _group_visible(user: User, group: str) -> tuple[bool, set | None]:
    """Whether `user` may see rows of `group` at all, and which keys (None: all), by the metric rows' rule."""
    owners = owners_visible_to(user)
    if owners is None:
        return True, None
    if not user.is_active or group not in (GroupKind.OWNER, GroupKind.TEAM):
        return False, set()
    if group == GroupKind.OWNER:
        return True, set(User.objects.filter(pk__in=owners).values_list("pk", flat=True))
    return True, set(Team.objects.filter(pk__in=_teams_seen_by(user)).values_list("pk", flat=True))


def _history_rows(sql: str, params: dict) -> list[tuple]:
    """Run one history read: without JIT compilation or parallel workers, which cost more to start (about 100 ms
    each, measured) than they save on a period's deals; and by hash joins, with memory for them. The planner
    cannot count the deals of a union of index ranges (it guessed 6M rows for 37,000 on 1M deals), and for so many
    it merged sorted inputs, one of them a read of a whole index in deal order: 3.4 s instead of 0.3 s."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute("SET LOCAL enable_mergejoin = off")
        cursor.execute("SET LOCAL work_mem = '32MB'")
        cursor.execute(sql, params)
        return cursor.fetchall()


def waterfall(*, user: User, period: Period, at_from: datetime, at_to: datetime, group: str) -> list[WaterfallRow]:
    """The pipeline waterfall of `period` from `at_from` to `at_to` (SPEC §3a), one row per group `user` may see
    that had deals in it, by the metric rows' visibility (company, pipeline and source rows: admins only).

    Every deal in open(P, A) or open(P, B) of a group lands in exactly one bucket of that group, so per group
    open(A) + Σ in − Σ out + amount_up − amount_down = open(B), to the cent (and in counts, without the kept
    buckets). One set-based query over the history, computed when asked.
    """
    _, keys = _group_visible(user, group)
    if keys is not None and not keys:
        return []
    # The deals that did not change between A and B (most, over a week) are added up straight from the index.
    sql = (
        _two_states_sql(group, kept=False)
        + _CLASSIFIED_SQL
        + """
    SELECT grp, bucket, count(*), sum(bucket_amount),
           count(*) FILTER (WHERE grp_in_a), coalesce(sum(a_amount) FILTER (WHERE grp_in_a), 0),
           count(*) FILTER (WHERE grp_in_b), coalesce(sum(b_amount) FILTER (WHERE grp_in_b), 0)
      FROM classified GROUP BY grp, bucket
    UNION ALL"""
        + _kept_unchanged_sql(group)
    )
    found = _history_rows(sql, _params(period, at_from, at_to, group=group, keys=keys))
    by_group: dict = {}
    for grp, bucket, count, amount, from_count, from_amount, to_count, to_amount in found:
        if keys is not None and grp not in keys:
            continue
        entry = by_group.setdefault(grp, {"buckets": {}, "from": [0, Decimal(0)], "to": [0, Decimal(0)]})
        # A deal that changed and kept its amount and group is unchanged too: both parts may hold the bucket.
        counted, added = entry["buckets"].get(bucket, (0, Decimal("0.00")))
        entry["buckets"][bucket] = (counted + count, added + amount)
        entry["from"][0] += from_count
        entry["from"][1] += from_amount
        entry["to"][0] += to_count
        entry["to"][1] += to_amount
    rows = []
    for grp in sorted(by_group, key=lambda key: (key is None, key)):
        entry = by_group[grp]
        buckets = tuple(
            WaterfallBucket(
                name,
                "in" if name in WATERFALL_IN else "out" if name in WATERFALL_OUT else "kept",
                *entry["buckets"].get(name, (0, Decimal("0.00"))),
            )
            for name in WATERFALL_BUCKETS
        )
        rows.append(WaterfallRow(grp, *entry["from"], buckets, *entry["to"]))
    return rows


@dataclass(frozen=True)
class WaterfallDeal:
    """A deal of a waterfall bucket: its state at A and at B (None where it did not exist); `title` None once
    deleted."""

    deal_id: int
    title: str | None
    bucket: str
    amount: Decimal
    from_stage_id: int | None
    from_owner_id: int | None
    from_amount: Decimal | None
    from_close_date: date | None
    to_stage_id: int | None
    to_owner_id: int | None
    to_amount: Decimal | None
    to_close_date: date | None


def waterfall_deals(
    *, user: User, period: Period, at_from: datetime, at_to: datetime, group: str, key, bucket: str
) -> list[WaterfallDeal]:
    """The deals of one bucket of one group's waterfall (`waterfall`), by deal id; none when `user` may not see that
    group's row. `key` as in `WaterfallRow.key`."""
    _, keys = _group_visible(user, group)
    if keys is not None and key not in keys:
        return []
    sql = (
        _two_states_sql(group)
        + _CLASSIFIED_SQL
        + """
    SELECT c.deal_id, d.title, bucket, bucket_amount,
           a_stage_id, a_owner_id, CASE WHEN a_kind IS NULL THEN NULL ELSE a_amount END, a_close,
           b_stage_id, b_owner_id, CASE WHEN b_kind IS NULL THEN NULL ELSE b_amount END, b_close
      FROM classified c LEFT JOIN pipeline_deal d ON d.id = c.deal_id
     WHERE grp IS NOT DISTINCT FROM %(key)s AND bucket = %(bucket)s ORDER BY c.deal_id"""
    )
    params = _params(period, at_from, at_to, group=group, keys=None if keys is None else {key})
    rows = _history_rows(sql, {**params, "key": key, "bucket": bucket})
    return [WaterfallDeal(*row) for row in rows]


@dataclass(frozen=True)
class SlippageRow:
    """Of one group: the deals in open(P, start of P), and those of them open at the end of P (or now, while P
    runs) with a close date after P."""

    key: int | str | None
    open_count: int
    open_amount: Decimal
    slipped_count: int
    slipped_amount: Decimal

    @property
    def slipped_share(self) -> Decimal | None:
        """The share of the period's starting pipeline (by amount) that slipped out of it; None when it held 0."""
        return (self.slipped_amount / self.open_amount).quantize(Decimal("0.0001")) if self.open_amount else None


def slippage(*, user: User, period: Period, group: str, now: datetime | None = None) -> list[SlippageRow]:
    """Slippage of `period` per group `user` may see (SPEC §3a), computed when asked from the deal history: the
    group is read from the state at the period's start; the end is the period's end, or `now` while it runs."""
    _, keys = _group_visible(user, group)
    if keys is not None and not keys:
        return []
    tz = ZoneInfo(settings.TIME_ZONE)
    starts = datetime.combine(period.start, time.min, tz)
    ends = min(datetime.combine(period.end, time.min, tz), now or timezone.now())
    sql = (
        _two_states_sql(group)
        + """
    SELECT a_group, count(*), coalesce(sum(a_amount), 0),
           count(*) FILTER (WHERE b_kind = 'open' AND b_close >= %(p_end)s),
           coalesce(sum(a_amount) FILTER (WHERE b_kind = 'open' AND b_close >= %(p_end)s), 0)
      FROM states WHERE in_a GROUP BY a_group"""
    )
    found = _history_rows(sql, _params(period, starts, max(ends, starts), group=group, keys=keys))
    rows = [SlippageRow(*row) for row in found if keys is None or row[0] in keys]
    return sorted(rows, key=lambda row: (row.key is None, row.key))


# --- The forecast call: lock instants, the roll-up, the weekly trend, commit reliability (SPEC §3a) -----------------


def _lock_time() -> time:
    hours, minutes = settings.FORECAST_LOCK_TIME.split(":")
    return time(int(hours), int(minutes))


def period_instants(period: Period) -> tuple[datetime, datetime]:
    """The instants `period` starts and ends at: local midnights in TIME_ZONE (SPEC §3: [start, end))."""
    zone = ZoneInfo(settings.TIME_ZONE)
    return datetime.combine(period.start, time.min, zone), datetime.combine(period.end, time.min, zone)


def week_lock(at: datetime) -> datetime:
    """The lock instant of the week `at` falls in: the first lock after `at` (FORECAST_LOCK_WEEKDAY at
    FORECAST_LOCK_TIME in TIME_ZONE). A submission made exactly at a lock counts for the next week."""
    zone = ZoneInfo(settings.TIME_ZONE)
    local = at.astimezone(zone)
    days = (settings.FORECAST_LOCK_WEEKDAY - local.weekday()) % 7
    lock = datetime.combine(local.date() + timedelta(days=days), _lock_time(), zone)
    return lock if lock > at else datetime.combine(local.date() + timedelta(days=days + 7), _lock_time(), zone)


def lock_instants(period: Period) -> list[datetime]:
    """The weekly lock instants inside `period` ([start, end)), oldest first: the forecast calls held in it."""
    start, end = period_instants(period)
    locks = []
    lock = week_lock(start - timedelta(microseconds=1))
    while lock < end:
        locks.append(lock)
        lock = week_lock(lock)
    return locks


def period_is_locked(period: Period, *, now: datetime | None = None) -> bool:
    """Whether the forecast call of `period` is closed: the period has ended (in TIME_ZONE), so no later week can
    take a new number."""
    return (now or timezone.now()) >= period_instants(period)[1]


def visible_forecast_submissions(user: User) -> QuerySet:
    """Forecast submissions `user` may see (SPEC §2): those of the users whose records they may see (a rep's own,
    their team's when REP_VISIBILITY is "team", a manager's teams' members and their own, all for an admin), and the
    team numbers of the teams whose team-wide rows they may see."""
    return _visible_calls(ForecastSubmission.objects.all(), user)


def visible_forecast_adjustments(user: User) -> QuerySet:
    """Forecast adjustments `user` may see: by the rule of `visible_forecast_submissions`."""
    return _visible_calls(ForecastAdjustment.objects.all(), user)


def _visible_calls(rows: QuerySet, user: User) -> QuerySet:
    owners = owners_visible_to(user)
    if owners is None:
        return rows
    if not user.is_active:
        return rows.none()
    return rows.filter(Q(user__in=owners) | Q(team__in=_teams_seen_by(user)))


def adjustable_members(user: User) -> QuerySet[User]:
    """Users whose forecast value `user` may adjust: for an admin anyone, for a manager the members of the teams
    they manage other than themselves (nobody adjusts their own number), nobody otherwise."""
    if not user.is_active or not (user.is_admin or user.is_manager):
        return User.objects.none()
    if user.is_admin:
        return User.objects.all()
    return User.objects.filter(team__in=Team.objects.filter(managers=user).values("pk")).exclude(pk=user.pk)


@dataclass(frozen=True)
class CallValues:
    """The computed values of one owner and period (SPEC §3a): cumulative, best_case ≥ commit ≥ won."""

    won: Decimal
    commit: Decimal
    best_case: Decimal
    most_likely: Decimal

    def of(self, category: str) -> Decimal:
        return getattr(self, category)


ZERO = Decimal("0.00")
# The categories in a tuple: `CallCategory.values` builds its list anew on every read, in loops over every member.
CALL_CATEGORIES = tuple(CallCategory.values)
NOTHING_COMPUTED = CallValues(ZERO, ZERO, ZERO, ZERO)


# The four numbers of the forecast call out of each owner's forecast snapshot, read as numeric in SQL: decoding
# every row's whole JSON document in Python cost more than the query. Owners as one array parameter, so the
# statement's text (and psycopg's parse of it) is the same for any number of members.
_CALL_VALUES_SQL = """
SELECT f.owner_id, (f."values"->>'won_amount')::numeric, (f."values"->>'commit')::numeric,
       (f."values"->>'best_case')::numeric, (f."values"->>'weighted_learned')::numeric
  FROM forecasting_metricsnapshot f
 WHERE f.run_id = %(run)s AND f.metric = %(forecast)s AND f.group_kind = %(owner_kind)s
   AND f.period_kind = %(kind)s AND f.period_start = %(p_start)s AND f.owner_id = ANY(%(owners)s::bigint[])
"""


def _forecast_rows_of(run: MetricsRun, period: Period) -> dict:
    """The parameters naming the owners' forecast rows of `period` in `run`."""
    return {
        "run": run.pk,
        "forecast": Metric.FORECAST,
        "owner_kind": GroupKind.OWNER,
        "kind": period.kind,
        "p_start": period.start,
    }


def computed_call_values(
    *, period: Period, owner_ids: Sequence[int]
) -> tuple[MetricsRun | None, dict[int, CallValues]]:
    """The latest run and, per owner of `owner_ids` with forecast rows for `period`, the computed values of the
    forecast call, read from the run's forecast snapshot (`forecasting.metrics.forecast`, the one place that sums
    won, commit and best case per owner and period): commit = won + open commit, best_case = won + open commit +
    open best case, most_likely = won + learned weighted forecast."""
    run = latest_run()
    if run is None or not owner_ids:
        return run, {}
    with connection.cursor() as cursor:
        cursor.execute(_CALL_VALUES_SQL, {**_forecast_rows_of(run, period), "owners": list(owner_ids)})
        rows = cursor.fetchall()
    found = {}
    for owner_id, won, commit, best_case, weighted in rows:
        found[owner_id] = CallValues(won, won + commit, won + best_case, won + weighted)
    return run, found


def cumulative(category: str, raw: dict[str, Decimal], won: Decimal) -> Decimal:
    """A member's value of `category` under cumulative semantics (best case ⊇ commit ⊇ won): a stated number below
    what the category beneath already holds is raised to it. `raw` maps each category to its value before that."""
    commit = max(raw["commit"], won)
    if category == "commit":
        return commit
    if category == "best_case":
        return max(raw["best_case"], commit)
    return max(raw["most_likely"], won)


@dataclass(frozen=True)
class CallEntry:
    """A stated number in effect: its amount, when it was made, by whom and why."""

    amount: Decimal
    at: datetime
    note: str
    by_id: int


@dataclass(frozen=True)
class MemberCall:
    """One member's row of the roll-up for a period and category. `value` = adjusted, else submitted, else computed,
    raised to the category beneath (`cumulative`); `gap` = quota − value (None without a quota)."""

    user_id: int
    name: str
    computed: Decimal
    submitted: CallEntry | None
    adjusted: CallEntry | None
    value: Decimal
    won: Decimal
    quota: Decimal | None
    gap: Decimal | None

    @property
    def submitted_at(self) -> datetime | None:
        return self.submitted.at if self.submitted else None


@dataclass(frozen=True)
class TeamCall:
    """One team's row: its members' rows, their sums (`value` = Σ member values, SPEC §3a), and the manager's own
    number for the team (`submitted`, and an admin's `adjusted` of it); `call` = adjusted, else submitted, else
    value. `team_id` None: the visible users of no team."""

    team_id: int | None
    name: str
    members: tuple[MemberCall, ...]
    computed: Decimal
    submitted: CallEntry | None
    adjusted: CallEntry | None
    value: Decimal
    call: Decimal
    won: Decimal
    quota: Decimal | None
    gap: Decimal | None

    @property
    def submitted_at(self) -> datetime | None:
        return self.submitted.at if self.submitted else None


@dataclass(frozen=True)
class Rollup:
    """The forecast call of a period and category as `user` may see it, at instant `at`. `total` sums the teams
    shown: the company's number when `company` (an admin, who sees every team). `computed_at` is the freshness of
    the computed values (the latest run's; None before the first recompute)."""

    period: Period
    category: str
    at: datetime
    computed_at: datetime | None
    teams: tuple[TeamCall, ...]
    company: bool
    computed: Decimal
    value: Decimal
    call: Decimal
    won: Decimal
    quota: Decimal | None
    gap: Decimal | None


def _gap(quota: Decimal | None, value: Decimal) -> Decimal | None:
    return None if quota is None else quota - value


def _call_members(user: User) -> list[tuple[int, str, int | None]]:
    """(id, name, team id) of the active users whose forecast rows `user` may see, by team and name: the members of
    teams, and the reps of no team (admins and managers of no team sell nothing to forecast)."""
    owners = owners_visible_to(user)
    if not user.is_active:
        return []
    users = User.objects.filter(is_active=True).filter(Q(team__isnull=False) | Q(role=Role.REP, is_superuser=False))
    if owners is not None:
        users = users.filter(pk__in=owners)
    rows = users.order_by("team_id", "first_name", "last_name", "username", "pk").values_list(
        "pk", "first_name", "last_name", "username", "team_id"
    )
    return [(pk, User.name_of(first, last, username), team_id) for pk, first, last, username, team_id in rows]


def _latest_entries(model, *, column: str, keys: Sequence[int], period: Period, at: datetime, strict: bool) -> dict:
    """Per (key, category): the latest row of `model` (submissions or adjustments) for `period` made before `at`
    (at or before it unless `strict`), keyed by `column` (user or team), as a CallEntry."""
    if not keys:
        return {}
    when = "submitted_at" if hasattr(model, "submitted_at") else "adjusted_at"
    by = "submitted_by_id" if when == "submitted_at" else "adjusted_by_id"
    rows = (
        model.objects.filter(
            period_kind=period.kind,
            period_start=period.start,
            **{f"{column}__in": list(keys), f"{when}__{'lt' if strict else 'lte'}": at},
        )
        .order_by(column, "category", f"-{when}", "-id")
        .distinct(column, "category")
        .values_list(column, "category", "amount", when, "note", by)
    )
    return {(key, category): CallEntry(amount, made, note, by_id) for key, category, amount, made, note, by_id in rows}


# The latest submission and adjustment by `at`, per member or team and category, in one statement (each table by
# its `(period, category, user or team, instant)` indexes). `source` 0 is a submission, 1 an adjustment. Only the
# roll-up's category needs the instant, note and author; the others count by their amount alone.
_LATEST_CALL_ENTRY_OF = """
SELECT {source} AS source, * FROM (
    SELECT DISTINCT ON (r.user_id, r.team_id, r.category)
           r.user_id, r.team_id, r.category, r.amount,
           CASE WHEN r.category = %(category)s THEN r.{at} END,
           CASE WHEN r.category = %(category)s THEN r.note END,
           CASE WHEN r.category = %(category)s THEN r.{by} END
      FROM forecasting_{table} r
     WHERE r.period_kind = %(kind)s AND r.period_start = %(p_start)s AND r.{at} <= %(at)s
       AND (r.user_id = ANY(%(users)s::bigint[]) OR r.team_id = ANY(%(teams)s::bigint[]) AND r.category = %(category)s)
     ORDER BY r.user_id, r.team_id, r.category, r.{at} DESC, r.id DESC
) {table}
"""
_LATEST_CALL_ENTRIES_SQL = (
    _LATEST_CALL_ENTRY_OF.format(source=0, table="forecastsubmission", at="submitted_at", by="submitted_by_id")
    + "UNION ALL"
    + _LATEST_CALL_ENTRY_OF.format(source=1, table="forecastadjustment", at="adjusted_at", by="adjusted_by_id")
)


@dataclass(frozen=True)
class _CallEntries:
    """The statements in effect at an instant: `amounts` per (source, user, category), 0 submitted and 1 adjusted,
    for every category; and the entries of the roll-up's category, per user and per team."""

    amounts: dict
    submitted: dict
    adjusted: dict
    team_submitted: dict
    team_adjusted: dict


def _latest_call_entries(
    period: Period, *, category: str, at: datetime, user_ids: Sequence[int], team_ids: Sequence[int]
) -> _CallEntries:
    """The entries in effect at `at` (made at or before it): of `user_ids` the latest submission and adjustment
    per category (their amounts; for `category`, as CallEntry), and of `team_ids` those of `category`."""
    found = _CallEntries({}, {}, {}, {}, {})
    if not user_ids and not team_ids:
        return found
    params = {
        "kind": period.kind,
        "p_start": period.start,
        "category": category,
        "at": at,
        "users": list(user_ids),
        "teams": list(team_ids),
    }
    entries = (found.submitted, found.adjusted, found.team_submitted, found.team_adjusted)
    with connection.cursor() as cursor:
        cursor.execute(_LATEST_CALL_ENTRIES_SQL, params)
        for source, user_id, team_id, kind, amount, made, note, by_id in cursor.fetchall():
            if user_id is not None:
                found.amounts[(source, user_id, kind)] = amount
                if kind == category:
                    entries[source][user_id] = CallEntry(amount, made, note, by_id)
            else:
                entries[2 + source][team_id] = CallEntry(amount, made, note, by_id)
    return found


# Σ quota amount for exactly a period, per user and per team (one of the two is set), ids as array parameters.
_QUOTAS_SQL = """
SELECT q.user_id, q.team_id, sum(q.amount)
  FROM forecasting_quota q
 WHERE q.period_start = %(start)s AND q.period_end = %(end)s
   AND (q.user_id = ANY(%(users)s::bigint[]) OR q.team_id = ANY(%(teams)s::bigint[]))
 GROUP BY q.user_id, q.team_id
"""


def _quotas(period: Period, *, user_ids: Sequence[int], team_ids: Sequence[int]) -> tuple[dict, dict]:
    """Σ quota amount for exactly `period`, per user and per team."""
    users: dict[int, Decimal] = {}
    teams: dict[int, Decimal] = {}
    if not user_ids and not team_ids:
        return users, teams
    with connection.cursor() as cursor:
        cursor.execute(
            _QUOTAS_SQL,
            {"start": period.start, "end": period.end, "users": list(user_ids), "teams": list(team_ids)},
        )
        for user_id, team_id, amount in cursor.fetchall():
            if user_id is not None:
                users[user_id] = amount
            else:
                teams[team_id] = amount
    return users, teams


def _sum(values) -> Decimal | None:
    values = [value for value in values if value is not None]
    return sum(values, ZERO) if values else None


def forecast_rollup(*, user: User, period: Period, category: str, at: datetime | None = None) -> Rollup:
    """The forecast call of `period` in `category` (SPEC §3a) as `user` may see it, with the numbers stated by
    instant `at` (default now): per team, each visible member's computed value (the latest run's), their latest
    submission and adjustment by `at`, value, won, quota and gap; the team's sums and its manager's own number; the
    total of the teams shown. One place computes it: the page, the API and the trend read it from here.

    Teams shown: those of the visible members, and those `user` manages or sees (a team without members shows
    empty). A rep sees their own row (and their team's with REP_VISIBILITY "team"); a team's sums are over the
    members shown.
    """
    if category not in CALL_CATEGORIES:
        raise ValueError(f"{category!r} is not a forecast category")
    at = at or timezone.now()
    members = _call_members(user)
    member_ids = [pk for pk, _, _ in members]
    seen_teams = Team.objects.all() if user.is_admin else Team.objects.filter(pk__in=_teams_seen_by(user))
    team_names = dict(seen_teams.values_list("pk", "name")) if user.is_active else {}
    seen_team_ids = set(team_names)
    member_teams = {team_id for _, _, team_id in members if team_id is not None}
    team_names |= dict(Team.objects.filter(pk__in=member_teams - seen_team_ids).values_list("pk", "name"))
    run, computed = computed_call_values(period=period, owner_ids=member_ids)
    team_keys = sorted(seen_team_ids)
    stated = _latest_call_entries(period, category=category, at=at, user_ids=member_ids, team_ids=team_keys)
    amounts = stated.amounts
    user_quotas, team_quotas = _quotas(period, user_ids=member_ids, team_ids=team_keys)

    by_team: dict[int | None, list[MemberCall]] = {team_id: [] for team_id in team_names}
    for pk, name, team_id in members:
        values = computed.get(pk, NOTHING_COMPUTED)
        raw = {}
        for each in CALL_CATEGORIES:
            amount = amounts.get((1, pk, each))
            if amount is None:
                amount = amounts.get((0, pk, each))
            raw[each] = values.of(each) if amount is None else amount
        value = cumulative(category, raw, values.won)
        quota = user_quotas.get(pk)
        by_team.setdefault(team_id, []).append(
            MemberCall(
                user_id=pk,
                name=name,
                computed=values.of(category),
                submitted=stated.submitted.get(pk),
                adjusted=stated.adjusted.get(pk),
                value=value,
                won=values.won,
                quota=quota,
                gap=_gap(quota, value),
            )
        )
    teams = []
    for team_id in sorted(by_team, key=lambda key: (key is None, team_names.get(key, "").lower(), key or 0)):
        rows = by_team[team_id]
        value = sum((row.value for row in rows), ZERO)
        submitted = stated.team_submitted.get(team_id)
        adjusted = stated.team_adjusted.get(team_id)
        quota = team_quotas.get(team_id) if team_id in team_quotas else _sum(row.quota for row in rows)
        teams.append(
            TeamCall(
                team_id=team_id,
                name=team_names.get(team_id, "No team"),
                members=tuple(rows),
                computed=sum((row.computed for row in rows), ZERO),
                submitted=submitted,
                adjusted=adjusted,
                value=value,
                call=(adjusted or submitted).amount if (adjusted or submitted) else value,
                won=sum((row.won for row in rows), ZERO),
                quota=quota,
                gap=_gap(quota, value),
            )
        )
    value = sum((team.value for team in teams), ZERO)
    quota = _sum(team.quota for team in teams)
    return Rollup(
        period=period,
        category=category,
        at=at,
        computed_at=run.as_of if run else None,
        teams=tuple(teams),
        company=user.is_active and user.is_admin,
        computed=sum((team.computed for team in teams), ZERO),
        value=value,
        call=sum((team.call for team in teams), ZERO),
        won=sum((team.won for team in teams), ZERO),
        quota=quota,
        gap=_gap(quota, value),
    )


@dataclass(frozen=True)
class TrendWeek:
    """One week of a period's forecast call, at its lock instant `lock` (SPEC §3a): `submitted` = Σ members'
    values without adjustments (submitted, else computed), `adjusted` = the same with adjustments (the roll-up
    value), both in the trend's category; the computed commit and best case and the won amount as the deal history
    held them at the lock (or now, for the week still open); `quota` of the members shown."""

    lock: datetime
    submitted: Decimal
    adjusted: Decimal
    computed_commit: Decimal
    computed_best_case: Decimal
    won: Decimal
    quota: Decimal | None


# Per lock instant and owner: the won amount in the period and the open commit / best case in it, from the deal
# history at that instant. A won deal counts when its state then is won and it closed in the period by then.
_TREND_COMPUTED_SQL = """
WITH weeks AS (SELECT w.at, w.i FROM unnest(%(weeks)s::timestamptz[]) WITH ORDINALITY AS w(at, i)),
open_at AS (
    SELECT w.i, s.owner_id,
           coalesce(sum(s.amount) FILTER (WHERE s.forecast_category = 'commit'), 0) AS commit_open,
           coalesce(sum(s.amount) FILTER (WHERE s.forecast_category IN ('commit', 'best_case')), 0) AS best_open
      FROM weeks w
      JOIN pipeline_dealstate s
        ON s.expected_close_date >= %(p_start)s AND s.expected_close_date < %(p_end)s
       AND s.valid_from <= w.at AND (s.valid_to > w.at OR s.valid_to IS NULL)
      JOIN pipeline_stage st ON st.id = s.stage_id AND st.kind = 'open'
     WHERE (%(owners)s::bigint[] IS NULL OR s.owner_id = ANY(%(owners)s::bigint[]))
     GROUP BY w.i, s.owner_id
), won_at AS (
    SELECT w.i, s.owner_id, coalesce(sum(s.amount), 0) AS won
      FROM weeks w
      JOIN pipeline_deal d ON d.closed_at >= %(starts)s AND d.closed_at < %(ends)s AND d.closed_at <= w.at
      JOIN pipeline_dealstate s
        ON s.deal_id = d.id AND s.valid_from <= w.at AND (s.valid_to > w.at OR s.valid_to IS NULL)
      JOIN pipeline_stage st ON st.id = s.stage_id AND st.kind = 'won'
     WHERE (%(owners)s::bigint[] IS NULL OR s.owner_id = ANY(%(owners)s::bigint[]))
     GROUP BY w.i, s.owner_id
)
SELECT coalesce(o.i, n.i), coalesce(o.owner_id, n.owner_id),
       coalesce(n.won, 0), coalesce(o.commit_open, 0), coalesce(o.best_open, 0)
  FROM open_at o FULL JOIN won_at n ON n.i = o.i AND n.owner_id = o.owner_id
"""

# Per user, category and week: the latest row stated before that week's lock and not before the previous one.
# width_bucket counts the locks at or before the row's instant, so bucket b holds the rows made in [lock b, lock b+1)
# (0: before the first lock), which count from week b + 1 on; each row is read once, not once per later week. Each
# is carried forward to the week before the next one stated (`until`), and the categories are pivoted into columns.
_ENTRIES_BY_WEEK_SQL = """
SELECT w.i, b.user_id, {pivot}
  FROM (
    SELECT latest.*, lead(latest.week, 1, %(n)s::int + 1) OVER (
               PARTITION BY latest.user_id, latest.category ORDER BY latest.week) AS until
      FROM (
        SELECT DISTINCT ON (r.user_id, r.category, week)
               r.user_id, r.category, width_bucket(r.{when}, %(weeks)s::timestamptz[]) + 1 AS week, r.amount
          FROM {table} r
         WHERE r.period_kind = %(kind)s AND r.period_start = %(p_start)s AND r.user_id = ANY(%(members)s::bigint[])
           AND r.{when} < %(last)s
         ORDER BY r.user_id, r.category, week, r.{when} DESC, r.id DESC
      ) latest
  ) b
  JOIN weeks w ON w.i >= b.week AND w.i < b.until
 GROUP BY w.i, b.user_id
"""


# The same for one week only, the last (the past weeks in the cache): the latest row before its lock, per user and
# category, without numbering and carrying forward every row of the period.
_ENTRIES_OF_LAST_WEEK_SQL = """
SELECT %(n)s::int AS i, b.user_id, {pivot}
  FROM (
    SELECT DISTINCT ON (r.user_id, r.category) r.user_id, r.category, r.amount
      FROM {table} r
     WHERE r.period_kind = %(kind)s AND r.period_start = %(p_start)s AND r.user_id = ANY(%(members)s::bigint[])
       AND r.{when} < %(last)s
     ORDER BY r.user_id, r.category, r.{when} DESC, r.id DESC
  ) b
 GROUP BY b.user_id
"""


def _entries_by_week_sql(model, *, last_only: bool = False) -> str:
    """The statement of `_ENTRIES_BY_WEEK_SQL` for `model` (of `_ENTRIES_OF_LAST_WEEK_SQL` when `last_only`): per
    week number (from 1) and user, the amount in effect in each category (NULL when none was stated before that
    week's lock)."""
    when = "submitted_at" if model is ForecastSubmission else "adjusted_at"
    pivot = ", ".join(f"max(b.amount) FILTER (WHERE b.category = '{each}') AS {each}" for each in CALL_CATEGORIES)
    template = _ENTRIES_OF_LAST_WEEK_SQL if last_only else _ENTRIES_BY_WEEK_SQL
    return template.format(table=model._meta.db_table, when=when, pivot=pivot)


# The advisory lock between the trend's cache fills and the history's writers (forecasting 0007): "trend" in ASCII.
CALL_TREND_LOCK = 0x7472656E64

_FILL_TREND_POINTS_SQL = f"""
INSERT INTO forecasting_calltrendpoint (period_kind, period_start, lock, owner_id, won, commit_open, best_open)
SELECT %(kind)s, %(p_start)s, (%(weeks)s::timestamptz[])[i], owner_id, won, commit_open, best_open
  FROM ({_TREND_COMPUTED_SQL}) computed (i, owner_id, won, commit_open, best_open)
 UNION ALL
SELECT %(kind)s, %(p_start)s, lock, NULL, 0, 0, 0 FROM unnest(%(weeks)s::timestamptz[]) AS lock
ON CONFLICT DO NOTHING
"""


# The computed columns of past weeks: the points kept of the history, numbered by their lock's place in `weeks`.
_TREND_POINTS_SQL = """
SELECT array_position(%(weeks)s::timestamptz[], p.lock), p.owner_id, p.won, p.commit_open, p.best_open
  FROM forecasting_calltrendpoint p
 WHERE p.period_kind = %(kind)s AND p.period_start = %(p_start)s AND p.lock = ANY(%(past)s::timestamptz[])
   AND p.owner_id = ANY(%(members)s::bigint[])
"""

# The computed columns of the week still open from the latest recompute's forecast rows (the roll-up's numbers).
_TREND_OPEN_WEEK_FROM_RUN_SQL = """
SELECT %(n)s::int, f.owner_id, (f."values"->>'won_amount')::numeric, (f."values"->>'commit')::numeric,
       (f."values"->>'best_case')::numeric
  FROM forecasting_metricsnapshot f
 WHERE f.run_id = %(run)s AND f.metric = %(forecast)s AND f.group_kind = %(owner_kind)s
   AND f.period_kind = %(kind)s AND f.period_start = %(p_start)s AND f.owner_id = ANY(%(members)s::bigint[])
"""

# The computed columns of the week still open walked from the history at `open_at` (no recompute inside the week).
_TREND_OPEN_WEEK_FROM_HISTORY_SQL = f"""
SELECT %(n)s::int, h.owner_id, h.won, h.commit_open, h.best_open
  FROM ({_TREND_COMPUTED_SQL.replace("%(weeks)s", "%(open_at)s")}) h (i, owner_id, won, commit_open, best_open)
"""

# A member's value of the trend's category under cumulative semantics (`cumulative`), from the columns prefixed
# `{p}` of `_TREND_WEEKS_SQL`'s `valued`: commit ≥ won, best case ≥ commit, most likely ≥ won.
_CUMULATIVE_SQL = {
    "commit": "greatest({p}commit, won)",
    "best_case": "greatest({p}best_case, {p}commit, won)",
    "most_likely": "greatest({p}most_likely, won)",
}

# Per week of the trend, over the members: the computed columns (`computed`: per week number and owner, won and
# the open commit and best case), the amounts stated and adjusted in effect at its lock, and the sums of what
# `forecast_trend` describes. Every member × week is one row of `grid`, so a member with nothing computed or stated
# counts as zeros, as in the roll-up.
_TREND_WEEKS_SQL = """
WITH members (user_id) AS (SELECT unnest(%(members)s::bigint[])),
weeks (i) AS (SELECT generate_series(%(first)s::int, %(n)s::int)),
computed (i, owner_id, won, commit_open, best_open) AS ({computed}),
stated AS ({stated}),
called AS ({called}),
grid AS (
    SELECT w.i, coalesce(c.won, 0) AS won, coalesce(c.won, 0) + coalesce(c.commit_open, 0) AS commit,
           coalesce(c.won, 0) + coalesce(c.best_open, 0) AS best_case,
           s.commit AS s_commit, s.best_case AS s_best_case, s.most_likely AS s_most_likely,
           a.commit AS a_commit, a.best_case AS a_best_case, a.most_likely AS a_most_likely
      FROM weeks w
     CROSS JOIN members m
      LEFT JOIN computed c ON c.i = w.i AND c.owner_id = m.user_id
      LEFT JOIN stated s ON s.i = w.i AND s.user_id = m.user_id
      LEFT JOIN called a ON a.i = w.i AND a.user_id = m.user_id
), valued AS (
    -- Submitted, else computed (the computed most likely has no history: the won amount); adjusted, else that.
    SELECT i, won, commit AS computed_commit, best_case AS computed_best_case,
           coalesce(s_commit, commit) AS s_commit, coalesce(s_best_case, best_case) AS s_best_case,
           coalesce(s_most_likely, won) AS s_most_likely,
           coalesce(a_commit, s_commit, commit) AS a_commit,
           coalesce(a_best_case, s_best_case, best_case) AS a_best_case,
           coalesce(a_most_likely, s_most_likely, won) AS a_most_likely
      FROM grid
)
SELECT i, sum({submitted}), sum({adjusted}), sum(computed_commit), sum(computed_best_case), sum(won)
  FROM valued
 GROUP BY i
 ORDER BY i
"""


def _trend_computed(
    period: Period, weeks: list[datetime], *, past: list[datetime], now: datetime, owner_ids: list[int]
) -> tuple[list[str], dict, bool]:
    """The statements giving the computed columns of the trend at each lock of `weeks` (at `now` for the week
    still open), as the deal history held them: per week number from 1 and owner of `owner_ids`, won and the open
    commit and best case. Returns them (to be joined by UNION ALL), their parameters, and whether they walk the
    history (then run through `_history_rows`).

    A lock already past is read from `CallTrendPoint`, computed company-wide from the history the first time it is
    asked for (the history of a period's deals on a million-deal company takes seconds to walk; its points, a few
    milliseconds to read; `forecasting.tasks.warm_forecast_trend` computes them after each recompute, so that no
    reader waits for it). The week still open reads the latest recompute when it ran inside that week, by `now`:
    the same forecast rows the roll-up reads, which are the history at the recompute's instant. Otherwise (no such
    recompute, or `now` in the past) the history is walked at `now` for these owners. `past`: the past locks to
    read (their points kept already, by `_fill_trend_points`); none when the cache holds those weeks.
    """
    parts: list[str] = []
    params: dict = {"past": past}
    if past:
        parts.append(_TREND_POINTS_SQL)
    if weeks[-1] in past:
        return parts, params, False
    since = weeks[-2] if len(weeks) > 1 else period_instants(period)[0]
    run = latest_run()
    if run is not None and since < run.as_of <= now and _run_has_forecast_of(run, period):
        parts.append(_TREND_OPEN_WEEK_FROM_RUN_SQL)
        params |= _forecast_rows_of(run, period)
        return parts, params, False
    starts, ends = period_instants(period)
    parts.append(_TREND_OPEN_WEEK_FROM_HISTORY_SQL)
    params |= {
        "open_at": [min(weeks[-1], now)],
        "p_end": period.end,
        "starts": starts,
        "ends": ends,
        "owners": owner_ids,
    }
    return parts, params, True


def fill_past_trend_points(period: Period, *, now: datetime | None = None) -> int:
    """Keep the trend points of every lock of `period` already past at `now` (default now) not kept yet, so that
    no reader of the trend walks the history (`forecasting.services.warm_forecast_trend`). Returns how many locks
    are past."""
    now = now or timezone.now()
    past = [lock for lock in lock_instants(period) if lock < now]
    if past:
        _fill_trend_points(period, past)
    return len(past)


# What the kept past weeks of a period's trend are made of, as one tuple: the marks of `locks` (how many and the
# newest id: a forgotten lock computed again has new ids) and how many submissions and adjustments of the period
# there are (append-only, so the same count is the same rows). `forecast_trend` keys its cache on it.
_TREND_VERSION_SQL = """
SELECT (SELECT count(*) FROM forecasting_calltrendpoint p
         WHERE p.period_kind = %(kind)s AND p.period_start = %(p_start)s AND p.lock = ANY(%(locks)s::timestamptz[])
           AND p.owner_id IS NULL),
       (SELECT max(p.id) FROM forecasting_calltrendpoint p
         WHERE p.period_kind = %(kind)s AND p.period_start = %(p_start)s AND p.lock = ANY(%(locks)s::timestamptz[])
           AND p.owner_id IS NULL),
       (SELECT count(*) FROM forecasting_forecastsubmission r
         WHERE r.period_kind = %(kind)s AND r.period_start = %(p_start)s),
       (SELECT count(*) FROM forecasting_forecastadjustment r
         WHERE r.period_kind = %(kind)s AND r.period_start = %(p_start)s)
"""


def _trend_version(period: Period, locks: list[datetime]) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(_TREND_VERSION_SQL, {"kind": period.kind, "p_start": period.start, "locks": locks})
        return cursor.fetchone()


def _fill_trend_points(period: Period, locks: list[datetime]) -> tuple:
    """Compute and keep the trend points of the `locks` of `period` not kept yet (every owner's at once); returns
    the version of what is kept then (`_TREND_VERSION_SQL`)."""
    version = _trend_version(period, locks)
    if version[0] == len(locks):
        return version
    starts, ends = period_instants(period)
    with transaction.atomic(), connection.cursor() as cursor:
        # Exclusive against the history's writers (shared): a write committed before this statement's snapshot is
        # in the points, and one after it deletes them.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CALL_TREND_LOCK])
        marked = CallTrendPoint.objects.filter(
            period_kind=period.kind, period_start=period.start, lock__in=locks, owner_id__isnull=True
        )
        missing = sorted(set(locks) - set(marked.values_list("lock", flat=True)))
        if missing:
            cursor.execute("SET LOCAL jit = off")
            cursor.execute(
                _FILL_TREND_POINTS_SQL,
                {
                    "kind": period.kind,
                    "weeks": missing,
                    "p_start": period.start,
                    "p_end": period.end,
                    "starts": starts,
                    "ends": ends,
                    "owners": None,
                },
            )
    return _trend_version(period, locks)


def _run_has_forecast_of(run: MetricsRun, period: Period) -> bool:
    return MetricSnapshot.objects.filter(
        run=run,
        metric=Metric.FORECAST,
        group_kind=GroupKind.COMPANY,
        period_kind=period.kind,
        period_start=period.start,
    ).exists()


def forecast_trend(
    *,
    user: User,
    period: Period,
    category: str = CallCategory.COMMIT,
    team: Team | None = None,
    now: datetime | None = None,
) -> list[TrendWeek]:
    """The weekly trend of `period`'s forecast call (SPEC §3a) over the members `user` may see (of `team` only,
    when given): one row per lock instant inside the period up to the lock of the current week. A week's value of
    a member is the latest submission before its lock, else the previous week's (carried forward, the same thing:
    the latest before the lock), else the computed value at the lock; an adjustment made before the lock replaces
    it. The computed most likely has no history (learned probabilities at a past instant are not kept), so for
    that category the fallback is the won amount. The computed columns come from `_trend_computed`: past weeks
    from the points kept of the history, the week still open from the latest recompute when it ran inside it."""
    now = now or timezone.now()
    current = week_lock(now)
    weeks = [lock for lock in lock_instants(period) if lock <= current]
    members = [row for row in _call_members(user) if team is None or row[2] == team.pk]
    member_ids = [pk for pk, _, _ in members]
    if not weeks:
        return []
    quota = None
    if member_ids:
        team_ids = sorted({team_id for _, _, team_id in members if team_id is not None})
        user_quotas, team_quotas = _quotas(period, user_ids=member_ids, team_ids=team_ids)
        per_team: dict = {}
        for pk, _, team_id in members:
            if pk in user_quotas:
                per_team.setdefault(team_id, []).append(user_quotas[pk])
        seen = set(_teams_seen_by(user).values_list("pk", flat=True)) if not user.is_admin else set(team_ids)
        quota = _sum(
            team_quotas[team_id] if team_id in team_quotas and team_id in seen else _sum(per_team.get(team_id, []))
            for team_id in {team_id for _, _, team_id in members}
        )
    if not member_ids:
        return [TrendWeek(lock, ZERO, ZERO, ZERO, ZERO, ZERO, quota) for lock in weeks]
    real_now = timezone.now()
    past = [lock for lock in weeks if lock <= now and lock < real_now]
    key = None
    kept = None
    if past:
        version = _fill_trend_points(period, past)
        key = _past_trend_key(period, category, member_ids, past, version)
        kept = _cache_get(key)
    totals = list(kept or [])
    if len(totals) < len(weeks):
        computed = _trend_weeks(
            period, category, weeks, first=len(totals) + 1, past=[] if totals else past, now=now, members=member_ids
        )
        if key is not None and kept is None:
            _cache_set(key, computed[: len(past)])
        totals += computed
    return [
        TrendWeek(weeks[i - 1], submitted, adjusted, commit, best_case, won, quota)
        for i, submitted, adjusted, commit, best_case, won in totals
    ]


def _trend_weeks(
    period: Period,
    category: str,
    weeks: list[datetime],
    *,
    first: int,
    past: list[datetime],
    now: datetime,
    members: list[int],
) -> list[tuple]:
    """The rows of `_TREND_WEEKS_SQL` for the weeks numbered `first` to the last, over `members`."""
    parts, params, walks_history = _trend_computed(period, weeks, past=past, now=now, owner_ids=members)
    sql = _TREND_WEEKS_SQL.format(
        computed=" UNION ALL ".join(parts),
        stated=_entries_by_week_sql(ForecastSubmission, last_only=first == len(weeks)),
        called=_entries_by_week_sql(ForecastAdjustment, last_only=first == len(weeks)),
        submitted=_CUMULATIVE_SQL[category].format(p="s_"),
        adjusted=_CUMULATIVE_SQL[category].format(p="a_"),
    )
    params |= {
        "members": members,
        "first": first,
        "n": len(weeks),
        "weeks": weeks,
        "last": weeks[-1],
        "kind": period.kind,
        "p_start": period.start,
    }
    if walks_history:
        return _history_rows(sql, params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# The past weeks' totals of the trends read lately, in this process (a few hundred bytes each). In memory rather than
# in Redis: no round trip, and nothing outlives the process, so a database restored from a backup, or the tests'
# databases created anew, which give the same ids and counts to other rows, never meet an older entry.
PAST_TREND_CACHE_SIZE = 256
_past_trend_cache: OrderedDict[str, list[tuple]] = OrderedDict()
_past_trend_cache_lock = threading.Lock()


def _past_trend_key(period: Period, category: str, members: list[int], past: list[datetime], version: tuple) -> str:
    """The cache key of the trend's past weeks: everything their totals are made of. The members (who they are,
    as `user` sees them), the category, the locks, and the version of the points and of the submissions and
    adjustments (`_TREND_VERSION_SQL`). A past week's computed columns are its points, and what was stated before
    its lock is among the period's rows, which only grow; so a new submission or adjustment, a lock forgotten and
    computed again, a member more or less, each makes another key. The quota is read apart, every time."""
    made_of = repr((period.key, category, members, [lock.isoformat() for lock in past], version))
    return hashlib.sha256(made_of.encode()).hexdigest()


def _cache_get(key: str) -> list[tuple] | None:
    with _past_trend_cache_lock:
        found = _past_trend_cache.get(key)
        if found is not None:
            _past_trend_cache.move_to_end(key)
        return found


def _cache_set(key: str, value: list[tuple]) -> None:
    with _past_trend_cache_lock:
        _past_trend_cache[key] = value
        while len(_past_trend_cache) > PAST_TREND_CACHE_SIZE:
            _past_trend_cache.popitem(last=False)


@dataclass(frozen=True)
class ReliabilityPeriod:
    """One ended period of a rep: the commit they had submitted by its midpoint (None if none) and what they won;
    APE = |won − commit| ÷ won and bias = (commit − won) ÷ won (None when nothing was won or nothing submitted)."""

    period: Period
    commit: Decimal | None
    won: Decimal
    ape: Decimal | None
    bias: Decimal | None


@dataclass(frozen=True)
class RepReliability:
    """A rep's commit reliability over the ended periods (SPEC §3a), oldest first; `ape` and `bias` over the periods
    with a commit: Σ|won − commit| ÷ Σ won and Σ(commit − won) ÷ Σ won (None when they won nothing)."""

    user_id: int
    name: str
    periods: tuple[ReliabilityPeriod, ...]
    ape: Decimal | None
    bias: Decimal | None


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    return (numerator / denominator).quantize(Decimal("0.0001")) if denominator else None


def commit_reliability(
    *, user: User, periods: int = 4, kind: str = PeriodKind.QUARTER, now: datetime | None = None
) -> list[RepReliability]:
    """Per member `user` may see who submitted a commit for any of the last `periods` ended periods of `kind`: the
    commit submission in effect at each period's midpoint against the won amount of the period (the latest run's
    forecast rows), with APE and bias (SPEC §3a). The number a manager reads next quarter's call with."""
    now = now or timezone.now()
    ended = []
    period = Period.containing(timezone.localdate(now), kind)
    while len(ended) < periods:
        period = period.previous()
        ended.append(period)
    ended.reverse()
    members = _call_members(user)
    names = {pk: name for pk, name, _ in members}
    if not names or not ended:
        return []
    commits: dict[tuple[int, date], Decimal] = {}
    for period in ended:
        starts, ends = period_instants(period)
        midpoint = starts + (ends - starts) / 2
        entries = _latest_entries(
            ForecastSubmission, column="user_id", keys=list(names), period=period, at=midpoint, strict=False
        )
        for (pk, category), entry in entries.items():
            if category == CallCategory.COMMIT:
                commits[(pk, period.start)] = entry.amount
    submitters = sorted({pk for pk, _ in commits}, key=lambda pk: (names[pk].lower(), pk))
    won: dict[tuple[int, date], Decimal] = {}
    run = latest_run()
    if run is not None and submitters:
        rows = MetricSnapshot.objects.filter(
            run=run,
            metric=Metric.FORECAST,
            group_kind=GroupKind.OWNER,
            period_kind=kind,
            period_start__in=[period.start for period in ended],
            owner_id__in=submitters,
        ).values_list("owner_id", "period_start", "values")
        won = {(owner_id, start): Decimal(values["won_amount"]) for owner_id, start, values in rows}
    result = []
    for pk in submitters:
        entries = []
        error = bias = won_total = ZERO
        for period in ended:
            commit = commits.get((pk, period.start))
            amount = won.get((pk, period.start), ZERO)
            if commit is not None:
                error += abs(amount - commit)
                bias += commit - amount
                won_total += amount
            entries.append(
                ReliabilityPeriod(
                    period=period,
                    commit=commit,
                    won=amount,
                    ape=None if commit is None else _ratio(abs(amount - commit), amount),
                    bias=None if commit is None else _ratio(commit - amount, amount),
                )
            )
        result.append(RepReliability(pk, names[pk], tuple(entries), _ratio(error, won_total), _ratio(bias, won_total)))
    return result
