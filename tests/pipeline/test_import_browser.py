"""The Import page in a real browser, with a real Celery worker process running the import (no eager mode): upload,
change a mapping, see the check's error row, upload the corrected file, import with a progress bar that completes."""

import os

import pytest

from pipeline.models import Deal
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, log_in, page  # noqa: F401

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

HEADER = "Opportunity ID,Deal,Phase,Sales Agent,Close Value\n"
GOOD = HEADER + "op-1,Big one,Qualification,rep,1000\nop-2,Small one,Qualification,rep,50\n"
BAD = GOOD.replace(",50\n", ",-50\n")


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def import_worker(transactional_db, media_root, start_celery_worker):
    """A Celery worker on the test database and the same media folder, as in production."""
    return start_celery_worker(MEDIA_ROOT=str(media_root))


def choose_file(page, text: str) -> None:  # noqa: F811 (the fixture)
    page.set_input_files("#id_file", files=[{"name": "deals.csv", "mimeType": "text/csv", "buffer": text.encode()}])


def test_upload_map_check_fix_and_import_with_progress(page, org, board_pipeline, import_worker):  # noqa: F811
    log_in(page, "rep")
    page.click("nav >> text=Import")
    choose_file(page, BAD)
    page.select_option("#id_kind", "deals")
    page.click("text=Upload and map columns")

    # "Phase" is no usual header: map it by hand.
    page.select_option("select[name=column_2]", "stage")
    page.click("text=Check (dry run)")

    report = page.locator(".import-report")
    report.wait_for()
    assert "-50" in report.inner_text() and "Close Value" in report.inner_text()
    assert page.locator("a", has_text="Download the report as CSV").count() == 1

    choose_file(page, GOOD)
    page.click("text=Upload the corrected file")
    assert page.locator("select[name=column_2]").input_value() == "stage"  # the mapping of the check, reused
    page.click("text=Check (dry run)")
    page.wait_for_selector("text=All 2 rows are fine")

    page.click("button:has-text('Import')")
    page.wait_for_selector("progress")
    page.wait_for_selector("text=Done: 2 rows, 2 created", timeout=60_000)

    assert import_worker.alive(), import_worker.log()
    assert set(Deal.objects.values_list("external_id", flat=True)) == {"op-1", "op-2"}
