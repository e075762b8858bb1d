"""The invariants hold even when the service layer is bypassed: raw ORM writes are refused by PostgreSQL."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from pipeline.models import Deal, Pipeline, Stage, StageChange
from tests.factories import make_deal, make_pipeline, make_user, stage

pytestmark = pytest.mark.django_db


@pytest.fixture
def rep(db):
    return make_user(username="rep")


def refused(error=IntegrityError):
    """Run the write in a savepoint so the test can go on after the database says no."""
    return pytest.raises(error)


def check_deferred_constraints() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_a_negative_amount_is_refused(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with refused(), transaction.atomic():
        Deal.objects.filter(pk=deal.pk).update(amount=Decimal("-5"))


def test_a_probability_over_100_is_refused(pipeline):
    with refused(), transaction.atomic():
        Stage.objects.filter(pipeline=pipeline, name="Discovery").update(probability=101)


def test_stage_order_is_unique_per_pipeline(pipeline, other_pipeline):
    # Both pipelines use orders 1..7: uniqueness is per pipeline.
    check_deferred_constraints()
    with refused(), transaction.atomic():
        Stage.objects.filter(pipeline=pipeline, name="Discovery").update(order=1)
        check_deferred_constraints()


def test_stages_can_swap_order_inside_one_transaction(pipeline):
    with transaction.atomic():
        Stage.objects.filter(pipeline=pipeline, name="Discovery").update(order=4)
        Stage.objects.filter(pipeline=pipeline, name="Proposal").update(order=3)
    check_deferred_constraints()
    assert stage(pipeline, "Proposal").order == 3


def test_a_second_won_stage_is_refused(pipeline):
    with refused(), transaction.atomic():
        Stage.objects.create(pipeline=pipeline, name="Won again", order=9, kind="won", probability=100)


def test_a_pipeline_without_a_lost_stage_is_refused_at_commit(db):
    with refused(), transaction.atomic():
        make_pipeline(stages=[("Open", "open", 10, [], "pipeline"), ("Won", "won", 100, [], "commit")])
        check_deferred_constraints()
    assert not Pipeline.objects.exists()


def test_removing_the_won_stage_is_refused_at_commit(pipeline):
    with refused(), transaction.atomic():
        Stage.objects.filter(pipeline=pipeline, kind="won").delete()
        check_deferred_constraints()


def test_a_deal_status_different_from_its_stage_kind_is_refused(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with refused(), transaction.atomic():
        Deal.objects.filter(pk=deal.pk).update(status="won", closed_at=timezone.now())


def test_a_deal_in_a_stage_of_another_pipeline_is_refused(rep, pipeline, other_pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with refused(), transaction.atomic():
        Deal.objects.filter(pk=deal.pk).update(stage=stage(other_pipeline, "Prospecting"))


def test_a_stage_with_deals_cannot_change_kind(rep, pipeline):
    make_deal(owner=rep, pipeline=pipeline)

    with refused(), transaction.atomic():
        Stage.objects.filter(pipeline=pipeline, name="Prospecting").update(kind="won", probability=100)


def test_a_lost_deal_without_a_reason_is_refused(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with refused(), transaction.atomic():
        Deal.objects.filter(pk=deal.pk).update(stage=stage(pipeline, "Lost"), status="lost", closed_at=timezone.now())


def test_an_open_deal_with_a_closed_at_is_refused(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with refused(), transaction.atomic():
        Deal.objects.filter(pk=deal.pk).update(closed_at=timezone.now())


def test_stage_history_is_never_updated(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with refused(), transaction.atomic():
        StageChange.objects.filter(deal=deal).update(changed_at=timezone.now() - timedelta(days=1))


def test_only_one_pipeline_is_the_default(pipeline):
    with refused(), transaction.atomic():
        make_pipeline(is_default=True)


def test_autovacuum_analyzes_the_deals_and_their_history_after_two_percent_of_changes():
    """An import of 100,000 deals on L left the history 876,554 changes past its last ANALYZE with the default tenth."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('pipeline_deal', 'pipeline_dealstate')"
        )
        options = {name: dict(option.split("=") for option in settings) for name, settings in cursor.fetchall()}
    assert options["pipeline_deal"]["autovacuum_analyze_scale_factor"] == "0.02"
    assert options["pipeline_dealstate"]["autovacuum_analyze_scale_factor"] == "0.02"
    assert options["pipeline_dealstate"]["autovacuum_vacuum_insert_scale_factor"] == "0.02"
