"""The stamps of pipeline.stage_history always equal what the raw history says, however the history was written."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from pipeline import services, stage_history
from pipeline.models import Deal, StageChange
from tests.factories import make_deal, make_lost_reason, make_qualified_deal, make_user, stage

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def derived_stamps() -> tuple[dict[int, datetime | None], dict[int, int | None]]:
    """Both stamps derived from scratch, the slow way the metrics used to: the oracle of these tests."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, lead(changed_at) OVER (PARTITION BY deal_id ORDER BY changed_at, id) FROM pipeline_stagechange"
        )
        left = dict(cursor.fetchall())
        cursor.execute(
            """
            SELECT d.id, max(s."order") FILTER (WHERE s.kind = 'open')
              FROM pipeline_deal d
              LEFT JOIN pipeline_stagechange c ON c.deal_id = d.id
              LEFT JOIN pipeline_stage s ON s.id = c.to_stage_id
             GROUP BY d.id
            """
        )
        furthest = dict(cursor.fetchall())
    return left, furthest


def stamped() -> tuple[dict[int, datetime | None], dict[int, int | None]]:
    return (
        dict(StageChange.objects.values_list("id", "left_at")),
        dict(Deal.objects.values_list("id", "furthest_open_order")),
    )


def test_moves_through_the_services_stamp_stays_and_the_furthest_stage(pipeline):
    rep = make_user()
    deal = make_qualified_deal(owner=rep, pipeline=pipeline, stage=stage(pipeline, "Prospecting"), created_at=T0)
    path = ["Negotiation", "Discovery", "Won", "Proposal", "Lost"]
    for days, name in enumerate(path, start=1):
        deal = services.move_deal(
            deal=deal,
            stage=stage(pipeline, name),
            actor=rep,
            at=T0 + timedelta(days=days),
            lost_reason=make_lost_reason() if name == "Lost" else None,
        )

    changes = list(StageChange.objects.filter(deal=deal).order_by("changed_at"))
    assert [c.left_at for c in changes] == [c.changed_at for c in changes[1:]] + [None]
    # Negotiation (order 5) was the furthest open stage it entered, even after moving back and reopening.
    assert Deal.objects.get(pk=deal.pk).furthest_open_order == stage(pipeline, "Negotiation").order
    assert stamped() == derived_stamps()


def test_history_written_out_of_order_is_stamped_as_if_written_in_order(pipeline):
    deal = make_deal(owner=make_user(), pipeline=pipeline)
    first = StageChange.objects.get(deal=deal)
    # An import of past moves: a later change first, then one between it and the creation.
    StageChange.objects.create(
        deal=deal, to_stage=stage(pipeline, "Proposal"), changed_at=first.changed_at + timedelta(days=9)
    )
    StageChange.objects.create(
        deal=deal, to_stage=stage(pipeline, "Qualification"), changed_at=first.changed_at + timedelta(days=3)
    )

    left, furthest = stamped()
    assert (left, furthest) == derived_stamps()
    assert left[first.pk] == first.changed_at + timedelta(days=3)
    assert furthest[deal.pk] == stage(pipeline, "Proposal").order


def test_reordering_stages_restamps_the_furthest_stage_of_the_pipelines_deals(pipeline, other_pipeline):
    rep = make_user()
    deal = make_qualified_deal(owner=rep, pipeline=pipeline, stage=stage(pipeline, "Discovery"))
    bystander = make_qualified_deal(owner=rep, pipeline=other_pipeline, stage=stage(other_pipeline, "Discovery"))
    services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=rep)

    # Qualification (2) swaps with Proposal (4): the furthest stage the deal entered is now Qualification, at 4.
    services.update_stage(stage=stage(pipeline, "Qualification"), actor=None, order=4)

    assert Deal.objects.get(pk=deal.pk).furthest_open_order == 4
    assert Deal.objects.get(pk=bystander.pk).furthest_open_order == stage(other_pipeline, "Discovery").order
    assert stamped() == derived_stamps()


def test_renaming_a_stage_restamps_nothing(pipeline):
    deal = make_deal(owner=make_user(), pipeline=pipeline)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pipeline_deal SET furthest_open_order = 99 WHERE id = %s", [deal.pk])

    services.update_stage(stage=stage(pipeline, "Discovery"), actor=None, name="Discovery call")

    assert Deal.objects.get(pk=deal.pk).furthest_open_order == 99


def test_a_bulk_load_skips_the_row_by_row_stamps_and_stamps_everything_after(pipeline):
    rep = make_user()
    deals = [make_deal(owner=rep, pipeline=pipeline) for _ in range(3)]
    with transaction.atomic(), connection.cursor() as cursor, stage_history.bulk_load(cursor):
        for n, deal in enumerate(deals):
            StageChange.objects.create(deal=deal, to_stage=stage(pipeline, "Proposal"), changed_at=T0 + timedelta(n))
        cursor.execute("SELECT count(*) FROM pipeline_stagechange WHERE left_at IS NOT NULL")
        assert cursor.fetchone()[0] == 0  # not stamped row by row inside the load
    assert stamped() == derived_stamps()
    assert set(Deal.objects.values_list("furthest_open_order", flat=True)) == {stage(pipeline, "Proposal").order}


def test_restamping_some_deals_lowers_a_furthest_stage_whose_history_was_replaced(pipeline):
    deal = make_qualified_deal(owner=make_user(), pipeline=pipeline, stage=stage(pipeline, "Negotiation"))
    with transaction.atomic(), connection.cursor() as cursor, stage_history.bulk_load(cursor, [deal.pk]):
        StageChange.objects.filter(deal=deal).delete()
        StageChange.objects.create(deal=deal, to_stage=stage(pipeline, "Discovery"), changed_at=T0)
    assert Deal.objects.get(pk=deal.pk).furthest_open_order == stage(pipeline, "Discovery").order
    assert stamped() == derived_stamps()


def test_the_history_stays_append_only_but_for_the_exit_stamp(pipeline):
    deal = make_deal(owner=make_user(), pipeline=pipeline)
    StageChange.objects.filter(deal=deal).update(left_at=T0)  # the stamp may be written
    for change in ({"changed_at": T0}, {"to_stage": stage(pipeline, "Proposal")}, {"changed_by": make_user()}):
        with pytest.raises(IntegrityError), transaction.atomic():
            StageChange.objects.filter(deal=deal).update(left_at=None, **change)
    assert StageChange.objects.get(deal=deal).left_at == T0
