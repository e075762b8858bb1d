"""Repeated failed logins lock the account, and the address, for a while, with a page that says so."""

import pytest
from django.test import override_settings
from django.urls import reverse

pytestmark = pytest.mark.django_db


def attempt(client, username, password, address="10.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


@override_settings(AXES_FAILURE_LIMIT=3)
def test_an_account_is_locked_after_repeated_failures_even_for_the_right_password(client, org):
    for _ in range(3):
        attempt(client, "rep", "wrong")

    response = attempt(client, "rep", "secret-pass-1", address="10.0.0.2")

    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session


@override_settings(AXES_FAILURE_LIMIT=3)
def test_an_address_is_locked_after_repeated_failures_across_accounts(client, org):
    for username in ("rep", "teammate", "other_rep"):
        attempt(client, username, "wrong", address="10.9.9.9")

    assert attempt(client, "manager", "secret-pass-1", address="10.9.9.9").status_code == 429
    assert attempt(client, "manager", "secret-pass-1", address="10.1.1.1").status_code == 302


@override_settings(AXES_FAILURE_LIMIT=3)
def test_a_successful_login_resets_the_count(client, org):
    attempt(client, "rep", "wrong")
    attempt(client, "rep", "wrong")
    assert attempt(client, "rep", "secret-pass-1").status_code == 302
    client.logout()

    attempt(client, "rep", "wrong")
    attempt(client, "rep", "wrong")

    assert attempt(client, "rep", "secret-pass-1").status_code == 302


def test_passwords_are_hashed_with_argon2_in_production_settings():
    from config.settings import base

    assert base.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
