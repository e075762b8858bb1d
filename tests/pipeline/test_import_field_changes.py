"""The `field_changes` import (pipeline.importing.field_changes): past changes of a deal's forecast fields.

The rules tested: every refused row is reported and nothing is written; a change is applied to the history from
its instant until the field's next recorded change, so the current value changes only when it is the latest; a
Salesforce OpportunityFieldHistory export imports as it is; importing a file twice changes nothing.
"""

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import AuditEntry
from pipeline import selectors, services
from pipeline.importing import import_csv
from pipeline.models import Deal, DealState, StageChange
from tests.factories import stage

pytestmark = pytest.mark.django_db

CREATED = datetime(2026, 1, 1, 10, tzinfo=UTC)


def at(day: int, hour: int = 12) -> datetime:
    return CREATED + timedelta(days=day, hours=hour - 10)


def run(csv: str, actor, **kwargs):
    return import_csv(kind="field_changes", stream=io.BytesIO(csv.encode()), actor=actor, **kwargs)


def intervals(deal):
    return list(
        DealState.objects.filter(deal_id=deal.pk)
        .order_by("valid_from")
        .values_list("valid_from", "valid_to", "stage__name", "owner__username", "amount", "expected_close_date")
    )


def history_rows():
    return (
        DealState.objects.count(),
        StageChange.objects.count(),
        AuditEntry.objects.count(),
        list(Deal.objects.order_by("pk").values_list("pk", "version", "amount", "stage_id", "owner_id")),
    )


@pytest.fixture
def deal(org, pipeline):
    return services.create_deal(
        actor=org.rep,
        title="Acme",
        pipeline=pipeline,
        amount=Decimal("100"),
        expected_close_date=date(2026, 3, 31),
        external_id="OPP-1",
        created_at=CREATED,
    )


HEADER = "deal,field,old_value,new_value,changed_at,changed_by\n"


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("OPP-404,amount,100,200,{t},rep", "deal", "No deal you may change"),
        ("OPP-1,probability,10,20,{t},rep", "field", "is not a field the history keeps"),
        ("OPP-1,amount,100,lots,{t},rep", "new_value", ""),
        ("OPP-1,expected_close_date,2026-03-31,soon,{t},rep", "new_value", ""),
        ("OPP-1,stage,Prospecting,Nowhere,{t},rep", "new_value", "has no stage “Nowhere”"),
        ("OPP-1,owner,rep,nobody,{t},rep", "new_value", "No user"),
        ("OPP-1,owner,teammate,rep,{t},rep", "old_value", "was “rep”"),
        ("OPP-1,forecast_category,pipeline,maybe,{t},rep", "new_value", "is not a forecast category"),
        ("OPP-1,amount,150,200,{t},rep", "old_value", "was “100.00”"),
        ("OPP-1,stage,Qualification,Proposal,{t},rep", "old_value", "was “Prospecting”"),
        ("OPP-1,stage,Nowhere,Proposal,{t},rep", "old_value", "has no stage “Nowhere”"),
        ("OPP-1,amount,100,100,{t},rep", "new_value", "that is no change"),
        ("OPP-1,amount,100,200,2099-01-01T00:00:00Z,rep", "changed_at", "in the past"),
        ("OPP-1,amount,100,200,2025-12-31T00:00:00Z,rep", "changed_at", "created later"),
        ("OPP-1,pipeline,New Business,Renewals,{t},rep", "field", "needs a change of stage"),
    ],
)
def test_a_refused_row_is_reported_and_nothing_is_written(org, deal, other_pipeline, row, column, message):
    good = f"OPP-1,expected_close_date,2026-03-31,2026-04-30,{at(1).isoformat()},rep\n"
    before = history_rows()
    result = run(HEADER + good + row.format(t=at(2).isoformat()) + "\n", org.rep)
    assert not result.ok
    assert [(e.row, e.column) for e in result.errors] == [(3, column)], result.errors
    assert message in result.errors[0].message
    assert history_rows() == before


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("amount,100,200", "amount,200,300"),  # chained: which one held at the instant?
        ("amount,100,200", "amount,100,300"),  # both from the value before: one of them would be lost
        ("stage,Prospecting,Qualification", "stage,Qualification,Discovery"),
    ],
)
def test_two_changes_of_one_field_of_a_deal_at_the_same_instant_are_a_row_error(org, deal, first, second):
    # The history holds one value of a field from an instant on: a second change at that instant has no interval.
    t = at(2).isoformat()
    before = history_rows()
    result = run(HEADER + f"OPP-1,{first},{t},rep\nOPP-1,{second},{t},rep\n", org.rep)
    assert [(e.row, e.column, e.value) for e in result.errors] == [(3, "changed_at", str(at(2)))], result.errors
    field = first.split(",")[0]
    assert result.errors[0].message == (
        f"Row 2 changes the {field} of this deal at the same instant: give each change its own time."
    )
    assert history_rows() == before


def test_a_past_change_splits_the_history_and_the_current_value_stays(org, deal):
    services.update_deal(deal=Deal.objects.get(pk=deal.pk), actor=org.rep, amount=Decimal("300"))
    changed = DealState.objects.filter(deal_id=deal.pk).order_by("valid_from").last().valid_from
    result = run(HEADER + f"OPP-1,amount,100,200,{at(3).isoformat()},manager\n", org.rep)
    assert result.ok, result.errors
    assert (result.created, result.updated) == (1, 1)
    assert intervals(deal) == [
        (CREATED, at(3), "Prospecting", "rep", Decimal("100"), date(2026, 3, 31)),
        (at(3), changed, "Prospecting", "rep", Decimal("200"), date(2026, 3, 31)),
        (changed, None, "Prospecting", "rep", Decimal("300"), date(2026, 3, 31)),
    ]
    assert Deal.objects.get(pk=deal.pk).amount == Decimal("300")
    assert selectors.deals_as_of(user=org.admin, at=at(4)).get(pk=deal.pk).state_amount == Decimal("200")
    change = [c for c in selectors.deal_changes(deal=deal) if c.at == at(3)]
    assert [(c.field, c.old, c.new, c.changed_by.username) for c in change] == [
        ("amount", Decimal("100"), Decimal("200"), "manager")
    ]


def test_the_latest_change_becomes_the_current_value(org, deal, pipeline):
    csv = HEADER + "".join(
        [
            f"OPP-1,owner,rep,teammate,{at(2).isoformat()},manager\n",
            f"OPP-1,stage,Prospecting,Won,{at(5).isoformat()},teammate\n",
            f"OPP-1,stage,Qualification,Prospecting,{at(4).isoformat()},rep\n",
            f"OPP-1,stage,Prospecting,Qualification,{at(3).isoformat()},rep\n",
        ]
    )
    result = run(csv, org.manager)
    assert result.ok, result.errors
    fresh = Deal.objects.get(pk=deal.pk)
    assert (fresh.stage.name, fresh.status, fresh.owner, fresh.closed_at) == ("Won", "won", org.teammate, at(5))
    assert fresh.stage_entered_at == at(5) and fresh.version == deal.version + 1
    assert [(c.from_stage_id, c.to_stage.name, c.changed_at) for c in fresh.stage_changes.order_by("changed_at")] == [
        (None, "Prospecting", CREATED),
        (stage(pipeline, "Prospecting").pk, "Qualification", at(3)),
        (stage(pipeline, "Qualification").pk, "Prospecting", at(4)),
        (stage(pipeline, "Prospecting").pk, "Won", at(5)),
    ]
    assert [row[2:4] for row in intervals(deal)] == [
        ("Prospecting", "rep"),
        ("Prospecting", "teammate"),
        ("Qualification", "teammate"),
        ("Prospecting", "teammate"),
        ("Won", "teammate"),
    ]
    # The same file again: every change is already recorded.
    before = history_rows()
    again = run(csv, org.manager)
    assert again.ok and (again.updated, again.unchanged) == (0, 1)
    assert history_rows() == before


def test_a_salesforce_opportunity_field_history_export_imports_as_it_is(org, deal, pipeline):
    csv = (
        "OpportunityId,CreatedById,CreatedDate,Field,OldValue,NewValue\n"
        "OPP-1,rep,2026-01-03T10:00:00.000+0000,Amount,100,250\n"
        "OPP-1,rep,2026-01-04T10:00:00.000+0000,CloseDate,2026-03-31,2026-06-30\n"
        "OPP-1,rep,2026-01-05T10:00:00.000+0000,StageName,Prospecting,Qualification\n"
        "OPP-1,rep,2026-01-05T10:00:00.000+0000,ForecastCategoryName,Pipeline,Best Case\n"
        "OPP-1,rep,2026-01-06T10:00:00.000+0000,OwnerId,rep,teammate\n"
    )
    result = run(csv, org.manager)
    assert result.ok, result.errors
    assert result.ignored_columns == []
    fresh = Deal.objects.get(pk=deal.pk)
    assert (fresh.amount, fresh.expected_close_date, fresh.stage.name, fresh.owner) == (
        Decimal("250"),
        date(2026, 6, 30),
        "Qualification",
        org.teammate,
    )
    assert fresh.forecast_category == "best_case"
    assert selectors.deal_pushes([deal.pk])[deal.pk].count == 1
    as_of = selectors.deals_as_of(user=org.admin, at=datetime(2026, 1, 4, 12, tzinfo=UTC)).get(pk=deal.pk)
    assert (as_of.state_amount, as_of.state_expected_close_date, as_of.state_stage_id) == (
        Decimal("250"),
        date(2026, 6, 30),
        stage(pipeline, "Prospecting").pk,
    )
    assert timezone.now() > fresh.updated_at


def test_a_change_of_pipeline_names_the_stage_in_the_new_pipeline(org, deal, other_pipeline):
    t = at(2).isoformat()
    csv = HEADER + f"OPP-1,stage,Prospecting,Qualification,{t},rep\nOPP-1,pipeline,New Business,Renewals,{t},rep\n"
    result = run(csv, org.rep)
    assert result.ok, result.errors
    fresh = Deal.objects.get(pk=deal.pk)
    assert (fresh.pipeline, fresh.stage) == (other_pipeline, stage(other_pipeline, "Qualification"))
    assert selectors.deals_as_of(user=org.admin, at=at(1)).get(pk=deal.pk).state_pipeline_id == deal.pipeline_id


SALESFORCE = "OpportunityId,Field,OldValue,NewValue,CreatedDate\nOPP-1,Amount,100,175,2026-01-03T10:00:00Z\n"


def test_every_door_imports_field_changes(org, deal, tmp_path, settings, client, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from django.urls import reverse
    from rest_framework.test import APIClient

    from pipeline.models import ImportJob
    from pipeline.tasks import run_import_job

    settings.MEDIA_ROOT = tmp_path

    def amount_at_day_4():
        return selectors.deals_as_of(user=org.admin, at=at(4)).get(pk=deal.pk).state_amount

    # The command, as a dry run first.
    path = tmp_path / "history.csv"
    path.write_text(SALESFORCE)
    call_command("import_csv", "field_changes", str(path), "--dry-run", "--user", "rep", stdout=io.StringIO())
    assert amount_at_day_4() == Decimal("100")
    call_command("import_csv", "field_changes", str(path), "--user", "rep", stdout=io.StringIO())
    assert amount_at_day_4() == Decimal("175")

    # The API.
    api = APIClient()
    api.force_authenticate(org.rep)
    file = SimpleUploadedFile(
        "h.csv", SALESFORCE.replace("175", "180").replace("100", "175").replace("T10", "T11").encode()
    )
    response = api.post("/api/v1/imports/", {"file": file, "kind": "field_changes"}, format="multipart")
    assert response.status_code == 201 and response.json()["status"] == "succeeded", response.json()
    assert amount_at_day_4() == Decimal("180")

    # The upload page: upload, map, check, then import on a worker.
    client.force_login(org.rep)
    text = SALESFORCE.replace("175", "190").replace("100", "180").replace("T10", "T12")
    file = SimpleUploadedFile("h.csv", text.encode(), content_type="text/csv")
    url = client.post(reverse("pipeline:imports"), {"file": file, "kind": "field_changes"})["Location"]
    form = client.get(url).context["form"]
    data = {name: form[name].value() or "" for name in form.fields if name != "create_missing"}
    check = client.post(url, {**data, "action": "dry_run"})
    job = ImportJob.objects.get(pk=check["Location"].rstrip("/").split("/")[-1])
    assert job.status == "succeeded" and job.dry_run
    with django_capture_on_commit_callbacks():
        run = client.post(reverse("pipeline:import_job_run", args=[job.pk]))
    assert run.status_code == 302
    run_import_job(ImportJob.objects.get(pk=run["Location"].rstrip("/").split("/")[-1]).pk)
    assert amount_at_day_4() == Decimal("190")


def test_a_rebuild_after_the_import_keeps_the_imported_changes(org, deal):
    from django.db import connection

    from pipeline import field_history

    services.update_deal(deal=Deal.objects.get(pk=deal.pk), actor=org.rep, amount=Decimal("300"))
    csv = HEADER + "".join(
        [
            f"OPP-1,amount,100,200,{at(3).isoformat()},manager\n",
            f"OPP-1,expected_close_date,2026-03-31,2026-05-31,{at(4).isoformat()},rep\n",
            f"OPP-1,owner,rep,teammate,{at(5).isoformat()},manager\n",
            f"OPP-1,forecast_category,Pipeline,Commit,{at(6).isoformat()},\n",
        ]
    )
    assert run(csv, org.manager).ok

    def recorded():
        return list(
            DealState.objects.filter(deal_id=deal.pk)
            .order_by("valid_from")
            .values_list("valid_from", "valid_to", "changed_by_id", "owner_id", "amount", "expected_close_date")
        )

    imported = recorded()
    assert len(imported) == 6
    with connection.cursor() as cursor:
        field_history.rebuild(cursor, [deal.pk])
    rebuilt = recorded()
    # The same intervals; the app's change is dated by its audit entry (written a moment after the statement).
    assert [row[2:] for row in rebuilt] == [row[2:] for row in imported]
    assert [row[0] for row in rebuilt[:5]] == [row[0] for row in imported[:5]]
    fresh = Deal.objects.get(pk=deal.pk)
    assert (fresh.owner, fresh.forecast_category) == (org.teammate, "commit")
    assert fresh.forecast_category_override == "commit"  # not the stage's default: pinned


def test_imported_changes_count_in_the_waterfall_and_slippage(org, pipeline):
    from forecasting import selectors as forecast
    from forecasting.periods import Period

    deals = [
        services.create_deal(
            actor=org.rep,
            title=f"D{i}",
            pipeline=pipeline,
            amount=Decimal(amount),
            expected_close_date=date(2026, 2, 20),
            external_id=f"W-{i}",
            created_at=CREATED,
        )
        for i, amount in enumerate(("100", "40", "25"))
    ]
    csv = HEADER + "".join(
        [
            "W-0,expected_close_date,2026-02-20,2026-03-15,2026-02-10T09:00:00Z,rep\n",  # pushed out of February
            "W-1,amount,40,70,2026-02-11T09:00:00Z,rep\n",  # up 30, and stays in February
            "W-2,stage,Prospecting,Lost,2026-02-12T09:00:00Z,rep\n",  # lost in February
        ]
    )
    assert run(csv, org.rep).ok
    february, a, b = Period.parse("2026-02"), datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC)
    [row] = forecast.waterfall(user=org.admin, period=february, at_from=a, at_to=b, group="company")
    buckets = {bucket.name: (bucket.count, bucket.amount) for bucket in row.buckets if bucket.count}
    # Recomputed by hand from the three rows: all three open in February at A; at B only W-1, at 70.
    assert (row.open_from_count, row.open_from_amount) == (3, Decimal("165"))
    assert (row.open_to_count, row.open_to_amount) == (1, Decimal("70"))
    assert buckets["pushed_out"] == (1, Decimal("100")) and buckets["amount_up"] == (1, Decimal("30"))
    assert buckets["lost"] == (1, Decimal("25"))
    [slipped] = forecast.slippage(user=org.admin, period=february, group="company")
    # Open in February at its start: the three; open at its end with a later close date: W-0 only.
    assert (slipped.open_count, slipped.open_amount) == (3, Decimal("165"))
    assert (slipped.slipped_count, slipped.slipped_amount) == (1, Decimal("100"))
    assert Deal.objects.get(pk=deals[2].pk).lost_reason.name == "Unspecified"
