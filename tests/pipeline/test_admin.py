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


def _change_data(pipeline, **changes) -> dict:
    """The admin's change form of `pipeline` as it stands, with `changes` ({stage name: {field: value}})."""
    stages = list(pipeline.stages.order_by("order"))
    data = {
        "name": pipeline.name,
        "created_at_0": f"{pipeline.created_at:%Y-%m-%d}",
        "created_at_1": f"{pipeline.created_at:%H:%M:%S}",
        "stages-TOTAL_FORMS": str(len(stages)),
        "stages-INITIAL_FORMS": str(len(stages)),
        "stages-MIN_NUM_FORMS": "0",
        "stages-MAX_NUM_FORMS": "1000",
    }
    for index, stage in enumerate(stages):
        row = {
            "id": stage.pk, "pipeline": pipeline.pk, "order": stage.order, "name": stage.name, "kind": stage.kind,
            "probability": stage.probability, "rotting_days": stage.rotting_days,
            "forecast_category": stage.forecast_category, "required_fields": stage.required_fields,
        } | changes.get(stage.name, {})  # fmt: skip
        data |= {f"stages-{index}-{name}": str(value) for name, value in row.items() if name != "required_fields"}
        for value in row["required_fields"]:
            data.setdefault(f"stages-{index}-required_fields", []).append(value)
    return data


def test_a_stage_probability_changed_in_the_admin_signals_the_configuration_change(
    admin_client, pipeline, django_capture_on_commit_callbacks
):
    from pipeline import signals

    heard = []
    signals.configuration_changed.connect(
        lambda sender, **kwargs: heard.append([s.name for s in kwargs["stages"]]),
        dispatch_uid="test-admin-config",
        weak=False,
    )
    try:
        url = reverse("admin:pipeline_pipeline_change", args=[pipeline.pk])
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(url, _change_data(pipeline, Discovery={"name": "Discovery call"}))
        assert response.status_code == 302, response.context["errors"] if response.context else response
        assert heard == []  # a name changes no number
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(url, _change_data(pipeline, **{"Discovery call": {"probability": 55}}))
        assert response.status_code == 302, response.context["errors"] if response.context else response
        assert heard == [["Discovery call"]]
        assert pipeline.stages.get(name="Discovery call").probability == 55
    finally:
        signals.configuration_changed.disconnect(dispatch_uid="test-admin-config")
