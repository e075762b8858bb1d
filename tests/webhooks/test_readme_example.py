"""README's "An integration, start to finish" is a program: this runs that very block against a live server, with a
real token, so the example cannot rot (Idempotency-Key, a cursor walk, a verified delivery, a catch-up)."""

import re
from pathlib import Path

import pytest

from accounts.services import create_api_token
from pipeline.models import Deal
from pipeline.webhooks.models import DeliveryStatus, WebhookDelivery

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- integration-example:"


def readme_example() -> str:
    """The fenced Python block right after the marker line."""
    text = README.read_text()
    assert text.count(MARKER) == 1, "one integration example, marked once"
    after_marker = text[text.index(MARKER) :]
    match = re.search(r"^```python\n(.*?)^```$", after_marker, flags=re.MULTILINE | re.DOTALL)
    assert match, "the marker is followed by a ```python block"
    return match.group(1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("eager_celery")
def test_the_readme_integration_example_runs_against_a_live_server(org, pipeline, live_server, settings, monkeypatch):
    # The example's endpoint listens on 127.0.0.1; once it is down, one quick failed attempt is enough.
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 1
    _token, raw_token = create_api_token(user=org.rep, name="README example")
    monkeypatch.setenv("CRM_URL", live_server.url)
    monkeypatch.setenv("CRM_TOKEN", raw_token)

    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_example(), str(README), "exec"), namespace)  # our own README, on purpose

    deal = Deal.objects.get(title="Acme, 70 seats")
    assert Deal.objects.filter(owner=org.rep).count() == 1, "the retried create wrote once"
    assert namespace["checkpoint"] == max(event["sequence"] for event in namespace["processed"].values())
    statuses = set(WebhookDelivery.objects.values_list("status", flat=True))
    assert statuses == {DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED}, "one received, one sent to the endpoint down"
    assert deal.amount == 12000
