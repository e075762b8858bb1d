"""The browser pages of the pipeline through the Django test client: visibility, forms, errors, query counts."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from pipeline import services
from pipeline.models import Activity, Deal, DealState, Lead, LeadStatus
from pipeline.selectors import BOARD_PAGE_SIZE
from tests.factories import leave_untouched, make_deal, make_qualified_deal, stage
from tests.queries import CapturedQueries, assert_query_count, capture_queries

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def rep_client(client, org):
    client.force_login(org.rep)
    return client


def triggers(response, header="HX-Trigger") -> dict:
    return json.loads(response.get(header, "{}"))


def move(client, deal, target, **data):
    payload = {"stage": target.pk, "version": deal.version, **data}
    return client.post(reverse("pipeline:deal_move", args=[deal.pk]), payload, **HTMX)


# --- Navigation -----------------------------------------------------------------------------------------------------


def test_every_page_sends_anonymous_visitors_to_the_login_page(client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    lead = services.create_lead(actor=org.rep, last_name="Lee")
    for url in [
        reverse("pipeline:board"),
        reverse("pipeline:deal", args=[deal.pk]),
        reverse("pipeline:leads"),
        reverse("pipeline:lead", args=[lead.pk]),
        reverse("pipeline:activities"),
    ]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url


def test_the_navigation_shows_settings_only_to_those_who_may_open_them(client, org, pipeline):
    org.admin.is_staff = True
    org.admin.save()
    client.force_login(org.rep)
    rep_page = client.get(reverse("pipeline:board")).content.decode()
    client.force_login(org.admin)
    admin_page = client.get(reverse("pipeline:board")).content.decode()

    for page in (rep_page, admin_page):
        assert 'href="/board/"' in page and 'href="/leads/"' in page and 'href="/activities/"' in page
    assert reverse("settings:pipelines") + '"' not in rep_page
    assert reverse("settings:pipelines") + '"' in admin_page


# --- The board ------------------------------------------------------------------------------------------------------


def test_the_board_shows_a_column_per_open_stage_with_count_total_and_weighted_amount(rep_client, org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("1000"))
    make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("3000"))
    make_deal(owner=org.rep, pipeline=pipeline, stage=stage(pipeline, "Discovery"), amount=Decimal("5000"))

    response = rep_client.get(reverse("pipeline:board"))

    assert response.status_code == 200
    columns = {column.stage.name: column for column in response.context["columns"]}
    assert list(columns) == ["Prospecting", "Qualification", "Discovery", "Proposal", "Negotiation"]
    assert (columns["Prospecting"].count, columns["Prospecting"].total) == (2, Decimal("4000"))
    assert columns["Prospecting"].weighted == Decimal("400")
    assert (columns["Discovery"].count, columns["Discovery"].weighted) == (1, Decimal("2000"))
    assert columns["Proposal"].count == 0
    assert b'data-stage-id="' in response.content and b"Won" in response.content and b"Lost" in response.content


def test_a_rep_sees_only_their_own_deals_on_the_board(rep_client, org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline, title="Mine")
    make_deal(owner=org.other_rep, pipeline=pipeline, title="Not mine")

    response = rep_client.get(reverse("pipeline:board"))

    assert b"Mine" in response.content
    assert b"Not mine" not in response.content
    assert sum(column.count for column in response.context["columns"]) == 1


def test_a_manager_filters_the_board_by_owner_team_and_text(client, org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline, title="Acme rollout")
    make_deal(owner=org.teammate, pipeline=pipeline, title="Globex pilot")
    client.force_login(org.admin)

    def titles(**params):
        response = client.get(reverse("pipeline:board"), params)
        return sorted(card.title for column in response.context["columns"] for card in column.cards)

    assert titles() == ["Acme rollout", "Globex pilot"]
    assert titles(owner=org.teammate.pk) == ["Globex pilot"]
    assert titles(team=org.team.pk) == ["Acme rollout", "Globex pilot"]
    assert titles(team=org.other_team.pk) == []
    assert titles(q="acme") == ["Acme rollout"]


def test_a_filter_that_does_not_parse_is_ignored_with_a_message_not_an_error(rep_client, org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline, title="Acme rollout")

    response = rep_client.get(reverse("pipeline:board"), {"owner": "not-a-number", "team": org.other_team.pk})

    assert response.status_code == 200
    assert b"Acme rollout" in response.content
    assert b"Select a valid choice" in response.content


def test_a_filter_change_returns_only_the_columns(rep_client, org, pipeline):
    response = rep_client.get(reverse("pipeline:board"), {"q": "x"}, HTTP_HX_TARGET="board", **HTMX)

    assert response.status_code == 200
    assert response.templates[0].name == "pipeline/partials/board_columns.html"


def test_an_unknown_pipeline_is_not_found(rep_client, pipeline):
    assert rep_client.get(reverse("pipeline:board_pipeline", args=[999999])).status_code == 404


def test_the_board_escapes_user_text(rep_client, org, pipeline):
    organization = services.create_organization(actor=org.rep, name="<img src=x onerror=alert(2)>")
    make_deal(owner=org.rep, pipeline=pipeline, title="<script>alert(1)</script>", organization=organization)

    response = rep_client.get(reverse("pipeline:board"))

    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content
    assert b"<img src=x" not in response.content


def test_a_card_shows_the_stale_marker_and_the_next_activity(rep_client, org, pipeline):
    old = make_deal(owner=org.rep, pipeline=pipeline, title="Old", created_at=timezone.now() - timedelta(days=45))
    fresh = make_deal(owner=org.rep, pipeline=pipeline, title="Fresh")
    services.log_activity(
        actor=org.rep, kind="call", subject="Later call", deal=fresh, due_at=timezone.now() + timedelta(days=3)
    )
    services.log_activity(
        actor=org.rep, kind="demo", subject="Next demo", deal=fresh, due_at=timezone.now() + timedelta(days=1)
    )
    services.log_activity(actor=org.rep, kind="note", subject="Done already", deal=fresh)

    response = rep_client.get(reverse("pipeline:board"))

    [column] = [c for c in response.context["columns"] if c.count]
    cards = {card.title: card for card in column.cards}
    assert cards["Fresh"].next_activity.subject == "Next demo"
    assert cards["Old"].next_activity is None
    page = response.content.decode()
    old_card = page[page.index(f'id="deal-{old.pk}"') :]
    old_card = old_card[: old_card.index("</article>")]
    assert "Stale 45d" in old_card and "No next step" in old_card
    assert "No activity" not in old_card  # created long ago, but written today: touched
    fresh_card = page[page.index(f'id="deal-{fresh.pk}"') :]
    assert "Stale" not in fresh_card[: fresh_card.index("</article>")]


def test_a_card_untouched_longer_than_its_rotting_days_says_so_and_a_touch_ends_it(rep_client, org, pipeline):
    deal = leave_untouched(make_deal(owner=org.rep, pipeline=pipeline, title="Forgotten"), days=31)

    def card() -> str:
        page = rep_client.get(reverse("pipeline:board")).content.decode()
        start = page.rindex("<article", 0, page.index(f'id="deal-{deal.pk}"'))
        return page[start : page.index("</article>", start)]

    assert "is-inactive" in card() and "No activity for 31 days" in card()
    services.log_activity(actor=org.rep, kind="note", subject="Asked for the budget", deal=deal)
    assert "is-inactive" not in card() and "No activity" not in card()


def _board_queries(client) -> CapturedQueries:
    with capture_queries() as queries:
        response = client.get(reverse("pipeline:board"))
    assert response.status_code == 200
    return queries


def test_the_board_makes_the_same_number_of_queries_for_few_and_many_deals(client, org, pipeline):
    client.force_login(org.manager)
    for name in ("Prospecting", "Discovery"):
        deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, stage=stage(pipeline, name))
        services.log_activity(actor=org.rep, kind="call", subject="c", deal=deal, due_at=timezone.now())
    few = _board_queries(client)

    for index in range(BOARD_PAGE_SIZE + 5):
        name = ["Prospecting", "Qualification", "Discovery", "Proposal", "Negotiation"][index % 5]
        owner = [org.rep, org.teammate][index % 2]
        deal = make_qualified_deal(owner=owner, pipeline=pipeline, stage=stage(pipeline, name))
        services.log_activity(actor=owner, kind="call", subject="c", deal=deal, due_at=timezone.now())
    many = _board_queries(client)

    # session, user, pipelines, stages, totals, card ids, cards, next activities, pushes, owner and team choices
    assert_query_count(few, many, exactly=11)


def test_a_column_loads_more_cards_after_its_cursor_without_repeats(rep_client, org, pipeline):
    start = timezone.now() - timedelta(days=10)
    for index in range(BOARD_PAGE_SIZE + 7):
        make_deal(owner=org.rep, pipeline=pipeline, title=f"D{index}", created_at=start + timedelta(minutes=index))
    board = rep_client.get(reverse("pipeline:board"))
    [column] = [c for c in board.context["columns"] if c.count]
    assert len(column.cards) == BOARD_PAGE_SIZE and column.next_cursor
    more_url = reverse("pipeline:board_column_more", args=[pipeline.pk, column.stage.pk])
    assert b'hx-trigger="intersect once"' in board.content

    more = rep_client.get(more_url, {"cursor": column.next_cursor}, **HTMX)

    assert more.status_code == 200
    shown = [card.title for card in column.cards] + [card.title for card in more.context["column"].cards]
    assert sorted(shown) == sorted(f"D{index}" for index in range(BOARD_PAGE_SIZE + 7))
    assert more.context["column"].next_cursor is None


def test_a_broken_cursor_loads_nothing_rather_than_failing(rep_client, org, pipeline):
    make_deal(owner=org.rep, pipeline=pipeline)
    url = reverse("pipeline:board_column_more", args=[pipeline.pk, stage(pipeline, "Prospecting").pk])

    response = rep_client.get(url, {"cursor": "yesterday|x"}, **HTMX)

    assert response.status_code == 200
    assert response.context["column"].cards == []


# --- Moving deals ---------------------------------------------------------------------------------------------------


def test_moving_a_card_to_the_next_stage_moves_the_deal_and_returns_the_card(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("100"))

    response = move(rep_client, deal, stage(pipeline, "Qualification"))

    assert response.status_code == 200
    deal.refresh_from_db()
    assert deal.stage == stage(pipeline, "Qualification") and deal.version == 2
    assert f'id="deal-{deal.pk}"' in response.content.decode()
    assert f'data-version="{deal.version}"' in response.content.decode()
    assert triggers(response)["crm:moved"] == {"deal": deal.pk, "stage": deal.stage_id}
    assert 'id="col-head-' in response.content.decode()


def test_entering_a_stage_with_missing_fields_asks_for_exactly_those_fields(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("100"))

    response = move(rep_client, deal, stage(pipeline, "Proposal"))

    assert response.status_code == 200
    assert response["HX-Retarget"] == "#move-dialog-body"
    assert "crm:needs-input" in triggers(response, "HX-Trigger-After-Swap")
    assert set(response.context["form"].fields) == {"expected_close_date", "contact"}
    deal.refresh_from_db()
    assert deal.stage == stage(pipeline, "Prospecting")


def test_the_dialog_completes_the_move_with_the_fields_it_asked_for(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("100"))
    contact = services.create_contact(actor=org.rep, last_name="Buyer")

    response = move(
        rep_client, deal, stage(pipeline, "Proposal"), entry="1", expected_close_date="2027-01-31", contact=contact.pk
    )

    assert "crm:moved" in triggers(response)
    deal.refresh_from_db()
    assert deal.stage == stage(pipeline, "Proposal")
    assert (str(deal.expected_close_date), deal.contact) == ("2027-01-31", contact)


def test_the_dialog_shows_each_bad_field_and_moves_nothing(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    someone_elses = services.create_contact(actor=org.other_rep, last_name="Hidden")

    response = move(rep_client, deal, stage(pipeline, "Proposal"), entry="1", amount="-5", contact=someone_elses.pk)

    form = response.context["form"]
    assert set(form.errors) == {"amount", "expected_close_date", "contact"}
    assert b"Select a valid choice" in response.content
    deal.refresh_from_db()
    assert deal.stage == stage(pipeline, "Prospecting")


def test_losing_a_deal_asks_for_a_lost_reason_then_loses_it(rep_client, org, pipeline, lost_reason):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    lost = stage(pipeline, "Lost")

    asked = move(rep_client, deal, lost)
    assert set(asked.context["form"].fields) == {"lost_reason", "lost_note"}
    refused = move(rep_client, deal, lost, entry="1")
    assert "lost_reason" in refused.context["form"].errors

    response = move(rep_client, deal, lost, entry="1", lost_reason=lost_reason.pk, lost_note="Went with a rival")

    assert response["HX-Reswap"] == "delete"
    deal.refresh_from_db()
    assert (deal.status, deal.lost_reason, deal.lost_note) == ("lost", lost_reason, "Went with a rival")


def test_moving_a_deal_to_its_own_stage_changes_nothing_and_says_so(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)

    response = move(rep_client, deal, stage(pipeline, "Prospecting"))

    assert b"is already in Prospecting" in response.content
    deal.refresh_from_db()
    assert deal.version == 1


def test_a_card_moved_on_the_board_takes_its_stages_forecast_category_unless_one_was_set_by_hand(
    rep_client, org, pipeline
):
    # SPEC §2: a deal's forecast category is its stage's default unless overridden.
    followed = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    kept = services.update_deal(
        deal=make_qualified_deal(owner=org.rep, pipeline=pipeline), actor=org.rep, forecast_category_override="commit"
    )
    for deal in (followed, kept):
        assert move(rep_client, deal, stage(pipeline, "Proposal")).status_code == 200
        deal.refresh_from_db()
        assert move(rep_client, deal, stage(pipeline, "Qualification")).status_code == 200

    followed.refresh_from_db()
    kept.refresh_from_db()
    assert (followed.forecast_category, followed.forecast_category_override) == ("pipeline", None)
    assert (kept.forecast_category, kept.forecast_category_override) == ("commit", "commit")
    history = DealState.objects.filter(deal_id=followed.pk).values_list("forecast_category", flat=True)
    assert list(history) == ["pipeline", "best_case", "pipeline"]


def test_winning_a_deal_removes_its_card(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)

    response = move(rep_client, deal, stage(pipeline, "Won"))

    assert response["HX-Reswap"] == "delete"
    assert b"is won" in response.content
    deal.refresh_from_db()
    assert deal.status == "won"


def test_a_move_with_an_old_version_is_refused_with_a_message_and_the_fresh_card(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Contested")
    services.update_deal(deal=deal, actor=org.manager, amount=Decimal("500"))

    response = move(rep_client, deal, stage(pipeline, "Qualification"))  # still version 1

    assert response["HX-Reswap"] == "none"
    assert "crm:move-failed" in triggers(response)
    body = response.content.decode()
    assert "changed by someone else" in body
    assert 'hx-swap-oob="true"' in body and 'data-version="2"' in body
    deal.refresh_from_db()
    assert (deal.stage, deal.amount) == (stage(pipeline, "Prospecting"), Decimal("500"))


def test_a_move_of_a_deal_someone_else_has_closed_removes_its_card(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    services.move_deal(deal=deal, stage=stage(pipeline, "Won"), actor=org.manager)

    response = move(rep_client, deal, stage(pipeline, "Qualification"))  # version 1, drawn before the win

    assert f'<div id="deal-{deal.pk}" hx-swap-oob="delete"></div>' in response.content.decode()
    deal.refresh_from_db()
    assert deal.status == "won"


def test_moving_someone_elses_deal_is_not_found(rep_client, org, pipeline):
    deal = make_deal(owner=org.other_rep, pipeline=pipeline)

    response = move(rep_client, deal, stage(pipeline, "Qualification"))

    assert response.status_code == 404
    deal.refresh_from_db()
    assert deal.stage == stage(pipeline, "Prospecting")


def test_a_stage_of_another_pipeline_is_refused_with_a_message(rep_client, org, pipeline, other_pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)

    response = move(rep_client, deal, stage(other_pipeline, "Qualification"))

    assert response.status_code == 200
    assert "crm:move-failed" in triggers(response)
    assert b"Choose a stage of this deal" in response.content


def test_without_javascript_a_move_redirects_and_a_missing_field_gets_a_page(client, org, pipeline):
    client.force_login(org.rep)
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    url = reverse("pipeline:deal_move", args=[deal.pk])
    deal_url = reverse("pipeline:deal", args=[deal.pk])

    moved = client.post(url, {"stage": stage(pipeline, "Qualification").pk, "next": deal_url})
    assert (moved.status_code, moved["Location"]) == (302, deal_url)

    asked = client.post(url, {"stage": stage(pipeline, "Discovery").pk, "next": deal_url})
    assert asked.status_code == 200 and b'name="amount"' in asked.content and b"hx-post" not in asked.content

    done = client.post(url, {"stage": stage(pipeline, "Discovery").pk, "entry": "1", "amount": "10", "next": deal_url})
    assert done.status_code == 302
    deal.refresh_from_db()
    assert deal.stage == stage(pipeline, "Discovery")


def test_a_redirect_after_a_move_stays_on_this_site(client, org, pipeline):
    client.force_login(org.rep)
    deal = make_deal(owner=org.rep, pipeline=pipeline)

    response = client.post(
        reverse("pipeline:deal_move", args=[deal.pk]),
        {"stage": stage(pipeline, "Qualification").pk, "next": "https://evil.example/"},
    )

    assert response["Location"] == reverse("pipeline:board_pipeline", args=[pipeline.pk])


# --- The deal page --------------------------------------------------------------------------------------------------


def test_the_deal_page_shows_the_stage_path_with_time_in_each_stage_and_the_history(rep_client, org, pipeline):
    start = timezone.now() - timedelta(days=10)
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, created_at=start)
    services.move_deal(deal=deal, stage=stage(pipeline, "Discovery"), actor=org.rep, at=start + timedelta(days=4))

    response = rep_client.get(reverse("pipeline:deal", args=[deal.pk]))

    assert response.status_code == 200
    path = {stay.stage.name: stay for stay in response.context["path"]}
    assert round(path["Prospecting"].days) == 4 and path["Prospecting"].reached
    assert round(path["Discovery"].days) == 6 and path["Discovery"].is_current
    assert not path["Qualification"].reached
    assert [change.to_stage.name for change in response.context["history"]] == ["Prospecting", "Discovery"]
    assert b"Stage history" in response.content


def test_someone_elses_deal_page_is_not_found(rep_client, org, pipeline):
    deal = make_deal(owner=org.other_rep, pipeline=pipeline)

    assert rep_client.get(reverse("pipeline:deal", args=[deal.pk])).status_code == 404
    assert rep_client.get(reverse("pipeline:deal_fields", args=[deal.pk]), {"edit": 1}).status_code == 404
    assert rep_client.post(reverse("pipeline:deal_fields", args=[deal.pk]), {"title": "x"}).status_code == 404


def _fields(deal, **changes):
    data = {
        "version": deal.version,
        "title": deal.title,
        "owner": deal.owner_id,
        "currency": deal.currency,
        "amount": deal.amount or "",
        "expected_close_date": deal.expected_close_date or "",
        "contact": deal.contact_id or "",
    }
    data.update(changes)
    return data


def test_editing_a_deal_inline_saves_through_update_deal(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Old title")
    url = reverse("pipeline:deal_fields", args=[deal.pk])
    assert b'name="title"' in rep_client.get(url, {"edit": 1}, **HTMX).content

    response = rep_client.post(url, _fields(deal, title="New title", amount="2500.50"), **HTMX)

    assert response.status_code == 200
    assert b"New title" in response.content and b"Saved." in response.content
    deal.refresh_from_db()
    assert (deal.title, deal.amount, deal.version) == ("New title", Decimal("2500.50"), 2)


def test_the_deal_form_shows_each_bad_field(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)

    response = rep_client.post(
        reverse("pipeline:deal_fields", args=[deal.pk]),
        _fields(deal, title="", amount="-1", currency="dollars", expected_close_date="31/31/2026"),
        **HTMX,
    )

    assert response.status_code == 200
    assert {"title", "amount", "currency", "expected_close_date"} <= set(response.context["form"].errors)
    deal.refresh_from_db()
    assert deal.version == 1


def test_emptying_a_field_the_current_stage_requires_is_refused_by_name(rep_client, org, pipeline):
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, stage=stage(pipeline, "Proposal"))

    response = rep_client.post(reverse("pipeline:deal_fields", args=[deal.pk]), _fields(deal, amount=""), **HTMX)

    assert "Amount is required to stay in the stage “Proposal”." in response.context["form"].errors["amount"]


def test_saving_over_someone_elses_change_is_refused_with_a_message(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Original")
    services.update_deal(deal=deal, actor=org.manager, title="Changed by manager")

    response = rep_client.post(
        reverse("pipeline:deal_fields", args=[deal.pk]), _fields(deal, title="Mine", version=1), **HTMX
    )

    assert b"changed by someone else" in response.content
    deal.refresh_from_db()
    assert deal.title == "Changed by manager"


def test_logging_an_activity_and_planning_the_next_step_on_a_deal(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    url = reverse("pipeline:deal_activity_create", args=[deal.pk])

    logged = rep_client.post(url, {"kind": "call", "subject": "Discovery call", "note": "Went well"}, **HTMX)
    planned = rep_client.post(url, {"kind": "meeting", "subject": "Demo", "due_at": "2030-01-15T10:30"}, **HTMX)

    assert b"Activity logged." in logged.content and b"Next step planned." in planned.content
    call, meeting = Activity.objects.filter(deal=deal).order_by("id")
    assert (call.kind, call.done_at is not None, call.owner) == ("call", True, org.rep)
    assert (meeting.done_at, meeting.due_at.year, meeting.due_at.hour) == (None, 2030, 10)
    assert b"Demo" in planned.content and b"Discovery call" in planned.content


def test_the_activity_form_shows_its_errors(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)

    response = rep_client.post(
        reverse("pipeline:deal_activity_create", args=[deal.pk]),
        {"kind": "fax", "subject": "", "due_at": "tomorrow-ish"},
        **HTMX,
    )

    assert set(response.context["activity_form"].errors) == {"kind", "subject", "due_at"}
    assert not Activity.objects.exists()


def test_a_due_time_outside_the_years_1_to_9999_in_utc_is_a_form_error(rep_client, org, pipeline):
    # PostgreSQL stores such an instant (year 10000 in UTC), and every later read of the activity failed.
    deal = make_deal(owner=org.rep, pipeline=pipeline)

    response = rep_client.post(
        reverse("pipeline:deal_activity_create", args=[deal.pk]),
        {"kind": "call", "subject": "Far", "due_at": "9999-12-31T23:00:00-05:00"},
        **HTMX,
    )

    assert response.context["activity_form"].errors["due_at"] == ["The time is out of range."]
    assert not Activity.objects.exists()


def test_marking_a_planned_activity_done_on_the_timeline(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    activity = services.log_activity(actor=org.rep, kind="call", subject="Call", deal=deal, due_at=timezone.now())

    response = rep_client.post(reverse("pipeline:activity_complete", args=[activity.pk]), {"from": "timeline"}, **HTMX)

    assert response.status_code == 200 and b"timeline-body" in response.content
    activity.refresh_from_db()
    assert activity.done_at is not None


# --- Leads ----------------------------------------------------------------------------------------------------------


def test_the_lead_list_filters_by_status_owner_source_and_text(client, org):
    services.create_lead(actor=org.rep, last_name="Alpha", company="Acme", source="Website")
    services.create_lead(actor=org.rep, last_name="Beta", company="Globex", source="Event", status="mql")
    services.create_lead(actor=org.teammate, last_name="Gamma", company="Initech", source="Website")
    services.create_lead(actor=org.other_rep, last_name="Hidden", source="Website")
    client.force_login(org.manager)

    def names(**params):
        response = client.get(reverse("pipeline:leads"), params)
        assert response.status_code == 200
        return sorted(lead.last_name for lead in response.context["page"].object_list)

    assert names() == ["Alpha", "Beta", "Gamma"]
    assert names(status="mql") == ["Beta"]
    assert names(owner=org.teammate.pk) == ["Gamma"]
    assert names(source="website") == ["Alpha", "Gamma"]
    assert names(q="glob") == ["Beta"]
    assert names(status="bogus") == ["Alpha", "Beta", "Gamma"]


def test_someone_elses_lead_is_not_found(rep_client, org):
    lead = services.create_lead(actor=org.other_rep, last_name="Hidden")

    assert rep_client.get(reverse("pipeline:lead", args=[lead.pk])).status_code == 404
    assert rep_client.post(reverse("pipeline:lead_convert", args=[lead.pk])).status_code == 404
    assert rep_client.post(reverse("pipeline:lead_status", args=[lead.pk]), {"status": "mql"}).status_code == 404


def test_qualifying_a_lead_saves_bant_and_shows_errors(rep_client, org):
    lead = services.create_lead(actor=org.rep, last_name="Lee")
    url = reverse("pipeline:lead_qualify", args=[lead.pk])

    bad = rep_client.post(url, {"budget": "-10", "score": "300", "authority": "CFO"}, **HTMX)
    assert {"budget", "score"} <= set(bad.context["form"].errors)
    good = rep_client.post(
        url, {"budget": "50000", "authority": "CFO", "need": "CRM", "timeline": "Q1", "score": 70}, **HTMX
    )

    assert b"Qualification saved." in good.content
    lead.refresh_from_db()
    assert (lead.budget, lead.authority, lead.score) == (Decimal("50000"), "CFO", 70)


def test_advancing_and_disqualifying_a_lead(rep_client, org):
    lead = services.create_lead(actor=org.rep, last_name="Lee")
    url = reverse("pipeline:lead_status", args=[lead.pk])

    assert rep_client.post(url, {"status": "sql"}).status_code == 302
    lead.refresh_from_db()
    assert lead.status == "sql" and lead.contacted_at and lead.mql_at

    rep_client.post(url, {"status": "disqualified", "reason": "No budget"})
    lead.refresh_from_db()
    assert (lead.status, lead.disqualified_reason) == ("disqualified", "No budget")

    refused = rep_client.post(url, {"status": "converted"})
    assert refused.status_code == 200 and b"Select a valid choice" in refused.content


def test_converting_a_lead_creates_the_deal_and_opens_it(rep_client, org, pipeline):
    lead = services.create_lead(actor=org.rep, last_name="Lee", company="Acme", budget=Decimal("9000"), status="sql")

    response = rep_client.post(reverse("pipeline:lead_convert", args=[lead.pk]), {"amount": "12000"})

    lead.refresh_from_db()
    deal = Deal.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("pipeline:deal", args=[deal.pk])
    assert (lead.status, lead.deal, deal.title, deal.amount) == ("converted", deal, "Acme", Decimal("12000"))


def test_converting_a_disqualified_lead_is_refused_with_a_message(rep_client, org, pipeline):
    lead = services.create_lead(actor=org.rep, last_name="Lee", status="disqualified")

    response = rep_client.post(reverse("pipeline:lead_convert", args=[lead.pk]), {"amount": "-3"})

    assert response.status_code == 200
    assert "amount" in response.context["convert_form"].errors
    response = rep_client.post(reverse("pipeline:lead_convert", args=[lead.pk]), {})
    assert b"requalify it first" in response.content
    assert Lead.objects.get().status == LeadStatus.DISQUALIFIED and not Deal.objects.exists()


# --- Activities inbox ---------------------------------------------------------------------------------------------


def test_the_inbox_sorts_my_planned_activities_into_overdue_today_and_upcoming(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    now = timezone.now()
    services.log_activity(actor=org.rep, kind="call", subject="Late", deal=deal, due_at=now - timedelta(days=2))
    services.log_activity(actor=org.rep, kind="call", subject="Soon", deal=deal, due_at=now + timedelta(days=5))
    services.log_activity(actor=org.rep, kind="note", subject="Done", deal=deal)
    other = make_deal(owner=org.other_rep, pipeline=pipeline)
    services.log_activity(actor=org.other_rep, kind="call", subject="Theirs", deal=other, due_at=now)

    response = rep_client.get(reverse("pipeline:activities"))

    sections = {key: [a.subject for a in activities] for key, _, activities in response.context["sections"]}
    assert sections["overdue"] == ["Late"]
    assert sections["upcoming"] == ["Soon"]
    assert "Theirs" not in response.content.decode() and "Done" not in sections["today"]


def test_marking_done_in_the_inbox_then_planning_the_next_step(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    activity = services.log_activity(actor=org.rep, kind="call", subject="Call", deal=deal, due_at=timezone.now())

    done = rep_client.post(reverse("pipeline:activity_complete", args=[activity.pk]), **HTMX)
    assert b"Plan next" in done.content
    next_url = reverse("pipeline:activity_plan_next", args=[activity.pk])
    refused = rep_client.post(next_url, {"kind": "email", "subject": "Send recap"}, **HTMX)
    assert "due_at" in refused.context["form"].errors
    planned = rep_client.post(
        next_url, {"kind": "email", "subject": "Send recap", "due_at": "2030-02-01T09:00"}, **HTMX
    )

    assert b"Next step planned" in planned.content
    activity.refresh_from_db()
    assert activity.done_at is not None
    assert Activity.objects.get(subject="Send recap").deal == deal


def test_completing_someone_elses_activity_is_not_found(rep_client, org, pipeline):
    deal = make_deal(owner=org.other_rep, pipeline=pipeline)
    activity = services.log_activity(actor=org.other_rep, kind="call", subject="x", deal=deal, due_at=timezone.now())

    assert rep_client.post(reverse("pipeline:activity_complete", args=[activity.pk])).status_code == 404
    activity.refresh_from_db()
    assert activity.done_at is None


def test_a_manager_sees_a_team_members_inbox_but_not_another_teams(client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    services.log_activity(actor=org.rep, kind="call", subject="Rep's call", deal=deal, due_at=timezone.now())
    other = make_deal(owner=org.other_rep, pipeline=pipeline)
    services.log_activity(actor=org.other_rep, kind="call", subject="West call", deal=other, due_at=timezone.now())
    client.force_login(org.manager)

    own = client.get(reverse("pipeline:activities"))
    reps = client.get(reverse("pipeline:activities"), {"owner": org.rep.pk})
    refused = client.get(reverse("pipeline:activities"), {"owner": org.other_rep.pk})

    assert b"Rep's call" not in own.content
    assert "Rep&#x27;s call" in reps.content.decode()
    assert b"West call" not in refused.content and b"not one you can see" in refused.content


def test_the_timeline_lists_planned_activities_first_then_the_latest_done(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    now = timezone.now()
    for subject, due, done in [
        ("Done long ago", now - timedelta(days=9), now - timedelta(days=9)),
        ("Planned later", now + timedelta(days=5), None),
        ("Done yesterday", now + timedelta(days=30), now - timedelta(days=1)),
        ("Planned soon", now + timedelta(days=1), None),
    ]:
        services.log_activity(actor=org.rep, kind="call", subject=subject, deal=deal, due_at=due, done_at=done)

    response = rep_client.get(reverse("pipeline:deal", args=[deal.pk]))

    subjects = [activity.subject for activity in response.context["activities"]]
    assert subjects == ["Planned soon", "Planned later", "Done yesterday", "Done long ago"]


GARBAGE = {
    "stage": "x",
    "version": "-1",
    "entry": "1",
    "amount": "1e999",
    "expected_close_date": "2026-02-31",
    "contact": "99999999",
    "organization": "<script>",
    "owner": "",
    "title": "x" * 500,
    "currency": "€€€",
    "kind": "fax",
    "subject": "",
    "due_at": "soon",
    "status": "won",
    "reason": "y" * 500,
    "pipeline": "abc",
    "budget": "-1",
    "score": "101",
    "lost_reason": "0",
    "cursor": "\x00",
    "q": "%_\\",
}


def test_garbage_input_never_causes_a_server_error(client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    lead = services.create_lead(actor=org.rep, last_name="Lee")
    activity = services.log_activity(actor=org.rep, kind="call", subject="c", deal=deal, due_at=timezone.now())
    client.force_login(org.rep)
    posts = [
        reverse("pipeline:deal_move", args=[deal.pk]),
        reverse("pipeline:deal_fields", args=[deal.pk]),
        reverse("pipeline:deal_activity_create", args=[deal.pk]),
        reverse("pipeline:lead_qualify", args=[lead.pk]),
        reverse("pipeline:lead_status", args=[lead.pk]),
        reverse("pipeline:lead_convert", args=[lead.pk]),
        reverse("pipeline:lead_activity_create", args=[lead.pk]),
        reverse("pipeline:activity_plan_next", args=[activity.pk]),
        reverse("pipeline:activity_complete", args=[activity.pk]),
        reverse("pipeline:deal_create", args=[pipeline.pk]),
        reverse("pipeline:lead_create"),
    ]
    gets = [
        reverse("pipeline:board"),
        reverse("pipeline:board_column_more", args=[pipeline.pk, stage(pipeline, "Prospecting").pk]),
        reverse("pipeline:leads"),
        reverse("pipeline:activities"),
        reverse("pipeline:deal_fields", args=[deal.pk]),
    ]
    for htmx in ({}, HTMX):
        for url in posts:
            assert client.post(url, GARBAGE, **htmx).status_code < 500, url
        for url in gets:
            assert client.get(url, {**GARBAGE, "page": "last", "edit": "1"}, **htmx).status_code < 500, url


@pytest.mark.parametrize("who", ["other_rep", "other_manager", "idle_manager"])
def test_deals_and_leads_outside_a_users_teams_are_not_found_on_any_page(client, org, pipeline, who):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    lead = services.create_lead(actor=org.rep, last_name="Lee")
    activity = services.log_activity(actor=org.rep, kind="call", subject="c", deal=deal, due_at=timezone.now())
    client.force_login(getattr(org, who))

    assert client.get(reverse("pipeline:deal", args=[deal.pk])).status_code == 404
    assert client.post(reverse("pipeline:deal_move", args=[deal.pk]), {"stage": deal.stage_id}).status_code == 404
    assert client.post(reverse("pipeline:deal_activity_create", args=[deal.pk]), {}).status_code == 404
    assert client.get(reverse("pipeline:lead", args=[lead.pk])).status_code == 404
    assert client.post(reverse("pipeline:lead_qualify", args=[lead.pk]), {}).status_code == 404
    assert client.post(reverse("pipeline:activity_complete", args=[activity.pk])).status_code == 404
    assert client.post(reverse("pipeline:activity_plan_next", args=[activity.pk])).status_code == 404
    board = client.get(reverse("pipeline:board"))
    assert sum(column.count for column in board.context["columns"]) == 0


def test_with_team_visibility_a_rep_sees_teammates_cards_but_cannot_move_them(rep_client, org, pipeline):
    from django.test import override_settings

    theirs = make_deal(owner=org.teammate, pipeline=pipeline, title="Teammate's")
    make_deal(owner=org.rep, pipeline=pipeline, title="Mine")
    with override_settings(REP_VISIBILITY="team"):
        board = rep_client.get(reverse("pipeline:board")).content.decode()
        moved = move(rep_client, theirs, stage(pipeline, "Qualification"))
        page = rep_client.get(reverse("pipeline:deal", args=[theirs.pk]))

    start = board.rindex("<article", 0, board.index(f'id="deal-{theirs.pk}"'))
    card = board[start : board.index("</article>", start)]
    assert "locked" in card and "data-move-url" not in card  # the board's Move control is never offered on it
    assert board.count("data-move-url") == 1  # only "Mine" may be moved
    assert moved.status_code == 404
    assert page.status_code == 200 and not page.context["can_edit"]


# --- Creating deals and leads ---------------------------------------------------------------------------------------


def test_creating_a_deal_from_the_board_opens_it(rep_client, org, pipeline):
    url = reverse("pipeline:deal_create", args=[pipeline.pk])
    assert b'name="title"' in rep_client.get(url).content

    response = rep_client.post(
        url,
        {"title": "Acme expansion", "owner": org.rep.pk, "amount": "5000", "currency": "USD", "stage": ""},
    )

    assert response.status_code == 200  # the first open stage is the default choice, but it must be sent
    response = rep_client.post(
        url,
        {
            "title": "Acme expansion",
            "owner": org.rep.pk,
            "amount": "5000",
            "currency": "USD",
            "stage": stage(pipeline, "Prospecting").pk,
        },
    )
    deal = Deal.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("pipeline:deal", args=[deal.pk])
    assert (deal.title, deal.amount, deal.owner, deal.stage.name) == ("Acme expansion", 5000, org.rep, "Prospecting")


def test_a_new_deal_in_a_demanding_stage_names_each_missing_field(rep_client, org, pipeline):
    response = rep_client.post(
        reverse("pipeline:deal_create", args=[pipeline.pk]),
        {"title": "Big one", "owner": org.rep.pk, "currency": "USD", "stage": stage(pipeline, "Proposal").pk},
    )

    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"amount", "expected_close_date", "contact"}
    assert not Deal.objects.exists()


def test_a_rep_cannot_create_a_deal_for_someone_else(rep_client, org, pipeline):
    response = rep_client.post(
        reverse("pipeline:deal_create", args=[pipeline.pk]),
        {"title": "x", "owner": org.teammate.pk, "currency": "USD", "stage": stage(pipeline, "Prospecting").pk},
    )

    assert "owner" in response.context["form"].errors
    assert not Deal.objects.exists()


def test_creating_a_lead_opens_it_and_bad_input_is_shown(rep_client, org):
    url = reverse("pipeline:lead_create")

    bad = rep_client.post(url, {"last_name": "", "email": "not-an-email", "owner": org.rep.pk})
    assert {"last_name", "email"} <= set(bad.context["form"].errors)
    good = rep_client.post(url, {"first_name": "Ada", "last_name": "Park", "company": "Initech", "owner": org.rep.pk})

    lead = Lead.objects.get()
    assert good["Location"] == reverse("pipeline:lead", args=[lead.pk])
    assert (lead.last_name, lead.owner, lead.status) == ("Park", org.rep, "new")


def test_the_deal_page_shows_who_changed_what(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("100"))
    services.update_deal(deal=deal, actor=org.manager, amount=Decimal("250"), title="<b>Renamed</b>")
    services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=org.rep)

    response = rep_client.get(reverse("pipeline:deal", args=[deal.pk]))

    page = response.content.decode()
    day = date_format(timezone.localtime(), "j M")
    assert "Stage Prospecting → Qualification by rep, <time" in page
    assert "Amount $100 → $250 by manager, <time" in page
    assert f">{day}</time>" in page
    assert "100.00" not in page and "Stage entered at" not in page  # words, not raw values or bookkeeping
    assert "&lt;b&gt;Renamed&lt;/b&gt;" in page and "<b>Renamed</b>" not in page


def test_moving_from_the_deal_page_reloads_it_or_asks_in_the_dialog(rep_client, org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)
    deal_url = reverse("pipeline:deal", args=[deal.pk])

    moved = move(rep_client, deal, stage(pipeline, "Qualification"), next=deal_url)
    assert moved["HX-Redirect"] == deal_url
    deal.refresh_from_db()
    asked = move(rep_client, deal, stage(pipeline, "Discovery"), next=deal_url)
    assert asked["HX-Retarget"] == "#move-dialog-body" and b'name="next"' in asked.content
    stale = move(rep_client, deal, stage(pipeline, "Discovery"), next=deal_url, entry="1", amount="5", version=1)
    assert stale["HX-Redirect"] == deal_url
    page = rep_client.get(deal_url)
    assert b"changed by someone else" in page.content and b'id="move-dialog"' in page.content


PAYLOAD = "<script>alert('x')</script>"


def test_user_text_is_escaped_on_every_page(rep_client, org, pipeline):
    organization = services.create_organization(actor=org.rep, name=PAYLOAD)
    contact = services.create_contact(actor=org.rep, last_name=PAYLOAD, organization=organization)
    deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, title=PAYLOAD, organization=organization)
    services.update_deal(deal=deal, actor=org.rep, contact=contact, need=PAYLOAD, source=PAYLOAD)
    lead = services.create_lead(actor=org.rep, last_name=PAYLOAD, company=PAYLOAD, source=PAYLOAD, need=PAYLOAD)
    for record in ({"deal": deal}, {"lead": lead}):
        services.log_activity(
            actor=org.rep, kind="call", subject=PAYLOAD, note=PAYLOAD, due_at=timezone.now(), **record
        )
    pages = [
        reverse("pipeline:board"),
        reverse("pipeline:deal", args=[deal.pk]),
        reverse("pipeline:leads"),
        reverse("pipeline:lead", args=[lead.pk]),
        reverse("pipeline:activities"),
        reverse("pipeline:deal_create", args=[pipeline.pk]),
    ]
    for url in pages:
        response = rep_client.get(url)
        assert response.status_code == 200, url
        assert PAYLOAD.encode() not in response.content, url
    assert "&lt;script&gt;" in rep_client.get(reverse("pipeline:deal", args=[deal.pk])).content.decode()
    asked = move(rep_client, deal, stage(pipeline, "Lost"))
    assert PAYLOAD.encode() not in asked.content
