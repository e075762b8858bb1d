"""A change racing a deletion of the same record (issue 20, item 8a): whichever commits first, the other answers as
if it had come a moment later (the change 404 after the deletion, the deletion 204 after the change), never 500
and never 403 for a record the caller may change.

Each round releases the two requests at the same instant from threads with their own connections and clients, on
a record created for that round; 20 rounds make the interleavings that answered 500 come up.
"""

from collections import Counter
from datetime import date

import pytest
from django.db import transaction

from config.exceptions import EXTERNAL_ID_TAKEN
from forecasting.models import Quota
from pipeline.models import Deal
from pipeline.webhooks.models import WebhookSubscription
from tests.api.conftest import client_for
from tests.api.test_concurrency import run_together
from tests.factories import make_deal, make_pipeline

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 20


def client_of(user):
    """A client that answers an unhandled exception with the 500 a server would give, as seen from outside."""
    client = client_for(user)
    client.raise_request_exception = False
    return client


def race(make_record, change, delete) -> list[tuple[int, int]]:
    """(change status, delete status) of each round, and the record gone after each."""
    answers = []
    for _ in range(ROUNDS):
        record = make_record()
        change_response, delete_status = run_together(
            [lambda record=record: change(record), lambda record=record: delete(record)]
        )
        answers.append((change_response.status_code, delete_status))
        assert not type(record).objects.filter(pk=record.pk).exists()
    return answers


def assert_answers(answers: list[tuple[int, int]], *, deleted: set[int]) -> None:
    counts = Counter(answers)  # (change, delete) -> rounds, in the message of a failure
    assert {change for change, _ in answers} <= {200, 404}, counts
    assert {delete for _, delete in answers} <= deleted, counts


def a_subscription(org):
    return WebhookSubscription.objects.create(
        owner=org.rep, url="https://hooks.example.com/crm", events=["deal.created"], secret="s" * 32
    )


def a_quota(org):
    return Quota.objects.create(user=org.rep, period_start=date(2027, 1, 1), period_end=date(2027, 4, 1), amount=1)


@pytest.mark.parametrize(
    ("url", "make_record", "change", "writer"),
    [
        ("/api/v1/webhooks/", a_subscription, {"description": "Sync"}, "rep"),
        ("/api/v1/quotas/", a_quota, {"amount": "2.00"}, "admin"),
    ],
    ids=["webhook subscription", "quota"],
)
def test_patch_racing_delete_answers_200_or_404_and_the_delete_204_or_404(org, url, make_record, change, writer):
    patcher, deleter = client_of(getattr(org, writer)), client_of(getattr(org, writer))

    answers = race(
        lambda: make_record(org),
        lambda record: patcher.patch(f"{url}{record.pk}/", change, format="json"),
        lambda record: deleter.delete(f"{url}{record.pk}/").status_code,
    )

    assert_answers(answers, deleted={204, 404})


def test_patch_racing_deletion_of_a_deal_answers_200_or_404(org):
    # Deals are not deleted through the API; the admin (or a data clean-up) deletes them while an integration edits.
    with transaction.atomic():  # the won/lost trigger is checked at commit: the stages come in one go
        pipeline = make_pipeline(name="Races", is_default=True)
    patcher = client_of(org.rep)

    def delete(record):
        with transaction.atomic():
            deleted, _ = Deal.objects.filter(pk=record.pk).delete()
        return 204 if deleted else 404

    answers = race(
        lambda: make_deal(owner=org.rep, pipeline=pipeline),
        lambda record: patcher.patch(f"/api/v1/deals/{record.pk}/", {"title": "Renamed"}, format="json"),
        delete,
    )

    assert_answers(answers, deleted={204})


def test_two_creates_with_one_external_id_answer_201_and_the_400_of_a_taken_id(org):
    # Two integrations push the same record at once: both find the external id free, one insert then finds it taken.
    # The later one answers as it would a moment later (the serializer's own 400), never 500.
    with transaction.atomic():
        pipeline = make_pipeline(name="Races", is_default=True)
    clients = [client_of(org.rep), client_of(org.rep)]
    answers = []
    for round_ in range(ROUNDS):
        body = {"title": "Pushed", "pipeline": pipeline.pk, "external_id": f"crm-{round_}"}
        responses = run_together(
            [lambda client=client, body=body: client.post("/api/v1/deals/", body, format="json") for client in clients]
        )
        answers.append(sorted(response.status_code for response in responses))
        refused = [response.json() for response in responses if response.status_code == 400]
        assert all(error == {"external_id": [EXTERNAL_ID_TAKEN]} for error in refused), refused
        assert Deal.objects.filter(external_id=f"crm-{round_}").count() == 1
    assert {tuple(answer) for answer in answers} == {(201, 400)}, Counter(map(tuple, answers))
