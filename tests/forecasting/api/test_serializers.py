"""forecasting.api.serializers through the API: the fields of a metric row, amounts as decimal strings, and a
quota's fields validated one by one (holders limited to those the writer may set a quota for)."""

from decimal import Decimal

import pytest

from forecasting.models import Quota
from forecasting.services import recompute_metrics
from tests.api.conftest import client_for
from tests.forecasting.api.conftest import Q4, session_client
from tests.forecasting.helpers import at, deal_with_history

pytestmark = pytest.mark.django_db


def test_win_rates_for_the_company_carry_computed_at(org, closings):
    response = session_client(org.admin).get("/api/v1/metrics/win-rates/", {"period": "2026-10"})
    assert response.status_code == 200
    body = response.json()
    assert body["computed_at"].startswith("2026-11-25T12:00:00")
    assert body["results"] == [
        {
            "period_kind": "month",
            "period_start": "2026-10-01",
            "period_end": "2026-11-01",
            "group_kind": "company",
            "owner_id": None,
            "team_id": None,
            "pipeline_id": None,
            "source": None,
            "won": 1,
            "lost": 1,
            "win_rate": 0.5,
            "won_amount": "1000.00",
            "avg_won_amount": "1000.00",
        }
    ]


def test_amounts_are_decimal_strings_and_empty_rates_null(admin, org, pipeline, lost_reason):
    path = [("Prospecting", "2026-10-01"), ("Lost", "2026-10-04")]
    deal_with_history(owner=org.rep, pipeline=pipeline, lost_reason=lost_reason, amount=Decimal(7), path=path)
    recompute_metrics(as_of=at("2026-11-25 12:00"))
    row = admin.get("/api/v1/metrics/win-rates/", {"period": "2026-10"}).json()["results"][0]
    assert (row["won"], row["lost"], row["win_rate"], row["won_amount"], row["avg_won_amount"]) == (
        0,
        1,
        0.0,
        "0.00",
        None,
    )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"amount": "1", **Q4}, {"user", "team"}),
        ({"user": "rep", "team": "team", "amount": "1", **Q4}, {"user", "team"}),
        ({"user": "rep", "amount": "-1", **Q4}, {"amount"}),
        ({"user": "rep", "amount": "abc", **Q4}, {"amount"}),
        ({"user": "rep", "amount": "1", "period_start": "2026-10-01", "period_end": "2026-10-01"}, {"period_end"}),
        ({"user": "rep", "amount": "1", "period_start": "2026-10-01"}, {"period_end"}),
        ({"user": 999999, "amount": "1", **Q4}, {"user"}),
    ],
)
def test_an_invalid_quota_is_a_400_per_field(admin, org, body, fields):
    body = {
        key: org.rep.pk if value == "rep" else org.team.pk if value == "team" else value for key, value in body.items()
    }
    response = admin.post("/api/v1/quotas/", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) == fields
    assert not Quota.objects.exists()


def test_a_manager_sets_quotas_for_their_team_and_members_but_not_their_own(org):
    manager = client_for(org.manager)
    assert manager.post("/api/v1/quotas/", {"user": org.rep.pk, "amount": "1", **Q4}, format="json").status_code == 201
    assert manager.post("/api/v1/quotas/", {"team": org.team.pk, "amount": "1", **Q4}, format="json").status_code == 201
    own = manager.post("/api/v1/quotas/", {"user": org.manager.pk, "amount": "1", **Q4}, format="json")
    assert own.status_code == 400 and list(own.json()) == ["user"]
