"""The metrics read API: periods, groups, filters, computed_at, and visibility by role."""

import datetime as dt
from decimal import Decimal
from unittest import mock

import pytest
from django.db import IntegrityError
from rest_framework.test import APIClient

from forecasting.models import Quota
from forecasting.selectors import SnapshotQuery, visible_snapshot_rows
from forecasting.services import recompute_metrics
from tests.forecasting.helpers import at, deal_with_history

pytestmark = pytest.mark.django_db

AS_OF = at("2026-11-25 12:00")


@pytest.fixture
def closings(org, pipeline, lost_reason):
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("1000"),
        path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-11")],
    )
    deal_with_history(
        owner=org.other_rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-10-01"), ("Lost", "2026-10-04")],
    )
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-09-01")])  # open, stale
    deal_with_history(owner=org.other_rep, pipeline=pipeline, path=[("Prospecting", "2026-09-01")])  # open, stale
    recompute_metrics(as_of=AS_OF)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_win_rates_for_the_company_carry_computed_at(org, closings):
    response = client_for(org.admin).get("/api/v1/metrics/win-rates/", {"period": "2026-10"})
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


def test_quarter_year_and_date_range_periods(org, closings):
    client = client_for(org.admin)
    assert (
        client.get("/api/v1/metrics/win-rates/", {"period": "2026-Q4"}).json()["results"][0]["period_kind"] == "quarter"
    )
    assert client.get("/api/v1/metrics/win-rates/", {"period": "2026"}).json()["results"][0]["won"] == 1
    ranged = client.get("/api/v1/metrics/win-rates/", {"start": "2026-09-01", "end": "2026-12-01"}).json()["results"]
    assert [row["period_start"] for row in ranged] == ["2026-10-01"]


@pytest.mark.parametrize(
    "params",
    [
        {"period": "2026-13"},
        {"period": "26-11"},
        {"start": "2026-01-01"},
        {"start": "2026-02-01", "end": "2026-01-01"},
        {"period": "2026", "start": "2026-01-01", "end": "2026-02-01"},
        {"group": "planet"},
        {"owner": "x"},
    ],
)
def test_bad_query_parameters_are_a_400(org, closings, params):
    assert client_for(org.admin).get("/api/v1/metrics/win-rates/", params).status_code == 400


def test_a_rep_sees_only_their_own_rows(org, closings):
    client = client_for(org.rep)
    assert client.get("/api/v1/metrics/win-rates/", {"period": "2026-10"}).json()["results"] == []  # company
    owners = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "owner"}).json()["results"]
    assert [row["owner_id"] for row in owners] == [org.rep.pk]
    assert client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "team"}).json()["results"] == []
    stale = client.get("/api/v1/metrics/stale-deals/").json()["results"]
    assert {row["owner_id"] for row in stale} == {org.rep.pk}


def test_a_manager_sees_their_teams_rows_and_no_other(org, closings):
    client = client_for(org.manager)
    teams = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "team"}).json()["results"]
    assert [(row["team_id"], row["won"]) for row in teams] == [(org.team.pk, 1)]
    owners = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "owner"}).json()["results"]
    assert [row["owner_id"] for row in owners] == [org.rep.pk]
    other = client.get("/api/v1/metrics/win-rates/", {"group": "owner", "owner": org.other_rep.pk}).json()
    assert other["results"] == []


def test_an_admin_sees_every_group(org, closings):
    client = client_for(org.admin)
    owners = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "owner"}).json()["results"]
    assert sorted(row["owner_id"] for row in owners) == sorted([org.rep.pk, org.other_rep.pk])
    assert len(client.get("/api/v1/metrics/stale-deals/").json()["results"]) == 2


def test_anonymous_users_are_refused(closings):
    assert APIClient().get("/api/v1/metrics/win-rates/").status_code in (401, 403)


def test_funnel_defaults_to_all_deals_and_sales_cycle_and_stage_times_answer(org, pipeline, closings):
    client = client_for(org.admin)
    funnel = client.get("/api/v1/metrics/funnel/", {"pipeline": pipeline.pk}).json()["results"]
    assert [row["reached"] for row in funnel] == [4, 1, 1, 1, 1]
    assert {row["period_kind"] for row in funnel} == {"all"}
    cycle = client.get("/api/v1/metrics/sales-cycle/", {"period": "2026-10"}).json()["results"][0]
    assert (cycle["won_cycle_days_mean"], cycle["lost_cycle_days_mean"]) == (10.0, 3.0)
    assert client.get("/api/v1/metrics/stage-times/").json()["results"]
    assert client.get("/api/v1/metrics/leads/").status_code == 200
    assert client.get("/api/v1/metrics/funnel/", {"group": "pipeline"}).status_code == 400


def test_forecast_carries_past_due_and_learned_probabilities(org, pipeline, closings):
    body = client_for(org.admin).get("/api/v1/forecast/", {"period": "2026-Q4"}).json()
    assert body["results"][0]["won_amount"] == "1000.00"
    assert body["past_due"][0]["count"] == 0
    learned = {row["stage_id"]: row for row in body["learned_probabilities"]}
    assert set(learned) == set(pipeline.stages.filter(kind="open").values_list("id", flat=True))
    assert {"w", "l", "k", "p0", "p"} <= set(next(iter(learned.values())))


def test_metrics_say_how_old_they_are_and_when_the_scheduled_recompute_is_late(org, pipeline, settings):
    settings.METRICS_RECOMPUTE_SECONDS = 300
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-09-01")])
    computed_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=11)
    recompute_metrics(as_of=computed_at)

    body = client_for(org.admin).get("/api/v1/metrics/stale-deals/").json()

    assert abs(dt.datetime.fromisoformat(body["computed_at"]) - computed_at) < dt.timedelta(seconds=1)
    assert 11 * 60 <= body["age_seconds"] < 12 * 60
    assert body["out_of_date"] is True  # older than two 5-minute intervals
    settings.METRICS_RECOMPUTE_SECONDS = 600
    assert client_for(org.admin).get("/api/v1/metrics/stale-deals/").json()["out_of_date"] is False


def test_before_the_first_recompute_metrics_say_so(org):
    body = client_for(org.admin).get("/api/v1/metrics/win-rates/").json()
    assert body == {
        "computed_at": None,
        "age_seconds": None,
        "out_of_date": False,
        "metric": "deal_outcomes",
        "group": "company",
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }


TASK_ID = "6f1c1a52-3b0e-4c8e-9d2f-0a7c5e1b2d34"


def test_only_managers_and_admins_may_start_a_recompute(org):
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async") as apply_async:
        apply_async.return_value.id = TASK_ID
        assert client_for(org.rep).post("/api/v1/metrics/recompute/").status_code == 403
        response = client_for(org.manager).post("/api/v1/metrics/recompute/")
    assert response.status_code == 202
    assert response.json()["status_url"].endswith(f"/api/v1/metrics/recompute/{TASK_ID}/")
    assert client_for(org.manager).get(f"/api/v1/metrics/recompute/{TASK_ID}/").json()["state"] == "PENDING"
    assert client_for(org.rep).get(f"/api/v1/metrics/recompute/{TASK_ID}/").status_code == 403
    assert client_for(org.manager).get("/api/v1/metrics/recompute/task-1/").status_code == 404


def test_a_recompute_request_with_the_broker_down_is_a_503(org):
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async", side_effect=OSError("down")):
        assert client_for(org.admin).post("/api/v1/metrics/recompute/").status_code == 503


def test_quotas_are_visible_like_records(org):
    mine = Quota.objects.create(
        user=org.rep, period_start=dt.date(2026, 10, 1), period_end=dt.date(2027, 1, 1), amount=5
    )
    team = Quota.objects.create(
        team=org.team, period_start=dt.date(2026, 10, 1), period_end=dt.date(2027, 1, 1), amount=9
    )
    Quota.objects.create(
        user=org.other_rep, period_start=dt.date(2026, 10, 1), period_end=dt.date(2027, 1, 1), amount=7
    )
    ids = lambda user: {row["id"] for row in client_for(user).get("/api/v1/quotas/").json()["results"]}  # noqa: E731
    assert ids(org.rep) == {mine.pk}
    assert ids(org.manager) == {mine.pk, team.pk}
    assert len(ids(org.admin)) == 3
    recompute_metrics(as_of=AS_OF)
    metrics = client_for(org.rep).get("/api/v1/quotas/").json()["results"][0]["metrics"]
    assert metrics["computed_at"].startswith("2026-11-25T12:00:00")
    assert (metrics["quota"], metrics["won_amount"]) == ("5.00", "0.00")


@pytest.mark.parametrize(
    "fields",
    [
        {"user": None, "team": None, "amount": 1},
        {"user": "rep", "team": "team", "amount": 1},
        {"user": "rep", "team": None, "amount": -1},
    ],
)
def test_a_quota_is_for_exactly_one_user_or_team_and_never_negative(org, fields):
    user = org.rep if fields["user"] else None
    team = org.team if fields["team"] else None
    with pytest.raises(IntegrityError):
        Quota.objects.create(
            user=user,
            team=team,
            amount=fields["amount"],
            period_start=dt.date(2026, 1, 1),
            period_end=dt.date(2026, 4, 1),
        )


def test_forecast_accuracy_per_ended_period(org, pipeline):
    recompute_metrics(as_of=at("2026-10-01 00:30"))
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("200"),
        path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-05")],
    )
    recompute_metrics(as_of=at("2026-11-01 00:30"))
    rows = client_for(org.admin).get("/api/v1/forecast/accuracy/", {"period": "2026-10"}).json()["results"]
    assert [(row["actual_won"], row["forecast_configured"], row["ape_configured"]) for row in rows] == [
        ("200.00", "0.00", 100.0)
    ]


@pytest.mark.parametrize("url", ["/api/v1/metrics/stage-times/", "/api/v1/metrics/stale-deals/"])
def test_metrics_that_are_not_per_period_refuse_a_period(org, closings, url):
    assert client_for(org.admin).get(url, {"period": "2026-10"}).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/metrics/win-rates/",
        "/api/v1/metrics/funnel/",
        "/api/v1/metrics/stage-times/",
        "/api/v1/metrics/stale-deals/",
        "/api/v1/forecast/",
    ],
)
def test_metric_reads_make_a_constant_number_of_queries(org, closings, url, django_assert_max_num_queries):
    client = client_for(org.manager)
    with django_assert_max_num_queries(8):  # session, user, run, rows (and past due, learned for the forecast)
        assert client.get(url, {"group": "owner"}).status_code == 200


def test_snapshot_lists_are_paginated(org, closings):
    client = client_for(org.admin)
    first = client.get("/api/v1/metrics/stale-deals/", {"page_size": 1}).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (2, 1, None)
    second = client.get(first["next"]).json()
    assert second["next"] is None
    assert second["results"][0]["deal_id"] != first["results"][0]["deal_id"]
    assert client.get("/api/v1/metrics/stale-deals/", {"page": 9}).status_code == 404


def test_a_deactivated_manager_sees_no_metrics(org, closings):
    org.manager.is_active = False
    org.manager.save()
    _, rows = visible_snapshot_rows(user=org.manager, query=SnapshotQuery(metric="deal_outcomes", group_kind="team"))
    assert list(rows) == []


def test_reps_see_their_teams_rows_when_reps_may_see_their_team(org, closings, settings):
    settings.REP_VISIBILITY = "team"
    client = client_for(org.teammate)
    teams = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "team"}).json()["results"]
    assert [row["team_id"] for row in teams] == [org.team.pk]
    owners = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "owner"}).json()["results"]
    assert [row["owner_id"] for row in owners] == [org.rep.pk]


# --- The keys the serializers read --------------------------------------------------------------------------------


def test_each_metric_endpoint_serializes_rows_with_the_keys_of_its_own_metric():
    from forecasting.api import views

    endpoints = [
        view for view in vars(views).values() if isinstance(view, type) and issubclass(view, views.MetricViewSet)
    ]
    endpoints = [view for view in endpoints if view is not views.MetricViewSet]
    assert len(endpoints) == 8
    for view in endpoints:
        assert view.serializer_class.values_of == view.metric, view.__name__


def test_a_serializer_reading_a_key_its_metric_does_not_write_is_refused_at_import():
    from django.core.exceptions import ImproperlyConfigured
    from rest_framework import serializers

    from forecasting.api.serializers import reads
    from forecasting.models import Metric

    class Misread(serializers.Serializer):
        win_rate = serializers.FloatField(source="values.win_rate")

    with pytest.raises(ImproperlyConfigured, match="win_rate"):
        reads(Metric.FORECAST)(Misread)
