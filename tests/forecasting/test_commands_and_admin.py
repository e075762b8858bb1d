"""The recompute_metrics command and the Quota admin."""

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Role
from forecasting.models import MetricsRun
from forecasting.recompute import RECOMPUTE_LOCK_KEY
from tests.factories import make_user
from tests.forecasting.test_services import _other_connection


@pytest.mark.django_db
def test_the_command_recomputes_and_reports_the_run(capsys):
    call_command("recompute_metrics")
    run = MetricsRun.objects.get()
    assert f"Run {run.pk}: {run.row_count} rows" in capsys.readouterr().out


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
