"""pipeline.StageState: the intervals of a stage's configured probability and default category, written by the
database on every path (SPEC §3a)."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from pipeline.models import Stage, StageState
from tests.factories import make_pipeline, stage

pytestmark = pytest.mark.django_db

BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


def states(of: Stage) -> list[tuple]:
    return list(
        StageState.objects.filter(stage_id=of.pk)
        .order_by("valid_from")
        .values_list("valid_from", "valid_to", "probability", "forecast_category")
    )


def test_a_new_stage_has_its_values_since_the_beginning():
    proposal = stage(make_pipeline(), "Proposal")
    assert states(proposal) == [(BEGINNING, None, 60, "best_case")]


def test_a_change_of_probability_or_category_by_raw_sql_closes_the_interval_and_opens_the_next():
    proposal = stage(make_pipeline(), "Proposal")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pipeline_stage SET probability = 45 WHERE id = %s", [proposal.pk])
        cursor.execute("UPDATE pipeline_stage SET rotting_days = 9 WHERE id = %s", [proposal.pk])  # not kept
        cursor.execute("UPDATE pipeline_stage SET forecast_category = 'commit' WHERE id = %s", [proposal.pk])
    (first, second, third) = states(proposal)
    assert first[0] == BEGINNING and first[1] == second[0] and first[2:] == (60, "best_case")
    assert second[1] == third[0] and second[2:] == (45, "best_case")
    assert third[1] is None and third[2:] == (45, "commit")


def test_a_deleted_stage_keeps_its_history_closed():
    pipeline = make_pipeline()
    extra = Stage.objects.create(pipeline=pipeline, name="Extra", order=99, probability=5)
    extra_pk = extra.pk
    extra.delete()
    (only,) = StageState.objects.filter(stage_id=extra_pk).values_list("valid_to", flat=True)
    assert only is not None
