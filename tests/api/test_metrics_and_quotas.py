"""Contract of the metric reads (pagination, per-parameter 400s, errors) and of quotas as a resource."""

from decimal import Decimal
from unittest import mock

import pytest
from django.core.cache import cache

from config.rest import UserOrTokenRateThrottle
from forecasting.models import Quota
from forecasting.services import recompute_metrics
from pipeline.models import AuditEntry
from tests.api.conftest import client_for
from tests.forecasting.helpers import at, deal_with_history

pytestmark = pytest.mark.django_db

Q4 = {"period_start": "2026-10-01", "period_end": "2027-01-01"}


@pytest.fixture
def admin(org):
    return client_for(org.admin)


# --- Metric reads -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/metrics/win-rates/", {"period": "2026-13"}, "period"),
        ("/api/v1/metrics/win-rates/", {"period": "26-11"}, "period"),
        ("/api/v1/metrics/win-rates/", {"period": "0000"}, "period"),
        ("/api/v1/metrics/win-rates/", {"start": "2026-01-01"}, "end"),
        ("/api/v1/metrics/win-rates/", {"end": "2026-01-01"}, "start"),
        ("/api/v1/metrics/win-rates/", {"start": "2026-02-01", "end": "2026-01-01"}, "end"),
        ("/api/v1/metrics/win-rates/", {"period": "2026", "start": "2026-01-01", "end": "2026-02-01"}, "period"),
        ("/api/v1/metrics/win-rates/", {"period_kind": "quarter"}, "period_kind"),
        ("/api/v1/metrics/win-rates/", {"group": "planet"}, "group"),
        ("/api/v1/metrics/win-rates/", {"owner": "x"}, "owner"),
        ("/api/v1/metrics/win-rates/", {"team": "0"}, "team"),
        ("/api/v1/metrics/win-rates/", {"source": "a\x00b"}, "source"),
        ("/api/v1/metrics/funnel/", {"group": "pipeline"}, "group"),
        ("/api/v1/metrics/leads/", {"group": "pipeline"}, "group"),
        ("/api/v1/metrics/stage-times/", {"period": "2026-10"}, "period"),
        ("/api/v1/metrics/stale-deals/", {"start": "2026-10-01"}, "start"),
        ("/api/v1/forecast/", {"start": "9999-12-31", "end": "not a date"}, "end"),
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(admin, path, params, field):
    response = admin.get(path, params)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()


def test_metric_pages_are_the_api_envelope_with_computed_at_and_at_most_200_rows(admin, org, pipeline):
    for index in range(3):
        deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", f"2026-09-0{index + 1}")])
    recompute_metrics(as_of=at("2026-11-25 12:00"))
    first = admin.get("/api/v1/metrics/stale-deals/", {"page_size": 2}).json()
    assert list(first) == [
        "count",
        "next",
        "previous",
        "computed_at",
        "age_seconds",
        "out_of_date",
        "metric",
        "group",
        "results",
    ]
    assert (first["count"], len(first["results"]), first["metric"], first["group"]) == (3, 2, "stale", "owner")
    assert first["computed_at"].startswith("2026-11-25T12:00:00")
    assert len(admin.get(first["next"]).json()["results"]) == 1
    row = first["results"][0]
    assert row["rotting"] is True and row["no_next_step"] is True and row["days_in_stage"] > 80
    assert admin.get("/api/v1/metrics/stale-deals/", {"page": 9}).status_code == 404
    assert admin.get("/api/v1/metrics/stale-deals/", {"page_size": 1000}).json()["count"] == 3
    with mock.patch("config.rest.ApiPagination.max_page_size", 1):
        assert len(admin.get("/api/v1/metrics/stale-deals/", {"page_size": 2}).json()["results"]) == 1


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


def test_metric_reads_are_throttled_like_the_rest_of_the_api(org, monkeypatch):
    cache.clear()
    monkeypatch.setattr(UserOrTokenRateThrottle, "THROTTLE_RATES", {"user": "2/minute"})
    client = client_for(org.rep)
    statuses = [client.get("/api/v1/metrics/win-rates/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert int(client.get("/api/v1/forecast/")["Retry-After"]) > 0
    cache.clear()


def test_a_recompute_with_the_broker_down_is_a_json_503(admin):
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async", side_effect=OSError("down")):
        response = admin.post("/api/v1/metrics/recompute/")
    assert response.status_code == 503 and "detail" in response.json()


# --- Quotas -------------------------------------------------------------------------------------------------------


def test_an_admin_sets_a_quota_and_reads_its_metrics_after_the_recompute(admin, org, pipeline):
    response = admin.post("/api/v1/quotas/", {"user": org.rep.pk, "amount": "2000", **Q4}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body | {"id": None, "created_at": None} == {
        "id": None,
        "user": org.rep.pk,
        "team": None,
        "amount": "2000.00",
        "created_at": None,
        "metrics": None,
        **Q4,
    }
    assert response["ETag"]
    assert AuditEntry.objects.filter(content_type__model="quota", object_id=body["id"], action="created").exists()
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal(500),
        path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-11")],
    )
    recompute_metrics(as_of=at("2026-11-25 12:00"))
    detail = admin.get(f"/api/v1/quotas/{body['id']}/")
    metrics = detail.json()["metrics"]
    assert (metrics["won_amount"], metrics["attainment"], metrics["remaining"]) == ("500.00", 0.25, "1500.00")
    assert metrics["computed_at"].startswith("2026-11-25T12:00:00")
    assert detail["ETag"] == response["ETag"]  # a recompute does not change the quota a writer would overwrite


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


def test_a_quota_is_changed_with_if_match_and_deleted(admin, org):
    created = admin.post("/api/v1/quotas/", {"team": org.team.pk, "amount": "100", **Q4}, format="json")
    url = f"/api/v1/quotas/{created.json()['id']}/"
    changed = admin.patch(url, {"amount": "150.5"}, format="json", HTTP_IF_MATCH=created["ETag"])
    assert changed.status_code == 200 and changed.json()["amount"] == "150.50"
    assert admin.patch(url, {"amount": "1"}, format="json", HTTP_IF_MATCH=created["ETag"]).status_code == 412
    moved = admin.patch(url, {"team": None, "user": org.rep.pk}, format="json")
    assert (moved.json()["team"], moved.json()["user"]) == (None, org.rep.pk)
    refused = admin.patch(url, {"period_end": "2026-09-01"}, format="json")
    assert refused.status_code == 400 and list(refused.json()) == ["period_end"]
    assert admin.delete(url).status_code == 204
    assert admin.get(url).status_code == 404
    assert AuditEntry.objects.filter(
        content_type__model="quota", object_id=created.json()["id"], action="deleted"
    ).exists()


def test_a_manager_sets_quotas_for_their_team_and_members_but_not_their_own(org):
    manager = client_for(org.manager)
    assert manager.post("/api/v1/quotas/", {"user": org.rep.pk, "amount": "1", **Q4}, format="json").status_code == 201
    assert manager.post("/api/v1/quotas/", {"team": org.team.pk, "amount": "1", **Q4}, format="json").status_code == 201
    own = manager.post("/api/v1/quotas/", {"user": org.manager.pk, "amount": "1", **Q4}, format="json")
    assert own.status_code == 400 and list(own.json()) == ["user"]


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
