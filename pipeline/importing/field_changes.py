"""Importing past field changes (`field_changes`): the shape of a Salesforce OpportunityFieldHistory export.

Each row is one change of one field of a deal (deal external id, field, old value, new value, changed_at, optional
changed_by). The fields are the ones the deal history keeps (SPEC §3a): stage (by name, in the deal's pipeline at
that instant), amount, currency, expected_close_date, forecast_category, owner (username, email or name) and
pipeline (by name; only together with a change of stage at the same instant, which names a stage of the new
pipeline). Salesforce's field names (StageName, Amount, CloseDate, ForecastCategoryName, OwnerId, CurrencyIsoCode)
are read as synonyms.

The rows of a deal are applied in time order (ties: pipeline before stage), each to the deal's history as the rows
before it left it; two rows changing the same field of a deal at the same instant are refused (the second one in
the file is reported):
- a change must be after the deal's creation and before now;
- its old value must be the field's value just before that instant (else the row is reported);
- from that instant, the field takes the new value until the next recorded change of the same field (a change
  made in the app, or a later row): the intervals of `pipeline.field_history` are split there and the field set
  in each of them, so `deals_as_of`, the waterfall and slippage read imported history like history made in the app;
- so the deal's current value changes only when the latest imported change of that field is after its last
  recorded change (the new value then holds until now); a deal that ends up in a lost stage gets the
  "Unspecified" lost reason, as in the deals import.
A change of stage is also a StageChange (funnels, time in stage). Each imported change is written to the audit
trail at its own instant and author, so `field_history.rebuild` reconstructs it. Importing the same file again
changes nothing.
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

from accounts.models import AuditAction, AuditEntry, User
from pipeline import field_history, stage_history
from pipeline.importing import audit, values
from pipeline.importing.base import KindImporter, Problem, Row
from pipeline.importing.fields import normalize_header
from pipeline.importing.references import (
    LostReasons,
    New,
    Ref,
    Stages,
    deals_by_reference,
    pk_of,
    referenced_deal,
)
from pipeline.importing.values import CellError
from pipeline.importing.writing import copy_rows, lock_unchanged, update_rows
from pipeline.models import Deal, DealState, ForecastCategory, StageChange, StageKind
from pipeline.selectors import editable_deals

# The state columns of `field_history.STATE_COLUMNS`, by position.
STAGE, OWNER, CLOSE, AMOUNT, CURRENCY, CATEGORY = range(6)
# Field → (its position in the state, how it is named in messages). Pipeline is the stage's, so it has none.
FIELDS = {
    "stage": (STAGE, "stage"),
    "owner": (OWNER, "owner"),
    "expected_close_date": (CLOSE, "expected close date"),
    "amount": (AMOUNT, "amount"),
    "currency": (CURRENCY, "currency"),
    "forecast_category": (CATEGORY, "forecast category"),
    "pipeline": (None, "pipeline"),
}
# The names a `field` cell may give (normalized like headers): ours and Salesforce's.
FIELD_NAMES = {
    **{name: name for name in FIELDS},
    "stagename": "stage",
    "stage_name": "stage",
    "ownerid": "owner",
    "owner_id": "owner",
    "closedate": "expected_close_date",
    "close_date": "expected_close_date",
    "expected_close": "expected_close_date",
    "currencyisocode": "currency",
    "currency_iso_code": "currency",
    "forecastcategoryname": "forecast_category",
    "forecastcategory": "forecast_category",
    "forecast_category_name": "forecast_category",
    "pipeline_name": "pipeline",
}
# Fields that may be empty (no amount, no close date); the others always have a value.
NULLABLE = {"amount", "expected_close_date"}
CATEGORIES = {normalize_header(label): value for value, label in ForecastCategory.choices} | {
    value: value for value in ForecastCategory.values
}
READ_BATCH = 10_000  # deals whose history is read per query
# Applied first among the changes of one instant: the stage of that instant is named in the new pipeline.
FIELD_ORDER = {"pipeline": 0}
DEAL_COLUMNS = ("stage_id", "pipeline_id", "status", *field_history.STATE_COLUMNS[1:])
DEAL_COLUMNS += ("forecast_category_override", "stage_entered_at", "closed_at", "lost_reason_id")


@dataclass
class Change:
    at: datetime
    row: int
    field: str
    old: Any  # read values; stage and pipeline stay names until the deal's pipeline at `at` is known
    new: Any
    old_text: str
    new_text: str
    by: Ref | None


@dataclass
class Segment:
    """A piece of a deal's history: `recorded` is the state as the history had it, `state` as the import leaves it."""

    start: datetime
    end: datetime | None
    by: int | Ref | None
    recorded: tuple
    state: list
    imported: bool = False


@dataclass
class Plan:
    """What the import writes for one deal."""

    intervals: list[Segment]
    moves: list[tuple[datetime, int, Ref | None]] = field(default_factory=list)  # imported (at, to stage, by)
    applied: list[Change] = field(default_factory=list)


class FieldChangeImporter(KindImporter):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stages = Stages()
        self.lost_reasons = LostReasons(create_missing=True)
        self.deals: dict[str, dict] = {}
        self.changes: dict[int, list[Change]] = defaultdict(list)
        self.plans: dict[int, Plan] = {}

    def check(self, chunk: list[tuple[int, dict[str, str]]]) -> list[Problem]:
        wanted = {cells["deal"].strip() for _, cells in chunk if cells.get("deal", "").strip()} - set(self.deals)
        self.deals.update(
            deals_by_reference(
                self.scoped(Deal, editable_deals),
                wanted,
                "id",
                "external_id",
                "title",
                "version",
                "created_at",
                *DEAL_COLUMNS,
            )
        )
        problems: list[Problem] = []
        for number, cells in chunk:
            row = Row(number, cells, self)
            self._check_row(row)
            problems += row.problems
        return problems

    def _check_row(self, row: Row) -> None:
        deal = referenced_deal(row, self.deals)
        name = FIELD_NAMES.get(normalize_header(row.mapped("field")))
        if name is None:
            known = ", ".join(FIELDS)
            row.fail("field", f"“{row.raw('field').strip()}” is not a field the history keeps (one of: {known}).")
        changed_at = row.datetime("changed_at")
        if changed_at is None and not row.problems:
            row.fail("changed_at", "The time of the change is required.")
        elif changed_at is not None and changed_at >= self.now:
            row.fail("changed_at", "A change imported into the history must be in the past.")
        elif changed_at is not None and deal is not None and changed_at <= deal["created_at"]:
            row.fail("changed_at", f"The deal was created later ({deal['created_at'].isoformat()}).")
        by = row.reference("changed_by", self.owners.resolve)
        if name is None:
            return
        old = self._value(row, "old_value", name, self.owners.resolve)
        new = self._value(row, "new_value", name, self.owners.resolve_owner)
        if not row.problems and old == new:
            row.fail("new_value", "The new value is the old one: that is no change.")
        if not row.problems:
            change = Change(changed_at, row.number, name, old, new, row.raw("old_value"), row.raw("new_value"), by)
            self.changes[deal["id"]].append(change)

    def _value(self, row: Row, cell: str, name: str, resolve_owner) -> Any:
        """The cell read as a value of field `name` (stages and pipelines: their name, resolved in `finish`)."""
        if values.is_empty(row.cells.get(cell)):
            if name not in NULLABLE:
                row.fail(cell, f"The {FIELDS[name][1]} always has a value: this cannot be empty.")
            return None
        if name == "amount":
            return row.amount(cell)
        if name == "expected_close_date":
            return row.date(cell)
        if name == "owner":
            return row.reference(cell, resolve_owner)
        text = row.mapped(cell).strip()
        if name == "currency":
            if len(text) != 3 or not text.isalpha():
                row.fail(cell, f"“{text}” is not a three-letter currency code.")
            return text.upper()
        if name == "forecast_category":
            category = CATEGORIES.get(normalize_header(text))
            if category is None:
                row.fail(cell, f"“{text}” is not a forecast category (one of: {', '.join(ForecastCategory.labels)}).")
            return category
        return text

    def finish(self) -> list[Problem]:
        problems: list[Problem] = []
        recorded: dict[int, list[Segment]] = defaultdict(list)
        deal_ids = list(self.changes)
        for start in range(0, len(deal_ids), READ_BATCH):
            for deal_id, valid_from, valid_to, by, *state in (
                DealState.objects.filter(deal_id__in=deal_ids[start : start + READ_BATCH])
                .order_by("deal_id", "valid_from", "id")
                .values_list("deal_id", "valid_from", "valid_to", "changed_by_id", *field_history.STATE_COLUMNS)
            ):
                recorded[deal_id].append(Segment(valid_from, valid_to, by, tuple(state), list(state)))
        for deal_id, changes in self.changes.items():
            changes.sort(key=lambda change: (change.at, FIELD_ORDER.get(change.field, 1), change.row))
            plan, refused = self._plan(recorded[deal_id], changes)
            problems += refused
            if refused:
                continue
            self.created += len(plan.applied)
            if [_interval(s) for s in plan.intervals] == [_interval(s) for s in recorded[deal_id]]:
                self.unchanged += 1  # already recorded (the file was imported before)
            else:
                self.plans[deal_id] = plan
                self.updated += 1
        return problems

    def _plan(self, segments: list[Segment], changes: list[Change]) -> tuple[Plan, list[Problem]]:
        """The deal's history with `changes` applied in order, or the problems of the rows that cannot apply."""
        segments = [Segment(s.start, s.end, s.by, s.recorded, list(s.state)) for s in segments]
        plan, problems = Plan(segments), []
        new_pipeline: dict[datetime, tuple[Change, int]] = {}  # instant → the pipeline row, the new pipeline's pk
        stage_at: set[datetime] = set()
        first_of: dict[tuple[str, datetime], Change] = {}
        for change in changes:
            first = first_of.setdefault((change.field, change.at), change)
            if first is not change:
                # The history holds one value of a field from an instant on: applied in file order, the first
                # change's value would hold for no time at all, and from the same old value one would be lost.
                message = (
                    f"Row {first.row} changes the {FIELDS[change.field][1]} of this deal at the same instant: "
                    "give each change its own time."
                )
                problems.append(_problem(change, "changed_at", message))
                continue
            index = _containing(segments, change.at)
            if index is None:
                problems.append(
                    _problem(change, "changed_at", "The deal's recorded history does not reach back so far.")
                )
                continue
            before = segments[index - 1] if segments[index].start == change.at and index else segments[index]
            position, label = FIELDS[change.field]
            if change.field == "pipeline":
                current = self.stages.pipeline_by_pk[self.stages.by_pk[before.state[STAGE]].pipeline_id]
                old, new = _lookup(change, problems, self.stages.pipeline, self.stages.pipeline)
                if old is None or new is None:
                    continue
                if old.pk != current.pk:
                    problems.append(_mismatch(change, label, current.name))
                    continue
                new_pipeline[change.at] = (change, new.pk)
                plan.applied.append(change)
                continue
            if change.field == "stage":
                stage = self.stages.by_pk[before.state[STAGE]]
                target_pipeline = new_pipeline.get(change.at, (None, stage.pipeline_id))[1]
                old, new = _lookup(
                    change,
                    problems,
                    partial(self._stage_pk, pipeline_id=stage.pipeline_id),
                    partial(self._stage_pk, pipeline_id=target_pipeline),
                )
                if old is None or new is None:
                    continue
                stage_at.add(change.at)
            else:
                old, new = change.old, change.new
            if pk_of_value(before.state[position]) != pk_of_value(old):
                problems.append(_mismatch(change, label, self._shown(change.field, before.state[position])))
                continue
            if segments[index].start != change.at:
                # Split the interval holding the instant: the change opens the second half.
                piece = segments[index]
                segments.insert(index + 1, Segment(change.at, piece.end, change.by, piece.recorded, list(piece.state)))
                piece.end = change.at
                index += 1
            else:
                segments[index].by = change.by if segments[index].imported else segments[index].by
            segments[index].imported = True
            # The new value holds until the history recorded another value of the field (a change made in the app).
            was = segments[index].recorded[position]
            for segment in segments[index:]:
                if segment.recorded[position] != was:
                    break
                segment.state[position] = new
            if change.field == "stage":
                plan.moves.append((change.at, new, change.by))
            plan.applied.append(change)
        for at, (change, _pipeline) in new_pipeline.items():
            if at not in stage_at:
                message = (
                    "A change of pipeline needs a change of stage at the same time, to a stage of the new pipeline."
                )
                problems.append(_problem(change, "field", message))
        # Intervals the import made equal to the one before them are one interval.
        merged: list[Segment] = []
        for segment in segments:
            if merged and merged[-1].state == segment.state:
                merged[-1].end = segment.end
            else:
                merged.append(segment)
        plan.intervals = merged
        return plan, problems

    def _stage_pk(self, name: str, *, pipeline_id: int) -> int:
        return self.stages.stage(name, self.stages.pipeline_by_pk[pipeline_id]).pk

    def _shown(self, name: str, value: Any) -> str:
        if value is None:
            return "empty"
        if name == "stage":
            return self.stages.by_pk[value].name
        if name == "owner":  # only for a refused row: one query each is fine
            return User.objects.filter(pk=pk_of_value(value)).values_list("username", flat=True).first() or "?"
        return str(value)

    def write(self) -> None:
        self.owners.write()
        deal_ids = list(self.plans)
        if not deal_ids:
            return
        deals_by_id = {deal["id"]: deal for deal in self.deals.values()}
        lock_unchanged(Deal, {deal_id: deals_by_id[deal_id]["version"] for deal_id in deal_ids})
        moved = [deal_id for deal_id, plan in self.plans.items() if plan.moves]
        stage_rows = self._stage_changes(moved)
        updates = [
            self._current(deals_by_id[deal_id], plan, stage_rows.get(deal_id)) for deal_id, plan in self.plans.items()
        ]
        self.lost_reasons.write()
        with connection.cursor() as cursor, stage_history.bulk_load(cursor, moved):
            # The deals' new current values are the end of the history written below, not a change of now.
            update_rows(
                Deal,
                list(DEAL_COLUMNS),
                (
                    (deal_id, *(pk_of(value) if isinstance(value, New) else value for value in row))
                    for deal_id, row in updates
                ),
                extra_set=f"version = {Deal._meta.db_table}.version + 1, updated_at = now()",
            )
            if moved:
                cursor.execute(f"DELETE FROM {StageChange._meta.db_table} WHERE deal_id = ANY(%s)", [moved])
                copy_rows(
                    StageChange,
                    ["deal_id", "from_stage_id", "to_stage_id", "changed_by_id", "changed_at"],
                    (
                        (deal_id, from_stage, to_stage, pk_of(by), at)
                        for deal_id in moved
                        for at, from_stage, to_stage, by in stage_rows[deal_id]
                    ),
                )
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, 'on', true)", [field_history.REBUILD_SETTING])
            cursor.execute(f"DELETE FROM {DealState._meta.db_table} WHERE deal_id = ANY(%s)", [deal_ids])
            copy_rows(
                DealState,
                ["deal_id", "valid_from", "valid_to", "changed_by_id", *field_history.STATE_COLUMNS],
                (
                    (deal_id, s.start, s.end, pk_of(s.by), *(pk_of(v) if isinstance(v, New) else v for v in s.state))
                    for deal_id, plan in self.plans.items()
                    for s in plan.intervals
                ),
            )
            cursor.execute("SELECT set_config(%s, 'off', true)", [field_history.REBUILD_SETTING])
        self._audit(deals_by_id)

    def _stage_changes(self, deal_ids: list[int]) -> dict[int, list[tuple]]:
        """Each deal's stage history with the imported moves in place: (at, from stage, to stage, by), in order."""
        recorded = defaultdict(list)
        for deal_id, at, from_stage, to_stage, by in (
            StageChange.objects.filter(deal_id__in=deal_ids)
            .order_by("deal_id", "changed_at", "id")
            .values_list("deal_id", "changed_at", "from_stage_id", "to_stage_id", "changed_by_id")
        ):
            recorded[deal_id].append((at, 0, from_stage, to_stage, by))
        rows = {}
        for deal_id in deal_ids:
            entries = recorded[deal_id] + [
                (at, 1, None, to_stage, by) for at, to_stage, by in self.plans[deal_id].moves
            ]
            entries.sort(key=lambda entry: (entry[0], entry[1]))
            changes, previous = [], entries[0][2]
            for at, _order, _from, to_stage, by in entries:
                if to_stage != previous:  # a recorded move to the stage an imported one already entered records nothing
                    changes.append((at, previous, to_stage, by))
                    previous = to_stage
            rows[deal_id] = changes
        return rows

    def _current(self, deal: dict, plan: Plan, stage_rows: list[tuple] | None) -> tuple[int, tuple]:
        """The deal's columns as the end of its new history has them."""
        state = plan.intervals[-1].state
        stage = self.stages.by_pk[state[STAGE]]
        columns = {column: deal[column] for column in DEAL_COLUMNS}
        columns.update(zip(field_history.STATE_COLUMNS, state, strict=True))
        columns.update(pipeline_id=stage.pipeline_id, status=stage.kind)
        if stage.pk != deal["stage_id"]:
            entered = stage_rows[-1][0]
            columns["stage_entered_at"] = entered
            columns["closed_at"] = None if stage.is_open else entered
            columns["lost_reason_id"] = self.lost_reasons.unspecified() if stage.kind == StageKind.LOST else None
        # The category the history holds stays the deal's: pinned unless it is the stage's own.
        category = state[CATEGORY]
        if category != (deal["forecast_category_override"] or stage.forecast_category):
            columns["forecast_category_override"] = None if category == stage.forecast_category else category
        return deal["id"], tuple(columns[column] for column in DEAL_COLUMNS)

    def _audit(self, deals_by_id: dict[int, dict]) -> None:
        """Each imported change in the trail at its own time and author (so a rebuild keeps it), then the import."""
        content_type = ContentType.objects.get_for_model(Deal).pk
        rows = []
        for deal_id, plan in self.plans.items():
            title = deals_by_id[deal_id]["title"][:200]
            for change in plan.applied:
                if change.field in ("stage", "pipeline"):
                    continue  # the stage history holds them
                pair = [_audited(change.old), _audited(change.new)]
                entry = json.dumps({change.field: pair}, cls=DjangoJSONEncoder)
                rows.append((change.at, pk_of(change.by), AuditAction.UPDATED, content_type, deal_id, title, entry))
            summary = json.dumps({"field_changes": [0, len(plan.applied)]})
            rows.append(
                (
                    self.now,
                    self.actor.pk if self.actor else None,
                    AuditAction.UPDATED,
                    content_type,
                    deal_id,
                    title,
                    summary,
                )
            )
        copy_rows(AuditEntry, audit.COLUMNS, rows)


def pk_of_value(value: Any) -> Any:
    return pk_of(value) if isinstance(value, New) else value


def _audited(value: Any) -> Any:
    value = pk_of_value(value)
    return str(value) if isinstance(value, Decimal) else value


def _interval(segment: Segment) -> tuple:
    return (segment.start, segment.end, pk_of_value(segment.by), *(pk_of_value(v) for v in segment.state))


def _containing(segments: list[Segment], at: datetime) -> int | None:
    """The index of the segment holding the instant `at`."""
    for index, segment in enumerate(segments):
        if segment.start <= at and (segment.end is None or at < segment.end):
            return index
    return None


def _lookup(change: Change, problems: list[Problem], old_of, new_of) -> tuple[Any, Any]:
    """The old and the new name of a row looked up (None for one that names nothing, with its problem)."""
    found = []
    for cell, name, lookup in (("old_value", change.old, old_of), ("new_value", change.new, new_of)):
        try:
            found.append(lookup(name))
        except CellError as error:
            problems.append(_problem(change, cell, str(error)))
            found.append(None)
    return found[0], found[1]


def _problem(change: Change, field_name: str, message: str) -> Problem:
    value = {"new_value": change.new_text, "old_value": change.old_text}.get(field_name, str(change.at))
    if field_name == "field":
        value = change.field
    return Problem(change.row, field_name, value, message)


def _mismatch(change: Change, label: str, shown: str) -> Problem:
    return _problem(change, "old_value", f"The deal's {label} just before {change.at.isoformat()} was “{shown}”.")
