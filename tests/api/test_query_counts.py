"""Every list endpoint makes the same number of queries whatever its page size (no N+1), and exactly this many."""

from decimal import Decimal
from urllib.parse import quote

import pytest
from django.utils import timezone

from accounts.services import create_api_token
from pipeline import services
from tests.api.conftest import client_for
from tests.factories import make_deal, make_lost_reason, make_pipeline, stage
from tests.queries import CapturedQueries, assert_query_count, capture_queries

pytestmark = pytest.mark.django_db

# Queries per list request, whatever the page size. Each counts the token lookup (1), then the list's own queries:
# usually the page alone (no COUNT(*) unless `?count=true`); pipelines, teams and users' prefetches add theirs.
EXPECTED_QUERIES = {
    "/api/v1/deals/": 2,
    "/api/v1/deals/?pipeline={pipeline}&stage={stage}&ordering=-amount": 2,
    "/api/v1/deals/{deal}/history/": 3,  # + the deal itself
    "/api/v1/deals/?as_of={as_of}&stage={stage}": 3,  # + when the history begins
    "/api/v1/deals/{deal}/changes/": 3,  # the deal, then its history in one query (walked by position)
    # `?expand=` joins the related records and asks whether each is visible within the page's query.
    "/api/v1/deals/?expand=organization,contact,owner,pipeline,stage,lost_reason&fields=id,title,amount,owner": 2,
    "/api/v1/deals/{deal}/?expand=organization,contact,owner": 2,
    "/api/v1/leads/": 2,
    "/api/v1/leads/?expand=organization,contact,owner,deal": 2,
    "/api/v1/activities/?expand=deal,lead,owner": 2,
    "/api/v1/organizations/?expand=owner": 2,
    "/api/v1/contacts/?expand=organization,owner": 2,
    "/api/v1/stages/?expand=pipeline&fields=id,pipeline": 2,
    "/api/v1/activities/": 2,
    "/api/v1/organizations/": 2,
    "/api/v1/contacts/": 2,
    "/api/v1/pipelines/": 3,  # + stages
    "/api/v1/stages/": 2,
    "/api/v1/lost-reasons/": 2,
    "/api/v1/users/": 2,
    "/api/v1/teams/": 4,  # + managers + members
    "/api/v1/tokens/": 2,
    "/api/v1/pipelines/?fields=id,stages": 3,
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
    return {
        "pipeline": pipeline.pk,
        "stage": stage(pipeline, "Qualification").pk,
        "deal": deal.pk,
        "as_of": quote(timezone.now().isoformat()),
    }


def queries_of(client, url: str) -> CapturedQueries:
    with capture_queries() as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return captured


@pytest.mark.parametrize("path", EXPECTED_QUERIES)
@pytest.mark.parametrize("role", ["admin", "rep"])
def test_list_query_count_is_constant_in_page_size(org, populated, path, role):
    client = client_for(getattr(org, role))
    url = path.format(**populated)
    separator = "&" if "?" in url else "?"
    client.get(url)  # the token's first use stamps last_used_at; measure the steady state
    small = queries_of(client, f"{url}{separator}page_size=1")
    large = queries_of(client, f"{url}{separator}page_size=100")
    assert_query_count(small, large, exactly=EXPECTED_QUERIES[path])


# The metric reads: token (1), the latest run (1) and the page (1); the forecast adds past due and the learned
# probabilities of the same run; quotas: token, page, then the run and the page's quota metrics.
METRIC_QUERIES = {
    "/api/v1/metrics/win-rates/?group=owner": 3,
    # A read of one period also reads the groups that answer when empty: the teams, the owners and open stages.
    "/api/v1/metrics/sales-cycle/?group=team&period=2026": 4,
    "/api/v1/metrics/funnel/?group=owner": 5,
    "/api/v1/metrics/stage-times/?group=team": 3,
    "/api/v1/metrics/leads/?group=owner": 3,
    "/api/v1/metrics/stale-deals/": 3,
    "/api/v1/metrics/stale-deals/?reasons=true": 4,  # and the reasons' sums over every page
    # The exact count is the same sums' total: one aggregate of the run's stale totals for both.
    "/api/v1/metrics/stale-deals/?reasons=true&count=true": 4,
    "/api/v1/metrics/stale-deals/?count=true": 4,
    "/api/v1/forecast/?group=owner": 5,
    "/api/v1/forecast/accuracy/?group=owner": 3,
    # The backtest adds its summary over every row answered (one aggregate).
    "/api/v1/forecast/backtest/?group=owner": 4,
    "/api/v1/metrics/calibration/?group=owner": 3,
    "/api/v1/quotas/": 4,
}


@pytest.fixture
def recomputed(org, pipeline, lost_reason, populated):
    """`populated`, plus deals won, lost and expected to close for each owner and a quota for each owner and team,
    recomputed at the start of October 2026 (which keeps October's forecast) and now: every metric has rows."""
    import datetime as dt

    from forecasting.models import Quota
    from forecasting.services import recompute_metrics
    from tests.forecasting.helpers import at, deal_with_history

    quarter = {"period_start": dt.date(2026, 10, 1), "period_end": dt.date(2027, 1, 1)}
    for owner in (org.rep, org.teammate, org.other_rep):
        for outcome in ("Won", "Lost"):
            path = [("Prospecting", "2026-10-01"), (outcome, "2026-10-11")]
            deal_with_history(owner=owner, pipeline=pipeline, amount=Decimal(500), path=path, lost_reason=lost_reason)
        path = [("Prospecting", "2026-09-01")]
        deal_with_history(owner=owner, pipeline=pipeline, expected_close_date=dt.date(2026, 12, 1), path=path)
        Quota.objects.create(user=owner, amount=1000, **quarter)
    for team in (org.team, org.other_team):
        Quota.objects.create(team=team, amount=5000, **quarter)
    recompute_metrics(as_of=at("2026-10-01 00:30"))
    recompute_metrics()
    return populated


@pytest.mark.parametrize("path", METRIC_QUERIES)
@pytest.mark.parametrize("role", ["admin", "manager"])
def test_metric_list_query_count_is_constant_in_page_size(org, recomputed, role, path):
    client = client_for(getattr(org, role))
    separator = "&" if "?" in path else "?"
    client.get(path)  # the token's first use stamps last_used_at; measure the steady state
    small = queries_of(client, f"{path}{separator}page_size=1")
    large = queries_of(client, f"{path}{separator}page_size=200")
    assert_query_count(small, large, exactly=METRIC_QUERIES[path])
