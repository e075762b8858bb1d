"""Index-only reads of the deal history at two instants (the waterfall, slippage): the intervals still open by
stage and close date, the closed ones by their end, and the open ones by their start. Built CONCURRENTLY so that
the history keeps taking writes while a big one is indexed."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.models import Q


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [("pipeline", "0023_deal_list_indexes")]

    operations = [
        AddIndexConcurrently(
            model_name="dealstate",
            index=models.Index(
                fields=["stage", "expected_close_date"],
                include=("valid_from", "deal", "owner", "amount"),
                condition=Q(valid_to__isnull=True),
                name="dealstate_current_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="dealstate",
            index=models.Index(
                fields=["valid_from"],
                include=("deal", "stage", "owner", "amount", "expected_close_date"),
                condition=Q(valid_to__isnull=True),
                name="dealstate_current_from_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="dealstate",
            index=models.Index(
                fields=["valid_to"],
                include=("valid_from", "deal", "stage", "owner", "amount", "expected_close_date"),
                condition=Q(valid_to__isnull=False),
                name="dealstate_to_idx",
            ),
        ),
    ]
