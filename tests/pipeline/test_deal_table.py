"""The deal table (/deals/, issue 17 item 10): the visible deals filtered like the API list, sorted by indexed keys and
walked by cursor, a column chooser, saved views, a CSV export of exactly what is shown, and bulk changes with a
result per deal; visibility per role (SPEC §2) and a query count constant in the number of rows."""

import csv
import io
import re
from datetime import date
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from accounts import services as account_services
from accounts.models import User
from pipeline import selectors, services
from pipeline.models import Deal, Pipeline, SavedDealView, Stage
from pipeline.pick_lists import PickLists
from pipeline.templatetags.crm import deal_count_text
from tests.factories import make_deal, make_pipeline, make_qualified_deal, stage
from tests.queries import assert_query_count, capture_queries

pytestmark = pytest.mark.django_db

URL = reverse("pipeline:deal_table")


def logged_in(client, user):
    client.force_login(user)
    return client


def shown_ids(response) -> list[int]:
    """The deal ids of the table's rows, in their order."""
    assert response.status_code == 200
    return [int(pk) for pk in re.findall(r'<tr id="deal-row-(\d+)"', response.content.decode())]


def shown_cells(response) -> list[list[str]]:
    """The table's cells as the export writes them (`data-value`), row by row, without the tick box."""
    rows = re.findall(r'<tr id="deal-row-\d+".*?</tr>', response.content.decode(), flags=re.S)
    return [re.findall(r'data-value="([^"]*)"', row) for row in rows]


def shown_columns(response) -> list[str]:
    return re.findall(r'<th scope="col" data-column="([^"]+)"', response.content.decode())


def exported(client, query: str) -> list[list[str]]:
    response = client.get(reverse("pipeline:deal_table_export") + "?" + query)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


# --- Visibility ----------------------------------------------------------------------------------------------------


def test_each_role_sees_exactly_the_deals_it_may_see(client, org, pipeline):
    deals = {user: make_deal(owner=user, pipeline=pipeline) for user in (org.rep, org.teammate, org.other_rep)}
    expected = {
        org.rep: {deals[org.rep].pk},
        org.manager: {deals[org.rep].pk, deals[org.teammate].pk},
        org.other_manager: {deals[org.other_rep].pk},
        org.admin: {deal.pk for deal in deals.values()},
    }
    for user, ids in expected.items():
        assert set(shown_ids(logged_in(client, user).get(URL))) == ids, user
        # The export holds the same deals, whatever the filters in its address try.
        rows = exported(client, f"owner={deals[org.other_rep].owner_id}")
        assert len(rows) - 1 == len(ids & {deals[org.other_rep].pk}), user


def test_a_rep_moved_into_a_managers_team_shows_in_the_managers_table_at_once(client, org, pipeline):
    """The table reads the visible owners from the pick lists' cache, as constants: a team change is a new version."""
    moved = make_deal(owner=org.other_rep, pipeline=pipeline)
    kept = make_deal(owner=org.rep, pipeline=pipeline)
    client = logged_in(client, org.manager)
    assert shown_ids(client.get(URL)) == [kept.pk]
    with capture_queries() as queries:
        client.get(URL)
    assert any('"owner_id" = ANY(' in sql and "ARRAY(SELECT" not in sql for sql in queries.sql), queries.listing()
    account_services.change_user_team(user=org.other_rep, team=org.team, actor=org.admin)
    assert set(shown_ids(client.get(URL))) == {kept.pk, moved.pk}
    account_services.change_user_team(user=org.other_rep, team=org.other_team, actor=org.admin)
    assert shown_ids(client.get(URL)) == [kept.pk]


def test_anonymous_visitors_go_to_the_login_page(client):
    for url in [URL, reverse("pipeline:deal_table_export")]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_bulk_change_leaves_deals_the_user_may_not_change_as_they_were(client, org, pipeline):
    mine = make_deal(owner=org.rep, pipeline=pipeline, title="Mine")
    theirs = make_deal(owner=org.other_rep, pipeline=pipeline, title="Theirs")
    response = logged_in(client, org.rep).post(
        reverse("pipeline:deal_table_bulk"),
        {"deal": [mine.pk, theirs.pk], "action": "close_date", "expected_close_date": "2027-03-31"},
        HTTP_HX_REQUEST="true",
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Theirs" not in page and "1 deal you may not change" in page
    assert Deal.objects.get(pk=mine.pk).expected_close_date == date(2027, 3, 31)
    assert Deal.objects.get(pk=theirs.pk).expected_close_date is None


def test_deleting_another_users_saved_view_answers_404(client, org):
    view = services.save_deal_view(owner=org.other_rep, name="Big ones", query="amount_min=1000")
    response = logged_in(client, org.rep).post(reverse("pipeline:deal_view_delete", args=[view.pk]))
    assert response.status_code == 404 and SavedDealView.objects.filter(pk=view.pk).exists()


# --- Filters, search and sorting -----------------------------------------------------------------------------------


def test_the_filters_narrow_the_table_like_plain_python_over_the_same_deals(client, org, pipeline, other_pipeline):
    rows = [
        make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal(amount), expected_close_date=close, title=title)
        for amount, close, title in [
            ("500", "2027-01-10", "Acme small"),
            ("5000", "2027-02-10", "Acme big"),
            ("9000", "2027-05-01", "Zebra"),
            ("20000", None, "Huge"),
        ]
    ]
    make_deal(owner=org.rep, pipeline=other_pipeline, amount=Decimal("6000"), title="Renewal")
    make_deal(owner=org.teammate, pipeline=pipeline, amount=Decimal("6000"), title="Teammate's")
    services.move_deal(deal=rows[2], actor=org.rep, stage=stage(pipeline, "Discovery"))
    client = logged_in(client, org.manager)

    def expect(query: str, keep) -> None:
        deals = list(selectors.visible_deals(org.manager))
        expected = {deal.pk for deal in deals if keep(deal)}
        assert set(shown_ids(client.get(f"{URL}?{query}"))) == expected, query

    expect(f"pipeline={pipeline.pk}", lambda d: d.pipeline_id == pipeline.pk)
    expect(f"stage={stage(pipeline, 'Discovery').pk}", lambda d: d.stage.name == "Discovery")
    expect("status=open", lambda d: d.status == "open")
    expect(f"owner={org.teammate.pk}", lambda d: d.owner_id == org.teammate.pk)
    expect(f"team={org.team.pk}", lambda d: d.owner.team_id == org.team.pk)
    expect("amount_min=1000&amount_max=9000", lambda d: d.amount is not None and 1000 <= d.amount <= 9000)
    expect(
        "expected_close_after=2027-02-01&expected_close_before=2027-05-01",
        lambda d: d.expected_close_date is not None and date(2027, 2, 1) <= d.expected_close_date <= date(2027, 5, 1),
    )
    expect("q=acme", lambda d: "acme" in d.title.lower())
    expect(f"q=acme&amount_min=1000&pipeline={pipeline.pk}", lambda d: d.title == "Acme big")


def test_a_bad_filter_is_named_and_filters_nothing(client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    response = logged_in(client, org.rep).get(f"{URL}?amount_min=lots&sort=title")
    assert shown_ids(response) == [deal.pk]
    assert "Amount from" in response.content.decode() and "Sort by" in response.content.decode()
    # A pipeline that is no id, and an owner the rep is not offered: each named by its label, nothing half-shown.
    response = logged_in(client, org.rep).get(f"{URL}?pipeline=x&owner={org.other_rep.pk}")
    assert response.status_code == 200
    errors = re.search(r'<p class="error" role="alert">(.*?)</p>', response.content.decode(), flags=re.S).group(1)
    assert "Pipeline:" in errors and "Owner:" in errors and "None:" not in errors, errors


@pytest.mark.parametrize("key", selectors.DEAL_TABLE_SORTS)
def test_every_sort_orders_like_python_and_pages_walk_every_deal_once(client, org, pipeline, key):
    amounts = ["300", None, "100", "300", "200", None, "50"]
    closes = ["2027-01-03", "2027-01-01", None, "2027-01-02", None, "2027-01-05", "2027-01-04"]
    for amount, close in zip(amounts, closes, strict=True):
        make_deal(owner=org.rep, pipeline=pipeline, amount=amount and Decimal(amount), expected_close_date=close)
    client = logged_in(client, org.rep)
    for descending in (False, True):
        deals = list(Deal.objects.all())
        present = sorted((d for d in deals if getattr(d, key) is not None), key=lambda d: (getattr(d, key), d.pk))
        absent = sorted((d for d in deals if getattr(d, key) is None), key=lambda d: d.pk)
        # PostgreSQL's default: NULLs last going up, first going down (what the indexes serve).
        ordered = absent[::-1] + present[::-1] if descending else present + absent
        expected = [d.pk for d in ordered]
        url, walked = f"{URL}?sort={'-' if descending else ''}{key}&page_size=3", []
        while url:
            response = client.get(url)
            walked += shown_ids(response)
            found = re.search(r'<a href="([^"]+)" rel="next">', response.content.decode())
            url = found and found.group(1).replace("&amp;", "&")
        assert walked == expected, (key, descending)


@pytest.mark.parametrize("username", ["rep", "manager", "admin"])
def test_a_filtered_walk_shows_each_visible_deal_once_and_totals_them_exactly(client, org, pipeline, username):
    # The page's ids are picked before the relations are joined (config.rest.ApiPagination), and the total is read
    # from the visibility indexes: both must still give exactly the visible deals of the filter, page after page.
    prospecting, discovery, won = (stage(pipeline, name) for name in ("Prospecting", "Discovery", "Won"))
    amounts = ["1200.50", None, "300", "999.99", "45000", "7", None, "2500"]
    for index, amount in enumerate(amounts):
        for owner in (org.rep, org.teammate, org.other_rep):
            deal = make_qualified_deal(owner=owner, pipeline=pipeline, amount=amount and Decimal(amount))
            if index % 3 == 2 or index == 7:
                services.move_deal(deal=deal, actor=owner, stage=won if index == 7 else discovery)
    user = getattr(org, username)
    client = logged_in(client, user)
    for chosen, status in ((prospecting, ""), (discovery, "open"), (won, "won"), (discovery, "won")):
        deals = [
            deal
            for deal in selectors.visible_deals(user)
            if deal.pipeline_id == pipeline.pk and deal.stage_id == chosen.pk and (not status or deal.status == status)
        ]
        expected = [deal.pk for deal in sorted(deals, key=lambda deal: (deal.updated_at, deal.pk), reverse=True)]
        url = f"{URL}?pipeline={pipeline.pk}&stage={chosen.pk}&status={status}&page_size=2"
        walked, totals = [], set()
        while url:
            response = client.get(url)
            walked += shown_ids(response)
            found = re.search(r'id="deal-total" data-count="(\d+)" data-amount="([^"]*)"', response.content.decode())
            totals.add(found.groups() if found else None)
            found = re.search(r'<a href="([^"]+)" rel="next">', response.content.decode())
            url = found and found.group(1).replace("&amp;", "&")
        assert walked == expected, (username, chosen.name, status)
        amount = sum((deal.amount for deal in deals if deal.amount is not None), Decimal(0))
        assert totals == {(str(len(deals)), str(amount))}, (username, chosen.name, status)


def test_an_estimate_stands_for_the_count_above_the_limit(org, pipeline):
    for _ in range(5):
        make_deal(owner=org.rep, pipeline=pipeline)
    deals = selectors.visible_deals(org.admin)
    # Counted, their amount summed (deals without one add nothing); estimated: no amount is claimed.
    assert selectors.deal_count(deals, limit=10) == selectors.RowCount(5, True, Decimal(0))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE pipeline_deal")  # the statistics the estimate is read from
    assert selectors.deal_count(deals, limit=3) == selectors.RowCount(5, False)


def two_pipelines_of_five_deals(org, pipeline) -> list[Deal]:
    """Five deals of the rep in `pipeline`, five of the other rep in another, each five in their first stage."""
    with transaction.atomic():  # the won/lost trigger is checked at commit: the stages come in one go
        other = make_pipeline(name="Other")
    deals = [
        make_deal(owner=owner, pipeline=chosen)
        for owner, chosen in ((org.rep, pipeline), (org.other_rep, other))
        for _ in range(5)
    ]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE pipeline_deal")  # the statistics the estimate is read from
    return deals


def test_more_counted_than_estimated_is_more_than_the_limit(org, pipeline):
    # Columns the planner takes for independent, which are not: it would have said "about 10,001" for 11,734.
    two_pipelines_of_five_deals(org, pipeline)
    underestimated = selectors.visible_deals(org.admin).filter(pipeline=pipeline, owner=org.rep)
    assert selectors._estimated_rows(underestimated) < 5  # a half of the pipelines times a half of the owners
    assert selectors.deal_count(underestimated, limit=3) == selectors.RowCount(3, False, more_than=True)


def test_a_stage_is_estimated_knowing_that_it_decides_its_pipeline_and_status(org, pipeline):
    # pipeline 0031: the biggest open stage of L, 11,734 deals, was estimated at 686 with its pipeline and status.
    deals = two_pipelines_of_five_deals(org, pipeline)
    stage_of_five = selectors.visible_deals(org.admin).filter(pipeline=pipeline, stage=deals[0].stage, status="open")
    assert selectors._estimated_rows(stage_of_five) == 5


@pytest.mark.parametrize(
    "total, text",
    [
        (selectors.RowCount(1, True, Decimal(0)), "1 deal"),
        (selectors.RowCount(1878, True, Decimal(0)), "1,878 deals"),
        (selectors.RowCount(12, False), "about 12 deals"),
        (selectors.RowCount(137_240, False), "about 140,000 deals"),
        (selectors.RowCount(999_970, False), "about 1,000,000 deals"),
        (selectors.RowCount(10_000, False, more_than=True), "more than 10,000 deals"),
    ],
)
def test_the_count_in_words(total, text):
    assert deal_count_text(total) == text


def test_the_visibility_alone_is_not_counted_when_the_planner_puts_it_far_above_the_limit(org, pipeline):
    for _ in range(12):
        make_deal(owner=org.rep, pipeline=pipeline)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE pipeline_deal")  # the statistics the estimate is read from
    deals = selectors.visible_deals(org.admin)
    with capture_queries() as queries:
        estimated = selectors.deal_count(deals, limit=3, narrowed=False)  # 12 > 3 × 3
    assert not estimated.exact and estimated.count == 12 and estimated.amount is None
    assert [sql.split()[0] for sql in queries.sql] == ["EXPLAIN"], queries.listing()
    # Narrowed by a filter, or near the limit, it is counted as before.
    assert selectors.deal_count(deals, limit=12, narrowed=False) == selectors.RowCount(12, True, Decimal(0))
    assert selectors.deal_count(deals.filter(owner=org.rep), limit=12) == selectors.RowCount(12, True, Decimal(0))


def test_the_default_view_is_estimated_without_counting_far_above_the_limit(client, org, pipeline, monkeypatch):
    for _ in range(12):
        make_deal(owner=org.rep, pipeline=pipeline)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE pipeline_deal")
    client = logged_in(client, org.rep)

    def shown(url: str) -> tuple[str, bool]:
        with capture_queries() as queries:
            html = client.get(url).content.decode()
        counted = any(sql.startswith("SELECT COUNT(*)") for sql in queries.sql)
        return re.search(r'class="deal-count" data-exact="\w+">([^<]+)<', html).group(1), counted

    assert shown(URL) == ("12 deals", True)
    monkeypatch.setattr(selectors, "DEAL_TABLE_EXACT_COUNT_LIMIT", 3)
    assert shown(URL) == ("about 12 deals", False)
    # Narrowed by a filter, it is counted up to the limit first, as before.
    text, counted = shown(f"{URL}?pipeline={pipeline.pk}")
    assert text.startswith("about ") and counted


# --- Columns, export and saved views -------------------------------------------------------------------------------


def test_the_chosen_columns_are_shown_and_exported_exactly_as_shown(client, org, pipeline):
    acme = services.create_organization(actor=org.rep, name="=HYPERLINK(acme)")
    for amount in ("100", "2500.50", "900"):
        make_qualified_deal(owner=org.rep, pipeline=pipeline, amount=Decimal(amount), organization=acme)
    make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("5"))
    client = logged_in(client, org.rep)
    query = "col=amount&col=organization&col=contact&col=updated_at&sort=-amount&amount_min=50"

    response = client.get(f"{URL}?{query}")
    assert shown_columns(response) == ["title", "organization", "contact", "amount", "updated_at"]
    rows = exported(client, query)
    assert rows[0] == ["title", "organization", "contact", "amount", "updated_at"]
    # The page's cells escape HTML; the file holds the same text.
    assert [[cell.replace("&#x27;", "'") for cell in row] for row in shown_cells(response)] == rows[1:]
    assert [row[3] for row in rows[1:]] == ["2500.50", "900.00", "100.00"]
    assert rows[1][1] == "'=HYPERLINK(acme)"  # a formula in a cell is neutralised, as in every export

    default = client.get(URL)
    assert shown_columns(default) == list(selectors.DEFAULT_DEAL_TABLE_COLUMNS)
    assert exported(client, "")[0] == list(selectors.DEFAULT_DEAL_TABLE_COLUMNS)


def test_every_column_reads_only_what_it_shows_and_shows_what_the_export_writes(client, org, pipeline):
    acme = services.create_organization(actor=org.rep, name="Acme")
    buyer = services.create_contact(actor=org.rep, first_name="Ada", last_name="Buyer", email="ada@example.com")
    make_qualified_deal(owner=org.rep, pipeline=pipeline, organization=acme, contact=buyer, amount=Decimal("12"))
    make_deal(owner=org.rep, pipeline=pipeline)
    client = logged_in(client, org.rep)
    query = "&".join(f"col={key}" for key in selectors.DEAL_TABLE_COLUMNS if key != "title") + "&sort=amount"

    response = client.get(f"{URL}?{query}")

    assert shown_columns(response) == list(selectors.DEAL_TABLE_COLUMNS)
    assert [[cell.replace("&#x27;", "'") for cell in row] for row in shown_cells(response)] == exported(client, query)[
        1:
    ]
    columns = [selectors.DEAL_TABLE_COLUMNS[key] for key in selectors.DEAL_TABLE_COLUMNS]
    rows = selectors.deal_table_rows(Deal.objects.order_by("amount", "id"), columns)
    read = set(re.findall(r'"pipeline_deal"\."(\w+)"', str(rows.query).split(" FROM ")[0]))
    # The shown columns, the sort key, and the ids of the pipeline, stage and owner read apart: not the search
    # text, the notes or the qualification fields.
    assert {"search_text", "need", "lost_note", "authority", "budget"}.isdisjoint(read)
    assert {"title", "amount", "currency", "status", "owner_id", "stage_id", "pipeline_id", "closed_at"} <= read


def test_the_rows_name_pipelines_stages_and_owners_as_the_export_does_after_renames(client, org, pipeline):
    """The rows' names come from the pick lists' cache (`selectors.deal_table_names`); the export joins them."""
    for owner in (org.rep, org.teammate):
        make_qualified_deal(owner=owner, pipeline=pipeline)
    client = logged_in(client, org.manager)
    query = "col=pipeline&col=stage&col=owner"

    def shown_as_exported() -> list[list[str]]:
        cells = shown_cells(client.get(f"{URL}?{query}"))
        assert cells == exported(client, query)[1:]
        return cells

    assert {tuple(row[1:]) for row in shown_as_exported()} == {
        (pipeline.name, "Prospecting", "rep"),
        (pipeline.name, "Prospecting", "teammate"),
    }
    Stage.objects.filter(pipeline=pipeline, name="Prospecting").update(name="Prospects")
    Pipeline.objects.filter(pk=pipeline.pk).update(name="Enterprise")
    User.objects.filter(pk=org.teammate.pk).update(username="tina")
    assert {tuple(row[1:]) for row in shown_as_exported()} == {
        ("Enterprise", "Prospects", "rep"),
        ("Enterprise", "Prospects", "tina"),
    }


def test_a_stage_made_after_the_page_read_the_version_is_named_from_its_table(org, pipeline):
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    columns = [selectors.DEAL_TABLE_COLUMNS[key] for key in ("title", "stage", "owner")]
    pick_lists = PickLists(org.rep)
    selectors.deal_table_names([], columns, pick_lists)  # the version and the stages, read before the change
    newest = services.create_stage(pipeline=pipeline, actor=org.admin, name="Security review", order=3, probability=40)
    Deal.objects.filter(pk=deal.pk).update(stage=newest)
    page = list(selectors.deal_table_rows(Deal.objects.filter(pk=deal.pk), columns))
    names = selectors.deal_table_names(page, columns, pick_lists)
    assert selectors.deal_row_values(page[0], columns, names) == [deal.title, "Security review", "rep"]


def test_the_page_picks_its_ids_first_and_joins_organizations_and_contacts_to_those_alone(client, org, pipeline):
    """PostgreSQL sorts after its joins: a manager's stage joined all its 1,880 deals to keep 51 (204 ms on L)."""
    acme = services.create_organization(actor=org.rep, name="Acme")
    for _ in range(3):
        make_qualified_deal(owner=org.rep, pipeline=pipeline, organization=acme)
    client = logged_in(client, org.manager)
    client.get(f"{URL}?col=organization&col=contact")
    with capture_queries() as queries:
        cells = shown_cells(client.get(f"{URL}?col=organization&col=contact&page_size=2"))
    page = [sql for sql in queries.sql if 'JOIN "pipeline_organization"' in sql]
    assert len(page) == 1, queries.listing()
    assert re.search(r'"pipeline_deal"\."id" IN \(SELECT \w+\."id" AS "pk" FROM "pipeline_deal" .* LIMIT 3\)', page[0])
    # The joins the ids' subquery inherits are left out by PostgreSQL (nothing of them is read): one join each.
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + page[0])
        plan = [line for (line,) in cursor.fetchall()]
    for table in ("pipeline_organization", "pipeline_contact"):
        assert sum(f" on {table}" in line for line in plan) == 1, "\n".join(plan)
    assert [row[1] for row in cells] == ["Acme", "Acme"]
    # The ids are picked on the deal table alone: an outer join there, though PostgreSQL leaves it out of the plan,
    # still needs its column, and the ids could no longer be read from an index alone.
    ids = re.search(r"IN \((SELECT .*? LIMIT 3)\)", page[0]).group(1)
    assert " JOIN " not in ids, ids


def test_a_join_the_filters_need_stays_in_the_ids_subquery(client, org, pipeline):
    # A team filter reads the owner's team: its join stays where the ids are picked, and the page is the team's.
    acme = services.create_organization(actor=org.rep, name="Acme")
    mine = [make_qualified_deal(owner=org.rep, pipeline=pipeline, organization=acme) for _ in range(2)]
    make_qualified_deal(owner=org.other_rep, pipeline=pipeline, organization=acme)
    client = logged_in(client, org.admin)
    url = f"{URL}?col=organization&team={org.team.pk}&page_size=5"
    with capture_queries() as queries:
        shown = shown_ids(client.get(url))
    assert sorted(shown) == sorted(deal.pk for deal in mine)
    page = next(sql for sql in queries.sql if 'JOIN "pipeline_organization"' in sql)
    ids = re.search(r"IN \((SELECT .*? LIMIT 6)\)", page).group(1)
    assert 'JOIN "accounts_user"' in ids and "pipeline_organization" not in ids, ids


def test_the_export_holds_every_page_of_the_table(client, org, pipeline):
    for _ in range(7):
        make_deal(owner=org.rep, pipeline=pipeline)
    client = logged_in(client, org.rep)
    rows = exported(client, "page_size=2&sort=created_at&col=created_at")
    titles = list(Deal.objects.order_by("created_at", "id").values_list("title", flat=True))
    assert [row[0] for row in rows[1:]] == titles


def test_a_saved_view_keeps_the_query_and_opens_it_again(client, org, pipeline):
    client = logged_in(client, org.rep)
    response = client.post(
        reverse("pipeline:deal_view_save"), {"name": "Big", "query": "amount_min=1000&col=amount&cursor=xyz&q="}
    )
    assert response.status_code == 302 and response["Location"] == f"{URL}?amount_min=1000&col=amount"
    view = SavedDealView.objects.get(owner=org.rep)
    assert view.query == "amount_min=1000&col=amount"  # the cursor is a place in a walk, not part of a view
    page = client.get(URL).content.decode()
    assert f'href="{URL}?amount_min=1000&amp;col=amount">Big</a>' in page
    # Saving again under the same name replaces it; another user's views are their own.
    client.post(reverse("pipeline:deal_view_save"), {"name": "Big", "query": "amount_min=5000"})
    assert list(SavedDealView.objects.values_list("name", "query")) == [("Big", "amount_min=5000")]
    assert f'href="{URL}?amount_min=5000">Big</a>' in client.get(URL).content.decode()
    assert "Big</a>" not in logged_in(client, org.teammate).get(URL).content.decode()
    # Deleted, it is gone from the page at once (the page's list of views is cached per version of its table).
    client = logged_in(client, org.rep)
    client.post(reverse("pipeline:deal_view_delete", args=[SavedDealView.objects.get().pk]))
    assert "Big</a>" not in client.get(URL).content.decode()


def test_the_database_holds_one_view_of_a_name_per_user(org):
    SavedDealView.objects.create(owner=org.rep, name="Mine", query="")
    SavedDealView.objects.create(owner=org.teammate, name="Mine", query="")
    with pytest.raises(IntegrityError):
        SavedDealView.objects.create(owner=org.rep, name="Mine", query="status=open")


# --- Bulk changes --------------------------------------------------------------------------------------------------


def test_a_bulk_move_honours_required_fields_and_names_each_refused_deal(client, org, pipeline, other_pipeline):
    ready = make_qualified_deal(owner=org.rep, pipeline=pipeline, title="Ready deal")
    bare = make_deal(owner=org.rep, pipeline=pipeline, title="Bare deal")
    elsewhere = make_qualified_deal(owner=org.rep, pipeline=other_pipeline, title="Renewal deal")
    proposal = stage(pipeline, "Proposal")
    response = logged_in(client, org.rep).post(
        reverse("pipeline:deal_table_bulk"),
        {"deal": [ready.pk, bare.pk, elsewhere.pk], "action": "stage", "stage": proposal.pk, "query": "col=stage"},
        HTTP_HX_REQUEST="true",
    )
    page = response.content.decode()
    assert "<strong>Changed 1</strong>, refused 2." in page
    assert "Ready deal: changed" in page
    assert "Bare deal: refused — Amount is required to enter the stage “Proposal”." in page
    assert "Renewal deal: refused — The stage “Proposal” belongs to another pipeline" in page
    assert Deal.objects.get(pk=ready.pk).stage == proposal
    assert Deal.objects.get(pk=bare.pk).stage.name == "Prospecting"
    assert Deal.objects.get(pk=elsewhere.pk).stage.name == "Prospecting"
    # The table comes back with the new values, in the columns it was sent from.
    assert 'data-column="stage" data-value="Proposal"' in page


def test_a_bulk_owner_change_goes_through_the_service_and_is_audited(client, org, pipeline):
    deals = [make_deal(owner=org.rep, pipeline=pipeline) for _ in range(3)]
    logged_in(client, org.manager).post(
        reverse("pipeline:deal_table_bulk"),
        {"deal": [deal.pk for deal in deals], "action": "owner", "owner": org.teammate.pk},
        HTTP_HX_REQUEST="true",
    )
    assert set(Deal.objects.values_list("owner", flat=True)) == {org.teammate.pk}
    assert all(deal.version == 2 for deal in Deal.objects.all())


def test_a_bulk_change_without_its_value_says_so_and_changes_nothing(client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    response = logged_in(client, org.rep).post(
        reverse("pipeline:deal_table_bulk"), {"deal": [deal.pk], "action": "stage"}, HTTP_HX_REQUEST="true"
    )
    assert "Choose the new value." in response.content.decode()
    assert Deal.objects.get(pk=deal.pk).version == 1


# --- Query counts --------------------------------------------------------------------------------------------------


# Session and user, the page (its organizations and contacts joined), the count, and the version of the pick lists:
# the filters' and the bulk form's options, the rows' pipeline, stage and owner names, the saved views and the owners
# whose deals the user sees are read once per version (`pipeline.pick_lists`).
@pytest.mark.parametrize(("username", "queries"), [("rep", 5), ("manager", 5), ("admin", 5)])
def test_the_table_costs_the_same_queries_for_two_rows_and_for_twenty(client, org, pipeline, username, queries):
    user = getattr(org, username)
    client = logged_in(client, user)
    query = f"{URL}?col=pipeline&col=stage&col=owner&col=organization&col=contact&col=amount&q=deal"
    acme = services.create_organization(actor=org.rep, name="Acme")
    for _ in range(2):
        make_qualified_deal(owner=org.rep, pipeline=pipeline, organization=acme)
    client.get(query)  # sessions, content types: warmed once
    with capture_queries() as few:
        assert len(shown_ids(client.get(query))) == 2
    for _ in range(18):
        make_qualified_deal(owner=org.rep, pipeline=pipeline, organization=acme)
    with capture_queries() as many:
        assert len(shown_ids(client.get(query))) == 20
    assert_query_count(few, many, exactly=queries)
