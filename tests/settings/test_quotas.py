"""The Quotas settings page through the Django test client: who may use it (admins all, managers their teams and
members but not themselves, nobody else), what it writes (through forecasting.services, audited), per-field errors,
filters, and a bounded number of queries."""

from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import AuditAction, AuditEntry
from forecasting.models import Quota
from forecasting.services import create_quota
from tests.queries import assert_query_count, capture_queries

pytestmark = pytest.mark.django_db

LIST = reverse("settings:quotas")


def quota(*, user=None, team=None, start=date(2026, 7, 1), end=date(2026, 10, 1), amount="50000") -> Quota:
    return create_quota(actor=None, user=user, team=team, period_start=start, period_end=end, amount=Decimal(amount))


@pytest.fixture
def quotas(org) -> dict[str, Quota]:
    return {
        "east": quota(team=org.team),
        "west": quota(team=org.other_team),
        "rep": quota(user=org.rep, amount="20000"),
        "rep_q4": quota(user=org.rep, start=date(2026, 10, 1), end=date(2027, 1, 1), amount="25000"),
        "other_rep": quota(user=org.other_rep),
        "manager": quota(user=org.manager, amount="90000"),
    }


def as_user(client, user):
    client.force_login(user)
    return client


def listed(response) -> set[int]:
    return {q.pk for q in response.context["quotas"]}


def new(**fields) -> dict:
    return {
        "user": "",
        "team": "",
        "period_start": "2027-01-01",
        "period_end": "2027-04-01",
        "amount": "30000",
        **fields,
    }


# --- Access -----------------------------------------------------------------------------------------------------------


def test_reps_are_refused_every_quota_page_and_nothing_changes(client, org, quotas):
    as_user(client, org.rep)
    target = quotas["rep"]
    for method, url in [
        ("get", LIST),
        ("post", LIST),
        ("get", reverse("settings:quota", args=[target.pk])),
        ("post", reverse("settings:quota", args=[target.pk])),
        ("post", reverse("settings:quota_delete", args=[target.pk])),
    ]:
        response = getattr(client, method)(url, new(user=org.rep.pk))
        assert response.status_code == 403, url
    assert Quota.objects.count() == len(quotas)


def test_anonymous_visitors_are_sent_to_log_in(client, quotas):
    for method, url in [("get", LIST), ("post", reverse("settings:quota_delete", args=[quotas["rep"].pk]))]:
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_an_admin_lists_every_quota(client, org, quotas):
    response = as_user(client, org.admin).get(LIST)
    assert response.status_code == 200
    assert listed(response) == {q.pk for q in quotas.values()}
    assert b'aria-current="page">Quotas' in response.content


def test_a_manager_lists_their_team_and_its_members_but_not_their_own(client, org, quotas):
    response = as_user(client, org.manager).get(LIST)
    assert response.status_code == 200
    assert listed(response) == {quotas["east"].pk, quotas["rep"].pk, quotas["rep_q4"].pk}


def test_a_manager_gets_404_for_quotas_they_may_not_change(client, org, quotas):
    as_user(client, org.manager)
    for name in ("west", "other_rep", "manager"):
        pk = quotas[name].pk
        assert client.get(reverse("settings:quota", args=[pk])).status_code == 404
        assert client.post(reverse("settings:quota", args=[pk]), new(team=org.team.pk)).status_code == 404
        assert client.post(reverse("settings:quota_delete", args=[pk])).status_code == 404
    assert client.get(reverse("settings:quota", args=[999_999])).status_code == 404
    assert Quota.objects.count() == len(quotas)


def test_a_manager_may_not_set_a_quota_outside_their_teams_or_for_themselves(client, org):
    as_user(client, org.manager)
    for fields in ({"user": org.other_rep.pk}, {"user": org.manager.pk}, {"team": org.other_team.pk}):
        response = client.post(LIST, new(**fields))
        assert response.status_code == 400, fields
        field = next(iter(fields))
        assert response.context["form"].errors[field], fields
    assert not Quota.objects.exists()


# --- Writes -----------------------------------------------------------------------------------------------------------


def test_a_manager_sets_a_quota_for_a_member_through_the_service(client, org):
    response = as_user(client, org.manager).post(LIST, new(user=org.rep.pk))
    assert response.status_code == 302 and response["Location"] == LIST
    created = Quota.objects.get()
    assert (created.user, created.team, created.amount) == (org.rep, None, Decimal("30000"))
    assert (created.period_start, created.period_end) == (date(2027, 1, 1), date(2027, 4, 1))
    assert AuditEntry.objects.filter(action=AuditAction.CREATED, actor=org.manager).count() == 1


def test_an_admin_edits_and_deletes_a_quota(client, org, quotas):
    target = quotas["west"]
    as_user(client, org.admin)
    page = client.get(reverse("settings:quota", args=[target.pk]))
    assert page.status_code == 200 and page.context["form"].initial["team"] == org.other_team
    response = client.post(
        reverse("settings:quota", args=[target.pk]),
        new(team=org.other_team.pk, period_start="2026-07-01", period_end="2026-10-01", amount="65000"),
    )
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.amount == Decimal("65000")
    assert AuditEntry.objects.filter(action=AuditAction.UPDATED).count() == 1

    response = client.post(reverse("settings:quota_delete", args=[target.pk]))
    assert response.status_code == 302
    assert not Quota.objects.filter(pk=target.pk).exists()
    assert AuditEntry.objects.filter(action=AuditAction.DELETED).count() == 1
    assert client.get(reverse("settings:quota_delete", args=[quotas["east"].pk])).status_code == 405


@pytest.mark.parametrize(
    "fields, errors",
    [
        ({}, {"user", "team"}),  # neither
        ({"both": True}, {"user", "team"}),
        ({"amount": "-5"}, {"amount"}),
        ({"amount": "lots"}, {"amount"}),
        ({"period_end": "2026-12-01"}, {"period_end"}),  # before the start
        ({"period_end": "2027-01-01"}, {"period_end"}),  # empty period
        ({"period_start": "someday"}, {"period_start"}),
        ({"user": "999999"}, {"user"}),
    ],
)
def test_bad_input_answers_400_with_per_field_errors(client, org, fields, errors):
    data = new(**{"user": org.rep.pk, **{k: v for k, v in fields.items() if k != "both"}})
    if not fields:
        data["user"] = ""
    if fields.get("both"):
        data["team"] = org.team.pk
    response = as_user(client, org.admin).post(LIST, data)
    assert response.status_code == 400
    form = response.context["form"]
    assert set(form.errors) == errors
    for name in errors:
        assert f'id="id_{name}-error"'.encode() in response.content
    assert not Quota.objects.exists()


def test_an_edit_with_bad_input_changes_nothing(client, org, quotas):
    target = quotas["rep"]
    response = as_user(client, org.manager).post(
        reverse("settings:quota", args=[target.pk]), new(user=org.rep.pk, amount="-1")
    )
    assert response.status_code == 400 and "amount" in response.context["form"].errors
    target.refresh_from_db()
    assert target.amount == Decimal("20000")


# --- Filters and queries ----------------------------------------------------------------------------------------------


def test_filters_by_period_user_and_team(client, org, quotas):
    as_user(client, org.admin)
    assert listed(client.get(LIST, {"period": "2026-Q4"})) == {quotas["rep_q4"].pk}
    assert listed(client.get(LIST, {"period": "2026-08"})) == {
        quotas[name].pk for name in ("east", "west", "rep", "other_rep", "manager")
    }
    assert listed(client.get(LIST, {"period": "2026"})) == {q.pk for q in quotas.values()}
    assert listed(client.get(LIST, {"user": org.rep.pk})) == {quotas["rep"].pk, quotas["rep_q4"].pk}
    assert listed(client.get(LIST, {"team": org.other_team.pk})) == {quotas["west"].pk}
    assert listed(client.get(LIST, {"user": org.rep.pk, "period": "2026-Q3"})) == {quotas["rep"].pk}


def test_bad_filters_answer_400_with_the_field_named(client, org, quotas):
    as_user(client, org.manager)
    response = client.get(LIST, {"period": "July"})
    assert response.status_code == 400 and "period" in response.context["filters"].errors
    response = client.get(LIST, {"team": org.other_team.pk})  # not one of the manager's teams
    assert response.status_code == 400 and "team" in response.context["filters"].errors
    assert listed(response) == set()


def test_a_period_filter_that_does_not_read_says_why_in_the_words_of_the_api(client, org, quotas):
    as_user(client, org.admin)
    assert client.get(LIST, {"period": "July"}).context["filters"].errors["period"] == [
        "Write a period as 2026-11, 2026-Q4 or 2026."
    ]
    assert client.get(LIST, {"period": "2026-13"}).context["filters"].errors["period"] == [
        "The month must be 01 to 12."
    ]
    response = client.get(LIST, {"period": "9999-12"})  # its end is past the last date: once a 500
    assert response.status_code == 400
    assert response.context["filters"].errors["period"] == ["The period must end before the year 10000."]


def test_the_list_takes_the_same_number_of_queries_for_many_quotas(client, org):
    as_user(client, org.admin)
    quota(team=org.team)
    with capture_queries() as few:
        assert client.get(LIST).status_code == 200
    for month in range(1, 13):
        quota(user=org.rep, start=date(2025, month, 1), end=date(2025 + month // 12, month % 12 + 1, 1))
        quota(team=org.other_team, start=date(2025, month, 1), end=date(2025 + month // 12, month % 12 + 1, 1))
    with capture_queries() as many:
        response = client.get(LIST)
    assert len(response.context["quotas"]) == 25
    assert_query_count(few, many, at_most=12)
