"""Cursor pagination on every list (SPEC §4): walks that neither repeat nor skip, deep pages without OFFSET or
COUNT, `count` only when asked, and a 400 naming the parameter for anything else."""

import datetime
import threading
from decimal import Decimal

import pytest
import requests
from django.db import connection

from accounts.services import create_api_token
from pipeline import services
from pipeline.api import views
from pipeline.models import Deal
from tests.api.conftest import client_for
from tests.factories import make_deal, stage
from tests.queries import capture_queries

pytestmark = pytest.mark.django_db


def walk(client, url: str, **params) -> list[dict]:
    """Every row of a list, following `next` links."""
    rows, answer = [], client.get(url, params).json()
    rows += answer["results"]
    while answer["next"]:
        answer = client.get(answer["next"]).json()
        rows += answer["results"]
    return rows


def walk_back(client, url: str, **params) -> list[dict]:
    """Every row again, from the last page back to the first along `previous` links."""
    answer = client.get(url, params).json()
    while answer["next"]:
        answer = client.get(answer["next"]).json()
    rows = answer["results"]
    while answer["previous"]:
        answer = client.get(answer["previous"]).json()
        rows = answer["results"] + rows
    return rows


@pytest.fixture
def deals(org, pipeline):
    """23 deals of the rep with repeated amounts and some close dates missing, so that orders have ties and NULLs."""
    return [
        make_deal(
            owner=org.rep,
            pipeline=pipeline,
            amount=Decimal(100 * (n % 4)) if n % 5 else None,
            expected_close_date=datetime.date(2027, 1, 1 + n % 3) if n % 4 else None,
        )
        for n in range(23)
    ]


@pytest.mark.parametrize(
    "ordering",
    [None, "expected_close_date", "-expected_close_date", "amount", "-amount,expected_close_date", "created_at", "-id"],
)
def test_a_walk_gives_every_row_once_in_the_lists_order_forwards_and_back(org, deals, ordering):
    client = client_for(org.rep)
    params = {"page_size": 4, **({"ordering": ordering} if ordering else {})}
    forwards = walk(client, "/api/v1/deals/", **params)
    whole = client.get("/api/v1/deals/", {**params, "page_size": 200}).json()["results"]
    assert [row["id"] for row in forwards] == [row["id"] for row in whole]
    assert sorted(row["id"] for row in forwards) == sorted(deal.pk for deal in deals)
    assert [row["id"] for row in walk_back(client, "/api/v1/deals/", **params)] == [row["id"] for row in whole]


def test_the_first_page_has_no_previous_and_the_last_no_next(org, deals):
    client = client_for(org.rep)
    first = client.get("/api/v1/deals/", {"page_size": 20}).json()
    assert first["previous"] is None and first["next"] and "count" not in first
    last = client.get(first["next"]).json()
    assert len(last["results"]) == 3 and last["next"] is None and last["previous"]


def test_count_only_when_asked(org, deals):
    answer = client_for(org.rep).get("/api/v1/deals/", {"count": "true", "page_size": 5}).json()
    assert answer["count"] == 23 and len(answer["results"]) == 5


def test_a_deep_page_seeks_instead_of_counting_or_skipping(org, deals):
    client = client_for(org.rep)
    deep = client.get("/api/v1/deals/", {"page_size": 2}).json()
    for _ in range(8):
        deep = client.get(deep["next"]).json()
    with capture_queries() as queries:
        assert client.get(deep["next"]).status_code == 200
    sql = " ".join(query["sql"] for query in queries).upper()
    assert "OFFSET" not in sql and "COUNT(" not in sql


def test_rows_inserted_and_deleted_during_a_walk_shift_no_page(org, pipeline, deals):
    client = client_for(org.rep)
    before = {deal.pk for deal in deals}
    seen, answer = [], client.get("/api/v1/deals/", {"page_size": 5, "ordering": "id"}).json()
    seen += [row["id"] for row in answer["results"]]
    while answer["next"]:
        # Behind the walk: the oldest rows go, and new rows arrive at the end.
        Deal.objects.filter(pk__in=seen[:2]).delete()
        make_deal(owner=org.rep, pipeline=pipeline)
        answer = client.get(answer["next"]).json()
        seen += [row["id"] for row in answer["results"]]
    assert len(seen) == len(set(seen)) and before <= set(seen)


@pytest.mark.django_db(transaction=True)
def test_a_walk_while_others_create_move_and_delete_deals_returns_each_untouched_row_once(org, pipeline, live_server):
    """The default order (`-updated_at, -id`) while a writer works: no row twice, and every row that stayed as it
    was throughout the walk exactly once (a row changed during the walk moves to the head of the list, where the
    next `updated_since` sync finds it)."""
    deals = [make_deal(owner=org.rep, pipeline=pipeline) for _ in range(60)]
    touched, done = set(), threading.Event()
    qualification = stage(pipeline, "Qualification")

    def write() -> None:
        try:
            for n, deal in enumerate(deals[::3]):
                if done.is_set():
                    break
                touched.add(deal.pk)
                if n % 3 == 0:
                    Deal.objects.filter(pk=deal.pk).delete()  # as the admin deletes (the API has no DELETE)
                elif n % 3 == 1:
                    services.move_deal(deal=Deal.objects.get(pk=deal.pk), stage=qualification, actor=org.rep)
                else:
                    services.update_deal(deal=Deal.objects.get(pk=deal.pk), actor=org.rep, title=f"Renamed {n}")
                make_deal(owner=org.rep, pipeline=pipeline)
        finally:
            connection.close()

    _token, raw = create_api_token(user=org.rep, name="sync")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {raw}"
    writer = threading.Thread(target=write)
    seen = []
    answer = session.get(f"{live_server.url}/api/v1/deals/", params={"page_size": 3}, timeout=30).json()
    writer.start()
    while True:
        seen += [row["id"] for row in answer["results"]]
        if not answer["next"]:
            break
        answer = session.get(answer["next"], timeout=30).json()
    done.set()
    writer.join()
    untouched = {deal.pk for deal in deals} - touched
    assert touched, "the writer must have worked during the walk"
    assert len(seen) == len(set(seen))
    assert untouched <= set(seen)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "201"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJ2IjpbMV19"}, "cursor"),  # {"v": [1]}: not a position of this list
        ({"ordering": "owner__password"}, "ordering"),
        ({"ordering": "title,nonsense"}, "ordering"),
        ({"page": "2"}, "page"),
        ({"count": "maybe"}, "count"),
    ],
)
def test_bad_paging_parameters_are_400_naming_the_parameter(org, deals, params, parameter):
    answer = client_for(org.rep).get("/api/v1/deals/", params)
    assert answer.status_code == 400 and list(answer.json()) == [parameter]


def test_a_cursor_of_one_ordering_is_refused_under_another(org, deals):
    client = client_for(org.rep)
    next_link = client.get("/api/v1/deals/", {"page_size": 5, "ordering": "amount"}).json()["next"]
    cursor = next_link.split("cursor=")[1].split("&")[0]
    answer = client.get("/api/v1/deals/", {"page_size": 5, "ordering": "created_at", "cursor": cursor})
    assert answer.status_code == 400 and "another list or ordering" in answer.json()["cursor"][0]


def test_an_import_report_is_walked_by_position(org, deals):
    """The report is a list fixed once written: its cursor is a position in it."""
    from pipeline.models import ImportJob

    errors = [{"row": n, "column": "amount", "value": "x", "message": "Not a number."} for n in range(1, 8)]
    job = ImportJob.objects.create(created_by=org.rep, kind="deals", errors=errors, error_count=len(errors))
    rows = walk(client_for(org.rep), f"/api/v1/imports/{job.pk}/report/", page_size=3)
    assert [row["row"] for row in rows] == list(range(1, 8))


# --- Orders an index serves ---------------------------------------------------------------------------------------

BIG_LISTS = [
    views.DealViewSet,
    views.LeadViewSet,
    views.ActivityViewSet,
    views.OrganizationViewSet,
    views.ContactViewSet,
]


@pytest.mark.parametrize("viewset", BIG_LISTS, ids=lambda viewset: viewset.model.__name__)
def test_every_order_of_a_big_list_leads_an_index(viewset):
    # A key no index leads sorts every visible row for each page (docs/performance.md, "List orders"): on L, seconds.
    model = viewset.model
    leading = {"id"} | {
        model._meta.get_field(index.fields[0].lstrip("-")).name
        for index in model._meta.indexes
        if index.condition is None and index.fields  # not the expression indexes of search (trigrams)
    }
    assert set(viewset.ordering_fields) <= leading
    assert model._meta.ordering[0].lstrip("-") in leading


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("deals/?ordering=title", "amount, expected_close_date, created_at, updated_at, id"),
        ("deals/?ordering=-closed_at", "amount, expected_close_date, created_at, updated_at, id"),
        ("leads/?ordering=score", "created_at, updated_at, id"),
        ("activities/?ordering=due_at", "created_at, updated_at, id"),
        ("contacts/?ordering=first_name", "last_name, created_at, updated_at, id"),
    ],
)
def test_an_order_no_index_serves_answers_400_naming_those_that_are(org, path, allowed):
    response = client_for(org.rep).get(f"/api/v1/{path}")
    assert response.status_code == 400
    assert response.json() == {"ordering": [f"Order by one of: {allowed} (- for descending)."]}
