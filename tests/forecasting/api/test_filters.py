"""forecasting.api.filters through the API: the quota list filtered by holder and period, and ordered."""

import pytest

from forecasting.models import Quota

pytestmark = pytest.mark.django_db


def test_quotas_filter_by_holder_and_period(admin, org):
    def make(**fields):
        return Quota.objects.create(amount=1, **fields).pk

    q3 = make(user=org.rep, period_start="2026-07-01", period_end="2026-10-01")
    q4 = make(user=org.rep, period_start="2026-10-01", period_end="2027-01-01")
    team_q4 = make(team=org.team, period_start="2026-10-01", period_end="2027-01-01")
    other_q4 = make(user=org.other_rep, period_start="2026-10-01", period_end="2027-01-01")

    def ids(**params):
        response = admin.get("/api/v1/quotas/", params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids() == {q3, q4, team_q4, other_q4}
    assert ids(user=org.rep.pk) == {q3, q4}
    assert ids(team=org.team.pk) == {team_q4}
    assert ids(period_from="2026-10-01") == {q4, team_q4, other_q4}
    assert ids(period_to="2026-10-01") == {q3}
    assert ids(period_from="2026-11-01", period_to="2026-12-01", user=org.rep.pk) == {q4}
    ordered = admin.get("/api/v1/quotas/", {"ordering": "period_start"}).json()["results"]
    assert ordered[0]["id"] == q3
    bad = admin.get("/api/v1/quotas/", {"period_from": "2026-13-01", "user": "x"})
    assert bad.status_code == 400 and set(bad.json()) == {"period_from", "user"}
