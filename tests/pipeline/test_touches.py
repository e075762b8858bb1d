"""A deal's last touch (pipeline.touches): stamped by triggers on every path, never by a read, never moved back."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from pipeline import selectors, services, touches
from pipeline.models import Activity, Deal
from tests.factories import leave_untouched, make_deal, make_user, stage

pytestmark = pytest.mark.django_db

LONG_AGO = 40  # days: older than the classic stages' default rotting days (30)


def touched_at(deal: Deal):
    return Deal.objects.values_list("last_touched_at", flat=True).get(pk=deal.pk)


@pytest.fixture
def rep(db):
    return make_user()


@pytest.fixture
def old_deal(rep, pipeline):
    return leave_untouched(make_deal(owner=rep, pipeline=pipeline), days=LONG_AGO)


def test_a_new_deal_is_touched_when_created_and_the_model_reads_the_stamp_back(rep, pipeline):
    before = timezone.now()
    deal = make_deal(owner=rep, pipeline=pipeline)
    assert deal.last_touched_at == touched_at(deal)
    assert before <= deal.last_touched_at <= timezone.now()


def test_an_imported_deal_dated_in_the_past_is_as_old_as_its_latest_date(rep, pipeline):
    # A raw INSERT, as a bulk load writes: created, entered and updated long ago.
    long_ago = timezone.now() - timedelta(days=90)
    entered = long_ago + timedelta(days=5)
    first = stage(pipeline, "Prospecting")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO pipeline_deal (title, pipeline_id, stage_id, status, owner_id, currency, forecast_category,
                                       lost_note, source, created_at, updated_at, stage_entered_at, version,
                                       budget, authority, need, timeline, last_touched_at)
            VALUES ('Old', %s, %s, 'open', %s, 'USD', 'pipeline', '', '', %s, %s, %s, 1, NULL, '', '', '', now())
            RETURNING id
            """,
            [pipeline.pk, first.pk, rep.pk, long_ago, long_ago, entered],
        )
        (deal_id,) = cursor.fetchone()
    assert touched_at(Deal(pk=deal_id)) == entered


def test_a_done_activity_touches_its_deal(rep, old_deal):
    services.log_activity(actor=rep, kind="call", subject="Called", deal=old_deal)
    assert touched_at(old_deal) > timezone.now() - timedelta(minutes=1)


def test_a_done_activity_dated_earlier_touches_at_its_done_time(rep, old_deal):
    done = timezone.now() - timedelta(days=3)
    services.log_activity(actor=rep, kind="meeting", subject="Met", deal=old_deal, done_at=done)
    assert touched_at(old_deal) == done


def test_planning_an_activity_is_no_touch_and_completing_it_is(rep, old_deal):
    before = touched_at(old_deal)
    planned = services.log_activity(
        actor=rep, kind="call", subject="Call back", deal=old_deal, due_at=timezone.now() + timedelta(days=2)
    )
    assert touched_at(old_deal) == before
    services.update_activity(activity=planned, actor=rep, subject="Call back about pricing")
    assert touched_at(old_deal) == before
    services.complete_activity(activity=planned, actor=rep)
    assert touched_at(old_deal) > before + timedelta(days=LONG_AGO - 1)


def test_a_note_touches_its_deal(rep, old_deal):
    services.log_activity(actor=rep, kind="note", subject="Budget moved to Q3", deal=old_deal)
    assert touched_at(old_deal) > timezone.now() - timedelta(minutes=1)


def test_a_planned_note_touches_when_added(rep, old_deal):
    note = Activity.objects.create(
        kind="note", subject="Remember", deal=old_deal, owner=rep, due_at=timezone.now() + timedelta(days=9)
    )
    assert touched_at(old_deal) == note.created_at


def test_an_edit_of_a_field_touches_the_deal(rep, old_deal):
    services.update_deal(deal=old_deal, actor=rep, title="Renamed")
    assert touched_at(old_deal) > timezone.now() - timedelta(minutes=1)


def test_a_move_touches_the_deal(rep, old_deal, pipeline):
    services.move_deal(deal=old_deal, stage=stage(pipeline, "Qualification"), actor=rep)
    assert touched_at(old_deal) > timezone.now() - timedelta(minutes=1)


def test_a_raw_sql_update_of_a_field_touches_the_deal(old_deal):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pipeline_deal SET need = 'a CRM' WHERE id = %s", [old_deal.pk])
    assert touched_at(old_deal) > timezone.now() - timedelta(minutes=1)


def test_a_write_of_only_system_columns_is_no_touch(old_deal):
    before = touched_at(old_deal)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pipeline_deal SET version = version + 1, updated_at = updated_at WHERE id = %s", [old_deal.pk]
        )
    assert touched_at(old_deal) == before


def test_a_save_with_a_stamp_read_earlier_does_not_move_it_back(rep, old_deal):
    stale_copy = Deal.objects.get(pk=old_deal.pk)
    services.log_activity(actor=rep, kind="call", subject="Called", deal=old_deal)
    touched = touched_at(old_deal)
    stale_copy.save(update_fields=["last_touched_at", "version"])
    assert touched_at(old_deal) == touched


def test_reads_do_not_touch(rep, old_deal, pipeline):
    before = touched_at(old_deal)
    selectors.board_card(user=rep, deal_id=old_deal.pk)
    list(selectors.visible_deals(rep).filter(pk=old_deal.pk))
    selectors.deal_activities(deal=old_deal).count()
    assert touched_at(old_deal) == before


def test_the_back_fill_takes_the_latest_of_entry_update_done_activities_and_notes(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)
    other = make_deal(owner=rep, pipeline=pipeline)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('pipeline.bulk_load', 'on', true);"
            "UPDATE pipeline_deal SET created_at = %(c)s, stage_entered_at = %(e)s, updated_at = %(u)s "
            "WHERE id IN (%(a)s, %(b)s);"
            "SELECT set_config('pipeline.bulk_load', 'off', true)",
            {
                "c": now - timedelta(days=60),
                "e": now - timedelta(days=50),
                "u": now - timedelta(days=45),
                "a": deal.pk,
                "b": other.pk,
            },
        )
    done = now - timedelta(days=20)
    note_added = now - timedelta(days=10)
    services.log_activity(actor=rep, kind="call", subject="Called", deal=deal, done_at=done)
    planned = services.log_activity(actor=rep, kind="call", subject="Later", deal=deal, due_at=now + timedelta(days=1))
    Activity.objects.filter(pk=planned.pk).update(created_at=now - timedelta(days=1))  # planned: never a touch
    note = Activity.objects.create(kind="note", subject="N", deal=deal, owner=rep, due_at=now + timedelta(days=3))
    Activity.objects.filter(pk=note.pk).update(created_at=note_added)
    leave_untouched(deal, days=365)
    leave_untouched(other, days=365)

    with connection.cursor() as cursor:
        assert touches.restamp_last_touched(cursor, [deal.pk, other.pk]) == 2
    assert touched_at(deal) == note_added
    assert touched_at(other) == now - timedelta(days=45)


def test_every_column_of_a_deal_is_either_edited_or_kept_by_the_system():
    # A new field must be named in one of the two (and the trigger re-created), or its edits would touch nothing.
    columns = [field.column for field in Deal._meta.concrete_fields if not field.primary_key]
    assert sorted(columns) == sorted(touches.EDITED_COLUMNS + touches.SYSTEM_COLUMNS)


def test_activities_inserted_in_one_statement_touch_each_deal_at_its_latest(rep, old_deal, pipeline):
    other = leave_untouched(make_deal(owner=rep, pipeline=pipeline), days=LONG_AGO)
    now = timezone.now()
    Activity.objects.bulk_create(
        [
            Activity(kind="call", subject="a", deal=old_deal, owner=rep, done_at=now - timedelta(days=3)),
            Activity(kind="call", subject="b", deal=old_deal, owner=rep, done_at=now - timedelta(days=2)),
            Activity(kind="call", subject="c", deal=other, owner=rep, due_at=now + timedelta(days=1)),  # planned
        ]
    )
    assert touched_at(old_deal) == now - timedelta(days=2)
    assert touched_at(other) == other.last_touched_at


@pytest.mark.django_db(transaction=True)
def test_the_migration_back_fills_the_latest_of_entry_update_done_activities_and_notes(pipeline):
    rep = make_user()
    idle, called, noted = (make_deal(owner=rep, pipeline=pipeline) for _ in range(3))
    now = timezone.now()
    days = lambda n: now - timedelta(days=n)  # noqa: E731
    executor = MigrationExecutor(connection)
    executor.migrate([("forecasting", "0007_call_trend_points"), ("pipeline", "0019_saved_deal_view")])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pipeline_deal SET created_at = %s, stage_entered_at = %s, updated_at = %s WHERE id = ANY(%s)",
            [days(90), days(80), days(70), [idle.pk, called.pk, noted.pk]],
        )
        activity = "INSERT INTO pipeline_activity (kind, subject, note, deal_id, owner_id, due_at, done_at, created_at,"
        activity += " updated_at) VALUES (%s, 's', '', %s, %s, %s, %s, %s, now())"
        cursor.execute(activity, ["call", called.pk, rep.pk, None, days(20), days(25)])  # done
        cursor.execute(activity, ["call", called.pk, rep.pk, days(-5), None, days(1)])  # planned: no touch
        cursor.execute(activity, ["note", noted.pk, rep.pk, days(-5), None, days(10)])  # a note, added
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    stamps = dict(Deal.objects.values_list("pk", "last_touched_at"))
    assert (stamps[idle.pk], stamps[called.pk], stamps[noted.pk]) == (days(70), days(20), days(10))
