"""The `imports` resource and the CSV exports of the API: upload, dry run, report, real import, visibility, limits."""

import csv
import io

import kombu.exceptions
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from pipeline.models import Deal, ImportJob
from pipeline.tasks import run_import_job
from tests.api.test_access_matrix import ROLES, UNAUTHENTICATED, sees
from tests.factories import make_deal

pytestmark = pytest.mark.django_db

GOOD = (
    "Opportunity ID,Deal,Deal Stage,Sales Agent,Close Value,Remark\n"
    "op-1,Big one,Qualification,rep,1000,x\n"
    "op-2,Small one,Qualification,rep,50,y\n"
)
BAD_AMOUNT = GOOD.replace(",50,", ",-50,")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def upload(text: str, name: str = "deals.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def post_import(client, text: str = GOOD, **fields):
    return client.post("/api/v1/imports/", {"file": upload(text), "kind": "deals", **fields}, format="multipart")


def test_a_dry_run_with_a_bad_row_reports_it_and_writes_nothing(api, pipeline):
    response = post_import(api("rep"), BAD_AMOUNT, dry_run="true")

    assert response.status_code == 201, response.json()
    job = response.json()
    assert job["status"] == "failed" and job["dry_run"] is True and job["percent"] == 100
    assert job["error_count"] == 1
    report = api("rep").get(f"/api/v1/imports/{job['id']}/report/", {"count": "true"}).json()
    assert report["count"] == 1
    [error] = report["results"]
    assert (error["row"], error["column"], error["value"]) == (3, "Close Value", "-50")
    assert not Deal.objects.exists()


def test_the_report_downloads_as_csv(api, pipeline):
    job = post_import(api("rep"), BAD_AMOUNT).json()

    response = api("rep").get(f"/api/v1/imports/{job['id']}/report/csv/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["row", "column", "value", "message"]
    assert rows[1][:3] == ["3", "Close Value", "-50"]


def test_a_real_import_creates_the_records_as_the_uploader(api, org, pipeline):
    response = post_import(api("rep"))

    assert response.status_code == 201
    job = response.json()
    assert (job["status"], job["created_count"], job["error_count"]) == ("succeeded", 2, 0)
    assert job["created_by"] == org.rep.pk
    assert set(Deal.objects.values_list("external_id", "owner__username")) == {("op-1", "rep"), ("op-2", "rep")}


def test_an_import_with_one_bad_row_writes_nothing(api, pipeline):
    job = post_import(api("rep"), BAD_AMOUNT).json()

    assert job["status"] == "failed" and job["dry_run"] is False
    assert not Deal.objects.exists()


def test_the_mapping_and_value_map_are_applied(api, pipeline):
    text = "Ref,Name,Phase,Agent\nop-9,Mapped,Talking,rep\n"
    mapping = '{"Ref": "external_id", "Name": "title", "Phase": "stage", "Agent": "owner"}'
    value_map = '{"stage": {"Talking": "Qualification"}}'

    job = post_import(api("rep"), text, mapping=mapping, value_map=value_map).json()

    assert job["status"] == "succeeded", job
    assert Deal.objects.get(external_id="op-9").stage.name == "Qualification"


def test_a_rep_cannot_import_deals_for_another_team(api, pipeline):
    job = post_import(api("rep"), GOOD.replace(",rep,", ",other_rep,")).json()

    assert job["status"] == "failed"
    assert not Deal.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"mapping": '{"Deal": "nonsense"}'}, "mapping"),
        ({"mapping": '{"Deal": "title", "Remark": "title"}'}, "mapping"),
        ({"mapping": "[1, 2]"}, "mapping"),
        ({"mapping": "{not json"}, "mapping"),
        ({"mapping": '{"No such column": "title"}'}, "mapping"),
        ({"value_map": '{"stage": "Qualification"}'}, "value_map"),
        ({"date_order": "ymd"}, "date_order"),
        ({"encoding": "klingon-8"}, "encoding"),
        ({"kind": "unicorns"}, "kind"),
    ],
)
def test_bad_input_is_a_400_on_its_field(api, pipeline, fields, field):
    response = post_import(api("rep"), **fields)

    assert response.status_code == 400
    assert field in response.json()
    assert not ImportJob.objects.exists()


def test_a_missing_file_is_a_400(api):
    response = api("rep").post("/api/v1/imports/", {"kind": "deals"}, format="multipart")

    assert response.status_code == 400
    assert "file" in response.json()


def test_an_oversized_file_is_a_413(api, settings):
    settings.IMPORT_MAX_FILE_SIZE = 100

    response = post_import(api("rep"), GOOD * 5)

    assert response.status_code == 413
    assert "100 bytes" in response.json()["detail"]


def test_a_file_larger_than_the_body_limit_is_accepted(api, pipeline, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.IMPORT_INLINE_MAX_SIZE = 10**6
    rows = "".join(f"op-{i},Deal {i},Qualification,rep,{i},\n" for i in range(200))
    text = "Opportunity ID,Deal,Deal Stage,Sales Agent,Close Value,Remark\n" + rows

    response = post_import(api("rep"), text, dry_run="true")

    assert len(text) > 1024
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"


def test_a_large_file_is_queued_and_a_worker_completes_it(api, pipeline, settings, django_capture_on_commit_callbacks):
    settings.IMPORT_INLINE_MAX_SIZE = 10

    with django_capture_on_commit_callbacks() as callbacks:
        response = post_import(api("rep"))

    assert response.status_code == 202
    job = response.json()
    assert (job["status"], job["percent"]) == ("pending", 0)
    assert len(callbacks) == 1
    run_import_job(job["id"])  # what the worker does with the queued task
    done = api("rep").get(f"/api/v1/imports/{job['id']}/").json()
    assert (done["status"], done["percent"], done["processed_rows"], done["created_count"]) == ("succeeded", 100, 2, 2)


def test_a_large_file_that_cannot_be_queued_fails_with_a_message_and_writes_nothing(
    api, pipeline, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.IMPORT_INLINE_MAX_SIZE = 10

    def broker_down(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Error 111 connecting to redis. Connection refused.")

    monkeypatch.setattr(run_import_job, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_import(api("rep"))

    assert response.status_code == 202
    job = api("rep").get(f"/api/v1/imports/{response.json()['id']}/").json()
    assert (job["status"], job["error_count"]) == ("failed", 1)
    report = api("rep").get(f"/api/v1/imports/{job['id']}/report/").json()
    assert report["results"][0]["message"].startswith("The task queue is unavailable")
    assert not Deal.objects.exists()


def test_jobs_are_visible_to_their_creator_and_admins_only(api, pipeline):
    job = post_import(api("rep"), dry_run="true").json()
    path = f"/api/v1/imports/{job['id']}/"

    assert api("rep").get(path).status_code == 200
    assert api("admin").get(path).status_code == 200
    assert api("manager").get(path).status_code == 404
    assert api("other_rep").get(path + "report/").status_code == 404
    assert api("other_rep").get(path + "report/csv/").status_code == 404
    assert [j["id"] for j in api("rep").get("/api/v1/imports/").json()["results"]] == [job["id"]]
    assert api("other_rep").get("/api/v1/imports/").json()["results"] == []
    assert len(api("admin").get("/api/v1/imports/").json()["results"]) == 1


@pytest.mark.parametrize("role", ["anonymous", "revoked_token"])
def test_unauthenticated_requests_are_401(api, role):
    assert post_import(api(role)).status_code == 401
    assert api(role).get("/api/v1/imports/").status_code == 401


def test_preview_returns_header_rows_and_suggested_mapping(api):
    text = "Opportunity ID;Deal Stage;Notes\nop-1;Won;a\n"
    response = api("rep").post("/api/v1/imports/preview/", {"file": upload(text), "kind": "deals"}, format="multipart")

    assert response.status_code == 200
    body = response.json()
    assert body["header"] == ["Opportunity ID", "Deal Stage", "Notes"]
    assert (body["delimiter"], body["encoding"], body["estimated_rows"]) == (";", "utf-8", 1)
    assert body["rows"] == [["op-1", "Won", "a"]]
    assert body["suggested_mapping"] == {"Opportunity ID": "external_id", "Deal Stage": "stage"}
    assert "amount" in body["fields"]
    assert not ImportJob.objects.exists()


def test_preview_of_an_unreadable_file_is_a_400_on_file(api):
    response = api("rep").post(
        "/api/v1/imports/preview/",
        {"file": SimpleUploadedFile("x.csv", b"\x00\x01binary"), "kind": "deals"},
        format="multipart",
    )

    assert response.status_code == 400
    assert "not a text CSV" in response.json()["file"][0]


# --- Exports ------------------------------------------------------------------------------------------------------


def test_the_deals_export_streams_the_visible_filtered_deals(api, org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline, title="Mine", amount=500)
    make_deal(owner=org.rep, pipeline=pipeline, title="Mine too", amount=5)
    make_deal(owner=org.other_rep, pipeline=pipeline, title="Theirs", amount=500)

    response = api("rep").get("/api/v1/deals/export/?amount_min=100")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["title"] for row in rows] == ["Mine"]
    assert api("admin").get("/api/v1/deals/export/?amount_min=100").status_code == 200
    assert api("anonymous").get("/api/v1/deals/export/").status_code == 401


def test_the_history_export_covers_the_listed_deals(api, org, pipeline):
    mine = make_deal(owner=org.rep, pipeline=pipeline, title="Mine")
    make_deal(owner=org.other_rep, pipeline=pipeline, title="Theirs")

    response = api("rep").get("/api/v1/deals/export-history/")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["deal"] for row in rows} == {f"crm-deal-{mine.pk}"}


@pytest.mark.parametrize("records", ["leads", "organizations", "contacts", "activities"])
def test_every_export_answers_csv(api, records):
    response = api("rep").get(f"/api/v1/{records}/export/", HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")


def test_a_bad_export_filter_is_a_400_before_streaming(api):
    response = api("rep").get("/api/v1/deals/export/?amount_max=lots", HTTP_ACCEPT="text/csv")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "amount_max" in response.json()


# The access matrix of SPEC §7 for exports and import jobs, kept here so the shared matrix file stays untouched.
EXPORTS = [
    ("/api/v1/deals/export/", "Deal of rep"),
    ("/api/v1/deals/export/?search=Deal%20of%20rep", "Deal of rep"),
    ("/api/v1/deals/export-history/", "ext-deal-of-rep"),
    ("/api/v1/leads/export/", "Lead of rep"),
    ("/api/v1/organizations/export/", "Acme of rep"),
    ("/api/v1/contacts/export/", "Buyer of rep"),
    ("/api/v1/activities/export/", "Call of rep"),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("path", "marker"), EXPORTS)
def test_exports_show_the_record_exactly_to_those_who_see_it(api, rep_records, role, path, marker):
    Deal.objects.filter(pk=rep_records.deal.pk).update(external_id="ext-deal-of-rep")

    response = api(role).get(path)

    if role in UNAUTHENTICATED:
        assert response.status_code == 401
        return
    assert response.status_code == 200
    assert (marker in b"".join(response.streaming_content).decode()) == sees(role, "own")


@pytest.mark.parametrize("role", ROLES)
def test_import_jobs_answer_only_their_creator_and_admins(api, org, pipeline, role):
    job = post_import(api("rep"), dry_run="true").json()

    response = api(role).get(f"/api/v1/imports/{job['id']}/")

    expected = 401 if role in UNAUTHENTICATED else 200 if role in {"rep", "admin"} else 404
    assert response.status_code == expected


@pytest.mark.parametrize("encoding", ["rot13", "utf-16", "idna"])
def test_an_encoding_that_cannot_read_csv_is_a_400(api, encoding):
    response = post_import(api("rep"), encoding=encoding)

    assert response.status_code == 400
    assert "cannot be read as CSV" in response.json()["encoding"][0]


@pytest.mark.parametrize("encoding", ["ascii", "shift_jis", "cp1252"])
def test_a_file_its_named_encoding_cannot_decode_is_a_400_not_a_500(api, pipeline, encoding):
    data = b"Deal,Amount\nx\x81\xff,1\n"
    for path in ("/api/v1/imports/", "/api/v1/imports/preview/"):
        file = SimpleUploadedFile("a.csv", data)
        response = api("rep").post(path, {"file": file, "kind": "deals", "encoding": encoding}, format="multipart")

        # Text is decoded in blocks, so a bad byte soon after the header is met while reading the header.
        assert response.status_code == 400
        assert f"not valid {encoding}" in response.json()["file"][0]


def test_a_file_without_a_readable_header_is_a_400_on_file(api):
    response = api("rep").post(
        "/api/v1/imports/", {"file": SimpleUploadedFile("x.csv", b"\x00\x01"), "kind": "deals"}, format="multipart"
    )

    assert response.status_code == 400
    assert "not a text CSV" in response.json()["file"][0]
    assert not ImportJob.objects.exists()


def test_a_bad_byte_deep_in_a_file_is_reported_on_the_job(api, pipeline):
    rows = "".join(f"op-{i},Deal {i},Qualification,rep,{i},\n" for i in range(1000))
    data = (GOOD.splitlines()[0] + "\n" + rows).encode() + b"op-x,Bad \xff,Qualification,rep,1,\n"
    file = SimpleUploadedFile("a.csv", data)

    response = api("rep").post(
        "/api/v1/imports/", {"file": file, "kind": "deals", "encoding": "ascii"}, format="multipart"
    )

    assert response.status_code == 201
    job = response.json()
    report = api("rep").get(f"/api/v1/imports/{job['id']}/report/").json()
    assert job["error_count"] == 1 and "not valid ascii" in report["results"][0]["message"]
    assert not Deal.objects.exists()
