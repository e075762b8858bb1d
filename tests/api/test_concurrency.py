"""Concurrent writes to one deal (SPEC §7): If-Match lets exactly one of two writers holding the same ETag win, and
no move is ever lost from the deal's history."""

import itertools
import threading

import pytest
from django.db import connection, transaction

from pipeline.models import Deal, StageChange
from tests.api.conftest import client_for
from tests.factories import make_pipeline, make_qualified_deal, stage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pipeline(transactional_db):
    # The won/lost trigger is checked at commit; here every statement commits, so the stages must come in one go.
    with transaction.atomic():
        return make_pipeline(name="Concurrent", is_default=True)


def run_together(requests) -> list:
    """Run the callables in threads released at the same instant; return their results in order."""
    barrier = threading.Barrier(len(requests))
    results = [None] * len(requests)

    def run(index, request):
        try:
            barrier.wait()
            results[index] = request()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, request)) for index, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_movers_with_the_same_etag_one_wins_and_the_other_gets_412(org, pipeline):
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    rep, manager = client_for(org.rep), client_for(org.manager)
    etag = rep.get(f"/api/v1/deals/{deal.pk}/")["ETag"]
    targets = [stage(pipeline, "Discovery"), stage(pipeline, "Proposal")]

    responses = run_together(
        [
            lambda client=client, target=target: client.post(
                f"/api/v1/deals/{deal.pk}/move/", {"stage": target.pk}, format="json", HTTP_IF_MATCH=etag
            )
            for client, target in zip([rep, manager], targets, strict=True)
        ]
    )

    assert sorted(response.status_code for response in responses) == [200, 412]
    winner = targets[[response.status_code for response in responses].index(200)]
    deal.refresh_from_db()
    assert deal.stage_id == winner.pk and deal.version == 2
    history = list(StageChange.objects.filter(deal=deal).order_by("id").values_list("from_stage", "to_stage"))
    assert history == [(None, deal.stage_changes.first().to_stage_id), (history[0][1], winner.pk)]


def test_concurrent_moves_without_if_match_all_land_in_history(org, pipeline):
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    client = client_for(org.rep)
    names = ["Qualification", "Discovery", "Proposal", "Negotiation", "Discovery", "Proposal"]

    stage_ids = [stage(pipeline, name).pk for name in names]

    responses = run_together(
        [
            lambda stage_id=stage_id: client.post(f"/api/v1/deals/{deal.pk}/move/", {"stage": stage_id}, format="json")
            for stage_id in stage_ids
        ]
    )

    assert all(response.status_code == 200 for response in responses)
    deal = Deal.objects.get(pk=deal.pk)
    history = list(StageChange.objects.filter(deal=deal).order_by("changed_at", "id"))
    # Every move that changed the stage is recorded, and the history is an unbroken chain ending where the deal is.
    for before, after in itertools.pairwise(history):
        assert after.from_stage_id == before.to_stage_id
    assert history[-1].to_stage_id == deal.stage_id
    # Each move that changed the stage bumped the version once and wrote one StageChange: none was lost.
    assert len(history) == deal.version
