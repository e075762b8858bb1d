"""Admins configure pipelines and stages in the Django admin; a bad configuration is a form error, not a 500."""

import pytest
from django.urls import reverse

from pipeline.models import Pipeline
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(make_user(role="admin", username="root", is_staff=True, is_superuser=True))
    return client


def stage_rows(*stages):
    data = {
        "stages-TOTAL_FORMS": str(len(stages)),
        "stages-INITIAL_FORMS": "0",
        "stages-MIN_NUM_FORMS": "0",
        "stages-MAX_NUM_FORMS": "1000",
    }
    for index, (name, kind, probability) in enumerate(stages):
        data |= {
            f"stages-{index}-order": str(index + 1),
            f"stages-{index}-name": name,
            f"stages-{index}-kind": kind,
            f"stages-{index}-probability": str(probability),
            f"stages-{index}-rotting_days": "30",
            f"stages-{index}-forecast_category": "pipeline",
        }
    return data


def test_an_admin_creates_a_pipeline_with_its_stages(admin_client):
    data = {"name": "Partners", "created_at_0": "2026-01-01", "created_at_1": "00:00:00"} | stage_rows(
        ("Intro", "open", 20), ("Won", "won", 100), ("Lost", "lost", 0)
    )

    response = admin_client.post(reverse("admin:pipeline_pipeline_add"), data)

    assert response.status_code == 302, response.context["errors"] if response.context else response
    assert list(Pipeline.objects.get(name="Partners").stages.values_list("name", flat=True)) == ["Intro", "Won", "Lost"]


def test_a_pipeline_without_a_lost_stage_is_a_form_error(admin_client):
    data = {"name": "Partners", "created_at_0": "2026-01-01", "created_at_1": "00:00:00"} | stage_rows(
        ("Intro", "open", 20), ("Won", "won", 100)
    )

    response = admin_client.post(reverse("admin:pipeline_pipeline_add"), data)

    assert response.status_code == 200
    assert "exactly one lost stage (found 0)" in response.content.decode()
    assert not Pipeline.objects.filter(name="Partners").exists()


def test_deals_are_read_only_in_the_admin(admin_client, pipeline):
    response = admin_client.get(reverse("admin:pipeline_deal_add"))

    assert response.status_code == 403
