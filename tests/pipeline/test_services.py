import itertools
import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from config.exceptions import StaleVersion
from pipeline import selectors, services, signals
from pipeline.models import Deal, Lead, LeadStatus, Organization, StageChange
from pipeline.selectors import deal_history
from tests.factories import make_deal, make_lost_reason, make_qualified_deal, make_user, stage

pytestmark = pytest.mark.django_db


@pytest.fixture
def rep(db):
    return make_user(username="rep")


def error_fields(excinfo) -> set[str]:
    return set(excinfo.value.message_dict)


# --- create_deal ----------------------------------------------------------------------------------------------------


def test_create_deal_starts_in_the_first_open_stage_of_the_default_pipeline(rep, pipeline):
    deal = services.create_deal(actor=rep, title="Acme rollout")

    assert deal.pipeline == pipeline
    assert deal.stage == stage(pipeline, "Prospecting")
    assert deal.status == "open"
    assert deal.owner == rep
    assert deal.version == 1
    assert deal.currency == "USD"
    [change] = deal_history(deal=deal)
    assert (change.from_stage, change.to_stage, change.changed_by) == (None, deal.stage, rep)
    assert change.changed_at == deal.created_at == deal.stage_entered_at


def test_create_deal_refuses_a_stage_of_another_pipeline(rep, pipeline, other_pipeline):
    with pytest.raises(ValidationError) as excinfo:
        services.create_deal(actor=rep, title="x", pipeline=pipeline, stage=stage(other_pipeline, "Qualification"))

    assert error_fields(excinfo) == {"stage"}
    assert not Deal.objects.exists()


def test_create_deal_refuses_a_first_stage_whose_required_fields_are_missing(rep, pipeline):
    with pytest.raises(ValidationError) as excinfo:
        services.create_deal(actor=rep, title="x", stage=stage(pipeline, "Proposal"), amount=Decimal("10"))

    assert error_fields(excinfo) == {"expected_close_date", "contact"}
    assert "Proposal" in excinfo.value.message_dict["contact"][0]


def test_create_deal_refuses_a_negative_amount_with_a_field_error(rep, pipeline):
    with pytest.raises(ValidationError) as excinfo:
        services.create_deal(actor=rep, title="x", amount=Decimal("-1"))

    assert error_fields(excinfo) == {"amount"}


def test_create_deal_refuses_a_duplicate_external_id(rep, pipeline):
    services.create_deal(actor=rep, title="x", external_id="crm-1")

    with pytest.raises(ValidationError) as excinfo:
        services.create_deal(actor=rep, title="y", external_id="crm-1")

    assert error_fields(excinfo) == {"external_id"}


def test_create_deal_refuses_unknown_fields(rep, pipeline):
    with pytest.raises(ValidationError) as excinfo:
        services.create_deal(actor=rep, title="x", status="won")

    assert error_fields(excinfo) == {"status"}


def test_create_deal_directly_lost_needs_a_reason_and_is_closed(rep, pipeline, lost_reason):
    with pytest.raises(ValidationError):
        services.create_deal(actor=rep, title="x", stage=stage(pipeline, "Lost"))

    at = timezone.now() - timedelta(days=3)
    deal = services.create_deal(
        actor=rep, title="x", stage=stage(pipeline, "Lost"), lost_reason=lost_reason, created_at=at
    )
    assert (deal.status, deal.closed_at, deal.lost_reason) == ("lost", at, lost_reason)


# --- move_deal ------------------------------------------------------------------------------------------------------


def test_move_deal_forward_records_history_and_stamps_times(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)
    before = timezone.now()

    moved = services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=rep)

    assert moved.stage.name == "Qualification"
    assert moved.version == 2
    assert moved.stage_entered_at >= before
    assert moved.closed_at is None
    last = deal_history(deal=deal).last()
    assert (last.from_stage.name, last.to_stage.name, last.changed_by) == ("Prospecting", "Qualification", rep)
    assert last.changed_at == moved.stage_entered_at


def test_move_deal_refuses_each_missing_required_field_by_name_and_writes_nothing(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(ValidationError) as excinfo:
        services.move_deal(deal=deal, stage=stage(pipeline, "Proposal"), actor=rep)

    assert error_fields(excinfo) == {"amount", "expected_close_date", "contact"}
    assert "Amount is required to enter the stage “Proposal”." in excinfo.value.messages
    deal.refresh_from_db()
    assert (deal.stage.name, deal.version) == ("Prospecting", 1)
    assert StageChange.objects.filter(deal=deal).count() == 1


def test_move_deal_fills_the_required_fields_it_is_given_in_the_same_step(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)
    contact = services.create_contact(actor=rep, last_name="Doe")

    moved = services.move_deal(
        deal=deal,
        stage=stage(pipeline, "Proposal"),
        actor=rep,
        fields={"amount": Decimal("5000"), "expected_close_date": "2026-12-01", "contact": contact},
    )

    moved.refresh_from_db()
    assert (moved.stage.name, moved.amount, moved.contact) == ("Proposal", Decimal("5000.00"), contact)
    assert moved.forecast_category == "best_case"


def test_move_deal_refuses_losing_without_a_reason(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(ValidationError) as excinfo:
        services.move_deal(deal=deal, stage=stage(pipeline, "Lost"), actor=rep)

    assert error_fields(excinfo) == {"lost_reason"}
    deal.refresh_from_db()
    assert deal.status == "open"


def test_move_deal_refuses_a_retired_lost_reason(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(ValidationError) as excinfo:
        services.move_deal(
            deal=deal, stage=stage(pipeline, "Lost"), actor=rep, lost_reason=make_lost_reason(is_active=False)
        )

    assert error_fields(excinfo) == {"lost_reason"}


def test_losing_a_deal_closes_it_with_its_reason(rep, pipeline, lost_reason):
    deal = make_deal(owner=rep, pipeline=pipeline)

    lost = services.move_deal(deal=deal, stage=stage(pipeline, "Lost"), actor=rep, lost_reason=lost_reason)

    assert (lost.status, lost.lost_reason) == ("lost", lost_reason)
    assert lost.closed_at == lost.stage_entered_at


def test_winning_then_reopening_a_deal_clears_closed_at(rep, pipeline):
    deal = make_qualified_deal(owner=rep, pipeline=pipeline)
    won = services.move_deal(deal=deal, stage=stage(pipeline, "Won"), actor=rep)
    assert (won.status, won.closed_at is not None) == ("won", True)

    reopened = services.move_deal(deal=won, stage=stage(pipeline, "Negotiation"), actor=rep)

    assert (reopened.status, reopened.closed_at, reopened.lost_reason) == ("open", None, None)
    assert [c.to_stage.name for c in deal_history(deal=deal)] == ["Prospecting", "Won", "Negotiation"]


def test_a_won_deal_moved_to_lost_closes_again_at_the_new_time(rep, pipeline, lost_reason):
    deal = make_qualified_deal(owner=rep, pipeline=pipeline)
    won = services.move_deal(deal=deal, stage=stage(pipeline, "Won"), actor=rep, at=timezone.now())
    later = won.closed_at + timedelta(days=2)

    lost = services.move_deal(deal=won, stage=stage(pipeline, "Lost"), actor=rep, lost_reason=lost_reason, at=later)

    assert (lost.status, lost.closed_at) == ("lost", later)


def test_reopening_a_lost_deal_clears_its_lost_reason(rep, pipeline, lost_reason):
    deal = make_deal(owner=rep, pipeline=pipeline)
    lost = services.move_deal(deal=deal, stage=stage(pipeline, "Lost"), actor=rep, lost_reason=lost_reason)

    reopened = services.move_deal(deal=lost, stage=stage(pipeline, "Prospecting"), actor=rep)

    assert (reopened.status, reopened.lost_reason, reopened.closed_at) == ("open", None, None)


def test_moving_backwards_is_allowed_and_recorded(rep, pipeline):
    deal = make_qualified_deal(owner=rep, pipeline=pipeline)
    services.move_deal(deal=deal, stage=stage(pipeline, "Negotiation"), actor=rep)

    back = services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=rep)

    assert back.stage.name == "Qualification"
    last = deal_history(deal=deal).last()
    assert (last.from_stage.name, last.to_stage.name) == ("Negotiation", "Qualification")


def test_move_deal_refuses_a_stage_of_another_pipeline(rep, pipeline, other_pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(ValidationError) as excinfo:
        services.move_deal(deal=deal, stage=stage(other_pipeline, "Qualification"), actor=rep)

    assert error_fields(excinfo) == {"stage"}
    assert deal_history(deal=deal).count() == 1


def test_move_deal_refuses_a_deleted_stage(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)
    doomed = stage(pipeline, "Qualification")
    doomed_copy = stage(pipeline, "Qualification")
    doomed.delete()

    with pytest.raises(ValidationError) as excinfo:
        services.move_deal(deal=deal, stage=doomed_copy, actor=rep)

    assert "does not exist" in excinfo.value.message_dict["stage"][0]


def test_move_deal_with_a_stale_version_is_refused_and_writes_nothing(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)
    services.update_deal(deal=deal, actor=rep, title="Renamed")

    with pytest.raises(StaleVersion):
        services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=rep, expected_version=1)

    deal.refresh_from_db()
    assert (deal.stage.name, deal.version) == ("Prospecting", 2)


def test_moving_to_the_current_stage_changes_nothing(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    same = services.move_deal(deal=deal, stage=deal.stage, actor=rep)

    assert same.version == 1
    assert deal_history(deal=deal).count() == 1


def test_a_move_cannot_be_dated_before_the_current_stage_was_entered(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(ValidationError) as excinfo:
        services.move_deal(
            deal=deal, stage=stage(pipeline, "Qualification"), actor=rep, at=deal.created_at - timedelta(days=1)
        )

    assert error_fields(excinfo) == {"at"}


def test_forecast_category_follows_the_stage_unless_overridden(rep, pipeline):
    deal = make_qualified_deal(owner=rep, pipeline=pipeline)
    deal = services.move_deal(deal=deal, stage=stage(pipeline, "Proposal"), actor=rep)
    assert deal.forecast_category == "best_case"

    deal = services.update_deal(deal=deal, actor=rep, forecast_category_override="commit")
    assert deal.forecast_category == "commit"
    deal = services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=rep)
    assert deal.forecast_category == "commit"

    deal = services.update_deal(deal=deal, actor=rep, forecast_category_override=None)
    assert deal.forecast_category == "pipeline"


def test_history_stays_a_consistent_chain_over_random_sequences_of_moves(rep, pipeline, lost_reason):
    stages = list(pipeline.stages.order_by("order"))
    rng = random.Random(7)
    for _ in range(5):
        deal = make_qualified_deal(owner=rep, pipeline=pipeline)
        visited = [deal.stage]
        for _ in range(12):
            target = rng.choice(stages)
            deal = services.move_deal(deal=deal, stage=target, actor=rep, lost_reason=lost_reason)
            if target != visited[-1]:
                visited.append(target)

        history = list(deal_history(deal=deal))
        assert [change.to_stage for change in history] == visited
        assert [change.from_stage for change in history] == [None, *visited[:-1]]
        assert all(a.changed_at <= b.changed_at for a, b in itertools.pairwise(history))
        assert deal.stage == visited[-1]
        assert deal.status == visited[-1].kind
        assert deal.stage_entered_at == history[-1].changed_at
        assert deal.version == len(history)
        assert (deal.closed_at is None) == (deal.status == "open")


# --- update_deal ----------------------------------------------------------------------------------------------------


def test_update_deal_bumps_the_version_only_when_something_changed(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline, amount=Decimal("10"))

    unchanged = services.update_deal(deal=deal, actor=rep, amount=Decimal("10.00"))
    changed = services.update_deal(deal=deal, actor=rep, amount=Decimal("11"))

    assert (unchanged.version, changed.version) == (1, 2)


def test_update_deal_refuses_emptying_a_field_the_current_stage_requires(rep, pipeline):
    deal = make_qualified_deal(owner=rep, pipeline=pipeline)
    services.move_deal(deal=deal, stage=stage(pipeline, "Discovery"), actor=rep)

    with pytest.raises(ValidationError) as excinfo:
        services.update_deal(deal=deal, actor=rep, amount=None)

    assert error_fields(excinfo) == {"amount"}


def test_update_deal_refuses_changing_the_stage_directly(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(ValidationError) as excinfo:
        services.update_deal(deal=deal, actor=rep, stage=stage(pipeline, "Won"))

    assert error_fields(excinfo) == {"stage"}


def test_update_deal_with_a_stale_version_is_refused(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(StaleVersion):
        services.update_deal(deal=deal, actor=rep, expected_version=7, title="x")


# --- events ---------------------------------------------------------------------------------------------------------


def test_signals_are_sent_only_after_commit(rep, pipeline, django_capture_on_commit_callbacks):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs["stage_change"].to_stage.name)

    signals.deal_stage_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            deal = make_deal(owner=rep, pipeline=pipeline)
            services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=rep)
        assert received == []
        for callback in callbacks:
            callback()
        assert received == ["Qualification"]
    finally:
        signals.deal_stage_changed.disconnect(receiver)


def test_a_failing_receiver_does_not_undo_the_write(rep, pipeline, django_capture_on_commit_callbacks):
    def broken(sender, **kwargs):
        raise ConnectionError("broker is down")

    signals.deal_created.connect(broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            deal = make_deal(owner=rep, pipeline=pipeline)
    finally:
        signals.deal_created.disconnect(broken)
    assert Deal.objects.filter(pk=deal.pk).exists()


# --- leads ----------------------------------------------------------------------------------------------------------


def test_advancing_a_lead_stamps_skipped_statuses_as_passed_through(rep):
    lead = services.create_lead(actor=rep, last_name="Doe", company="Acme")

    lead = services.advance_lead(lead=lead, actor=rep, status="sql")

    assert lead.status == "sql"
    assert lead.contacted_at == lead.mql_at == lead.sql_at is not None


def test_moving_a_lead_back_keeps_the_first_time_each_status_was_reached(rep):
    lead = services.create_lead(actor=rep, last_name="Doe")
    lead = services.advance_lead(lead=lead, actor=rep, status="mql")
    first_mql = lead.mql_at

    lead = services.advance_lead(lead=lead, actor=rep, status="contacted")
    lead = services.advance_lead(lead=lead, actor=rep, status="mql", at=timezone.now() + timedelta(days=1))

    assert lead.mql_at == first_mql


def test_disqualifying_and_requalifying_a_lead(rep):
    lead = services.create_lead(actor=rep, last_name="Doe")

    lead = services.advance_lead(lead=lead, actor=rep, status="disqualified", reason="Student")
    assert (lead.status, lead.disqualified_reason, lead.disqualified_at is not None) == (
        "disqualified",
        "Student",
        True,
    )

    lead = services.advance_lead(lead=lead, actor=rep, status="contacted")
    assert lead.status == "contacted"


def test_a_lead_cannot_be_set_to_converted_without_converting_it(rep):
    lead = services.create_lead(actor=rep, last_name="Doe")

    with pytest.raises(ValidationError) as excinfo:
        services.advance_lead(lead=lead, actor=rep, status="converted")

    assert error_fields(excinfo) == {"status"}


def test_converting_a_lead_creates_and_links_organization_contact_and_deal(rep, pipeline):
    lead = services.create_lead(
        actor=rep,
        first_name="Ada",
        last_name="Lovelace",
        email="ada@acme.test",
        company="Acme",
        source="Referral",
        budget=Decimal("50000"),
        need="Forecasting",
    )

    deal = services.convert_lead(lead=lead, actor=rep, amount=Decimal("42000"))

    lead.refresh_from_db()
    assert lead.status == LeadStatus.CONVERTED
    assert lead.deal == deal
    assert lead.converted_at is not None and lead.sql_at is not None
    assert deal.organization.name == "Acme"
    assert (deal.contact.first_name, deal.contact.email, deal.contact.organization) == (
        "Ada",
        "ada@acme.test",
        deal.organization,
    )
    assert (deal.source, deal.budget, deal.need, deal.amount) == ("Referral", Decimal("50000"), "Forecasting", 42000)
    assert (deal.owner, deal.pipeline, deal.stage.name) == (rep, pipeline, "Prospecting")


def test_converting_a_lead_carries_its_activities_over_to_the_deal(rep, pipeline):
    lead = services.create_lead(actor=rep, last_name="Park", company="Initech")
    call = services.log_activity(actor=rep, kind="call", subject="First call", lead=lead)
    planned = services.log_activity(
        actor=rep, kind="meeting", subject="Demo", lead=lead, due_at=timezone.now() + timedelta(days=2)
    )

    deal = services.convert_lead(lead=lead, actor=rep)

    assert set(selectors.deal_activities(deal=deal)) == {call, planned}  # the deal's timeline and next step
    assert set(selectors.lead_activities(lead=lead)) == {call, planned}  # still listed on the lead
    call.refresh_from_db()
    assert (call.deal, call.lead, call.from_lead) == (deal, None, lead)
    assert selectors.converted_lead_of(user=rep, deal=deal) == lead and Lead.objects.get(pk=lead.pk).deal == deal


def test_converting_a_lead_reuses_an_organization_of_the_same_name(rep, pipeline):
    existing = services.create_organization(actor=rep, name="Acme")
    lead = services.create_lead(actor=rep, last_name="Doe", company="acme")

    deal = services.convert_lead(lead=lead, actor=rep)

    assert deal.organization == existing
    assert Organization.objects.count() == 1


def test_converting_a_lead_never_links_an_organization_of_that_name_the_user_may_not_see(rep, pipeline):
    stranger = make_user(username="stranger")
    hidden = services.create_organization(actor=stranger, name="Acme", owner=stranger)
    lead = services.create_lead(actor=rep, last_name="Doe", company="Acme")

    deal = services.convert_lead(lead=lead, actor=rep)

    assert deal.organization != hidden
    assert deal.organization.name == "Acme" and deal.organization.owner == rep
    assert Organization.objects.filter(name="Acme").count() == 2


def test_a_disqualified_or_converted_lead_cannot_be_converted(rep, pipeline):
    lead = services.create_lead(actor=rep, last_name="Doe")
    services.convert_lead(lead=lead, actor=rep)
    with pytest.raises(ValidationError):
        services.convert_lead(lead=lead, actor=rep)

    other = services.create_lead(actor=rep, last_name="Roe", status="disqualified")
    with pytest.raises(ValidationError):
        services.convert_lead(lead=other, actor=rep)
    assert Deal.objects.count() == 1


def test_a_failed_conversion_leaves_nothing_behind(rep, pipeline):
    lead = services.create_lead(actor=rep, last_name="Doe", company="Acme")

    with pytest.raises(ValidationError):
        services.convert_lead(lead=lead, actor=rep, stage=stage(pipeline, "Proposal"))

    lead.refresh_from_db()
    assert lead.status == "new"
    assert not Organization.objects.exists()
    assert not Deal.objects.exists()


# --- activities -----------------------------------------------------------------------------------------------------


def test_logging_an_activity_without_a_due_time_records_it_as_done_now(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    activity = services.log_activity(actor=rep, kind="call", subject="Intro call", deal=deal)

    assert activity.done_at is not None and activity.due_at is None
    assert activity.owner == rep


def test_planning_and_completing_an_activity(rep, pipeline):
    lead = services.create_lead(actor=rep, last_name="Doe")
    due = timezone.now() + timedelta(days=2)
    activity = services.log_activity(actor=rep, kind="meeting", subject="Demo", lead=lead, due_at=due)
    assert activity.done_at is None

    done = services.complete_activity(activity=activity, actor=rep)
    again = services.complete_activity(activity=activity, actor=rep)

    assert done.done_at is not None
    assert again.done_at == done.done_at


@pytest.mark.parametrize("targets", ["none", "both"])
def test_an_activity_belongs_to_exactly_one_deal_or_lead(rep, pipeline, targets):
    deal = make_deal(owner=rep, pipeline=pipeline)
    lead = services.create_lead(actor=rep, last_name="Doe")
    kwargs = {} if targets == "none" else {"deal": deal, "lead": lead}

    with pytest.raises(ValidationError):
        services.log_activity(actor=rep, kind="task", subject="x", **kwargs)


def test_an_unknown_activity_type_is_refused(rep, pipeline):
    deal = make_deal(owner=rep, pipeline=pipeline)

    with pytest.raises(ValidationError) as excinfo:
        services.log_activity(actor=rep, kind="fax", subject="x", deal=deal)

    assert error_fields(excinfo) == {"kind"}
