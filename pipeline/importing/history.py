"""Importing full stage histories (`stage_changes`): every stage a deal entered, moves back included.

Each row is one entry (deal external id, stage, changed_at, optional changed_by). The rows of a deal, in time
order (ties in file order), REPLACE that deal's recorded history: a history file is the truth for the deals it
names, so importing it twice changes nothing, and a deal imported with dates from the deals file can then be given
its complete path. The deal's stamps follow the history as a move would set them: `created_at` is the first entry,
`stage_entered_at` the last, and `closed_at` the last for a won or lost deal. The history must end in the deal's
current stage (import the deals file first); the same stage twice in a row is refused, as a move to the stage a
deal is in records nothing.
"""

from collections import defaultdict
from datetime import datetime
from itertools import pairwise

from django.db import connection

from accounts.models import AuditAction
from pipeline import field_history, stage_history
from pipeline.importing import audit
from pipeline.importing.base import KindImporter, Problem, Row
from pipeline.importing.references import New, Ref, StageRow, Stages, deals_by_reference, pk_of, referenced_deal
from pipeline.importing.writing import copy_rows, lock_unchanged, update_rows
from pipeline.models import Deal, StageChange, StageKind
from pipeline.selectors import editable_deals

DELETE_BATCH = 10_000
STAMPED = ("created_at", "stage_entered_at", "closed_at")


class StageChangeImporter(KindImporter):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stages = Stages()
        self.deals: dict[str, dict] = {}
        # deal id → [(changed_at, row number, stage, changed_by)]
        self.entries: dict[int, list[tuple[datetime, int, StageRow, Ref | None]]] = defaultdict(list)
        self.recorded_counts: dict[int, int] = {}  # deal id → how many stage changes it had before

    def check(self, chunk: list[tuple[int, dict[str, str]]]) -> list[Problem]:
        wanted = {cells["deal"].strip() for _, cells in chunk if cells.get("deal", "").strip()} - set(self.deals)
        self.deals.update(
            deals_by_reference(
                self.scoped(Deal, editable_deals),
                wanted,
                "id",
                "external_id",
                "pipeline_id",
                "stage_id",
                "status",
                "version",
                "created_at",
                "stage_entered_at",
                "closed_at",
                "title",
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
        changed_at = row.datetime("changed_at")
        if changed_at is None and not row.problems:
            row.fail("changed_at", "The time of the change is required.")
        changed_by = row.reference("changed_by", self.owners.resolve)
        if deal is None:
            return
        stage = row.reference("stage", self.stages.stage, self.stages.pipeline_by_pk[deal["pipeline_id"]])
        if stage is None and not row.mapped("stage"):
            row.fail("stage", "The stage is required.")
        if not row.problems:
            self.entries[deal["id"]].append((changed_at, row.number, stage, changed_by))

    def finish(self) -> list[Problem]:
        problems = []
        deals_by_id = {deal["id"]: deal for deal in self.deals.values()}
        for deal_id, entries in self.entries.items():
            entries.sort(key=lambda entry: (entry[0], entry[1]))
            for previous, entry in pairwise(entries):
                if previous[2] == entry[2]:
                    problems.append(
                        Problem(
                            entry[1], "stage", entry[2].name, f"The deal is already in this stage (row {previous[1]})."
                        )
                    )
            current = self.stages.by_pk[deals_by_id[deal_id]["stage_id"]]
            last = entries[-1]
            if last[2] != current:
                problems.append(
                    Problem(
                        last[1],
                        "stage",
                        last[2].name,
                        f"The deal's history must end in its current stage “{current.name}” (the latest change here).",
                    )
                )
        if not problems:
            self._drop_unchanged(deals_by_id)
        self.created = sum(len(entries) for entries in self.entries.values())
        self.updated = len(self.entries)
        return problems

    def _drop_unchanged(self, deals_by_id: dict[int, dict]) -> None:
        """Forget the deals whose recorded history and stamps are already what the file says (a re-import)."""
        deal_ids = list(self.entries)
        for start in range(0, len(deal_ids), DELETE_BATCH):
            batch = deal_ids[start : start + DELETE_BATCH]
            recorded = defaultdict(list)
            for deal_id, *change in (
                StageChange.objects.filter(deal_id__in=batch)
                .order_by("deal_id", "changed_at", "id")
                .values_list("deal_id", "from_stage_id", "to_stage_id", "changed_by_id", "changed_at")
            ):
                recorded[deal_id].append(tuple(change))
            for deal_id in batch:
                self.recorded_counts[deal_id] = len(recorded[deal_id])
                changes = _changes(self.entries[deal_id])
                if any(isinstance(change[2], New) for change in changes):
                    continue  # made by an owner the import creates: new by definition
                deal = deals_by_id[deal_id]
                if recorded[deal_id] == changes and _stamps(self.entries[deal_id]) == (
                    deal["created_at"],
                    deal["stage_entered_at"],
                    deal["closed_at"],
                ):
                    del self.entries[deal_id]
                    self.unchanged += 1

    def write(self) -> None:
        self.owners.write()
        deal_ids = list(self.entries)
        versions = {deal["id"]: deal["version"] for deal in self.deals.values()}
        lock_unchanged(Deal, {deal_id: versions[deal_id] for deal_id in deal_ids})
        with connection.cursor() as cursor:
            for start in range(0, len(deal_ids), DELETE_BATCH):
                cursor.execute(
                    f"DELETE FROM {StageChange._meta.db_table} WHERE deal_id = ANY(%s)",
                    [deal_ids[start : start + DELETE_BATCH]],
                )
        with connection.cursor() as cursor, stage_history.bulk_load(cursor, deal_ids):
            copy_rows(
                StageChange,
                ["deal_id", "from_stage_id", "to_stage_id", "changed_by_id", "changed_at"],
                (
                    (deal_id, from_stage, to_stage, pk_of(changed_by), changed_at)
                    for deal_id, entries in self.entries.items()
                    for from_stage, to_stage, changed_by, changed_at in _changes(entries)
                ),
            )
        update_rows(
            Deal,
            list(STAMPED),
            ((deal_id, *_stamps(entries)) for deal_id, entries in self.entries.items()),
            extra_set=f"version = {Deal._meta.db_table}.version + 1, updated_at = now()",
        )
        # The deals' stage history was replaced: so is their field history, reconstructed from it and the trail.
        with connection.cursor() as cursor:
            field_history.rebuild(cursor, deal_ids)
        deals_by_id = {deal["id"]: deal for deal in self.deals.values()}
        audit.copy_entries(
            model=Deal,
            actor=self.actor,
            entries=(
                (
                    deal_id,
                    AuditAction.UPDATED,
                    deals_by_id[deal_id]["title"],
                    self._audit(deals_by_id[deal_id], entries),
                )
                for deal_id, entries in self.entries.items()
            ),
        )

    def _audit(self, deal: dict, entries: list) -> dict[str, list]:
        """The stamps the history changed, and the number of stage changes before and after."""
        changes = audit.updated_changes(deal, dict(zip(STAMPED, _stamps(entries), strict=True)))
        changes["stage_changes"] = [self.recorded_counts.get(deal["id"], 0), len(entries)]
        return changes


def _changes(entries: list[tuple[datetime, int, StageRow, Ref | None]]) -> list[tuple]:
    """(from stage pk, to stage pk, changed_by, changed_at) for each entry, in order."""
    changes, previous = [], None
    for changed_at, _row, stage, changed_by in entries:
        changes.append((previous, stage.pk, changed_by, changed_at))
        previous = stage.pk
    return changes


def _stamps(entries: list[tuple[datetime, int, StageRow, Ref | None]]) -> tuple:
    """The deal's created_at, stage_entered_at and closed_at as its history sets them."""
    first, last = entries[0][0], entries[-1][0]
    return first, last, (last if entries[-1][2].kind != StageKind.OPEN else None)
