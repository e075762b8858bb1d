"""What every kind of import shares: reading a row's cells into typed values, and collecting the problems."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.models import User
from accounts.selectors import owners_editable_by
from pipeline.importing import values
from pipeline.importing.references import Owners, ValueMap
from pipeline.importing.report import ImportOptions
from pipeline.importing.values import CellError


@dataclass(frozen=True)
class Problem:
    row: int
    field: str
    value: str
    message: str


class Row:
    """One row's cells by field, read into values; every unreadable cell becomes a Problem (all are reported)."""

    def __init__(self, number: int, cells: dict[str, str], importer: "KindImporter"):
        self.number = number
        self.cells = cells
        self.importer = importer
        self.problems: list[Problem] = []

    def has(self, field: str) -> bool:
        return field in self.cells

    def raw(self, field: str) -> str:
        return self.cells.get(field, "")

    def text(self, field: str, *, max_length: int, default: str = "") -> str:
        cell = self.cells.get(field)
        if values.is_empty(cell):
            return default
        text = cell.strip()
        if len(text) > max_length:
            self.fail(field, f"At most {max_length} characters (this has {len(text)}).")
            return default
        return text

    def _parse(self, field: str, parse, *args, **kwargs) -> Any:
        cell = self.cells.get(field)
        if values.is_empty(cell):
            return None
        try:
            return parse(cell, *args, **kwargs)
        except CellError as error:
            self.fail(field, str(error))
            return None

    def date(self, field: str) -> date | None:
        return self._parse(field, values.parse_date, date_order=self.importer.options.date_order)

    def datetime(self, field: str) -> datetime | None:
        return self._parse(field, values.parse_datetime, date_order=self.importer.options.date_order)

    def amount(self, field: str) -> Decimal | None:
        return self._parse(field, values.parse_amount)

    def integer(self, field: str, *, minimum: int, maximum: int) -> int | None:
        return self._parse(field, values.parse_integer, minimum=minimum, maximum=maximum)

    def email(self, field: str) -> str:
        email = self.text(field, max_length=254)
        if email:
            try:
                validate_email(email)
            except ValidationError:
                self.fail(field, f"“{email}” is not an email address.")
                return ""
        return email

    def mapped(self, field: str) -> str:
        """The cell after the import's value mapping (empty string for an empty cell)."""
        cell = self.cells.get(field)
        return "" if values.is_empty(cell) else self.importer.value_map(field, cell)

    def reference(self, field: str, resolve, *args, **kwargs) -> Any:
        value = self.mapped(field)
        if not value:
            return None
        try:
            return resolve(value, *args, **kwargs)
        except CellError as error:
            self.fail(field, str(error))
            return None

    def fail(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.number, field, self.cells.get(field, ""), message))


class KindImporter:
    """Checks rows a chunk at a time (`check`), then cross-row rules (`finish`), then writes (`write`).

    `check` and `finish` only read the database; `write` runs inside the import's transaction.
    """

    def __init__(self, *, fields: set[str], options: ImportOptions, actor: User | None, now: datetime):
        self.fields = fields
        self.options = options
        self.actor = actor
        self.now = now
        self.value_map = ValueMap(options.value_map)
        # Whose records the actor may change: their own, their teams' (managers), or anyone's (None: an admin, or an
        # operator running the command without --user). Records outside it are neither updated nor given to.
        editable = owners_editable_by(actor) if actor is not None else None
        self.editable_owners = None if editable is None else {row["pk"] for row in editable}
        self.owners = Owners(create_missing=options.create_missing, allowed=self.editable_owners)
        self.seen_external_ids: dict[str, int] = {}
        self.created = self.updated = self.unchanged = 0

    def check(self, chunk: list[tuple[int, dict[str, str]]]) -> list[Problem]:
        raise NotImplementedError

    def finish(self) -> list[Problem]:
        return []

    def counts(self) -> tuple[int, int, int]:
        return self.created, self.updated, self.unchanged

    def new_references(self) -> dict[str, int]:
        return {"owners": len(self.owners.new)} if self.owners.new else {}

    def write(self) -> None:
        raise NotImplementedError

    def may_change(self, owner_id: int | None) -> bool:
        return self.editable_owners is None or owner_id in self.editable_owners

    def scoped(self, model, selector):
        """`model`'s records the actor may work with, through `selector` (all of them without an actor)."""
        return model.objects.all() if self.actor is None else selector(self.actor)

    def external_id(self, row: Row) -> str | None:
        """The row's external id, refused when an earlier row of the file has the same one."""
        external_id = row.text("external_id", max_length=100) or None
        if external_id:
            earlier = self.seen_external_ids.setdefault(external_id, row.number)
            if earlier != row.number:
                row.fail("external_id", f"Row {earlier} has the same external id.")
        return external_id
