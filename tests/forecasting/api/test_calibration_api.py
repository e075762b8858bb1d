"""GET /api/v1/metrics/calibration/: the calibration rows of the latest recompute by visibility, their 10 bins, and
bad parameters answered 400 naming them."""

from decimal import Decimal

import pytest

from forecasting.models import Metric
from forecasting.services import recompute_history_metrics, recompute_metrics
from tests.factories import stage
from tests.forecasting.api.conftest import session_client
from tests.forecasting.helpers import at, deal_with_history, latest_rows

pytestmark = pytest.mark.django_db

URL = "/api/v1/metrics/calibration/"
AS_OF_TEXT = "2026-11-25 12:00"


@pytest.fixture
def closed(org, pipeline, lost_reason):
    """The rep won a Proposal deal and lost another in Q3 2026; the other team's rep lost one in Q4."""
    deal_with_history(
        owner=org.rep, pipeline=pipeline, amount=Decimal(100), path=[("Proposal", "2026-07-01"), ("Won", "2026-07-20")]
    )
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-07-02"), ("Proposal", "2026-07-05"), ("Lost", "2026-08-01")],
    )
    deal_with_history(
        owner=org.other_rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Negotiation", "2026-10-02"), ("Lost", "2026-10-09")],
    )
    recompute_metrics(as_of=at(AS_OF_TEXT))
    recompute_history_metrics(as_of=at(AS_OF_TEXT))


def test_the_admin_reads_every_stage_of_all_time_with_ten_bins(org, pipeline, closed):
    body = session_client(org.admin).get(URL, {"pipeline": pipeline.pk, "page_size": 200}).json()
    rows = {row["stage_id"]: row for row in body["results"]}
    assert body["metric"] == "calibration" and all(row["period_kind"] == "all" for row in rows.values())
    proposal = rows[stage(pipeline, "Proposal").pk]
    # Two predictions at 0.6, one won: Brier = ((0.6 − 1)² + (0.6 − 0)²) / 2 = 0.26; both in bin 6.
    assert (proposal["predictions"], proposal["won"], proposal["win_rate"]) == (2, 1, 0.5)
    assert proposal["brier_configured"] == pytest.approx(0.26)
    assert [b["count"] for b in proposal["bins_configured"]] == [0, 0, 0, 0, 0, 0, 2, 0, 0, 0]
    assert proposal["bins_configured"][6] == {"bin": 6, "count": 2, "mean_p": pytest.approx(0.6), "win_rate": 0.5}
    assert proposal["bins_configured"][0] == {"bin": 0, "count": 0, "mean_p": None, "win_rate": None}
    # Nothing had closed when they entered Proposal: learned = configured.
    assert proposal["brier_learned"] == pytest.approx(0.26)
    whole = rows[None]  # the pipeline: 2 Proposal + 1 Prospecting + 1 Negotiation predictions
    assert whole["predictions"] == 4 and whole["won"] == 1
    expected = ((0.6 - 1) ** 2 + 0.6**2 + 0.1**2 + 0.8**2) / 4
    assert whole["brier_configured"] == pytest.approx(expected)
    snapshot = latest_rows(Metric.CALIBRATION, group_kind="company", period_kind="all", pipeline_id=pipeline.pk)
    assert len(snapshot) == len(rows)


def test_a_quarter_and_a_year(org, pipeline, closed):
    admin = session_client(org.admin)
    q3 = admin.get(URL, {"period": "2026-Q3"}).json()["results"]
    assert {row["period_start"] for row in q3} == {"2026-07-01"}
    assert {row["predictions"] for row in q3 if row["stage_id"] is None} == {3}
    year = admin.get(URL, {"period": "2026"}).json()["results"]
    assert {row["predictions"] for row in year if row["stage_id"] is None} == {4}


def test_a_rep_sees_their_own_rows_and_a_manager_their_team(org, pipeline, closed):
    rep = session_client(org.rep)
    assert rep.get(URL).json()["results"] == []  # the company's rows are the admin's
    owners = rep.get(URL, {"group": "owner"}).json()["results"]
    assert {row["owner_id"] for row in owners} == {org.rep.pk}
    manager = session_client(org.manager)
    assert {row["team_id"] for row in manager.get(URL, {"group": "team"}).json()["results"]} == {org.team.pk}
    assert org.other_rep.pk not in {row["owner_id"] for row in manager.get(URL, {"group": "owner"}).json()["results"]}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"period": "2026-11"}, "period"),
        ({"period": "2026-Q9"}, "period"),
        ({"group": "pipeline"}, "group"),
        ({"start": "2026-01-01", "end": "2026-04-01"}, "start"),
        ({"period_kind": "quarter"}, "period_kind"),
        ({"pipeline": "0"}, "pipeline"),
    ],
)
def test_bad_parameters_answer_400_naming_them(org, params, named):
    response = session_client(org.admin).get(URL, params)
    assert response.status_code == 400
    assert named in response.json()
