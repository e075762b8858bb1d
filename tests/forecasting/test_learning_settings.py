"""The learned probabilities' window and prior strength: the environment's defaults, an admin's settings page that
stores them (audited, checked by the database too), the recompute they queue, and the dashboard that says which
window and counts a learned number comes from."""

from decimal import Decimal
from fractions import Fraction

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from accounts.models import AuditEntry
from forecasting import services
from forecasting.models import MetricsSettings
from forecasting.selectors import LearningSettings, learning_settings
from forecasting.services import recompute_metrics, refresh_metrics, update_metrics_settings
from tests.factories import make_deal, stage
from tests.forecasting.helpers import at, deal_with_history, one

pytestmark = pytest.mark.django_db

AS_OF = at("2026-11-25 12:00")
PAGE = "/settings/metrics/"


@pytest.fixture(autouse=True)
def environment_defaults(settings):
    settings.METRICS_LOOKBACK_DAYS = 365
    settings.METRICS_PRIOR_STRENGTH = 10


@pytest.fixture
def old_history(org, pipeline, lost_reason):
    """Two deals won and one lost in June 2025, more than 365 days before AS_OF, and one deal won in October 2026."""
    for day in ("10", "12"):
        deal_with_history(
            owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2025-06-01"), ("Won", f"2025-06-{day}")]
        )
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2025-06-01"), ("Lost", "2025-06-05")],
    )
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-11")])


def _prospecting(pipeline) -> dict:
    return one(
        "learned_probability", group_kind="company", pipeline_id=pipeline.pk, stage_id=stage(pipeline, "Prospecting").pk
    )


def _p(w: int, lost: int, k: int, p0: Fraction) -> Fraction:
    """SPEC §3, as a plain fraction: p = (w + k·p0) / (w + l + k)."""
    return (w + k * p0) / (w + lost + k)


def test_without_an_admin_setting_the_environment_decides(org, pipeline, old_history, settings):
    assert learning_settings() == LearningSettings(365, 10, set_by_admin=False)
    recompute_metrics(as_of=AS_OF)
    values = _prospecting(pipeline)
    assert (values["w"], values["l"], values["lookback_days"], values["k"]) == (1, 0, 365, 10)

    settings.METRICS_LOOKBACK_DAYS = 0
    recompute_metrics(as_of=AS_OF)
    assert (_prospecting(pipeline)["w"], _prospecting(pipeline)["l"]) == (3, 1)


def test_an_admin_sets_the_window_and_strength_audited_and_the_next_recompute_learns_with_them(
    client, org, pipeline, old_history, monkeypatch, django_capture_on_commit_callbacks
):
    run = recompute_metrics(as_of=AS_OF)
    assert float(_prospecting(pipeline)["p"]) == pytest.approx(float(_p(1, 0, 10, Fraction(1, 10))))
    queued = []
    monkeypatch.setattr(services, "request_recompute", lambda: queued.append(True))
    client.force_login(org.admin)

    page = client.get(PAGE)
    assert page.status_code == 200
    assert b"by the environment" in page.content and b'value="365"' in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(PAGE, {"lookback_days": "0", "prior_strength": "2"})

    assert response.status_code == 302
    assert queued == [True]
    assert (MetricsSettings.objects.get().lookback_days, MetricsSettings.objects.get().prior_strength) == (0, 2)
    entry = AuditEntry.objects.get(content_type=ContentType.objects.get_for_model(MetricsSettings))
    assert entry.actor == org.admin
    assert entry.changes == {"lookback_days": [365, 0], "prior_strength": [10, 2]}
    page = client.get(PAGE)
    assert b"here, by an admin" in page.content
    assert b"the next recompute uses the settings in effect" in page.content  # the numbers are still the old ones

    # Effective at the next recompute, not before: a refresh would mix two settings, so it gives way.
    make_deal(owner=org.rep, pipeline=pipeline)
    assert refresh_metrics(as_of=AS_OF) is None
    assert not services.configuration_is_current()
    run.refresh_from_db()
    assert run.refreshed_at is None
    assert _prospecting(pipeline)["lookback_days"] == 365

    recompute_metrics(as_of=AS_OF)
    values = _prospecting(pipeline)
    assert (values["w"], values["l"], values["k"], values["lookback_days"]) == (3, 1, 2, 0)
    assert Fraction(str(values["p"])) == pytest.approx(_p(3, 1, 2, Fraction(1, 10)))
    assert b"the next recompute uses" not in client.get(PAGE).content


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"lookback_days": "-1", "prior_strength": "10"}, "lookback_days"),
        ({"lookback_days": "36501", "prior_strength": "10"}, "lookback_days"),
        ({"lookback_days": "ninety", "prior_strength": "10"}, "lookback_days"),
        ({"lookback_days": "90", "prior_strength": "1001"}, "prior_strength"),
        ({"lookback_days": "90"}, "prior_strength"),
    ],
)
def test_bad_settings_are_refused_on_the_field_and_nothing_is_stored(client, org, data, field):
    client.force_login(org.admin)
    response = client.post(PAGE, data)
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {field}
    assert f'id="id_{field}-error"'.encode() in response.content
    assert not MetricsSettings.objects.exists()


def test_the_service_refuses_bad_values_per_field(org):
    with pytest.raises(ValidationError) as refused:
        update_metrics_settings(actor=org.admin, lookback_days=-5, prior_strength=True)
    assert set(refused.value.message_dict) == {"lookback_days", "prior_strength"}
    assert not MetricsSettings.objects.exists()


def test_saving_the_settings_in_effect_changes_nothing_and_audits_nothing(org):
    update_metrics_settings(actor=org.admin, lookback_days=90, prior_strength=4)
    update_metrics_settings(actor=org.admin, lookback_days=90, prior_strength=4)
    assert AuditEntry.objects.filter(content_type=ContentType.objects.get_for_model(MetricsSettings)).count() == 1


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO forecasting_metricssettings (id, lookback_days, prior_strength, updated_at) "
        "VALUES (2, 1, 1, now())",
        "INSERT INTO forecasting_metricssettings (id, lookback_days, prior_strength, updated_at) "
        "VALUES (1, 36501, 1, now())",
        "INSERT INTO forecasting_metricssettings (id, lookback_days, prior_strength, updated_at) "
        "VALUES (1, 30, 1001, now())",
    ],
)
def test_the_database_holds_one_settings_row_within_bounds(sql):
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.mark.parametrize("role", ["manager", "rep"])
def test_only_admins_see_the_metrics_settings(client, org, role):
    client.force_login(getattr(org, role))
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"lookback_days": "1", "prior_strength": "1"}).status_code == 403
    assert not MetricsSettings.objects.exists()


def test_the_settings_menu_links_to_it_for_admins(client, org):
    client.force_login(org.admin)
    assert reverse("settings:metrics").encode() in client.get(reverse("settings:teams")).content


def test_the_dashboard_shows_the_window_and_the_counts_beside_learned_numbers(client, org, pipeline, old_history):
    recompute_metrics(as_of=AS_OF)
    client.force_login(org.admin)
    page = client.get("/dashboard/", {"period": "2026-10"})
    board = page.context["board"]
    assert board.learning == {"lookback_days": 365, "k": 10}
    content = page.content.decode()
    assert "(last 365 days)" in content
    assert "closed in the last 365 days" in content
    assert '<span class="muted learned-counts" data-metric="learned_counts">1&thinsp;w / 0&thinsp;l</span>' in content

    update_metrics_settings(actor=org.admin, lookback_days=0, prior_strength=10)
    recompute_metrics(as_of=AS_OF)
    content = client.get("/dashboard/", {"period": "2026-10"}).content.decode()
    assert "(all history)" in content and "closed at any time" in content
    assert "3&thinsp;w / 1&thinsp;l" in content  # Prospecting: every closed deal reached it


def test_the_amounts_of_the_learned_forecast_follow_the_new_window(org, pipeline, old_history):
    open_deal = deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("1300.00"),
        expected_close_date="2026-12-15",
        path=[("Prospecting", "2026-11-01")],
    )
    update_metrics_settings(actor=org.admin, lookback_days=0, prior_strength=10)
    recompute_metrics(as_of=AS_OF)
    weighted = one("forecast", group_kind="company", period_kind="month", period_start="2026-12-01")
    # Prospecting learned over all history: 3 won, 1 lost, p0 = 10 %.
    expected = Fraction(str(open_deal.amount)) * _p(3, 1, 10, Fraction(1, 10))
    assert Decimal(weighted["weighted_learned"]) == Decimal(float(expected)).quantize(Decimal("0.01"))
