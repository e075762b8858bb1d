"""The metrics of SPEC §3, computed set-based in PostgreSQL: one function per metric family.

Each function runs one `INSERT … SELECT` that writes the family's rows for every period and group into
`forecasting_metricsnapshot` for the run `params.run_id`, and returns the number of rows written. No deal is
loaded into Python. The shared conventions:

- Periods are months, quarters and years, half-open, in `settings.TIME_ZONE`: a timestamp is converted with
  `AT TIME ZONE` before `date_trunc`, so a deal closed at 23:30 on 31 October in New York is October's even
  though it is November in UTC. Dates (expected_close_date) are used as they are.
- Groups come from one pass with GROUPING SETS: the company, and per owner, team (the owner's current team),
  pipeline and source. Per-stage families (funnel, probabilities, time in stage) are per pipeline by nature, so
  their groups are company, owner, team and source inside each pipeline.
- "Reached" a stage means the deal's furthest open stage (highest `order` among open stages it entered, from
  StageChange, stamped on the deal as furthest_open_order) is at least that stage; a deal that is won now reached
  every open stage of its pipeline.

Every family takes a `MetricParams` (the run, its "now", the settings it reads, the periods, and for an incremental
refresh the scope) and writes exactly the keys of `values` its TypedDict below declares (`VALUES`), which the API
serializers read. The engine that runs the families (locks, connections, parts, runs) is `forecasting.recompute`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.backends.utils import CursorWrapper

from forecasting import backtest as history_sql
from forecasting.models import GroupKind, Metric
from forecasting.periods import Window
from forecasting.selectors import learning_settings

GROUP_COLUMNS = {"owner": "owner_id", "team": "team_id", "pipeline": "pipeline_id", "source": "source"}
ALL_GROUPS = ["owner", "team", "pipeline", "source"]
STAGE_GROUPS = ["owner", "team", "source"]  # pipeline is part of every per-stage row already

# A won deal reached every open stage: its furthest order is above any real order (orders are smallint).
WON_REACHED_EVERYTHING = 32767

INSERT = """
INSERT INTO forecasting_metricsnapshot (
    run_id, metric, period_kind, period_start, period_end, group_kind,
    owner_id, team_id, pipeline_id, source, stage_id, deal_id, "values", computed_at
)
"""

# Month, quarter and year: joined to each fact, `date_trunc(k.kind, <local time>)` is the period it falls in. Those
# of `params.period_kinds` only (all of them, and "all" for the funnel, but in parts of a parallel recompute).
PERIOD_KINDS = """
(SELECT * FROM (VALUES ('month', interval '1 month'), ('quarter', interval '3 months'), ('year', interval '1 year'))
        AS kinds(kind, step) WHERE kind = ANY(%(period_kinds)s)) AS k(kind, step)
"""
ALL_PERIOD_KINDS = ("month", "quarter", "year", "all")

# Deals with their owner's current team and the furthest open stage each reached (stamped on the deal at write
# time: pipeline.stage_history).
DEALS_WITH_FURTHEST = f"""
deals AS (
    SELECT d.id, d.pipeline_id, d.stage_id, d.status, d.amount, d.source, d.owner_id, u.team_id,
           d.created_at, d.closed_at, d.stage_entered_at, d.expected_close_date, d.forecast_category,
           CASE WHEN d.status = 'won' THEN {WON_REACHED_EVERYTHING} ELSE d.furthest_open_order END AS furthest_order
      FROM pipeline_deal d
      JOIN accounts_user u ON u.id = d.owner_id
     WHERE (NOT %(scoped)s OR d.pipeline_id = ANY(%(pipelines)s))
)
"""


# --- What a family takes ------------------------------------------------------------------------------------------

PeriodSlice = tuple[str, date]  # (period kind, period start)


@dataclass(frozen=True)
class Scope:
    """What an incremental refresh recomputes (`forecasting.changes.Slices.scope`): the periods of closes, of the
    forecast (closes and expected closes) and of creations it touched, the pipelines and owners, and the pending
    changes it takes (whose deals' stale rows it rewrites), as runs of consecutive ids that the SQL reads in place
    (`CHANGES`): a queue of any length costs the refresh's process no memory."""

    closed: frozenset[PeriodSlice] = frozenset()
    forecast: frozenset[PeriodSlice] = frozenset()
    created: frozenset[PeriodSlice] = frozenset()
    pipelines: frozenset[int] = frozenset()
    owners: frozenset[int] = frozenset()
    changes: tuple[tuple[int, int], ...] = ()  # (first id, last id) of each run of the pending changes taken


@dataclass(frozen=True)
class Live:
    """A read computed when asked instead of a run's rows (`forecasting.selectors.metric_rows`): one row per group
    for a custom range or all time, of one group kind, over the deals of some owners, teams or pipelines only (None:
    everyone's) so that an index reads no more than the rows the caller may see."""

    window: Window
    group: str  # the one group kind written: company, owner, team, pipeline or source
    owners: tuple[int, ...] | None = None
    teams: tuple[int, ...] | None = None
    pipelines: tuple[int, ...] | None = None


@dataclass(frozen=True)
class MetricParams:
    """The input of every family: which run it writes, its "now", the settings it reads, which period kinds, and
    (for an incremental refresh) the scope; `sql()` is the one place its SQL parameters come from."""

    run_id: int
    computed_at: datetime  # the run's "now": the transaction time, or `as_of`
    tz: str  # settings.TIME_ZONE: periods are local
    prior_strength: int  # k of the learned probabilities
    lookback_days: int  # the learned probabilities' window (0 = all history)
    period_kinds: tuple[str, ...] = ALL_PERIOD_KINDS
    scope: Scope | None = None  # None: a full recompute, nothing scoped
    live: Live | None = None  # a live read: SELECT one window's rows rather than INSERT a run's periods

    def __post_init__(self) -> None:
        unknown = set(self.period_kinds) - set(ALL_PERIOD_KINDS)
        if not self.period_kinds or unknown:
            raise ValueError(f"period_kinds must be some of {ALL_PERIOD_KINDS}, not {sorted(unknown)}")
        if self.lookback_days < 0:
            raise ValueError("lookback_days must be zero (all history) or more")

    @classmethod
    def of_run(cls, *, run_id: int, computed_at: datetime, scope: Scope | None = None) -> "MetricParams":
        """The parameters of a recompute (or, with a scope, a refresh) of `run_id` as of `computed_at`, with the
        time zone of the settings, and the prior strength and lookback in effect (`selectors.learning_settings`)."""
        learning = learning_settings()
        return cls(
            run_id=run_id,
            computed_at=computed_at,
            tz=settings.TIME_ZONE,
            prior_strength=learning.prior_strength,
            lookback_days=learning.lookback_days,
            scope=scope,
        )

    def sql(self) -> dict[str, Any]:
        """The named parameters of the families' SQL. Unscoped, every scope parameter is there too (empty), so that
        the SQL is the same text either way and PostgreSQL folds the `NOT %(scoped)s OR …` conditions away."""
        scope = self.scope
        params = {
            "run_id": self.run_id,
            "computed_at": self.computed_at,
            "tz": self.tz,
            "prior_strength": self.prior_strength,
            "lookback_days": self.lookback_days,
            "period_kinds": list(self.period_kinds),
            "scoped": scope is not None,
            "pipelines": sorted(scope.pipelines) if scope else [],
            "owners": sorted(scope.owners) if scope else [],
            "changes_first": [first for first, _ in scope.changes] if scope else [],
            "changes_last": [last for _, last in scope.changes] if scope else [],
        }
        for name in ("closed", "forecast", "created"):
            params |= self._period_arrays(name, getattr(scope, name) if scope else None)
        return params | self._live()

    def _live(self) -> dict[str, Any]:
        """The window of a live read (start and end as dates and as instants in `tz`, and those of the window before
        it, for lead velocity) and whose deals it reads; all None but `live` in a recompute."""
        live = self.live
        window = live.window if live else Window.all_time()
        previous = window.previous() or Window.all_time()

        def ids(values: tuple[int, ...] | None) -> list[int] | None:
            return None if values is None else sorted(values)

        window_from, window_to = window.bounds(self.tz)
        previous_from, previous_to = previous.bounds(self.tz)
        return {
            "live": live is not None,
            "window_kind": window.kind,
            "window_start": window.start,
            "window_end": window.end,
            "window_from": window_from,
            "window_to": window_to,
            "has_previous": live is not None and previous.start is not None,
            "previous_from": previous_from,
            "previous_to": previous_to,
            "live_owners": ids(live.owners) if live else None,
            "live_teams": ids(live.teams) if live else None,
            "live_pipelines": ids(live.pipelines) if live else None,
        }

    def _period_arrays(self, name: str, periods: frozenset[PeriodSlice] | None) -> dict[str, Any]:
        """The periods as two arrays (kinds, starts), and the earliest start as a date and as a time in `tz`."""
        if periods is None:
            return {f"{name}_kinds": [], f"{name}_starts": [], f"{name}_since_date": None, f"{name}_since": None}
        ordered = sorted(periods)
        since = min((start for _, start in ordered), default=date.max)
        return {
            f"{name}_kinds": [kind for kind, _ in ordered],
            f"{name}_starts": [start for _, start in ordered],
            f"{name}_since_date": since,
            f"{name}_since": datetime.combine(since, datetime.min.time(), ZoneInfo(self.tz)),
        }


# --- What a family writes: the keys of `values` of its rows -------------------------------------------------------
# Amounts are decimal strings, dates and times ISO strings, rates and days numbers; None where a definition says null.


class DealOutcomesValues(TypedDict):
    won: int
    lost: int
    win_rate: float | None
    won_amount: str
    avg_won_amount: str | None
    won_cycle_days_mean: float | None
    won_cycle_days_median: float | None
    lost_cycle_days_mean: float | None
    lost_cycle_days_median: float | None


class FunnelValues(TypedDict):
    order: int
    reached: int
    next_reached: int | None
    won: int
    cohort_deals: int
    conversion: float | None


class LearnedProbabilityValues(TypedDict):
    w: int
    l: int  # noqa: E741 - the l of p = (w + k·p0) / (w + l + k)
    k: float
    p0: float
    p: float | None
    lookback_days: int


class ForecastValues(TypedDict):
    weighted_configured: str
    weighted_learned: str
    commit: str
    best_case: str
    pipeline: str
    open_count: int
    won_amount: str
    won_count: int
    # The weighted sums before rounding (trimmed of trailing zeros): a refresh adds a changed deal's difference to
    # them and rounds again (`forecast_differences`), which the rounded values alone would not give to the cent.
    weighted_configured_exact: str
    weighted_learned_exact: str


class PastDueValues(TypedDict):
    today: str
    count: int
    amount: str
    no_close_date_count: int
    no_close_date_amount: str


class StageTimeValues(TypedDict):
    stays: int
    days_mean: float | None
    days_median: float | None
    in_stage_now: int
    now_age_days_mean: float | None
    now_age_days_median: float | None
    now_age_days_max: float | None


class StaleValues(TypedDict):
    days_in_stage: float
    rotting_days: int
    rotting: bool  # the name in_stage_too_long had before there was a second way to rot; kept for readers of it
    in_stage_too_long: bool
    no_next_step: bool
    no_activity: bool
    days_since_touch: float
    stage_entered_at: str
    last_touched_at: str
    amount: str | None
    currency: str


class StaleTotalsValues(TypedDict):
    total_count: int  # each stale deal once, whatever its reasons
    total_amount: str  # a deal without an amount adds 0
    in_stage_too_long_count: int
    in_stage_too_long_amount: str
    no_next_step_count: int
    no_next_step_amount: str
    no_activity_count: int
    no_activity_amount: str


class LeadsValues(TypedDict):
    qualified: int
    qualified_previous: int
    lead_velocity_rate: float | None
    created: int
    created_reached_mql: int
    created_reached_sql: int
    created_converted: int
    mql_to_sql_rate: float | None
    lead_to_deal_rate: float | None


class QuotaValues(TypedDict):
    quota_id: int
    quota: str
    won_amount: str
    attainment: float | None
    open_amount: str
    remaining: str
    coverage: float | None
    trailing_win_rate: float | None
    trailing_avg_won_amount: str | None
    deals_needed: int | None


class ForecastAccuracyValues(TypedDict):
    forecast_configured: str
    forecast_learned: str
    commit: str
    best_case: str
    actual_won: str
    ape_configured: float | None
    ape_learned: float | None
    snapshotted_at: str


class BacktestValues(TypedDict):
    at: str  # the instant T the forecast stood at
    week: int  # 0: the period's start; n: the n-th Monday inside it
    open_count: int
    pipeline: str
    weighted_configured: str
    weighted_learned: str
    commit: str
    best_case: str
    actual_won: str
    ape_configured: float | None
    ape_learned: float | None
    ape_commit: float | None
    ape_best_case: float | None


class BacktestSummaryValues(TypedDict):
    week: int
    rows: int  # the periods summed
    actual_won: str
    error_configured: str  # Σ |actual − forecast|
    over_configured: str  # Σ (forecast − actual)
    error_learned: str
    over_learned: str
    error_commit: str
    over_commit: str
    error_best_case: str
    over_best_case: str


class CalibrationValues(TypedDict):
    predictions: int  # one per closed deal and open stage it entered (its first entry)
    won: int  # of those predictions, the deal's that were won
    win_rate: float | None
    mean_configured: float | None
    mean_learned: float | None
    brier_configured: float | None
    brier_learned: float | None
    # The non-empty bins [b/10, (b+1)/10) (the last one closed), each {bin, count, mean_p, win_rate}.
    bins_configured: list
    bins_learned: list


# Each metric's declaration of its `values`: the SQL below writes exactly these keys, the API serializers read them.
VALUES: dict[Metric, type] = {
    Metric.DEAL_OUTCOMES: DealOutcomesValues,
    Metric.FUNNEL: FunnelValues,
    Metric.LEARNED_PROBABILITY: LearnedProbabilityValues,
    Metric.FORECAST: ForecastValues,
    Metric.PAST_DUE: PastDueValues,
    Metric.STAGE_TIME: StageTimeValues,
    Metric.STALE: StaleValues,
    Metric.STALE_TOTALS: StaleTotalsValues,
    Metric.LEADS: LeadsValues,
    Metric.QUOTA: QuotaValues,
    Metric.FORECAST_ACCURACY: ForecastAccuracyValues,
    Metric.BACKTEST: BacktestValues,
    Metric.BACKTEST_SUMMARY: BacktestSummaryValues,
    Metric.CALIBRATION: CalibrationValues,
}


def result_keys(metric: Metric) -> tuple[str, ...]:
    """The keys of `values` in every row of `metric`, in the order they are declared."""
    return tuple(VALUES[metric].__annotations__)


# The values of a group with nothing to count (SPEC §3: rates null when nothing closed), for the rows a read of one
# period adds for every group the caller may see that has none (`forecasting.selectors.metric_rows`).
_NOTHING = {
    Metric.DEAL_OUTCOMES: {"won": 0, "lost": 0, "won_amount": "0.00"},
    Metric.FORECAST: {
        **dict.fromkeys(["weighted_configured", "weighted_learned", "commit", "best_case", "pipeline"], "0.00"),
        **{"open_count": 0, "won_amount": "0.00", "won_count": 0},
        **dict.fromkeys(["weighted_configured_exact", "weighted_learned_exact"], "0"),
    },
    Metric.LEADS: dict.fromkeys(
        ["qualified", "qualified_previous", "created", "created_reached_mql", "created_reached_sql"], 0
    )
    | {"created_converted": 0},
    Metric.FUNNEL: {"reached": 0, "won": 0, "cohort_deals": 0},
}
FILLED = tuple(_NOTHING)  # the metrics whose reads of one period answer every visible group


def empty_values(metric: Metric, **known: Any) -> dict[str, Any]:
    """`values` of a row of `metric` over nothing: counts and amounts 0, rates, means and medians null; `known` gives
    the keys that describe the row rather than count (a funnel stage's order)."""
    values = dict.fromkeys(result_keys(metric)) | _NOTHING[metric] | known
    if set(values) != set(result_keys(metric)):
        raise ValueError(f"{metric} has no keys {sorted(set(values) - set(result_keys(metric)))}")
    return values


def _values(metric: Metric, **expressions: str) -> str:
    """`jsonb_build_object` of exactly the keys `metric` declares, each from its SQL expression."""
    if tuple(expressions) != result_keys(metric):
        raise ValueError(
            f"the SQL of {metric} must build {result_keys(metric)}, in that order, not {tuple(expressions)}"
        )
    return "jsonb_build_object(" + ", ".join(f"'{key}', {sql}" for key, sql in expressions.items()) + ")"


def _owner_in_team(groups: list[str], nested: bool) -> bool:
    return nested and "owner" in groups and "team" in groups


def _grouping_sets(base: list[str], groups: list[str], *, company: bool = True, owner_in_team: bool = False) -> str:
    """GROUPING SETS of the company (`base`) and of each group kind (`base` + its column).

    `owner_in_team`: the owner's set is (`base`, team_id, owner_id) instead, the same groups (a deal's team is its
    owner's), so that company, team and owner are one rollup, one sort, where an aggregate needs sorted input (the
    medians); `_group_columns` with the same flag writes such a row's team_id NULL.
    """
    nested = _owner_in_team(groups, owner_in_team)
    sets = [base] * company + [
        [*base, GROUP_COLUMNS["team"], GROUP_COLUMNS["owner"]] if nested and group == "owner" else [*base, col]
        for group, col in ((group, GROUP_COLUMNS[group]) for group in groups)
    ]
    return "GROUPING SETS (" + ", ".join("(" + ", ".join(columns) + ")" for columns in sets) + ")"


def _group_kind(groups: list[str]) -> str:
    """SQL naming the group of a row: GROUPING(col) is 0 when the row's grouping set includes col (the owner asked
    first: its set may include team_id too, `_grouping_sets`)."""
    if not groups:
        return "'company'"
    ordered = [group for group in GROUP_COLUMNS if group in groups]
    cases = " ".join(f"WHEN GROUPING({GROUP_COLUMNS[group]}) = 0 THEN '{group}'" for group in ordered)
    return f"CASE {cases} ELSE 'company' END"


def _group_columns(groups: list[str], intrinsic: tuple[str, ...] = (), *, owner_in_team: bool = False) -> str:
    """owner_id, team_id, pipeline_id, source of a row: the grouped one (or an intrinsic key), NULL otherwise."""
    nested = _owner_in_team(groups, owner_in_team)

    def column_of(group: str, column: str) -> str:
        if nested and group == "team":
            return f"CASE WHEN GROUPING(owner_id) = 0 THEN NULL ELSE team_id END AS {column}"
        if group in groups or column in intrinsic:
            return f"{column} AS {column}"
        return f"NULL::{'text' if group == 'source' else 'bigint'} AS {column}"

    return ", ".join(column_of(group, column) for group, column in GROUP_COLUMNS.items())


# A live read (MetricParams.live): the same SQL as a recompute's, with one bucket (the window) instead of every month,
# quarter and year, the one group kind asked for, and no INSERT: the rows come back to the caller.


def _insert(params: MetricParams) -> str:
    return "" if params.live else INSERT


def _periods_of(params: MetricParams, local: str, slices: str) -> tuple[str, str, str]:
    """Which period a fact at local time `local` counts in: its columns (kind, period_start, period_end), the join
    giving them and the condition on them. A live read has one period, the window (its facts are bounded where they
    are read, with `_in_window`, so that an index is used)."""
    if params.live:
        return (
            "%(window_kind)s::text AS kind, %(window_start)s::date AS period_start, %(window_end)s::date AS period_end",
            "",
            "TRUE",
        )
    truncated = f"date_trunc(k.kind, {local})"
    return (
        f"k.kind, {truncated}::date AS period_start, ({truncated} + k.step)::date AS period_end",
        f"CROSS JOIN {PERIOD_KINDS}",
        _in_slices(slices, "k.kind", f"{truncated}::date"),
    )


def _in_window(column: str, *, dates: bool = False, window: str = "window") -> str:
    """In a live read, `column` (a time, or with `dates` a date) lies in the window (or `previous`); true otherwise
    and for all time."""
    start, end = ("start", "end") if dates else ("from", "to")
    kind = "date" if dates else "timestamptz"
    return (
        f"(NOT %(live)s OR %({window}_{start})s::{kind} IS NULL OR "
        f"({column} >= %({window}_{start})s::{kind} AND {column} < %({window}_{end})s::{kind}))"
    )


def _live_groups(params: MetricParams, groups: list[str]) -> tuple[list[str], bool]:
    """The groups a family writes and whether it writes the company row: all of them, or the one a live read asks."""
    if params.live is None:
        return groups, True
    return [group for group in groups if group == params.live.group], params.live.group == GroupKind.COMPANY


def _live_rows_of(owner: str, team: str, pipeline: str | None = None) -> str:
    """In a live read, only the deals (or leads) of the owners, teams and pipelines it reads (each None: all)."""
    conditions = [
        f"(%(live_owners)s::bigint[] IS NULL OR {owner} = ANY(%(live_owners)s::bigint[]))",
        f"(%(live_teams)s::bigint[] IS NULL OR {team} = ANY(%(live_teams)s::bigint[]))",
    ]
    if pipeline is not None:
        conditions.append(f"(%(live_pipelines)s::bigint[] IS NULL OR {pipeline} = ANY(%(live_pipelines)s::bigint[]))")
    return f"(NOT %(live)s OR ({' AND '.join(conditions)}))"


def _execute(cursor: CursorWrapper, sql: str, params: MetricParams) -> int:
    cursor.execute(sql, params.sql())
    return cursor.rowcount


# Scoping, for an incremental refresh (forecasting.changes.Slices.params); in a full recompute `scoped` is false and
# each condition is constant true, which PostgreSQL folds away when it plans the query with the parameters.


def _in_slices(slices: str, kind: str, start: str) -> str:
    """The fact lies in one of the periods the refresh recomputes (the `slices` arrays of kinds and starts)."""
    return (
        f"(NOT %(scoped)s OR ({kind}, {start}) IN "
        f"(SELECT * FROM unnest(%({slices}_kinds)s::text[], %({slices}_starts)s::date[])))"
    )


def _since(slices: str, column: str, *, dates: bool = False) -> str:
    """A lower bound on the facts a refresh reads (the earliest start of `slices`), so that an index skips the past."""
    return f"(NOT %(scoped)s OR {column} >= %({slices}_since{'_date' if dates else ''})s)"


def _any(column: str, values: str) -> str:
    return f"(NOT %(scoped)s OR {column} = ANY(%({values})s))"


# The pending changes a refresh takes (`Scope.changes`), read where they are: the refresh deletes them last.
CHANGES = """(
    SELECT p.* FROM forecasting_pendingchange p
      JOIN unnest(%(changes_first)s::bigint[], %(changes_last)s::bigint[]) AS taken (first, last)
        ON p.id BETWEEN taken.first AND taken.last
)"""
# The deal `{deal}` is one a refresh's changes name. Only in a refresh's SQL (`_scoped`), not under `NOT %(scoped)s
# OR`: there `IN (SELECT …)` stays a filter on every row (1.6 s over the open deals for one change on L), and an
# `= ANY(ARRAY(SELECT …))` compares each row with every id (minutes for 50,000); alone it is a semi-join.
CHANGED_DEALS = f"{{deal}} IN (SELECT deal_id FROM {CHANGES} AS changes)"


def _scoped(params: "MetricParams", condition: str) -> str:
    """`condition` in a refresh, TRUE in a full recompute (for conditions a join serves better than a constant OR)."""
    return condition if params.scope is not None else "TRUE"


def deal_outcomes(cursor: CursorWrapper, params: MetricParams) -> int:
    """Win rate, average won deal size and sales cycle length, over deals closed (won or lost) in each period.

    win_rate = won / (won + lost); avg_won_amount = mean amount of deals won (deals without an amount are left
    out of the mean); cycle days = (closed_at − created_at) in days, mean and median, for won and lost apart.
    A period in which nothing closed has no row: its win rate is null.
    """
    values = _values(
        Metric.DEAL_OUTCOMES,
        won="count(*) FILTER (WHERE status = 'won')",
        lost="count(*) FILTER (WHERE status = 'lost')",
        win_rate="(count(*) FILTER (WHERE status = 'won'))::float8 / nullif(count(*), 0)",
        won_amount="coalesce(sum(amount) FILTER (WHERE status = 'won'), 0)::text",
        avg_won_amount="round(avg(amount) FILTER (WHERE status = 'won'), 2)::text",
        won_cycle_days_mean="avg(cycle_days) FILTER (WHERE status = 'won')",
        won_cycle_days_median=("percentile_cont(0.5) WITHIN GROUP (ORDER BY cycle_days) FILTER (WHERE status = 'won')"),
        lost_cycle_days_mean="avg(cycle_days) FILTER (WHERE status = 'lost')",
        lost_cycle_days_median=(
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY cycle_days) FILTER (WHERE status = 'lost')"
        ),
    )
    groups, company = _live_groups(params, ALL_GROUPS)
    period_columns, period_join, in_periods = _periods_of(params, "local_closed_at", "closed")
    sql = f"""
    {_insert(params)}
    WITH closed AS (
        SELECT d.status, d.amount, d.owner_id, u.team_id, d.pipeline_id, d.source,
               d.closed_at AT TIME ZONE %(tz)s AS local_closed_at,
               extract(epoch FROM d.closed_at - d.created_at)::float8 / 86400 AS cycle_days
          FROM pipeline_deal d
          JOIN accounts_user u ON u.id = d.owner_id
         WHERE d.status IN ('won', 'lost') AND {_since("closed", "d.closed_at")}
           AND {_in_window("d.closed_at")} AND {_live_rows_of("d.owner_id", "u.team_id", "d.pipeline_id")}
    ), facts AS (
        SELECT closed.*, {period_columns}
          FROM closed {period_join}
         WHERE {in_periods}
    )
    SELECT %(run_id)s, '{Metric.DEAL_OUTCOMES.value}', kind, period_start, period_end, {_group_kind(groups)},
           {_group_columns(groups, owner_in_team=True)}, NULL, NULL,
           {values},
           %(computed_at)s
      FROM facts
     GROUP BY {_grouping_sets(["kind", "period_start", "period_end"], groups, company=company, owner_in_team=True)}
    """
    return _execute(cursor, sql, params)


def funnel(cursor: CursorWrapper, params: MetricParams) -> int:
    """The funnel of each pipeline: per open stage S, reached(S) and conversion(S).

    Cohorts are the deals created in each month, quarter and year, and all deals (period kind "all").
    conversion(S) = reached(next open stage) / reached(S); for the last open stage, won / reached(S); null when
    reached(S) is 0. Every open stage of the pipeline has a row for every cohort and group that has deals.
    """
    groups = STAGE_GROUPS
    values = _values(
        Metric.FUNNEL,
        order='"order"',
        reached="reached",
        next_reached="next_reached",
        won="won",
        cohort_deals="cohort_deals",
        conversion="coalesce(next_reached, won)::float8 / nullif(reached, 0)",
    )
    groups, company = _live_groups(params, STAGE_GROUPS)
    period_columns, period_join, in_periods = _periods_of(params, "month", "created")
    all_deals = (
        ""
        if params.live
        else "UNION ALL SELECT by_month.*, 'all', NULL::date, NULL::date FROM by_month "
        "WHERE 'all' = ANY(%(period_kinds)s)"
    )
    group_keys = "group_kind, owner_id, team_id, pipeline_id, source"
    sql = f"""
    {_insert(params)}
    WITH {DEALS_WITH_FURTHEST}, partials AS MATERIALIZED (
        -- Deals counted once per creation month, owner, source and furthest stage: every cohort and group below
        -- adds up these counts (a few hundred thousand rows) instead of reading every deal again.
        SELECT date_trunc('month', created_at AT TIME ZONE %(tz)s) AS month, pipeline_id, owner_id, team_id, source,
               furthest_order, count(*) AS deals, count(*) FILTER (WHERE status = 'won') AS won
          FROM deals
         WHERE {_in_window("created_at")} AND {_live_rows_of("owner_id", "team_id", "pipeline_id")}
         GROUP BY 1, 2, 3, 4, 5, 6
    ), by_month AS (
        -- Every group of each creation month, once: the quarters, years and all time add up these rows (a group is
        -- the same whatever the cohort) instead of grouping the partials again for each kind of cohort.
        SELECT month, {_group_kind(groups)} AS group_kind,
               {_group_columns(groups, intrinsic=("pipeline_id",))},
               furthest_order, sum(deals)::bigint AS deals, sum(won)::bigint AS won
          FROM partials
         GROUP BY {_grouping_sets(["month", "pipeline_id", "furthest_order"], groups, company=company)}
    ), cohorts AS (
        SELECT by_month.*, {period_columns}
          FROM by_month {period_join}
         WHERE {in_periods}
        {all_deals}
    ), by_furthest AS (
        SELECT kind, period_start, period_end, {group_keys}, furthest_order,
               sum(deals)::bigint AS deals, sum(won)::bigint AS won
          FROM cohorts
         GROUP BY kind, period_start, period_end, {group_keys}, furthest_order
    ), by_group AS (
        -- Each cohort and group with its deals by furthest stage reached (a handful of pairs), so that a stage's
        -- row below adds them up without a join and a grouping of every (cohort, group, furthest stage) × stage.
        SELECT kind, period_start, period_end, {group_keys},
               array_agg(furthest_order) AS furthest_orders, array_agg(deals) AS deals,
               sum(deals) AS cohort_deals, sum(won) AS won
          FROM by_furthest
         GROUP BY kind, period_start, period_end, {group_keys}
    ), open_stages AS (
        -- Each open stage with the order of the next one of its pipeline (orders are unique per pipeline).
        SELECT s.id, s.pipeline_id, s."order",
               lead(s."order") OVER (PARTITION BY s.pipeline_id ORDER BY s."order") AS next_order
          FROM pipeline_stage s
         WHERE s.kind = 'open'
    ), reached AS (
        SELECT g.*, s.id AS stage_id, s."order", r.reached,
               CASE WHEN s.next_order IS NOT NULL THEN r.next_reached END AS next_reached
          FROM by_group g
          JOIN open_stages s ON s.pipeline_id = g.pipeline_id
         CROSS JOIN LATERAL (
               SELECT coalesce(sum(f.deals) FILTER (WHERE f.furthest_order >= s."order"), 0) AS reached,
                      coalesce(sum(f.deals) FILTER (WHERE f.furthest_order >= s.next_order), 0) AS next_reached
                 FROM unnest(g.furthest_orders, g.deals) AS f(furthest_order, deals)
         ) AS r
    )
    SELECT %(run_id)s, '{Metric.FUNNEL.value}', kind, period_start, period_end, group_kind,
           owner_id, team_id, pipeline_id, source, stage_id, NULL,
           {values},
           %(computed_at)s
      FROM reached
    """
    return _execute(cursor, sql, params)


def _write_merged(new_row_key: str) -> str:
    """The end of a differences statement (`funnel_differences`, `forecast_differences`): its `merged` rows
    (`row_id`, `"values"`, `kept`) written back to the run, kept rows updated, emptied ones removed, new ones inserted
    with `new_row_key` (the snapshot's columns before `"values"`), then whether the patch was exact and the counts."""
    return f"""updated AS (
        UPDATE forecasting_metricsnapshot r SET "values" = m."values", computed_at = %(computed_at)s
          FROM merged m
         WHERE r.id = m.row_id AND m.kept
        RETURNING 1
    ), removed AS (
        DELETE FROM forecasting_metricsnapshot r USING merged m WHERE r.id = m.row_id AND NOT m.kept
        RETURNING 1
    ), inserted AS (
        {INSERT}
        SELECT {new_row_key}, "values", %(computed_at)s
          FROM merged m
         WHERE m.row_id IS NULL AND m.kept
        RETURNING 1
    )
    SELECT (SELECT ok FROM exact), (SELECT count(*) FROM updated), (SELECT count(*) FROM inserted),
           (SELECT count(*) FROM removed)"""


def _patch(
    cursor: CursorWrapper, sql: str, params: MetricParams, arrays: dict[str, Any]
) -> tuple[int, int, int] | None:
    """Run a differences statement: (updated, inserted, removed), or None when it was not exact and wrote nothing."""
    cursor.execute(sql, params.sql() | arrays)
    ok, *counts = cursor.fetchone()
    return tuple(counts) if ok else None


def funnel_differences(
    cursor: CursorWrapper, params: MetricParams, images: list[dict[str, Any]]
) -> tuple[int, int, int] | None:
    """Apply changed deals to the run's funnel rows as differences: each image (sign −1 old, +1 new) counted out of
    or into `reached` of every open stage up to its furthest, `won` and `cohort_deals`, in the cohorts of its
    creation (month, quarter, year, all deals) and its groups; `next_reached` follows the next stage's `reached`,
    the conversion is derived again from the counts. A group's rows are made when it gets its first deal and removed
    with its last, as `funnel` writes them.

    `images` as for `forecast_differences`. Returns the rows (updated, inserted, removed), or None, having changed
    nothing, when an image's owner is gone (only a recompute knows the rows of a team it left).
    """
    groups = STAGE_GROUPS
    columns = {
        "deal_id": "bigint", "pipeline_id": "bigint", "owner_id": "bigint", "source": "text", "status": "text",
        "furthest_open_order": "int", "created_at": "timestamptz", "sign": "int",
    }  # fmt: skip
    arrays = {f"image_{name}": [image[name] for image in images] for name in columns}
    unnest = ", ".join(f"%(image_{name})s::{kind}[]" for name, kind in columns.items())
    group_match = " AND ".join(
        f"r.{column} IS NOT DISTINCT FROM d.{column}" for column in ("owner_id", "team_id", "pipeline_id", "source")
    )
    row_of = f"""
        SELECT r.id, r."values" FROM forecasting_metricsnapshot r
         WHERE r.run_id = %(run_id)s AND r.metric = '{Metric.FUNNEL.value}' AND r.group_kind = d.group_kind
           AND r.period_kind = d.kind AND r.stage_id = d.stage_id AND {group_match}
    """
    new_values = _values(
        Metric.FUNNEL,
        order='c."order"',
        reached="c.reached",
        next_reached="c.next_reached",
        won="c.won",
        cohort_deals="c.cohort_deals",
        conversion="coalesce(c.next_reached, c.won)::float8 / nullif(c.reached, 0)",
    )

    def old(key: str) -> str:
        return f"coalesce((r.\"values\"->>'{key}')::bigint, 0)"

    write = _write_merged(
        f"%(run_id)s, '{Metric.FUNNEL.value}', kind, period_start, period_end, group_kind, "
        "owner_id, team_id, pipeline_id, source, stage_id, NULL"
    )
    sql = f"""
    WITH images ({", ".join(columns)}) AS (
        SELECT * FROM unnest({unnest})
    ), facts AS (
        SELECT i.sign, i.pipeline_id, i.owner_id, u.team_id, i.source, i.status = 'won' AS won,
               CASE WHEN i.status = 'won' THEN {WON_REACHED_EVERYTHING} ELSE i.furthest_open_order END
                   AS furthest_order,
               date_trunc('month', i.created_at AT TIME ZONE %(tz)s) AS month
          FROM images i
          JOIN accounts_user u ON u.id = i.owner_id
    ), cohorts AS (
        SELECT facts.*, k.kind, date_trunc(k.kind, month)::date AS period_start,
               (date_trunc(k.kind, month) + k.step)::date AS period_end
          FROM facts CROSS JOIN {PERIOD_KINDS}
        UNION ALL
        SELECT facts.*, 'all', NULL::date, NULL::date FROM facts
    ), by_stage AS (
        SELECT kind, period_start, period_end, {_group_kind(groups)} AS group_kind,
               {_group_columns(groups, intrinsic=("pipeline_id",))}, stage_id, "order",
               coalesce(sum(sign) FILTER (WHERE furthest_order >= "order"), 0) AS reached,
               sum(sign) FILTER (WHERE won) AS won, sum(sign) AS cohort_deals
          FROM cohorts
          JOIN (SELECT id AS stage_id, pipeline_id AS of_pipeline, "order" FROM pipeline_stage WHERE kind = 'open') s
            ON s.of_pipeline = cohorts.pipeline_id
         GROUP BY {_grouping_sets(["kind", "period_start", "period_end", "pipeline_id", "stage_id", '"order"'], groups)}
    ), differences AS (
        SELECT by_stage.*, coalesce(won, 0) AS won_difference,
               lead(reached) OVER w AS next_reached, lead(stage_id) OVER w IS NULL AS last
          FROM by_stage
        WINDOW w AS (PARTITION BY kind, period_start, group_kind, owner_id, team_id, pipeline_id, source
                     ORDER BY "order")
    ), changed AS (
        SELECT d.kind, d.period_start, d.period_end, d.group_kind, d.owner_id, d.team_id, d.pipeline_id, d.source,
               d.stage_id, d."order", r.id AS row_id,
               d.reached + {old("reached")} AS reached,
               CASE WHEN NOT d.last THEN d.next_reached + {old("next_reached")} END AS next_reached,
               d.won_difference + {old("won")} AS won,
               d.cohort_deals + {old("cohort_deals")} AS cohort_deals
          FROM differences d
          LEFT JOIN LATERAL (
              {row_of} AND r.period_start = d.period_start
              UNION ALL
              {row_of} AND r.period_start IS NULL AND d.period_start IS NULL
          ) r ON TRUE
         WHERE d.reached <> 0 OR d.won_difference <> 0 OR d.cohort_deals <> 0 OR coalesce(d.next_reached, 0) <> 0
    ), exact AS (
        SELECT (SELECT count(*) FROM images) = (SELECT count(*) FROM facts) AS ok
    ), merged AS (
        SELECT c.*, {new_values} AS "values", c.cohort_deals > 0 AS kept
          FROM changed c
         WHERE (SELECT ok FROM exact)
    ), {write}
    """
    return _patch(cursor, sql, params, arrays)


def learned_probability(cursor: CursorWrapper, params: MetricParams) -> int:
    """The learned win probability of each open stage: p = (w + k·p0) / (w + l + k).

    w and l count the deals that reached the stage and closed (won or lost) in the lookback window: the
    `lookback_days` days before computed_at, or all history when it is 0. p0 is the stage's configured
    probability as a fraction, k the prior strength. The company row exists for every open stage (p = p0 when
    nothing closed); owner, team and source rows where their deals closed. p is numeric, exact to ~20 digits.
    """
    groups = STAGE_GROUPS
    values = _values(
        Metric.LEARNED_PROBABILITY,
        w="w",
        l="l",
        k="%(prior_strength)s::numeric",
        p0="p0",
        p="(w + %(prior_strength)s::numeric * p0) / nullif(w + l + %(prior_strength)s::numeric, 0)",
        lookback_days="%(lookback_days)s",
    )
    sql = f"""
    {INSERT}
    WITH {DEALS_WITH_FURTHEST}, closed AS (
        SELECT * FROM deals
         WHERE status IN ('won', 'lost')
           AND (%(lookback_days)s = 0 OR closed_at >= %(computed_at)s - make_interval(days => %(lookback_days)s))
           AND closed_at <= %(computed_at)s
    ), by_furthest AS (
        SELECT {_group_kind(groups)} AS group_kind, {_group_columns(groups, intrinsic=("pipeline_id",))},
               furthest_order,
               count(*) FILTER (WHERE status = 'won') AS won, count(*) FILTER (WHERE status = 'lost') AS lost
          FROM closed
         GROUP BY {_grouping_sets(["pipeline_id", "furthest_order"], groups)}
    ), group_keys AS (
        SELECT DISTINCT group_kind, owner_id, team_id, pipeline_id, source FROM by_furthest
        UNION
        SELECT 'company', NULL, NULL, p.id, NULL FROM pipeline_pipeline p
    ), counts AS (
        SELECT g.group_kind, g.owner_id, g.team_id, g.pipeline_id, g.source, s.id AS stage_id,
               s.probability::numeric / 100 AS p0,
               coalesce(sum(b.won), 0) AS w, coalesce(sum(b.lost), 0) AS l
          FROM group_keys g
          JOIN pipeline_stage s ON s.pipeline_id = g.pipeline_id AND s.kind = 'open'
          LEFT JOIN by_furthest b
                 ON b.group_kind = g.group_kind AND b.pipeline_id = g.pipeline_id
                AND b.owner_id IS NOT DISTINCT FROM g.owner_id AND b.team_id IS NOT DISTINCT FROM g.team_id
                AND b.source IS NOT DISTINCT FROM g.source AND b.furthest_order >= s."order"
         GROUP BY g.group_kind, g.owner_id, g.team_id, g.pipeline_id, g.source, s.id, s.probability
    )
    SELECT %(run_id)s, '{Metric.LEARNED_PROBABILITY.value}', 'now', NULL, NULL, group_kind,
           owner_id, team_id, pipeline_id, source, stage_id, NULL,
           {values},
           %(computed_at)s
      FROM counts
    """
    return _execute(cursor, sql, params)


def forecast(cursor: CursorWrapper, params: MetricParams) -> int:
    """The forecast of each period: open deals by expected_close_date, won deals by closed_at.

    weighted_configured = Σ amount × configured probability, weighted_learned = Σ amount × the company's learned
    probability of the deal's stage (from this run's learned_probability rows), over open deals expected to close
    in the period; commit = Σ amount of those whose forecast category is commit; best_case = commit + Σ best_case;
    pipeline = Σ amount of all of them; won_amount = Σ amount of deals won in the period. Amounts round to cents
    (and are written with two decimals, zeros too: a refresh's sums must read the same). Must run after
    `learned_probability`.
    """
    values = _values(
        Metric.FORECAST,
        **_forecast_values(_forecast_sums(signed=False)),
    )
    groups, company = _live_groups(params, ALL_GROUPS)
    period_columns, period_join, in_periods = _periods_of(params, "local_at", "forecast")
    sql = f"""
    {_insert(params)}
    WITH learned AS (
        SELECT stage_id, ("values"->>'p')::numeric AS p
          FROM forecasting_metricsnapshot
         WHERE run_id = %(run_id)s AND metric = '{Metric.LEARNED_PROBABILITY.value}' AND group_kind = 'company'
    ), facts AS (
        SELECT 'open' AS fact, d.expected_close_date::timestamp AS local_at, d.amount, d.forecast_category,
               s.probability::numeric / 100 AS configured_p, coalesce(l.p, s.probability::numeric / 100) AS learned_p,
               d.owner_id, u.team_id, d.pipeline_id, d.source
          FROM pipeline_deal d
          JOIN accounts_user u ON u.id = d.owner_id
          JOIN pipeline_stage s ON s.id = d.stage_id
          LEFT JOIN learned l ON l.stage_id = d.stage_id
         WHERE d.status = 'open' AND d.expected_close_date IS NOT NULL
           AND {_since("forecast", "d.expected_close_date", dates=True)}
           AND {_in_window("d.expected_close_date", dates=True)}
           AND {_live_rows_of("d.owner_id", "u.team_id", "d.pipeline_id")}
        UNION ALL
        SELECT 'won', d.closed_at AT TIME ZONE %(tz)s, d.amount, d.forecast_category, 1, 1,
               d.owner_id, u.team_id, d.pipeline_id, d.source
          FROM pipeline_deal d
          JOIN accounts_user u ON u.id = d.owner_id
         WHERE d.status = 'won' AND {_since("forecast", "d.closed_at")}
           AND {_in_window("d.closed_at")} AND {_live_rows_of("d.owner_id", "u.team_id", "d.pipeline_id")}
    ), periods AS (
        SELECT facts.*, {period_columns}
          FROM facts {period_join}
         WHERE {in_periods}
    )
    SELECT %(run_id)s, '{Metric.FORECAST.value}', kind, period_start, period_end, {_group_kind(groups)},
           {_group_columns(groups)}, NULL, NULL,
           {values},
           %(computed_at)s
      FROM periods
     GROUP BY {_grouping_sets(["kind", "period_start", "period_end"], groups, company=company)}
    """
    return _execute(cursor, sql, params)


FORECAST_AMOUNTS = ("commit", "best_case", "pipeline", "won_amount")
FORECAST_COUNTS = ("open_count", "won_count")
FORECAST_WEIGHTED = ("weighted_configured", "weighted_learned")


# What each sum or count of a forecast row adds up, over which of its facts (None: the facts themselves, counted).
FORECAST_SUMS = {
    "weighted_configured": ("amount * configured_p", "fact = 'open'"),
    "weighted_learned": ("amount * learned_p", "fact = 'open'"),
    "commit": ("amount", "fact = 'open' AND forecast_category = 'commit'"),
    "best_case": ("amount", "fact = 'open' AND forecast_category IN ('commit', 'best_case')"),
    "pipeline": ("amount", "fact = 'open'"),
    "open_count": (None, "fact = 'open'"),
    "won_amount": ("amount", "fact = 'won'"),
    "won_count": (None, "fact = 'won'"),
}


def _forecast_sums(*, signed: bool) -> dict[str, str]:
    """The SQL of each sum of `FORECAST_SUMS`; `signed`, over images whose `sign` says whether they add or take away."""
    sums = {}
    for key, (summed, facts) in FORECAST_SUMS.items():
        if summed is None:
            summed = "sign" if signed else "*"
            aggregate = "sum" if signed else "count"
        else:
            summed, aggregate = (f"sign * {summed}" if signed else summed), "sum"
        sums[key] = f"{aggregate}({summed}) FILTER (WHERE {facts})"
    return sums


def _forecast_values(sums: dict[str, str]) -> dict[str, str]:
    """The SQL of each key of a forecast row from the SQL of its sums and counts (NULL when nothing was summed): the
    one form of the numbers that both a recompute and a refresh's differences write."""
    expressions = {}
    for key in result_keys(Metric.FORECAST):
        if key in FORECAST_WEIGHTED or key in FORECAST_AMOUNTS:
            expressions[key] = f"round(coalesce({sums[key]}, 0), 2)::text"
        elif key in FORECAST_COUNTS:
            expressions[key] = f"coalesce({sums[key]}, 0)"
        else:
            expressions[key] = f"trim_scale(coalesce({sums[key.removesuffix('_exact')]}, 0))::text"
    return expressions


def forecast_differences(
    cursor: CursorWrapper, params: MetricParams, images: list[dict[str, Any]]
) -> tuple[int, int, int] | None:
    """Apply changed deals to the run's forecast rows as differences: each deal's old image (sign −1) taken out of
    the rows of its periods and groups, its new one (+1) added, rows made where a group had nothing, and rows left
    with nothing (no open deal expected, no deal won) removed; the weighted sums rounded again from their exact
    value. The same rows `forecast` would write for those periods, at the cost of the changes, not the periods.

    `images` are pending changes with a sign, by the names of `forecasting.changes.COLUMNS`. Returns the rows
    (updated, inserted, removed), or None, having changed nothing, when the differences cannot be exact: an image
    without its stage (recorded before migration 0011), an owner or stage no longer there, or a touched row written
    before the exact sums were (the periods are then recomputed instead).
    """
    groups = ALL_GROUPS
    columns = {
        "deal_id": "bigint", "pipeline_id": "bigint", "owner_id": "bigint", "source": "text", "status": "text",
        "amount": "numeric", "closed_at": "timestamptz", "expected_close_date": "date", "sign": "int",
        "stage_id": "bigint", "forecast_category": "text",
    }  # fmt: skip
    arrays = {f"image_{name}": [image[name] for image in images] for name in columns}
    unnest = ", ".join(f"%(image_{name})s::{kind}[]" for name, kind in columns.items())
    deltas = _forecast_sums(signed=True)

    def old(key: str) -> str:
        stored = f"{key}_exact" if key in FORECAST_WEIGHTED else key
        kind = "bigint" if key in FORECAST_COUNTS else "numeric"
        return f"coalesce((c.old->>'{stored}')::{kind}, 0)"

    new_values = _values(Metric.FORECAST, **_forecast_values({key: f"(c.{key} + {old(key)})" for key in deltas}))
    key_columns = "kind, period_start, period_end, group_kind, owner_id, team_id, pipeline_id, source"
    write = _write_merged(f"%(run_id)s, '{Metric.FORECAST.value}', {key_columns}, NULL, NULL")
    sql = f"""
    WITH images ({", ".join(columns)}) AS (
        SELECT * FROM unnest({unnest})
    ), learned AS (
        SELECT stage_id, ("values"->>'p')::numeric AS p
          FROM forecasting_metricsnapshot
         WHERE run_id = %(run_id)s AND metric = '{Metric.LEARNED_PROBABILITY.value}' AND group_kind = 'company'
    ), facts AS (
        SELECT 'open' AS fact, i.expected_close_date::timestamp AS local_at, i.sign, i.amount, i.forecast_category,
               s.probability::numeric / 100 AS configured_p, coalesce(l.p, s.probability::numeric / 100) AS learned_p,
               i.owner_id, u.team_id, i.pipeline_id, i.source
          FROM images i
          JOIN accounts_user u ON u.id = i.owner_id
          JOIN pipeline_stage s ON s.id = i.stage_id
          LEFT JOIN learned l ON l.stage_id = i.stage_id
         WHERE i.status = 'open' AND i.expected_close_date IS NOT NULL
        UNION ALL
        SELECT 'won', i.closed_at AT TIME ZONE %(tz)s, i.sign, i.amount, i.forecast_category, 1, 1,
               i.owner_id, u.team_id, i.pipeline_id, i.source
          FROM images i
          JOIN accounts_user u ON u.id = i.owner_id
         WHERE i.status = 'won'
    ), counted AS (
        -- Each image that some forecast row counts, and the facts made of them: fewer facts means an owner or a
        -- stage that is gone, whose rows only a recompute knows.
        SELECT (SELECT count(*) FROM images i
                 WHERE (i.status = 'open' AND i.expected_close_date IS NOT NULL) OR i.status = 'won') AS images,
               (SELECT count(*) FROM facts) AS facts
    ), periods AS (
        SELECT facts.*, k.kind, date_trunc(k.kind, local_at)::date AS period_start,
               (date_trunc(k.kind, local_at) + k.step)::date AS period_end
          FROM facts CROSS JOIN {PERIOD_KINDS}
    ), differences AS (
        SELECT kind, period_start, period_end, {_group_kind(groups)} AS group_kind, {_group_columns(groups)},
               {", ".join(f"coalesce({sql}, 0) AS {key}" for key, sql in deltas.items())}
          FROM periods
         GROUP BY {_grouping_sets(["kind", "period_start", "period_end"], groups)}
    ), changed AS (
        SELECT d.*, r.id AS row_id, r."values" AS old
          FROM differences d
          LEFT JOIN forecasting_metricsnapshot r
                 ON r.run_id = %(run_id)s AND r.metric = '{Metric.FORECAST.value}' AND r.period_kind = d.kind
                AND r.period_start = d.period_start AND r.group_kind = d.group_kind
                AND r.owner_id IS NOT DISTINCT FROM d.owner_id AND r.team_id IS NOT DISTINCT FROM d.team_id
                AND r.pipeline_id IS NOT DISTINCT FROM d.pipeline_id AND r.source IS NOT DISTINCT FROM d.source
         WHERE ({" OR ".join(f"d.{key} <> 0" for key in deltas)})
    ), exact AS (
        SELECT (SELECT images = facts FROM counted)
               AND NOT EXISTS (SELECT 1 FROM changed WHERE row_id IS NOT NULL AND NOT old ? 'weighted_configured_exact')
               AS ok
    ), merged AS (
        SELECT c.row_id, {", ".join(f"c.{column}" for column in key_columns.split(", "))},
               {new_values} AS "values",
               (c.open_count + {old("open_count")}) + (c.won_count + {old("won_count")}) > 0 AS kept
          FROM changed c
         WHERE (SELECT ok FROM exact)
    ), {write}
    """
    if any(image["stage_id"] is None for image in images):
        return None
    return _patch(cursor, sql, params, arrays)


def past_due(cursor: CursorWrapper, params: MetricParams) -> int:
    """Open deals whose expected_close_date is before today (in TIME_ZONE): count and amount, never dropped.

    Open deals with no expected_close_date are counted beside them, since no period's forecast holds them.
    The company row is always written, zeros included.
    """
    values = _values(
        Metric.PAST_DUE,
        today="(%(computed_at)s AT TIME ZONE %(tz)s)::date",
        count="count(*) FILTER (WHERE d.expected_close_date < (%(computed_at)s AT TIME ZONE %(tz)s)::date)",
        amount=(
            "coalesce(sum(d.amount) FILTER (WHERE d.expected_close_date < (%(computed_at)s AT TIME ZONE %(tz)s)::date),"
            " 0)::text"
        ),
        no_close_date_count="count(*) FILTER (WHERE d.expected_close_date IS NULL)",
        no_close_date_amount="coalesce(sum(d.amount) FILTER (WHERE d.expected_close_date IS NULL), 0)::text",
    )
    sql = f"""
    {INSERT}
    SELECT %(run_id)s, '{Metric.PAST_DUE.value}', 'now', NULL, NULL, {_group_kind(ALL_GROUPS)},
           {_group_columns(ALL_GROUPS)}, NULL, NULL,
           {values},
           %(computed_at)s
      FROM pipeline_deal d
      JOIN accounts_user u ON u.id = d.owner_id
     WHERE d.status = 'open'
     GROUP BY {_grouping_sets([], ALL_GROUPS)}
    """
    return _execute(cursor, sql, params)


def stage_time(
    cursor: CursorWrapper, params: MetricParams, *, groups: list[str] = STAGE_GROUPS, company: bool = True
) -> int:
    """Time in stage: per stage, mean and median days of completed stays, and the open deals in it now.

    A stay in S runs from a StageChange into S to the deal's next StageChange (ordered by changed_at, then id), whose
    time the database stamps as the change's left_at; a stay without a next change is not completed, left out.
    "In stage now" counts the open deals whose current stage is S, with their age (computed_at − stage_entered_at)
    in days: mean, median and max.
    Over all history (period kind "all"); the deal's current owner, team and source group it. `groups` and
    `company` choose the groups written (all of them by default).
    """
    values = _values(
        Metric.STAGE_TIME,
        stays="coalesce(sum(stays), 0)",
        days_mean="max(days_mean)",
        days_median="max(days_median)",
        in_stage_now="coalesce(sum(in_stage_now), 0)",
        now_age_days_mean="max(now_age_days_mean)",
        now_age_days_median="max(now_age_days_median)",
        now_age_days_max="max(now_age_days_max)",
    )
    # Completed stays and deals in stage now are grouped apart (the stays, millions, with no FILTER on every
    # aggregate) and each group's two halves put together below; at most one half has a value for a key, so max()
    # takes it.
    keys = f"{_group_kind(groups)} AS group_kind, {_group_columns(groups, owner_in_team=True)}, stage_id"
    grouping_sets = _grouping_sets(["stage_id"], groups, company=company, owner_in_team=True)
    sql = f"""
    {INSERT}
    WITH stays AS (
        SELECT c.to_stage_id AS stage_id, extract(epoch FROM c.left_at - c.changed_at)::float8 / 86400 AS days,
               d.owner_id, u.team_id, d.source
          FROM pipeline_stagechange c
          JOIN pipeline_deal d ON d.id = c.deal_id
          JOIN accounts_user u ON u.id = d.owner_id
         WHERE c.left_at IS NOT NULL
    ), in_stage_now AS (
        SELECT d.stage_id, extract(epoch FROM %(computed_at)s - d.stage_entered_at)::float8 / 86400 AS days,
               d.owner_id, u.team_id, d.source
          FROM pipeline_deal d
          JOIN accounts_user u ON u.id = d.owner_id
         WHERE d.status = 'open'
    ), halves AS (
        SELECT {keys}, count(*) AS stays, avg(days) AS days_mean,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY days) AS days_median,
               NULL::bigint AS in_stage_now, NULL::float8 AS now_age_days_mean, NULL::float8 AS now_age_days_median,
               NULL::float8 AS now_age_days_max
          FROM stays
         GROUP BY {grouping_sets}
        UNION ALL
        SELECT {keys}, NULL, NULL, NULL, count(*), avg(days), percentile_cont(0.5) WITHIN GROUP (ORDER BY days),
               max(days)
          FROM in_stage_now
         GROUP BY {grouping_sets}
    )
    SELECT %(run_id)s, '{Metric.STAGE_TIME.value}', 'all', NULL, NULL, h.group_kind,
           h.owner_id, h.team_id, s.pipeline_id, h.source, h.stage_id, NULL,
           {values},
           %(computed_at)s
      FROM halves h
      JOIN pipeline_stage s ON s.id = h.stage_id
     GROUP BY h.group_kind, h.owner_id, h.team_id, h.source, h.stage_id, s.pipeline_id
    """
    return _execute(cursor, sql, params)


def stale_deals(cursor: CursorWrapper, params: MetricParams) -> int:
    """One row per open deal that is stale for one reason or more, as of computed_at, each reason a flag:

    in_stage_too_long (also `rotting`): its time in the current stage (computed_at − stage_entered_at) exceeds the
    stage's rotting_days. no_next_step: none of its activities is planned (not done) with due_at after computed_at.
    no_activity (SPEC §3a, rotting by inactivity): its last touch (pipeline.touches) is older than rotting_days.
    A deal stale for several reasons is one row, so it counts once in a total.
    Rows carry the deal's owner, team, pipeline, source and stage, so every group and filter applies.
    """
    values = _values(
        Metric.STALE,
        days_in_stage="days_in_stage",
        rotting_days="rotting_days",
        rotting="in_stage_too_long",
        in_stage_too_long="in_stage_too_long",
        no_next_step="no_next_step",
        no_activity="no_activity",
        days_since_touch="days_since_touch",
        stage_entered_at="stage_entered_at",
        last_touched_at="last_touched_at",
        amount="amount::text",
        currency="currency",
    )
    sql = f"""
    {INSERT}
    WITH open_deals AS (
        SELECT d.id, d.owner_id, u.team_id, d.pipeline_id, d.source, d.stage_id, d.stage_entered_at,
               d.last_touched_at, d.amount, d.currency, s.rotting_days,
               extract(epoch FROM %(computed_at)s - d.stage_entered_at)::float8 / 86400 AS days_in_stage,
               extract(epoch FROM %(computed_at)s - d.last_touched_at)::float8 / 86400 AS days_since_touch,
               NOT EXISTS (
                   SELECT 1 FROM pipeline_activity a
                    WHERE a.deal_id = d.id AND a.done_at IS NULL AND a.due_at > %(computed_at)s
               ) AS no_next_step
          FROM pipeline_deal d
          JOIN accounts_user u ON u.id = d.owner_id
          JOIN pipeline_stage s ON s.id = d.stage_id
         WHERE d.status = 'open' AND {_scoped(params, CHANGED_DEALS.format(deal="d.id"))}
    ), reasons AS (
        SELECT o.*, days_in_stage > rotting_days AS in_stage_too_long, days_since_touch > rotting_days AS no_activity
          FROM open_deals o
    )
    SELECT %(run_id)s, '{Metric.STALE.value}', 'now', NULL, NULL, 'owner',
           owner_id, team_id, pipeline_id, source, stage_id, id,
           {values},
           %(computed_at)s
      FROM reasons
     WHERE in_stage_too_long OR no_next_step OR no_activity
    """
    return _execute(cursor, sql, params)


# The owners whose stale totals a refresh recomputes: every owner a changed deal had before or after the changes (its
# images name them; a deal's activity or touch records no owner and cannot change it: its stale row's is its current).
STALE_OWNERS_IN_SCOPE = f"""owner_id IN (
    SELECT owner_id FROM {CHANGES} AS images WHERE sign <> 0
    UNION
    SELECT d.owner_id FROM pipeline_deal d WHERE d.id IN (SELECT deal_id FROM {CHANGES} AS touches WHERE sign = 0)
)"""


def stale_totals(cursor: CursorWrapper, params: MetricParams) -> int:
    """The stale deals of the run (`stale_deals`' rows, so it runs after it) added up: one row per owner, team,
    pipeline and source, with the count and amount of its stale deals, each once, and of those stale for each reason.

    Every filter and visibility rule of a stale-deal read selects these rows as it selects the deals' rows (by
    owner, team, pipeline and source), so the sum of a read's rows is its exact total, from a few thousand rows on
    a million deals instead of one per stale deal.
    """
    values = _values(
        Metric.STALE_TOTALS,
        total_count="count(*)",
        total_amount="coalesce(sum(amount), 0)::text",
        in_stage_too_long_count="count(*) FILTER (WHERE in_stage_too_long)",
        in_stage_too_long_amount="coalesce(sum(amount) FILTER (WHERE in_stage_too_long), 0)::text",
        no_next_step_count="count(*) FILTER (WHERE no_next_step)",
        no_next_step_amount="coalesce(sum(amount) FILTER (WHERE no_next_step), 0)::text",
        no_activity_count="count(*) FILTER (WHERE no_activity)",
        no_activity_amount="coalesce(sum(amount) FILTER (WHERE no_activity), 0)::text",
    )
    sql = f"""
    {INSERT}
    WITH stale AS (
        SELECT owner_id, team_id, pipeline_id, source, ("values" ->> 'amount')::numeric AS amount,
               ("values" ->> 'in_stage_too_long')::boolean AS in_stage_too_long,
               ("values" ->> 'no_next_step')::boolean AS no_next_step,
               ("values" ->> 'no_activity')::boolean AS no_activity
          FROM forecasting_metricsnapshot
         WHERE run_id = %(run_id)s AND metric = '{Metric.STALE.value}' AND {_scoped(params, STALE_OWNERS_IN_SCOPE)}
    )
    SELECT %(run_id)s, '{Metric.STALE_TOTALS.value}', 'now', NULL, NULL, 'owner',
           owner_id, team_id, pipeline_id, source, NULL, NULL,
           {values},
           %(computed_at)s
      FROM stale
     GROUP BY owner_id, team_id, pipeline_id, source
    """
    return _execute(cursor, sql, params)


def leads(cursor: CursorWrapper, params: MetricParams) -> int:
    """Lead metrics per period: qualified leads, lead velocity rate, MQL→SQL rate and lead→deal conversion.

    qualified = leads that reached sql in the period; lead_velocity_rate = (Q − Q_previous) / Q_previous × 100
    against the previous period of the same kind (null when Q_previous is 0); over the leads *created* in the
    period: mql_to_sql_rate = reached sql / reached mql, lead_to_deal_rate = converted / created (null on a zero
    denominator). Leads have no pipeline: groups are company, owner, team and source.
    """
    groups = ["owner", "team", "source"]
    values = _values(
        Metric.LEADS,
        qualified="qualified",
        qualified_previous="qualified_previous",
        lead_velocity_rate="(qualified - qualified_previous)::float8 * 100 / nullif(qualified_previous, 0)",
        created="created",
        created_reached_mql="created_reached_mql",
        created_reached_sql="created_reached_sql",
        created_converted="created_converted",
        mql_to_sql_rate="created_reached_sql::float8 / nullif(created_reached_mql, 0)",
        lead_to_deal_rate="created_converted::float8 / nullif(created, 0)",
    )
    groups, company = _live_groups(params, groups)
    if params.live:
        # One window: each lead counts where its creation or its reaching sql falls in it (or in the one before).
        facts = f"""
        SELECT local_leads.*, %(window_kind)s::text AS kind, %(window_start)s::date AS period_start,
               %(window_end)s::date AS period_end, f.fact
          FROM local_leads
         CROSS JOIN LATERAL (VALUES
               ('created', {_in_window("created_at")}),
               ('qualified', sql_at IS NOT NULL AND {_in_window("sql_at")}),
               ('qualified_in_previous', %(has_previous)s AND sql_at IS NOT NULL AND
                                         {_in_window("sql_at", window="previous")})
         ) AS f(fact, counts)
         WHERE f.counts
        """
        in_window = (
            f"({_in_window('l.created_at')} OR (l.sql_at IS NOT NULL AND {_in_window('l.sql_at')}) OR "
            f"(%(has_previous)s AND l.sql_at IS NOT NULL AND {_in_window('l.sql_at', window='previous')}))"
        )
    else:
        facts = f"""
        SELECT local_leads.*, k.kind, f.period_start::date AS period_start,
               (f.period_start + k.step)::date AS period_end, f.fact
          FROM local_leads
         CROSS JOIN {PERIOD_KINDS}
         CROSS JOIN LATERAL (VALUES
               ('created', date_trunc(k.kind, local_created_at)),
               ('qualified', date_trunc(k.kind, local_sql_at)),
               ('qualified_in_previous', date_trunc(k.kind, local_sql_at) + k.step)
         ) AS f(fact, period_start)
         WHERE f.period_start IS NOT NULL
        """
        in_window = "TRUE"
    sql = f"""
    {_insert(params)}
    WITH local_leads AS (
        SELECT l.owner_id, u.team_id, l.source, l.created_at, l.sql_at,
               l.created_at AT TIME ZONE %(tz)s AS local_created_at,
               l.sql_at AT TIME ZONE %(tz)s AS local_sql_at,
               l.mql_at IS NOT NULL AS reached_mql, l.sql_at IS NOT NULL AS reached_sql,
               l.converted_at IS NOT NULL AS converted
          FROM pipeline_lead l
          JOIN accounts_user u ON u.id = l.owner_id
         WHERE {in_window} AND {_live_rows_of("l.owner_id", "u.team_id")}
    ), facts AS ({facts}), counts AS (
        SELECT kind, period_start, period_end,
               {_group_kind(groups)} AS group_kind, {_group_columns(groups)},
               count(*) FILTER (WHERE fact = 'created') AS created,
               count(*) FILTER (WHERE fact = 'created' AND reached_mql) AS created_reached_mql,
               count(*) FILTER (WHERE fact = 'created' AND reached_sql) AS created_reached_sql,
               count(*) FILTER (WHERE fact = 'created' AND converted) AS created_converted,
               count(*) FILTER (WHERE fact = 'qualified') AS qualified,
               count(*) FILTER (WHERE fact = 'qualified_in_previous') AS qualified_previous
          FROM facts
         GROUP BY {_grouping_sets(["kind", "period_start", "period_end"], groups, company=company)}
    )
    SELECT %(run_id)s, '{Metric.LEADS.value}', kind, period_start, period_end, group_kind,
           owner_id, team_id, pipeline_id, source, NULL, NULL,
           {values},
           %(computed_at)s
      FROM counts
    """
    return _execute(cursor, sql, params)


def quota_attainment(cursor: CursorWrapper, params: MetricParams) -> int:
    """Per quota (a user's or a team's, over its own [period_start, period_end)): attainment, coverage, deals needed.

    won_amount = Σ amount of the quota holder's deals won in the period (closed_at in TIME_ZONE); attainment =
    won_amount / quota (null for a zero quota); open_amount = Σ amount of their open deals expected to close in
    the period; remaining = max(quota − won_amount, 0); coverage = open_amount / remaining (null when nothing
    remains); deals_needed = ceil(remaining / average won deal size / win rate), both over the trailing four
    quarters: the four complete quarters before the one computed_at falls in (0 when nothing remains, null
    when the trailing quarters won nothing). A team's deals are those of its members now.
    """
    values = _values(
        Metric.QUOTA,
        quota_id="id",
        quota="quota::text",
        won_amount="won_amount::text",
        attainment="(won_amount / nullif(quota, 0))::float8",
        open_amount="open_amount::text",
        remaining="remaining::text",
        coverage="(open_amount / nullif(remaining, 0))::float8",
        trailing_win_rate="trailing_win_rate::float8",
        trailing_avg_won_amount="round(trailing_avg_won, 2)::text",
        # remaining / (Σ won / n) / (won / closed), as one exact division: dividing by a rounded
        # win rate such as 1/3 = 0.333…3 would push an exact 9 to 9.000…1 and ceil it to 10.
        deals_needed="""CASE
            WHEN remaining = 0 THEN 0
            WHEN trailing_won_amount > 0 AND trailing_won > 0 THEN ceil(
                remaining * trailing_won_with_amount * trailing_closed / (trailing_won_amount * trailing_won)
            )
        END""",
    )
    sql = f"""
    {INSERT}
    WITH bounds AS (
        SELECT date_trunc('quarter', %(computed_at)s AT TIME ZONE %(tz)s) - interval '12 months' AS trailing_start,
               date_trunc('quarter', %(computed_at)s AT TIME ZONE %(tz)s) AS trailing_end
    ), quotas AS (
        SELECT * FROM forecasting_quota q WHERE {QUOTAS_IN_SCOPE.format(user="q.user_id", team="q.team_id")}
    ), holders AS (
        SELECT q.id AS quota_id, u.id AS owner_id
          FROM quotas q
          JOIN accounts_user u ON u.id = q.user_id
        UNION ALL
        SELECT q.id, u.id
          FROM quotas q
          JOIN accounts_user u ON u.team_id = q.team_id
    ), daily AS MATERIALIZED (
        -- Won and open amounts per owner and local day: a quota sums the days of its period, never each deal
        -- once per quota (a million deals times thousands of quotas).
        SELECT d.owner_id, (d.closed_at AT TIME ZONE %(tz)s)::date AS day,
               sum(d.amount) AS won_amount, 0 AS open_amount
          FROM pipeline_deal d
         WHERE d.status = 'won' AND (NOT %(scoped)s OR d.owner_id IN (SELECT owner_id FROM holders))
         GROUP BY 1, 2
        UNION ALL
        SELECT d.owner_id, d.expected_close_date, 0, sum(d.amount)
          FROM pipeline_deal d
         WHERE d.status = 'open' AND d.expected_close_date IS NOT NULL
           AND (NOT %(scoped)s OR d.owner_id IN (SELECT owner_id FROM holders))
         GROUP BY 1, 2
    ), trailing_by_owner AS (
        SELECT d.owner_id,
               count(*) FILTER (WHERE d.status = 'won') AS won,
               count(*) AS closed,
               sum(d.amount) FILTER (WHERE d.status = 'won') AS won_amount,
               count(d.amount) FILTER (WHERE d.status = 'won') AS won_with_amount
          FROM pipeline_deal d
         CROSS JOIN bounds b
         WHERE d.status IN ('won', 'lost')
           AND d.closed_at >= b.trailing_start AT TIME ZONE %(tz)s AND d.closed_at < b.trailing_end AT TIME ZONE %(tz)s
         GROUP BY d.owner_id
    ), in_period AS (
        SELECT h.quota_id, sum(x.won_amount) AS won_amount, sum(x.open_amount) AS open_amount
          FROM holders h
          JOIN quotas q ON q.id = h.quota_id
          JOIN daily x ON x.owner_id = h.owner_id AND x.day >= q.period_start AND x.day < q.period_end
         GROUP BY h.quota_id
    ), in_trailing AS (
        SELECT h.quota_id, sum(t.won) AS won, sum(t.closed) AS closed, sum(t.won_amount) AS won_amount,
               sum(t.won_with_amount) AS won_with_amount
          FROM holders h
          JOIN trailing_by_owner t ON t.owner_id = h.owner_id
         GROUP BY h.quota_id
    ), measured AS (
        SELECT q.id, q.user_id, q.team_id, q.period_start, q.period_end, q.amount AS quota,
               coalesce(p.won_amount, 0) AS won_amount,
               coalesce(p.open_amount, 0) AS open_amount,
               coalesce(t.won, 0) AS trailing_won,
               coalesce(t.closed, 0) AS trailing_closed,
               t.won_amount AS trailing_won_amount,
               coalesce(t.won_with_amount, 0) AS trailing_won_with_amount
          FROM quotas q
          LEFT JOIN in_period p ON p.quota_id = q.id
          LEFT JOIN in_trailing t ON t.quota_id = q.id
    ), derived AS (
        SELECT measured.*,
               greatest(quota - won_amount, 0) AS remaining,
               trailing_won::numeric / nullif(trailing_closed, 0) AS trailing_win_rate,
               trailing_won_amount / nullif(trailing_won_with_amount, 0) AS trailing_avg_won
          FROM measured
    )
    SELECT %(run_id)s, '{Metric.QUOTA.value}', 'quota', period_start, period_end,
           CASE WHEN user_id IS NOT NULL THEN 'owner' ELSE 'team' END,
           user_id, team_id, NULL, NULL, NULL, NULL,
           {values},
           %(computed_at)s
      FROM derived
    """
    return _execute(cursor, sql, params)


def forecast_snapshots(cursor: CursorWrapper, params: MetricParams) -> int:
    """At the first recompute inside a month, quarter or year, keep that run's forecast for it (all groups).

    Writes `forecasting_forecastsnapshot`, not the run's rows: snapshots outlive runs. Periods already
    snapshotted are left alone, so the forecast kept is the one from the start of the period. Must run after
    `forecast`. Returns the number of snapshot rows written.
    """
    sql = f"""
    WITH new_periods AS (
        SELECT k.kind,
               date_trunc(k.kind, %(computed_at)s AT TIME ZONE %(tz)s)::date AS period_start,
               (date_trunc(k.kind, %(computed_at)s AT TIME ZONE %(tz)s) + k.step)::date AS period_end
          FROM {PERIOD_KINDS}
         WHERE NOT EXISTS (
               SELECT 1 FROM forecasting_forecastsnapshot s
                WHERE s.period_kind = k.kind
                  AND s.period_start = date_trunc(k.kind, %(computed_at)s AT TIME ZONE %(tz)s)::date
         )
    ), rows AS (
        SELECT f.period_kind, f.period_start, f.period_end, f.group_kind, f.owner_id, f.team_id, f.pipeline_id,
               f.source, (f."values"->>'weighted_configured')::numeric AS weighted_configured,
               (f."values"->>'weighted_learned')::numeric AS weighted_learned,
               (f."values"->>'commit')::numeric AS commit, (f."values"->>'best_case')::numeric AS best_case,
               (f."values"->>'pipeline')::numeric AS pipeline
          FROM forecasting_metricsnapshot f
          JOIN new_periods n ON n.kind = f.period_kind AND n.period_start = f.period_start
         WHERE f.run_id = %(run_id)s AND f.metric = '{Metric.FORECAST.value}'
        UNION ALL
        SELECT n.kind, n.period_start, n.period_end, 'company', NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0
          FROM new_periods n
         WHERE NOT EXISTS (
               SELECT 1 FROM forecasting_metricsnapshot f
                WHERE f.run_id = %(run_id)s AND f.metric = '{Metric.FORECAST.value}' AND f.group_kind = 'company'
                  AND f.period_kind = n.kind AND f.period_start = n.period_start
         )
    )
    INSERT INTO forecasting_forecastsnapshot (
        period_kind, period_start, period_end, group_kind, owner_id, team_id, pipeline_id, source,
        weighted_configured, weighted_learned, commit, best_case, pipeline, snapshotted_at
    )
    SELECT rows.*, %(computed_at)s FROM rows
    ON CONFLICT DO NOTHING
    """
    return _execute(cursor, sql, params)


def forecast_accuracy(cursor: CursorWrapper, params: MetricParams) -> int:
    """For every period that has ended and was snapshotted: the forecast kept at its start against the won amount.

    actual_won = Σ amount of the group's deals won in the period (0 when none: from this run's forecast rows);
    ape_configured / ape_learned = |actual_won − forecast| / actual_won × 100, null when nothing was won.
    Must run after `forecast`.
    """
    values = _values(
        Metric.FORECAST_ACCURACY,
        forecast_configured="s.weighted_configured::text",
        forecast_learned="s.weighted_learned::text",
        commit="s.commit::text",
        best_case="s.best_case::text",
        actual_won="actual.won::text",
        ape_configured="(abs(actual.won - s.weighted_configured) * 100 / nullif(actual.won, 0))::float8",
        ape_learned="(abs(actual.won - s.weighted_learned) * 100 / nullif(actual.won, 0))::float8",
        snapshotted_at="s.snapshotted_at",
    )
    sql = f"""
    {INSERT}
    SELECT %(run_id)s, '{Metric.FORECAST_ACCURACY.value}', s.period_kind, s.period_start, s.period_end, s.group_kind,
           s.owner_id, s.team_id, s.pipeline_id, s.source, NULL, NULL,
           {values},
           %(computed_at)s
      FROM forecasting_forecastsnapshot s
      CROSS JOIN LATERAL (
          SELECT coalesce(max((f."values"->>'won_amount')::numeric), 0) AS won
            FROM forecasting_metricsnapshot f
           WHERE f.run_id = %(run_id)s AND f.metric = '{Metric.FORECAST.value}'
             AND f.period_kind = s.period_kind AND f.period_start = s.period_start AND f.group_kind = s.group_kind
             AND f.owner_id IS NOT DISTINCT FROM s.owner_id AND f.team_id IS NOT DISTINCT FROM s.team_id
             AND f.pipeline_id IS NOT DISTINCT FROM s.pipeline_id AND f.source IS NOT DISTINCT FROM s.source
      ) actual
     WHERE s.period_end <= (%(computed_at)s AT TIME ZONE %(tz)s)::date
    """
    return _execute(cursor, sql, params)


def _ratio(numerator: str, actual: str = "actual_won") -> str:
    return f"({numerator})::float8 / nullif({actual}, 0)::float8"


def backtest(cursor: CursorWrapper, params: MetricParams) -> int:
    """The backtest of every ended month and quarter inside the recorded history, for the company and per group:
    one row per period, instant T (its start, and each Monday inside it) and group.

    weighted_configured / weighted_learned = Σ amount × the stage's configured / learned probability at T over
    open(P, T); commit and best case (commit + best_case) of open(P, T) by the forecast category at T; actual_won =
    Σ amount of the deals won in P, as known now; ape_* = |actual − forecast| / actual (a fraction; null when
    nothing was won). WAPE and bias over sets of these rows are the reader's (`selectors.backtest_summary`).
    The company row exists for every period and instant; a group's where it had deals open at T or won in P.
    """
    kinds = [kind for kind in params.period_kinds if kind in history_sql.BACKTEST_KINDS]
    if not kinds:
        return 0
    groups = ALL_GROUPS
    values = _values(
        Metric.BACKTEST,
        at="at",
        week="week",
        open_count="open_count::int",
        pipeline="pipeline::text",
        weighted_configured="weighted_configured::text",
        weighted_learned="weighted_learned::text",
        commit="commit::text",
        best_case="best_case::text",
        actual_won="actual_won::text",
        ape_configured=_ratio("abs(actual_won - weighted_configured)"),
        ape_learned=_ratio("abs(actual_won - weighted_learned)"),
        ape_commit=_ratio("abs(actual_won - commit)"),
        ape_best_case=_ratio("abs(actual_won - best_case)"),
    )
    sql = f"""
    {INSERT}
    WITH {history_sql.INSTANTS}, {history_sql.LEARNED_AT.format(instants="instants")}, open_at AS (
        -- The open pipeline of each period at each of its instants, from the interval of the history holding it,
        -- summed per owner, pipeline and source (narrow rows for the grouping sets below).
        SELECT i.kind, i.period_start, i.period_end, i.at, i.week, ds.owner_id, st.pipeline_id,
               coalesce(d.source, '') AS source, count(*) AS open_count, sum(ds.amount) AS pipeline,
               sum(ds.amount * coalesce(sa.probability, st.probability)::numeric / 100) AS weighted_configured,
               sum(ds.amount * coalesce(l.p, coalesce(sa.probability, st.probability)::numeric / 100))
                   AS weighted_learned,
               sum(ds.amount) FILTER (WHERE ds.forecast_category = 'commit') AS commit,
               sum(ds.amount) FILTER (WHERE ds.forecast_category IN ('commit', 'best_case')) AS best_case,
               NULL::numeric AS actual_won
          FROM instants i
          JOIN pipeline_dealstate ds
            ON ds.expected_close_date >= i.period_start AND ds.expected_close_date < i.period_end
           AND ds.valid_from <= i.at AND (ds.valid_to > i.at OR ds.valid_to IS NULL)
          JOIN pipeline_stage st ON st.id = ds.stage_id AND st.kind = 'open'
          {history_sql.STAGE_AT.format(alias="sa", stage="ds.stage_id", at="i.at")}
          LEFT JOIN pipeline_deal d ON d.id = ds.deal_id
          LEFT JOIN learned l ON l.at = i.at AND l.stage_id = ds.stage_id
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    ), won_in AS (
        -- What was won in each period, as known now, per owner, pipeline and source.
        SELECT k.kind, date_trunc(k.kind, d.closed_at AT TIME ZONE %(tz)s)::date AS period_start, d.owner_id,
               d.pipeline_id, d.source, sum(d.amount) AS actual_won
          FROM pipeline_deal d
          CROSS JOIN unnest(%(backtest_kinds)s::text[]) AS k(kind)
         WHERE d.status = 'won' AND d.closed_at >= (SELECT min(at) FROM instants)
         GROUP BY 1, 2, 3, 4, 5
    ), facts AS (
        SELECT open_at.*, u.team_id FROM open_at JOIN accounts_user u ON u.id = open_at.owner_id
        UNION ALL
        -- The won amount at every instant of its period, for the APE there.
        SELECT i.kind, i.period_start, i.period_end, i.at, i.week, w.owner_id, w.pipeline_id, w.source,
               0, NULL, NULL, NULL, NULL, NULL, w.actual_won, u.team_id
          FROM won_in w
          JOIN instants i ON i.kind = w.kind AND i.period_start = w.period_start
          JOIN accounts_user u ON u.id = w.owner_id
        UNION ALL
        -- Nothing, so that the company has a row at every instant.
        SELECT i.kind, i.period_start, i.period_end, i.at, i.week, NULL, NULL, NULL,
               0, NULL, NULL, NULL, NULL, NULL, NULL, NULL
          FROM instants i
    ), grouped AS (
        SELECT kind, period_start, period_end, at, week, {_group_kind(groups)} AS group_kind,
               {_group_columns(groups)},
               sum(open_count) AS open_count,
               coalesce(sum(pipeline), 0) AS pipeline,
               round(coalesce(sum(weighted_configured), 0), 2) AS weighted_configured,
               round(coalesce(sum(weighted_learned), 0), 2) AS weighted_learned,
               coalesce(sum(commit), 0) AS commit,
               coalesce(sum(best_case), 0) AS best_case,
               coalesce(sum(actual_won), 0) AS actual_won
          FROM facts
         GROUP BY {_grouping_sets(["kind", "period_start", "period_end", "at", "week"], groups)}
        HAVING count(owner_id) > 0
            OR GROUPING(owner_id) + GROUPING(team_id) + GROUPING(pipeline_id) + GROUPING(source) = 4
    )
    SELECT %(run_id)s, '{Metric.BACKTEST.value}', kind, period_start, period_end, group_kind,
           owner_id, team_id, pipeline_id, source, NULL, NULL,
           {values},
           %(computed_at)s
      FROM grouped
    """
    moments = history_sql.instants(cursor, computed_at=params.computed_at, tz=params.tz, kinds=kinds)
    if not moments["i_ats"]:
        return 0
    extra = {"backtest_kinds": kinds, "won_reached_everything": WON_REACHED_EVERYTHING}
    cursor.execute(sql, params.sql() | extra | moments)
    return cursor.rowcount


def backtest_summary(cursor: CursorWrapper, params: MetricParams) -> int:
    """The backtest's sums over every period of a kind, per group and instant (`week`), for WAPE and bias over all
    periods (`forecasting.selectors.backtest_summary`) without reading every period's row. Must run after
    `backtest`."""
    errors = {}
    forecasts = {"configured": "weighted_configured", "learned": "weighted_learned"}
    for name, key in {**forecasts, "commit": "commit", "best_case": "best_case"}.items():
        forecast = f"(\"values\"->>'{key}')::numeric"
        errors[f"error_{name}"] = f"sum(abs({forecast} - actual))::text"
        errors[f"over_{name}"] = f"sum({forecast} - actual)::text"
    values = _values(
        Metric.BACKTEST_SUMMARY,
        week="week",
        rows="count(*)",
        actual_won="sum(actual)::text",
        **{key: errors[key] for key in result_keys(Metric.BACKTEST_SUMMARY)[3:]},
    )
    sql = f"""
    {INSERT}
    SELECT %(run_id)s, '{Metric.BACKTEST_SUMMARY.value}', period_kind, NULL, NULL, group_kind,
           owner_id, team_id, pipeline_id, source, NULL, NULL,
           {values},
           %(computed_at)s
      FROM (SELECT b.*, (b."values"->>'week')::int AS week, (b."values"->>'actual_won')::numeric AS actual
              FROM forecasting_metricsnapshot b
             WHERE b.run_id = %(run_id)s AND b.metric = '{Metric.BACKTEST.value}') AS rows
     GROUP BY period_kind, group_kind, owner_id, team_id, pipeline_id, source, week
    """
    return _execute(cursor, sql, params)


def calibration(cursor: CursorWrapper, params: MetricParams) -> int:
    """How well the stage probabilities predicted (SPEC §3a, "Calibration"), over the deals closed in each quarter,
    year and all time, per pipeline and stage (and per pipeline, `stage_id` null), for the company, owner, team and
    source (the deal's now, as for win rates).

    Every closed deal contributes, for each open stage it entered, one prediction: the stage's configured
    probability, and its learned probability as of the start of the (local) day of its first entry (the same
    formula as the backtest's, over the closes known then; p0 when nothing had closed), against y = 1 if the deal
    was won. brier_* = mean (p − y)²; bins_* = the predictions in 10 bins [0, 0.1), …, [0.9, 1.0] with their count,
    mean p and observed win rate (only the non-empty bins). The configured probability is the one of the moment of
    entry, from the stage's history (`pipeline.StageState`).
    """
    kinds = [kind for kind in params.period_kinds if kind in history_sql.CALIBRATION_KINDS]
    if not kinds:
        return 0
    groups = STAGE_GROUPS
    base = ["kind", "period_start", "period_end", "pipeline_id", "which", "bin"]
    sets = [[*base, "stage_id"], base]
    sets += [[*columns, GROUP_COLUMNS[group]] for group in groups for columns in ([*base, "stage_id"], base)]
    grouping_sets = "GROUPING SETS (" + ", ".join("(" + ", ".join(columns) + ")" for columns in sets) + ")"
    keys = "kind, period_start, period_end, pipeline_id, stage_id, group_kind, owner_id, team_id, source"

    def of(which: str, expression: str) -> str:
        return f"(array_agg({expression}) FILTER (WHERE which = '{which}'))[1]"

    values = _values(
        Metric.CALIBRATION,
        predictions=of("configured", "n"),
        won=of("configured", "wins"),
        win_rate=of("configured", "win_rate"),
        mean_configured=of("configured", "mean_p"),
        mean_learned=of("learned", "mean_p"),
        brier_configured=of("configured", "brier"),
        brier_learned=of("learned", "brier"),
        bins_configured=of("configured", "bins"),
        bins_learned=of("learned", "bins"),
    )
    sql = f"""
    {INSERT}
    WITH closed AS (
        SELECT d.id, d.status = 'won' AS deal_won, d.owner_id, u.team_id, d.source, d.pipeline_id,
               d.closed_at AT TIME ZONE %(tz)s AS local_closed_at
          FROM pipeline_deal d
          JOIN accounts_user u ON u.id = d.owner_id
         WHERE d.status IN ('won', 'lost') AND d.closed_at <= %(computed_at)s
    ), entries AS (
        -- The first entry of each open stage each closed deal entered.
        SELECT c.deal_id, c.to_stage_id AS stage_id, min(c.changed_at) AS entered_at
          FROM pipeline_stagechange c
          JOIN pipeline_stage s ON s.id = c.to_stage_id AND s.kind = 'open'
          JOIN closed ON closed.id = c.deal_id
         GROUP BY c.deal_id, c.to_stage_id
    ), predictions AS (
        SELECT closed.*, e.stage_id, coalesce(sa.probability, s.probability)::numeric / 100 AS p_configured,
               date_trunc('day', e.entered_at AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS day_at
          FROM entries e
          JOIN closed ON closed.id = e.deal_id
          JOIN pipeline_stage s ON s.id = e.stage_id
          {history_sql.STAGE_AT.format(alias="sa", stage="e.stage_id", at="e.entered_at")}
    ), entry_days AS (
        SELECT DISTINCT day_at AS at FROM predictions
    ), {history_sql.LEARNED_AT.format(instants="entry_days")}, scored AS (
        SELECT predictions.*, coalesce(l.p, predictions.p_configured) AS p_learned
          FROM predictions
          LEFT JOIN learned l ON l.at = predictions.day_at AND l.stage_id = predictions.stage_id
    ), periods AS (
        SELECT scored.*, k.kind, date_trunc(k.kind, local_closed_at)::date AS period_start,
               (date_trunc(k.kind, local_closed_at) + k.step)::date AS period_end
          FROM scored
          CROSS JOIN (VALUES ('quarter', interval '3 months'), ('year', interval '1 year')) AS k(kind, step)
         WHERE k.kind = ANY(%(calibration_kinds)s)
        UNION ALL
        SELECT scored.*, 'all', NULL::date, NULL::date FROM scored WHERE 'all' = ANY(%(calibration_kinds)s)
    ), fine AS (
        -- Counted per period, stage, owner, source, probability kind and bin (narrow rows): the grouping sets
        -- below add these up instead of sorting every prediction once per set.
        SELECT kind, period_start, period_end, pipeline_id, stage_id, owner_id, team_id, source, w.which,
               least(floor(w.p * 10), 9)::int AS bin, count(*) AS n, sum(w.p) AS sum_p, sum(y) AS wins,
               sum((w.p - y) * (w.p - y)) AS sum_squares
          FROM (SELECT periods.*, CASE WHEN deal_won THEN 1 ELSE 0 END AS y FROM periods) AS scored_periods
          CROSS JOIN LATERAL (VALUES ('configured', p_configured), ('learned', p_learned)) AS w(which, p)
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ), by_bin AS (
        SELECT kind, period_start, period_end, stage_id, which, bin,
               {_group_kind(groups)} AS group_kind, {_group_columns(groups, intrinsic=("pipeline_id",))},
               sum(n) AS n, sum(sum_p) AS sum_p, sum(wins) AS wins, sum(sum_squares) AS sum_squares
          FROM fine
         GROUP BY {grouping_sets}
    ), by_which AS (
        SELECT {keys}, which, sum(n) AS n, sum(wins) AS wins,
               (sum(wins)::float8 / sum(n)) AS win_rate, (sum(sum_p) / sum(n))::float8 AS mean_p,
               (sum(sum_squares) / sum(n))::float8 AS brier,
               jsonb_agg(jsonb_build_object(
                   'bin', bin, 'count', n, 'mean_p', (sum_p / n)::float8, 'win_rate', wins::float8 / n
               ) ORDER BY bin) AS bins
          FROM by_bin
         GROUP BY {keys}, which
    )
    SELECT %(run_id)s, '{Metric.CALIBRATION.value}', kind, period_start, period_end, group_kind,
           owner_id, team_id, pipeline_id, source, stage_id, NULL,
           {values},
           %(computed_at)s
      FROM by_which
     GROUP BY {keys}
    """
    cursor.execute(
        sql,
        params.sql() | {"calibration_kinds": kinds, "won_reached_everything": WON_REACHED_EVERYTHING},
    )
    return cursor.rowcount


# The quotas a refresh recomputes: those of the changed deals' owners and of their teams.
QUOTAS_IN_SCOPE = (
    "(NOT %(scoped)s OR {user} = ANY(%(owners)s) "
    "OR {team} IN (SELECT team_id FROM accounts_user WHERE id = ANY(%(owners)s)))"
)


# A family: writes its rows for the run of `params` and returns how many.
Family = Callable[[CursorWrapper, MetricParams], int]

# The families in the order a recompute runs them (forecast reads learned_probability's rows of the same run).
FAMILIES: list[Family] = [
    deal_outcomes,
    funnel,
    learned_probability,
    forecast,
    past_due,
    stage_time,
    stale_deals,
    stale_totals,
    leads,
    quota_attainment,
    forecast_snapshots,
    forecast_accuracy,
]
# The families over the whole deal history (ended periods reconstructed at hundreds of past instants): minutes on a
# million deals, and their rows change only when the history of an ended period does. So they are not part of a
# full recompute, which copies the previous run's rows of theirs (`forecasting.recompute`), but of their own, rarer
# task (`recompute_history_metrics`, daily and whenever a run has none).
HISTORY_FAMILIES: list[Family] = [backtest, backtest_summary, calibration]
HISTORY_METRICS = (Metric.BACKTEST, Metric.BACKTEST_SUMMARY, Metric.CALIBRATION)
# The families a read of a custom range or all time runs when asked (forecasting.selectors.metric_rows), by metric.
LIVE: dict[Metric, Family] = {
    Metric.DEAL_OUTCOMES: deal_outcomes,
    Metric.FORECAST: forecast,
    Metric.FUNNEL: funnel,
    Metric.LEADS: leads,
}
# Families that write outside the run's snapshot rows (so they do not count in MetricsRun.row_count).
WRITES_OUTSIDE_THE_RUN = {forecast_snapshots}

# What an incremental refresh (forecasting.recompute.refresh_latest_run) recomputes, in order (forecast_accuracy
# reads forecast's rows): each family with its metric and the run's rows it replaces, the same slices its facts are
# scoped to. Three wait for the next full recompute: learned probabilities, a year-long statistic; time in stage,
# an all-history median per stage that a move into or out of a busy stage would recompute over a million stays (and
# whose owner groups a change of owner shifts in every stage the deal went through); leads, which are not deals.
REFRESHED: list[tuple[Family, Metric, str]] = [
    (deal_outcomes, Metric.DEAL_OUTCOMES, _in_slices("closed", "period_kind", "period_start")),
    (forecast, Metric.FORECAST, _in_slices("forecast", "period_kind", "period_start")),
    (
        funnel,
        Metric.FUNNEL,
        f"{_any('pipeline_id', 'pipelines')} AND "
        f"(period_kind = 'all' OR {_in_slices('created', 'period_kind', 'period_start')})",
    ),
    (stale_deals, Metric.STALE, CHANGED_DEALS.format(deal="deal_id")),
    (stale_totals, Metric.STALE_TOTALS, STALE_OWNERS_IN_SCOPE),
    # Small: written whole on every refresh.
    (past_due, Metric.PAST_DUE, "TRUE"),
    (quota_attainment, Metric.QUOTA, QUOTAS_IN_SCOPE.format(user="owner_id", team="team_id")),
    (forecast_accuracy, Metric.FORECAST_ACCURACY, "TRUE"),
]
