"""A configuration change that changes numbers queues their recompute, and no run ever mixes two configurations
(forecasting.configuration): a refresh of a run computed with another configuration gives way to a full recompute,
and a recompute or refresh during which the configuration changed is thrown away."""

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from accounts import services as accounts_services
from forecasting import configuration, recompute, services
from forecasting.models import MetricsRun, PendingChange, Quota
from forecasting.selectors import latest_run
from forecasting.services import recompute_metrics, refresh_metrics
from forecasting.tasks import recompute_metrics_task, refresh_metrics_task
from pipeline import services as pipeline_services
from pipeline import signals
from tests.factories import make_pipeline, make_team, stage
from tests.forecasting.helpers import deal_with_history, one
from tests.forecasting.test_metrics_properties import AS_OF, LOOKBACK_DAYS, K, _computed, _same, reference

pytestmark = pytest.mark.django_db

QUARTER_MONTHS = ["2027-04-01", "2027-05-01", "2027-06-01"]


@pytest.fixture(autouse=True)
def the_reference_settings():
    with override_settings(TIME_ZONE="UTC", METRICS_PRIOR_STRENGTH=K, METRICS_LOOKBACK_DAYS=LOOKBACK_DAYS):
        yield


def _open_deals_across_a_quarter(org, pipeline) -> list:
    """Open deals expected to close in each month of 2027-Q2, in stages of different probabilities."""
    deals = []
    for index, (month, stage_name) in enumerate(
        zip(QUARTER_MONTHS * 2, ["Qualification", "Discovery"] * 3, strict=True)
    ):
        deals.append(
            deal_with_history(
                owner=[org.rep, org.other_rep][index % 2],
                pipeline=pipeline,
                path=[("Prospecting", "2027-01-04 10:00"), (stage_name, f"2027-01-{10 + index} 10:00")],
                amount=Decimal(1000 * (index + 1)),
                expected_close_date=month[:8] + "15",
            )
        )
    return deals


def _weighted(period_start: str, period_kind: str) -> Decimal:
    values = one("forecast", period_kind=period_kind, period_start=period_start, group_kind="company")
    return Decimal(values["weighted_configured"])


def _assert_the_quarter_is_the_sum_of_its_months() -> None:
    months = sum(_weighted(month, "month") for month in QUARTER_MONTHS)
    assert _weighted("2027-04-01", "quarter") == months


def _assert_equal_to_the_reference() -> None:
    expected, actual = reference(ZoneInfo("UTC")), _computed()
    assert sorted(expected, key=str) == sorted(actual, key=str)
    for key, values in expected.items():
        for name, value in values.items():
            assert _same(name, value, actual[key][name]), (key, name, value, actual[key][name])


def test_a_new_probability_then_a_move_never_mixes_probabilities_and_ends_as_the_reference(org, pipeline, monkeypatch):
    deals = _open_deals_across_a_quarter(org, pipeline)
    run = recompute_metrics(as_of=AS_OF)
    _assert_the_quarter_is_the_sum_of_its_months()

    pipeline_services.update_stage(stage=stage(pipeline, "Discovery"), actor=org.admin, probability=70)
    moved = pipeline_services.move_deal(
        deal=deals[0], stage=stage(pipeline, "Discovery"), actor=org.rep, at=AS_OF - timedelta(hours=1)
    )
    asked = []
    monkeypatch.setattr(services, "request_recompute", lambda: asked.append("recompute"))

    # The refresh would recompute April and Q2 with 70 % but leave May and June at 40 %: it gives way instead.
    assert refresh_metrics_task.run(reason="change") is None
    assert asked == ["recompute"]
    assert PendingChange.objects.filter(deal_id=moved.pk).exists()  # kept for the recompute
    run.refresh_from_db()
    assert run.refreshed_at is None and latest_run() == run
    _assert_the_quarter_is_the_sum_of_its_months()  # still the old configuration throughout

    # The recompute it asked for: every number with the new probability, equal to the plain-Python reference.
    new_run = recompute_metrics(as_of=AS_OF)
    assert latest_run() == new_run != run
    assert services.configuration_is_current()
    _assert_the_quarter_is_the_sum_of_its_months()
    _assert_equal_to_the_reference()
    assert not PendingChange.objects.exists()
    # And the refreshes after it patch the new run again.
    pipeline_services.update_deal(deal=deals[1], actor=org.rep, amount=Decimal("5000"))
    assert refresh_metrics(as_of=AS_OF) == new_run
    _assert_the_quarter_is_the_sum_of_its_months()
    _assert_equal_to_the_reference()


def test_every_change_that_changes_a_number_changes_the_fingerprint_and_nothing_else_does(org, pipeline):
    def now() -> str:
        with connection.cursor() as cursor:
            return configuration.current_fingerprint(cursor)

    discovery = stage(pipeline, "Discovery")
    seen = [now()]
    changes = [
        lambda: pipeline_services.update_stage(stage=discovery, actor=None, probability=55),
        lambda: pipeline_services.update_stage(stage=discovery, actor=None, rotting_days=3),
        lambda: pipeline_services.update_stage(stage=discovery, actor=None, forecast_category="commit"),
        lambda: pipeline_services.update_stage(stage=discovery, actor=None, order=1),
        lambda: pipeline_services.create_stage(actor=None, pipeline=pipeline, name="Demo", order=2, probability=30),
        lambda: make_pipeline(name="Renewals"),
        lambda: accounts_services.change_user_team(user=org.rep, team=org.other_team, actor=None),
        lambda: accounts_services.change_user_team(user=org.rep, team=None, actor=None),
        lambda: Quota.objects.create(user=org.rep, period_start="2027-01-01", period_end="2027-04-01", amount=9),
        lambda: Quota.objects.filter(user=org.rep).update(amount=10),
        lambda: Quota.objects.filter(user=org.rep).update(user=None, team=org.team),
    ]
    for change in changes:
        change()
        seen.append(now())
    assert len(set(seen)) == len(seen)
    for settings_change in ({"METRICS_LOOKBACK_DAYS": 90}, {"METRICS_PRIOR_STRENGTH": 3}, {"TIME_ZONE": "Asia/Tokyo"}):
        with override_settings(**settings_change):
            assert now() not in seen

    unchanged = seen[-1]
    pipeline_services.update_stage(stage=discovery, actor=None, name="Discovery call", required_fields=[])
    pipeline_services.update_pipeline(pipeline=pipeline, actor=None, name="New business", is_default=False)
    accounts_services.update_team(team=org.team, actor=None, name="North", managers=[org.other_manager])
    make_team(name="Empty")
    assert now() == unchanged


def test_stage_writes_that_change_numbers_signal_the_configuration_change(
    org, pipeline, django_capture_on_commit_callbacks
):
    heard = []

    def receiver(sender, **kwargs):
        heard.append(sorted(stage.name for stage in kwargs["stages"]))

    signals.configuration_changed.connect(receiver, dispatch_uid="test-configuration-changed")
    try:
        discovery = stage(pipeline, "Discovery")
        with django_capture_on_commit_callbacks(execute=True):
            pipeline_services.update_stage(stage=discovery, actor=None, name="Discovery call")  # no number
            pipeline_services.update_stage(stage=discovery, actor=None, required_fields=["amount"])  # no number
        assert heard == []
        for fields in ({"probability": 45}, {"rotting_days": 9}, {"forecast_category": "best_case"}, {"order": 1}):
            with django_capture_on_commit_callbacks(execute=True):
                pipeline_services.update_stage(stage=discovery, actor=None, **fields)
        with django_capture_on_commit_callbacks(execute=True):
            pipeline_services.create_stage(actor=None, pipeline=pipeline, name="Demo", probability=30)
        assert heard == [["Discovery call"]] * 4 + [["Demo"]]
    finally:
        signals.configuration_changed.disconnect(dispatch_uid="test-configuration-changed")


def test_a_configuration_signal_queues_a_recompute(org, pipeline, settings, django_capture_on_commit_callbacks):
    from unittest import mock

    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    services.clear_pending_recompute()
    with mock.patch("forecasting.tasks.recompute_metrics_task.apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=True):
            pipeline_services.update_stage(stage=stage(pipeline, "Discovery"), actor=None, rotting_days=2)
        assert apply_async.call_count == 1
    services.clear_pending_recompute()


# --- A change committed while a recompute or a refresh runs (another connection, really committed) ----------------


def _commit_elsewhere(sql: str, params: list) -> None:
    db = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in db.items() if k not in {"cursor_factory", "context"}}) as other:
        other.execute(sql, params)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("connections", [1, 2])
def test_a_recompute_during_which_the_configuration_changed_is_thrown_away(org, pipeline, settings, connections):
    settings.METRICS_CONNECTIONS = connections
    _open_deals_across_a_quarter(org, pipeline)
    before = recompute_metrics(as_of=AS_OF)
    discovery = stage(pipeline, "Discovery")
    real = recompute._run_families
    done = []

    def with_a_new_probability_meanwhile(cursor, families, params):
        if not done:
            done.append(True)
            _commit_elsewhere("UPDATE pipeline_stage SET probability = 75 WHERE id = %s", [discovery.pk])
        return real(cursor, families, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recompute, "_run_families", with_a_new_probability_meanwhile)
        patch.setattr(services, "request_recompute", lambda: done.append("asked"))
        assert recompute_metrics_task.run(reason="schedule") is None
    assert done == [True, "asked"]
    assert latest_run() == before
    assert MetricsRun.objects.count() == 1  # the thrown-away run left no trace
    assert not services.configuration_is_current()

    recompute_metrics(as_of=AS_OF)
    _assert_the_quarter_is_the_sum_of_its_months()
    _assert_equal_to_the_reference()


@pytest.mark.django_db(transaction=True)
def test_a_refresh_during_which_the_configuration_changed_is_rolled_back_with_its_changes_pending(org, pipeline):
    deals = _open_deals_across_a_quarter(org, pipeline)
    run = recompute_metrics(as_of=AS_OF)
    pipeline_services.update_deal(deal=deals[0], actor=org.rep, amount=Decimal("7777"))
    discovery = stage(pipeline, "Discovery")
    real = recompute._tune_session

    def with_a_new_probability_meanwhile(cursor):
        real(cursor)
        _commit_elsewhere("UPDATE pipeline_stage SET probability = 75 WHERE id = %s", [discovery.pk])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recompute, "_tune_session", with_a_new_probability_meanwhile)
        assert refresh_metrics(as_of=AS_OF) is None
    run.refresh_from_db()
    assert run.refreshed_at is None
    assert PendingChange.objects.filter(deal_id=deals[0].pk).exists()
    _assert_the_quarter_is_the_sum_of_its_months()


def test_the_scheduled_refresh_notices_a_change_made_behind_the_services_and_asks_for_a_recompute(
    org, pipeline, monkeypatch
):
    run = recompute_metrics(as_of=AS_OF)
    assert not PendingChange.objects.exists()
    with connection.cursor() as cursor:  # no service, no signal: a raw SQL write
        cursor.execute("UPDATE pipeline_stage SET rotting_days = 1 WHERE id = %s", [stage(pipeline, "Discovery").pk])
    asked = []
    monkeypatch.setattr(services, "request_recompute", lambda: asked.append("recompute"))
    monkeypatch.setattr(services, "request_refresh", lambda: asked.append("refresh"))
    assert refresh_metrics_task.run(reason="schedule") is None
    assert asked == ["recompute"]
    run.refresh_from_db()
    assert run.refreshed_at is None
