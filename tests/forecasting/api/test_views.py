"""forecasting.api.views: the metric reads (visibility by role, each family, freshness, the page envelope,
pagination, throttling, query counts), the recompute endpoints, and quotas as a resource."""

import datetime as dt
from decimal import Decimal
from unittest import mock

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import AuditEntry, User
from config.rest import UserRateThrottle
from forecasting.models import Quota
from forecasting.services import recompute_metrics, refresh_metrics
from pipeline import services
from pipeline.models import Deal
from tests.api.conftest import client_for
from tests.factories import leave_untouched, stage
from tests.forecasting.api.conftest import Q4, session_client
from tests.forecasting.conftest import AS_OF
from tests.forecasting.helpers import at, deal_with_history
from tests.queries import assert_query_count, capture_queries

pytestmark = pytest.mark.django_db


def test_a_rep_sees_only_their_own_rows(org, closings):
    client = session_client(org.rep)
    assert client.get("/api/v1/metrics/win-rates/", {"period": "2026-10"}).json()["results"] == []  # company
    owners = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "owner"}).json()["results"]
    assert [row["owner_id"] for row in owners] == [org.rep.pk]
    assert client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "team"}).json()["results"] == []
    stale = client.get("/api/v1/metrics/stale-deals/").json()["results"]
    assert {row["owner_id"] for row in stale} == {org.rep.pk}


def test_a_manager_sees_their_teams_rows_and_no_other(org, closings):
    client = session_client(org.manager)
    teams = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "team"}).json()["results"]
    assert [(row["team_id"], row["won"]) for row in teams] == [(org.team.pk, 1)]
    owners = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "owner"}).json()["results"]
    # Every member of the managed team has a row; those who closed nothing have zeros and a null rate.
    assert [(row["owner_id"], row["won"], row["win_rate"]) for row in owners] == [
        (org.manager.pk, 0, None),
        (org.rep.pk, 1, 1.0),
        (org.teammate.pk, 0, None),
    ]
    other = client.get("/api/v1/metrics/win-rates/", {"group": "owner", "owner": org.other_rep.pk}).json()
    assert other["results"] == []


def test_an_admin_sees_every_group(org, closings):
    client = session_client(org.admin)
    owners = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "owner"}).json()["results"]
    assert [row["owner_id"] for row in owners] == sorted(User.objects.values_list("pk", flat=True))
    assert sorted(row["owner_id"] for row in owners if row["won"] or row["lost"]) == sorted(
        [org.rep.pk, org.other_rep.pk]
    )
    assert len(client.get("/api/v1/metrics/stale-deals/").json()["results"]) == 2


def test_reps_see_their_teams_rows_when_reps_may_see_their_team(org, closings, settings):
    settings.REP_VISIBILITY = "team"
    client = session_client(org.teammate)
    teams = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "team"}).json()["results"]
    assert [row["team_id"] for row in teams] == [org.team.pk]
    owners = client.get("/api/v1/metrics/win-rates/", {"period": "2026-10", "group": "owner"}).json()["results"]
    assert [row["owner_id"] for row in owners] == sorted([org.manager.pk, org.rep.pk, org.teammate.pk])
    assert [row["owner_id"] for row in owners if row["won"]] == [org.rep.pk]


def test_anonymous_users_are_refused(closings):
    assert APIClient().get("/api/v1/metrics/win-rates/").status_code in (401, 403)


def test_funnel_defaults_to_all_deals_and_sales_cycle_and_stage_times_answer(org, pipeline, closings):
    client = session_client(org.admin)
    funnel = client.get("/api/v1/metrics/funnel/", {"pipeline": pipeline.pk}).json()["results"]
    assert [row["reached"] for row in funnel] == [4, 1, 1, 1, 1]
    assert {row["period_kind"] for row in funnel} == {"all"}
    cycle = client.get("/api/v1/metrics/sales-cycle/", {"period": "2026-10"}).json()["results"][0]
    assert (cycle["won_cycle_days_mean"], cycle["lost_cycle_days_mean"]) == (10.0, 3.0)
    assert client.get("/api/v1/metrics/stage-times/").json()["results"]
    assert client.get("/api/v1/metrics/leads/").status_code == 200
    assert client.get("/api/v1/metrics/funnel/", {"group": "pipeline"}).status_code == 400


def test_forecast_carries_past_due_and_learned_probabilities(org, pipeline, closings):
    body = session_client(org.admin).get("/api/v1/forecast/", {"period": "2026-Q4"}).json()
    assert body["results"][0]["won_amount"] == "1000.00"
    assert body["past_due"][0]["count"] == 0
    learned = {row["stage_id"]: row for row in body["learned_probabilities"]}
    assert set(learned) == set(pipeline.stages.filter(kind="open").values_list("id", flat=True))
    assert {"w", "l", "k", "p0", "p"} <= set(next(iter(learned.values())))


def test_forecast_accuracy_per_ended_period(org, pipeline):
    recompute_metrics(as_of=at("2026-10-01 00:30"))
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("200"),
        path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-05")],
    )
    recompute_metrics(as_of=at("2026-11-01 00:30"))
    rows = session_client(org.admin).get("/api/v1/forecast/accuracy/", {"period": "2026-10"}).json()["results"]
    assert [(row["actual_won"], row["forecast_configured"], row["ape_configured"]) for row in rows] == [
        ("200.00", "0.00", 100.0)
    ]


def test_metrics_say_how_old_they_are_and_when_the_scheduled_recompute_is_late(org, pipeline, settings):
    settings.METRICS_RECOMPUTE_SECONDS = 300
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-09-01")])
    computed_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=11)
    recompute_metrics(as_of=computed_at)

    body = session_client(org.admin).get("/api/v1/metrics/stale-deals/").json()

    assert abs(dt.datetime.fromisoformat(body["computed_at"]) - computed_at) < dt.timedelta(seconds=1)
    assert 11 * 60 <= body["age_seconds"] < 12 * 60
    assert body["out_of_date"] is True  # older than two 5-minute intervals
    settings.METRICS_RECOMPUTE_SECONDS = 600
    assert session_client(org.admin).get("/api/v1/metrics/stale-deals/").json()["out_of_date"] is False


def test_before_the_first_recompute_metrics_say_so(org):
    body = session_client(org.admin).get("/api/v1/metrics/win-rates/").json()
    assert body == {
        "computed_at": None,
        "age_seconds": None,
        "out_of_date": False,
        "metric": "deal_outcomes",
        "group": "company",
        "next": None,
        "previous": None,
        "results": [],
    }


def test_metric_pages_are_the_api_envelope_with_computed_at_and_at_most_200_rows(admin, org, pipeline):
    for index in range(3):
        deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", f"2026-09-0{index + 1}")])
    recompute_metrics(as_of=at("2026-11-25 12:00"))
    first = admin.get("/api/v1/metrics/stale-deals/", {"page_size": 2, "count": "true"}).json()
    assert list(first) == [
        "next",
        "previous",
        "count",
        "computed_at",
        "age_seconds",
        "out_of_date",
        "metric",
        "group",
        "reasons",
        "results",
    ]
    assert (first["count"], len(first["results"]), first["metric"], first["group"]) == (3, 2, "stale", "owner")
    assert first["computed_at"].startswith("2026-11-25T12:00:00")
    assert len(admin.get(first["next"]).json()["results"]) == 1
    row = first["results"][0]
    assert row["rotting"] is True and row["no_next_step"] is True and row["days_in_stage"] > 80
    assert admin.get("/api/v1/metrics/stale-deals/", {"page": 9}).status_code == 400
    assert len(admin.get("/api/v1/metrics/stale-deals/", {"page_size": 200}).json()["results"]) == 3
    assert admin.get("/api/v1/metrics/stale-deals/", {"page_size": 201}).status_code == 400


def test_stale_deals_add_up_each_reason_and_count_a_deal_once_in_the_total(admin, org, pipeline):
    def stale_deal(entered, amount, *, touched=None, next_step=False):
        deal = deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", entered)], amount=amount)
        leave_untouched(deal, since=at(touched or entered))
        if next_step:
            services.log_activity(actor=org.rep, kind="call", subject="Next", deal=deal, due_at=at("2026-12-01"))
        return deal

    deals = [
        stale_deal("2026-10-01", 1000),  # all three reasons
        stale_deal("2026-10-01", 200, next_step=True),  # in stage too long and idle
        stale_deal("2026-10-01", 40, touched="2026-11-20", next_step=True),  # in stage too long only
        stale_deal("2026-11-20", 5),  # no next step only
        stale_deal("2026-11-20", None),  # no next step, and no amount
        stale_deal("2026-11-20", 7, next_step=True),  # not stale
    ]
    recompute_metrics(as_of=AS_OF)
    assert admin.get("/api/v1/metrics/stale-deals/").json()["reasons"] is None  # only when asked: it reads every row
    assert admin.get("/api/v1/metrics/stale-deals/", {"reasons": "perhaps"}).status_code == 400
    body = admin.get("/api/v1/metrics/stale-deals/", {"page_size": 1, "reasons": "true"}).json()
    assert len(body["results"]) == 1  # the reasons are of every page

    # Plain Python over the same rows.
    rows = deals[:5]  # the stale ones
    why = {
        "in_stage_too_long": lambda d: d.stage_entered_at < AS_OF - dt.timedelta(days=30),
        "no_next_step": lambda d: not d.activities.filter(done_at__isnull=True, due_at__gt=AS_OF).exists(),
        "no_activity": lambda d: Deal.objects.get(pk=d.pk).last_touched_at < AS_OF - dt.timedelta(days=30),
    }
    want = {
        reason: {
            "count": sum(1 for d in rows if test(d)),
            "amount": f"{sum((d.amount or Decimal(0) for d in rows if test(d)), Decimal(0)):.2f}",
        }
        for reason, test in why.items()
    }
    want["total"] = {"count": 5, "amount": "1245.00"}
    assert body["reasons"] == want
    assert want["in_stage_too_long"] == {"count": 3, "amount": "1240.00"}  # so the test tests something
    assert want["no_activity"]["count"] == 2 and want["no_next_step"]["count"] == 3
    first = body["results"][0]
    assert {"in_stage_too_long", "no_next_step", "no_activity", "days_since_touch", "last_touched_at"} <= set(first)
    # Filters narrow the reasons too: another owner has none.
    other = admin.get("/api/v1/metrics/stale-deals/", {"owner": org.other_rep.pk, "reasons": "true"}).json()["reasons"]
    assert other["total"] == {"count": 0, "amount": "0.00"}


def test_snapshot_lists_are_paginated(org, closings):
    client = session_client(org.admin)
    first = client.get("/api/v1/metrics/stale-deals/", {"page_size": 1, "count": "true"}).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (2, 1, None)
    second = client.get(first["next"]).json()
    assert second["next"] is None
    assert second["results"][0]["deal_id"] != first["results"][0]["deal_id"]
    assert client.get("/api/v1/metrics/stale-deals/", {"page": 9}).status_code == 400


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
def test_metric_reads_make_a_constant_number_of_queries(org, closings, url):
    client = session_client(org.manager)
    with capture_queries() as queries:
        assert client.get(url, {"group": "owner"}).status_code == 200
    assert_query_count(queries, at_most=8)  # session, user, run, rows (and past due, learned for the forecast)


def test_metric_reads_are_throttled_like_the_rest_of_the_api(org, monkeypatch):
    cache.clear()
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "2/minute"})
    client = client_for(org.rep)
    statuses = [client.get("/api/v1/metrics/win-rates/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert int(client.get("/api/v1/forecast/")["Retry-After"]) > 0
    cache.clear()


# --- Recompute ----------------------------------------------------------------------------------------------------


TASK_ID = "6f1c1a52-3b0e-4c8e-9d2f-0a7c5e1b2d34"


def test_only_managers_and_admins_may_start_a_recompute(org):
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async") as apply_async:
        apply_async.return_value.id = TASK_ID
        assert session_client(org.rep).post("/api/v1/metrics/recompute/").status_code == 403
        response = session_client(org.manager).post("/api/v1/metrics/recompute/")
    assert response.status_code == 202
    assert response.json()["status_url"].endswith(f"/api/v1/metrics/recompute/{TASK_ID}/")
    assert session_client(org.manager).get(f"/api/v1/metrics/recompute/{TASK_ID}/").json()["state"] == "PENDING"
    assert session_client(org.rep).get(f"/api/v1/metrics/recompute/{TASK_ID}/").status_code == 403
    assert session_client(org.manager).get("/api/v1/metrics/recompute/task-1/").status_code == 404


def test_a_recompute_request_with_the_broker_down_is_a_503(org):
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async", side_effect=OSError("down")):
        assert session_client(org.admin).post("/api/v1/metrics/recompute/").status_code == 503


def test_a_recompute_with_the_broker_down_is_a_json_503(admin):
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async", side_effect=OSError("down")):
        response = admin.post("/api/v1/metrics/recompute/")
    assert response.status_code == 503 and "detail" in response.json()


# --- Quotas -------------------------------------------------------------------------------------------------------


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
    ids = lambda user: {row["id"] for row in session_client(user).get("/api/v1/quotas/").json()["results"]}  # noqa: E731
    assert ids(org.rep) == {mine.pk}
    assert ids(org.manager) == {mine.pk, team.pk}
    assert len(ids(org.admin)) == 3
    recompute_metrics(as_of=AS_OF)
    metrics = session_client(org.rep).get("/api/v1/quotas/").json()["results"][0]["metrics"]
    assert metrics["computed_at"].startswith("2026-11-25T12:00:00")
    assert (metrics["quota"], metrics["won_amount"]) == ("5.00", "0.00")


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


# --- The keys the serializers read --------------------------------------------------------------------------------


def test_each_metric_endpoint_serializes_rows_with_the_keys_of_its_own_metric():
    from forecasting.api import views

    endpoints = [
        view for view in vars(views).values() if isinstance(view, type) and issubclass(view, views.MetricViewSet)
    ]
    endpoints = [view for view in endpoints if view is not views.MetricViewSet]
    assert len(endpoints) == 10  # with the backtest and the calibration
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


def _stale_in_python(*, owners: set[int], pipeline_id: int | None = None) -> dict:
    """The stale deals of `owners` (and of one pipeline) at AS_OF, from the deals' own rows and SPEC §3 / §3a: count
    and amount per reason, and each deal once in `total`; amounts as the API writes them."""
    sums = {key: [0, Decimal(0)] for key in ("total", "in_stage_too_long", "no_next_step", "no_activity")}
    deals = Deal.objects.filter(status="open", owner_id__in=owners).select_related("stage")
    for deal in deals.filter(pipeline_id=pipeline_id) if pipeline_id else deals:
        rotting = dt.timedelta(days=deal.stage.rotting_days)
        reasons = {
            "in_stage_too_long": AS_OF - deal.stage_entered_at > rotting,
            "no_next_step": not deal.activities.filter(done_at__isnull=True, due_at__gt=AS_OF).exists(),
            "no_activity": AS_OF - deal.last_touched_at > rotting,
        }
        for key in ["total", *(reason for reason, stale in reasons.items() if stale)] if any(reasons.values()) else []:
            sums[key][0] += 1
            sums[key][1] += deal.amount or Decimal(0)
    return {key: {"count": count, "amount": f"{amount:.2f}"} for key, (count, amount) in sums.items()}


def test_stale_totals_stay_the_stale_deals_added_up_after_a_recompute_refreshes_and_a_stage_change(
    admin, org, pipeline, other_pipeline
):
    """The count (`?count=true`) and the reasons come from the run's stored totals, not from the rows: they must
    equal the deals added up in Python, for every reader and filter, after a recompute, after refreshes that move,
    edit, reassign and delete deals and plan their next steps, and after a change of a stage's rotting days."""
    manager = session_client(org.manager)
    east = {org.rep.pk, org.teammate.pk, org.manager.pk}
    everyone = east | {org.other_rep.pk}

    def check() -> None:
        for client, owners, params in [
            (admin, everyone, {}),
            (admin, everyone, {"pipeline": other_pipeline.pk}),
            (admin, {org.other_rep.pk}, {"owner": org.other_rep.pk}),
            (manager, east, {}),
            (manager, east, {"pipeline": pipeline.pk}),
        ]:
            body = client.get("/api/v1/metrics/stale-deals/", {**params, "reasons": "true", "count": "true"}).json()
            want = _stale_in_python(owners=owners, pipeline_id=params.get("pipeline"))
            assert body["reasons"] == want, params
            assert body["count"] == want["total"]["count"], params

    deals = []
    for index, (owner, where, entered, amount) in enumerate(
        [
            (org.rep, pipeline, "2026-09-01", Decimal("1000.00")),
            (org.rep, other_pipeline, "2026-10-01", Decimal("250.50")),
            (org.teammate, pipeline, "2026-11-20", None),
            (org.teammate, other_pipeline, "2026-09-15", Decimal("75.25")),
            (org.other_rep, pipeline, "2026-10-10", Decimal("300.00")),
            (org.other_rep, other_pipeline, "2026-11-24", Decimal("12.00")),
            (org.manager, pipeline, "2026-08-01", Decimal("4000.00")),
        ]
    ):
        deal = deal_with_history(owner=owner, pipeline=where, path=[("Prospecting", entered)], amount=amount)
        leave_untouched(deal, since=at(entered))
        if index % 3 == 2:
            services.log_activity(actor=owner, kind="call", subject="Next", deal=deal, due_at=at("2026-12-01"))
        deals.append(deal)
    recompute_metrics(as_of=AS_OF)
    check()
    assert _stale_in_python(owners=everyone)["in_stage_too_long"]["count"] == 5  # so the test tests something

    # Moves (one out of being stale in its stage, one won), an amount, a reassignment to another team, a next step
    # planned, a deal deleted, one created: each refresh patches the totals of the owners it touched only.
    services.move_deal(deal=deals[0], stage=stage(pipeline, "Qualification"), actor=None, at=AS_OF)
    services.move_deal(deal=deals[1], stage=stage(other_pipeline, "Won"), actor=None, at=AS_OF)
    services.update_deal(deal=Deal.objects.get(pk=deals[3].pk), actor=None, amount=Decimal("80.00"))
    refresh_metrics(as_of=AS_OF)
    check()
    # The reassigned deal was its owner's last in a pipeline: only its old image names that owner.
    services.update_deal(deal=Deal.objects.get(pk=deals[4].pk), actor=None, owner=org.teammate)
    Deal.objects.filter(pk=deals[2].pk).delete()
    refresh_metrics(as_of=AS_OF)
    check()
    services.log_activity(actor=org.manager, kind="call", subject="Next", deal=deals[6], due_at=at("2026-12-02"))
    deal_with_history(owner=org.other_rep, pipeline=other_pipeline, path=[("Prospecting", "2026-11-01")])
    refresh_metrics(as_of=AS_OF)
    check()

    # A stage's rotting days are configuration: the refresh gives way and the full recompute writes the totals.
    services.update_stage(stage=stage(pipeline, "Prospecting"), actor=None, rotting_days=90)
    assert refresh_metrics(as_of=AS_OF) is None
    recompute_metrics(as_of=AS_OF)
    check()
