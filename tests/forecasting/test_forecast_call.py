"""The forecast call (SPEC §3a, issue 16): submissions and adjustments through `forecasting.services`, the roll-up,
the weekly lock and trend, and commit reliability through `forecasting.selectors`.

Every number is recomputed here in plain Python from the same rows (the deals' amounts, the numbers stated) and
compared with what the selectors answer.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, InternalError, transaction
from django.http import Http404

from accounts.models import AuditEntry
from forecasting import selectors, services
from forecasting.models import CallTrendPoint, ForecastAdjustment, ForecastSubmission
from forecasting.periods import Period
from forecasting.services import recompute_metrics
from pipeline import services as pipeline_services
from tests.forecasting.helpers import at, deal_with_history

pytestmark = pytest.mark.django_db

Q4 = Period.parse("2026-Q4")
IN_Q4 = at("2026-10-20 12:00")  # a Tuesday of Q4 2026
D = Decimal


def submit(user, amount, *, category="commit", when=IN_Q4, **kwargs):
    return services.submit_forecast(user=user, period=Q4, category=category, amount=amount, note="", now=when, **kwargs)


def adjust(user, member, amount, *, category="commit", when=IN_Q4, note="Too rosy"):
    return services.adjust_forecast(
        user=user, member=member, period=Q4, category=category, amount=amount, note=note, now=when
    )


@pytest.fixture
def q4_deals(org, pipeline):
    """Per rep of East and West, deals of Q4 2026 (won, open commit, open best case, open pipeline), recomputed
    on 2026-11-25; returns {rep: (won, open commit, open best case, open weighted at configured p)}."""
    plan = {
        org.rep: (D("1000"), D("2000"), D("500")),
        org.teammate: (D("0"), D("700"), D("300")),
        org.other_rep: (D("400"), D("0"), D("900")),
    }
    for owner, (won, commit, best) in plan.items():
        if won:
            deal_with_history(
                owner=owner, pipeline=pipeline, amount=won, path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-11")]
            )
        for amount, category in ((commit, "commit"), (best, "best_case"), (D("9999"), "pipeline")):
            if amount:
                deal_with_history(
                    owner=owner,
                    pipeline=pipeline,
                    amount=amount,
                    forecast_category_override=category,
                    expected_close_date="2026-12-15",
                    path=[("Prospecting", "2026-10-01")],
                )
    recompute_metrics(as_of=at("2026-11-25 12:00"))
    return plan


def computed(plan, user, category):
    """The computed value of SPEC §3a from the plan: commit = won + open commit, best case = commit + open best."""
    won, commit, best = plan.get(user, (D(0), D(0), D(0)))
    return {"won": won, "commit": won + commit, "best_case": won + commit + best}[category]


def member_rows(rollup):
    return {member.user_id: member for team in rollup.teams for member in team.members}


# --- Submissions ----------------------------------------------------------------------------------------------------


def test_every_submission_is_kept_audited_and_the_latest_counts(org, q4_deals):
    first = submit(org.rep, "5000", when=at("2026-10-06 10:00"))
    second = submit(org.rep, "4200.50", when=at("2026-10-13 10:00"))
    assert ForecastSubmission.objects.filter(user=org.rep).count() == 2
    audited = AuditEntry.objects.filter(object_id__in=[first.pk, second.pk], content_type__model="forecastsubmission")
    assert audited.count() == 2
    assert audited.get(object_id=second.pk).changes["amount"] == [None, "4200.50"]
    rollup = selectors.forecast_rollup(user=org.admin, period=Q4, category="commit", at=at("2026-11-25 12:00"))
    row = member_rows(rollup)[org.rep.pk]
    assert row.submitted.amount == D("4200.50") and row.submitted_at == at("2026-10-13 10:00")
    assert row.value == D("4200.50")
    # What it was before the second one: the first.
    earlier = selectors.forecast_rollup(user=org.admin, period=Q4, category="commit", at=at("2026-10-10 00:00"))
    assert member_rows(earlier)[org.rep.pk].value == D("5000.00")


def test_submissions_and_adjustments_are_append_only_in_the_database(org):
    submission = submit(org.rep, "100")
    adjustment = adjust(org.manager, org.rep, "90")
    for row in (submission, adjustment):
        for write in (lambda r: type(r).objects.filter(pk=r.pk).update(amount=1), lambda r: r.delete()):
            with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
                write(row)
    assert ForecastSubmission.objects.get().amount == D("100.00")
    assert ForecastAdjustment.objects.get().amount == D("90.00")


def test_a_manager_submits_for_a_team_they_manage_only(org):
    submission = submit(org.manager, "20000", team=org.team)
    assert submission.team == org.team and submission.user is None and submission.submitted_by == org.manager
    for user in (org.other_manager, org.rep, org.admin):
        with pytest.raises(PermissionDenied):
            submit(user, "1", team=org.team)
    assert ForecastSubmission.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "-1"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"category": "pipeline"}, "category"),
        ({"period": Period.parse("2026-Q3")}, "period"),  # ended: locked
        ({"period": Period.parse("2026")}, "period"),  # a year is no forecast call
    ],
)
def test_bad_submissions_are_refused_and_nothing_is_written(org, change, field):
    arguments = {"user": org.rep, "period": Q4, "category": "commit", "amount": "10", "now": IN_Q4} | change
    with pytest.raises(ValidationError) as refused:
        services.submit_forecast(**arguments)
    assert field in refused.value.message_dict
    assert not ForecastSubmission.objects.exists()
    assert not AuditEntry.objects.filter(content_type__model="forecastsubmission").exists()


# --- Adjustments ------------------------------------------------------------------------------------------------------


def test_an_adjustment_needs_a_note_and_an_open_period(org):
    for note in ("", "   "):
        with pytest.raises(ValidationError) as refused:
            adjust(org.manager, org.rep, "10", note=note)
        assert "note" in refused.value.message_dict
    with pytest.raises(ValidationError) as refused:
        adjust(org.manager, org.rep, "-5", when=at("2027-01-02 12:00"))
    assert set(refused.value.message_dict) == {"amount", "period"}
    assert not ForecastAdjustment.objects.exists()


def test_who_may_adjust_whom(settings, org):
    settings.REP_VISIBILITY = "team"
    adjust(org.manager, org.rep, "10")  # a manager, a member of their team
    adjust(org.admin, org.other_rep, "10")  # an admin, anyone
    adjust(org.admin, org.team, "10")  # an admin, a team's number
    with pytest.raises(Http404):
        adjust(org.manager, org.other_rep, "10")  # another team's member: not visible
    with pytest.raises(Http404):
        adjust(org.rep, org.other_rep, "10")
    with pytest.raises(PermissionDenied):
        adjust(org.teammate, org.rep, "10")  # seen (REP_VISIBILITY=team) but a rep adjusts nobody
    with pytest.raises(PermissionDenied):
        adjust(org.manager, org.manager, "10")  # nobody adjusts their own number
    with pytest.raises(PermissionDenied):
        adjust(org.manager, org.team, "10")  # a team's number: admins only
    assert ForecastAdjustment.objects.count() == 3


# --- The roll-up ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["commit", "best_case"])
def test_rollup_without_statements_is_the_computed_value(org, q4_deals, category):
    rollup = selectors.forecast_rollup(user=org.admin, period=Q4, category=category, at=at("2026-11-25 12:00"))
    rows = member_rows(rollup)
    for user in (org.rep, org.teammate, org.other_rep, org.manager):
        assert rows[user.pk].computed == rows[user.pk].value == computed(q4_deals, user, category)
        assert rows[user.pk].won == computed(q4_deals, user, "won")
    teams = {team.team_id: team for team in rollup.teams}
    east = [org.manager, org.rep, org.teammate]
    assert teams[org.team.pk].value == sum(computed(q4_deals, user, category) for user in east)
    assert teams[org.other_team.pk].value == computed(q4_deals, org.other_rep, category)
    assert rollup.company and rollup.value == sum(team.value for team in rollup.teams)
    assert rollup.value == sum(computed(q4_deals, user, category) for user in q4_deals)


def test_rollup_takes_adjusted_else_submitted_else_computed(org, q4_deals):
    submit(org.rep, "5000", when=at("2026-10-06 10:00"))
    submit(org.teammate, "800", when=at("2026-10-06 10:00"))
    adjust(org.manager, org.rep, "4000", when=at("2026-10-07 10:00"))
    submit(org.rep, "6000", when=at("2026-10-08 10:00"))  # the adjustment stands: the manager re-adjusts if need be
    rollup = selectors.forecast_rollup(user=org.manager, period=Q4, category="commit", at=at("2026-11-25 12:00"))
    rows = member_rows(rollup)
    assert rows[org.rep.pk].submitted.amount == D("6000.00")
    assert rows[org.rep.pk].adjusted.amount == D("4000.00") and rows[org.rep.pk].adjusted.note == "Too rosy"
    assert rows[org.rep.pk].value == D("4000.00")
    assert rows[org.teammate.pk].value == D("800.00")
    assert rows[org.manager.pk].value == computed(q4_deals, org.manager, "commit")
    (east,) = rollup.teams
    assert east.value == D("4000") + D("800") + computed(q4_deals, org.manager, "commit")
    assert east.call == east.value  # no team number stated
    submit(org.manager, "4500", team=org.team, when=at("2026-10-09 10:00"))
    adjust(org.admin, org.team, "4100", when=at("2026-10-10 10:00"))
    submit(org.manager, "9999", team=org.team, category="best_case", when=at("2026-10-11 10:00"))
    (east,) = selectors.forecast_rollup(user=org.manager, period=Q4, category="commit").teams
    assert east.submitted.amount == D("4500.00") and east.adjusted.amount == D("4100.00")
    assert east.call == D("4100.00") and east.value == D("4800.00")
    # The team's best case is its own number, in that category only.
    (east,) = selectors.forecast_rollup(user=org.manager, period=Q4, category="best_case").teams
    assert east.submitted.amount == D("9999.00") and east.adjusted is None and east.call == D("9999.00")
    assert east.submitted.at == at("2026-10-11 10:00") and east.submitted.by_id == org.manager.pk


def test_rollup_is_cumulative_best_case_over_commit_over_won(org, q4_deals):
    # A commit above the computed best case lifts the best case; a commit below what is won is raised to it.
    submit(org.rep, "9000")
    submit(org.other_rep, "100")
    best = member_rows(selectors.forecast_rollup(user=org.admin, period=Q4, category="best_case"))
    commit = member_rows(selectors.forecast_rollup(user=org.admin, period=Q4, category="commit"))
    assert best[org.rep.pk].value == D("9000.00") > computed(q4_deals, org.rep, "best_case")
    assert commit[org.other_rep.pk].value == D("400.00") == computed(q4_deals, org.other_rep, "won")
    for user_id, row in commit.items():
        assert best[user_id].value >= row.value >= row.won, user_id


def test_rollup_shows_a_rep_their_own_row_unless_reps_see_their_team(settings, org, q4_deals):
    submit(org.teammate, "800")
    mine = selectors.forecast_rollup(user=org.rep, period=Q4, category="commit")
    assert list(member_rows(mine)) == [org.rep.pk] and not mine.company
    assert mine.value == computed(q4_deals, org.rep, "commit")
    settings.REP_VISIBILITY = "team"
    team = selectors.forecast_rollup(user=org.rep, period=Q4, category="commit")
    assert set(member_rows(team)) == {org.rep.pk, org.teammate.pk, org.manager.pk}
    assert member_rows(team)[org.teammate.pk].value == D("800.00")
    assert set(selectors.visible_forecast_submissions(org.rep)) == set(ForecastSubmission.objects.all())


def test_rollup_shows_a_manager_only_their_teams(org, q4_deals):
    submit(org.other_rep, "300")
    rollup = selectors.forecast_rollup(user=org.manager, period=Q4, category="commit")
    assert [team.team_id for team in rollup.teams] == [org.team.pk]
    assert org.other_rep.pk not in member_rows(rollup)
    assert not selectors.visible_forecast_submissions(org.manager).exists()
    assert selectors.visible_forecast_submissions(org.other_manager).count() == 1


def test_rollup_quota_and_gap(org, q4_deals):
    from forecasting.models import Quota

    Quota.objects.create(user=org.rep, period_start=Q4.start, period_end=Q4.end, amount=D("10000"))
    Quota.objects.create(user=org.teammate, period_start=Q4.start, period_end=Q4.end, amount=D("2000"))
    submit(org.rep, "7000")
    (east,) = selectors.forecast_rollup(user=org.manager, period=Q4, category="commit").teams
    rows = {member.user_id: member for member in east.members}
    assert rows[org.rep.pk].gap == D("3000.00")
    assert rows[org.manager.pk].quota is None and rows[org.manager.pk].gap is None
    assert east.quota == D("12000") and east.gap == D("12000") - east.value
    Quota.objects.create(team=org.team, period_start=Q4.start, period_end=Q4.end, amount=D("15000"))
    (east,) = selectors.forecast_rollup(user=org.manager, period=Q4, category="commit").teams
    assert east.quota == D("15000")


# --- The weekly lock and trend -------------------------------------------------------------------------------------


def test_the_lock_is_a_local_time_in_the_time_zone(settings):
    settings.TIME_ZONE = "America/New_York"
    settings.FORECAST_LOCK_WEEKDAY = 0
    settings.FORECAST_LOCK_TIME = "09:00"
    # Monday 2026-10-05 09:00 EDT is 13:00 UTC; after the end of summer time (2026-11-01) 09:00 EST is 14:00 UTC.
    assert selectors.week_lock(at("2026-10-05 12:59")) == at("2026-10-05 13:00")
    assert selectors.week_lock(at("2026-10-05 13:00")) == at("2026-10-12 13:00")
    assert selectors.week_lock(at("2026-10-30 12:00")) == at("2026-11-02 14:00")
    locks = selectors.lock_instants(Q4)
    assert locks[0] == at("2026-10-05 13:00") and at("2026-11-02 14:00") in locks
    assert all(lock.astimezone(selectors.ZoneInfo("America/New_York")).hour == 9 for lock in locks)
    assert len(locks) == 13 and locks[-1] == at("2026-12-28 14:00")
    # The quarter starts and ends at local midnight: 04:00 UTC on 1 October, 05:00 UTC on 1 January.
    assert selectors.period_instants(Q4) == (at("2026-10-01 04:00"), at("2027-01-01 05:00"))
    assert not selectors.period_is_locked(Q4, now=at("2027-01-01 04:59"))
    assert selectors.period_is_locked(Q4, now=at("2027-01-01 05:00"))


def test_a_submission_just_before_the_lock_counts_for_that_week_and_one_at_it_for_the_next(settings, org):
    settings.TIME_ZONE = "Europe/Berlin"
    settings.FORECAST_LOCK_WEEKDAY = 2  # Wednesday
    settings.FORECAST_LOCK_TIME = "16:30"
    # Wednesday 2026-10-14 16:30 CEST is 14:30 UTC.
    submit(org.rep, "100", when=at("2026-10-14 14:29"))
    submit(org.rep, "200", when=at("2026-10-14 14:30"))
    weeks = {week.lock: week for week in selectors.forecast_trend(user=org.rep, period=Q4, now=at("2026-10-30 12:00"))}
    # Summer time ends on 25 October: from then on 16:30 in Berlin is 15:30 UTC.
    expected = ["2026-10-07 14:30", "2026-10-14 14:30", "2026-10-21 14:30", "2026-10-28 15:30", "2026-11-04 15:30"]
    assert list(weeks) == [at(text) for text in expected]
    assert weeks[at("2026-10-07 14:30")].submitted == D("0")
    assert weeks[at("2026-10-14 14:30")].submitted == D("100.00")
    assert weeks[at("2026-10-21 14:30")].submitted == D("200.00")


def test_the_trend_carries_a_value_forward_across_weeks_and_adds_adjustments(org, q4_deals):
    submit(org.rep, "5000", when=at("2026-10-06 10:00"))  # before the lock of Monday 12 October 09:00 UTC
    adjust(org.manager, org.rep, "4500", when=at("2026-10-20 10:00"))
    submit(org.rep, "5500", when=at("2026-11-03 10:00"))
    weeks = selectors.forecast_trend(user=org.rep, period=Q4, now=at("2026-11-25 12:00"))
    by_lock = {week.lock: week for week in weeks}
    assert weeks[0].lock == at("2026-10-05 09:00") and weeks[-1].lock == at("2026-11-30 09:00")
    assert [week.lock for week in weeks] == [at("2026-10-05 09:00") + timedelta(weeks=n) for n in range(9)]
    won_then = computed(q4_deals, org.rep, "won")
    # Before any submission: the computed commit as the history held it (the won deal closed on 11 October).
    assert by_lock[at("2026-10-05 09:00")].submitted == D("2000")
    assert by_lock[at("2026-10-05 09:00")].computed_commit == D("2000") and by_lock[at("2026-10-05 09:00")].won == 0
    for lock in (at("2026-10-12 09:00"), at("2026-10-19 09:00")):  # carried forward
        assert by_lock[lock].submitted == by_lock[lock].adjusted == D("5000.00")
    assert by_lock[at("2026-10-26 09:00")].adjusted == D("4500.00")
    assert by_lock[at("2026-10-26 09:00")].submitted == D("5000.00")
    for lock in (at("2026-11-09 09:00"), at("2026-11-30 09:00")):
        assert by_lock[lock].submitted == D("5500.00") and by_lock[lock].adjusted == D("4500.00")
        assert by_lock[lock].won == won_then
        assert by_lock[lock].computed_commit == computed(q4_deals, org.rep, "commit")
        assert by_lock[lock].computed_best_case == computed(q4_deals, org.rep, "best_case")


def test_the_trend_sums_the_members_a_manager_sees(org, q4_deals):
    submit(org.rep, "5000", when=at("2026-10-06 10:00"))
    weeks = selectors.forecast_trend(user=org.manager, period=Q4, now=at("2026-11-25 12:00"))
    last = weeks[-1]
    east = (org.manager, org.rep, org.teammate)
    assert last.computed_commit == sum(computed(q4_deals, user, "commit") for user in east)
    assert last.submitted == D("5000") + sum(computed(q4_deals, user, "commit") for user in east[::2])
    # Another team's members are none of the manager's: their trend is empty of numbers.
    other = selectors.forecast_trend(user=org.manager, period=Q4, team=org.other_team, now=IN_Q4)
    assert other and all(week.submitted == week.computed_commit == week.won == 0 for week in other)


def _trend_now(user, **kwargs):
    return selectors.forecast_trend(user=user, period=Q4, now=at("2026-11-25 12:00"), **kwargs)


def _trend_from_scratch(user):
    """The trend with no kept point: every past week walked from the history again."""
    with transaction.atomic():
        CallTrendPoint.objects.all().delete()
        return _trend_now(user)


def test_the_trend_keeps_past_weeks_and_answers_the_same_from_them(org, q4_deals):
    first = _trend_now(org.admin)
    kept = CallTrendPoint.objects.filter(period_start=Q4.start)
    # Eight past locks (5 October … 23 November) each marked once, with the owners the history had numbers for.
    assert kept.filter(owner_id__isnull=True).count() == 8
    assert kept.filter(owner_id=org.rep.pk).count() == 8
    assert _trend_now(org.admin) == first == _trend_from_scratch(org.admin)
    # A manager reads the same points, for their members only.
    assert _trend_now(org.manager) == _trend_from_scratch(org.manager)


@pytest.mark.parametrize("change", ["dated move", "reopen", "delete", "rebuild", "raw update"])
def test_a_write_reaching_into_the_past_forgets_the_points_from_then_on(org, q4_deals, pipeline, change):
    from django.db import connection

    from pipeline import field_history
    from pipeline.models import Deal
    from tests.factories import stage

    before = _trend_now(org.admin)
    won = Deal.objects.get(owner=org.rep, status="won")  # won on 11 October
    commit = Deal.objects.get(owner=org.teammate, forecast_category="commit")
    if change == "dated move":  # the teammate's commit, won on 14 October after all
        pipeline_services.move_deal(
            deal=commit, stage=stage(pipeline, "Won"), actor=org.manager, at=at("2026-10-14 10:00")
        )
        since = at("2026-10-14 10:00")
    elif change == "reopen":  # the rep's won deal, back in Negotiation
        pipeline_services.move_deal(
            deal=won, stage=stage(pipeline, "Negotiation"), actor=org.rep, at=at("2026-11-20 10:00")
        )
        since = at("2026-10-11 00:00")
    elif change == "delete":
        won.delete()
        since = at("2026-10-11 00:00")
    elif change == "rebuild":
        with transaction.atomic(), connection.cursor() as cursor:
            field_history.rebuild(cursor, [commit.pk])
        since = at("2026-10-01 00:00")
    else:  # today's edit changes nothing the past weeks hold
        Deal.objects.filter(pk=commit.pk).update(amount=D("1"))
        since = None
    kept = set(CallTrendPoint.objects.filter(owner_id__isnull=True).values_list("lock", flat=True))
    assert kept == {week.lock for week in before[:8] if since is None or week.lock < since}
    after = _trend_now(org.admin)
    assert after == _trend_from_scratch(org.admin)
    assert (after != before) == (change in ("dated move", "reopen", "delete"))


def test_the_past_weeks_come_from_the_cache_until_a_submission_an_adjustment_or_a_member_changes_them(org, q4_deals):
    from unittest import mock

    from accounts.models import User

    first, mine = _trend_now(org.manager), _trend_now(org.rep)
    with mock.patch.object(selectors, "_trend_weeks", wraps=selectors._trend_weeks) as computing:
        assert _trend_now(org.manager) == first
    # Eight past weeks from the cache: only the week still open was computed.
    assert computing.call_args.kwargs["first"] == len(first) == 9

    # A submission made (dated) before the second lock, after the first read: weeks 2 on take it.
    submit(org.rep, "7777", when=at("2026-10-06 10:00"))
    after = _trend_now(org.manager)
    assert [week.submitted for week in _trend_now(org.rep)][1:3] == [D("7777.00")] * 2
    for i in (1, 2):
        assert after[i].submitted - first[i].submitted == D("7777") - mine[i].submitted
    assert after[0] == first[0]

    # An adjustment before the third lock: from week 3 on, the rep's adjusted value is it, raised to what they had
    # won by then (their won deal closed on 11 October).
    adjust(org.manager, org.rep, "100", when=at("2026-10-13 10:00"))
    adjusted = _trend_now(org.manager)
    won_then = computed(q4_deals, org.rep, "won")
    assert adjusted[2].adjusted - after[2].adjusted == max(D("100"), won_then) - D("7777")
    assert adjusted[1] == after[1]

    # Another team's rep moved into the East team: their won deal (11 October) counts from the second lock on.
    User.objects.filter(pk=org.other_rep.pk).update(team=org.team)
    moved = _trend_now(org.manager)
    assert moved[0].won == adjusted[0].won and moved[1].won - adjusted[1].won == q4_deals[org.other_rep][0]
    # And every answer is the one computed without the cache.
    selectors._past_trend_cache.clear()
    assert _trend_now(org.manager) == moved


def test_a_recompute_queues_the_warm_up_that_keeps_the_forgotten_points_before_anyone_reads(org, q4_deals, pipeline):
    from unittest import mock

    from forecasting import tasks
    from tests.factories import stage
    from tests.queries import capture_queries

    _trend_now(org.admin)
    commit = pipeline_services.move_deal(
        deal=selectors_deal(org.teammate), stage=stage(pipeline, "Won"), actor=org.manager, at=at("2026-10-14 10:00")
    )
    assert commit.status == "won"
    marks = CallTrendPoint.objects.filter(owner_id__isnull=True)
    assert marks.count() == 2  # 5 and 12 October: the move on the 14th made the database forget the rest
    services.clear_pending_trend_warm()
    with mock.patch("forecasting.tasks.warm_forecast_trend_task.apply_async") as queued:
        assert tasks.recompute_metrics_task() is not None
        assert tasks.refresh_metrics_task() is not None
    assert queued.call_count == 1  # once while pending: the refresh found it queued
    with mock.patch.object(services, "warm_forecast_trend", return_value={}) as warmed:
        tasks.warm_forecast_trend_task()
    warmed.assert_called_once_with()
    # What the task does, on 25 November: Q4's eight past locks kept again (November's four too).
    assert services.warm_forecast_trend(now=at("2026-11-25 12:00")) == {"2026-Q4": 8, "2026-11": 4}
    assert marks.filter(period_start=Q4.start).count() == 8
    with capture_queries() as reading:
        warm = _trend_now(org.admin)
    assert not any(sql.startswith("INSERT") for sql in reading.sql)
    assert warm == _trend_from_scratch(org.admin)


def selectors_deal(owner):
    from pipeline.models import Deal

    return Deal.objects.get(owner=owner, forecast_category="commit")


def test_the_open_week_reads_the_recompute_as_the_history_would_say_it(org, q4_deals):
    """The week still open takes the latest recompute's forecast rows (made on 25 November, inside that week): the
    same numbers the history gives at that instant, which the trend walks when there is no such recompute."""
    from forecasting.models import MetricsRun

    from_the_run = _trend_now(org.admin)
    assert from_the_run[-1].computed_commit == sum(computed(q4_deals, user, "commit") for user in q4_deals)
    MetricsRun.objects.all().delete()
    assert _trend_now(org.admin) == from_the_run


# --- Commit reliability ----------------------------------------------------------------------------------------------


def test_commit_reliability_reads_the_commit_in_effect_at_the_midpoint(org, pipeline):
    q3 = Period.parse("2026-Q3")
    deal_with_history(
        owner=org.rep, pipeline=pipeline, amount=D("800"), path=[("Prospecting", "2026-07-01"), ("Won", "2026-08-20")]
    )
    recompute_metrics(as_of=at("2026-10-02 12:00"))
    # Q3's midpoint: 2026-08-16 00:00 UTC (92 days from 1 July).
    services.submit_forecast(user=org.rep, period=q3, category="commit", amount="1000", now=at("2026-07-10 10:00"))
    services.submit_forecast(user=org.rep, period=q3, category="commit", amount="600", now=at("2026-08-15 23:00"))
    services.submit_forecast(user=org.rep, period=q3, category="commit", amount="5", now=at("2026-08-16 01:00"))
    services.submit_forecast(user=org.rep, period=q3, category="best_case", amount="9000", now=at("2026-07-10 10:00"))
    (row,) = selectors.commit_reliability(user=org.manager, periods=2, now=at("2026-10-02 12:00"))
    assert row.user_id == org.rep.pk
    q2, q3_row = row.periods
    assert q2.period == Period.parse("2026-Q2") and q2.commit is None and q2.ape is None
    assert q3_row.commit == D("600.00") and q3_row.won == D("800.00")
    assert q3_row.ape == D("0.2500") and q3_row.bias == D("-0.2500")
    assert row.ape == D("0.2500") and row.bias == D("-0.2500")
    assert selectors.commit_reliability(user=org.other_manager, now=at("2026-10-02 12:00")) == []


# --- Webhook events --------------------------------------------------------------------------------------------------


def test_submissions_and_adjustments_are_webhook_events_for_those_who_see_them(
    settings, org, django_capture_on_commit_callbacks
):
    from pipeline.webhooks.models import WebhookDelivery, WebhookEvent
    from pipeline.webhooks.services import create_subscription

    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    types = ["forecast.submitted", "forecast.adjusted"]
    mine = create_subscription(owner=org.manager, url="http://127.0.0.1:9/in", events=types)
    theirs = create_subscription(owner=org.other_manager, url="http://127.0.0.1:9/in", events=types)
    with django_capture_on_commit_callbacks(execute=True):
        submission = submit(org.rep, "5000")
    with django_capture_on_commit_callbacks(execute=True):
        adjust(org.manager, org.rep, "4000")
    submitted = WebhookEvent.objects.get(type="forecast.submitted")
    assert submitted.data["id"] == submission.pk and submitted.data["amount"] == "5000.00"
    assert submitted.data["period"] == "2026-Q4" and submitted.record_owners == [org.rep.pk]
    adjusted = WebhookEvent.objects.get(type="forecast.adjusted")
    assert adjusted.data["note"] == "Too rosy" and adjusted.data["user"] == org.rep.pk
    assert WebhookDelivery.objects.filter(subscription=mine).count() == 2
    assert not WebhookDelivery.objects.filter(subscription=theirs).exists()
