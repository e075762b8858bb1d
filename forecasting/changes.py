"""What changed since the metrics last looked: triggers that record it, and the slices of metrics it touches.

Statement-level triggers on pipeline_deal and pipeline_activity write `PendingChange` rows: for a deal, its old
and new values of what the metrics date or group by (only when one of the columns a metric reads changed); for an
activity, its deal (which may stop or start being "no next step"). A bulk load (`pipeline.stage_history.bulk_load`)
records nothing: a full recompute follows it. The triggers belong to this app, so that pipeline knows nothing of
metrics.

`Slices` turns pending changes into what an incremental refresh recomputes: the periods (month, quarter, year in
TIME_ZONE) containing each old and new close date, expected close date and creation date, the pipelines, the
owners (for their quotas and their teams') and the deals. It reads them in SQL where they are, and so does the
refresh: the queue never comes into Python whole. The forecast and the funnel are not recomputed but patched with
the images themselves (`forecasting.recompute.DIFFERENCES`), read as arrays up to a bound.
"""

from dataclasses import dataclass, field
from datetime import date

from django.conf import settings
from django.db.backends.utils import CursorWrapper

from forecasting import metrics
from forecasting.metrics import Scope
from forecasting.models import Metric
from forecasting.periods import KINDS, key_of, start_of
from pipeline.stage_history import BULK_LOAD_SETTING

# Columns of pipeline_deal that some metric dates or groups by (a change to a title or a note does not concern them).
DEAL_COLUMNS_READ = (
    "pipeline_id, stage_id, status, owner_id, source, amount, created_at, closed_at, expected_close_date, "
    "forecast_category, stage_entered_at, furthest_open_order"
)
IMAGE = (
    "id, pipeline_id, owner_id, source, status, amount, furthest_open_order, created_at, closed_at, expected_close_date"
)
# Migration 0011 adds the stage and the forecast category to the image: what a deal adds to its forecast rows (a
# refresh applies a change as the difference of its images, `forecasting.metrics.forecast_differences`).
WITH_STAGE = ", stage_id, forecast_category"


def _pending(*, with_stage: bool) -> str:
    stage = WITH_STAGE if with_stage else ""
    return (
        "forecasting_pendingchange (deal_id, pipeline_id, owner_id, source, status, amount, furthest_open_order, "
        f"created_at, closed_at, expected_close_date{stage}, sign)"
    )


def _same_row(a: str, b: str, columns: str) -> str:
    return " AND ".join(
        [f"{a}.id = {b}.id"] + [f"{a}.{c} IS NOT DISTINCT FROM {b}.{c}" for c in columns.replace(" ", "").split(",")]
    )


def deal_changes_function(*, with_touch: bool, with_stage: bool = False) -> str:
    """The deal trigger's function: the old and new images of a deal when a column of DEAL_COLUMNS_READ changed,
    and `with_touch`, only its id when its last touch moved (a touch makes or ends `no_activity`, which concerns
    that deal's stale row alone, like an activity's change). Migration 0002 installed it without the touch, before
    the column existed; 0008 adds it, once pipeline 0020 has made the column; 0011 adds `with_stage`, the deal's
    stage and forecast category in each image."""
    pending = _pending(with_stage=with_stage)
    image = IMAGE + (WITH_STAGE if with_stage else "")
    touch = """
        -- as an activity's change: the deal alone
        INSERT INTO forecasting_pendingchange (deal_id)
        SELECT n.id FROM new_deals n JOIN old_deals o ON o.id = n.id
         WHERE n.last_touched_at IS DISTINCT FROM o.last_touched_at;"""
    touch = touch if with_touch else ""
    return f"""
CREATE OR REPLACE FUNCTION forecasting_record_deal_changes() RETURNS trigger AS $$
BEGIN
    IF current_setting('{BULK_LOAD_SETTING}', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {pending} SELECT {image}, 1 FROM new_deals;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {pending} SELECT {image}, -1 FROM old_deals;
    ELSE
        INSERT INTO {pending}
        SELECT {image}, -1 FROM old_deals o
         WHERE NOT EXISTS (SELECT 1 FROM new_deals n WHERE {_same_row("n", "o", DEAL_COLUMNS_READ)})
        UNION ALL
        SELECT {image}, 1 FROM new_deals n
         WHERE NOT EXISTS (SELECT 1 FROM old_deals o WHERE {_same_row("o", "n", DEAL_COLUMNS_READ)});{touch}
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

"""


TRIGGERS_SQL = (
    deal_changes_function(with_touch=False)
    + f"""
CREATE TRIGGER deal_inserted_for_metrics AFTER INSERT ON pipeline_deal
    REFERENCING NEW TABLE AS new_deals FOR EACH STATEMENT EXECUTE FUNCTION forecasting_record_deal_changes();
CREATE TRIGGER deal_updated_for_metrics AFTER UPDATE ON pipeline_deal
    REFERENCING OLD TABLE AS old_deals NEW TABLE AS new_deals
    FOR EACH STATEMENT EXECUTE FUNCTION forecasting_record_deal_changes();
CREATE TRIGGER deal_deleted_for_metrics AFTER DELETE ON pipeline_deal
    REFERENCING OLD TABLE AS old_deals FOR EACH STATEMENT EXECUTE FUNCTION forecasting_record_deal_changes();

CREATE FUNCTION forecasting_record_activity_changes() RETURNS trigger AS $$
BEGIN
    IF current_setting('{BULK_LOAD_SETTING}', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO forecasting_pendingchange (deal_id)
        SELECT DISTINCT deal_id FROM new_activities WHERE deal_id IS NOT NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO forecasting_pendingchange (deal_id)
        SELECT DISTINCT deal_id FROM old_activities WHERE deal_id IS NOT NULL;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER activity_inserted_for_metrics AFTER INSERT ON pipeline_activity
    REFERENCING NEW TABLE AS new_activities
    FOR EACH STATEMENT EXECUTE FUNCTION forecasting_record_activity_changes();
CREATE TRIGGER activity_updated_for_metrics AFTER UPDATE ON pipeline_activity
    REFERENCING OLD TABLE AS old_activities NEW TABLE AS new_activities
    FOR EACH STATEMENT EXECUTE FUNCTION forecasting_record_activity_changes();
CREATE TRIGGER activity_deleted_for_metrics AFTER DELETE ON pipeline_activity
    REFERENCING OLD TABLE AS old_activities
    FOR EACH STATEMENT EXECUTE FUNCTION forecasting_record_activity_changes();
"""
)

DROP_TRIGGERS_SQL = """
DROP TRIGGER deal_inserted_for_metrics ON pipeline_deal;
DROP TRIGGER deal_updated_for_metrics ON pipeline_deal;
DROP TRIGGER deal_deleted_for_metrics ON pipeline_deal;
DROP FUNCTION forecasting_record_deal_changes();
DROP TRIGGER activity_inserted_for_metrics ON pipeline_activity;
DROP TRIGGER activity_updated_for_metrics ON pipeline_activity;
DROP TRIGGER activity_deleted_for_metrics ON pipeline_activity;
DROP FUNCTION forecasting_record_activity_changes();
"""

# What a refresh reads of each pending change's image for the forecast's and funnel's differences.
COLUMNS = (
    "deal_id, pipeline_id, owner_id, source, status, amount, furthest_open_order, created_at, closed_at, "
    "expected_close_date, sign, stage_id, forecast_category"
)


# What the pending changes a refresh takes (`metrics.CHANGES`) touch, added up in SQL: the days of their closes,
# expected closes and creations (each day once), the pipelines and owners; never a row per change. A deal's place in
# what a metric reads of it: in the funnels (pipeline, owner, source, creation, furthest stage, won), in the quotas
# (owner, status, amount, dates), among past-due deals. Only where a deal's old and new images (signs −1 and +1) do
# not cancel out did it move: a move between open stages moves it in no funnel and no quota. An activity's or a
# touch's change (sign 0) names its deal alone.
SLICES_SQL = f"""
WITH changes AS MATERIALIZED {metrics.CHANGES}, images AS (
    SELECT * FROM changes WHERE sign <> 0
), funnel_moves AS (
    SELECT pipeline_id, created_at FROM images
     GROUP BY deal_id, pipeline_id, owner_id, source, created_at, furthest_open_order, status = 'won'
    HAVING sum(sign) <> 0
), quota_moves AS (
    SELECT owner_id FROM images
     GROUP BY deal_id, owner_id, status, amount, closed_at, expected_close_date
    HAVING sum(sign) <> 0
), past_due_moves AS (
    SELECT 1 FROM images
     GROUP BY deal_id, pipeline_id, owner_id, source, status = 'open', amount, expected_close_date
    HAVING sum(sign) <> 0
     LIMIT 1
)
SELECT 'closed', (closed_at AT TIME ZONE %(tz)s)::date, NULL::bigint FROM changes WHERE closed_at IS NOT NULL
UNION SELECT 'expected', expected_close_date, NULL FROM changes WHERE expected_close_date IS NOT NULL
UNION SELECT 'created', (created_at AT TIME ZONE %(tz)s)::date, pipeline_id FROM funnel_moves
UNION SELECT 'quota_owner', NULL, owner_id FROM quota_moves
UNION SELECT 'past_due', NULL, NULL FROM past_due_moves
UNION SELECT 'any', NULL, NULL FROM changes
"""


def periods_holding(day: date) -> set[tuple[str, date]]:
    """The month, quarter and year `day` falls in, as (kind, first day): not `Period`s, whose end no `date` holds
    in December 9999, a date a deal may be expected to close on."""
    return {(kind.value, start_of(day, kind)) for kind in KINDS}


@dataclass
class Slices:
    """The parts of the metrics that pending changes touch (see the module docstring)."""

    closed: set[tuple[str, date]] = field(default_factory=set)
    expected: set[tuple[str, date]] = field(default_factory=set)
    created: set[tuple[str, date]] = field(default_factory=set)
    pipelines: set[int] = field(default_factory=set)
    owners: set[int] = field(default_factory=set)
    past_due: bool = False
    changes: tuple[tuple[int, int], ...] = ()  # the runs of consecutive ids of the changes taken
    any_deal: bool = False  # whether they name a deal (every change does: its stale row is rewritten)

    @classmethod
    def of_changes(cls, cursor: CursorWrapper, changes: list[tuple[int, int]]) -> "Slices":
        """What the pending changes with ids in the runs `changes` ((first, last) each) touch, read in SQL, so that
        the memory it takes grows with the calendar days, pipelines and owners touched, not with the changes."""
        slices = cls(changes=tuple(changes))
        params = {
            "tz": settings.TIME_ZONE,
            "changes_first": [first for first, _ in changes],
            "changes_last": [last for _, last in changes],
        }
        cursor.execute(SLICES_SQL, params)
        for what, day, key in cursor.fetchall():
            if what == "closed":
                slices.closed.update(periods_holding(day))
            elif what == "expected":
                slices.expected.update(periods_holding(day))
            elif what == "created":
                slices.pipelines.add(key)
                slices.created.update(periods_holding(day))
            elif what == "quota_owner":
                slices.owners.add(key)
            elif what == "past_due":
                slices.past_due = True
            else:
                slices.any_deal = True
        return slices

    def touches(self, metric: Metric) -> bool:
        """Whether a refresh has anything to recompute in `metric` (forecasting.metrics.REFRESHED)."""
        return bool(
            {
                Metric.DEAL_OUTCOMES: self.closed,
                Metric.FORECAST: self.closed | self.expected,
                Metric.FUNNEL: self.pipelines,
                Metric.STALE: self.any_deal,
                Metric.STALE_TOTALS: self.any_deal,
                Metric.PAST_DUE: self.past_due,
                Metric.QUOTA: self.owners,
                Metric.FORECAST_ACCURACY: self.closed,
            }[metric]
        )

    def period_names(self) -> list[str]:
        """The month, quarter and year periods whose forecast or outcomes were recomputed ('2026-11', '2026-Q4')."""
        names = {key_of(kind, start) for kind, start in self.closed | self.expected | self.created}
        return sorted(names)

    def scope(self) -> Scope:
        """What the refresh's SQL is scoped to (forecasting.metrics.MetricParams: `scope`)."""
        return Scope(
            closed=frozenset(self.closed),
            forecast=frozenset(self.closed | self.expected),
            created=frozenset(self.created),
            pipelines=frozenset(self.pipelines),
            owners=frozenset(self.owners),
            changes=self.changes,
        )
