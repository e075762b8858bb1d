"""The recompute_metrics command and the Quota admin."""

from datetime import date
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEntry, Role
from forecasting.models import MetricsRun, Quota
from forecasting.recompute import RECOMPUTE_LOCK_KEY
from forecasting.services import create_quota
from tests.factories import make_user
from tests.forecasting.test_backtest import history  # noqa: F401 (fixture)
from tests.forecasting.test_services import _other_connection


@pytest.mark.django_db
def test_the_command_recomputes_and_reports_the_run(capsys):
    call_command("recompute_metrics")
    run = MetricsRun.objects.get()
    assert f"Run {run.pk}: {run.row_count} rows" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_command_computes_the_backtest_and_calibration_too_unless_told_not_to(org, pipeline, history):  # noqa: F811
    from forecasting import metrics
    from forecasting.models import MetricSnapshot

    history_metrics = [metric.value for metric in metrics.HISTORY_METRICS]
    call_command("recompute_metrics", "--without-history")
    assert not MetricSnapshot.objects.filter(metric__in=history_metrics).exists()
    call_command("recompute_metrics")
    run = MetricsRun.objects.filter(status="complete").order_by("-id").first()
    assert set(MetricSnapshot.objects.filter(run=run, metric__in=history_metrics).values_list("metric", flat=True)) == (
        set(history_metrics)
    )


@pytest.mark.django_db(transaction=True)
def test_the_command_fails_while_another_recompute_runs():
    with _other_connection() as other:
        other.execute("SELECT pg_advisory_lock(%s)", [RECOMPUTE_LOCK_KEY])
        with pytest.raises(CommandError, match="Another metrics recompute is running"):
            call_command("recompute_metrics")


@pytest.mark.django_db
def test_admins_manage_quotas_in_the_django_admin(client):
    admin = make_user(role=Role.ADMIN, is_staff=True, is_superuser=True)
    client.force_login(admin)
    assert client.get("/admin/forecasting/quota/").status_code == 200
    assert client.get("/admin/forecasting/quota/add/").status_code == 200
    assert client.get("/admin/forecasting/metricsrun/").status_code == 200


@pytest.fixture
def superuser_client(client, db):
    client.force_login(make_user(role=Role.ADMIN, is_staff=True, is_superuser=True, username="root"))
    return client


def _quota_trail(quota_id: int) -> list[str]:
    entries = AuditEntry.objects.filter(content_type__model="quota", object_id=quota_id).order_by("at", "id")
    return [entry.action for entry in entries]


def _quota_form(**fields) -> dict:
    # created_at is sent for an admin that shows it as an input; one that shows it read-only ignores it.
    dates = {
        "period_start": "2027-01-01",
        "period_end": "2027-04-01",
        "created_at_0": "2026-12-01",
        "created_at_1": "0:00",
    }
    return {"user": "", "team": "", **dates, "amount": "30000", **fields}


def test_a_quota_added_edited_and_deleted_in_the_admin_is_audited_and_queues_recomputes(
    superuser_client, org, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.METRICS_RECOMPUTE_ON_CHANGE = True
    queued = []
    monkeypatch.setattr("forecasting.services.request_recompute", lambda: queued.append(True))
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post("/admin/forecasting/quota/add/", _quota_form(team=org.team.pk))
    assert response.status_code == 302
    quota = Quota.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            f"/admin/forecasting/quota/{quota.pk}/change/", _quota_form(team=org.team.pk, amount="45000")
        )
    assert response.status_code == 302
    quota.refresh_from_db()
    assert quota.amount == Decimal("45000")
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(f"/admin/forecasting/quota/{quota.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Quota.objects.exists()
    assert _quota_trail(quota.pk) == ["created", "updated", "deleted"]
    assert len(queued) == 3


def test_quotas_deleted_in_bulk_from_the_admin_list_are_each_audited(superuser_client, org):
    quotas = [
        create_quota(actor=None, team=org.team, period_start=date(2027, 1, 1), period_end=date(2027, 4, 1), amount=1),
        create_quota(actor=None, user=org.rep, period_start=date(2027, 1, 1), period_end=date(2027, 4, 1), amount=2),
    ]
    response = superuser_client.post(
        "/admin/forecasting/quota/",
        {"action": "delete_selected", "_selected_action": [q.pk for q in quotas], "post": "yes"},
    )
    assert response.status_code == 302 and not Quota.objects.exists()
    assert [_quota_trail(q.pk) for q in quotas] == [["created", "deleted"], ["created", "deleted"]]


def test_a_quota_the_rules_refuse_shows_as_a_form_error_in_the_admin(superuser_client, org):
    response = superuser_client.post("/admin/forecasting/quota/add/", _quota_form(team=org.team.pk, user=org.rep.pk))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not Quota.objects.exists() and not AuditEntry.objects.exists()
