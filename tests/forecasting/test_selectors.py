"""forecasting.selectors: which snapshot rows a user may see."""

import pytest

from forecasting.selectors import SnapshotQuery, visible_snapshot_rows

pytestmark = pytest.mark.django_db


def test_a_deactivated_manager_sees_no_metrics(org, closings):
    org.manager.is_active = False
    org.manager.save()
    _, rows = visible_snapshot_rows(user=org.manager, query=SnapshotQuery(metric="deal_outcomes", group_kind="team"))
    assert list(rows) == []
