"""The dashboard's drill-down: each number that is a sum over deals links to the deal table, and the table lists
exactly the deals behind it (computed here in plain Python from the same rows, by SPEC §3's definitions), with its
count and amount equal to the number. Per role: an admin (the company), a manager (their team), a rep (their own)."""

import json
import re
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from forecasting.services import recompute_metrics
from pipeline import services
from pipeline.models import Activity, Deal, StageChange, StageKind
from tests.factories import leave_untouched, make_qualified_deal, stage
from tests.forecasting.helpers import at, deal_with_history

pytestmark = pytest.mark.django_db

PERIOD = "2026-10"
START, END = date(2026, 10, 1), date(2026, 11, 1)


@pytest.fixture
def dataset(org, pipeline, other_pipeline, lost_reason):
    """Won, lost and open deals of two teams (East: rep, teammate; West: other_rep) across stages, in October 2026
    and around it, and in a second pipeline; then a recompute now (so "stale" is judged at the same instant)."""
    lost = {"lost_reason": lost_reason}

    def deal(owner, path, amount="1000", pipe=pipeline, **fields):
        return deal_with_history(
            owner=owner,
            pipeline=pipe,
            amount=Decimal(amount),
            path=path,
            **(lost if path[-1][0] == "Lost" else {}),
            **fields,
        )

    # East, rep
    deal(org.rep, [("Prospecting", "2026-10-01"), ("Proposal", "2026-10-05"), ("Won", "2026-10-11")], "1000")
    deal(org.rep, [("Prospecting", "2026-10-01"), ("Qualification", "2026-10-02"), ("Lost", "2026-10-04")], "400")
    deal(org.rep, [("Prospecting", "2026-08-01"), ("Won", "2026-09-20")], "700")  # closed before the period
    deal(
        org.rep,
        [("Prospecting", "2026-09-01"), ("Negotiation", "2026-09-10")],
        "3000",
        expected_close_date="2026-10-20",
    )
    deal(org.rep, [("Discovery", "2026-10-02"), ("Proposal", "2026-10-06")], "2500", expected_close_date="2026-10-31")
    # Expected after it; and nothing has happened to it for 40 days: it rots by inactivity too.
    leave_untouched(deal(org.rep, [("Prospecting", "2026-09-01")], "600", expected_close_date="2026-11-10"), days=40)
    # East, teammate
    deal(org.teammate, [("Prospecting", "2026-10-01"), ("Won", "2026-10-31 23:59")], "5000")
    deal(org.teammate, [("Discovery", "2026-10-03")], "800", expected_close_date="2026-10-01")
    deal(  # moved back: it reached Negotiation all the same
        org.teammate,
        [("Prospecting", "2026-10-01"), ("Negotiation", "2026-10-05"), ("Qualification", "2026-10-08")],
        "900",
        expected_close_date="2026-10-15",
    )
    deal(org.teammate, [("Prospecting", "2026-10-01"), ("Won", "2026-11-01 00:00")], "111")  # closed in November
    # West
    deal(org.other_rep, [("Prospecting", "2026-09-15"), ("Won", "2026-10-12")], "2000")
    deal(org.other_rep, [("Prospecting", "2026-10-01"), ("Negotiation", "2026-10-03"), ("Lost", "2026-10-20")], "1500")
    deal(
        org.other_rep,
        [("Prospecting", "2026-09-01"), ("Negotiation", "2026-09-09")],
        "4000",
        expected_close_date="2026-10-09",
    )
    deal(org.other_rep, [("Proposal", "2026-10-02")], "1200", expected_close_date="2026-11-30")
    # Another pipeline: in the forecast and the outcomes, not in the first pipeline's funnel.
    deal(org.rep, [("Prospecting", "2026-10-01"), ("Won", "2026-10-15")], "300", pipe=other_pipeline)
    # Fresh, with a next step planned: not stale (entered its stage now, an activity due tomorrow).
    fresh = make_qualified_deal(
        owner=org.rep, pipeline=pipeline, amount=Decimal("50"), expected_close_date="2026-10-30"
    )
    services.log_activity(
        actor=org.rep, kind="call", subject="Call back", deal=fresh, due_at=timezone.now() + timedelta(days=1)
    )
    recompute_metrics()


# --- Plain Python over the same rows ------------------------------------------------------------------------------


def local_day(instant) -> date:
    return timezone.localtime(instant).date()


def in_scope(deal: Deal, user, org) -> bool:
    if user == org.admin:
        return True
    if user == org.manager:
        return deal.owner.team_id == org.team.pk
    return deal.owner_id == user.pk


def closed_in_period(deal: Deal) -> bool:
    return deal.closed_at is not None and START <= local_day(deal.closed_at) < END


def expected_in_period(deal: Deal) -> bool:
    return (
        deal.status == StageKind.OPEN
        and deal.expected_close_date is not None
        and (START <= deal.expected_close_date < END)
    )


def reached(deal: Deal, target) -> bool:
    """SPEC §3: the deal entered `target` or a later open stage (StageChange), or it was won."""
    if deal.pipeline_id != target.pipeline_id:
        return False
    if deal.status == StageKind.WON:
        return True
    orders = [
        change.to_stage.order
        for change in StageChange.objects.filter(deal=deal).select_related("to_stage")
        if change.to_stage.kind == StageKind.OPEN
    ]
    return max(orders, default=0) >= target.order


def stale_reasons(deal: Deal, now) -> set[str]:
    """SPEC §3 and §3a: the reasons an open deal is stale for (none when closed)."""
    if deal.status != StageKind.OPEN:
        return set()
    rotting = timedelta(days=deal.stage.rotting_days)
    next_step = Activity.objects.filter(deal=deal, done_at__isnull=True, due_at__gt=now).exists()
    return {
        reason
        for reason, holds in (
            ("in_stage_too_long", now - deal.stage_entered_at > rotting),
            ("no_next_step", not next_step),
            ("no_activity", now - deal.last_touched_at > rotting),
        )
        if holds
    }


def stale(deal: Deal, now) -> bool:
    return bool(stale_reasons(deal, now))


def expected(name: str, user, org, pipeline, **extra) -> set[int]:
    deals = [d for d in Deal.objects.select_related("owner", "stage") if in_scope(d, user, org)]
    now = timezone.now()
    keep = {
        "won": lambda d: d.status == StageKind.WON and closed_in_period(d),
        "outcomes_won": lambda d: d.status == StageKind.WON and closed_in_period(d),
        "lost": lambda d: d.status == StageKind.LOST and closed_in_period(d),
        "win_rate": closed_in_period,
        "pipeline": expected_in_period,
        "commit": lambda d: expected_in_period(d) and d.forecast_category == "commit",
        "best_case": lambda d: expected_in_period(d) and d.forecast_category in ("commit", "best_case"),
        "stale": lambda d: stale(d, now),
        "stale-in_stage_too_long": lambda d: "in_stage_too_long" in stale_reasons(d, now),
        "stale-no_next_step": lambda d: "no_next_step" in stale_reasons(d, now),
        "stale-no_activity": lambda d: "no_activity" in stale_reasons(d, now),
        "past_due": lambda d: (
            d.status == StageKind.OPEN
            and d.expected_close_date is not None
            and d.expected_close_date < timezone.localdate()
        ),
        "funnel": lambda d: (
            reached(d, extra["stage"]) and (not extra.get("cohort") or START <= local_day(d.created_at) < END)
        ),
        "rep": lambda d: d.owner_id == extra.get("owner") and closed_in_period(d),
    }[name]
    return {d.pk for d in deals if keep(d)}


# --- The pages ----------------------------------------------------------------------------------------------------


class DrillLinks(HTMLParser):
    """Every `<a data-drill=...>` of a page: (its data attributes, its href, its text)."""

    def __init__(self):
        super().__init__()
        self.links: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and "data-drill" in attrs:
            self._open = {**attrs, "text": ""}
            self.links.append(self._open)

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if tag == "a":
            self._open = None


def drill_links(html: str) -> list[dict]:
    parser = DrillLinks()
    parser.feed(html)
    return parser.links


def table(client, href: str) -> tuple[set[int], int, Decimal]:
    """The ids the deal table lists at `href` (one page of 200), and its totals row: count and amount."""
    response = client.get(href + "&page_size=200")
    assert response.status_code == 200
    html = response.content.decode()
    ids = {int(pk) for pk in re.findall(r'<tr id="deal-row-(\d+)"', html)}
    total = re.search(r'id="deal-total" data-count="(\d+)" data-amount="([\d.]+)"', html)
    assert total, "the deal table shows its totals"
    assert "error" not in re.search(r'<div id="deal-results".*?</div>', html, re.S).group(0)
    return ids, int(total.group(1)), Decimal(total.group(2))


def amount_of(ids: set[int]) -> Decimal:
    return sum((d.amount for d in Deal.objects.filter(pk__in=ids)), Decimal(0))


def dashboard(client, user, **params) -> tuple[str, dict]:
    client.force_login(user)
    response = client.get("/dashboard/", {"period": PERIOD, **params})
    assert response.status_code == 200
    html = response.content.decode()
    data = json.loads(re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', html, re.S)[1])
    return html, data


def number(text: str) -> Decimal:
    return Decimal(re.sub(r"[^\d.]", "", text))


ROLES = ["admin", "manager", "rep"]


@pytest.mark.parametrize("role", ROLES)
def test_every_kpi_opens_exactly_its_deals_and_the_totals_equal_the_number(client, org, pipeline, dataset, role):
    user = getattr(org, role)
    html, data = dashboard(client, user)
    links = {link["data-drill"]: link for link in drill_links(html) if link["data-drill"] not in ("funnel", "rep")}
    assert set(links) == {
        "won", "outcomes_won", "lost", "win_rate", "commit", "best_case", "pipeline", "stale", "past_due",
        "stale-in_stage_too_long", "stale-no_next_step", "stale-no_activity",
    }  # fmt: skip
    for name, link in links.items():
        ids, count, amount = table(client, link["href"])
        want = expected(name, user, org, pipeline)
        assert want and ids == want, name
        assert count == len(want) and amount == amount_of(want), name
        if name in ("commit", "best_case", "pipeline"):
            assert number(link["text"]) == amount, name  # shown in full ("12,345.00")
        elif name in ("outcomes_won", "lost", "past_due"):
            assert int(link["text"]) == count, name
        elif name == "stale":
            assert link["text"].startswith(f"{count} in all"), name
        elif name.startswith("stale-"):
            assert int(link["text"].split()[0]) == count, name
        elif name == "win_rate":
            won = expected("won", user, org, pipeline)
            assert link["text"].strip() == f"{round(100 * len(won) / len(want))}%"
    # The forecast chart's bars open the same tables as the figures beside them; the weighted ones link nowhere.
    bars = data["forecast"]["links"]
    assert bars[:4] == [links[name]["href"] for name in ("won", "commit", "best_case", "pipeline")]
    assert bars[4:] == [None, None]
    # The won KPI reads in short ("6.3k"): its deal count beside it is exact.
    ids, count, amount = table(client, links["won"]["href"])
    assert count == int(links["outcomes_won"]["text"])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("cohort", ["all", "period"])
def test_each_funnel_stage_opens_the_deals_that_reached_it(client, org, pipeline, dataset, role, cohort):
    user = getattr(org, role)
    html, data = dashboard(client, user, pipeline=pipeline.pk, cohort=cohort)
    links = [link for link in drill_links(html) if link["data-drill"] == "funnel"]
    open_stages = list(pipeline.stages.filter(kind=StageKind.OPEN).order_by("order"))
    assert [int(link["data-stage"]) for link in links] == [s.pk for s in open_stages]
    assert data["funnel"]["links"] == [link["href"] for link in links]
    for link, target in zip(links, open_stages, strict=True):
        ids, count, _amount = table(client, link["href"])
        want = expected("funnel", user, org, pipeline, stage=target, cohort=cohort == "period")
        assert want and ids == want, target.name
        assert count == int(link["text"]) == len(want), target.name
    # Moved back from Negotiation, a deal still counts as having reached it (and every stage before).
    if role != "rep" and cohort == "all":
        negotiation = stage(pipeline, "Negotiation")
        moved_back = Deal.objects.get(amount=Decimal("900"))
        href = next(link["href"] for link in links if int(link["data-stage"]) == negotiation.pk)
        assert moved_back.pk in table(client, href)[0]


@pytest.mark.parametrize("role", ROLES)
def test_each_reps_row_opens_the_deals_they_closed_in_the_period(client, org, pipeline, dataset, role):
    user = getattr(org, role)
    html, _data = dashboard(client, user)
    links = [link for link in drill_links(html) if link["data-drill"] == "rep"]
    assert links
    for link in links:
        owner = int(link["data-owner"])
        ids, count, _amount = table(client, link["href"])
        want = expected("rep", user, org, pipeline, owner=owner)
        assert ids == want
        won = len(expected("won", user, org, pipeline) & want)
        assert link["text"].replace(" ", "") == f"{won}/{count}"


def test_the_links_carry_the_period_and_the_scope(client, org, dataset):
    html, _data = dashboard(client, org.manager)
    query = parse_qs(urlsplit(next(link["href"] for link in drill_links(html) if link["data-drill"] == "won")).query)
    assert query == {
        "team": [str(org.team.pk)],
        "closed_after": ["2026-10-01"],
        "closed_before": ["2026-11-01"],
        "status": ["won"],
    }


def test_a_deal_closed_at_the_last_instant_of_the_period_counts_and_one_at_its_end_does_not(client, org, dataset):
    client.force_login(org.admin)
    ids, _count, _amount = table(client, "/deals/?closed_after=2026-10-01&closed_before=2026-11-01")
    assert Deal.objects.get(amount=Decimal("5000")).pk in ids
    assert Deal.objects.get(amount=Decimal("111")).pk not in ids
    assert at("2026-11-01 00:00") == Deal.objects.get(amount=Decimal("111")).closed_at


# --- The API's deal list reads the same filters (one definition) ---------------------------------------------------


def api_ids(api, **params) -> set[int]:
    response = api.get("/api/v1/deals/", {"page_size": 200, **params})
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.mark.parametrize("role", ROLES)
def test_the_api_lists_the_same_deals_as_each_drill_down_link(client, org, pipeline, dataset, role):
    from tests.api.conftest import client_for

    user = getattr(org, role)
    html, _data = dashboard(client, user, pipeline=pipeline.pk)
    api = client_for(user)
    for link in drill_links(html):
        params = parse_qs(urlsplit(link["href"]).query)
        assert api_ids(api, **params) == table(client, link["href"])[0], link["data-drill"]


def test_reached_stage_of_a_won_or_lost_stage_or_another_pipeline(client, org, pipeline, other_pipeline, dataset):
    from tests.api.conftest import client_for

    api = client_for(org.admin)
    # Only open stages have a funnel bar: a closed stage's id matches nothing rather than every deal.
    assert api_ids(api, reached_stage=stage(pipeline, "Won").pk) == set()
    first = stage(other_pipeline, "Prospecting")
    assert api_ids(api, reached_stage=first.pk) == set(
        Deal.objects.filter(pipeline=other_pipeline).values_list("pk", flat=True)
    )


def test_stale_false_is_the_complement_and_categories_repeat(org, dataset):
    from tests.api.conftest import client_for

    api = client_for(org.admin)
    every = api_ids(api)
    assert api_ids(api, stale="true") | api_ids(api, stale="false") == every
    assert api_ids(api, stale="true") & api_ids(api, stale="false") == set()
    both = api_ids(api, forecast_category=["commit", "best_case"])
    assert both == api_ids(api, forecast_category="commit") | api_ids(api, forecast_category="best_case")
    assert both == set(Deal.objects.filter(forecast_category__in=["commit", "best_case"]).values_list("pk", flat=True))


def test_bad_drill_down_filter_values_are_400_naming_each_filter(org, dataset):
    from tests.api.conftest import client_for

    response = client_for(org.rep).get(
        "/api/v1/deals/?closed_after=soon&closed_before=2026-13-01&created_after=x&created_before=1.5"
        "&forecast_category=maybe&reached_stage=1.5&stale=perhaps"
    )
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {
        "closed_after", "closed_before", "created_after", "created_before", "forecast_category", "reached_stage",
        "stale",
    }  # fmt: skip
    assert all(isinstance(messages, list) and messages for messages in errors.values())


def test_the_deal_table_names_a_bad_drill_down_filter(client, org, dataset):
    client.force_login(org.admin)
    html = client.get("/deals/?closed_after=soon&stale=perhaps").content.decode()
    assert 'role="alert"' in html and "closed_after" in html.replace("Closed after", "closed_after")


def test_the_table_names_the_drill_down_filters_and_its_filter_bar_keeps_them(client, org, dataset):
    html, _data = dashboard(client, org.manager)
    href = next(link["href"] for link in drill_links(html) if link["data-drill"] == "best_case")
    page = client.get(href).content.decode()
    form = re.search(r'<form id="deal-filters".*?</form>', page, re.S).group(0)
    hidden = set(re.findall(r'<input type="hidden" name="(\w+)" value="([\w-]+)">', form))
    assert {("forecast_category", "commit"), ("forecast_category", "best_case")} <= hidden
    assert 'id="drill-filters"' in form and "forecast category best_case" in form
