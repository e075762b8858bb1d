"""Starting an import from an uploaded file, and previewing a file before that: what the API and the upload page share.

A file of at most `IMPORT_INLINE_MAX_SIZE` bytes is imported inside the request (the answer carries the finished
job); a larger one is queued for a Celery worker, which keeps the job's progress counters up to date.
"""

from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from pipeline.importing import reading
from pipeline.importing.fields import FIELDS, suggest_mapping
from pipeline.importing.report import ImportOptions, RowError
from pipeline.importing.runner import run_import
from pipeline.models import ImportJob, ImportStatus

QUEUE_UNAVAILABLE = (
    "The task queue is unavailable, so the import could not start and nothing was written: start it again in a moment."
)

PREVIEW_ROWS = 5


@dataclass(frozen=True)
class Preview:
    header: list[str]
    encoding: str
    delimiter: str
    estimated_rows: int
    rows: list[list[str]]
    suggested_mapping: dict[str, str]


def field_names(kind: str) -> list[str]:
    """The fields a column of a `kind` file may be mapped to (deals also take `entered_at:<stage name>`)."""
    return [spec.name for spec in FIELDS[kind]]


def preview_file(*, kind: str, stream: BinaryIO, encoding: str | None = None) -> Preview:
    """The header, the first rows and the mapping suggested for them; raises `FileProblem` for an unreadable file."""
    shape = reading.inspect(stream, encoding=encoding)
    header: list[str] | None = None
    rows: list[list[str]] = []
    for _row, cells in reading.rows(stream, shape):
        if cells is None:
            if header is None:
                raise reading.FileProblem("The header line is too long or is not valid CSV.")
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            continue
        rows.append([cell[:200] for cell in cells])
        if len(rows) == PREVIEW_ROWS:
            break
    if header is None:
        raise reading.FileProblem("The file is empty.")
    return Preview(
        header=header,
        encoding=shape.encoding,
        delimiter=shape.delimiter,
        estimated_rows=max(shape.line_count - 1, 0),
        rows=rows,
        suggested_mapping=suggest_mapping(kind, header),
    )


def start_import_job(
    *,
    actor: User,
    kind: str,
    upload: UploadedFile,
    mapping: dict[str, str] | None,
    options: ImportOptions,
    dry_run: bool,
) -> ImportJob:
    """Store `upload` as a new job of `actor` and run it: now when the file is small, else on a worker.

    The import runs as `actor`: it changes only what they may change. Whether it already ran is in `job.status`.
    """
    job = ImportJob(
        kind=kind,
        created_by=actor,
        original_name=(upload.name or "")[:255],
        mapping=mapping or {},
        options=options.to_json(),
        dry_run=dry_run,
    )
    job.file.save(upload.name or "import.csv", upload, save=False)
    job.save()
    if upload.size <= settings.IMPORT_INLINE_MAX_SIZE:
        run_import(job)
        job.refresh_from_db()
    else:
        from pipeline.tasks import queue_import_job  # the task module imports this package

        with transaction.atomic():
            queue_import_job(job)
        job.refresh_from_db()  # failed already if it could not be queued
    return job


def values_in_columns(
    *,
    stream: BinaryIO,
    columns: dict[str, str],
    encoding: str | None = None,
    max_rows: int = 5000,
    max_values: int = 50,
) -> dict[str, list[str]]:
    """field → the distinct non-empty values of its column (`columns`: field → CSV column), from the first rows."""
    shape = reading.inspect(stream, encoding=encoding)
    found: dict[str, dict[str, None]] = {field: {} for field in columns}
    index: dict[str, int] = {}
    for row, cells in reading.rows(stream, shape):
        if cells is None:
            continue
        if not index:
            header = [cell.strip() for cell in cells]
            index = {field: header.index(column) for field, column in columns.items() if column in header}
            if not index:
                break
            continue
        for field, position in index.items():
            value = cells[position].strip() if position < len(cells) else ""
            if value and len(found[field]) < max_values:
                found[field].setdefault(value, None)
        if row > max_rows:
            break
    return {field: list(values) for field, values in found.items() if values}


def start_job_from_stored_file(
    *,
    actor: User,
    kind: str,
    stored_name: str,
    original_name: str,
    mapping: dict[str, str],
    options: ImportOptions,
    dry_run: bool,
    inline: bool,
) -> ImportJob:
    """A job on a file already in storage (the upload page stores the file once and runs it several times)."""
    job = ImportJob.objects.create(
        kind=kind,
        created_by=actor,
        file=stored_name,
        original_name=original_name[:255],
        mapping=mapping,
        options=options.to_json(),
        dry_run=dry_run,
    )
    if inline:
        run_import(job)
        job.refresh_from_db()
    else:
        from pipeline.tasks import queue_import_job  # the task module imports this package

        with transaction.atomic():
            queue_import_job(job)
        job.refresh_from_db()  # failed already if it could not be queued
    return job


def fail_unqueued_job(job_id: int) -> None:
    """Mark a pending job that could not be queued (the broker is away) as failed, with a message that says so.

    Better than a job pending for ever: no worker will hear of it, and the user can start it again.
    """
    ImportJob.objects.filter(pk=job_id, status=ImportStatus.PENDING).update(
        status=ImportStatus.FAILED,
        error_count=1,
        errors=[RowError(0, "", "", QUEUE_UNAVAILABLE).to_json()],
        finished_at=timezone.now(),
    )
