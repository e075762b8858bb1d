"""Celery entry points of the pipeline: thin, idempotent, calling the functions that do the work."""

import logging

from celery import shared_task
from django.db import connection, transaction

from pipeline.importing import run_import
from pipeline.importing.jobs import fail_unqueued_job
from pipeline.models import ImportJob, ImportStatus

logger = logging.getLogger(__name__)

# First key of the PostgreSQL advisory locks that say "a worker is running this import job".
IMPORT_LOCK_CLASS = 6_001


@shared_task(name="pipeline.run_import_job", acks_late=True)
def run_import_job(job_id: int) -> str:
    """Run the import job `job_id` once: a finished job, or one another worker is running, is left alone.

    A job left `running` by a worker that died is run again when the task is redelivered: its import wrote
    nothing (it is one transaction), and the advisory lock its worker held went away with its connection.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [IMPORT_LOCK_CLASS, job_id])
        if not cursor.fetchone()[0]:
            return "running elsewhere"
    try:
        job = ImportJob.objects.filter(pk=job_id).first()
        if job is None:
            return "missing"
        if job.status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED):
            return job.status
        return ImportStatus.SUCCEEDED if run_import(job).ok else ImportStatus.FAILED
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [IMPORT_LOCK_CLASS, job_id])


def queue_import_job(job: ImportJob) -> None:
    """Queue `job` for a worker once the transaction that created it commits (the API's and the page's door).

    With the broker away the job fails at once with a message that says so, instead of the request failing with a
    500 after its commit and the job waiting for a worker that will never hear of it.
    """
    transaction.on_commit(lambda: _send_import_job(job.pk))


def _send_import_job(job_id: int) -> None:
    try:
        run_import_job.delay(job_id)
    except Exception:  # any broker failure: the job says so, the request goes on
        logger.warning("could not queue import job %s: the task queue is unavailable", job_id, exc_info=True)
        fail_unqueued_job(job_id)
