"""forecasting.models: the invariants the database holds."""

import datetime as dt

import pytest
from django.db import IntegrityError

from forecasting.models import Quota

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "fields",
    [
        {"user": None, "team": None, "amount": 1},
        {"user": "rep", "team": "team", "amount": 1},
        {"user": "rep", "team": None, "amount": -1},
    ],
)
def test_a_quota_is_for_exactly_one_user_or_team_and_never_negative(org, fields):
    user = org.rep if fields["user"] else None
    team = org.team if fields["team"] else None
    with pytest.raises(IntegrityError):
        Quota.objects.create(
            user=user,
            team=team,
            amount=fields["amount"],
            period_start=dt.date(2026, 1, 1),
            period_end=dt.date(2026, 4, 1),
        )
