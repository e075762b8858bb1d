"""The SQL of the backtest (SPEC §3a), used by the family `forecasting.metrics.backtest`: what the CRM would have
forecast for every past month and quarter, at its start and at the start of every week inside it, against what
was won.

The instants T are few (a period's start and its Mondays: about 64 a year), so everything "as of T" is computed for
all of them at once:

- **The learned probability at T** (`LEARNED_AT`): SPEC §3's formula over the deals whose close (a stage change
  into a won or lost stage) lies in the lookback window ending at T and is still their state at T (not reopened by
  then), counting the stages they had reached by their close. Each close is an interval in which it counts:
  from its time, to its deal's next stage change or to the end of the window after it, whichever comes first. A
  running sum over those starts and ends, read at the instants, gives every (T, pipeline, furthest stage, outcome)
  count in one pass over the closes, instead of one window per instant.
- **The open pipeline at T** comes from the deal history (`pipeline_dealstate`): the interval of each deal holding
  T whose stage is open and whose close date is in the period, found through the index on the close date.

The configured probability at T is the stage's then, from its history (`pipeline.StageState`; the stage's now for
a stage without one). The actual is the amount won in the period as known now (the deals won now, by their
close time), with its groups read now; the forecast's groups are read from the state at T (the team is the owner's
team now, the source the deal's now, "" for a deal deleted since).
"""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.backends.utils import CursorWrapper

from forecasting.periods import Period

# The period kinds of the calibration's windows of close dates (a month holds too few closes per stage to say much).
CALIBRATION_KINDS = ("quarter", "year", "all")

# The period kinds backtested (SPEC §3a: months and quarters), those of a recompute's part only.
BACKTEST_KINDS = ("month", "quarter")

# When the recorded history begins: the first stage change of any deal, one index probe per stage.
HISTORY_STARTS = """
SELECT min(first.changed_at)
  FROM pipeline_stage s
  CROSS JOIN LATERAL (
      SELECT c.changed_at FROM pipeline_stagechange c WHERE c.to_stage_id = s.id ORDER BY c.changed_at LIMIT 1
  ) first
"""

# The instants as a relation (kind, period_start, period_end, week, at) from the arrays of `instants()`: a literal
# array gives the planner their true number, where generate_series would have it guess thousands.
INSTANTS = """
instants AS (
    SELECT * FROM unnest(
        %(i_kinds)s::text[], %(i_starts)s::date[], %(i_ends)s::date[], %(i_weeks)s::int[], %(i_ats)s::timestamptz[]
    ) AS i(kind, period_start, period_end, week, at)
)
"""


def instants(cursor: CursorWrapper, *, computed_at: datetime, tz: str, kinds: list[str]) -> dict[str, list]:
    """The backtest's instants as the arrays `INSTANTS` reads: every month and quarter of `kinds` that ended before
    `computed_at` and began (at its local midnight) inside the recorded history, at its start (`week` 0) and at
    every Monday's local midnight inside it (`week` 1, 2, …)."""
    cursor.execute(HISTORY_STARTS)
    first = cursor.fetchone()[0]
    found: dict[str, list] = {"i_kinds": [], "i_starts": [], "i_ends": [], "i_weeks": [], "i_ats": []}
    if first is None:
        return found
    zone = ZoneInfo(tz)
    today = computed_at.astimezone(zone).date()
    for kind in kinds:
        period = Period.containing(first.astimezone(zone).date(), kind)
        while period.end <= Period.containing(today, kind).start:
            if datetime.combine(period.start, time.min, zone) >= first:
                mondays = (period.start + timedelta(days=n) for n in range(1, (period.end - period.start).days))
                days = [period.start, *(day for day in mondays if day.weekday() == 0)]
                for week, day in enumerate(days):
                    found["i_kinds"].append(kind)
                    found["i_starts"].append(period.start)
                    found["i_ends"].append(period.end)
                    found["i_weeks"].append(week)
                    found["i_ats"].append(datetime.combine(day, time.min, zone))
            period = period.next()
    return found


# The probability configured for stage `{stage}` at instant `{at}`, as a fraction: joined as `{alias}`.
STAGE_AT = """
LEFT JOIN pipeline_stagestate {alias}
       ON {alias}.stage_id = {stage} AND {alias}.valid_from <= {at}
      AND ({alias}.valid_to > {at} OR {alias}.valid_to IS NULL)
"""


# Every close of a deal (a stage change into a won or lost stage) with the time it stopped being the deal's state
# (its next stage change: reopened, or won after lost) and the furthest open stage the deal had reached by then (a
# won deal reached every open stage).
CLOSES = """
closes AS (
    SELECT c.changed_at AS closed_at, c.left_at, st.pipeline_id, st.kind = 'won' AS won,
           CASE WHEN st.kind = 'won' THEN %(won_reached_everything)s ELSE coalesce((
               SELECT max(os."order")
                 FROM pipeline_stagechange e JOIN pipeline_stage os ON os.id = e.to_stage_id AND os.kind = 'open'
                WHERE e.deal_id = c.deal_id AND e.changed_at <= c.changed_at
           ), -1) END AS reached
      FROM pipeline_stagechange c
      JOIN pipeline_stage st ON st.id = c.to_stage_id AND st.kind IN ('won', 'lost')
     WHERE c.changed_at <= %(computed_at)s
)
"""

# The learned probability of every open stage at every instant `at` of `{instants}` (SPEC §3a: closed in the
# lookback window ending at T, known at T; p0 the probability configured at T). A close counts at T when
# closed_at ≤ T, T < left_at (not left by then)
# and, with a lookback, closed_at ≥ T − lookback: +1 at closed_at and −1 at its end, where an end at left_at applies
# at that very instant (tie 0, before the reading at tie 1) and an end of the window just after it (tie 2).
LEARNED_AT = f"""
{CLOSES}, ends AS (
    SELECT closes.*,
           CASE WHEN left_at IS NOT NULL
                 AND (%(lookback_days)s = 0 OR left_at <= closed_at + make_interval(days => %(lookback_days)s))
                THEN left_at
                WHEN %(lookback_days)s > 0 THEN closed_at + make_interval(days => %(lookback_days)s) END AS ended_at,
           CASE WHEN left_at IS NOT NULL
                 AND (%(lookback_days)s = 0 OR left_at <= closed_at + make_interval(days => %(lookback_days)s))
                THEN 0 ELSE 2 END AS end_tie
      FROM closes
), keys AS (
    SELECT DISTINCT pipeline_id, reached, won FROM closes
), stream AS (
    SELECT pipeline_id, reached, won, closed_at AS at, 0 AS tie, 1 AS delta, false AS reading FROM ends
    UNION ALL
    SELECT pipeline_id, reached, won, ended_at, end_tie, -1, false FROM ends WHERE ended_at IS NOT NULL
    UNION ALL
    SELECT keys.pipeline_id, keys.reached, keys.won, i.at, 1, 0, true
      FROM (SELECT DISTINCT at FROM {{instants}}) i CROSS JOIN keys
), running AS (
    SELECT pipeline_id, reached, won, at, reading,
           sum(delta) OVER (PARTITION BY pipeline_id, reached, won ORDER BY at, tie ROWS UNBOUNDED PRECEDING)
               AS closed_then
      FROM stream
), learned_at AS (
    SELECT i.at, s.id AS stage_id, coalesce(ss.probability, s.probability)::numeric / 100 AS p0,
           coalesce(sum(r.closed_then) FILTER (WHERE r.won), 0) AS w,
           coalesce(sum(r.closed_then) FILTER (WHERE NOT r.won), 0) AS l
      FROM (SELECT DISTINCT at FROM {{instants}}) i
      CROSS JOIN pipeline_stage s
      LEFT JOIN pipeline_stagestate ss
             ON ss.stage_id = s.id AND ss.valid_from <= i.at AND (ss.valid_to > i.at OR ss.valid_to IS NULL)
      LEFT JOIN running r ON r.reading AND r.at = i.at AND r.pipeline_id = s.pipeline_id AND r.reached >= s."order"
     WHERE s.kind = 'open'
     GROUP BY i.at, s.id, s.probability, ss.probability
), learned AS (
    SELECT at, stage_id, p0, w, l,
           (w + %(prior_strength)s::numeric * p0) / nullif(w + l + %(prior_strength)s::numeric, 0) AS p
      FROM learned_at
)
"""
