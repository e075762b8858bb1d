"""What an import says back: its options, the refused rows, the counts; and the report as CSV."""

import csv
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from pipeline.exporting import neutralise_formula
from pipeline.importing.values import DATE_ORDERS


@dataclass(frozen=True)
class ImportOptions:
    """How to read a file. `value_map` maps a field's file values to ours: {"stage": {"Engaging": "Qualification"}}.

    `create_missing` creates unknown organizations, contacts, lost reasons, and owners (as inactive users).
    `encoding` is detected when None (UTF-8, UTF-8 with BOM, else Windows-1252/Latin-1).
    """

    date_order: str | None = None
    create_missing: bool = False
    value_map: dict[str, dict[str, str]] = field(default_factory=dict)
    encoding: str | None = None

    def __post_init__(self) -> None:
        if self.date_order not in (None, *DATE_ORDERS):
            raise ValueError(f"date_order must be one of {DATE_ORDERS} or None")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ImportOptions":
        return cls(
            **{key: data[key] for key in ("date_order", "create_missing", "value_map", "encoding") if key in data}
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RowError:
    """Row 1 is the header, as a spreadsheet shows it; row 0 means the file as a whole."""

    row: int
    column: str
    value: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImportResult:
    kind: str
    dry_run: bool
    rows: int = 0
    created: int = 0  # in a dry run: would be created
    updated: int = 0  # in a dry run: would be updated
    unchanged: int = 0
    new_references: dict[str, int] = field(default_factory=dict)  # e.g. {"owners": 2}: created (or would be)
    ignored_columns: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def error_rows(self) -> int:
        return len({error.row for error in self.errors})

    def summary(self) -> str:
        verb = "would be" if self.dry_run else "were"
        if not self.ok:
            return f"{self.error_rows} of {self.rows} rows refused ({len(self.errors)} problems); nothing was written."
        parts = [f"{self.rows} rows: {self.created} {self.kind} {verb} created, {self.updated} updated"]
        parts.append(f"{self.unchanged} unchanged")
        for noun, count in sorted(self.new_references.items()):
            parts.append(f"{count} new {noun}")
        return ", ".join(parts) + f" ({self.seconds:.1f} s)."


def write_report_csv(errors: list[RowError], out: TextIO) -> None:
    """The per-row report as CSV (row, column, value, message), e.g. for a download next to the upload.

    Columns, values and messages come from the uploaded file: they are neutralised as the exports are.
    """
    writer = csv.writer(out)
    writer.writerow(["row", "column", "value", "message"])
    for error in errors:
        writer.writerow([error.row, *(neutralise_formula(text) for text in (error.column, error.value, error.message))])
