"""The forecast call page's read model (/forecast/): what the page shows, from the selectors that compute it.

Nothing here computes a number: the roll-up (`forecasting.selectors.forecast_rollup`), the weekly trend
(`forecast_trend`) and pacing (`forecast_pacing`) do, each under the visibility rule of SPEC §2. This module picks
whose rows the page shows, who may submit or adjust which row, and arranges the chart's data. The number of queries
does not depend on the number of reps or teams.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from accounts.models import Team, User
from forecasting.models import CallCategory, GroupKind
from forecasting.periods import Period
from forecasting.selectors import (
    Pacing,
    PacingRow,
    Rollup,
    TrendWeek,
    adjustable_members,
    forecast_pacing,
    forecast_rollup,
    forecast_trend,
)

# A submission older than this is flagged on the page: the weekly call wants a fresh number.
STALE_SUBMISSION_DAYS = 7


@dataclass
class ForecastPage:
    period: Period
    category: str
    rollup: Rollup
    trend: list[TrendWeek]
    # (heading, pacing of a group kind, [(name, row)]): the company's and the teams', a manager's teams', or one's own
    pacing: list[tuple[str, Pacing, list[tuple[str, PacingRow]]]]
    adjustable: set[int] = field(default_factory=set)  # members whose value the viewer may adjust
    managed: set[int] = field(default_factory=set)  # teams whose number the viewer submits
    now: datetime = field(default_factory=timezone.now)

    @property
    def category_label(self) -> str:
        return CallCategory(self.category).label

    def stale_days(self, submitted_at: datetime | None) -> int | None:
        """How many days old a submission is when that is more than the weekly call allows, else None."""
        if submitted_at is None:
            return None
        days = (self.now - submitted_at).days
        return days if days >= STALE_SUBMISSION_DAYS else None

    def chart_data(self) -> dict[str, Any]:
        """What the trend chart draws (static/js/forecast.js reads it from the canvas): a point per week's lock."""
        weeks = self.trend

        def numbers(name: str) -> list[float]:
            return [float(getattr(week, name)) for week in weeks]

        return {
            "labels": [timezone.localtime(week.lock).strftime("%b %-d") for week in weeks],
            "submitted": numbers("submitted"),
            "adjusted": numbers("adjusted"),
            "computed_commit": numbers("computed_commit"),
            "computed_best_case": numbers("computed_best_case"),
            "won": numbers("won"),
            "quota": [None if week.quota is None else float(week.quota) for week in weeks],
            "category": self.category_label,
        }


def pacing_groups(user: User) -> list[tuple[str, str]]:
    """Whose pacing the page shows (heading, group kind): an admin the company's and the teams', a manager their
    teams', anyone else their own."""
    if user.is_admin:
        return [("Company", GroupKind.COMPANY), ("Teams", GroupKind.TEAM)]
    if user.is_manager and Team.objects.filter(managers=user).exists():
        return [("Teams", GroupKind.TEAM)]
    return [("My pacing", GroupKind.OWNER)]


def build_forecast_page(*, user: User, period: Period, category: str) -> ForecastPage:
    """Everything /forecast/ shows for `period` and `category` as `user` may see it."""
    now = timezone.now()
    rollup = forecast_rollup(user=user, period=period, category=category, at=now)
    trend = forecast_trend(user=user, period=period, category=category, now=now)
    names: dict = {(GroupKind.COMPANY, None): "Company", (GroupKind.TEAM, None): "No team"}
    for team in rollup.teams:
        names[GroupKind.TEAM, team.team_id] = team.name
        for member in team.members:
            names[GroupKind.OWNER, member.user_id] = member.name
    pacing = []
    for heading, group in pacing_groups(user):
        paced = forecast_pacing(user=user, period=period, group=group, at=now)
        # The groups of the call: an owner paced but not in it (of no team shown) is left out.
        rows = [(names[group, row.key], row) for row in paced.rows if (group, row.key) in names]
        pacing.append((heading, paced, rows))
    member_ids = [member.user_id for team in rollup.teams for member in team.members]
    adjustable = set(adjustable_members(user).filter(pk__in=member_ids).values_list("pk", flat=True))
    managed = set(Team.objects.filter(managers=user).values_list("pk", flat=True)) if user.is_manager else set()
    return ForecastPage(
        period=period,
        category=category,
        rollup=rollup,
        trend=trend,
        pacing=pacing,
        adjustable=adjustable,
        managed=managed,
        now=now,
    )
