"""Fixtures of the metrics API tests: a browser-session client, and an admin's API-token client."""

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import client_for

# A quota's period: the fourth quarter of 2026.
Q4 = {"period_start": "2026-10-01", "period_end": "2027-01-01"}


def session_client(user) -> APIClient:
    """An API client logged in as `user` with a session, as the dashboard's pages are."""
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def admin(org):
    """An API client with a personal token of `org.admin`, as integrations call the API."""
    return client_for(org.admin)
