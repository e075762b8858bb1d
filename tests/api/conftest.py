"""Fixtures of the API tests: a client per role, authenticated with a personal API token as integrations are."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.services import create_api_token, revoke_api_token
from pipeline import services
from tests.factories import make_deal, make_qualified_deal


def client_for(user) -> APIClient:
    """An API client sending `Authorization: Bearer <a new token of user>`."""
    _token, raw_token = create_api_token(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")
    return client


@pytest.fixture
def api(org):
    """`api(name)`: a token-authenticated client for a member of `org`; "anonymous" and "revoked_token" too."""

    def make(name: str) -> APIClient:
        if name == "anonymous":
            return APIClient()
        if name == "revoked_token":
            token, raw_token = create_api_token(user=org.admin, name="revoked")
            revoke_api_token(token=token)
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")
            return client
        return client_for(getattr(org, name))

    return make


@pytest.fixture
def rep_records(org, pipeline):
    """A deal, lead, activity, organization and contact owned by `org.rep`: the subjects of the access matrix."""

    class Records:
        pass

    r = Records()
    r.organization = services.create_organization(actor=org.rep, name="Acme of rep")
    r.contact = services.create_contact(actor=org.rep, last_name="Buyer of rep", organization=r.organization)
    r.deal = make_qualified_deal(owner=org.rep, pipeline=pipeline, title="Deal of rep", organization=r.organization)
    r.lead = services.create_lead(actor=org.rep, last_name="Lead of rep", company="Leadco")
    r.activity = services.log_activity(actor=org.rep, kind="call", subject="Call of rep", deal=r.deal)
    r.planned = services.log_activity(
        actor=org.rep, kind="task", subject="Plan of rep", deal=r.deal, due_at="2030-01-01T09:00:00Z"
    )
    return r


@pytest.fixture
def many_deals(org, pipeline):
    """Factory: `many_deals(n, owner=...)` makes n deals with organization, contact and amount."""

    def make(n: int, owner=None):
        owner = owner or org.rep
        organization = services.create_organization(actor=owner, name="Bulk org")
        return [
            make_deal(owner=owner, pipeline=pipeline, organization=organization, amount=Decimal(1000 + i))
            for i in range(n)
        ]

    return make
