"""The waterfall and slippage endpoints: their numbers, the drill-down links, and 400s naming the parameter."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.utils import timezone

from forecasting.periods import Period
from pipeline import services
from tests.api.conftest import client_for
from tests.pipeline.test_field_history import clock
from tests.queries import assert_query_count, capture_queries

pytestmark = pytest.mark.django_db


@pytest.fixture
def pushed(org, pipeline):
    """Two deals of this month since 40 days ago; between `from` and `to` one is pushed to next month."""
    month = Period.current("month")
    made = [
        services.create_deal(
            actor=org.rep,
            title=title,
            owner=org.rep,
            pipeline=pipeline,
            amount=Decimal(amount),
            expected_close_date=month.start,
            created_at=timezone.now() - timedelta(days=40),
        )
        for title, amount in (("Slips", "500.00"), ("Stays", "120.50"))
    ]
    at_from = clock()
    services.update_deal(deal=made[0], actor=org.rep, expected_close_date=month.end + timedelta(days=3))
    at_to = clock()
    return month, made, at_from, at_to


def when(month, at_from, at_to) -> str:
    return f"period={month.key}&from={quote(at_from.isoformat())}&to={quote(at_to.isoformat())}"


def test_the_waterfall_answers_its_buckets_and_links_their_deals(admin, pushed):
    month, (slips, _stays), at_from, at_to = pushed
    body = admin.get(f"/api/v1/forecast/waterfall/?{when(month, at_from, at_to)}").json()
    (row,) = body["results"]
    assert row["open_from"] == {"count": 2, "amount": "620.50"}
    assert row["open_to"] == {"count": 1, "amount": "120.50"}
    buckets = {bucket["name"]: bucket for bucket in row["buckets"]}
    assert (buckets["pushed_out"]["count"], buckets["pushed_out"]["amount"]) == (1, "500.00")
    assert (buckets["unchanged"]["count"], buckets["created"]["count"]) == (1, 0)
    deals = admin.get(buckets["pushed_out"]["deals"]).json()["results"]
    assert [(d["deal"], d["title"], d["to_close_date"]) for d in deals] == [
        (slips.pk, "Slips", str(month.end + timedelta(days=3)))
    ]


def test_slippage_counts_the_deals_that_left_the_period_late(admin, pushed):
    month, *_ = pushed
    (row,) = admin.get(f"/api/v1/metrics/slippage/?period={month.key}").json()["results"]
    assert row == {
        "key": None,
        "open_count": 2,
        "open_amount": "620.50",
        "slipped_count": 1,
        "slipped_amount": "500.00",
        "slipped_share": "0.8058",  # 500 / 620.50
    }


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("period=2026-13&from={a}&to={b}", "period"),
        ("period={p}&from={b}&to={a}", "from"),
        ("period={p}&from={a}&to={future}", "to"),
        ("period={p}&from=2001-01-01T00:00:00Z&to={b}", "from"),
        ("period={p}&from=yesterday&to={b}", "from"),
        ("period={p}&from={a}&to={b}&group=planet", "group"),
        ("period={p}&from={a}", "to"),
    ],
)
def test_bad_waterfall_input_answers_400_naming_the_parameter(admin, pushed, query, parameter):
    month, _, at_from, at_to = pushed
    future = quote((timezone.now() + timedelta(hours=1)).isoformat())
    path = query.format(p=month.key, a=quote(at_from.isoformat()), b=quote(at_to.isoformat()), future=future)
    response = admin.get(f"/api/v1/forecast/waterfall/?{path}")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [parameter]


@pytest.mark.parametrize(
    "extra, parameter",
    [("&bucket=sideways", "bucket"), ("", "bucket"), ("&bucket=won&group=owner", "key"), ("&bucket=won&key=3", "key")],
)
def test_bad_drill_down_input_answers_400_naming_the_parameter(admin, pushed, extra, parameter):
    response = admin.get(f"/api/v1/forecast/waterfall/deals/?{when(*[pushed[0], *pushed[2:]])}{extra}")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [parameter]


def test_slippage_of_a_period_not_begun_answers_400(admin):
    response = admin.get(f"/api/v1/metrics/slippage/?period={Period.current('month').next().key}")
    assert response.status_code == 400
    assert list(response.json()) == ["period"]


def test_the_dashboard_panel_shows_the_scope_s_waterfall_and_survives_bad_days(client, org, pushed):
    month, *_ = pushed
    client.force_login(org.manager)  # the manager of org.rep's team: the team's row
    page = client.get(f"/dashboard/waterfall/?period={month.key}&wf_from=someday&wf_to=1900-01-01")
    assert page.status_code == 200
    # An unreadable start is last week; an end before the start says so rather than failing.
    assert page.context["waterfall"].from_day == timezone.localdate() - timedelta(days=7)
    assert "pick a start before the end" in page.content.decode()
    page = client.get(f"/dashboard/waterfall/?period={month.key}")
    assert [bar["bucket"] for bar in page.context["waterfall_bars"]] == [None, "pushed_out", None]
    assert page.context["waterfall"].row.key == org.team.pk
    client.force_login(org.other_manager)  # another team's manager: nothing of this team
    page = client.get(f"/dashboard/waterfall/?period={month.key}")
    assert page.context["waterfall"].row is None
    assert "No open deals expected to close" in page.content.decode()


@pytest.mark.parametrize("role, group, expected", [("admin", "company", 9), ("manager", "team", 11)])
def test_the_waterfall_makes_the_same_queries_whatever_the_number_of_deals(org, pipeline, role, group, expected):
    # Token (1), when the history begins (1), the read in its transaction (savepoint, four settings, the statement,
    # release: 7); a manager's read first finds their teams and their members (2).
    month = Period.current("month")
    client = client_for(getattr(org, role))
    services.create_deal(actor=org.rep, title="First", owner=org.rep, pipeline=pipeline, amount=Decimal("5.00"))
    at_from = clock()  # inside the recorded history, which begins with the first deal
    captures, made = [], 0
    for count in (1, 6):
        for owner in [org.rep, org.teammate, org.other_rep] * count:
            deal = services.create_deal(
                actor=owner, title="D", owner=owner, pipeline=pipeline, amount=Decimal("10.00"),
                expected_close_date=month.start,
            )  # fmt: skip
            services.update_deal(deal=deal, actor=owner, amount=Decimal("20.00"))
        url = f"/api/v1/forecast/waterfall/?{when(month, at_from, clock())}&group={group}"
        client.get(url)  # the token's first use stamps last_used_at; measure the steady state
        with capture_queries() as captured:
            (row,) = client.get(url).json()["results"]
        made += count  # deals of each owner, all in the month at `to`
        assert row["open_to"]["count"] == (3 if role == "admin" else 2) * made
        captures.append(captured)
    assert_query_count(*captures, exactly=expected)
