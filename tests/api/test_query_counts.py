"""Every list endpoint makes the same number of queries whatever its page size (no N+1), and exactly this many."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import create_api_token
from pipeline import services
from tests.api.conftest import client_for
from tests.factories import make_deal, make_lost_reason, make_pipeline, stage

pytestmark = pytest.mark.django_db

# Queries per list request, whatever the page size. Each counts the token lookup (1), then the list's own queries:
# usually COUNT(*) and the page (2); pipelines, teams and users' prefetches add theirs.
EXPECTED_QUERIES = {
    "/api/v1/deals/": 3,
    "/api/v1/deals/?pipeline={pipeline}&stage={stage}&ordering=-amount": 3,
    "/api/v1/deals/{deal}/history/": 4,  # + the deal itself
    "/api/v1/leads/": 3,
    "/api/v1/activities/": 3,
    "/api/v1/organizations/": 3,
    "/api/v1/contacts/": 3,
    "/api/v1/pipelines/": 4,  # + stages
    "/api/v1/stages/": 3,
    "/api/v1/lost-reasons/": 3,
    "/api/v1/users/": 3,
    "/api/v1/teams/": 5,  # + managers + members
    "/api/v1/tokens/": 3,
}


@pytest.fixture
def populated(org, pipeline):
    """A dozen of everything, each with its related records filled in, so that an N+1 would show."""
    make_pipeline(name="Second")
    for index in range(3):
        make_lost_reason(f"Reason {index}")
    deals = []
    for index in range(12):
        owner = [org.rep, org.teammate, org.other_rep][index % 3]
        organization = services.create_organization(actor=owner, name=f"Org {index}")
        contact = services.create_contact(actor=owner, last_name=f"Contact {index}", organization=organization)
        deal = make_deal(
            owner=owner, pipeline=pipeline, organization=organization, contact=contact, amount=Decimal(index * 100)
        )
        services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=owner)
        lead = services.create_lead(actor=owner, last_name=f"Lead {index}", organization=organization)
        services.log_activity(actor=owner, kind="call", subject=f"Call {index}", deal=deal)
        services.log_activity(actor=owner, kind="email", subject=f"Email {index}", lead=lead)
        create_api_token(user=org.admin, name=f"Token {index}")
        deals.append(deal)
    deal = deals[0]
    for name in ("Discovery", "Qualification", "Discovery", "Qualification"):
        deal = services.move_deal(deal=deal, stage=stage(pipeline, name), actor=org.rep)
    return {"pipeline": pipeline.pk, "stage": stage(pipeline, "Qualification").pk, "deal": deal.pk}


def count_queries(client, url: str) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured), [query["sql"] for query in captured.captured_queries]


@pytest.mark.parametrize("path", EXPECTED_QUERIES)
def test_list_query_count_is_constant_in_page_size(org, populated, path):
    client = client_for(org.admin)
    url = path.format(**populated)
    separator = "&" if "?" in url else "?"
    client.get(url)  # the token's first use stamps last_used_at; measure the steady state
    small, _ = count_queries(client, f"{url}{separator}page_size=1")
    large, large_sql = count_queries(client, f"{url}{separator}page_size=100")
    assert small == large, "\n".join(large_sql)
    assert large == EXPECTED_QUERIES[path], "\n".join(large_sql)
