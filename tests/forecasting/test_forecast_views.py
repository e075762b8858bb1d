"""The forecast call page /forecast/ (`forecasting.views.forecast_call`, `submit_call`, `adjust_call`): who sees
which rows, inline submit and adjust through the services (errors in the row, nothing written), the 404 of SPEC
§2 for a member out of sight, and a query count that does not grow with the reps."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from forecasting.models import ForecastAdjustment, ForecastSubmission, Quota
from forecasting.periods import Period
from forecasting.selectors import period_instants
from forecasting.services import recompute_metrics, submit_forecast
from tests.factories import make_qualified_deal, make_user, stage
from tests.queries import assert_query_count, capture_queries

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def quarter():
    return Period.current("quarter")


@pytest.fixture
def call(org, pipeline, quarter):
    """An open commit deal of the rep's and of the teammate's this quarter, the rep's quota, a recompute."""
    for owner, amount in ((org.rep, "5000"), (org.teammate, "3000")):
        make_qualified_deal(
            owner=owner,
            pipeline=pipeline,
            stage=stage(pipeline, "Negotiation"),
            amount=Decimal(amount),
            expected_close_date=quarter.end - timedelta(days=1),
        )
    Quota.objects.create(user=org.rep, amount=Decimal("20000"), period_start=quarter.start, period_end=quarter.end)
    recompute_metrics()
    return org


def rows_of(html: str) -> set[str]:
    return {part.split('"')[0] for part in html.split('id="member-')[1:]}


def test_a_rep_sees_only_their_own_row_and_submits_there(client, call, quarter):
    org = call
    client.force_login(org.rep)
    html = client.get("/forecast/").content.decode()
    assert rows_of(html) == {str(org.rep.pk)}
    assert f'id="submit-{org.rep.pk}"' in html and "Adjust</button>" not in html

    response = client.post(
        "/forecast/submit/",
        {"period": quarter.key, "category": "commit", "amount": "6500", "note": "Acme signs in week 2"},
        **HTMX,
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith('<div id="forecast-call"')  # the block the form swaps, not the whole page
    assert "$6,500" in body and "Acme signs in week 2" in body
    (submission,) = ForecastSubmission.objects.all()
    assert (submission.user, submission.amount, submission.category) == (org.rep, Decimal("6500.00"), "commit")


def test_a_manager_sees_the_team_adjusts_with_a_note_and_the_team_total_changes(client, call, quarter):
    org = call
    submit_forecast(user=org.rep, period=quarter, category="commit", amount="6000")
    client.force_login(org.manager)
    html = client.get(f"/forecast/?period={quarter.key}").content.decode()
    assert rows_of(html) == {str(org.rep.pk), str(org.teammate.pk), str(org.manager.pk)}
    assert f'id="adjust-{org.rep.pk}"' in html and f'id="adjust-{org.manager.pk}"' not in html  # not their own
    assert f'id="submit-team-{org.team.pk}"' in html
    total = html.split(f'id="team-total-{org.team.pk}"')[1].split('data-col="value">')[1].split("<")[0]
    assert total == "$9,000"  # the rep's 6,000 submitted and the teammate's 3,000 computed

    missing_note = {"period": quarter.key, "category": "commit", "amount": "4000", "note": " "}
    refused = client.post(f"/forecast/adjust/{org.rep.pk}/", missing_note, **HTMX).content.decode()
    assert "an adjustment needs a note" in refused and ForecastAdjustment.objects.count() == 0

    adjusted = {"period": quarter.key, "category": "commit", "amount": "4000", "note": "Legal review slips"}
    html = client.post(f"/forecast/adjust/{org.rep.pk}/", adjusted, **HTMX).content.decode()
    total = html.split(f'id="team-total-{org.team.pk}"')[1].split('data-col="value">')[1].split("<")[0]
    assert total == "$7,000"
    row = html.split(f'id="member-{org.rep.pk}"')[1].split("</tr>")[0]
    assert "$6,000" in row and "$4,000" in row and "Legal review slips" in row  # the original beside it


def test_a_manager_of_another_team_gets_404_on_adjust_and_nothing_is_written(client, call, quarter):
    org = call
    client.force_login(org.other_manager)
    body = {"period": quarter.key, "category": "commit", "amount": "1", "note": "Not mine"}
    assert client.post(f"/forecast/adjust/{org.rep.pk}/", body, **HTMX).status_code == 404
    assert client.post(f"/forecast/adjust/{org.rep.pk}/", body).status_code == 404
    client.force_login(org.rep)
    assert client.post(f"/forecast/adjust/{org.teammate.pk}/", body, **HTMX).status_code == 404
    assert client.post("/forecast/submit/", body | {"team": org.team.pk}, **HTMX).status_code == 404
    assert ForecastAdjustment.objects.count() == 0 and ForecastSubmission.objects.count() == 0


def test_a_teammate_seen_with_team_visibility_is_403_to_adjust(client, call, quarter, settings):
    settings.REP_VISIBILITY = "team"
    client.force_login(call.rep)
    body = {"period": quarter.key, "category": "commit", "amount": "1", "note": "Not mine"}
    assert client.post(f"/forecast/adjust/{call.teammate.pk}/", body, **HTMX).status_code == 403
    assert ForecastAdjustment.objects.count() == 0


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("-5", "The amount must be zero or more."),
        ("lots", "Give an amount, such as 125000.00."),
        ("", "Give an amount"),
    ],
)
def test_bad_input_is_refused_in_the_row_in_words(client, call, quarter, amount, message):
    client.force_login(call.rep)
    body = {"period": quarter.key, "category": "commit", "amount": amount}
    html = client.post("/forecast/submit/", body, **HTMX).content.decode()
    errors = html.split(f'id="submit-{call.rep.pk}"')[1].split("</form>")[0]
    assert message in errors
    assert ForecastSubmission.objects.count() == 0


def test_an_ended_period_is_locked_and_a_plain_post_says_so_on_the_page(client, call, quarter):
    client.force_login(call.rep)
    body = {"period": quarter.previous().key, "category": "commit", "amount": "10"}
    response = client.post("/forecast/submit/", body, follow=True)
    assert "its forecast call is locked" in response.content.decode()
    assert ForecastSubmission.objects.count() == 0


def test_a_stale_submission_says_how_old_it_is(client, call, quarter):
    starts = period_instants(quarter)[0]
    submitted = max(timezone.now() - timedelta(days=9), starts + timedelta(minutes=1))
    submit_forecast(user=call.rep, period=quarter, category="commit", amount="100", now=submitted)
    submit_forecast(user=call.rep, period=quarter, category="best_case", amount="200")
    client.force_login(call.rep)
    days = (timezone.now() - submitted).days
    commit = client.get(f"/forecast/?period={quarter.key}&category=commit").content.decode()
    assert (f"not updated for {days} days" in commit) == (days >= 7)
    assert "not updated for" not in client.get(f"/forecast/?period={quarter.key}&category=best_case").content.decode()


def test_the_dashboard_and_the_top_bar_link_to_the_forecast_call(client, call):
    client.force_login(call.manager)
    html = client.get("/dashboard/").content.decode()
    assert 'id="forecast-call-link"' in html
    assert 'href="/forecast/"' in html


def test_the_page_makes_the_same_queries_for_two_reps_or_six(client, call, quarter, pipeline):
    org = call
    client.force_login(org.manager)
    # The first view of a period computes its past weeks' trend points once (forecasting.models.CallTrendPoint).
    assert client.get(f"/forecast/?period={quarter.key}").status_code == 200
    with capture_queries() as few:
        assert client.get(f"/forecast/?period={quarter.key}").status_code == 200
    for number in range(4):
        rep = make_user(team=org.team, username=f"extra{number}")
        make_qualified_deal(owner=rep, pipeline=pipeline, expected_close_date=quarter.end - timedelta(days=2))
        Quota.objects.create(user=rep, amount=Decimal(1000), period_start=quarter.start, period_end=quarter.end)
        submit_forecast(user=rep, period=quarter, category="commit", amount="900")
    recompute_metrics()
    with capture_queries() as many:
        html = client.get(f"/forecast/?period={quarter.key}").content.decode()
    assert len(rows_of(html)) == 7
    assert_query_count(few, many, exactly=25)  # session, user, roll-up, trend, pacing (company or teams), forms


def test_an_admin_adjusts_a_teams_number_and_a_manager_may_not(client, call, quarter):
    org = call
    submit_forecast(user=org.manager, period=quarter, category="commit", amount="12000", team=org.team)
    body = {"period": quarter.key, "category": "commit", "amount": "10000", "note": "East is short a rep"}
    client.force_login(org.manager)
    assert f'id="adjust-team-{org.team.pk}"' not in client.get(f"/forecast/?period={quarter.key}").content.decode()
    assert client.post(f"/forecast/adjust-team/{org.team.pk}/", body, **HTMX).status_code == 403
    client.force_login(org.admin)
    refused = client.post(f"/forecast/adjust-team/{org.team.pk}/", body | {"note": ""}, **HTMX).content.decode()
    assert "an adjustment needs a note" in refused.split(f'id="adjust-team-{org.team.pk}"')[1].split("</form>")[0]
    html = client.post(f"/forecast/adjust-team/{org.team.pk}/", body, **HTMX).content.decode()
    total = html.split(f'id="team-total-{org.team.pk}"')[1].split("</tr>")[0]
    assert "$12,000" in total and "$10,000" in total  # the manager's number and the admin's beside it
    (adjustment,) = ForecastAdjustment.objects.all()
    assert (adjustment.team, adjustment.user, adjustment.amount) == (org.team, None, Decimal("10000.00"))
