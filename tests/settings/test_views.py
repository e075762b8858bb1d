"""The settings pages through the Django test client: who may use them, what they write, readable errors, queries."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken, AuditAction, AuditEntry, Team
from accounts.services import create_api_token
from pipeline.models import LostReason, Pipeline, Stage, StageKind
from tests.factories import make_lost_reason, make_pipeline, make_team, stage
from tests.queries import assert_query_count, capture_queries

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, org):
    client.force_login(org.admin)
    return client


def open_orders(pipeline) -> list[str]:
    return list(pipeline.stages.filter(kind=StageKind.OPEN).order_by("order").values_list("name", flat=True))


def all_orders(pipeline) -> list[tuple[str, int]]:
    return list(pipeline.stages.order_by("order").values_list("name", "order"))


def admin_urls(pipeline, lost_reason, team) -> list[tuple[str, str]]:
    first = pipeline.stages.order_by("order").first()
    return [
        ("get", reverse("settings:pipelines")),
        ("post", reverse("settings:pipelines")),
        ("get", reverse("settings:pipeline", args=[pipeline.pk])),
        ("post", reverse("settings:pipeline_rename", args=[pipeline.pk])),
        ("post", reverse("settings:pipeline_make_default", args=[pipeline.pk])),
        ("post", reverse("settings:stage_create", args=[pipeline.pk])),
        ("post", reverse("settings:stage_reorder", args=[pipeline.pk])),
        ("get", reverse("settings:stage", args=[first.pk])),
        ("post", reverse("settings:stage", args=[first.pk])),
        ("post", reverse("settings:stage_move", args=[first.pk])),
        ("get", reverse("settings:lost_reasons")),
        ("post", reverse("settings:lost_reasons")),
        ("get", reverse("settings:lost_reason", args=[lost_reason.pk])),
        ("post", reverse("settings:lost_reason", args=[lost_reason.pk])),
        ("post", reverse("settings:lost_reason_toggle", args=[lost_reason.pk])),
        ("get", reverse("settings:teams")),
        ("post", reverse("settings:teams")),
        ("get", reverse("settings:team", args=[team.pk])),
        ("post", reverse("settings:team", args=[team.pk])),
    ]


# --- Access ---------------------------------------------------------------------------------------------------------


def test_managers_and_reps_are_refused_every_admin_page_and_action_and_nothing_changes(
    client, org, pipeline, lost_reason
):
    before = (all_orders(pipeline), list(LostReason.objects.values_list("name", "is_active")), Pipeline.objects.count())
    for user in (org.rep, org.manager):
        client.force_login(user)
        for method, url in admin_urls(pipeline, lost_reason, org.team):
            response = getattr(client, method)(url, {"name": "Hacked", "order": "1", "direction": "up"})
            assert response.status_code == 403, (user, url)
    after = (all_orders(pipeline), list(LostReason.objects.values_list("name", "is_active")), Pipeline.objects.count())
    assert after == before
    assert not AuditEntry.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in(client, org, pipeline, lost_reason):
    for method, url in [*admin_urls(pipeline, lost_reason, org.team), ("get", reverse("settings:tokens"))]:
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url


def test_admins_open_every_settings_page(admin_client, org, pipeline, lost_reason):
    for method, url in admin_urls(pipeline, lost_reason, org.team):
        if method == "get":
            assert admin_client.get(url).status_code == 200, url


def test_the_navigation_links_settings_for_admins_and_tokens_for_everyone(client, org, pipeline):
    client.force_login(org.rep)
    page = client.get(reverse("pipeline:board")).content.decode()
    assert reverse("settings:tokens") in page and reverse("settings:pipelines") + '"' not in page
    client.force_login(org.admin)
    page = client.get(reverse("pipeline:board")).content.decode()
    assert reverse("settings:pipelines") in page and reverse("settings:tokens") in page


def test_csrf_is_required(org, pipeline):
    client = Client(enforce_csrf_checks=True)
    client.force_login(org.admin)
    response = client.post(reverse("settings:pipeline_rename", args=[pipeline.pk]), {"name": "Renamed"})
    assert response.status_code == 403
    assert Pipeline.objects.get(pk=pipeline.pk).name == "New Business"


# --- Pipelines ------------------------------------------------------------------------------------------------------


def test_an_admin_creates_a_pipeline_with_open_won_and_lost_stages(admin_client, pipeline):
    response = admin_client.post(
        reverse("settings:pipelines"), {"name": "Partners", "open_stages": "Intro\nPilot", "is_default": "on"}
    )
    created = Pipeline.objects.get(name="Partners")
    assert response.status_code == 302 and response["Location"] == reverse("settings:pipeline", args=[created.pk])
    assert [(s.name, s.kind) for s in created.stages.order_by("order")] == [
        ("Intro", "open"),
        ("Pilot", "open"),
        ("Won", "won"),
        ("Lost", "lost"),
    ]
    assert created.is_default and not Pipeline.objects.get(pk=pipeline.pk).is_default
    assert AuditEntry.objects.filter(content_type=ContentType.objects.get_for_model(Pipeline)).count() == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "", "open_stages": "A"}, "name", "This field is required."),
        ({"name": "New Business", "open_stages": "A"}, "name", "already exists"),
        ({"name": "X", "open_stages": "  \n "}, "open_stages", "This field is required."),
        ({"name": "X", "open_stages": "A\na"}, "open_stages", "different name"),
        ({"name": "X", "open_stages": "A\nWon"}, "open_stages", "Won and Lost are added"),
    ],
)
def test_a_bad_new_pipeline_shows_the_error_beside_its_field_and_writes_nothing(
    admin_client, pipeline, data, field, message
):
    response = admin_client.post(reverse("settings:pipelines"), data)
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert f'id="id_{field}-error"' in response.content.decode()
    assert Pipeline.objects.count() == 1 and not AuditEntry.objects.exists()


def test_an_admin_renames_a_pipeline_and_makes_it_the_default(admin_client, pipeline, other_pipeline):
    admin_client.post(reverse("settings:pipeline_rename", args=[other_pipeline.pk]), {"name": "Upsell"})
    response = admin_client.post(reverse("settings:pipeline_make_default", args=[other_pipeline.pk]))
    assert response.status_code == 302
    other_pipeline.refresh_from_db()
    pipeline.refresh_from_db()
    assert other_pipeline.name == "Upsell" and other_pipeline.is_default and not pipeline.is_default


def test_renaming_to_a_taken_or_empty_name_is_a_readable_error(admin_client, pipeline, other_pipeline):
    for name, message in [("New Business", "already exists"), ("", "This field is required.")]:
        response = admin_client.post(reverse("settings:pipeline_rename", args=[other_pipeline.pk]), {"name": name})
        assert response.status_code == 400
        assert message in response.content.decode()
    assert Pipeline.objects.get(pk=other_pipeline.pk).name == "Renewals"


def test_names_are_escaped(admin_client, pipeline):
    admin_client.post(reverse("settings:pipeline_rename", args=[pipeline.pk]), {"name": "<script>x()</script>"})
    page = admin_client.get(reverse("settings:pipeline", args=[pipeline.pk])).content.decode()
    assert "<script>x()" not in page and "&lt;script&gt;x()" in page


# --- Stages ---------------------------------------------------------------------------------------------------------


def test_the_pipeline_page_lists_stages_in_order_in_bounded_queries(admin_client, pipeline):
    url = reverse("settings:pipeline", args=[pipeline.pk])
    with capture_queries() as few:
        response = admin_client.get(url)
    names = [s.name for s in response.context["stages"]]
    assert names == list(pipeline.stages.order_by("order").values_list("name", flat=True))
    for number in range(6):
        admin_client.post(
            reverse("settings:stage_create", args=[pipeline.pk]),
            {
                "name": f"Extra {number}",
                "probability": 50,
                "rotting_days": 30,
                "forecast_category": "pipeline",
            },
        )
    with capture_queries() as many:
        admin_client.get(url)
    assert_query_count(few, many, at_most=8)


def test_an_admin_edits_a_stage(admin_client, pipeline):
    target = stage(pipeline, "Discovery")
    response = admin_client.post(
        reverse("settings:stage", args=[target.pk]),
        {
            "name": "Discovery call",
            "probability": 25,
            "rotting_days": 12,
            "forecast_category": "best_case",
            "required_fields": ["amount", "budget"],
        },
    )
    assert response.status_code == 302
    target.refresh_from_db()
    assert (target.name, target.probability, target.rotting_days, target.forecast_category, target.required_fields) == (
        "Discovery call",
        25,
        12,
        "best_case",
        ["amount", "budget"],
    )
    assert AuditEntry.objects.filter(object_id=target.pk, action=AuditAction.UPDATED).exists()


def test_a_bad_stage_edit_shows_every_error_and_writes_nothing(admin_client, pipeline):
    target = stage(pipeline, "Discovery")
    before = Stage.objects.values().get(pk=target.pk)
    response = admin_client.post(
        reverse("settings:stage", args=[target.pk]),
        {
            "name": "Proposal",
            "probability": 101,
            "rotting_days": 0,
            "forecast_category": "maybe",
            "required_fields": ["salary"],
        },
    )
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {
        "probability",
        "rotting_days",
        "forecast_category",
        "required_fields",
    }
    # The name clash comes from the service once the form is valid.
    response = admin_client.post(
        reverse("settings:stage", args=[target.pk]),
        {
            "name": "Proposal",
            "probability": 10,
            "rotting_days": 5,
            "forecast_category": "pipeline",
        },
    )
    assert response.status_code == 400 and "already has a stage named" in response.content.decode()
    assert Stage.objects.values().get(pk=target.pk) == before
    assert not AuditEntry.objects.exists()


def test_a_won_stage_keeps_its_probability(admin_client, pipeline):
    won = pipeline.stages.get(kind=StageKind.WON)
    admin_client.post(
        reverse("settings:stage", args=[won.pk]),
        {
            "name": "Closed won",
            "probability": 10,
            "rotting_days": 30,
            "forecast_category": "commit",
        },
    )
    won.refresh_from_db()
    assert won.name == "Closed won" and won.probability == 100


def test_an_added_stage_goes_after_the_last_open_stage(admin_client, pipeline):
    response = admin_client.post(
        reverse("settings:stage_create", args=[pipeline.pk]),
        {
            "name": "Legal review",
            "probability": 85,
            "rotting_days": 10,
            "forecast_category": "commit",
            "required_fields": ["contact"],
        },
    )
    assert response.status_code == 302
    names = [name for name, _ in all_orders(pipeline)]
    assert names[-3:] == ["Legal review", "Won", "Lost"]
    assert [order for _, order in all_orders(pipeline)] == list(range(1, len(names) + 1))


def test_a_bad_new_stage_is_a_readable_error(admin_client, pipeline):
    before = all_orders(pipeline)
    response = admin_client.post(
        reverse("settings:stage_create", args=[pipeline.pk]),
        {
            "name": "Discovery",
            "probability": 5,
            "rotting_days": 3,
            "forecast_category": "pipeline",
        },
    )
    assert response.status_code == 400 and "already has a stage named" in response.content.decode()
    response = admin_client.post(reverse("settings:stage_create", args=[pipeline.pk]), {"name": ""})
    assert response.status_code == 400 and "This field is required." in response.content.decode()
    assert all_orders(pipeline) == before


def test_reordering_by_drag_keeps_orders_unique_and_records_each_move(admin_client, pipeline):
    names = open_orders(pipeline)
    ids = {s.name: s.pk for s in pipeline.stages.all()}
    wanted = [names[-1], *names[:-1]]
    response = admin_client.post(
        reverse("settings:stage_reorder", args=[pipeline.pk]),
        {"order": ",".join(str(ids[name]) for name in wanted)},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200 and 'id="stage-list"' in response.content.decode()
    assert open_orders(pipeline) == wanted
    orders = [order for _, order in all_orders(pipeline)]
    assert orders == list(range(1, len(orders) + 1))
    assert [name for name, _ in all_orders(pipeline)][-2:] == ["Won", "Lost"]
    updates = AuditEntry.objects.filter(
        action=AuditAction.UPDATED, content_type=ContentType.objects.get_for_model(Stage)
    )
    assert updates.count() >= 1 and all("order" in entry.changes for entry in updates)


@pytest.mark.parametrize("order", ["", "abc", "1,2", "999999"])
def test_a_reorder_that_does_not_list_exactly_the_open_stages_is_refused(admin_client, pipeline, other_pipeline, order):
    before = all_orders(pipeline)
    response = admin_client.post(reverse("settings:stage_reorder", args=[pipeline.pk]), {"order": order})
    assert response.status_code == 400
    assert all_orders(pipeline) == before and not AuditEntry.objects.exists()


def test_a_reorder_cannot_move_won_or_lost_or_other_pipelines_stages(admin_client, pipeline, other_pipeline):
    before = all_orders(pipeline)
    ids = list(pipeline.stages.filter(kind=StageKind.OPEN).order_by("order").values_list("pk", flat=True))
    won = pipeline.stages.get(kind=StageKind.WON).pk
    foreign = other_pipeline.stages.filter(kind=StageKind.OPEN).first().pk
    for order in ([won, *ids[1:]], [foreign, *ids[1:]]):
        response = admin_client.post(
            reverse("settings:stage_reorder", args=[pipeline.pk]), {"order": ",".join(map(str, order))}
        )
        assert response.status_code == 400
    assert all_orders(pipeline) == before


def test_the_up_and_down_buttons_swap_neighbouring_open_stages(admin_client, pipeline):
    names = open_orders(pipeline)
    second = stage(pipeline, names[1])
    response = admin_client.post(reverse("settings:stage_move", args=[second.pk]), {"direction": "up"})
    assert response.status_code == 302 and response["Location"].endswith(f"#stage-{second.pk}")
    assert open_orders(pipeline) == [names[1], names[0], *names[2:]]
    admin_client.post(reverse("settings:stage_move", args=[second.pk]), {"direction": "down"})
    assert open_orders(pipeline) == names
    # The first stage cannot go further up, the last open one cannot pass Won.
    admin_client.post(reverse("settings:stage_move", args=[stage(pipeline, names[0]).pk]), {"direction": "up"})
    admin_client.post(reverse("settings:stage_move", args=[stage(pipeline, names[-1]).pk]), {"direction": "down"})
    assert open_orders(pipeline) == names
    assert [name for name, _ in all_orders(pipeline)][-2:] == ["Won", "Lost"]
    assert admin_client.post(reverse("settings:stage_move", args=[second.pk]), {"direction": "left"}).status_code == 400


# --- Lost reasons ---------------------------------------------------------------------------------------------------


def test_an_admin_adds_renames_retires_and_reactivates_lost_reasons(admin_client, db):
    admin_client.post(reverse("settings:lost_reasons"), {"name": "Timing"})
    reason = LostReason.objects.get(name="Timing")
    admin_client.post(reverse("settings:lost_reason", args=[reason.pk]), {"name": "Bad timing"})
    admin_client.post(reverse("settings:lost_reason_toggle", args=[reason.pk]))
    reason.refresh_from_db()
    assert (reason.name, reason.is_active) == ("Bad timing", False)
    page = admin_client.get(reverse("settings:lost_reasons")).content.decode()
    assert "Retired" in page and "Reactivate" in page
    admin_client.post(reverse("settings:lost_reason_toggle", args=[reason.pk]))
    reason.refresh_from_db()
    assert reason.is_active
    assert AuditEntry.objects.filter(object_id=reason.pk).count() == 4


def test_a_duplicate_or_empty_lost_reason_is_a_readable_error(admin_client, lost_reason):
    for url in (reverse("settings:lost_reasons"), reverse("settings:lost_reason", args=[make_lost_reason("Other").pk])):
        for name, message in [("Price", "already exists"), ("", "This field is required.")]:
            response = admin_client.post(url, {"name": name})
            assert response.status_code == 400 and message in response.content.decode(), url
    assert sorted(LostReason.objects.values_list("name", flat=True)) == ["Other", "Price"]


def test_the_lost_reasons_page_is_bounded_in_queries(admin_client, db):
    for number in range(10):
        make_lost_reason(f"Reason {number}")
    with capture_queries() as queries:
        assert admin_client.get(reverse("settings:lost_reasons")).status_code == 200
    assert_query_count(queries, at_most=6)


# --- Teams ----------------------------------------------------------------------------------------------------------


def test_an_admin_creates_a_team_with_managers_and_members(admin_client, org):
    response = admin_client.post(
        reverse("settings:teams"),
        {
            "name": "North",
            "managers": [org.idle_manager.pk],
            "members": [org.rep.pk, org.other_rep.pk],
        },
    )
    assert response.status_code == 302
    team = Team.objects.get(name="North")
    assert list(team.managers.all()) == [org.idle_manager]
    assert set(team.members.all()) == {org.rep, org.other_rep}


def test_an_admin_edits_a_team_and_removed_members_leave_it(admin_client, org):
    response = admin_client.post(
        reverse("settings:team", args=[org.team.pk]),
        {
            "name": "East coast",
            "managers": [org.manager.pk, org.other_manager.pk],
            "members": [org.rep.pk],
        },
    )
    assert response.status_code == 302
    org.team.refresh_from_db()
    org.teammate.refresh_from_db()
    assert org.team.name == "East coast"
    assert set(org.team.managers.all()) == {org.manager, org.other_manager}
    assert list(org.team.members.all()) == [org.rep] and org.teammate.team is None


def test_a_rep_cannot_manage_a_team_and_a_bad_team_writes_nothing(admin_client, org):
    response = admin_client.post(reverse("settings:teams"), {"name": "South", "managers": [org.rep.pk]})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    response = admin_client.post(reverse("settings:team", args=[org.team.pk]), {"name": "West"})
    assert response.status_code == 400 and "already exists" in response.content.decode()
    assert not Team.objects.filter(name="South").exists()
    assert Team.objects.get(pk=org.team.pk).name == "East"


def test_the_teams_page_is_bounded_in_queries(admin_client, org):
    with capture_queries() as few:
        admin_client.get(reverse("settings:teams"))
    for number in range(5):
        make_team(name=f"Team {number}")
    with capture_queries() as many:
        admin_client.get(reverse("settings:teams"))
    assert_query_count(few, many, at_most=8)


# --- API tokens -----------------------------------------------------------------------------------------------------


def test_every_user_creates_a_token_whose_secret_is_shown_once(client, org):
    client.force_login(org.rep)
    created = client.post(reverse("settings:tokens"), {"name": "Zapier", "expires_on": ""})
    assert (created.status_code, created["Location"]) == (302, reverse("settings:tokens"))  # POST, redirect, GET
    response = client.get(created["Location"])
    secret = response.context["secret"]
    token = ApiToken.objects.get(user=org.rep)
    assert secret.startswith(f"crm_{token.prefix}.") and secret in response.content.decode()
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    page = client.get(reverse("settings:tokens")).content.decode()
    assert secret not in page and token.prefix in page and "Zapier" in page


def test_a_token_with_an_expiry_date_expires_at_the_end_of_that_day(client, org):
    client.force_login(org.rep)
    day = timezone.localdate() + timezone.timedelta(days=3)
    client.post(reverse("settings:tokens"), {"name": "Script", "expires_on": day.isoformat()})
    token = ApiToken.objects.get(user=org.rep)
    assert timezone.localtime(token.expires_at).date() == day


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"name": "x", "expires_on": "2001-01-01"}, "today or later"),
        ({"name": "x", "expires_on": "soon"}, "Enter a valid date."),
    ],
)
def test_a_bad_token_form_is_a_readable_error_and_creates_nothing(client, org, data, message):
    client.force_login(org.rep)
    response = client.post(reverse("settings:tokens"), data)
    assert response.status_code == 400 and message in response.content.decode()
    assert response.context["secret"] is None and not ApiToken.objects.exists()


def test_a_user_lists_and_revokes_only_their_own_tokens(client, org):
    mine, _ = create_api_token(user=org.rep, name="Mine")
    theirs, _ = create_api_token(user=org.teammate, name="Theirs")
    client.force_login(org.rep)
    page = client.get(reverse("settings:tokens")).content.decode()
    assert "Mine" in page and "Theirs" not in page
    assert client.post(reverse("settings:token_revoke", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("settings:token_revoke", args=[mine.pk])).status_code == 405
    assert client.post(reverse("settings:token_revoke", args=[mine.pk])).status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None
    assert "Revoked" in client.get(reverse("settings:tokens")).content.decode()


def test_a_revoked_token_answers_401(client, org):
    client.force_login(org.rep)
    secret = client.post(reverse("settings:tokens"), {"name": "CLI"}, follow=True).context["secret"]
    assert Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    client.post(reverse("settings:token_revoke", args=[ApiToken.objects.get().pk]))
    assert Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_the_tokens_page_is_bounded_in_queries(client, org):
    client.force_login(org.rep)
    create_api_token(user=org.rep, name="One")
    with capture_queries() as few:
        client.get(reverse("settings:tokens"))
    for number in range(5):
        create_api_token(user=org.rep, name=f"Token {number}")
    with capture_queries() as many:
        client.get(reverse("settings:tokens"))
    assert_query_count(few, many, at_most=6)


def test_the_pipelines_page_is_bounded_in_queries(admin_client, pipeline):
    with capture_queries() as few:
        assert admin_client.get(reverse("settings:pipelines")).status_code == 200
    for number in range(4):
        make_pipeline(name=f"Extra {number}")
    with capture_queries() as many:
        admin_client.get(reverse("settings:pipelines"))
    assert_query_count(few, many, at_most=6)


def _team_trail(user) -> list[list]:
    entries = AuditEntry.objects.filter(content_type=ContentType.objects.get_for_model(user), object_id=user.pk)
    return [entry.changes["team"] for entry in entries.order_by("at", "id")]


def test_a_membership_change_on_the_teams_page_is_audited_and_queues_a_recompute(
    admin_client, org, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    queued = []
    monkeypatch.setattr("forecasting.services.request_recompute", lambda: queued.append(True))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("settings:team", args=[org.team.pk]),
            {"name": "East", "managers": [org.manager.pk], "members": [org.rep.pk, org.other_rep.pk]},
        )
    assert response.status_code == 302
    assert _team_trail(org.teammate) == [[org.team.pk, None]]
    assert _team_trail(org.other_rep) == [[org.other_team.pk, org.team.pk]]
    assert _team_trail(org.rep) == []  # stayed: nothing to record
    assert AuditEntry.objects.get(object_id=org.teammate.pk).actor == org.admin
    assert queued


def test_a_new_team_with_members_on_the_teams_page_audits_each_member(admin_client, org):
    response = admin_client.post(reverse("settings:teams"), {"name": "North", "members": [org.other_rep.pk]})
    assert response.status_code == 302
    assert _team_trail(org.other_rep) == [[org.other_team.pk, Team.objects.get(name="North").pk]]
