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

The configured probability at T is the stage's now: stages keep no history of their probability yet (README, "the
deal history over time"). The actual is the amount won in the period as known now (the deals won now, by their
close time), with its groups read now; the forecast's groups are read from the state at T (the team is the owner's
team now, the source the deal's now, "" for a deal deleted since).
"""

# The period kinds of the calibration's windows of close dates (a month holds too few closes per stage to say much).
CALIBRATION_KINDS = ("quarter", "year", "all")

# The period kinds backtested (SPEC §3a: months and quarters), those of a recompute's part only.
BACKTEST_KINDS = ("month", "quarter")

# The instants: every ended month and quarter whose start lies inside the recorded history (the first stage change
# of any deal, one index probe per stage), at its local midnight and at every Monday's inside it. `week` is 0 for the
# period's start, then 1, 2, …
INSTANTS = """
history AS (
    SELECT min(first.changed_at) AS first_at
      FROM pipeline_stage s
      CROSS JOIN LATERAL (
          SELECT c.changed_at FROM pipeline_stagechange c WHERE c.to_stage_id = s.id ORDER BY c.changed_at LIMIT 1
      ) first
), periods AS (
    SELECT k.kind, p.start::date AS period_start, (p.start + k.step)::date AS period_end
      FROM (SELECT * FROM (VALUES ('month', interval '1 month'), ('quarter', interval '3 months'))
                   AS kinds(kind, step) WHERE kind = ANY(%(backtest_kinds)s)) AS k(kind, step)
      CROSS JOIN history h
      CROSS JOIN LATERAL generate_series(
          date_trunc(k.kind, h.first_at AT TIME ZONE %(tz)s),
          date_trunc(k.kind, %(computed_at)s AT TIME ZONE %(tz)s) - k.step,
          k.step
      ) AS p(start)
     WHERE (p.start AT TIME ZONE %(tz)s) >= h.first_at
), instants AS (
    SELECT periods.*, w.local_at, w.local_at AT TIME ZONE %(tz)s AS at,
           (row_number() OVER (PARTITION BY periods.kind, periods.period_start ORDER BY w.local_at) - 1)::int AS week
      FROM periods
      CROSS JOIN LATERAL (
          SELECT periods.period_start::timestamp AS local_at
          UNION ALL
          SELECT generate_series(
              date_trunc('week', periods.period_start::timestamp) + interval '1 week',
              periods.period_end::timestamp - interval '1 day',
              interval '1 week'
          )
      ) AS w(local_at)
)
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
# lookback window ending at T, known at T). A close counts at T when closed_at ≤ T, T < left_at (not left by then)
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
    SELECT i.at, s.id AS stage_id, s.probability::numeric / 100 AS p0,
           coalesce(sum(r.closed_then) FILTER (WHERE r.won), 0) AS w,
           coalesce(sum(r.closed_then) FILTER (WHERE NOT r.won), 0) AS l
      FROM (SELECT DISTINCT at FROM {{instants}}) i
      CROSS JOIN pipeline_stage s
      LEFT JOIN running r ON r.reading AND r.at = i.at AND r.pipeline_id = s.pipeline_id AND r.reached >= s."order"
     WHERE s.kind = 'open'
     GROUP BY i.at, s.id, s.probability
), learned AS (
    SELECT at, stage_id, p0, w, l,
           (w + %(prior_strength)s::numeric * p0) / nullif(w + l + %(prior_strength)s::numeric, 0) AS p
      FROM learned_at
)
"""
