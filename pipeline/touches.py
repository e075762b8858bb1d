"""A deal's last touch (`Deal.last_touched_at`), stamped by the database on every path that touches it.

Rotting by inactivity (SPEC §3a) reads it: an open deal whose last touch is older than its stage's rotting days has
had no activity for too long. What counts as a touch, and when:
- its creation: the latest of its `created_at`, `stage_entered_at` and `updated_at` (imports date deals in the
  past, and an imported deal nobody has touched since is as old as they say);
- an edit of any of its fields (a stage change included), at the statement's clock time; the columns the system
  keeps (`updated_at`, `version`, `furthest_open_order`, `last_touched_at`, `search_text`) are not fields a person
  edits, so a write of only those touches nothing;
- an activity of the deal inserted or updated as done (done, or moved onto the deal while done, such as a lead's
  activities carried over at conversion), at its `done_at`; a note (kind `note`) added, at its `done_at`, else its
  `created_at`. Never later than the clock: an activity dated in the future touches the deal now.
A read touches nothing, and the stamp never moves back (except by `restamp_last_touched`, which recomputes it).

Triggers, so a raw SQL UPDATE counts too. A bulk load (`pipeline.stage_history.bulk_load`) skips the per-row work
and restamps the deals it loaded set-based when it ends, with the same definition as the back-fill.
"""

from collections.abc import Sequence

from django.db.backends.utils import CursorWrapper

from pipeline.stage_history import BULK_LOAD_SETTING

# Columns the system writes: a change to only these is no touch (it is how a touch itself is written, too).
SYSTEM_COLUMNS = ("updated_at", "version", "furthest_open_order", "last_touched_at", "search_text")
# Every other column of pipeline_deal but its id: a change to any of them is a touch. Named rather than read off the
# row (`to_jsonb(NEW) - ...` cost 0.3 ms a row, five times the UPDATE itself); tests/pipeline/test_touches.py checks
# the list against the model, so a new field is not forgotten (its migration re-creates the trigger).
EDITED_COLUMNS = (
    "budget", "authority", "need", "timeline", "title", "pipeline_id", "stage_id", "status", "owner_id",
    "organization_id", "contact_id", "amount", "currency", "expected_close_date", "forecast_category",
    "forecast_category_override", "lost_reason_id", "lost_note", "source", "external_id", "created_at",
    "stage_entered_at", "closed_at",
)  # fmt: skip


def _row(prefix: str) -> str:
    return "(" + ", ".join(f"{prefix}.{column}" for column in EDITED_COLUMNS) + ")"


# The touch an activity row gives its deal, null when it gives none: done (at done_at) or a note (done, or added).
_ACTIVITY_TOUCH = (
    "(CASE WHEN {a}.done_at IS NOT NULL OR {a}.kind = 'note' THEN coalesce({a}.done_at, {a}.created_at) END)"
)

TRIGGERS_SQL = f"""
CREATE FUNCTION pipeline_deal_stamp_touch() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.last_touched_at := least(greatest(NEW.created_at, NEW.stage_entered_at, NEW.updated_at), clock_timestamp());
    ELSIF current_setting('{BULK_LOAD_SETTING}', true) = 'on' THEN
        RETURN NEW;  -- the loader restamps what it loaded (and the back-fill writes the stamp as computed)
    ELSIF {_row("NEW")} IS DISTINCT FROM {_row("OLD")} THEN
        NEW.last_touched_at := greatest(OLD.last_touched_at, clock_timestamp());
    ELSE
        -- Never back: a save of the whole row with the stamp it read earlier keeps a touch made since.
        NEW.last_touched_at := OLD.last_touched_at;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER deal_stamp_touch_on_insert BEFORE INSERT ON pipeline_deal
    FOR EACH ROW EXECUTE FUNCTION pipeline_deal_stamp_touch();
-- Only for the rows it changes: an edit, or a stamp written back (the activity trigger moves it forward itself).
CREATE TRIGGER deal_stamp_touch BEFORE UPDATE ON pipeline_deal
    FOR EACH ROW WHEN ({_row("NEW")} IS DISTINCT FROM {_row("OLD")} OR NEW.last_touched_at < OLD.last_touched_at)
    EXECUTE FUNCTION pipeline_deal_stamp_touch();

-- Inserts by statement: one UPDATE of the deals for a whole import of activities, not one per row (each firing the
-- deal's own triggers again).
CREATE FUNCTION pipeline_activities_touch_deals() RETURNS trigger AS $$
BEGIN
    IF current_setting('{BULK_LOAD_SETTING}', true) = 'on' THEN
        RETURN NULL;
    END IF;
    UPDATE pipeline_deal d SET last_touched_at = t.touched
      FROM (
          SELECT a.deal_id, least(max({_ACTIVITY_TOUCH.format(a="a")}), clock_timestamp()) AS touched
            FROM new_activities a
           WHERE a.deal_id IS NOT NULL AND (a.done_at IS NOT NULL OR a.kind = 'note')
           GROUP BY a.deal_id
      ) t
     WHERE d.id = t.deal_id AND d.last_touched_at < t.touched;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER activities_inserted_touch_deals AFTER INSERT ON pipeline_activity
    REFERENCING NEW TABLE AS new_activities FOR EACH STATEMENT EXECUTE FUNCTION pipeline_activities_touch_deals();

CREATE FUNCTION pipeline_activity_touch_deal() RETURNS trigger AS $$
DECLARE
    touched timestamptz := least({_ACTIVITY_TOUCH.format(a="NEW")}, clock_timestamp());
BEGIN
    IF current_setting('{BULK_LOAD_SETTING}', true) = 'on' THEN
        RETURN NULL;
    END IF;
    UPDATE pipeline_deal SET last_touched_at = touched WHERE id = NEW.deal_id AND last_touched_at < touched;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- An update touches only when it makes the activity a touch of this deal: done now, redated, or moved here.
CREATE TRIGGER activity_touches_deal AFTER UPDATE ON pipeline_activity
    FOR EACH ROW WHEN (
        NEW.deal_id IS NOT NULL AND (NEW.done_at IS NOT NULL OR NEW.kind = 'note')
        AND (OLD.deal_id IS DISTINCT FROM NEW.deal_id
             OR {_ACTIVITY_TOUCH.format(a="OLD")} IS DISTINCT FROM {_ACTIVITY_TOUCH.format(a="NEW")})
    )
    EXECUTE FUNCTION pipeline_activity_touch_deal();
"""

DROP_TRIGGERS_SQL = """
DROP TRIGGER activity_touches_deal ON pipeline_activity;
DROP FUNCTION pipeline_activity_touch_deal();
DROP TRIGGER activities_inserted_touch_deals ON pipeline_activity;
DROP FUNCTION pipeline_activities_touch_deals();
DROP TRIGGER deal_stamp_touch ON pipeline_deal;
DROP TRIGGER deal_stamp_touch_on_insert ON pipeline_deal;
DROP FUNCTION pipeline_deal_stamp_touch();
"""


def restamp_last_touched(cursor: CursorWrapper, deal_ids: Sequence[int] | None = None) -> int:
    """Recompute `last_touched_at` of `deal_ids` (default: every deal) from what is recorded, set-based: the latest
    of its stage_entered_at, created_at, updated_at, done activities and notes, never later than now.

    What the triggers would have stamped, had they watched every write; the back-fill (migration pipeline 0020) and
    the end of a bulk load use it. Inside a transaction. Returns the number of deals whose stamp changed.
    """
    only = "" if deal_ids is None else "AND d.id = ANY(%(ids)s)"
    # As a bulk load: the stamp may move back to what the records say, and no trigger re-stamps the rewrite.
    cursor.execute("SELECT current_setting(%s, true)", [BULK_LOAD_SETTING])
    (setting,) = cursor.fetchone()
    cursor.execute("SELECT set_config(%s, 'on', true)", [BULK_LOAD_SETTING])
    only_activities = "" if deal_ids is None else "AND a.deal_id = ANY(%(ids)s)"
    cursor.execute(
        f"""
        WITH activity_touches AS (
            SELECT a.deal_id, max({_ACTIVITY_TOUCH.format(a="a")}) AS at
              FROM pipeline_activity a
             WHERE a.deal_id IS NOT NULL AND (a.done_at IS NOT NULL OR a.kind = 'note') {only_activities}
             GROUP BY a.deal_id
        ), stamps AS (
            SELECT d.id, least(greatest(d.created_at, d.stage_entered_at, d.updated_at, t.at), now()) AS at
              FROM pipeline_deal d
              LEFT JOIN activity_touches t ON t.deal_id = d.id
             WHERE true {only}
        )
        UPDATE pipeline_deal d SET last_touched_at = s.at
          FROM stamps s
         WHERE d.id = s.id AND d.last_touched_at IS DISTINCT FROM s.at
        """,
        {"ids": list(deal_ids or [])},
    )
    changed = cursor.rowcount
    cursor.execute("SELECT set_config(%s, %s, true)", [BULK_LOAD_SETTING, setting or "off"])
    return changed
