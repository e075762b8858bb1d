"""The deal table's pick lists (`pipeline.pick_lists`) are read once per version of their tables: what a page offers
is what the tables hold, after a change on any write path (services, the admin's and raw SQL's `update`, a
membership, a rolled-back change), and a page at an unchanged version reads only the version."""

import re

import pytest
from django.contrib.auth import user_logged_in
from django.db import connection, transaction
from django.http import QueryDict
from django.test import RequestFactory
from django.urls import reverse

from accounts import services as account_services
from accounts.models import Role, Team, User
from pipeline import pick_lists, services
from pipeline.forms import BulkDealForm, DealTableForm
from pipeline.models import LostReason, Pipeline, Stage
from pipeline.pick_lists import PickLists, pick_list_version
from tests.factories import make_lost_reason, make_pipeline, make_qualified_deal, make_team, make_user, stage
from tests.queries import capture_queries

pytestmark = pytest.mark.django_db


def options(html: str, select_id: str) -> list[tuple[str, str]]:
    """(value, text) of each option of the <select> with `select_id`, the empty one left out."""
    select = re.search(rf'<select[^>]* id="{select_id}"[^>]*>(.*?)</select>', html, flags=re.S)
    assert select, f"no <select id={select_id}>"
    return [
        (value, text)
        for value, text in re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select[1])
        if value
    ]


def offered(client, user) -> dict[str, list[tuple[str, str]]]:
    client.force_login(user)
    response = client.get(reverse("pipeline:deal_table"))
    assert response.status_code == 200
    html = response.content.decode()
    ids = {"pipeline": "id_pipeline", "stage": "id_stage", "bulk_owner": "id_bulk_owner", "bulk_stage": "id_bulk_stage"}
    ids |= {"lost_reason": "id_bulk_lost_reason"}
    if user.role != Role.REP:
        ids |= {"owner": "id_owner", "team": "id_team"}
    return {name: options(html, select_id) for name, select_id in ids.items()}


def expected(user) -> dict[str, list[tuple[str, str]]]:
    """What the tables hold, in plain Python from every row: the reference the page is compared with."""
    users = sorted(User.objects.all(), key=lambda each: each.username)
    if user.role == Role.ADMIN:
        seen = editable = users
        teams = list(Team.objects.all())
    elif user.role == Role.MANAGER:
        managed = {team.pk for team in Team.objects.all() if user in team.managers.all()}
        seen = editable = [each for each in users if each.team_id in managed or each.pk == user.pk]
        teams = [team for team in Team.objects.all() if team.pk in managed or team.pk == user.team_id]
    else:
        seen = editable = [user]
        teams = [team for team in Team.objects.all() if team.pk == user.team_id]
    pipelines = sorted(Pipeline.objects.all(), key=lambda each: (not each.is_default, each.name))
    stages = sorted(Stage.objects.select_related("pipeline"), key=lambda each: (each.pipeline.name, each.order))
    stage_options = [(str(each.pk), f"{each.pipeline.name} · {each.name}") for each in stages]
    found = {
        "pipeline": [(str(each.pk), each.name) for each in pipelines],
        "stage": stage_options,
        "bulk_owner": [(str(each.pk), str(each)) for each in editable if each.is_active],
        "bulk_stage": stage_options,
        "lost_reason": [
            (str(each.pk), each.name)
            for each in sorted(LostReason.objects.all(), key=lambda r: r.name)
            if each.is_active
        ],
    }
    if user.role != Role.REP:
        found |= {
            "owner": [(str(each.pk), str(each)) for each in seen if each.is_active],
            "team": [(str(team.pk), team.name) for team in sorted(teams, key=lambda team: team.name)],
        }
    return found


@pytest.fixture
def lists(org, pipeline, other_pipeline, lost_reason):
    make_lost_reason("Timing")
    return org


@pytest.mark.parametrize("username", ["rep", "manager", "admin"])
def test_the_page_offers_what_the_tables_hold_after_each_kind_of_change(client, lists, pipeline, username):
    org, user = lists, getattr(lists, username)

    def check():
        user.refresh_from_db()
        assert offered(client, user) == expected(user)

    check()
    services.update_stage(stage=stage(pipeline, "Proposal"), actor=org.admin, name="Offer sent")  # a service
    check()
    Stage.objects.filter(pk=stage(pipeline, "Qualification").pk).update(name="Qualified")  # no signal, no save
    check()
    Pipeline.objects.filter(pk=pipeline.pk).update(name="Enterprise")  # the stages' labels name it
    check()
    make_user(team=org.team, username="newcomer", first_name="Nia", last_name="Ng")
    check()
    User.objects.filter(username="teammate").update(first_name="Tom", last_name="Tate")
    check()
    User.objects.filter(username="newcomer").update(is_active=False)
    check()
    account_services.change_user_team(user=org.other_rep, team=org.team, actor=org.admin)
    check()
    org.other_team.managers.add(org.manager)  # a membership: the manager now sees the West team too
    check()
    make_team(name="North")
    check()
    LostReason.objects.filter(name="Timing").update(is_active=False)
    check()
    make_pipeline(name="Expansion")
    check()


def test_an_unchanged_version_costs_one_query_and_a_login_does_not_change_it(offered_labels, org):
    version = pick_list_version()
    user_logged_in.send(sender=User, request=RequestFactory().get("/"), user=org.rep)  # writes last_login
    assert User.objects.get(pk=org.rep.pk).last_login is not None
    assert pick_list_version() == version
    offered_labels(org.rep)  # the lists are cached at this version
    with capture_queries() as queries:
        offered_labels(org.rep)
    assert [query["sql"] for query in queries] == ["SELECT version FROM pipeline_pick_list_version"]


def test_a_list_read_inside_a_change_that_rolls_back_is_never_offered_again(offered_labels, org, pipeline):
    proposal = stage(pipeline, "Proposal")
    with pytest.raises(RuntimeError), transaction.atomic():
        Stage.objects.filter(pk=proposal.pk).update(name="Rolled back")
        assert f"{pipeline.name} · Rolled back" in offered_labels(org.rep)["stage"]
        raise RuntimeError
    # The version is the one before the change again; the number the change took is not given again.
    shown = offered_labels(org.rep)["stage"]
    assert f"{pipeline.name} · Proposal" in shown
    assert f"{pipeline.name} · Rolled back" not in shown
    Stage.objects.filter(pk=proposal.pk).update(name="Offer")
    shown = offered_labels(org.rep)["stage"]
    assert f"{pipeline.name} · Offer" in shown
    assert f"{pipeline.name} · Rolled back" not in shown


def test_a_truncate_of_a_watched_table_gives_a_new_version(org):
    before = pick_list_version()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE pipeline_lostreason CASCADE")
    assert pick_list_version() != before


def test_an_inactive_user_is_offered_nothing(org, pipeline):
    org.rep.is_active = False
    form = DealTableForm(QueryDict(""), user=org.rep, pick_lists=PickLists(org.rep))
    assert [value for value, _label in form.fields["pipeline"].widget.choices if value != ""] == []
    assert [value for value, _label in form.fields["stage"].widget.choices if value != ""] == []


@pytest.fixture
def offered_labels():
    """The labels each select of the deal table's two forms offers `user`, from one `PickLists`."""

    def labels(user) -> dict[str, list[str]]:
        pick_lists = PickLists(user)
        table = DealTableForm(QueryDict(""), user=user, pick_lists=pick_lists)
        bulk = BulkDealForm(user=user, pick_lists=pick_lists)
        fields = {"pipeline": table, "stage": table, "owner": table, "team": table, "lost_reason": bulk}
        return {
            name: [str(label) for _value, label in form.fields[name].widget.choices] for name, form in fields.items()
        }

    return labels


# What `_stage_rows` shows of a stage: read from outside the user and the tables, so not in a pick list's key.
_shown = "name"


def _stage_rows(user):
    return Stage.objects.values_list("pk", _shown)


def test_a_list_whose_function_reads_more_than_its_key_fails_the_tests(org, pipeline):
    global _shown
    assert PickLists(org.rep).names(_stage_rows) == dict(Stage.objects.values_list("pk", "name"))
    _shown = "kind"
    try:
        with pytest.raises(AssertionError, match="its key does not decide it"):
            PickLists(org.rep).names(_stage_rows)
    finally:
        _shown = "name"


def test_a_list_is_made_by_a_module_level_function_not_a_lambda(org):
    with pytest.raises(ValueError, match="module-level function"):
        PickLists(org.rep).names(lambda user: Stage.objects.values_list("pk", "name"))


def test_the_reps_visibility_setting_is_part_of_the_key(client, org, pipeline, settings):
    mine = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    theirs = make_qualified_deal(owner=org.teammate, pipeline=pipeline)
    client.force_login(org.rep)

    def shown() -> set[int]:
        html = client.get(reverse("pipeline:deal_table")).content.decode()
        return {int(pk) for pk in re.findall(r'<tr id="deal-row-(\d+)"', html)}

    assert shown() == {mine.pk}
    version = pick_list_version()
    settings.REP_VISIBILITY = "team"
    assert shown() == {mine.pk, theirs.pk}
    assert pick_list_version() == version  # the same version: the key, not a change, told the lists apart


def test_the_cache_forgets_the_least_recently_read_list_beyond_its_limit(org, pipeline, monkeypatch):
    monkeypatch.setattr(pick_lists, "_cached", {})
    monkeypatch.setattr(pick_lists, "CACHED_LISTS_LIMIT", 2)
    rep, manager, admin = (PickLists(user) for user in (org.rep, org.manager, org.admin))
    rep.names(_stage_rows)
    manager.names(_stage_rows)
    rep.names(_stage_rows)  # read again: now the manager's is the least recent
    admin.names(_stage_rows)
    assert [key[-1][0] for key in pick_lists._cached] == [org.rep.pk, org.admin.pk]
