-- The plainest correct set-based SQL for every metric of SPEC §3 at full grain: the lower bound `make bench` prints
-- beside the app's full recompute. Straightforward GROUP BY / window queries over the normalised tables into temp
-- tables; nothing stamped at write time, no partial aggregates, no tricks. Periods are month, quarter and year in
-- UTC (the default TIME_ZONE); groups are the company, owner, team, pipeline and source. Run in one transaction
-- that is rolled back (tools/bench/harness.py times each statement).

-- setup
SET LOCAL work_mem = '64MB';
SET LOCAL jit = off;
CREATE TEMP TABLE kinds (kind text, step interval) ON COMMIT DROP;
INSERT INTO kinds VALUES ('month', '1 month'), ('quarter', '3 months'), ('year', '1 year');

-- deals with the owner's team and the furthest open stage reached (a won deal reached every open stage)
CREATE TEMP TABLE d ON COMMIT DROP AS
SELECT d.id, d.pipeline_id, d.stage_id, d.status, d.amount, d.source, d.owner_id, u.team_id, d.created_at,
       d.closed_at, d.stage_entered_at, d.expected_close_date, d.forecast_category,
       CASE WHEN d.status = 'won' THEN 32767 ELSE f.furthest END AS furthest
  FROM pipeline_deal d JOIN accounts_user u ON u.id = d.owner_id
  LEFT JOIN (SELECT c.deal_id, max(s."order") AS furthest
               FROM pipeline_stagechange c JOIN pipeline_stage s ON s.id = c.to_stage_id
              WHERE s.kind = 'open' GROUP BY c.deal_id) f ON f.deal_id = d.id;

-- win rate, average won deal size, sales cycle (mean and median, won and lost apart) per closing period and group
CREATE TEMP TABLE m_outcomes ON COMMIT DROP AS
SELECT kind, period, owner_id, team_id, pipeline_id, source,
       count(*) FILTER (WHERE status = 'won') AS won, count(*) FILTER (WHERE status = 'lost') AS lost,
       avg(amount) FILTER (WHERE status = 'won') AS avg_won,
       avg(extract(epoch FROM closed_at - created_at) / 86400) FILTER (WHERE status = 'won') AS won_mean,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - created_at) / 86400)
           FILTER (WHERE status = 'won') AS won_median,
       avg(extract(epoch FROM closed_at - created_at) / 86400) FILTER (WHERE status = 'lost') AS lost_mean,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - created_at) / 86400)
           FILTER (WHERE status = 'lost') AS lost_median
  FROM (SELECT d.*, k.kind, date_trunc(k.kind, d.closed_at) AS period
          FROM d CROSS JOIN kinds k WHERE d.status IN ('won', 'lost')) x
 GROUP BY GROUPING SETS ((kind, period), (kind, period, owner_id), (kind, period, team_id),
                         (kind, period, pipeline_id), (kind, period, source));

-- funnel: per creation cohort (and all deals), group and open stage: reached and conversion to the next stage
CREATE TEMP TABLE m_funnel ON COMMIT DROP AS
WITH cohorts AS (
    SELECT d.*, k.kind, date_trunc(k.kind, d.created_at) AS period FROM d CROSS JOIN kinds k
    UNION ALL
    SELECT d.*, 'all', NULL FROM d
), by_furthest AS (
    SELECT kind, period, pipeline_id, owner_id, team_id, source, GROUPING(owner_id, team_id, source) AS g, furthest,
           count(*) AS deals, count(*) FILTER (WHERE status = 'won') AS won
      FROM cohorts
     GROUP BY GROUPING SETS ((kind, period, pipeline_id, furthest), (kind, period, pipeline_id, furthest, owner_id),
                             (kind, period, pipeline_id, furthest, team_id), (kind, period, pipeline_id, furthest, source))
), reached AS (
    SELECT b.kind, b.period, b.pipeline_id, b.g, b.owner_id, b.team_id, b.source, s.id AS stage_id, s."order",
           coalesce(sum(b.deals) FILTER (WHERE b.furthest >= s."order"), 0) AS reached, sum(b.won) AS won
      FROM by_furthest b JOIN pipeline_stage s ON s.pipeline_id = b.pipeline_id AND s.kind = 'open'
     GROUP BY b.kind, b.period, b.pipeline_id, b.g, b.owner_id, b.team_id, b.source, s.id, s."order"
)
SELECT r.*, coalesce(lead(reached) OVER w, won)::float8 / nullif(reached, 0) AS conversion
  FROM reached r
WINDOW w AS (PARTITION BY kind, period, pipeline_id, g, owner_id, team_id, source ORDER BY "order");

-- learned probability per open stage and group: deals that reached it and closed in the last 365 days
CREATE TEMP TABLE m_learned ON COMMIT DROP AS
SELECT s.pipeline_id, s.id AS stage_id, d.owner_id, d.team_id, d.source,
       count(*) FILTER (WHERE d.status = 'won') AS w, count(*) FILTER (WHERE d.status = 'lost') AS l,
       (count(*) FILTER (WHERE d.status = 'won') + 10 * s.probability / 100.0)
           / (count(*) + 10) AS p
  FROM pipeline_stage s
  JOIN d ON d.pipeline_id = s.pipeline_id AND d.furthest >= s."order"
        AND d.status IN ('won', 'lost') AND d.closed_at >= now() - interval '365 days'
 WHERE s.kind = 'open'
 GROUP BY GROUPING SETS ((s.pipeline_id, s.id, s.probability), (s.pipeline_id, s.id, s.probability, d.owner_id),
                         (s.pipeline_id, s.id, s.probability, d.team_id), (s.pipeline_id, s.id, s.probability, d.source));

-- forecast per period and group: weighted (configured and learned), commit, best case, pipeline, won amount
CREATE TEMP TABLE m_forecast ON COMMIT DROP AS
WITH facts AS (
    SELECT 'open' AS fact, d.expected_close_date::timestamp AS at, d.amount, d.forecast_category,
           s.probability / 100.0 AS p_configured, coalesce(l.p, s.probability / 100.0) AS p_learned,
           d.owner_id, d.team_id, d.pipeline_id, d.source
      FROM d JOIN pipeline_stage s ON s.id = d.stage_id
      LEFT JOIN m_learned l ON l.stage_id = d.stage_id AND l.owner_id IS NULL AND l.team_id IS NULL AND l.source IS NULL
     WHERE d.status = 'open' AND d.expected_close_date IS NOT NULL
    UNION ALL
    SELECT 'won', d.closed_at, d.amount, d.forecast_category, 1, 1, d.owner_id, d.team_id, d.pipeline_id, d.source
      FROM d WHERE d.status = 'won'
)
SELECT kind, period, owner_id, team_id, pipeline_id, source,
       sum(amount * p_configured) FILTER (WHERE fact = 'open') AS weighted_configured,
       sum(amount * p_learned) FILTER (WHERE fact = 'open') AS weighted_learned,
       sum(amount) FILTER (WHERE fact = 'open' AND forecast_category = 'commit') AS commit,
       sum(amount) FILTER (WHERE fact = 'open' AND forecast_category IN ('commit', 'best_case')) AS best_case,
       sum(amount) FILTER (WHERE fact = 'open') AS pipeline,
       sum(amount) FILTER (WHERE fact = 'won') AS won_amount
  FROM (SELECT f.*, k.kind, date_trunc(k.kind, f.at) AS period FROM facts f CROSS JOIN kinds k) x
 GROUP BY GROUPING SETS ((kind, period), (kind, period, owner_id), (kind, period, team_id),
                         (kind, period, pipeline_id), (kind, period, source));

-- past due: open deals expected before today, per group
CREATE TEMP TABLE m_past_due ON COMMIT DROP AS
SELECT owner_id, team_id, pipeline_id, source, count(*) AS deals, sum(amount) AS amount
  FROM d WHERE status = 'open' AND expected_close_date < current_date
 GROUP BY GROUPING SETS ((), (owner_id), (team_id), (pipeline_id), (source));

-- time in stage: completed stays (to the next change of the deal), mean and median, per stage and group
CREATE TEMP TABLE m_stage_time ON COMMIT DROP AS
WITH stays AS (
    SELECT c.deal_id, c.to_stage_id AS stage_id,
           extract(epoch FROM lead(c.changed_at) OVER (PARTITION BY c.deal_id ORDER BY c.changed_at, c.id)
                              - c.changed_at) / 86400 AS days
      FROM pipeline_stagechange c
)
SELECT st.stage_id, d.owner_id, d.team_id, d.source, count(*) AS stays, avg(st.days) AS mean,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY st.days) AS median
  FROM stays st JOIN d ON d.id = st.deal_id
 WHERE st.days IS NOT NULL
 GROUP BY GROUPING SETS ((st.stage_id), (st.stage_id, d.owner_id), (st.stage_id, d.team_id), (st.stage_id, d.source));

-- in stage now: open deals by current stage, with their age
CREATE TEMP TABLE m_in_stage_now ON COMMIT DROP AS
SELECT stage_id, owner_id, team_id, source, count(*) AS deals,
       avg(extract(epoch FROM now() - stage_entered_at) / 86400) AS mean,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM now() - stage_entered_at) / 86400) AS median
  FROM d WHERE status = 'open'
 GROUP BY GROUPING SETS ((stage_id), (stage_id, owner_id), (stage_id, team_id), (stage_id, source));

-- stale deals: rotting in their stage, or no activity due in the future
CREATE TEMP TABLE m_stale ON COMMIT DROP AS
SELECT d.id, d.owner_id, d.stage_id, now() - d.stage_entered_at > make_interval(days => s.rotting_days) AS rotting,
       NOT EXISTS (SELECT 1 FROM pipeline_activity a WHERE a.deal_id = d.id AND a.done_at IS NULL AND a.due_at > now())
           AS no_next_step
  FROM d JOIN pipeline_stage s ON s.id = d.stage_id
 WHERE d.status = 'open';

-- leads: qualified (reached sql) per period, lead velocity, MQL→SQL and lead→deal over leads created in the period
CREATE TEMP TABLE m_leads ON COMMIT DROP AS
WITH l AS (
    SELECT l.*, u.team_id, k.kind, k.step FROM pipeline_lead l JOIN accounts_user u ON u.id = l.owner_id CROSS JOIN kinds k
), qualified AS (
    SELECT kind, period, GROUPING(owner_id, team_id, source) AS g, coalesce(owner_id, 0) AS o,
           coalesce(team_id, 0) AS t, coalesce(source, '') AS src, count(*) AS qualified
      FROM (SELECT l.*, date_trunc(kind, sql_at) AS period FROM l WHERE sql_at IS NOT NULL) x
     GROUP BY GROUPING SETS ((kind, period), (kind, period, owner_id), (kind, period, team_id), (kind, period, source))
), created AS (
    SELECT kind, period, GROUPING(owner_id, team_id, source) AS g, coalesce(owner_id, 0) AS o,
           coalesce(team_id, 0) AS t, coalesce(source, '') AS src, count(*) AS created,
           count(*) FILTER (WHERE mql_at IS NOT NULL) AS mql, count(*) FILTER (WHERE sql_at IS NOT NULL) AS sql,
           count(*) FILTER (WHERE converted_at IS NOT NULL) AS converted
      FROM (SELECT l.*, date_trunc(kind, created_at) AS period FROM l) x
     GROUP BY GROUPING SETS ((kind, period), (kind, period, owner_id), (kind, period, team_id), (kind, period, source))
), velocity AS (
    SELECT q.*, (q.qualified - prev.qualified)::float8 * 100 / nullif(prev.qualified, 0) AS velocity
      FROM qualified q
      LEFT JOIN (SELECT qualified.*, period + CASE kind WHEN 'month' THEN interval '1 month'
                                                       WHEN 'quarter' THEN interval '3 months' ELSE interval '1 year'
                                                   END AS next_period
                   FROM qualified) prev
             ON prev.kind = q.kind AND prev.next_period = q.period AND prev.g = q.g AND prev.o = q.o
            AND prev.t = q.t AND prev.src = q.src
)
SELECT kind, period, g, o, t, src, v.qualified, v.velocity,
       c.sql::float8 / nullif(c.mql, 0) AS mql_to_sql, c.converted::float8 / nullif(c.created, 0) AS lead_to_deal
  FROM velocity v
  FULL JOIN created c USING (kind, period, g, o, t, src);

-- quota attainment, coverage and deals needed (trailing four quarters) per quota
CREATE TEMP TABLE m_quota ON COMMIT DROP AS
WITH per_quota AS (
    SELECT q.id, q.amount AS quota,
           coalesce(sum(d.amount) FILTER (WHERE d.status = 'won' AND d.closed_at >= q.period_start
                                          AND d.closed_at < q.period_end), 0) AS won_amount,
           coalesce(sum(d.amount) FILTER (WHERE d.status = 'open' AND d.expected_close_date >= q.period_start
                                          AND d.expected_close_date < q.period_end), 0) AS open_amount,
           count(*) FILTER (WHERE d.status = 'won' AND d.closed_at >= t.start AND d.closed_at < t.stop) AS t_won,
           count(*) FILTER (WHERE d.status IN ('won', 'lost') AND d.closed_at >= t.start AND d.closed_at < t.stop)
               AS t_closed,
           avg(d.amount) FILTER (WHERE d.status = 'won' AND d.closed_at >= t.start AND d.closed_at < t.stop) AS t_avg_won
      FROM forecasting_quota q
      CROSS JOIN (SELECT date_trunc('quarter', now()) - interval '12 months' AS start,
                         date_trunc('quarter', now()) AS stop) t
      JOIN accounts_user u ON u.id = q.user_id OR u.team_id = q.team_id
      LEFT JOIN d ON d.owner_id = u.id
     GROUP BY q.id, q.amount
)
SELECT id, won_amount / nullif(quota, 0) AS attainment,
       open_amount / nullif(greatest(quota - won_amount, 0), 0) AS coverage,
       ceil(greatest(quota - won_amount, 0) / nullif(t_avg_won, 0) / nullif(t_won::numeric / nullif(t_closed, 0), 0))
           AS deals_needed
  FROM per_quota;

-- forecast accuracy: each stored start-of-period forecast against the won amount of its period
CREATE TEMP TABLE m_accuracy ON COMMIT DROP AS
SELECT s.id, abs(coalesce(f.won_amount, 0) - s.weighted_configured) * 100 / nullif(f.won_amount, 0) AS ape_configured,
       abs(coalesce(f.won_amount, 0) - s.weighted_learned) * 100 / nullif(f.won_amount, 0) AS ape_learned
  FROM forecasting_forecastsnapshot s
  LEFT JOIN m_forecast f ON f.kind = s.period_kind AND f.period = s.period_start
       AND f.owner_id IS NOT DISTINCT FROM s.owner_id AND f.team_id IS NOT DISTINCT FROM s.team_id
       AND f.pipeline_id IS NOT DISTINCT FROM s.pipeline_id AND f.source IS NOT DISTINCT FROM s.source
 WHERE s.period_end <= current_date;
