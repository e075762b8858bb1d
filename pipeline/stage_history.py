"""Facts about a deal's stage history that the database stamps at write time, so metrics never re-derive them.

Two stamps, kept by triggers on every path that writes history (services, imports, the admin, raw SQL):
- `StageChange.left_at`: the changed_at of the deal's next change (the end of the stay), null while it lasts.
- `Deal.furthest_open_order`: the highest `order` among the open stages the deal ever entered.

Without them, every recompute ordered all of history in a window (time in stage) and aggregated it per deal
(funnel, learned probabilities): on a million deals with four million changes, most of the recompute. With them,
those metrics read each row once.

History inserted out of order (imports of past moves) is handled: a new change takes the next change's time as
its own exit and closes the stay before it. Reordering stages changes what "furthest" means, so it restamps the
deals of the pipelines concerned. A bulk load (`bulk_load`) skips the per-row work and restamps set-based after.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.db.backends.utils import CursorWrapper

# Read by the triggers: while it is 'on' in a transaction, inserts are not stamped row by row.
BULK_LOAD_SETTING = "pipeline.bulk_load"

TRIGGERS_SQL = f"""
CREATE FUNCTION pipeline_stagechange_stamp() RETURNS trigger AS $$
DECLARE
    entered_order smallint;
BEGIN
    IF current_setting('{BULK_LOAD_SETTING}', true) = 'on' THEN
        RETURN NEW;
    END IF;
    SELECT c.changed_at INTO NEW.left_at
      FROM pipeline_stagechange c
     WHERE c.deal_id = NEW.deal_id AND (c.changed_at, c.id) > (NEW.changed_at, NEW.id)
     ORDER BY c.changed_at, c.id
     LIMIT 1;
    UPDATE pipeline_stagechange c SET left_at = NEW.changed_at
     WHERE c.id = (
           SELECT p.id FROM pipeline_stagechange p
            WHERE p.deal_id = NEW.deal_id AND (p.changed_at, p.id) < (NEW.changed_at, NEW.id)
            ORDER BY p.changed_at DESC, p.id DESC
            LIMIT 1
     );
    SELECT s."order" INTO entered_order FROM pipeline_stage s WHERE s.id = NEW.to_stage_id AND s.kind = 'open';
    IF entered_order IS NOT NULL THEN
        UPDATE pipeline_deal d SET furthest_open_order = entered_order
         WHERE d.id = NEW.deal_id AND (d.furthest_open_order IS NULL OR d.furthest_open_order < entered_order);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER stagechange_stamp
    BEFORE INSERT ON pipeline_stagechange
    FOR EACH ROW EXECUTE FUNCTION pipeline_stagechange_stamp();

-- Append-only still, but for the exit time the stamp writes.
CREATE OR REPLACE FUNCTION pipeline_stagechange_append_only() RETURNS trigger AS $$
BEGIN
    IF (NEW.id, NEW.deal_id, NEW.from_stage_id, NEW.to_stage_id, NEW.changed_by_id, NEW.changed_at)
       IS NOT DISTINCT FROM (OLD.id, OLD.deal_id, OLD.from_stage_id, OLD.to_stage_id, OLD.changed_by_id, OLD.changed_at)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'stage history is append-only: a StageChange is never updated'
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION pipeline_stage_restamp() RETURNS trigger AS $$
DECLARE
    reordered bigint[];
BEGIN
    SELECT array_agg(DISTINCT n.pipeline_id) INTO reordered
      FROM new_stages n JOIN old_stages o ON o.id = n.id
     WHERE (n."order", n.kind) IS DISTINCT FROM (o."order", o.kind);
    IF reordered IS NOT NULL THEN
        PERFORM pipeline_restamp_furthest(reordered);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION pipeline_restamp_furthest(pipeline_ids bigint[]) RETURNS void AS $$
    UPDATE pipeline_deal d SET furthest_open_order = f.furthest
      FROM (
            SELECT c.deal_id, max(s."order") FILTER (WHERE s.kind = 'open') AS furthest
              FROM pipeline_stagechange c
              JOIN pipeline_stage s ON s.id = c.to_stage_id
             WHERE pipeline_ids IS NULL OR c.deal_id IN (
                   SELECT x.deal_id FROM pipeline_stagechange x
                     JOIN pipeline_stage xs ON xs.id = x.to_stage_id
                    WHERE xs.pipeline_id = ANY(pipeline_ids)
             )
             GROUP BY c.deal_id
      ) f
     WHERE d.id = f.deal_id AND d.furthest_open_order IS DISTINCT FROM f.furthest;
$$ LANGUAGE sql;

CREATE TRIGGER stage_restamp
    AFTER UPDATE ON pipeline_stage
    REFERENCING OLD TABLE AS old_stages NEW TABLE AS new_stages
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline_stage_restamp();
"""

DROP_TRIGGERS_SQL = """
DROP TRIGGER stage_restamp ON pipeline_stage;
DROP FUNCTION pipeline_stage_restamp();
DROP FUNCTION pipeline_restamp_furthest(bigint[]);
DROP TRIGGER stagechange_stamp ON pipeline_stagechange;
DROP FUNCTION pipeline_stagechange_stamp();
CREATE OR REPLACE FUNCTION pipeline_stagechange_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'stage history is append-only: a StageChange is never updated'
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""


def restamp_stage_history(cursor: CursorWrapper, deal_ids: Sequence[int] | None = None) -> None:
    """Recompute both stamps set-based, for `deal_ids` or for all history (after a bulk load, a history import)."""
    scope, params = ("WHERE deal_id = ANY(%s)", [list(deal_ids)]) if deal_ids is not None else ("", [])
    cursor.execute(
        f"""
        UPDATE pipeline_stagechange c SET left_at = n.next_at
          FROM (
                SELECT id, lead(changed_at) OVER (PARTITION BY deal_id ORDER BY changed_at, id) AS next_at
                  FROM pipeline_stagechange
                 {scope}
          ) n
         WHERE n.id = c.id AND c.left_at IS DISTINCT FROM n.next_at
        """,
        params,
    )
    if deal_ids is None:
        cursor.execute("SELECT pipeline_restamp_furthest(NULL)")
        return
    # A history import replaces a deal's changes: its furthest stage may go down, or to none.
    cursor.execute(
        """
        UPDATE pipeline_deal d SET furthest_open_order = f.furthest
          FROM (
                SELECT d.id, max(s."order") FILTER (WHERE s.kind = 'open') AS furthest
                  FROM pipeline_deal d
                  LEFT JOIN pipeline_stagechange c ON c.deal_id = d.id
                  LEFT JOIN pipeline_stage s ON s.id = c.to_stage_id
                 WHERE d.id = ANY(%s)
                 GROUP BY d.id
          ) f
         WHERE d.id = f.id AND d.furthest_open_order IS DISTINCT FROM f.furthest
        """,
        params,
    )


@contextmanager
def bulk_load(cursor: CursorWrapper, deal_ids: Sequence[int] | None = None) -> Iterator[None]:
    """Write stage history without per-row stamping, then stamp `deal_ids` (default: all) at once.

    Inside a transaction. Other triggers that watch the setting (forecasting.changes) skip the load too.
    """
    cursor.execute("SELECT set_config(%s, 'on', true)", [BULK_LOAD_SETTING])
    yield
    # Still inside the load: the restamp is part of it, not a million changes for other triggers to record.
    restamp_stage_history(cursor, deal_ids)
    from pipeline.touches import restamp_last_touched  # it reads this module's setting

    restamp_last_touched(cursor, deal_ids)
    cursor.execute("SELECT set_config(%s, 'off', true)", [BULK_LOAD_SETTING])
