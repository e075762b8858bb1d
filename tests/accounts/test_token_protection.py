"""Repeated failed `Authorization: Bearer` attempts from one address are slowed, then locked, per address.

Through the test client; tests/faults/test_token_lockout.py shows the same against a real server with Redis down.
"""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import FailedTokenAttempts
from accounts.services import create_api_token

pytestmark = pytest.mark.django_db

LIMITS = {"API_TOKEN_FAILURES_BEFORE_DELAY": 2, "API_TOKEN_FAILURE_LIMIT": 4, "API_TOKEN_LOCKOUT_SECONDS": 600}
BAD_TOKEN = "crm_0123456789ab.not-the-secret"


def call(token: str, address: str):
    return APIClient().get("/api/v1/deals/", HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=address)


def let_the_wait_pass(address: str) -> None:
    FailedTokenAttempts.objects.filter(address=address).update(refused_until=timezone.now())


@override_settings(**LIMITS)
def test_failures_beyond_the_free_ones_make_the_address_wait_then_lock_it(org):
    _, good = create_api_token(user=org.rep, name="integration")

    assert [call(BAD_TOKEN, "10.0.0.1").status_code for _ in range(3)] == [401, 401, 401]
    slowed = call(good, "10.0.0.1")  # the third failure asks for a wait: even the right token must wait
    assert slowed.status_code == 429
    assert slowed["Retry-After"] == "1"
    assert slowed.json() == {
        "detail": "Too many failed token attempts from your address: wait 1 second before trying again."
    }
    assert call(good, "10.0.0.2").status_code == 200  # another address is not concerned

    let_the_wait_pass("10.0.0.1")
    assert call(BAD_TOKEN, "10.0.0.1").status_code == 401  # the fourth failure: the limit
    locked = call(good, "10.0.0.1")
    assert locked.status_code == 429
    assert 599 <= int(locked["Retry-After"]) <= 600
    assert "token authentication is locked for" in locked.json()["detail"]
    assert FailedTokenAttempts.objects.get(address="10.0.0.1").failures == 4  # refused attempts are not counted


@override_settings(**LIMITS)
def test_the_lockout_expires_and_the_count_starts_again(org):
    _, good = create_api_token(user=org.rep, name="integration")
    for _ in range(4):
        call(BAD_TOKEN, "10.0.0.1")
        let_the_wait_pass("10.0.0.1")
    FailedTokenAttempts.objects.filter(address="10.0.0.1").update(refused_until=timezone.now() + timedelta(seconds=600))
    assert call(good, "10.0.0.1").status_code == 429

    FailedTokenAttempts.objects.filter(address="10.0.0.1").update(
        refused_until=timezone.now(), last_failed_at=timezone.now() - timedelta(seconds=601)
    )

    assert call(good, "10.0.0.1").status_code == 200
    assert call(BAD_TOKEN, "10.0.0.1").status_code == 401
    assert FailedTokenAttempts.objects.get(address="10.0.0.1").failures == 1


@override_settings(**LIMITS)
@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer a b", "Bearer crm_0123456789ab.x", "Bearer not-a-token", "Bearer crm_zz.secret"],
)
def test_every_kind_of_failed_bearer_attempt_counts(org, header):
    for _ in range(3):
        response = APIClient().get("/api/v1/deals/", HTTP_AUTHORIZATION=header, REMOTE_ADDR="10.0.0.9")
        assert response.status_code == 401

    assert APIClient().get("/api/v1/deals/", HTTP_AUTHORIZATION=header, REMOTE_ADDR="10.0.0.9").status_code == 429


@override_settings(**LIMITS)
def test_revoked_and_expired_tokens_count_as_failures(org):
    from accounts.services import revoke_api_token

    revoked, revoked_raw = create_api_token(user=org.rep, name="old")
    revoke_api_token(token=revoked)
    expired, expired_raw = create_api_token(user=org.rep, name="expired")
    expired.expires_at = timezone.now() - timedelta(days=1)
    expired.save()

    assert [call(raw, "10.0.0.3").status_code for raw in (revoked_raw, expired_raw, revoked_raw)] == [401, 401, 401]
    assert call(revoked_raw, "10.0.0.3").status_code == 429


@override_settings(**LIMITS)
def test_session_and_anonymous_requests_are_not_counted(client, org):
    client.force_login(org.rep)
    for _ in range(5):
        assert client.get("/api/v1/deals/", REMOTE_ADDR="10.0.0.4").status_code == 200
        assert APIClient().get("/api/v1/deals/", REMOTE_ADDR="10.0.0.4").status_code == 401
    assert not FailedTokenAttempts.objects.exists()


@override_settings(**LIMITS)
def test_old_rows_are_pruned_when_a_failure_is_recorded(org):
    FailedTokenAttempts.objects.create(
        address="10.0.0.5", failures=2, last_failed_at=timezone.now() - timedelta(seconds=601)
    )
    call(BAD_TOKEN, "10.0.0.6")
    assert list(FailedTokenAttempts.objects.values_list("address", flat=True)) == ["10.0.0.6"]


@override_settings(**LIMITS)
def test_a_request_without_an_address_is_answered_but_not_counted(org):
    for _ in range(5):
        response = APIClient().get("/api/v1/deals/", HTTP_AUTHORIZATION=f"Bearer {BAD_TOKEN}", REMOTE_ADDR="")
        assert response.status_code == 401
    assert not FailedTokenAttempts.objects.exists()


@override_settings(**LIMITS, TRUSTED_PROXY_COUNT=1)
def test_behind_a_trusted_proxy_failures_count_against_the_address_the_proxy_saw(org):
    _, good = create_api_token(user=org.rep, name="integration")

    def through_proxy(token: str, client: str):
        return APIClient().get(
            "/api/v1/deals/",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            HTTP_X_FORWARDED_FOR=f"10.1.1.1, {client}",  # the first entry is the client's own invention
            REMOTE_ADDR="10.0.0.254",
        )

    assert [through_proxy(BAD_TOKEN, "198.51.100.1").status_code for _ in range(3)] == [401, 401, 401]
    assert through_proxy(good, "198.51.100.1").status_code == 429
    assert through_proxy(good, "198.51.100.2").status_code == 200  # another client behind the same proxy
    assert FailedTokenAttempts.objects.get().address == "198.51.100.1"
