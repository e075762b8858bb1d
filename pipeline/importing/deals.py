"""Importing deals, with the stage history their dates describe.

A new deal's history follows from `created_at`, `closed_at` and the `entered_at:<stage>` columns, so that it
counts in every metric like a deal made in the app (`services.create_deal` then `services.move_deal(at=...)`):

- The deal is created at `created_at` (default: the earliest date the row gives, else the time of the import).
- It enters, at `created_at`, the stage whose `entered_at` is `created_at`; otherwise, when the row dates
  later stages, the pipeline's first open stage; otherwise (no other dates) directly its current stage.
- It then enters each dated stage in time order, and lastly its current stage: a won or lost deal at `closed_at`
  (or `entered_at:<won/lost stage>`), an open deal at its `entered_at` (needed when other stages are dated).
- `stage_entered_at` is the last entry, `closed_at` the last entry of a closed deal (empty for open deals), and
  `version` the number of entries, as if each had been a move.

Stage `required_fields` are not applied to imported history: they are the app's rule for moves made in it, and
a manager's existing data must load as it is. Moves made in the app afterwards follow them as usual.

A row whose `external_id` belongs to an existing deal updates it: the mapped fields change, and a new stage
is recorded as one move (dated by its `entered_at`, `closed_at` for won/lost, or the import time), never
earlier than the deal entered its current stage. `created_at`, the recorded close time and the dates of stages
already entered cannot change this way (a row repeating them is fine); the `stage_changes` kind reloads a whole
history.
"""

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection

from accounts.models import AuditAction
from pipeline import field_history, stage_history
from pipeline.importing import audit
from pipeline.importing.base import KindImporter, Problem, Row
from pipeline.importing.fields import ENTERED_AT_PREFIX
from pipeline.importing.reading import MAX_LINE_CHARS
from pipeline.importing.references import (
    Contacts,
    LostReasons,
    New,
    Organizations,
    Ref,
    StageRow,
    Stages,
    deals_by_reference,
    pk_of,
)
from pipeline.importing.values import CellError
from pipeline.importing.writing import copy_rows, lock_unchanged, reserve_ids, update_rows
from pipeline.models import Contact, Deal, ForecastCategory, Organization, Pipeline, StageChange, StageKind
from pipeline.selectors import visible_contacts, visible_organizations

# The deal columns an import writes, in COPY order (every concrete column but the id), and their field names.
# The columns a new deal is written with: not those the database fills (`last_touched_at`, pipeline.touches).
_WRITTEN_FIELDS = [f for f in Deal._meta.concrete_fields if not f.primary_key and not f.has_db_default()]
DEAL_COLUMNS = [f.column for f in _WRITTEN_FIELDS]
DEAL_FIELD_NAMES = [f.name for f in _WRITTEN_FIELDS]
TITLE = DEAL_FIELD_NAMES.index("title")
STAGE_CHANGE_COLUMNS = ["deal_id", "from_stage_id", "to_stage_id", "changed_by_id", "changed_at"]
TEXT_FIELDS = {
    "title": 200,
    "lost_note": MAX_LINE_CHARS,
    "source": 100,
    "authority": 200,
    "need": MAX_LINE_CHARS,
    "timeline": 200,
}
# Fields whose value an update sets when the column is mapped (stage and its stamps are handled apart).
SIMPLE_FIELDS = [
    "title", "owner", "organization", "contact", "amount", "currency", "expected_close_date", "lost_note", "source",
    "budget", "authority", "need", "timeline",
]  # fmt: skip
UPDATED_FIELDS = [
    *SIMPLE_FIELDS, "stage", "status", "lost_reason", "forecast_category", "forecast_category_override",
    "stage_entered_at", "closed_at",
]  # fmt: skip


class DealChange(NamedTuple):
    """An existing deal as the import will leave it."""

    deal_id: int
    values: dict[str, Any]  # every UPDATED_FIELDS value, changed or kept
    move: tuple[int, int, datetime] | None  # (from stage, to stage, at) when the stage changes
    version: int  # as read while checking: the write refuses a deal changed since
    title: str
    before: dict[str, Any]  # the UPDATED_FIELDS values as read, for the audit trail


@dataclass(frozen=True)
class ParsedDeal:
    """A row's cells read into values, before its history is planned."""

    external_id: str | None
    pipeline: Pipeline
    stage: StageRow
    values: dict[str, Any]  # the SIMPLE_FIELDS
    created_at: datetime | None
    closed_at: datetime | None
    entered: dict[StageRow, datetime]
    lost_reason: Ref | None
    override: str | None


class HistoryProblem(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def plan_history(
    *,
    stage: StageRow,
    first_open: StageRow,
    created_at: datetime | None,
    closed_at: datetime | None,
    entered: dict[StageRow, datetime],
    now: datetime,
) -> list[tuple[StageRow, datetime]]:
    """The stages a new deal entered and when, oldest first (the rules in the module docstring)."""
    if stage.is_open:
        if closed_at is not None:
            raise HistoryProblem(
                "closed_at", "An open deal has no close date (map this column to expected_close_date?)."
            )
        current_at = entered.get(stage)
    else:
        current_at = closed_at or entered.get(stage)
        if current_at is None:
            raise HistoryProblem("closed_at", f"A {stage.kind} deal needs closed_at (the date it was {stage.kind}).")
        if closed_at is not None and stage in entered and entered[stage] != closed_at:
            raise HistoryProblem(
                ENTERED_AT_PREFIX + stage.name, "Differs from closed_at; a deal closes when it enters this stage."
            )
    others = sorted(((s, at) for s, at in entered.items() if s != stage), key=lambda entry: (entry[1], entry[0].order))
    if current_at is None:
        if others:
            raise HistoryProblem(
                ENTERED_AT_PREFIX + stage.name,
                f"The date the deal entered its current stage “{stage.name}” is needed, since other stages are dated.",
            )
        return [(stage, created_at or now)]
    for other, at in others:
        if at > current_at:
            raise HistoryProblem(
                ENTERED_AT_PREFIX + other.name, f"Is later than the deal entered its current stage “{stage.name}”."
            )
    chain = [*others, (stage, current_at)]
    if created_at is None:
        return chain
    for entered_stage, at in chain:
        if at < created_at:
            field = (
                "closed_at" if entered_stage == stage and not stage.is_open else ENTERED_AT_PREFIX + entered_stage.name
            )
            raise HistoryProblem(field, "Is before created_at.")
    if chain[0][1] > created_at:
        if chain[0][0] == first_open:
            raise HistoryProblem(
                ENTERED_AT_PREFIX + first_open.name,
                "Is later than created_at, but a deal enters its pipeline's first stage when it is created.",
            )
        chain.insert(0, (first_open, created_at))
    return chain


class DealImporter(KindImporter):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stages = Stages()
        self.organizations = Organizations(
            create_missing=self.options.create_missing, queryset=self.scoped(Organization, visible_organizations)
        )
        self.contacts = Contacts(
            create_missing=self.options.create_missing, queryset=self.scoped(Contact, visible_contacts)
        )
        self.lost_reasons = LostReasons(create_missing=self.options.create_missing)
        self.entered_fields = sorted(f for f in self.fields if f.startswith(ENTERED_AT_PREFIX))
        # New deals: (column values in DEAL_COLUMNS order with New references unresolved, ((stage pk, at), ...)).
        self.new_deals: list[tuple[tuple, tuple[tuple[int, datetime], ...]]] = []
        self.changed_deals: list[DealChange] = []
        self.recorded_entries: dict[int, set[tuple[int, datetime]]] = {}

    def new_references(self) -> dict[str, int]:
        counts = super().new_references()
        for noun, source in (
            ("organizations", self.organizations),
            ("contacts", self.contacts),
            ("lost reasons", self.lost_reasons),
        ):
            if source.new:
                counts[noun] = len(source.new)
        return counts

    def check(self, chunk: list[tuple[int, dict[str, str]]]) -> list[Problem]:
        self.organizations.prefetch(self.value_map("organization", c.get("organization", "")) for _, c in chunk)
        self.contacts.prefetch(self.value_map("contact", c.get("contact", "")) for _, c in chunk)
        external_ids = [c["external_id"].strip() for _, c in chunk if c.get("external_id", "").strip()]
        # Every deal, not only those the actor may change: a row naming another's deal is refused, not a new deal.
        existing = deals_by_reference(Deal.objects.all(), external_ids)
        self.recorded_entries = defaultdict(set)  # deal id → {(stage pk, entered at)} of the deals updated here
        if self.entered_fields and existing:
            for deal_id, stage_id, changed_at in StageChange.objects.filter(
                deal_id__in=[deal["id"] for deal in existing.values()]
            ).values_list("deal_id", "to_stage_id", "changed_at"):
                self.recorded_entries[deal_id].add((stage_id, changed_at))
        problems: list[Problem] = []
        for number, cells in chunk:
            row = Row(number, cells, self)
            external_id = self.external_id(row)
            deal = existing.get(external_id)
            if deal is not None and not self.may_change(deal["owner_id"]):
                row.fail("external_id", "This external id belongs to a deal you may not change.")
            else:
                self._check_row(row, external_id, deal)
            problems += row.problems
        return problems

    def _check_row(self, row: Row, external_id: str | None, existing: dict | None) -> None:
        stages = self.stages
        pipeline = row.reference("pipeline", stages.pipeline)
        if pipeline is None and not row.mapped("pipeline"):
            pipeline = stages.pipeline_by_pk[existing["pipeline_id"]] if existing else stages.default
            if pipeline is None:
                row.fail("pipeline", "There is no pipeline yet: an admin must create one first.")
                return
        if pipeline is None:
            return
        if existing and pipeline.pk != existing["pipeline_id"]:
            row.fail("pipeline", "An import cannot move a deal to another pipeline.")
        stage = row.reference("stage", stages.stage, pipeline)
        if stage is None and not row.mapped("stage"):
            stage = stages.by_pk[existing["stage_id"]] if existing else stages.first_open.get(pipeline.pk)
            if stage is None:
                row.fail("stage", f"The pipeline “{pipeline.name}” has no open stage.")
        owner = row.reference("owner", self.owners.resolve_owner)
        if owner is None and not row.mapped("owner"):
            owner = existing["owner_id"] if existing else (self.actor.pk if self.actor else None)
            if owner is None:
                row.fail("owner", "A deal needs an owner (fill the owner column, or import as a user).")
        organization = row.reference("organization", self.organizations.resolve, owner=owner)
        contact = row.reference("contact", self.contacts.resolve, organization=organization, owner=owner)
        values = {
            "owner": owner,
            "organization": organization,
            "contact": contact,
            "amount": row.amount("amount"),
            "budget": row.amount("budget"),
            "expected_close_date": row.date("expected_close_date"),
            "currency": self._currency(row),
        }
        for name, max_length in TEXT_FIELDS.items():
            values[name] = row.text(name, max_length=max_length)
        if not values["title"] and (existing is None or row.has("title")):
            # A file without titles (a typical opportunities export) names each deal after its customer, or its id.
            values["title"] = (row.mapped("organization") or row.mapped("contact") or external_id or "")[:200]
            if not values["title"]:
                row.fail("title", "A deal needs a title (or an organization or external id to name it after).")
        created_at = row.datetime("created_at")
        closed_at = row.datetime("closed_at")
        entered: dict[StageRow, datetime] = {}
        for field in self.entered_fields:
            at = row.datetime(field)
            if at is not None:
                try:
                    entered[stages.stage(field[len(ENTERED_AT_PREFIX) :], pipeline)] = at
                except CellError as error:
                    row.fail(field, str(error))
        override = self._forecast_override(row)
        # A lost reason matters only on a lost deal (a reason on another deal is dropped, not looked up).
        lost = stage is not None and stage.kind == StageKind.LOST
        lost_reason = row.reference("lost_reason", self.lost_reasons.resolve) if lost else None
        if row.problems or stage is None:
            return
        parsed = ParsedDeal(external_id, pipeline, stage, values, created_at, closed_at, entered, lost_reason, override)
        if existing:
            self._plan_update(row, existing, parsed)
        else:
            self._plan_new(row, parsed)

    def _currency(self, row: Row) -> str:
        currency = row.text("currency", max_length=3).upper() or settings.DEFAULT_CURRENCY
        if not (len(currency) == 3 and currency.isalpha() and currency.isascii()):
            row.fail("currency", "Use a three-letter ISO 4217 code such as USD.")
        return currency

    def _forecast_override(self, row: Row) -> str | None:
        value = row.text("forecast_category_override", max_length=16).lower()
        if value and value not in ForecastCategory.values:
            row.fail("forecast_category_override", f"One of {', '.join(ForecastCategory.values)}.")
            return None
        return value or None

    def _stamps(self, stage: StageRow, lost_reason: Ref | None, override: str | None) -> dict:
        # Only lost deals have a lost reason; one the file does not give is "Unspecified".
        lost_reason = (lost_reason or self.lost_reasons.unspecified()) if stage.kind == StageKind.LOST else None
        return {
            "stage": stage.pk,
            "status": stage.kind,
            "lost_reason": lost_reason,
            "forecast_category_override": override,
            "forecast_category": override or stage.forecast_category,
        }

    def _plan_new(self, row: Row, deal_row: ParsedDeal) -> None:
        stage = deal_row.stage
        try:
            chain = plan_history(
                stage=stage,
                first_open=self.stages.first_open.get(deal_row.pipeline.pk, stage),
                created_at=deal_row.created_at,
                closed_at=deal_row.closed_at,
                entered=deal_row.entered,
                now=self.now,
            )
        except HistoryProblem as problem:
            row.fail(problem.field, str(problem))
            return
        deal = {
            **deal_row.values,
            **self._stamps(stage, deal_row.lost_reason, deal_row.override),
            "pipeline": deal_row.pipeline.pk,
            "external_id": deal_row.external_id,
            "created_at": chain[0][1],
            "stage_entered_at": chain[-1][1],
            "closed_at": None if stage.is_open else chain[-1][1],
            "updated_at": self.now,
            "version": len(chain),
            # What the stage history's stamp computes from these entries, written now: the stamp after the load
            # then finds nothing to change, where it rewrote each new deal (a non-HOT update touching every index
            # of the deal table: 11-14 s of an import of 100,000 deals on L).
            "furthest_open_order": max((entered.order for entered, _at in chain if entered.is_open), default=None),
        }
        # Tuples rather than dicts: 100,000 rows wait here until the file has been checked.
        self.new_deals.append((_column_values(deal), tuple((entered_stage.pk, at) for entered_stage, at in chain)))
        self.created += 1

    def _plan_update(self, row: Row, existing: dict, deal_row: ParsedDeal) -> None:
        stage, created_at, closed_at, entered = (
            deal_row.stage,
            deal_row.created_at,
            deal_row.closed_at,
            deal_row.entered,
        )
        lost_reason, override = deal_row.lost_reason, deal_row.override
        if created_at is not None and created_at != existing["created_at"]:
            row.fail("created_at", "An existing deal's creation time cannot change (its history starts then).")
        current = self.stages.by_pk[existing["stage_id"]]
        move = None
        changes = {name: deal_row.values[name] for name in SIMPLE_FIELDS if row.has(name)}
        if stage.is_open and closed_at is not None:
            row.fail("closed_at", "An open deal has no close date (map this column to expected_close_date?).")
        if stage.pk == current.pk:
            if not stage.is_open and closed_at is not None and closed_at != existing["closed_at"]:
                row.fail("closed_at", "Differs from the time the deal was closed; the history cannot be rewritten.")
            stamps = self._stamps(stage, lost_reason or existing["lost_reason_id"], override)
        else:
            at = entered.get(stage) or (None if stage.is_open else closed_at) or self.now
            if at < existing["stage_entered_at"]:
                field = ENTERED_AT_PREFIX + stage.name if stage in entered else "closed_at"
                row.fail(field, "A move cannot be dated before the deal entered its current stage.")
            move = (current.pk, stage.pk, at)
            stamps = self._stamps(stage, lost_reason, override)
            stamps.update({"stage_entered_at": at, "closed_at": None if stage.is_open else at})
            if stage.kind != StageKind.LOST:
                stamps["lost_note"] = ""  # as `services.move_deal`: a note on why it was lost goes with the loss
        for entered_stage, entered_at in entered.items():
            is_the_move = move is not None and entered_stage.pk == move[1]
            if not is_the_move and (entered_stage.pk, entered_at) not in self.recorded_entries[existing["id"]]:
                row.fail(
                    ENTERED_AT_PREFIX + entered_stage.name,
                    "Differs from the deal's recorded history, which an update does not rewrite "
                    "(the stage_changes import reloads a whole history).",
                )
        if not row.has("forecast_category_override"):
            kept = existing["forecast_category_override"]
            stamps["forecast_category_override"] = kept
            stamps["forecast_category"] = kept or stage.forecast_category
        if row.problems:
            return
        changes.update(stamps)
        if move is None and all(_same(existing, name, value) for name, value in changes.items()):
            self.unchanged += 1
            return
        # Every row of the UPDATE sets the same columns: unchanged ones keep the deal's current value.
        before = {name: existing[Deal._meta.get_field(name).attname] for name in UPDATED_FIELDS}
        full = {name: changes.get(name, before[name]) for name in UPDATED_FIELDS}
        self.changed_deals.append(
            DealChange(existing["id"], full, move, existing["version"], existing["title"], before)
        )
        self.updated += 1

    def write(self) -> None:
        self.owners.write()
        self.lost_reasons.write()
        self.organizations.write()
        self.contacts.write()
        ids = reserve_ids(Deal, len(self.new_deals))
        copy_rows(
            Deal,
            ["id", *DEAL_COLUMNS],
            (
                (deal_id, *(_db_value(value) for value in deal))
                for deal_id, (deal, _chain) in zip(ids, self.new_deals, strict=True)
            ),
        )
        if self.changed_deals:
            lock_unchanged(Deal, {change.deal_id: change.version for change in self.changed_deals})
            update_rows(
                Deal,
                [Deal._meta.get_field(name).column for name in UPDATED_FIELDS],
                (
                    (change.deal_id, *(_db_value(change.values[name]) for name in UPDATED_FIELDS))
                    for change in self.changed_deals
                ),
                extra_set=f"version = {Deal._meta.db_table}.version + 1, updated_at = now()",
            )
        moves = [
            (change.deal_id, *change.move[:2], None, change.move[2]) for change in self.changed_deals if change.move
        ]
        with connection.cursor() as cursor, stage_history.bulk_load(cursor, [*ids, *(move[0] for move in moves)]):
            copy_rows(StageChange, STAGE_CHANGE_COLUMNS, itertools.chain(self._entries(ids), moves))
        audit.copy_entries(
            model=Deal,
            actor=self.actor,
            entries=itertools.chain(
                (
                    (
                        deal_id,
                        AuditAction.CREATED,
                        deal[TITLE],
                        audit.created_changes(zip(DEAL_FIELD_NAMES, deal, strict=True)),
                    )
                    for deal_id, (deal, _chain) in zip(ids, self.new_deals, strict=True)
                ),
                (
                    (
                        change.deal_id,
                        AuditAction.STAGE_CHANGED if change.move else AuditAction.UPDATED,
                        change.values["title"] or change.title,
                        audit.updated_changes(change.before, change.values),
                    )
                    for change in self.changed_deals
                ),
            ),
        )
        # A new deal with a dated path was inserted in its current stage: its field history is rebuilt from the
        # stage changes (and the trail) just written, as a `stage_changes` import would.
        travelled = [deal_id for deal_id, (_deal, entries) in zip(ids, self.new_deals, strict=True) if len(entries) > 1]
        if travelled:
            with connection.cursor() as cursor:
                field_history.rebuild(cursor, travelled)

    def _entries(self, ids: list[int]) -> Iterator[tuple]:
        """The StageChange rows of the new deals: each entry moves from the stage before (none at creation)."""
        for deal_id, (_deal, entries) in zip(ids, self.new_deals, strict=True):
            previous = None
            for stage_pk, at in entries:
                yield (deal_id, previous, stage_pk, None, at)
                previous = stage_pk


def _db_value(value):
    return pk_of(value) if isinstance(value, New) else value


def _same(existing: dict, name: str, value) -> bool:
    field = Deal._meta.get_field(name)
    return existing[field.attname] == _db_value(value)


def _column_values(deal: dict) -> tuple:
    return tuple(deal[f.name] if f.name in deal else f.get_default() for f in _WRITTEN_FIELDS)
