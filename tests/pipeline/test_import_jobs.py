"""Import jobs: the command, run_import's bookkeeping, and the Celery task through a real worker process."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from pipeline.importing import run_import
from pipeline.models import Deal, ImportJob, ImportStatus, StageChange
from pipeline.tasks import run_import_job
from tests.factories import make_pipeline, make_user

GOOD = (
    "external_id,title,stage,owner,amount,created_at,closed_at\n"
    "J-1,A,Won,rep,10,2026-01-01,2026-02-01\n"
    "J-2,B,Prospecting,rep,,2026-01-03,\n"
)
BAD = "external_id,title,stage,owner,amount\nJ-1,A,Prospecting,rep,-10\nJ-2,B,Nowhere,rep,\n"


@pytest.fixture
def csv_file(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "deals.csv"
        path.write_text(text)
        return path

    return write


@pytest.mark.django_db
def test_the_command_prints_the_report_and_fails_when_rows_are_refused(pipeline, csv_file, capsys, tmp_path):
    make_user(username="rep")
    report = tmp_path / "report.csv"

    with pytest.raises(CommandError, match="2 of 2 rows refused"):
        call_command("import_csv", "deals", str(csv_file(BAD)), "--report", str(report))

    out = capsys.readouterr().out
    assert "row 2, column amount: “-10”" in out and "row 3, column stage: “Nowhere”" in out
    assert report.read_text().splitlines()[0] == "row,column,value,message"
    assert not Deal.objects.exists()
    job = ImportJob.objects.get()
    assert (job.status, job.error_count, job.processed_rows) == (ImportStatus.FAILED, 2, 2)
    assert job.errors[0] == {"row": 2, "column": "amount", "value": "-10", "message": job.errors[0]["message"]}


@pytest.mark.django_db
def test_the_command_dry_run_writes_nothing_and_the_real_run_writes_everything(pipeline, csv_file, capsys):
    make_user(username="rep")
    path = csv_file(GOOD)

    call_command("import_csv", "deals", str(path), "--dry-run")
    assert "Dry run: 2 rows: 2 deals would be created" in capsys.readouterr().out
    assert not Deal.objects.exists()

    call_command("import_csv", "deals", str(path), "--map", "amount=")  # ignore the amount column
    assert Deal.objects.count() == 2 and StageChange.objects.count() == 3
    assert not Deal.objects.filter(amount__isnull=False).exists()
    job = ImportJob.objects.latest("id")
    assert (job.status, job.created_count, job.processed_rows, job.total_rows) == (ImportStatus.SUCCEEDED, 2, 2, 2)
    assert "amount" not in job.mapping.values()


@pytest.fixture
def worker(start_celery_worker):
    return start_celery_worker()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_task_runs_a_job_in_a_real_worker_once(worker, csv_file):
    with transaction.atomic():  # the pipeline's won and lost stages are checked at commit
        make_pipeline(name="New Business", is_default=True)
    make_user(username="rep")
    job = ImportJob.objects.create(kind="deals", source_path=str(csv_file(GOOD)))

    status = run_import_job.delay(job.pk).get(timeout=90)

    assert worker.alive(), worker.log()
    assert status == ImportStatus.SUCCEEDED
    job.refresh_from_db()
    assert (job.status, job.created_count, job.processed_rows) == (ImportStatus.SUCCEEDED, 2, 2)
    assert job.started_at and job.finished_at
    assert Deal.objects.count() == 2
    # Delivered again (a retry, a duplicate): the finished job is left alone.
    assert run_import_job.delay(job.pk).get(timeout=60) == ImportStatus.SUCCEEDED
    assert Deal.objects.count() == 2 and StageChange.objects.count() == 3


@pytest.mark.django_db
def test_run_import_reads_an_uploaded_file_from_storage(pipeline, settings, tmp_path):
    from django.core.files.base import ContentFile

    settings.MEDIA_ROOT = tmp_path
    make_user(username="rep")
    job = ImportJob(kind="deals", dry_run=True)
    job.file.save("deals.csv", ContentFile(GOOD.encode()), save=False)
    job.save()

    result = run_import(job)

    assert result.ok and result.created == 2
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED and not Deal.objects.exists()


@pytest.mark.django_db
def test_admins_see_import_jobs_read_only(client):
    client.force_login(make_user(role="admin", username="root", is_staff=True, is_superuser=True))
    job = ImportJob.objects.create(
        kind="deals", original_name="pipeline.csv", status=ImportStatus.FAILED, error_count=3
    )

    listing = client.get("/admin/pipeline/importjob/")
    detail = client.get(f"/admin/pipeline/importjob/{job.pk}/change/")

    assert listing.status_code == 200 and b"pipeline.csv" in listing.content
    assert detail.status_code == 200 and b'name="_save"' not in detail.content


@pytest.mark.django_db
def test_a_job_saves_its_progress_while_rows_are_checked(pipeline, csv_file, monkeypatch):
    from pipeline.importing import runner

    make_user(username="rep")
    monkeypatch.setattr(runner, "CHUNK_ROWS", 2)
    monkeypatch.setattr(runner, "PROGRESS_SECONDS", 0)
    rows = "".join(f"P-{n},Deal {n},Prospecting,rep,,2026-01-01,\n" for n in range(5))
    job = ImportJob.objects.create(kind="deals", source_path=str(csv_file(GOOD.splitlines()[0] + "\n" + rows)))
    seen = []
    import_csv = runner.import_csv

    def observed(**kwargs):
        save_progress = kwargs["progress"]

        def progress(done, total):
            save_progress(done, total)
            seen.append(ImportJob.objects.values_list("processed_rows", "total_rows").get(pk=job.pk))

        return import_csv(**{**kwargs, "progress": progress})

    monkeypatch.setattr(runner, "import_csv", observed)
    run_import(job)

    job.refresh_from_db()
    assert seen == [(2, 5), (4, 5), (5, 5)]  # what a progress bar polling the job sees
    assert (job.processed_rows, job.total_rows, job.created_count) == (5, 5, 5)


@pytest.mark.django_db
def test_a_job_whose_file_is_gone_fails_with_a_message(pipeline, tmp_path):
    job = ImportJob.objects.create(kind="deals", source_path=str(tmp_path / "gone.csv"))

    result = run_import(job)

    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED and not result.ok
    assert job.errors[0]["message"].startswith("The file cannot be read")
