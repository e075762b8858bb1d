"""SPEC §7: bad CSV files give a clear report, row by row, and write nothing."""

import io

import pytest

from pipeline.importing import ImportOptions, import_csv, read_header, write_report_csv
from pipeline.importing.reading import MAX_LINE_CHARS
from pipeline.models import Deal, Organization, StageChange
from tests.factories import make_user

pytestmark = pytest.mark.django_db

GOOD_ROW = "Good,Prospecting,rep,Acme,100,2026-01-05"
HEADER = "title,stage,owner,organization,amount,created_at"


@pytest.fixture
def rep(db):
    return make_user(username="rep")


def run(data: bytes | str, **kwargs):
    data = data.encode() if isinstance(data, str) else data
    kwargs.setdefault("options", ImportOptions(create_missing=True))
    return import_csv(kind="deals", stream=io.BytesIO(data), **kwargs)


def assert_nothing_written():
    assert not Deal.objects.exists()
    assert not StageChange.objects.exists()
    assert not Organization.objects.exists()


def errors(result) -> list[tuple[int, str]]:
    return [(error.row, error.column) for error in result.errors]


def test_an_empty_file_is_refused(rep, pipeline):
    for data in (b"", b"\n\n  \n"):
        result = run(data)
        assert [error.message for error in result.errors] == ["The file is empty."]
    assert_nothing_written()


def test_a_header_only_file_is_refused(rep, pipeline):
    result = run(HEADER + "\n")

    assert [(error.row, error.message) for error in result.errors] == [(0, "The file has a header but no rows.")]
    assert_nothing_written()


def test_a_utf16_file_is_refused_as_the_wrong_encoding(rep, pipeline):
    result = run(f"{HEADER}\n{GOOD_ROW}\n".encode("utf-16"))

    assert errors(result) == [(0, "")]
    assert "UTF-16" in result.errors[0].message
    assert_nothing_written()


def test_an_explicit_utf8_encoding_refuses_latin1_bytes_naming_the_line(rep, pipeline):
    result = run(
        f"{HEADER}\n{GOOD_ROW}\nCafé,Prospecting,rep,,,\n".encode("latin-1"), options=ImportOptions(encoding="utf-8")
    )

    assert "line 3" in result.errors[0].message
    assert_nothing_written()


def test_missing_required_columns_are_named(rep, pipeline):
    result = run("stage,owner\nProspecting,rep\n")

    assert errors(result) == [(1, "")]
    assert "title, organization or external_id" in result.errors[0].message
    assert_nothing_written()


def test_a_mapping_naming_an_absent_column_or_an_unknown_field_is_refused(rep, pipeline):
    result = run(f"{HEADER}\n{GOOD_ROW}\n", mapping={"title": "title", "Deal Name": "title", "owner": "colour"})

    assert errors(result) == [(1, "Deal Name"), (1, "owner")]
    assert_nothing_written()


def test_bad_dates_negative_amounts_and_unknown_stage_or_owner_are_reported_per_row_and_nothing_is_written(
    rep, pipeline
):
    result = run(
        f"{HEADER}\n"
        f"{GOOD_ROW}\n"
        "Bad date,Prospecting,rep,Acme,100,2026-02-30\n"
        "Not a date,Prospecting,rep,Acme,100,next tuesday\n"
        "Negative,Prospecting,rep,Acme,-5,2026-01-05\n"
        "Unknown stage,Closing,rep,Acme,5,2026-01-05\n"
        "Unknown owner,Prospecting,ghost@nowhere,Acme,5,2026-01-05\n"
        f"{GOOD_ROW}\n",
        options=ImportOptions(),  # no create_missing: the unknown owner is an error, Acme too
    )

    by_row = {(error.row, error.column): error for error in result.errors}
    assert "not a valid date" in by_row[(3, "created_at")].message
    assert "is not a date" in by_row[(4, "created_at")].message
    assert "negative" in by_row[(5, "amount")].message
    assert "no stage “Closing”" in by_row[(6, "stage")].message
    assert "ghost@nowhere" in by_row[(7, "owner")].message
    assert by_row[(3, "created_at")].value == "2026-02-30"
    assert result.error_rows == 7  # every row names the unknown organization Acme too
    assert_nothing_written()


@pytest.mark.parametrize("created_at", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"])
def test_a_time_outside_the_years_1_to_9999_in_utc_is_reported_on_its_row(rep, pipeline, created_at):
    # PostgreSQL stores such an instant (year 10000, or 1 BC, in UTC), and every later read of the deal failed.
    result = run(f"{HEADER}\n{GOOD_ROW}\nFar,Prospecting,rep,Acme,100,{created_at}\n")

    assert [(error.row, error.column, error.value) for error in result.errors] == [(3, "created_at", created_at)]
    assert "out of range" in result.errors[0].message
    assert_nothing_written()


def test_a_10_mb_line_is_reported_on_its_row_without_stopping_the_check(rep, pipeline):
    huge = "x" * (10 * 1024 * 1024)
    result = run(f"{HEADER}\n{GOOD_ROW}\n{huge},Prospecting,rep,,,\nNegative,Prospecting,rep,,-1,\n")

    assert errors(result) == [(3, ""), (4, "amount")]
    assert f"{MAX_LINE_CHARS:,} characters" in result.errors[0].message
    assert_nothing_written()


def test_a_row_with_more_cells_than_the_header_is_refused(rep, pipeline):
    result = run(f"{HEADER}\nA,Prospecting,rep,Acme,1,200,2026-01-01\n")

    assert errors(result) == [(2, "")]
    assert "7 cells" in result.errors[0].message


def test_the_report_writes_as_csv_and_rows_are_numbered_as_a_spreadsheet_shows_them(rep, pipeline):
    result = run(f"{HEADER}\n\n{GOOD_ROW}\nX,Prospecting,rep,,-1,\n")
    out = io.StringIO()
    write_report_csv(result.errors, out)

    assert out.getvalue().splitlines() == [
        "row,column,value,message",
        "4,amount,-1,“-1” is negative; amounts must be 0 or more.",
    ]


def test_semicolon_and_tab_delimited_files_are_detected(rep, pipeline):
    for delimiter in (";", "\t"):
        text = f"{HEADER}\n{GOOD_ROW}\n".replace(",", delimiter)
        assert run(text, dry_run=True).ok
    assert read_header(io.BytesIO(b"\xef\xbb\xbfTitle;Deal Stage\nA;B\n")) == ["Title", "Deal Stage"]


def test_a_mapped_column_name_that_appears_twice_in_the_header_is_refused(rep, pipeline):
    result = run("title,stage,title\nA,Prospecting,B\n")

    assert errors(result)[0] == (1, "title")
    assert "2 columns" in result.errors[0].message
    assert_nothing_written()


def test_a_long_note_within_the_line_limit_is_read(rep, pipeline):
    note = "n" * 300_000
    result = run(f"title,stage,owner,lost_note\nA,Prospecting,rep,{note}\n")

    assert result.ok, result.errors
    assert len(Deal.objects.get().lost_note) == 300_000


def test_windows_line_endings_quoted_newlines_and_trailing_empty_cells_read_as_a_spreadsheet_writes_them(rep, pipeline):
    data = (
        "\ufefftitle;stage;owner;lost_note\r\n"
        '"Multi-line";Prospecting;rep;"first line\r\nsecond; line";\r\n'
        "Short;Prospecting;rep\r\n"
        "Bad;Prospecting;rep;;-\r\n"  # a stray cell after the header's last column
    ).encode("utf-8")

    result = run(data, dry_run=True)

    assert [(error.row, error.message[:16]) for error in result.errors] == [(4, "The row has 5 ce")]
    fixed = run(data.replace(b";;-\r\n", b"\r\n"))
    assert fixed.ok, fixed.errors
    assert Deal.objects.get(title="Multi-line").lost_note == "first line\r\nsecond; line"
