"""`config.services.apply_fields`, the one way a service edits fields (issue 14, item 3): only the columns that
changed are written, so a column another writer changed meanwhile is not put back, and nothing is written when
nothing changed."""

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from forecasting.models import Quota
from forecasting.services import update_quota
from pipeline import services
from pipeline.webhooks.models import WebhookSubscription
from pipeline.webhooks.services import update_subscription
from tests.factories import make_deal

pytestmark = pytest.mark.django_db


def updates_of(queries, table: str) -> list[str]:
    return [query["sql"] for query in queries if query["sql"].startswith(f'UPDATE "{table}"')]


def test_a_subscription_edit_keeps_the_failure_streak_the_sender_wrote_meanwhile(org):
    subscription = WebhookSubscription.objects.create(
        owner=org.rep, url="https://hooks.example.com/crm", events=["deal.created"], secret="s" * 32
    )
    # The sender counts a failure after the editor read the subscription.
    WebhookSubscription.objects.filter(pk=subscription.pk).update(consecutive_failures=3)

    update_subscription(subscription=subscription, description="Sync to the warehouse")

    subscription.refresh_from_db()
    assert (subscription.description, subscription.consecutive_failures) == ("Sync to the warehouse", 3)


def test_a_quota_edit_writes_its_amount_only_and_nothing_when_unchanged(org):
    quota = Quota.objects.create(user=org.rep, period_start=date(2027, 1, 1), period_end=date(2027, 4, 1), amount=1)
    Quota.objects.filter(pk=quota.pk).update(period_end=date(2027, 7, 1))  # another writer, meanwhile

    update_quota(quota=quota, actor=org.admin, amount=Decimal("5.00"))
    with CaptureQueriesContext(connection) as unchanged:
        update_quota(quota=quota, actor=org.admin, amount=Decimal("5"))

    quota.refresh_from_db()
    assert (quota.amount, quota.period_end) == (Decimal("5.00"), date(2027, 7, 1))
    assert updates_of(unchanged.captured_queries, "forecasting_quota") == []


def test_update_deal_writes_the_changed_columns_and_its_version_not_the_whole_row(org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline)

    with CaptureQueriesContext(connection) as queries:
        deal = services.update_deal(deal=deal, actor=org.rep, title="Renewal 2027")

    [update] = updates_of(queries.captured_queries, "pipeline_deal")
    assigned = update.split(" SET ")[1].split(" WHERE ")[0]
    columns = sorted(part.split(" = ")[0].strip('"') for part in assigned.split(", "))
    assert columns == ["title", "updated_at", "version"]  # its category stays its stage's: not written
    assert deal.version == 2


def test_a_field_the_caller_may_not_set_is_refused_and_nothing_is_written(org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, title="Original")

    with pytest.raises(ValidationError) as refused:
        services.update_deal(deal=deal, actor=org.rep, title="Changed", status="won")

    assert refused.value.message_dict == {"status": ["This field cannot be set here."]}
    deal.refresh_from_db()
    assert (deal.title, deal.version) == ("Original", 1)
