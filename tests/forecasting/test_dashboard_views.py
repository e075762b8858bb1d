"""The forecast dashboard page through the Django test client: visibility per role, query counts, periods, the
empty state, and "Recompute now" with the broker up or down."""

import datetime as dt
import time
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from accounts.models import Role
from forecasting.dashboard import stalest_first
from forecasting.models import Metric, MetricsRun, Quota
from forecasting.selectors import SnapshotQuery, visible_snapshot_rows
from forecasting.services import recompute_history_metrics, recompute_metrics
from tests.factories import make_user
from tests.forecasting.helpers import at, deal_with_history
from tests.queries import CapturedQueries, assert_query_count, capture_queries

pytestmark = pytest.mark.django_db

AS_OF = at("2026-11-25 12:00")
DASHBOARD = "/dashboard/"


def won_in_october(owner, pipeline, amount: str, title: str):
    return deal_with_history(
        owner=owner,
        pipeline=pipeline,
        title=title,
        amount=Decimal(amount),
        path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-11")],
    )


def stale_deal(owner, pipeline, title: str):
    return deal_with_history(owner=owner, pipeline=pipeline, title=title, path=[("Prospecting", "2026-09-01")])


@pytest.fixture
def history(org, pipeline, lost_reason):
    """East (rep, teammate) won 1,000 + 5,000 in October 2026; West (other_rep) won 2,000; one stale deal each."""
    won_in_october(org.rep, pipeline, "1000", "Rep win")
    won_in_october(org.teammate, pipeline, "5000", "Teammate win")
    won_in_october(org.other_rep, pipeline, "2000", "West win")
    deal_with_history(
        owner=org.other_rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-10-01"), ("Lost", "2026-10-04")],
    )
    stale_deal(org.rep, pipeline, "Rep stale deal")
    stale_deal(org.other_rep, pipeline, "West stale deal")
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)


def dashboard_for(client, user, **params):
    client.force_login(user)
    return client.get(DASHBOARD, {"period": "2026-10", **params})


def stale_titles(response) -> set[str]:
    return {row["deal"].title for row in response.context["board"].stale}


# --- Visibility -------------------------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_an_admin_sees_the_whole_company(client, org, history):
    response = dashboard_for(client, org.admin)

    board = response.context["board"]
    assert response.status_code == 200
    assert board.scope.label == "Whole company"
    assert board.forecast["won_amount"] == "8000.00"
    assert stale_titles(response) == {"Rep stale deal", "West stale deal"}
    assert [rep["name"] for rep in board.reps] == ["rep", "teammate", "other_rep"]


def test_a_manager_sees_their_team_only(client, org, history):
    response = dashboard_for(client, org.manager)

    board = response.context["board"]
    assert board.scope.label == "East"
    assert board.forecast["won_amount"] == "6000.00"
    assert stale_titles(response) == {"Rep stale deal"}
    assert {rep["name"] for rep in board.reps} == {"rep", "teammate"}
    assert b"West stale deal" not in response.content and b"other_rep" not in response.content


def test_a_manager_of_several_teams_switches_between_them(client, org, history):
    org.other_team.managers.add(org.manager)

    east = dashboard_for(client, org.manager)
    west = dashboard_for(client, org.manager, team=org.other_team.pk)

    assert [scope.label for scope in east.context["scopes"]] == ["East", "West"]
    assert west.context["board"].scope.label == "West"
    assert west.context["board"].forecast["won_amount"] == "2000.00"
    assert stale_titles(west) == {"West stale deal"}


def test_a_rep_sees_only_their_own_numbers(client, org, history):
    response = dashboard_for(client, org.rep)

    board = response.context["board"]
    assert board.scope.label == "My numbers"
    assert board.forecast["won_amount"] == "1000.00"
    assert [rep["name"] for rep in board.reps] == ["rep"]
    assert stale_titles(response) == {"Rep stale deal"}
    assert b"Teammate" not in response.content and b"West" not in response.content
    assert b"Recompute now" not in response.content


def test_a_manager_of_no_team_sees_only_their_own_numbers(client, org, history):
    response = dashboard_for(client, org.idle_manager)

    board = response.context["board"]
    assert board.scope.owner_id == org.idle_manager.pk
    assert board.forecast == {} and board.stale == [] and board.reps == []


def test_a_team_quota_shows_attainment_coverage_and_deals_needed(client, org, history):
    Quota.objects.create(
        team=org.team, period_start=dt.date(2026, 10, 1), period_end=dt.date(2026, 11, 1), amount=10000
    )
    recompute_metrics(as_of=AS_OF)

    response = dashboard_for(client, org.manager)

    quota = response.context["board"].quota
    assert quota["quota"] == "10000.00" and quota["attainment"] == pytest.approx(0.6)
    assert response.context["chart_data"]["forecast"]["quota"] == 10000.0
    assert b"60%" in response.content


def test_stale_deals_link_to_their_deal_pages_and_escape_titles(client, org, pipeline, history):
    deal = stale_deal(org.rep, pipeline, "<script>alert(1)</script>")
    recompute_metrics(as_of=AS_OF)

    content = dashboard_for(client, org.rep).content.decode()

    assert f'href="{reverse("pipeline:deal", args=[deal.pk])}"' in content
    assert "<script>alert(1)</script>" not in content and "&lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_the_stalest_deals_are_read_in_the_order_of_their_index(org, history):
    # forecasting 0012: on L the admin's twelve were a sort of 63,000 rows (127 ms). The order must be the index's,
    # expression for expression, or PostgreSQL sorts whatever the costs say.
    stale = visible_snapshot_rows(user=org.admin, query=SnapshotQuery(metric=Metric.STALE, group_kind="owner"))[1]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        plan = stalest_first(stale)[:12].explain()
    assert "metricsnapshot_stalest_idx" in plan and "Sort" not in plan, plan
    assert len(stalest_first(stale)) == 2  # the two stale deals of `history`, still all of them


# --- Reads snapshots only, in a constant number of queries ----------------------------------------------------------


def dashboard_queries(client, user) -> CapturedQueries:
    client.force_login(user)
    with capture_queries() as queries:
        response = client.get(DASHBOARD, {"period": "2026-10"})
    assert response.status_code == 200
    return queries


@pytest.mark.parametrize("role", ["admin", "manager", "rep"])
def test_the_page_makes_the_same_number_of_queries_however_much_data_there_is(client, org, pipeline, history, role):
    user = getattr(org, role)
    few = dashboard_queries(client, user)

    for n in range(4):
        colleague = make_user(team=org.team, username=f"colleague{n}")
        won_in_october(colleague, pipeline, "3000", f"Colleague win {n}")
        stale_deal(colleague, pipeline, f"Colleague stale {n}")
        won_in_october(org.rep, pipeline, "700", f"Another rep win {n}")
        stale_deal(org.rep, pipeline, f"Another rep stale {n}")
    recompute_metrics(as_of=AS_OF)
    recompute_history_metrics(as_of=AS_OF)
    many = dashboard_queries(client, user)

    assert_query_count(few, many, at_most=23)  # backtest: its rows and their summary; calibration: its rows


def test_the_page_never_computes_metrics(client, org, history):
    runs = MetricsRun.objects.count()

    queries = dashboard_queries(client, org.admin)

    assert MetricsRun.objects.count() == runs
    assert not any(sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) for sql in queries.sql)
    assert not any("pipeline_stagechange" in sql for sql in queries.sql)


# --- Periods ----------------------------------------------------------------------------------------------------------


def test_the_period_selector_reads_months_quarters_and_years(client, org, history):
    client.force_login(org.admin)

    month = client.get(DASHBOARD, {"period": "2026-10"}).context["board"]
    quarter = client.get(DASHBOARD, {"period": "2026-Q4"}).context["board"]
    year = client.get(DASHBOARD, {"period": "2026"}).context["board"]
    september = client.get(DASHBOARD, {"period": "2026-09"}).context["board"]

    assert (month.period.kind, month.period.start, month.period.end) == (
        "month",
        dt.date(2026, 10, 1),
        dt.date(2026, 11, 1),
    )
    assert (quarter.period.kind, quarter.period.start) == ("quarter", dt.date(2026, 10, 1))
    assert (year.period.kind, year.period.start) == ("year", dt.date(2026, 1, 1))
    assert month.forecast["won_amount"] == quarter.forecast["won_amount"] == year.forecast["won_amount"] == "8000.00"
    assert september.forecast.get("won_amount") is None


def test_the_period_tabs_and_arrows_link_to_neighbouring_periods(client, org, history):
    content = dashboard_for(client, org.admin, period="2026-Q1").content.decode()

    assert "?period=2025-Q4&amp;" in content and "?period=2026-Q2&amp;" in content
    today = timezone.localdate()
    assert f"?period={today.year}&amp;" in content  # the Year tab: this year


def test_a_period_kind_alone_picks_the_current_period(client, org, history):
    client.force_login(org.admin)
    board = client.get(DASHBOARD, {"kind": "quarter"}).context["board"]
    today = timezone.localdate()
    assert board.period.kind == "quarter" and board.period.start <= today < board.period.end


def test_a_period_that_does_not_parse_shows_this_month_and_says_so(client, org, history):
    client.force_login(org.admin)
    response = client.get(DASHBOARD, {"period": "2026-13"})

    assert response.status_code == 200
    assert response.context["board"].period.start == timezone.localdate().replace(day=1)
    assert b"That period could not be read" in response.content


def test_a_period_ending_past_the_last_date_shows_this_month_and_says_so(client, org, history):
    client.force_login(org.admin)
    response = client.get(DASHBOARD, {"period": "9999-12"})  # once a 500: its end is in the year 10000

    assert response.status_code == 200
    assert response.context["board"].period.start == timezone.localdate().replace(day=1)
    assert b"That period could not be read" in response.content


# --- Empty state and freshness ----------------------------------------------------------------------------------------


def test_before_the_first_recompute_the_page_says_so_and_still_renders(client, org, pipeline):
    client.force_login(org.manager)
    response = client.get(DASHBOARD)

    assert response.status_code == 200
    assert b"No metrics have been computed yet" in response.content
    assert b"<canvas" not in response.content
    assert b"Recompute now" in response.content


def test_the_page_says_when_its_numbers_were_computed_and_flags_old_ones(client, org, history):
    content = dashboard_for(client, org.admin).content.decode()

    assert 'datetime="2026-11-25T12:00:00+00:00"' in content
    assert "Out of date" in content  # AS_OF is far older than two recompute intervals

    recompute_metrics()
    content = dashboard_for(client, org.admin).content.decode()
    assert "Out of date" not in content


def test_the_charts_get_their_numbers_from_a_json_block_not_an_inline_script(client, org, history):
    response = dashboard_for(client, org.admin)
    content = response.content.decode()

    assert '<script id="dashboard-data" type="application/json">' in content
    assert response.context["chart_data"]["forecast"]["values"][0] == 8000.0
    assert [label for label in response.context["chart_data"]["funnel"]["labels"]][:2] == [
        "Prospecting",
        "Qualification",
    ]
    assert " on" + "click=" not in content and "<style" not in content


# --- Recompute now ----------------------------------------------------------------------------------------------------


def test_a_rep_may_not_start_a_recompute(client, org):
    client.force_login(org.rep)
    assert client.post(reverse("forecasting:recompute")).status_code == 403
    assert client.get(reverse("forecasting:recompute_status", args=["x"])).status_code == 403


def test_recompute_now_queues_the_task_and_answers_a_polling_status(client, org, history):
    client.force_login(org.manager)
    run = MetricsRun.objects.get()
    queued = mock.Mock(id="task-123")

    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async", return_value=queued) as apply_async:
        response = client.post(reverse("forecasting:recompute"), HTTP_HX_REQUEST="true")

    apply_async.assert_called_once_with(kwargs={"reason": "request"}, retry=False)
    content = response.content.decode()
    assert response.status_code == 200
    assert f"/dashboard/recompute/task-123/?since={run.pk}" in content and 'hx-trigger="every 1s"' in content


def test_with_the_broker_down_the_button_says_it_could_not_queue(client, org, history):
    client.force_login(org.manager)

    with mock.patch(
        "forecasting.tasks.recompute_metrics_task.apply_async", side_effect=BrokerError("Connection refused")
    ):
        response = client.post(reverse("forecasting:recompute"), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert b"Could not queue the recompute" in response.content
    assert dashboard_for(client, org.manager).status_code == 200  # the page itself needs no broker


def test_without_javascript_recompute_now_returns_to_the_page_with_a_message(client, org, history):
    client.force_login(org.manager)
    back = f"{DASHBOARD}?period=2026-10"

    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async", return_value=mock.Mock(id="t")):
        queued = client.post(reverse("forecasting:recompute"), {"next": back}, follow=True)
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async", side_effect=BrokerError("refused")):
        refused = client.post(reverse("forecasting:recompute"), {"next": "https://evil.example/"}, follow=True)

    assert queued.redirect_chain == [(back, 302)] and b"Recompute queued" in queued.content
    assert refused.redirect_chain == [(DASHBOARD, 302)] and b"Could not queue the recompute" in refused.content


def test_the_status_keeps_polling_until_a_newer_run_is_complete_then_reloads(client, org, history):
    client.force_login(org.admin)
    run = MetricsRun.objects.get()
    url = reverse("forecasting:recompute_status", args=["task-123"])

    waiting = client.get(url, {"since": run.pk, "started": "0"}, HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 1s"' in waiting.content.decode() and "HX-Refresh" not in waiting

    recompute_metrics()
    done = client.get(url, {"since": run.pk}, HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true" and b"Fresh numbers" in done.content


def test_the_status_says_when_the_task_failed_or_cannot_be_followed(client, org, history):
    client.force_login(org.admin)
    run = MetricsRun.objects.get()
    url = reverse("forecasting:recompute_status", args=["task-123"])

    with mock.patch("forecasting.views.AsyncResult") as result:
        result.return_value.state = "FAILURE"
        failed = client.get(url, {"since": run.pk})
    with mock.patch("forecasting.views.AsyncResult", side_effect=BrokerError("Connection refused")):
        lost = client.get(url, {"since": run.pk})

    assert b"The recompute failed" in failed.content and b"every 1s" not in failed.content
    assert b"Could not follow the recompute" in lost.content and b"every 1s" not in lost.content


def test_the_status_stops_polling_when_no_worker_takes_the_task(client, org, history):
    client.force_login(org.admin)
    run = MetricsRun.objects.get()
    url = reverse("forecasting:recompute_status", args=["task-never-run"])

    recent = client.get(url, {"since": run.pk, "started": time.time() - 40})
    abandoned = client.get(url, {"since": run.pk, "started": time.time() - 600})

    assert b"Waiting for a worker" in recent.content and b"every 1s" in recent.content
    assert b"still waiting for a worker" in abandoned.content and b"every 1s" not in abandoned.content


def test_the_navigation_links_to_the_dashboard(client, org, pipeline):
    client.force_login(org.rep)
    assert b'href="/dashboard/"' in client.get(reverse("pipeline:board")).content


def test_admins_by_role_or_superuser_flag_both_see_the_company(client, org, history):
    superuser = make_user(role=Role.REP, username="root", is_superuser=True)
    assert dashboard_for(client, superuser).context["board"].scope.label == "Whole company"


def test_the_funnel_and_stage_times_are_per_pipeline(client, org, pipeline, other_pipeline, history):
    deal_with_history(
        owner=org.rep,
        pipeline=other_pipeline,
        path=[("Prospecting", "2026-10-01"), ("Discovery", "2026-10-05"), ("Proposal", "2026-10-20")],
    )
    recompute_metrics(as_of=AS_OF)

    default = dashboard_for(client, org.admin).context["board"]
    other = dashboard_for(client, org.admin, pipeline=other_pipeline.pk).context["board"]

    assert default.pipeline == pipeline and other.pipeline == other_pipeline
    assert default.funnel[0]["reached"] == 6  # every deal of the first pipeline reached Prospecting
    assert [row["reached"] for row in other.funnel][:4] == [1, 1, 1, 1]  # Qualification was skipped: passed through
    assert other.bottleneck["stage"].name == "Discovery"
    assert {row["stage"].pipeline_id for row in other.stage_times} == {other_pipeline.pk}


def test_the_funnel_is_of_all_deals_or_of_those_created_in_the_period(client, org, history):
    everything = dashboard_for(client, org.admin).context["board"]
    october = dashboard_for(client, org.admin, cohort="period").context["board"]
    august = dashboard_for(client, org.admin, cohort="period", period="2026-08")

    assert everything.funnel[0]["reached"] == 6
    assert october.funnel[0]["reached"] == 4  # the two stale deals were created in September
    assert august.context["board"].funnel == [] and b"were created in August 2026" in august.content


# --- The backtest panel ---------------------------------------------------------------------------------------------


def test_the_backtest_panel_shows_each_months_error_and_the_wape_at_their_starts(client, org, pipeline, history):
    """September (in the history from its first day: the stale deals' creation) and October; the numbers are those
    plain Python gets from the backtest rows."""
    from forecasting.models import Metric
    from tests.forecasting.helpers import latest_rows

    board = dashboard_for(client, org.admin, period="2026-11").context["board"]
    rows = latest_rows(Metric.BACKTEST, group_kind="company", period_kind="month")
    by_period: dict = {}
    for row in rows:
        by_period.setdefault(row.period_start, []).append(row.values)
    assert [entry["period"].start for entry in board.backtest] == sorted(by_period, reverse=True)
    for entry in board.backtest:
        instants = sorted(by_period[entry["period"].start], key=lambda values: values["week"])
        assert entry["start"] == instants[0] and entry["last"] == instants[-1]
    starts = [values for instants in by_period.values() for values in instants if values["week"] == 0]
    actual = sum(Decimal(v["actual_won"]) for v in starts)
    error = sum(abs(Decimal(v["actual_won"]) - Decimal(v["weighted_configured"])) for v in starts)
    over = sum(Decimal(v["weighted_learned"]) - Decimal(v["actual_won"]) for v in starts)
    summary = board.backtest_summary
    assert summary["rows"] == len(starts) == 2
    assert summary["wape_configured"] == pytest.approx(float(error / actual))
    assert summary["bias_learned"] == pytest.approx(float(over / actual))
    content = dashboard_for(client, org.admin, period="2026-11").content.decode()
    assert 'id="backtest"' in content and f"off by {summary['wape_configured'] * 100:.0f}%" in content


def test_a_rep_s_backtest_panel_holds_their_own_numbers_only(client, org, pipeline, history):
    board = dashboard_for(client, org.rep, period="2026-11").context["board"]
    # The rep won 1,000 in October; in September they had nothing won nor expected to close (an owner's row exists
    # where they had something), so no row.
    assert [(entry["period"].key, entry["start"]["actual_won"]) for entry in board.backtest] == [("2026-10", "1000.00")]


def test_the_calibration_panel_names_the_stage_furthest_from_its_probability(client, org, pipeline, history):
    """Every closed deal entered Prospecting (10 %) only: 3 of 4 won, so 'Prospecting deals we call 10% win 75% of
    the time'; Brier = (3 × 0.9² + 0.1²) / 4 with the configured probability."""
    response = dashboard_for(client, org.admin, period="2026-11")
    board = response.context["board"]
    assert board.calibration["predictions"] == 4 and board.calibration["won"] == 3
    assert board.calibration["brier_configured"] == pytest.approx((3 * 0.9**2 + 0.1**2) / 4)
    assert board.calibration_worst["stage"].name == "Prospecting"
    assert "Prospecting deals we call 10% win 75% of the time." in response.content.decode()
    assert response.context["chart_data"]["reliability"]["configured"] == [{"x": 0.1, "y": 0.75, "count": 4}]
