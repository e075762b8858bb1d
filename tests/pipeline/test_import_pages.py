"""The Import page through the Django test client: upload, mapping, check, report, import with progress; and the
Export links of the board and the leads list."""

import csv
import io
from urllib.parse import urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from pipeline.models import Deal, ImportJob, ImportStatus
from pipeline.tasks import run_import_job
from tests.factories import make_deal

pytestmark = pytest.mark.django_db

HEADER = "Opportunity ID,Deal,Phase,Sales Agent,Close Value\n"
GOOD = HEADER + "op-1,Big one,Qualification,rep,1000\nop-2,Small one,Qualification,rep,50\n"
BAD = GOOD.replace(",50\n", ",-50\n")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def rep_client(client, org):
    client.force_login(org.rep)
    return client


def upload(client, text: str, kind: str = "deals"):
    file = SimpleUploadedFile("deals.csv", text.encode(), content_type="text/csv")
    return client.post(reverse("pipeline:imports"), {"file": file, "kind": kind})


def mapping_url(client, text: str) -> str:
    response = upload(client, text)
    assert response.status_code == 302
    return response["Location"]


def map_and_submit(client, url: str, action: str = "dry_run", **overrides):
    page = client.get(url)
    form = page.context["form"]
    data = {name: form[name].value() or "" for name in form.fields if name != "create_missing"}
    data.update(overrides, action=action)
    return client.post(url, data)


def test_the_import_page_is_in_the_navigation_and_lists_past_imports(rep_client, pipeline):
    response = rep_client.get(reverse("home"), follow=True)
    assert reverse("pipeline:imports") in response.content.decode()

    page = rep_client.get(reverse("pipeline:imports"))
    assert page.status_code == 200
    assert "No imports yet." in page.content.decode()


def test_the_mapping_page_suggests_fields_and_lets_one_be_changed(rep_client, pipeline):
    url = mapping_url(rep_client, GOOD)
    page = rep_client.get(url)

    assert page.status_code == 200
    form = page.context["form"]
    assert [form[f"column_{i}"].value() for i in range(5)] == ["external_id", "title", "", "owner", "amount"]
    assert "Phase" in page.content.decode() and "Big one" in page.content.decode()

    response = map_and_submit(rep_client, url, column_2="stage")
    job = ImportJob.objects.get()
    assert response["Location"] == reverse("pipeline:import_job", args=[job.pk])
    assert (job.dry_run, job.status, job.mapping["Phase"]) == (True, "succeeded", "stage")
    assert not Deal.objects.exists()


def test_unknown_stages_in_the_file_can_be_mapped_to_ours(rep_client, pipeline):
    text = GOOD.replace("Qualification", "Talking")
    url = mapping_url(rep_client, text.replace("Phase", "Stage"))
    form = rep_client.get(url).context["form"]
    assert [(field, value) for field, value, _name in form.value_rows] == [("stage", "Talking")]

    map_and_submit(rep_client, url, action="dry_run", value_stage_0="Qualification")

    assert ImportJob.objects.get().status == "succeeded"


def test_a_check_with_a_bad_row_shows_it_and_offers_the_report_and_a_new_upload(rep_client, pipeline):
    url = mapping_url(rep_client, BAD)
    job_url = map_and_submit(rep_client, url, column_2="stage")["Location"]

    page = rep_client.get(job_url).content.decode()
    assert "nothing was written" in page
    assert "Close Value" in page and "-50" in page
    job = ImportJob.objects.get()
    report = rep_client.get(reverse("pipeline:import_job_report", args=[job.pk]))
    rows = list(csv.reader(io.StringIO(report.content.decode())))
    assert rows[1][:3] == ["3", "Close Value", "-50"]
    assert "Upload the corrected file" in page

    # The corrected file gets the mapping of the check before it (Phase → stage).
    form = rep_client.get(mapping_url(rep_client, GOOD)).context["form"]
    assert form["column_2"].value() == "stage"


def test_a_successful_check_is_imported_by_a_worker_with_progress(
    rep_client, pipeline, django_capture_on_commit_callbacks
):
    url = mapping_url(rep_client, GOOD)
    check = ImportJob.objects.get(
        pk=urlsplit(map_and_submit(rep_client, url, column_2="stage")["Location"]).path.split("/")[2]
    )
    assert "Import" in rep_client.get(reverse("pipeline:import_job", args=[check.pk])).content.decode()

    with django_capture_on_commit_callbacks() as callbacks:
        response = rep_client.post(reverse("pipeline:import_job_run", args=[check.pk]))
    run = ImportJob.objects.exclude(pk=check.pk).get()
    assert response["Location"] == reverse("pipeline:import_job", args=[run.pk])
    assert len(callbacks) == 1  # queued for a worker
    page = rep_client.get(response["Location"]).content.decode()
    assert "<progress" in page and 'hx-trigger="every 1s"' in page

    # Once every row is checked, the write (most of a large import) says so instead of sitting at 100 %.
    ImportJob.objects.filter(pk=run.pk).update(status=ImportStatus.RUNNING, processed_rows=2, total_rows=2)
    writing = rep_client.get(reverse("pipeline:import_job_progress", args=[run.pk])).content.decode()
    assert "All 2 rows checked · writing them" in writing and 'hx-trigger="every 1s"' in writing

    run_import_job(run.pk)

    progress = rep_client.get(reverse("pipeline:import_job_progress", args=[run.pk]))
    assert progress["HX-Refresh"] == "true"
    assert "Done: 2 rows, 2 created" in rep_client.get(response["Location"]).content.decode()
    assert Deal.objects.count() == 2


def test_another_users_job_and_upload_are_not_found(rep_client, org, pipeline, client):
    url = mapping_url(rep_client, GOOD)
    map_and_submit(rep_client, url, column_2="stage")
    job = ImportJob.objects.get()
    other = Client()
    other.force_login(org.other_rep)

    assert other.get(reverse("pipeline:import_job", args=[job.pk])).status_code == 404
    assert other.get(reverse("pipeline:import_job_report", args=[job.pk])).status_code == 404
    assert other.post(reverse("pipeline:import_job_run", args=[job.pk])).status_code == 404
    assert other.get(url).status_code == 404
    assert rep_client.get(reverse("pipeline:import_mapping") + "?upload=forged").status_code == 404


def test_an_unreadable_file_says_why(rep_client):
    response = upload(rep_client, "\x00\x01")
    page = rep_client.get(response["Location"], follow=True).content.decode()

    assert "cannot be imported" in page and "not a text CSV" in page


def test_an_oversized_file_is_refused_on_the_form(rep_client, settings):
    settings.IMPORT_MAX_FILE_SIZE = 10

    response = upload(rep_client, GOOD)

    assert response.status_code == 200
    assert "larger than the 10 bytes" in response.content.decode()


def test_two_columns_for_one_field_are_refused_readably(rep_client, pipeline):
    url = mapping_url(rep_client, GOOD)

    response = map_and_submit(rep_client, url, column_1="title", column_2="title")

    assert response.status_code == 200
    assert "Two columns are mapped to “title”" in response.content.decode()


def test_import_forms_need_the_csrf_token(org):
    client = Client(enforce_csrf_checks=True)
    client.force_login(org.rep)
    file = SimpleUploadedFile("deals.csv", GOOD.encode())

    assert client.post(reverse("pipeline:imports"), {"file": file, "kind": "deals"}).status_code == 403


def test_anonymous_users_are_sent_to_log_in(client):
    assert client.get(reverse("pipeline:imports")).status_code == 302


def test_the_board_and_leads_pages_link_to_csv_exports(rep_client, org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline, title="Exported")
    board = rep_client.get(reverse("pipeline:board_pipeline", args=[pipeline.pk])).content.decode()
    export = f"/api/v1/deals/export/?pipeline={pipeline.pk}"
    assert export in board

    response = rep_client.get(export)
    assert "Exported" in b"".join(response.streaming_content).decode()
    leads = rep_client.get(reverse("pipeline:leads") + "?status=new").content.decode()
    assert "/api/v1/leads/export/?status=new" in leads
