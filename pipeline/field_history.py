"""The deal's field history: intervals of its forecast-relevant state, written by the database on every path.

`DealState` holds, per deal, one row per interval `[valid_from, valid_to)` during which its stage (so its status
and pipeline), owner, amount, currency, expected close date and forecast category all stayed the same: a change of
any of them closes the open interval and opens the next, holding the full state. One row per change (rather than
one per field and change) keeps a creation at one row instead of eight, and an as-of read at one row per deal with
no pivot.

Triggers on pipeline_deal write it (a statement-level one for inserts, row-level ones for the updates that change
a kept column and for deletions), so the services, imports, the admin and a raw SQL UPDATE all
record it; they read who made the change from the transaction-local setting `crm.actor_id` (`acting_as`, set by
the services and imports; null otherwise). A deletion closes the open interval and opens none. The rows are
append-only: a trigger refuses every UPDATE but closing an open interval, and every DELETE, except while
`rebuild` replaces the history of some deals (a stage-history import, the back-fill, a bulk load).

Times: a creation starts at the deal's `created_at` (imports date deals in the past); a change of stage at the
deal's new `stage_entered_at` (a move may be dated), else at the statement's clock time. Never before the interval
it closes: an interval may be empty, never negative.
"""

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from itertools import groupby

from django.db import connection
from django.db.backends.utils import CursorWrapper
from psycopg import pq

from pipeline.stage_history import BULK_LOAD_SETTING

ACTOR_SETTING = "crm.actor_id"
# While 'on' in a transaction, `rebuild` may delete the history rows it replaces.
REBUILD_SETTING = "pipeline.history_rebuild"

# The deal columns the history keeps, in table order; `DealState` has the same names.
# The pipeline and status are the stage's: a stage's pipeline and kind never change while deals are in it.
STATE_COLUMNS = ("stage_id", "owner_id", "expected_close_date", "amount", "currency", "forecast_category")
_COLUMNS = ", ".join(STATE_COLUMNS)
_TABLE = "pipeline_dealstate"


def _list(prefix: str) -> str:
    return ", ".join(f"{prefix}.{column}" for column in STATE_COLUMNS)


TRIGGERS_SQL = f"""
CREATE FUNCTION pipeline_dealstate_record_created() RETURNS trigger AS $$
BEGIN
    IF current_setting('{BULK_LOAD_SETTING}', true) = 'on' THEN
        RETURN NULL;  -- the bulk loader rebuilds the history of what it loaded
    END IF;
    INSERT INTO {_TABLE} (deal_id, valid_from, changed_by_id, {_COLUMNS})
    SELECT n.id, least(n.created_at, clock_timestamp()), NULLIF(current_setting('{ACTOR_SETTING}', true), '')::bigint,
           {_list("n")}
      FROM new_deals n;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Row by row, and only for rows whose kept columns changed (the WHEN of the trigger): each closes its deal's open
-- interval through the partial unique index and opens the next. (A statement-level version joining the transition
-- tables cost 6 ms for one row and 1.2 s for a thousand: they have neither index nor statistics.)
CREATE FUNCTION pipeline_dealstate_record_change() RETURNS trigger AS $$
DECLARE
    now_at timestamptz := clock_timestamp();
    at timestamptz;
    closed timestamptz;
BEGIN
    IF current_setting('{BULK_LOAD_SETTING}', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        UPDATE {_TABLE} SET valid_to = greatest(now_at, valid_from) WHERE deal_id = OLD.id AND valid_to IS NULL;
        RETURN NULL;
    END IF;
    at := CASE WHEN NEW.stage_id <> OLD.stage_id THEN least(NEW.stage_entered_at, now_at) ELSE now_at END;
    UPDATE {_TABLE} SET valid_to = greatest(at, valid_from) WHERE deal_id = NEW.id AND valid_to IS NULL
    RETURNING valid_to INTO closed;
    INSERT INTO {_TABLE} (deal_id, valid_from, changed_by_id, {_COLUMNS})
    VALUES (NEW.id, coalesce(closed, at), NULLIF(current_setting('{ACTOR_SETTING}', true), '')::bigint,
            {_list("NEW")});
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER deal_inserted_for_history AFTER INSERT ON pipeline_deal
    REFERENCING NEW TABLE AS new_deals FOR EACH STATEMENT EXECUTE FUNCTION pipeline_dealstate_record_created();
CREATE TRIGGER deal_updated_for_history AFTER UPDATE ON pipeline_deal
    FOR EACH ROW WHEN (({_list("OLD")}) IS DISTINCT FROM ({_list("NEW")}))
    EXECUTE FUNCTION pipeline_dealstate_record_change();
CREATE TRIGGER deal_deleted_for_history AFTER DELETE ON pipeline_deal
    FOR EACH ROW EXECUTE FUNCTION pipeline_dealstate_record_change();

CREATE FUNCTION pipeline_dealstate_append_only() RETURNS trigger AS $$
BEGIN
    IF current_setting('{REBUILD_SETTING}', true) = 'on' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.valid_to IS NULL AND NEW.valid_to IS NOT NULL
       AND (NEW.id, NEW.deal_id, NEW.valid_from, NEW.changed_by_id, {_list("NEW")})
           IS NOT DISTINCT FROM (OLD.id, OLD.deal_id, OLD.valid_from, OLD.changed_by_id, {_list("OLD")})
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'deal history is append-only: only an open interval may be closed'
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER dealstate_append_only BEFORE UPDATE OR DELETE ON {_TABLE}
    FOR EACH ROW EXECUTE FUNCTION pipeline_dealstate_append_only();
"""

DROP_TRIGGERS_SQL = f"""
DROP TRIGGER dealstate_append_only ON {_TABLE};
DROP FUNCTION pipeline_dealstate_append_only();
DROP TRIGGER deal_inserted_for_history ON pipeline_deal;
DROP TRIGGER deal_updated_for_history ON pipeline_deal;
DROP TRIGGER deal_deleted_for_history ON pipeline_deal;
DROP FUNCTION pipeline_dealstate_record_change();
DROP FUNCTION pipeline_dealstate_record_created();
"""


# The author an enclosing `acting_as` set in the current transaction (a 1-tuple), or None: a batch sets it once and
# the 200 writes inside it then cost no `set_config` round trips each (two per write otherwise).
_acting: ContextVar[tuple[int | None] | None] = ContextVar("field_history_acting", default=None)


@contextmanager
def acting_as(actor_id: int | None) -> Iterator[None]:
    """Inside a transaction: the deal history records `actor_id` as the author of the writes of the block.

    The previous author is restored after, so a later write of the same transaction is not credited to them.
    Inside an enclosing block of the same author nothing is sent: the setting is already in effect (it was set
    outside the savepoints of the block, which therefore cannot undo it).
    """
    if _acting.get() == (actor_id,) and connection.in_atomic_block:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting(%s, true), set_config(%s, %s, true)",
            [ACTOR_SETTING, ACTOR_SETTING, "" if actor_id is None else str(actor_id)],
        )
        previous = cursor.fetchone()[0] or ""
    # Only a block inside a transaction may stand for the blocks within it: outside one the setting ends with its
    # statement.
    token = _acting.set((actor_id,) if connection.in_atomic_block else None)
    try:
        yield
    finally:
        _acting.reset(token)
        # After a database error inside the block, the rollback that must follow returns to a point before the
        # setting was made and so undoes it; a statement now would fail and hide the error (a 500 for a 400).
        if not _transaction_failed():
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config(%s, %s, true)", [ACTOR_SETTING, previous])


def _transaction_failed() -> bool:
    """Whether the transaction can run no statement until it is rolled back (to a savepoint or whole)."""
    if connection.needs_rollback:
        return True
    raw = connection.connection
    return raw is not None and raw.info.transaction_status == pq.TransactionStatus.INERROR


# --- Rebuilding from the stage history and the audit trail ----------------------------------------------------------

# Audited deal fields the history keeps, with how a JSON value of the trail reads as the column's value.
_AUDITED = {
    "owner": ("owner_id", int),
    "expected_close_date": ("expected_close_date", date.fromisoformat),
    "amount": ("amount", lambda value: Decimal(str(value)).quantize(Decimal("0.01"))),
    "currency": ("currency", str),
    "forecast_category": ("forecast_category", str),
}
_AUDITED_COLUMNS = tuple(column for column, _read in _AUDITED.values())
REBUILD_BATCH = 5_000


def rebuild(cursor: CursorWrapper, deal_ids: Sequence[int] | None = None) -> int:
    """Replace the history of `deal_ids` (default: every deal) by one reconstructed from StageChange and the trail.

    Returns the number of intervals written. Inside a transaction. What it cannot know is said in the migration
    that back-fills with it (pipeline 0010): in short, anything neither the stage history nor the audit trail
    recorded.
    """
    cursor.execute("SELECT id FROM django_content_type WHERE app_label = 'pipeline' AND model = 'deal'")
    row = cursor.fetchone()
    content_type = row[0] if row else None
    cursor.execute("SELECT set_config(%s, 'on', true)", [REBUILD_SETTING])
    written = 0
    for batch in _deal_batches(cursor, deal_ids):
        ids = [deal[0] for deal in batch]
        cursor.execute(f"DELETE FROM {_TABLE} WHERE deal_id = ANY(%s)", [ids])
        cursor.execute(
            "SELECT deal_id, changed_at, to_stage_id, changed_by_id FROM pipeline_stagechange"
            " WHERE deal_id = ANY(%s) ORDER BY deal_id, changed_at, id",
            [ids],
        )
        moves = {key: list(rows) for key, rows in groupby(cursor.fetchall(), key=lambda row: row[0])}
        entries: dict[int, list] = {}
        if content_type is not None:
            cursor.execute(
                "SELECT object_id, at, action, changes, actor_id FROM pipeline_auditentry"
                " WHERE content_type_id = %s AND object_id = ANY(%s) AND changes ?| %s ORDER BY object_id, at, id",
                [content_type, ids, list(_AUDITED)],
            )
            entries = {key: list(rows) for key, rows in groupby(cursor.fetchall(), key=lambda row: row[0])}
        rows = []
        for deal in batch:
            rows.extend(_intervals(deal, moves.get(deal[0], []), entries.get(deal[0], [])))
        with cursor.copy(
            f"COPY {_TABLE} (deal_id, valid_from, valid_to, changed_by_id, {_COLUMNS}) FROM STDIN"
        ) as copy:
            for interval in rows:
                copy.write_row(interval)
        written += len(rows)
    cursor.execute("SELECT set_config(%s, 'off', true)", [REBUILD_SETTING])
    return written


_DEAL_COLUMNS = "id, created_at, updated_at, stage_id, " + ", ".join(_AUDITED_COLUMNS)


def _deal_batches(cursor: CursorWrapper, deal_ids: Sequence[int] | None) -> Iterator[list[tuple]]:
    if deal_ids is not None:
        ids = sorted(set(deal_ids))
        for start in range(0, len(ids), REBUILD_BATCH):
            cursor.execute(
                f"SELECT {_DEAL_COLUMNS} FROM pipeline_deal WHERE id = ANY(%s) ORDER BY id",
                [ids[start : start + REBUILD_BATCH]],
            )
            yield cursor.fetchall()
        return
    last = 0
    while True:
        cursor.execute(
            f"SELECT {_DEAL_COLUMNS} FROM pipeline_deal WHERE id > %s ORDER BY id LIMIT %s", [last, REBUILD_BATCH]
        )
        batch = cursor.fetchall()
        if not batch:
            return
        yield batch
        last = batch[-1][0]


def _intervals(deal: tuple, moves: list[tuple], entries: list[tuple]) -> Iterable[tuple]:
    """The deal's intervals: its state at its creation, at each stage change and at each audited change."""
    deal_id, created_at, updated_at, current_stage, *current_values = deal
    current = dict(zip(_AUDITED_COLUMNS, current_values, strict=True))
    # Per field: (at, old, new) in time order. A creation's entry counts at the creation, whenever it was written.
    events: dict[str, list[tuple[datetime, object, object]]] = {column: [] for column in _AUDITED_COLUMNS}
    points: dict[datetime, int | None] = {created_at: None}  # the instants that may start an interval, and who
    for _deal_id, at, action, changes, actor_id in entries:
        if action == "created":
            # Counted at the creation, whenever it was written; its author made the deal.
            at = min(at, created_at)
            points[at] = actor_id if points.get(at) is None else points[at]
        # Django's connection hands jsonb over as text (its JSONField decodes it).
        changes = json.loads(changes) if isinstance(changes, str) else changes
        for name, (column, read) in _AUDITED.items():
            pair = changes.get(name)
            if not isinstance(pair, list) or len(pair) != 2:
                continue
            old, new = (None if value is None else read(value) for value in pair)
            events[column].append((at, old, new))
            if action != "created":
                points[at] = actor_id if points.get(at) is None else points[at]
    for _deal_id, at, _to_stage, changed_by in moves:
        points[at] = changed_by if points.get(at) is None else points[at]
    # In time order: a creation's entry counts at the creation, so it may come after changes dated earlier than
    # its writing (a back-dated deal, and the changes a `field_changes` import dates between).
    for column_events in events.values():
        column_events.sort(key=lambda event: event[0])

    def value_at(column: str, at: datetime):
        before = [event for event in events[column] if event[0] <= at]
        if before:
            return before[-1][2]
        after = [event for event in events[column] if event[0] > at]
        return after[0][1] if after else current[column]

    def stage_at(at: datetime) -> int:
        before = [move for move in moves if move[1] <= at]
        return (before[-1] if before else moves[0])[2] if moves else current_stage

    states: list[list] = []
    for at in sorted(point for point in points if point >= created_at):
        state = (stage_at(at), *(value_at(column, at) for column in current))
        if not states or states[-1][2] != state:
            states.append([at, points[at], state])
    # What no record explains (a raw SQL write before the history existed): dated at the deal's last update.
    final = (current_stage, *current_values)
    if states[-1][2] != final:
        states.append([max(updated_at, states[-1][0]), None, final])
    for index, (at, by, state) in enumerate(states):
        valid_to = states[index + 1][0] if index + 1 < len(states) else None
        yield (deal_id, at, valid_to, by, *state)
