"""Fixtures of the forecasting tests."""

from decimal import Decimal

import pytest

from forecasting.services import recompute_metrics
from tests.forecasting.helpers import at, deal_with_history

AS_OF = at("2026-11-25 12:00")


@pytest.fixture
def closings(org, pipeline, lost_reason):
    """A deal won and one lost in October 2026 (by a rep of each team) and two stale open deals, recomputed AS_OF."""
    deal_with_history(
        owner=org.rep,
        pipeline=pipeline,
        amount=Decimal("1000"),
        path=[("Prospecting", "2026-10-01"), ("Won", "2026-10-11")],
    )
    deal_with_history(
        owner=org.other_rep,
        pipeline=pipeline,
        lost_reason=lost_reason,
        path=[("Prospecting", "2026-10-01"), ("Lost", "2026-10-04")],
    )
    deal_with_history(owner=org.rep, pipeline=pipeline, path=[("Prospecting", "2026-09-01")])  # open, stale
    deal_with_history(owner=org.other_rep, pipeline=pipeline, path=[("Prospecting", "2026-09-01")])  # open, stale
    recompute_metrics(as_of=AS_OF)
