"""The import itself, shared by every door (management command, Celery task, API, upload page).

`import_csv` checks every row first, in chunks and without writing (the progress callback reports how far it
got), then, when no row was refused and it is not a dry run, writes everything in one transaction. So an import
either loads the whole file or nothing, and always returns the per-row report.
"""

import time
from collections.abc import Callable
from typing import BinaryIO

from django.db import DatabaseError, transaction
from django.utils import timezone

from accounts.models import User
from pipeline import field_history, signals
from pipeline.exporting import restore_formula
from pipeline.importing import reading
from pipeline.importing.base import Problem
from pipeline.importing.customers import ContactImporter, OrganizationImporter
from pipeline.importing.deals import DealImporter
from pipeline.importing.field_changes import FieldChangeImporter
from pipeline.importing.fields import REQUIRED, is_known_field, suggest_mapping
from pipeline.importing.history import StageChangeImporter
from pipeline.importing.leads import LeadImporter
from pipeline.importing.report import ImportOptions, ImportResult, RowError
from pipeline.importing.writing import ChangedMeanwhile
from pipeline.models import ImportJob, ImportKind, ImportStatus
from pipeline.services import _send_on_commit

CHUNK_ROWS = 2000
# How often a running job saves its progress.
PROGRESS_SECONDS = 0.5
# At most this many refused rows are kept on an ImportJob (the returned result has them all).
STORED_ERRORS = 1000

IMPORTERS = {
    ImportKind.DEALS: DealImporter,
    ImportKind.STAGE_CHANGES: StageChangeImporter,
    ImportKind.FIELD_CHANGES: FieldChangeImporter,
    ImportKind.LEADS: LeadImporter,
    ImportKind.ORGANIZATIONS: OrganizationImporter,
    ImportKind.CONTACTS: ContactImporter,
}

Progress = Callable[[int, int], None]  # (rows checked, estimated rows in file)

LINE_TOO_LONG = (
    f"The line is longer than {reading.MAX_LINE_CHARS:,} characters or is not valid CSV (an unclosed quote?)."
)


def read_header(stream: BinaryIO, *, encoding: str | None = None) -> list[str]:
    """The header row of a CSV file (for a mapping form); raises `reading.FileProblem` for an unreadable file."""
    shape = reading.inspect(stream, encoding=encoding)
    for _row, cells in reading.rows(stream, shape):
        if cells is None:
            raise reading.FileProblem("The header line is too long or is not valid CSV.")
        return [cell.strip() for cell in cells]
    raise reading.FileProblem("The file is empty.")


def import_csv(
    *,
    kind: str,
    stream: BinaryIO,
    mapping: dict[str, str] | None = None,
    options: ImportOptions | None = None,
    dry_run: bool = False,
    actor: User | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import the CSV `stream` (binary, seekable) as records of `kind`; return the counts and the per-row report.

    `mapping` maps CSV columns to fields (default: `suggest_mapping` of the header); unmapped columns are ignored.
    `actor` owns deals whose owner cell is empty. Nothing is written when any row is refused, or in a dry run.
    """
    if kind not in IMPORTERS:
        raise ValueError(f"Unknown import kind {kind!r}; one of {', '.join(IMPORTERS)}.")
    options = options or ImportOptions()
    started = time.monotonic()
    result = ImportResult(kind=kind, dry_run=dry_run)
    try:
        _run(
            result,
            stream=stream,
            mapping=mapping,
            options=options,
            actor=actor,
            progress=progress or (lambda done, total: None),
        )
    except reading.FileProblem as problem:
        result.errors.append(RowError(0, "", "", str(problem)))
    result.seconds = time.monotonic() - started
    return result


def _run(
    result: ImportResult,
    *,
    stream: BinaryIO,
    mapping: dict[str, str] | None,
    options: ImportOptions,
    actor: User | None,
    progress: Progress,
) -> None:
    kind, dry_run = result.kind, result.dry_run
    shape = reading.inspect(stream, encoding=options.encoding)
    estimated_rows = max(shape.line_count - 1, 0)
    rows = reading.rows(stream, shape)
    first = next(rows, None)
    if first is None:
        raise reading.FileProblem("The file is empty.")
    if first[1] is None:
        raise reading.FileProblem("The header line is too long or is not valid CSV.")
    header = [cell.strip() for cell in first[1]]
    # A column mapped to "" is ignored, like an unmapped one.
    mapping = suggest_mapping(kind, header) if mapping is None else {c: f for c, f in mapping.items() if f}
    columns = _check_mapping(result, kind, header, mapping)
    if result.errors:
        return
    result.ignored_columns = [column for column in header if column and column not in mapping]
    column_of = {field: column for column, field in mapping.items()}

    importer = IMPORTERS[kind](fields=set(columns), options=options, actor=actor, now=timezone.now())

    def report(problems: list[Problem]) -> None:
        for problem in problems:
            column = column_of.get(problem.field, problem.field)
            result.errors.append(RowError(problem.row, column, problem.value[:200], problem.message))

    chunk: list[tuple[int, dict[str, str]]] = []
    for row_number, cells in rows:
        result.rows += 1
        if cells is None:
            result.errors.append(RowError(row_number, "", "", LINE_TOO_LONG))
            continue
        if len(cells) > len(header) and any(cell.strip() for cell in cells[len(header) :]):
            message = (
                f"The row has {len(cells)} cells but the header has {len(header)} columns "
                "(a stray delimiter or an unquoted comma?)."
            )
            result.errors.append(RowError(row_number, "", "", message))
            continue
        # A cell our exports neutralised (`'=1+1`) is read as the text it stands for (`=1+1`), in every field: the
        # exports prefix only text, and a number or date with an apostrophe before it is no number or date anyway.
        cells = [restore_formula(cell) for cell in cells]
        chunk.append((row_number, {field: cells[i] if i < len(cells) else "" for field, i in columns.items()}))
        if len(chunk) == CHUNK_ROWS:
            report(importer.check(chunk))
            chunk = []
            progress(result.rows, max(estimated_rows, result.rows))
    if chunk:
        report(importer.check(chunk))
    report(importer.finish())
    progress(result.rows, result.rows)
    if not result.rows:
        result.errors.append(RowError(0, "", "", "The file has a header but no rows."))
    result.created, result.updated, result.unchanged = importer.counts()
    result.new_references = importer.new_references()
    result.errors.sort(key=lambda error: error.row)
    if result.errors or dry_run:
        return
    try:
        with transaction.atomic(), field_history.acting_as(actor.pk if actor is not None else None):
            importer.write()
            # One event for the whole file (a per-record event for 100,000 deals would flood webhooks and recomputes).
            _send_on_commit(
                signals.records_imported, actor=actor, kind=kind, created=result.created, updated=result.updated
            )
    except ChangedMeanwhile as error:
        result.errors.append(RowError(0, "", "", str(error)))
    except DatabaseError as error:
        # A constraint the checks above did not foresee, or a concurrent write: the transaction rolled back.
        result.errors.append(RowError(0, "", "", f"The database refused the import, nothing was written: {error}"))


def _check_mapping(result: ImportResult, kind: str, header: list[str], mapping: dict[str, str]) -> dict[str, int]:
    """Field → column index; the problems with the mapping go into `result.errors` (row 1, the header)."""
    columns: dict[str, int] = {}
    for column, field in mapping.items():
        if header.count(column) > 1:
            result.errors.append(RowError(1, column, "", f"The file has {header.count(column)} columns “{column}”."))
        elif column not in header:
            result.errors.append(RowError(1, column, "", f"The mapping names a column “{column}” the file lacks."))
        elif not is_known_field(kind, field):
            result.errors.append(RowError(1, column, field, f"“{field}” is not a field of {kind} imports."))
        elif field in columns:
            result.errors.append(RowError(1, column, field, f"Two columns are mapped to “{field}”."))
        else:
            columns[field] = header.index(column)
    for alternatives in REQUIRED[kind]:
        if not any(field in columns for field in alternatives):
            names = (
                ", ".join(alternatives[:-1]) + " or " + alternatives[-1] if len(alternatives) > 1 else alternatives[0]
            )
            result.errors.append(
                RowError(1, "", "", f"A column for {names} is required (map one with CSVCOL={alternatives[0]}).")
            )
    return columns


def run_import(job: ImportJob) -> ImportResult:
    """Run `job` (its file, mapping and options), keeping its status, progress counters and report up to date.

    Progress is saved outside the import's transaction, so a page polling the job sees it move.
    """
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportStatus.RUNNING, started_at=timezone.now(), processed_rows=0, errors=[], error_count=0
    )
    last_saved = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last_saved[0] >= PROGRESS_SECONDS or done == total:
            last_saved[0] = time.monotonic()
            ImportJob.objects.filter(pk=job.pk).update(processed_rows=done, total_rows=total)

    try:
        with _open_source(job) as stream:
            result = import_csv(
                kind=job.kind,
                stream=stream,
                mapping=job.mapping or None,
                options=ImportOptions.from_json(job.options or {}),
                dry_run=job.dry_run,
                actor=job.created_by,
                progress=progress,
            )
    except OSError as error:  # the upload or the server file is gone or unreadable
        result = ImportResult(kind=job.kind, dry_run=job.dry_run)
        result.errors.append(RowError(0, "", "", f"The file cannot be read: {error.strerror or error}."))
    job.status = ImportStatus.SUCCEEDED if result.ok else ImportStatus.FAILED
    job.processed_rows = job.total_rows = result.rows
    job.created_count, job.updated_count = result.created, result.updated
    job.error_count = len(result.errors)
    job.errors = [error.to_json() for error in result.errors[:STORED_ERRORS]]
    job.finished_at = timezone.now()
    job.save(
        update_fields=[
            "status",
            "processed_rows",
            "total_rows",
            "created_count",
            "updated_count",
            "error_count",
            "errors",
            "finished_at",
        ]
    )
    return result


def _open_source(job: ImportJob):
    if job.file:
        job.file.open("rb")
        return job.file.file
    return open(job.source_path, "rb")  # closed by the caller's `with`
