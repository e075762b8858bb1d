"""The Django admin of accounts: a user's team changed there is audited and queues a recompute, like the teams page."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from accounts.models import AuditEntry, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, org):
    org.admin.is_staff = org.admin.is_superuser = True
    org.admin.save()
    client.force_login(org.admin)
    return client


def _team_trail(user) -> list[list]:
    entries = AuditEntry.objects.filter(content_type=ContentType.objects.get_for_model(user), object_id=user.pk)
    return [entry.changes["team"] for entry in entries.order_by("at", "id")]


def _user_form(user, **fields) -> dict:
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "role": user.role,
        "team": user.team_id or "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    return {**data, **fields}


@pytest.fixture
def queued(settings, monkeypatch) -> list:
    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    calls: list = []
    monkeypatch.setattr("forecasting.services.request_recompute", lambda: calls.append(True))
    return calls


def test_moving_a_user_to_another_team_in_the_admin_is_audited_and_queues_a_recompute(
    superuser_client, org, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            reverse("admin:accounts_user_change", args=[org.rep.pk]), _user_form(org.rep, team=org.other_team.pk)
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    org.rep.refresh_from_db()
    assert org.rep.team == org.other_team
    assert _team_trail(org.rep) == [[org.team.pk, org.other_team.pk]]
    assert AuditEntry.objects.get(object_id=org.rep.pk).actor == org.admin
    assert queued


def test_an_admin_edit_that_keeps_the_team_records_no_membership_change(
    superuser_client, org, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            reverse("admin:accounts_user_change", args=[org.rep.pk]), _user_form(org.rep, first_name="Renamed")
        )
    assert response.status_code == 302
    org.rep.refresh_from_db()
    assert org.rep.first_name == "Renamed" and org.rep.team == org.team
    assert _team_trail(org.rep) == []
    assert not queued


def test_a_user_added_in_the_admin_with_a_team_is_audited_as_joining_it(
    superuser_client, org, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            reverse("admin:accounts_user_add"),
            {
                "username": "newcomer",
                "password1": "a-long-pass-phrase-42",
                "password2": "a-long-pass-phrase-42",
                "usable_password": "true",
                "email": "",
                "first_name": "",
                "last_name": "",
                "role": Role.REP,
                "team": org.team.pk,
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    newcomer = type(org.rep).objects.get(username="newcomer")
    assert newcomer.team == org.team
    assert _team_trail(newcomer) == [[None, org.team.pk]]
    assert queued
