"""Contract of users, me, teams and tokens, and of authentication: bearer tokens, sessions with CSRF."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import create_api_token, hash_token_secret
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db


def bearer(raw_token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")
    return client


def test_me_shows_the_role_and_managed_teams(org):
    body = client_for(org.manager).get("/api/v1/me/").json()
    assert body["username"] == "manager" and body["role"] == "manager"
    assert body["team"] == org.team.pk and body["managed_teams"] == [org.team.pk]


def test_users_are_those_whose_records_one_sees(org):
    listed = {row["username"] for row in client_for(org.manager).get("/api/v1/users/").json()["results"]}
    assert listed == {"manager", "rep", "teammate"}
    assert client_for(org.rep).get(f"/api/v1/users/{org.other_rep.pk}/").status_code == 404


def test_teams_list_managers_and_members(org):
    team = client_for(org.rep).get(f"/api/v1/teams/{org.team.pk}/").json()
    assert team["managers"] == [org.manager.pk]
    assert set(team["members"]) == {org.manager.pk, org.rep.pk, org.teammate.pk}


# --- Tokens -------------------------------------------------------------------------------------------------------


def test_a_created_token_is_shown_once_and_stored_hashed(org):
    client = client_for(org.rep)
    response = client.post("/api/v1/tokens/", {"name": "Zapier"}, format="json")
    assert response.status_code == 201
    raw_token = response.json()["token"]
    stored = ApiToken.objects.get(pk=response.json()["id"])
    assert stored.key_hash == hash_token_secret(raw_token) and raw_token not in stored.key_hash
    assert "token" not in client.get(f"/api/v1/tokens/{stored.pk}/").json()
    assert bearer(raw_token).get("/api/v1/me/").json()["username"] == "rep"


def test_a_token_records_when_it_was_last_used(org):
    token, raw_token = create_api_token(user=org.rep, name="t")
    assert token.last_used_at is None
    bearer(raw_token).get("/api/v1/me/")
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_revoked_token_is_401_from_then_on(org):
    token, raw_token = create_api_token(user=org.rep, name="t")
    client = bearer(raw_token)
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    response = client.get("/api/v1/me/")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_is_401(org):
    token, raw_token = create_api_token(user=org.rep, name="t", expires_at=timezone.now() + timedelta(days=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert bearer(raw_token).get("/api/v1/me/").status_code == 401


def test_a_deactivated_users_token_is_401(org):
    _token, raw_token = create_api_token(user=org.rep, name="t")
    org.rep.is_active = False
    org.rep.save()
    assert bearer(raw_token).get("/api/v1/me/").status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer a b", "Bearer crm_nothex.secret", "Bearer crm_000000000000.wrong", "Bearer \x00", "Bearer é"],
)
def test_malformed_or_unknown_tokens_are_401(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/me/").status_code == 401


def test_token_creation_refuses_a_past_expiry(org):
    response = client_for(org.rep).post(
        "/api/v1/tokens/", {"name": "t", "expires_at": "2000-01-01T00:00:00Z"}, format="json"
    )
    assert response.status_code == 400 and list(response.json()) == ["expires_at"]


def test_create_api_token_command_prints_a_working_token(org):
    out = StringIO()
    call_command("create_api_token", "rep", "--name", "cli", "--expires-days", "30", stdout=out)
    raw_token = out.getvalue().strip()
    assert bearer(raw_token).get("/api/v1/me/").json()["username"] == "rep"
    token = ApiToken.objects.get(user=org.rep, name="cli")
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)


def test_create_api_token_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError):
        call_command("create_api_token", "nobody")


# --- Sessions -----------------------------------------------------------------------------------------------------


def test_a_browser_session_works_and_its_writes_need_csrf(org):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(org.rep)
    assert client.get("/api/v1/me/").status_code == 200
    response = client.post("/api/v1/leads/", {"last_name": "L"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_anonymous_requests_are_401_but_the_schema_and_docs_are_public(db):
    client = APIClient()
    assert client.get("/api/v1/deals/").status_code == 401
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"drf_spectacular_sidecar" in docs.content  # served locally, no CDN


def test_an_admin_can_revoke_tokens_in_the_django_admin(org):
    from django.test import Client

    token, raw_token = create_api_token(user=org.rep, name="leaked")
    org.admin.is_staff = True
    org.admin.is_superuser = True
    org.admin.save()
    browser = Client()
    browser.force_login(org.admin)
    response = browser.post(
        "/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    assert response.status_code == 200
    assert bearer(raw_token).get("/api/v1/me/").status_code == 401
