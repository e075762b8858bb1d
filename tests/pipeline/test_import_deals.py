"""Importing deals: mapping, value parsing, value mapping, history that counts like native history, upserts."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection

from pipeline import services, signals
from pipeline.importing import ImportOptions, import_csv, suggest_mapping
from pipeline.models import Contact, Deal, LostReason, Organization, StageChange
from pipeline.selectors import audit_trail, deal_history
from tests.factories import make_lost_reason, make_user, stage

pytestmark = pytest.mark.django_db


def csv_bytes(text: str, encoding: str = "utf-8") -> io.BytesIO:
    return io.BytesIO(text.encode(encoding))


def run(text: str, *, kind: str = "deals", encoding: str = "utf-8", **kwargs):
    return import_csv(kind=kind, stream=csv_bytes(text, encoding), **kwargs)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def history(deal: Deal) -> list[tuple[str | None, str, datetime]]:
    return [
        (change.from_stage.name if change.from_stage else None, change.to_stage.name, change.changed_at)
        for change in deal_history(deal=deal)
    ]


@pytest.fixture
def rep(db):
    return make_user(username="marcus", first_name="Marcus", last_name="Bell", email="marcus@example.com")


# --- Mapping ------------------------------------------------------------------------------------------------------


def test_suggest_mapping_reads_case_spaces_and_synonyms():
    header = [
        "Opportunity ID",
        "Deal Stage",
        "Close Value",
        "Sales Agent",
        "Account",
        "Close Date",
        "Engage Date",
        "Notes",
    ]

    assert suggest_mapping("deals", header) == {
        "Opportunity ID": "external_id",
        "Deal Stage": "stage",
        "Close Value": "amount",
        "Sales Agent": "owner",
        "Account": "organization",
        "Close Date": "closed_at",
        "Engage Date": "created_at",
    }
    assert suggest_mapping("deals", ["deal_stage", " TITLE ", "entered_at:Proposal"]) == {
        "deal_stage": "stage",
        " TITLE ": "title",
        "entered_at:Proposal": "entered_at:Proposal",
    }


# --- History ------------------------------------------------------------------------------------------------------


def test_a_won_deal_imports_with_the_same_history_as_one_made_through_the_services(rep, pipeline):
    native = services.create_deal(
        actor=None, owner=rep, title="Native", pipeline=pipeline, created_at=at("2026-01-05T00:00:00")
    )
    services.move_deal(deal=native, stage=stage(pipeline, "Won"), actor=None, at=at("2026-02-10T00:00:00"))
    native.refresh_from_db()

    result = run("external_id,title,stage,owner,created_at,closed_at\nD-1,Imported,Won,marcus,2026-01-05,2026-02-10\n")

    assert result.ok, result.errors
    imported = Deal.objects.get(external_id="D-1")
    assert (
        history(imported)
        == history(native)
        == [
            (None, "Prospecting", at("2026-01-05T00:00:00")),
            ("Prospecting", "Won", at("2026-02-10T00:00:00")),
        ]
    )
    for name in ("status", "stage_id", "created_at", "closed_at", "stage_entered_at", "lost_reason_id", "version"):
        assert getattr(imported, name) == getattr(native, name), name


def test_entered_at_columns_give_each_stage_its_date_and_open_deals_keep_no_close_date(rep, pipeline, lost_reason):
    native = services.create_deal(
        actor=None,
        owner=rep,
        title="Native",
        pipeline=pipeline,
        amount=Decimal("100"),
        created_at=at("2026-01-01T09:00:00"),
    )
    for name, day in (("Qualification", "2026-01-10T10:00:00"), ("Discovery", "2026-02-01T11:30:00")):
        services.move_deal(deal=native, stage=stage(pipeline, name), actor=None, at=at(day))
    native.refresh_from_db()

    result = run(
        "external_id,title,stage,owner,amount,created_at,entered_at:Qualification,entered_at:Discovery,closed_at\n"
        "D-2,Imported,Discovery,marcus,100,2026-01-01 09:00,2026-01-10T10:00:00Z,2026-02-01 11:30,\n"
    )

    assert result.ok, result.errors
    imported = Deal.objects.get(external_id="D-2")
    assert history(imported) == history(native)
    assert imported.closed_at is None and imported.status == "open"
    assert (imported.created_at, imported.stage_entered_at, imported.version) == (
        native.created_at,
        native.stage_entered_at,
        native.version,
    )


def test_a_lost_deal_without_a_reason_gets_unspecified_and_required_fields_do_not_block_history(rep, pipeline):
    # Negotiation requires amount, expected close date and contact; imported history loads anyway.
    result = run(
        "external_id,title,stage,owner,created_at,entered_at:Negotiation,closed_at\n"
        "D-3,Lost one,Lost,marcus,2026-03-01,2026-03-05,2026-03-20\n"
    )

    assert result.ok, result.errors
    deal = Deal.objects.get(external_id="D-3")
    assert deal.status == "lost"
    assert deal.lost_reason.name == "Unspecified"
    assert history(deal) == [
        (None, "Prospecting", at("2026-03-01T00:00:00")),
        ("Prospecting", "Negotiation", at("2026-03-05T00:00:00")),
        ("Negotiation", "Lost", at("2026-03-20T00:00:00")),
    ]
    assert deal.closed_at == at("2026-03-20T00:00:00")


def test_a_deal_created_directly_in_an_open_stage_has_one_entry(rep, pipeline):
    result = run("external_id,title,stage,owner,created_at\nD-4,Direct,Qualification,marcus,2026-04-01\n")

    assert result.ok, result.errors
    assert history(Deal.objects.get(external_id="D-4")) == [(None, "Qualification", at("2026-04-01T00:00:00"))]


@pytest.mark.parametrize(
    ("cells", "column", "message"),
    [
        ("Won,2026-01-05,,", "closed_at", "won deal needs closed_at"),
        ("Qualification,2026-01-05,,2026-02-01", "closed_at", "open deal has no close date"),
        ("Won,2026-03-05,2026-01-01,2026-04-01", "entered_at:Proposal", "before created_at"),
        ("Qualification,2026-01-05,2026-02-01,", "entered_at:Qualification", "current stage"),
        ("Won,2026-01-05,2026-05-01,2026-04-01", "entered_at:Proposal", "later than the deal entered its current"),
    ],
)
def test_inconsistent_dates_are_refused_with_the_column_that_is_wrong(rep, pipeline, cells, column, message):
    result = run(f"title,stage,created_at,entered_at:Proposal,closed_at\nX,{cells}\n", actor=rep)

    assert [(error.row, error.column) for error in result.errors] == [(2, column)]
    assert message in result.errors[0].message
    assert not Deal.objects.exists()


# --- Values -------------------------------------------------------------------------------------------------------


def test_amounts_dates_and_empty_cells_in_their_usual_spellings(rep, pipeline):
    result = run(
        "title;owner;stage;amount;expected_close_date\n"
        "A;marcus;Prospecting;$1,234.50;25/12/2026\n"
        "B;Marcus Bell;Prospecting;1.234,5 €;2026-12-31\n"
        "C;marcus@example.com;Prospecting;  ;\n"
        "D;MARCUS;Prospecting;EUR 12 000;03/04/2026\n",
        options=ImportOptions(date_order="dmy"),
    )

    assert result.ok, result.errors
    deals = {deal.title: deal for deal in Deal.objects.all()}
    assert deals["A"].amount == Decimal("1234.50") and str(deals["A"].expected_close_date) == "2026-12-25"
    assert deals["B"].amount == Decimal("1234.50")
    assert deals["C"].amount is None and deals["C"].expected_close_date is None
    assert deals["D"].amount == Decimal("12000.00") and str(deals["D"].expected_close_date) == "2026-04-03"
    assert {deal.owner for deal in deals.values()} == {rep}


def test_an_ambiguous_date_needs_a_date_order_and_month_first_reads_the_other_way(rep, pipeline):
    text = "title,stage,expected_close_date\nA,Prospecting,03/04/2026\n"

    refused = run(text, actor=rep)
    month_first = run(text, actor=rep, options=ImportOptions(date_order="mdy"))

    assert [error.column for error in refused.errors] == ["expected_close_date"]
    assert "date order" in refused.errors[0].message
    assert month_first.ok
    assert str(Deal.objects.get().expected_close_date) == "2026-03-04"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252"])
def test_utf8_with_and_without_bom_and_latin1_files_read_the_same(rep, pipeline, encoding):
    result = run("Title,Stage,Owner\nCafé Zürich,Prospecting,marcus\n", encoding=encoding)

    assert result.ok, result.errors
    assert Deal.objects.get().title == "Café Zürich"


def test_value_mapping_and_create_missing_make_organizations_contacts_and_inactive_owners(rep, pipeline):
    result = run(
        "Deal Stage,Sales Agent,Account,Contact,Title,Lost Reason,Close Date,Engage Date\n"
        "Engaging,Moses Frase,Acme,Ada Lovelace,A,,,2026-01-02\n"
        "Closed Lost,Moses Frase,acme,,B,Went silent,2026-02-01,2026-01-02\n",
        options=ImportOptions(
            create_missing=True, value_map={"stage": {"engaging": "Qualification", "Closed Lost": "Lost"}}
        ),
    )

    assert result.ok, result.errors
    assert result.new_references == {"owners": 1, "organizations": 1, "contacts": 1, "lost reasons": 1}
    a, b = Deal.objects.order_by("title")
    assert a.stage.name == "Qualification" and b.stage.name == "Lost"
    assert a.owner == b.owner and not a.owner.is_active and a.owner.get_full_name() == "Moses Frase"
    assert a.organization == b.organization and a.organization.name == "Acme"
    assert a.contact.last_name == "Lovelace" and a.contact.organization == a.organization
    assert b.lost_reason.name == "Went silent"
    assert not LostReason.objects.filter(name="Unspecified").exists()


def test_unknown_references_without_create_missing_are_refused_by_row_and_column(rep, pipeline):
    result = run("title,stage,owner,organization\nA,Prospecting,nobody,Acme\nB,Nowhere,marcus,\n")

    assert [(e.row, e.column) for e in result.errors] == [(2, "owner"), (2, "organization"), (3, "stage")]
    assert "Prospecting" in result.errors[2].message  # the stages that do exist are listed
    assert not (Deal.objects.exists() or Organization.objects.exists() or Contact.objects.exists())


# --- Upserts ------------------------------------------------------------------------------------------------------


def test_a_known_external_id_updates_the_deal_and_records_a_move(rep, pipeline, lost_reason):
    first = run("external_id,title,stage,owner,amount,created_at\nD-9,Renewal,Qualification,marcus,100,2026-01-01\n")
    again = run("external_id,title,stage,owner,amount,created_at\nD-9,Renewal,Qualification,marcus,100,2026-01-01\n")
    moved = run(
        "external_id,stage,amount,closed_at,lost_reason\nD-9,Lost,250,2026-02-01,Price\n",
    )

    assert (first.created, again.created, again.updated, again.unchanged) == (1, 0, 0, 1)
    assert (moved.created, moved.updated) == (0, 1), moved.errors
    deal = Deal.objects.get()
    assert (deal.status, deal.amount, deal.lost_reason, deal.title) == (
        "lost",
        Decimal("250.00"),
        lost_reason,
        "Renewal",
    )
    assert deal.closed_at == deal.stage_entered_at == at("2026-02-01T00:00:00")
    assert history(deal)[-1] == ("Qualification", "Lost", at("2026-02-01T00:00:00"))
    assert deal.version == 2
    assert StageChange.objects.count() == 2


def test_duplicate_external_ids_in_one_file_are_refused(rep, pipeline):
    result = run("external_id,title,stage\nX,A,Prospecting\nX,B,Prospecting\n", actor=rep)

    assert [(error.row, error.column) for error in result.errors] == [(3, "external_id")]
    assert not Deal.objects.exists()


def test_a_dry_run_reports_what_would_happen_and_writes_nothing(rep, pipeline):
    result = run(
        "title,stage,owner,organization\nA,Won,marcus,Acme\n",
        dry_run=True,
        options=ImportOptions(create_missing=True),
    )

    assert result.errors and result.errors[0].column == "closed_at"
    result = run(
        "title,stage,owner,organization\nA,Prospecting,marcus,Acme\n",
        dry_run=True,
        options=ImportOptions(create_missing=True),
    )
    assert result.ok and (result.created, result.new_references) == (1, {"organizations": 1})
    assert not Deal.objects.exists() and not Organization.objects.exists()


def test_lost_reason_is_kept_when_named(rep, pipeline):
    make_lost_reason("Competitor")
    result = run("title,stage,owner,closed_at,lost_reason\nA,Lost,marcus,2026-01-01,competitor\n")

    assert result.ok, result.errors
    assert Deal.objects.get().lost_reason.name == "Competitor"


def test_a_written_import_sends_one_records_imported_event_after_commit(
    rep, pipeline, django_capture_on_commit_callbacks
):
    received = []

    def receiver(**kwargs):
        received.append((kwargs["kind"], kwargs["created"], kwargs["updated"]))

    signals.records_imported.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run("title,stage,owner\nA,Prospecting,marcus\nB,Prospecting,marcus\n")
            run("title,stage,owner\nA,Prospecting,marcus\n", dry_run=True)
            run("title,stage,owner\nA,Nowhere,marcus\n")
    finally:
        signals.records_imported.disconnect(receiver)

    assert received == [("deals", 2, 0)]


def test_a_deal_changed_while_the_file_was_checked_is_not_overwritten(rep, pipeline):
    run("external_id,title,stage,owner\nD-1,A,Prospecting,marcus\n")
    deal = Deal.objects.get()

    def move_meanwhile(done, total):
        if done == total:  # the check is over, the write has not begun
            services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=rep)

    result = run("external_id,stage,amount\nD-1,Discovery,5\n", progress=move_meanwhile)

    assert [error.message for error in result.errors] == [
        "1 record(s) changed while the file was being checked; nothing was written. Run the import again."
    ]
    deal.refresh_from_db()
    assert deal.stage.name == "Qualification" and deal.amount is None


def test_a_lost_reason_on_a_deal_that_is_not_lost_is_dropped_not_looked_up(rep, pipeline):
    result = run("title,stage,owner,closed_at,lost_reason\nA,Won,marcus,2026-01-01,Never heard of it\n")

    assert result.ok, result.errors
    assert Deal.objects.get().lost_reason is None and not LostReason.objects.exists()


def test_imported_and_updated_deals_are_on_the_audit_trail_like_service_writes(rep, pipeline):
    run("external_id,title,stage,owner,amount\nA-1,Audited,Prospecting,marcus,100\n", actor=rep)
    run("external_id,stage,amount\nA-1,Qualification,250\n", actor=rep)
    deal = Deal.objects.get()

    moved, created = audit_trail(instance=deal)

    assert (created.action, created.actor, created.object_repr) == ("created", rep, "Audited")
    assert created.changes["amount"] == [None, "100.00"] and created.changes["stage"] == [
        None,
        stage(pipeline, "Prospecting").pk,
    ]
    assert "version" not in created.changes and "updated_at" not in created.changes
    assert moved.action == "stage_changed"
    assert moved.changes["amount"] == ["100.00", "250.00"]
    assert moved.changes["stage"] == [stage(pipeline, "Prospecting").pk, stage(pipeline, "Qualification").pk]
    assert set(moved.changes) == {"amount", "stage", "stage_entered_at"}


@pytest.mark.parametrize("seed", range(12))
def test_random_forward_walks_import_from_their_dates_exactly_as_the_services_record_them(rep, pipeline, seed):
    """Forward moves (skips allowed), ending open, won or lost: the deals file's dates alone rebuild the history."""
    import random
    from datetime import timedelta

    rng = random.Random(seed)
    make_lost_reason("Price")
    open_stages = ["Prospecting", "Qualification", "Discovery", "Proposal", "Negotiation"]
    fields = {"amount": Decimal("10.00"), "expected_close_date": "2026-12-31"}
    contact = services.create_contact(actor=rep, last_name="Buyer", email="buyer@example.com")
    when = at("2026-01-01T09:00:00") + timedelta(minutes=rng.randint(0, 10_000))
    native = services.create_deal(actor=None, owner=rep, title="N", pipeline=pipeline, contact=contact,
                                  created_at=when, **fields)  # fmt: skip
    row = {"created_at": when}
    index = 0
    while True:
        index += rng.choice([1, 1, 2])
        when += timedelta(hours=rng.randint(1, 400))
        ending = rng.random()
        target = "Won" if index >= len(open_stages) or ending < 0.15 else ("Lost" if ending < 0.3 else None)
        name = target or open_stages[index]
        native = services.move_deal(deal=native, stage=stage(pipeline, name), actor=None, at=when,
                                    lost_reason=LostReason.objects.get() if name == "Lost" else None)  # fmt: skip
        row["closed_at" if target else f"entered_at:{name}"] = when
        if target or rng.random() < 0.3:
            break
    native.refresh_from_db()  # the furthest stage is stamped by the database
    header = ["external_id", "title", "stage", "owner", "amount", "expected_close_date", "contact", "lost_reason", *row]
    cells = ["R-1", "Imported", native.stage.name, "marcus", "10", "2026-12-31", "buyer@example.com",
             "Price" if native.status == "lost" else "", *(value.isoformat() for value in row.values())]  # fmt: skip

    result = run(",".join(header) + "\n" + ",".join(cells) + "\n")

    assert result.ok, result.errors
    imported = Deal.objects.get(external_id="R-1")
    assert history(imported) == history(native)
    for name in (
        "status", "stage_id", "created_at", "closed_at", "stage_entered_at", "lost_reason_id", "version",
        "furthest_open_order",
    ):  # fmt: skip
        assert getattr(imported, name) == getattr(native, name), name


def _deal_rows_updated_in_this_transaction() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'pipeline_deal'")
        return cursor.fetchone()[0]


def test_new_deals_are_written_with_the_furthest_stage_their_history_gives_not_rewritten_for_it(rep, pipeline):
    """The import writes each new deal's furthest open stage itself, so the stamp after the load (which computes
    it from the stage changes just written) finds nothing to rewrite: on L that rewrite was 11-14 s of an import
    of 100,000 deals."""
    updated_before = _deal_rows_updated_in_this_transaction()

    result = run(
        "external_id,title,stage,owner,created_at,entered_at:Discovery,entered_at:Proposal,closed_at\n"
        "F-1,Walked,Proposal,marcus,2026-01-01,2026-01-10,2026-02-01,\n"
        "F-2,Won late,Won,marcus,2026-01-01,2026-01-10,,2026-03-01\n"
        "F-3,Straight,Qualification,marcus,2026-01-01,,,\n"
        "F-4,Won at once,Won,marcus,2026-01-01,,,2026-01-01\n"
    )

    assert result.ok, result.errors
    # One rewrite per new deal, by the last-touched stamp (`pipeline.touches`, which takes the transaction's time);
    # none by the furthest stage (three more here when the stamp wrote it).
    assert _deal_rows_updated_in_this_transaction() == updated_before + 4

    with connection.cursor() as cursor:  # the stamp's own definition, from the stage history
        cursor.execute(
            """
            SELECT d.external_id, d.furthest_open_order,
                   (SELECT max(s."order") FILTER (WHERE s.kind = 'open') FROM pipeline_stagechange c
                      JOIN pipeline_stage s ON s.id = c.to_stage_id WHERE c.deal_id = d.id)
              FROM pipeline_deal d WHERE d.external_id LIKE 'F-%' ORDER BY 1
            """
        )
        rows = cursor.fetchall()
    assert [(external_id, written) for external_id, written, _ in rows] == [
        ("F-1", stage(pipeline, "Proposal").order),
        ("F-2", stage(pipeline, "Discovery").order),
        ("F-3", stage(pipeline, "Qualification").order),
        ("F-4", None),
    ]
    assert all(written == from_history for _, written, from_history in rows)


def test_an_update_repeating_the_recorded_dates_is_fine_but_one_rewriting_them_is_refused(rep, pipeline):
    text = (
        "external_id,title,stage,owner,created_at,entered_at:Qualification\nD-1,A,Qualification,marcus,2026-01-01,{}\n"
    )
    run(text.format("2026-01-05"))

    same = run(text.format("2026-01-05"))
    rewritten = run(text.format("2026-01-07"))

    assert same.ok and same.unchanged == 1
    assert [(e.row, e.column) for e in rewritten.errors] == [(2, "entered_at:Qualification")]
    assert "stage_changes" in rewritten.errors[0].message
    assert [entry[2] for entry in history(Deal.objects.get())] == [at("2026-01-01T00:00:00"), at("2026-01-05T00:00:00")]
