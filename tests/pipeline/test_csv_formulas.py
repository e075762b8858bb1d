"""CSV formula injection (SPEC §7): every CSV the product writes neutralises text a spreadsheet would run as a
formula, and the import reads such a cell back as the text it stands for."""

import csv
import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from hypothesis import given
from hypothesis import strategies as st

from pipeline import services
from pipeline.exporting import export_csv, neutralise_formula, restore_formula
from pipeline.importing import import_csv, write_report_csv
from pipeline.models import Deal, Organization
from tests.factories import make_deal

# Each starts with one of the characters OWASP names: =, +, -, @, tab, CR.
FORMULAS = ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def cells(lines) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(lines))))


@pytest.mark.parametrize("text", [*FORMULAS, "'=literal", "''+1"])
def test_neutralise_formula_puts_an_apostrophe_before_text_a_spreadsheet_would_run(text):
    assert neutralise_formula(text) == f"'{text}"
    assert restore_formula(f"'{text}") == text


@pytest.mark.parametrize("text", ["", "Acme", "'quoted'", "-12.00", "-5", "12", "2026-01-01", "a=b", " =x"])
def test_neutralise_formula_leaves_other_text_and_negative_numbers_as_they_are(text):
    assert neutralise_formula(text) == text
    assert restore_formula(text) == text


@given(st.text(alphabet=st.sampled_from("'=+-@\t\r1.xA "), max_size=6) | st.text(max_size=20))
def test_restore_formula_gives_back_exactly_what_neutralise_formula_was_given(text):
    written = neutralise_formula(text)

    assert restore_formula(written) == text
    assert not written.startswith(("=", "+", "@", "\t", "\r"))


def _deals(org, pipeline, texts):
    for text in texts:
        make_deal(owner=org.rep, pipeline=pipeline, title=text, amount=Decimal("12.00"))


def _stage_changes(org, pipeline, texts):
    for text in texts:
        make_deal(owner=org.rep, pipeline=pipeline, title="Deal", external_id=text)


def _organizations(org, pipeline, texts):
    for text in texts:
        services.create_organization(actor=org.rep, name=text)


def _contacts(org, pipeline, texts):
    for text in texts:
        services.create_contact(actor=org.rep, last_name="Buyer", first_name=text)


def _leads(org, pipeline, texts):
    for text in texts:
        services.create_lead(actor=org.rep, last_name="Lead", company=text)


def _activities(org, pipeline, texts):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Deal")
    for text in texts:
        services.log_activity(actor=org.rep, kind="call", subject="Call", note=text, deal=deal)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kind, make, column",
    [
        ("deals", _deals, "title"),
        ("stage_changes", _stage_changes, "deal"),
        ("organizations", _organizations, "name"),
        ("contacts", _contacts, "first_name"),
        ("leads", _leads, "company"),
        ("activities", _activities, "note"),
    ],
)
def test_every_export_neutralises_its_text_cells(org, pipeline, kind, make, column):
    make(org, pipeline, FORMULAS)

    rows = cells(export_csv(kind=kind, user=org.rep))

    assert sorted(row[column] for row in rows) == sorted(f"'{text}" for text in FORMULAS)


@pytest.mark.django_db
def test_an_export_leaves_numbers_dates_and_references_as_they_are(org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline, title="=1+1", amount=Decimal("12.00"), expected_close_date="2026-12-31")
    services.create_lead(actor=org.rep, last_name="-12.00", score=0)

    [deal] = cells(export_csv(kind="deals", user=org.rep))
    [lead] = cells(export_csv(kind="leads", user=org.rep))

    assert (deal["title"], deal["amount"], deal["expected_close_date"]) == ("'=1+1", "12.00", "2026-12-31")
    assert deal["external_id"].startswith("crm-deal-") and deal["owner"] == "rep"
    assert (lead["last_name"], lead["score"]) == ("-12.00", "0")


@pytest.mark.django_db
def test_the_export_csv_command_neutralises_its_text_cells(org, pipeline, capsys):
    make_deal(owner=org.rep, pipeline=pipeline, title="@SUM(A1)")

    call_command("export_csv", "deals")

    assert [row["title"] for row in cells(capsys.readouterr().out)] == ["'@SUM(A1)"]


@pytest.mark.django_db
def test_the_import_report_neutralises_the_columns_and_values_that_came_from_the_file(org, pipeline):
    content = b'title,=cmd\nBig one,"=HYPERLINK(""http://x"")"\nSmall one,-50\n'
    result = import_csv(
        kind="deals", stream=io.BytesIO(content), mapping={"title": "title", "=cmd": "amount"}, actor=org.rep
    )
    out = io.StringIO()

    write_report_csv(result.errors, out)

    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["row", "column", "value", "message"]
    assert rows[1][:3] == ["2", "'=cmd", '\'=HYPERLINK("http://x")']
    assert rows[2][:3] == ["3", "'=cmd", "-50"]  # a negative number is no formula: it stays as the file had it
    assert not Deal.objects.exists()


ROUND_TRIP_TITLES = ["=1+1", "'=literal", "''@x", '=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "-12.00"]


@pytest.mark.django_db
def test_deals_exported_with_formulas_reimport_as_the_same_text_and_unchanged(org, pipeline):
    customer = services.create_organization(actor=org.rep, name="=Customer")
    for title in ROUND_TRIP_TITLES:
        make_deal(owner=org.rep, pipeline=pipeline, title=title, organization=customer)
    content = "".join(export_csv(kind="deals", user=org.rep)).encode()
    exported = cells([content.decode()])
    assert {row["title"] for row in exported} == {neutralise_formula(title) for title in ROUND_TRIP_TITLES}
    assert {row["title"] for row in exported} >= {"'=1+1", "''=literal", "-12.00"}
    assert {row["organization"] for row in exported} == {"'=Customer"}

    dry_run = import_csv(kind="deals", stream=io.BytesIO(content), actor=org.rep, dry_run=True)
    again = import_csv(kind="deals", stream=io.BytesIO(content), actor=org.rep)

    for result in (dry_run, again):
        assert result.ok, result.errors
        assert (result.created, result.updated, result.unchanged) == (0, 0, len(ROUND_TRIP_TITLES))

    Deal.objects.all().delete()
    into_empty = import_csv(kind="deals", stream=io.BytesIO(content), actor=org.rep)

    assert into_empty.ok and into_empty.created == len(ROUND_TRIP_TITLES), into_empty.errors
    assert sorted(Deal.objects.values_list("title", flat=True)) == sorted(ROUND_TRIP_TITLES)
    assert set(Deal.objects.values_list("organization__name", flat=True)) == {"=Customer"}
    assert Organization.objects.count() == 1


@pytest.mark.django_db
def test_organizations_exported_with_formulas_reimport_unchanged(org):
    for name in ("=Acme", "'+Beta"):
        services.create_organization(actor=org.rep, name=name, industry="@Retail", external_id=f"-{name}")
    content = "".join(export_csv(kind="organizations", user=org.rep)).encode()

    result = import_csv(kind="organizations", stream=io.BytesIO(content), actor=org.rep)

    assert result.ok, result.errors
    assert (result.created, result.updated, result.unchanged) == (0, 0, 2)
    assert sorted(Organization.objects.values_list("name", "industry", "external_id")) == [
        ("'+Beta", "@Retail", "-'+Beta"),
        ("=Acme", "@Retail", "-=Acme"),
    ]
