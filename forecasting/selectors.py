"""Reads of the metric snapshots, limited to what the user may see (SPEC §2).

Readers always read the latest complete `MetricsRun`, so every answer comes from one whole recompute.
Visibility of a row follows the group it describes: a row about one owner (and each stale-deal row, whose
owner_id is the deal's) is visible to whoever may see that owner's records; a row about a team to the team's
managers (and its members when REP_VISIBILITY is "team"); company-, pipeline- and source-wide rows, which add
up everyone's deals, to admins only.
"""

from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Team, User
from accounts.selectors import owners_visible_to
from forecasting.models import GroupKind, Metric, MetricSnapshot, MetricsRun, MetricsSettings, Quota, RunStatus


@dataclass(frozen=True)
class LearningSettings:
    """The settings of the learned probabilities in effect, and whether an admin set them (else the environment's)."""

    lookback_days: int  # 0: all history
    prior_strength: int
    set_by_admin: bool


def learning_settings() -> LearningSettings:
    """Those an admin set on the settings page (the `MetricsSettings` row), else the environment's
    METRICS_LOOKBACK_DAYS and METRICS_PRIOR_STRENGTH."""
    stored = MetricsSettings.objects.filter(pk=1).first()
    if stored is not None:
        return LearningSettings(stored.lookback_days, stored.prior_strength, set_by_admin=True)
    return LearningSettings(settings.METRICS_LOOKBACK_DAYS, settings.METRICS_PRIOR_STRENGTH, set_by_admin=False)


def learning_of_run(run: MetricsRun) -> LearningSettings | None:
    """The learning settings `run`'s learned probabilities were computed with (None when it has none: no open
    stage), which may differ from those in effect now until the next recompute."""
    values = (
        MetricSnapshot.objects.filter(run=run, metric=Metric.LEARNED_PROBABILITY).values_list("values", flat=True)
    ).first()
    if values is None:
        return None
    return LearningSettings(values["lookback_days"], int(values["k"]), set_by_admin=False)


def latest_run() -> MetricsRun | None:
    """The newest complete recompute, or None before the first one."""
    return MetricsRun.objects.filter(status=RunStatus.COMPLETE).order_by("-computed_at", "-id").first()


# Numbers older than this many recompute intervals are out of date: the scheduled recompute is late, so the broker or
# the workers are away (SPEC §7: the metrics say how stale they are).
STALE_AFTER_INTERVALS = 2


@dataclass(frozen=True)
class Freshness:
    """How old the numbers of a run are: what the dashboard and the metrics API tell their readers."""

    computed_at: datetime | None  # None before the first recompute
    age_seconds: int | None
    out_of_date: bool


def freshness(run: MetricsRun | None, *, now: datetime | None = None) -> Freshness:
    """The age of `run`'s numbers at `now` (default: now), and whether the scheduled recompute is late for them.

    The numbers are as fresh as the run's last refresh (`as_of`); they are out of date when the full recompute,
    which also moves what time alone changes (ages, past due, staleness), is late.
    """
    if run is None:
        return Freshness(computed_at=None, age_seconds=None, out_of_date=False)
    now = now or timezone.now()
    late = (now - run.computed_at).total_seconds() > STALE_AFTER_INTERVALS * settings.METRICS_RECOMPUTE_SECONDS
    return Freshness(
        computed_at=run.as_of,
        age_seconds=max(int((now - run.as_of).total_seconds()), 0),
        out_of_date=late,
    )


@dataclass(frozen=True)
class SnapshotQuery:
    """What a reader asks for: one metric, a period (or a range of periods), a group, optional filters."""

    metric: str
    group_kind: str = GroupKind.COMPANY
    period_kind: str | None = None
    period_start: date | None = None
    range_start: date | None = None  # periods lying within [range_start, range_end)
    range_end: date | None = None
    pipeline_id: int | None = None
    team_id: int | None = None
    owner_id: int | None = None
    source: str | None = None


def _visible(rows: QuerySet[MetricSnapshot], user: User) -> QuerySet[MetricSnapshot]:
    owners = owners_visible_to(user)
    if owners is None:
        return rows
    if not user.is_active:
        return rows.none()
    return rows.filter(
        Q(group_kind=GroupKind.OWNER, owner_id__in=owners)
        | Q(group_kind=GroupKind.TEAM, team_id__in=_teams_seen_by(user))
    )


def _teams_seen_by(user: User) -> QuerySet:
    """Teams whose team-wide rows `user` may see: those they manage, and their own when reps see their team's."""
    teams = Q(managers=user)
    if settings.REP_VISIBILITY == "team" and user.team_id:
        teams |= Q(pk=user.team_id)
    return Team.objects.filter(teams).values("pk")


def visible_snapshot_rows(
    *, user: User, query: SnapshotQuery, run: MetricsRun | None = None
) -> tuple[MetricsRun | None, QuerySet[MetricSnapshot]]:
    """The run (default: the latest) and its rows answering `query` that `user` may see, in period/group order.

    Pass the `run` of an earlier read to combine several metrics from one and the same recompute.
    """
    run = run or latest_run()
    if run is None:
        return None, MetricSnapshot.objects.none()
    rows = MetricSnapshot.objects.filter(run=run, metric=query.metric, group_kind=query.group_kind)
    if query.period_kind is not None:
        rows = rows.filter(period_kind=query.period_kind)
    if query.period_start is not None:
        rows = rows.filter(period_start=query.period_start)
    if query.range_start is not None:
        rows = rows.filter(period_start__gte=query.range_start)
    if query.range_end is not None:
        rows = rows.filter(period_end__lte=query.range_end)
    for field in ("pipeline_id", "team_id", "owner_id", "source"):
        value = getattr(query, field)
        if value is not None:
            rows = rows.filter(**{field: value})
    rows = _visible(rows, user).order_by(
        "period_start", "owner_id", "team_id", "pipeline_id", "source", "stage_id", "deal_id"
    )
    return run, rows


def visible_quotas(*, user: User) -> QuerySet[Quota]:
    """Quotas of the users whose records `user` may see, and of the teams whose team-wide metric rows `user` may
    see: those they manage, and their own when REP_VISIBILITY is "team" (all, for an admin)."""
    owners = owners_visible_to(user)
    quotas = Quota.objects.select_related("user", "team")
    if owners is None:
        return quotas
    if not user.is_active:
        return quotas.none()
    return quotas.filter(Q(user__in=owners) | Q(team__in=_teams_seen_by(user)))


def editable_quotas(*, user: User) -> QuerySet[Quota]:
    """Quotas `user` may change: all for an admin; for a manager, those of the teams they manage and of those
    teams' members other than themselves (nobody sets their own target); none for anyone else."""
    quotas = Quota.objects.select_related("user", "team")
    if not user.is_active:
        return quotas.none()
    if user.is_admin:
        return quotas
    if not user.is_manager:
        return quotas.none()
    # Through a subquery of the teams, not a join to their managers: one row per quota without DISTINCT, which a
    # locking read (the API's writes) may not use.
    managed = Team.objects.filter(managers=user).values("pk")
    return quotas.filter(Q(team__in=managed) | (Q(user__team__in=managed) & ~Q(user=user)))


def quota_users_assignable_by(*, user: User) -> QuerySet[User]:
    """Users `user` may set a quota for: anyone (admin), the members of the teams a manager manages but
    themselves, nobody otherwise."""
    if not user.is_active or not (user.is_admin or user.is_manager):
        return User.objects.none()
    if user.is_admin:
        return User.objects.all()
    return User.objects.filter(team__managers=user).exclude(pk=user.pk).distinct()


def quota_teams_assignable_by(*, user: User) -> QuerySet[Team]:
    """Teams `user` may set a quota for: any (admin), those a manager manages, none otherwise."""
    if not user.is_active or not (user.is_admin or user.is_manager):
        return Team.objects.none()
    return Team.objects.all() if user.is_admin else Team.objects.filter(managers=user).distinct()


def quota_metrics(*, quota_ids: list[int]) -> tuple[MetricsRun | None, dict[int, dict]]:
    """The latest run and its attainment/coverage/deals-needed values for each of `quota_ids` (already visible)."""
    run = latest_run()
    if run is None:
        return None, {}
    rows = MetricSnapshot.objects.filter(run=run, metric=Metric.QUOTA, values__quota_id__in=quota_ids)
    return run, {row.values["quota_id"]: row.values for row in rows}
