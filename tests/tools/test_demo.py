"""The demo data of `tools.generators.demo`: consistent with the database's invariants and with its own history."""

import itertools
from collections import defaultdict
from datetime import date, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Role, Team, User
from pipeline.models import (
    Activity,
    Deal,
    ForecastCategory,
    Lead,
    LeadStatus,
    Pipeline,
    StageChange,
    StageKind,
)
from tools.generators.demo import DemoLogin, seed_demo
from tools.generators.vocabulary import DEMO_PASSWORD

# Fixed, so that two runs compared for equality cannot straddle midnight.
NOW = timezone.make_aware(datetime(2026, 1, 15))
DEALS = 200


def check_deferred_constraints() -> None:
    """Fire the checks that would otherwise wait for a commit the test never makes (one won and one lost stage)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.fixture
def seeded(db):
    summary = seed_demo(deals=DEALS, seed=7, now=NOW)
    check_deferred_constraints()
    return summary


def histories() -> dict[int, list[StageChange]]:
    by_deal = defaultdict(list)
    for change in StageChange.objects.select_related("from_stage", "to_stage").order_by("deal", "changed_at", "id"):
        by_deal[change.deal_id].append(change)
    return by_deal


def fingerprint() -> list:
    """Everything seeded, by names and times rather than ids (ids differ from run to run).

    Sorted by repr because the rows hold None beside values, and titles or times may repeat.
    """
    deals = [
        (
            deal.title,
            deal.pipeline.name,
            deal.stage.name,
            deal.owner.username,
            deal.contact.email if deal.contact else None,
            deal.amount,
            deal.expected_close_date,
            deal.source,
            deal.created_at,
            deal.closed_at,
            deal.updated_at,
            deal.lost_reason.name if deal.lost_reason else None,
            [
                (change.to_stage.name, change.changed_at, change.changed_by.username)
                for change in deal.stage_changes.order_by("changed_at", "id")
            ],
            sorted(
                ((a.kind, a.subject, a.owner.username, a.due_at, a.done_at) for a in deal.activities.all()), key=repr
            ),
        )
        for deal in Deal.objects.select_related("pipeline", "stage", "owner", "contact", "lost_reason")
    ]
    leads = [
        (lead.email, lead.status, lead.score, lead.created_at, lead.sql_at, lead.deal.title if lead.deal else None)
        for lead in Lead.objects.select_related("deal")
    ]
    return [sorted(deals, key=repr), sorted(leads, key=repr)]


def test_every_deal_agrees_with_its_stage_history(seeded):
    by_deal = histories()
    deals = list(Deal.objects.select_related("stage"))
    assert len(deals) == DEALS
    for deal in deals:
        history = by_deal[deal.pk]
        assert history[0].from_stage is None
        assert history[0].changed_at == deal.created_at
        for previous, change in itertools.pairwise(history):
            assert change.from_stage == previous.to_stage
            assert change.changed_at >= previous.changed_at
        last = history[-1]
        assert deal.stage == last.to_stage
        assert deal.status == last.to_stage.kind
        assert deal.stage_entered_at == last.changed_at
        assert deal.version == len(history)
        assert deal.updated_at >= deal.stage_entered_at
        assert last.changed_at < NOW
        if deal.status == StageKind.OPEN:
            assert deal.closed_at is None
            assert deal.lost_reason is None
        else:
            assert deal.closed_at == last.changed_at
            assert (deal.lost_reason is not None) == (deal.status == StageKind.LOST)
        # Only the final move may leave the open stages.
        assert all(change.to_stage.kind == StageKind.OPEN for change in history[:-1])


def test_deals_have_the_fields_every_entered_stage_requires(seeded):
    by_deal = histories()
    for deal in Deal.objects.select_related("contact", "stage"):
        required = {name for change in by_deal[deal.pk] for name in change.to_stage.required_fields}
        for name in required:
            assert getattr(deal, name) not in (None, ""), (deal.title, name)
        assert deal.organization_id is not None
        if deal.contact:
            assert deal.contact.organization_id == deal.organization_id
        expected_category = deal.forecast_category_override or deal.stage.forecast_category
        assert deal.forecast_category == expected_category


def test_history_has_skips_moves_back_wins_losses_and_open_deals(seeded):
    last_open_order = {
        pipeline.pk: max(stage.order for stage in pipeline.stages.all() if stage.is_open)
        for pipeline in Pipeline.objects.prefetch_related("stages")
    }
    skipped = moved_back = 0
    for history in histories().values():
        for change in history[1:]:
            # Winning is one step past the last open stage, whatever the won stage's own order.
            target = (
                change.to_stage.order if change.to_stage.is_open else last_open_order[change.to_stage.pipeline_id] + 1
            )
            if target < change.from_stage.order:
                moved_back += 1
            elif change.to_stage.kind != StageKind.LOST and target > change.from_stage.order + 1:
                skipped += 1
    assert skipped > 0
    assert moved_back > 0
    statuses = {status: Deal.objects.filter(status=status).count() for status in StageKind.values}
    assert all(statuses.values()), statuses
    # A realistic pipeline: a fair share still open, and more deals lost than won.
    assert 0.15 < statuses[StageKind.OPEN] / DEALS < 0.45
    assert statuses[StageKind.WON] < statuses[StageKind.LOST]
    assert Deal.objects.filter(forecast_category_override=ForecastCategory.COMMIT).exists()


def test_leads_reach_every_status_with_the_times_of_each(seeded):
    leads = list(Lead.objects.select_related("deal"))
    assert {lead.status for lead in leads} == set(LeadStatus.values)
    path = ["created_at", "contacted_at", "mql_at", "sql_at", "converted_at"]
    for lead in leads:
        stamps = [getattr(lead, name) for name in path]
        reached = [stamp for stamp in stamps if stamp is not None]
        # Stamped in order, and without gaps: a skipped status counts as passed through.
        assert stamps[: len(reached)] == reached
        assert reached == sorted(reached)
        assert (lead.disqualified_at is not None) == (lead.status == LeadStatus.DISQUALIFIED)
        if lead.status == LeadStatus.CONVERTED:
            assert lead.deal is not None
            assert lead.converted_at == lead.deal.created_at
            assert lead.source == lead.deal.source
        else:
            assert lead.deal is None
        if lead.status in (LeadStatus.CONTACTED, LeadStatus.MQL, LeadStatus.SQL):
            assert getattr(lead, f"{lead.status}_at") is not None


def test_deals_have_done_activities_and_open_deals_planned_ones(seeded):
    for deal in Deal.objects.prefetch_related("activities"):
        done = [activity for activity in deal.activities.all() if activity.done_at]
        assert done, deal.title
        assert all(deal.created_at <= activity.done_at <= NOW for activity in done)
    planned = Activity.objects.filter(deal__status=StageKind.OPEN, done_at__isnull=True)
    assert planned.filter(due_at__gt=NOW).exists()
    assert planned.filter(due_at__lt=NOW).exists()  # overdue
    assert Activity.objects.filter(lead__isnull=False).exists()


def test_users_are_three_teams_of_a_manager_and_three_reps_plus_an_admin(seeded):
    assert User.objects.count() == 13
    assert all(user.check_password(DEMO_PASSWORD) for user in User.objects.all())
    admin = User.objects.get(username="admin")
    assert admin.role == Role.ADMIN and admin.is_superuser and admin.is_staff
    for team in Team.objects.all():
        (manager,) = team.managers.all()
        assert manager.role == Role.MANAGER and manager.team == team and manager.is_staff
        assert team.members.filter(role=Role.REP).count() == 3
    assert Pipeline.objects.get(is_default=True).name == "New Business"
    assert len(seeded.logins) == 13
    assert seeded.logins[0] == DemoLogin(username="admin", role="Admin", team="", password=DEMO_PASSWORD)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(db):
    fingerprints = []
    for seed in (3, 3, 4):
        with transaction.atomic():
            seed_demo(deals=60, seed=seed, now=NOW)
            fingerprints.append(fingerprint())
            transaction.set_rollback(True)
    assert fingerprints[0] == fingerprints[1]
    assert fingerprints[0] != fingerprints[2]


def test_seeding_again_reuses_users_and_pipelines_and_adds_deals(db):
    seed_demo(deals=20, seed=1, now=NOW)
    second = seed_demo(deals=20, seed=2, now=NOW)
    check_deferred_constraints()
    assert second.users == 0
    assert User.objects.count() == 13
    assert Pipeline.objects.count() == 2
    assert Deal.objects.count() == 40


def test_command_prints_the_logins_and_with_if_empty_leaves_existing_deals_alone(db):
    out = StringIO()
    call_command("seed_demo", "--deals", "30", "--seed", "5", stdout=out)
    assert "30 deals" in out.getvalue()
    assert f"marcus    Sales rep      East        {DEMO_PASSWORD}" in out.getvalue()

    out = StringIO()
    call_command("seed_demo", "--deals", "30", "--if-empty", stdout=out)
    assert "not seeding" in out.getvalue()
    assert Deal.objects.count() == 30


def test_every_rep_and_team_has_quarterly_quotas_around_the_current_quarter(seeded):
    from forecasting.models import Quota

    this_quarter = date(NOW.year, 3 * ((NOW.month - 1) // 3) + 1, 1)
    current = Quota.objects.filter(period_start=this_quarter)
    reps = User.objects.filter(role="rep")

    assert set(current.filter(user__isnull=False).values_list("user_id", flat=True)) == set(
        reps.values_list("pk", flat=True)
    )
    assert current.filter(team__isnull=False).count() == 3
    for team_quota in current.filter(team__isnull=False):
        members = current.filter(user__team=team_quota.team)
        assert team_quota.amount == sum(quota.amount for quota in members)
    assert Quota.objects.values("period_start").distinct().count() == 6
