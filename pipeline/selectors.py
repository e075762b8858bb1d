"""Reads of the pipeline, each already limited to what the user may see (SPEC §2).

Every page, API endpoint, export and metric gets its rows from these functions, never from `Model.objects`
directly, so a new read path cannot forget the visibility rule.
"""

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    F,
    Func,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import AuditEntry, Team, User
from accounts.selectors import owners_editable_by, owners_visible_to, sees_every_owner
from pipeline.models import (
    Activity,
    Contact,
    Deal,
    DealState,
    DealStatus,
    ImportJob,
    Lead,
    LostReason,
    Organization,
    Pipeline,
    SavedDealView,
    Stage,
    StageChange,
    StageKind,
)
from pipeline.pick_lists import PickLists


class _AnyOfArray(Func):
    """`column = ANY(ARRAY(subquery))`: the subquery runs once (an InitPlan) and the comparison is then an index
    condition on `column`, which PostgreSQL can AND with other index conditions (a BitmapAnd). `column IN
    (subquery)` is planned as a semi-join instead, walking the subquery's rows one at a time. For short lists (a
    team's members): each row compares against the whole array."""

    output_field = BooleanField()

    def as_sql(self, compiler, connection, **extra_context):
        (column, column_params), (subquery, subquery_params) = (
            compiler.compile(expression) for expression in self.get_source_expressions()
        )
        return f"{column} = ANY(ARRAY{subquery})", (*column_params, *subquery_params)


class _AnyOfIds(Func):
    """`column = ANY(%s::bigint[])` with the ids as one parameter, in PostgreSQL's text form of an array (`{1,2,3}`):
    a constant array the planner weighs, sent as one value. As `IN (%s, %s, ...)`, thousands of ids were thousands
    of placeholders, which psycopg splits and quotes one by one; as a Python list, psycopg still dumps it element by
    element (docs/performance.md, "Search")."""

    output_field = BooleanField()

    def __init__(self, expression, ids: str):
        super().__init__(expression)
        self.ids = ids

    def as_sql(self, compiler, connection, **extra_context):
        column, column_params = compiler.compile(self.get_source_expressions()[0])
        return f"{column} = ANY(%s::bigint[])", (*column_params, self.ids)


def _id_array(ids) -> str:
    """`ids` in PostgreSQL's text form of an array, for `_AnyOfIds`."""
    return "{" + ",".join(str(int(pk)) for pk in ids) + "}"


def _owned_by(queryset: QuerySet, owners: QuerySet | None, owner_field: str = "owner") -> QuerySet:
    # `owner = ANY(ARRAY(owners))` rather than `owner IN (owners)`: the owners are read once, and the condition is
    # then a bitmap on the owner index that PostgreSQL ANDs with the other filters' (a search, a stage). As a
    # semi-join, a manager's search read every deal of the team, one owner at a time: 78 ms became 3.5 ms on 200k
    # deals (docs/performance.md, "Search").
    if owners is None:
        return queryset
    return queryset.filter(_AnyOfArray(F(f"{owner_field}_id"), Subquery(owners.order_by())))


def search_terms(text: str) -> list[str]:
    """The words of a search box, each of which a match must contain (the API's `search=` splits the same way)."""
    return text.replace(",", " ").split()


def search_deals(deals: QuerySet[Deal], terms: list[str]) -> QuerySet[Deal]:
    """`deals` whose title, external id, organization name or contact name contains every term, ignoring case
    (accents count: "Zoe" does not find "Zoë").

    Each term is tested on `Deal.search_text`, those parts on one column (pipeline.search_text): through its trigram
    index for a rare term, row by row along the list's order for a common one, as the planner weighs it. A term of 1
    or 2 characters has no trigram: it is still answered exactly, by reading the visible deals (all of them, for an
    admin).
    """
    for term in terms:
        deals = deals.filter(search_text__icontains=term)
    return deals


def visible_deals(user: User, *, searched: bool = False, pick_lists: PickLists | None = None) -> QuerySet[Deal]:
    """Deals `user` may see: their own, their teams' (managers), or all (admins).

    `searched` when the deals are to be narrowed by `search_deals`, or `pick_lists` given: the visible owners are
    then read first and written into the deal query as constants, `owner_id = 7` for a rep. With the array computed
    at run time the planner cannot tell a rep's 500 deals from a manager's 60,000, and for a common word it read
    every deal the word matched before keeping the owner's: a rep's search of "austin" on L took 1.2 s, and 28 ms
    once the planner walks the owner's newest deals (`deal_owner_updated_idx`) and tests the word on each
    (docs/performance.md, "Search"). From `pick_lists` the owners cost no query at an unchanged version: the deal
    table reads them so, and its count's estimate beyond the exact limit is then the team's, not a guess (a
    manager's 138,203 deals on L had read "about 54,793").
    """
    if sees_every_owner(user) or not (searched or pick_lists):
        return _owned_by(Deal.objects.all(), owners_visible_to(user))
    ids = pick_lists.rows(_visible_owner_ids) if pick_lists else list(_visible_owner_ids(user))
    if len(ids) == 1:
        return Deal.objects.filter(owner_id=ids[0])
    return Deal.objects.filter(_AnyOfIds(F("owner_id"), _id_array(ids)))


def _visible_owner_ids(user: User) -> QuerySet:
    return owners_visible_to(user).order_by().values_list("pk", flat=True)


def editable_deals(user: User) -> QuerySet[Deal]:
    """Deals `user` may change; a rep who may see teammates' deals still edits only their own."""
    return _owned_by(Deal.objects.all(), owners_editable_by(user))


def visible_leads(user: User) -> QuerySet[Lead]:
    """Leads `user` may see, by the same rule as deals."""
    return _owned_by(Lead.objects.all(), owners_visible_to(user))


def editable_leads(user: User) -> QuerySet[Lead]:
    """Leads `user` may change."""
    return _owned_by(Lead.objects.all(), owners_editable_by(user))


def _visible_activities(user: User, owners: QuerySet | None) -> QuerySet[Activity]:
    if owners is None:
        return Activity.objects.all()
    # An activity on a record the user may see shows on that record's timeline, whoever logged it.
    return Activity.objects.filter(Q(owner__in=owners) | Q(deal__owner__in=owners) | Q(lead__owner__in=owners))


def visible_activities(user: User) -> QuerySet[Activity]:
    """Activities `user` owns or that sit on a deal or lead they may see."""
    return _visible_activities(user, owners_visible_to(user))


def editable_activities(user: User) -> QuerySet[Activity]:
    """Activities `user` may change: their own, or those on deals and leads they may change."""
    return _visible_activities(user, owners_editable_by(user))


def _visible_customers(user: User, queryset: QuerySet, link: str) -> QuerySet:
    """Customer records `user` owns (by the deal rule) or that a deal or lead they may see links to via `link`."""
    owners = owners_visible_to(user)
    if owners is None:
        return queryset
    return queryset.filter(
        Q(owner__in=owners)
        | Exists(Deal.objects.filter(**{link: OuterRef("pk")}, owner__in=owners))
        | Exists(Lead.objects.filter(**{link: OuterRef("pk")}, owner__in=owners))
    )


def visible_organizations(user: User) -> QuerySet[Organization]:
    """Organizations `user` owns (by the deal rule) or that one of their visible deals or leads belongs to."""
    return _visible_customers(user, Organization.objects.all(), "organization")


def visible_contacts(user: User) -> QuerySet[Contact]:
    """Contacts `user` owns (by the deal rule) or that are the contact of one of their visible deals or leads."""
    return _visible_customers(user, Contact.objects.all(), "contact")


def editable_organizations(user: User) -> QuerySet[Organization]:
    """Organizations `user` may change: those owned by the users whose deals they may change (all, for an admin)."""
    return _owned_by(Organization.objects.all(), owners_editable_by(user))


def editable_contacts(user: User) -> QuerySet[Contact]:
    """Contacts `user` may change, by the rule of organizations."""
    return _owned_by(Contact.objects.all(), owners_editable_by(user))


def visible_pipelines(user: User) -> QuerySet[Pipeline]:
    """Every pipeline, default first: the configuration every active user works in (deals are filtered apart)."""
    pipelines = Pipeline.objects.order_by("-is_default", "name")
    return pipelines if user.is_active else pipelines.none()


def visible_stages(user: User) -> QuerySet[Stage]:
    """The stages of every pipeline, for every active user."""
    return Stage.objects.all() if user.is_active else Stage.objects.none()


def visible_lost_reasons(user: User) -> QuerySet[LostReason]:
    """Lost reasons, retired ones included (old losses still name them), for every active user."""
    return LostReason.objects.all() if user.is_active else LostReason.objects.none()


def deal_history(*, deal: Deal) -> QuerySet[StageChange]:
    """The stage changes of a deal, oldest first, with the stages and the user who moved it."""
    return deal.stage_changes.select_related("from_stage", "to_stage", "changed_by").order_by("changed_at", "id")


# The fields of a deal's state as of an instant, read from its history interval as `state_<name>` annotations.
STATE_FIELDS = ("stage_id", "owner_id", "amount", "currency", "expected_close_date", "forecast_category")


def deals_as_of(*, user: User, at: datetime) -> QuerySet[Deal]:
    """The deals `user` may see, as they stood at `at`: each annotated with its state then (SPEC §3a).

    One row per deal that existed at `at` and exists still, with `state_pipeline_id`, `state_stage_id`,
    `state_status`, `state_owner_id`, `state_amount`, `state_currency`, `state_expected_close_date`,
    `state_forecast_category`, `state_team_id` (of the owner then, as a member now) and `state_since` (when that state
    began). Visibility is today's (SPEC §2), by the deal's current owner; a deal deleted since is not listed. One
    join of the deal to the interval containing `at`, on (deal, valid_from): set-based, whatever the number of deals.
    """
    interval = Q(states__valid_from__lte=at) & (Q(states__valid_to__gt=at) | Q(states__valid_to__isnull=True))
    # Annotating after the filter reuses its join: each name reads the one interval that contains `at`.
    return (
        visible_deals(user)
        .filter(interval)
        .annotate(
            **{f"state_{name}": F(f"states__{name}") for name in STATE_FIELDS},
            state_pipeline_id=F("states__stage__pipeline_id"),
            state_status=F("states__stage__kind"),
            state_team_id=F("states__owner__team_id"),
            state_since=F("states__valid_from"),
        )
    )


def history_starts_at() -> datetime | None:
    """When the recorded history begins: the first stage change of any deal (every deal's history starts with
    one), None before the first deal. One index probe per stage, not a scan of the history."""
    first = StageChange.objects.filter(to_stage=OuterRef("pk")).order_by("changed_at").values("changed_at")[:1]
    return Stage.objects.annotate(first=Subquery(first)).aggregate(at=Min("first"))["at"]


@dataclass(frozen=True)
class Pushes:
    """How often a deal's expected close date was moved later (SPEC §3a: a push), and by how many days in all."""

    count: int = 0
    days: int = 0


_PUSHES_SQL = """
SELECT deal_id, count(*), sum(new_close - old_close)
  FROM (SELECT deal_id, expected_close_date AS new_close,
               lag(expected_close_date) OVER (PARTITION BY deal_id ORDER BY valid_from, id) AS old_close
          FROM pipeline_dealstate WHERE deal_id = ANY(%s)) changes
 WHERE new_close > old_close
 GROUP BY deal_id
"""


def deal_pushes(deal_ids: list[int]) -> dict[int, Pushes]:
    """The pushes of each of `deal_ids` (callers pass deals they fetched visibly), from the field history: a change
    of the close date to a later one (setting or clearing it is no push). One query on (deal, valid_from)."""
    if not deal_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_PUSHES_SQL, [list(deal_ids)])
        return {deal_id: Pushes(count, days) for deal_id, count, days in cursor.fetchall()}


# What `deal_changes` reports, in the order a line shows them (the stage gives the pipeline and the status).
CHANGE_FIELDS = ("stage", "owner", "amount", "currency", "expected_close_date", "forecast_category")


@dataclass(frozen=True)
class FieldChange:
    """One field of a deal changed from `old` to `new` at `at`, by `changed_by` when known (ids for references).

    `before` and `after` are the two intervals of the history, with their stage and owner loaded, for a reader
    that wants names.
    """

    field: str
    old: object
    new: object
    at: datetime
    changed_by: User | None
    before: DealState
    after: DealState


def deal_changes(*, deal: Deal) -> list[FieldChange]:
    """Every change of the deal's forecast fields, newest first, from its history (callers fetch `deal` visibly).

    A state interval that changed several fields gives one row per field. One query.
    """
    states = list(
        DealState.objects.filter(deal_id=deal.pk)
        .select_related("changed_by", "stage", "owner")
        .order_by("valid_from", "id")
    )
    changes = []
    for before, after in pairwise(states):
        for name in CHANGE_FIELDS:
            attname = DealState._meta.get_field(name).attname
            old, new = getattr(before, attname), getattr(after, attname)
            if old != new:
                changes.append(FieldChange(name, old, new, after.valid_from, after.changed_by, before, after))
    changes.reverse()
    return changes


def audit_trail(*, instance: models.Model) -> QuerySet[AuditEntry]:
    """Who changed `instance` and how, newest first. Callers fetch `instance` through a visible_* selector."""
    return AuditEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(instance), object_id=instance.pk
    ).select_related("actor")


def default_pipeline() -> Pipeline | None:
    """The pipeline new deals go to when none is named."""
    return Pipeline.objects.filter(is_default=True).first() or Pipeline.objects.order_by("id").first()


def first_open_stage(*, pipeline: Pipeline) -> Stage | None:
    """Where a new deal starts: the open stage with the lowest order."""
    return pipeline.stages.filter(kind="open").order_by("order").first()


def pipeline_summary(*, user: User) -> list[dict]:
    """Per pipeline: open deal count and amount, and won/lost counts, over the deals `user` may see."""
    totals = (
        visible_deals(user)
        .values("pipeline_id", "pipeline__name")
        .annotate(
            open_count=Count("id", filter=Q(status=DealStatus.OPEN)),
            open_amount=Sum("amount", filter=Q(status=DealStatus.OPEN), default=0),
            won_count=Count("id", filter=Q(status=DealStatus.WON)),
            lost_count=Count("id", filter=Q(status=DealStatus.LOST)),
        )
        .order_by("pipeline__name")
    )
    return list(totals)


# --- The pipeline board ---------------------------------------------------------------------------------------------

BOARD_PAGE_SIZE = 30


@dataclass
class BoardColumn:
    """One open stage of the board: its totals over every matching deal, and the first page of its cards."""

    stage: Stage
    count: int = 0
    total: Decimal = Decimal(0)
    cards: list[Deal] = field(default_factory=list)
    next_cursor: str | None = None

    @property
    def weighted(self) -> Decimal:
        return self.total * self.stage.probability / 100


def visible_import_jobs(user: User) -> QuerySet[ImportJob]:
    """Import jobs `user` may see: the ones they started, or all (admins). Newest first."""
    jobs = ImportJob.objects.select_related("created_by").order_by("-created_at", "-id")
    return jobs if user.is_admin else jobs.filter(created_by=user)


def filterable_teams(user: User) -> QuerySet[Team]:
    """Teams `user` may narrow the board to: all (admin), the teams they manage and their own (manager), or their
    own (rep). Not `accounts.selectors.visible_teams`, the whole organisation chart every colleague may read."""
    if user.is_admin:
        return Team.objects.order_by("name")
    if user.is_manager:
        return Team.objects.filter(Q(managers=user) | Q(pk=user.team_id)).distinct().order_by("name")
    return Team.objects.filter(pk=user.team_id)


def board_deals(
    *, user: User, pipeline: Pipeline, owner: User | None = None, team: Team | None = None, text: str = ""
) -> QuerySet[Deal]:
    """Open deals of `pipeline` that `user` may see, narrowed by owner, team and a text (`search_deals`)."""
    terms = search_terms(text)
    deals = visible_deals(user, searched=bool(terms)).filter(pipeline=pipeline, status=DealStatus.OPEN)
    if owner is not None:
        deals = deals.filter(owner=owner)
    if team is not None:
        deals = deals.filter(owner__team=team)
    return search_deals(deals, terms)


# What a card shows (and what staleness needs): loading less makes a board of hundreds of cards cheaper.
CARD_FIELDS = (
    "title",
    "pipeline_id",
    "stage_id",
    "status",
    "owner_id",
    "organization_id",
    "amount",
    "currency",
    "expected_close_date",
    "stage_entered_at",
    "last_touched_at",
    "version",
    "organization__name",
    "owner__username",
    "owner__first_name",
    "owner__last_name",
    "stage__name",
    "stage__kind",
    "stage__rotting_days",
    "stage__pipeline_id",
)


def _with_card_data(deals: QuerySet[Deal], user: User) -> QuerySet[Deal]:
    editable_owners = owners_editable_by(user)
    if editable_owners is None:
        can_edit = Value(True, output_field=BooleanField())
    else:
        can_edit = Case(
            When(owner__in=editable_owners, then=Value(True)), default=Value(False), output_field=BooleanField()
        )
    return deals.select_related("organization", "owner", "stage").only(*CARD_FIELDS).annotate(can_edit=can_edit)


def _encode_cursor(deal: Deal) -> str:
    return f"{deal.stage_entered_at.isoformat()}|{deal.pk}"


def _decode_cursor(cursor: str) -> tuple[datetime, int] | None:
    try:
        when, pk = cursor.rsplit("|", 1)
        moment = datetime.fromisoformat(when)
        return (moment if timezone.is_aware(moment) else timezone.make_aware(moment)), int(pk)
    except (ValueError, TypeError):
        return None


def _attach_next_activities(cards: list[Deal]) -> None:
    """Set `next_activity` on each card (its earliest planned, not done activity with a due time, or None),
    and `staleness` (with `days_in_stage` and `is_stale`).

    One query for all cards; the cards come from a `visible_*` selector, so their activities are visible too.
    """
    upcoming = (
        Activity.objects.filter(deal_id__in=[card.pk for card in cards], done_at__isnull=True, due_at__isnull=False)
        .order_by("deal_id", "due_at", "id")
        .distinct("deal_id")
    )
    by_deal = {activity.deal_id: activity for activity in upcoming} if cards else {}
    now = timezone.now()
    for card in cards:
        card.next_activity = by_deal.get(card.pk)
        card.next_is_overdue = card.next_activity is not None and card.next_activity.due_at < now
        card.staleness = staleness(card, now=now)
        card.days_in_stage = card.staleness.days_in_stage
        card.is_stale = card.staleness.is_stale
        card.owner_name = card.owner.first_name or card.owner.username
    pushes = deal_pushes([card.pk for card in cards])
    for card in cards:
        card.pushes = pushes.get(card.pk, Pushes())


def board_columns(*, user: User, deals: QuerySet[Deal], stages: list[Stage], page_size: int = BOARD_PAGE_SIZE):
    """The board's columns: totals per stage and the first `page_size` cards of each, newest in the stage first.

    A constant number of queries whatever the number of deals or stages: one aggregate, one UNION of per-stage
    LIMIT queries on the board index, one fetch of the cards, one of their next activities.
    """
    columns = {stage.pk: BoardColumn(stage=stage) for stage in stages}
    totals = deals.filter(stage__in=columns).values("stage_id").annotate(count=Count("id"), total=Sum("amount"))
    for row in totals.order_by():
        column = columns[row["stage_id"]]
        column.count, column.total = row["count"], row["total"] or Decimal(0)
    pages = [
        deals.filter(stage=stage).order_by("-stage_entered_at", "-id").values_list("id", flat=True)[: page_size + 1]
        for stage in stages
        if columns[stage.pk].count
    ]
    ids = list(pages[0].union(*pages[1:], all=True)) if pages else []
    # By id alone: the ids are of `deals`, just read. Its filters again made PostgreSQL estimate one card where there
    # are 186 and join each to every user in turn (18 ms of a manager's board on L; docs/performance.md, "Board").
    cards = (
        list(_with_card_data(Deal.objects.filter(pk__in=ids), user).order_by("-stage_entered_at", "-id")) if ids else []
    )
    by_stage: dict[int, list[Deal]] = defaultdict(list)
    for card in cards:
        by_stage[card.stage_id].append(card)
    shown = []
    for stage_id, stage_cards in by_stage.items():
        column = columns[stage_id]
        column.cards = stage_cards[:page_size]
        if len(stage_cards) > page_size:
            column.next_cursor = _encode_cursor(column.cards[-1])
        shown.extend(column.cards)
    _attach_next_activities(shown)
    return list(columns.values())


def board_column_page(
    *, user: User, deals: QuerySet[Deal], stage: Stage, cursor: str, page_size: int = BOARD_PAGE_SIZE
) -> BoardColumn:
    """The next page of one column's cards, after `cursor` (keyset pagination on the board index)."""
    column = BoardColumn(stage=stage)
    position = _decode_cursor(cursor)
    if position is None:
        return column
    when, pk = position
    page = (
        deals.filter(stage=stage)
        .filter(Q(stage_entered_at__lt=when) | Q(stage_entered_at=when, pk__lt=pk))
        .order_by("-stage_entered_at", "-id")
    )
    cards = list(_with_card_data(page, user)[: page_size + 1])
    column.cards = cards[:page_size]
    if len(cards) > page_size:
        column.next_cursor = _encode_cursor(column.cards[-1])
    _attach_next_activities(column.cards)
    return column


def board_card(*, user: User, deal_id: int) -> Deal | None:
    """One card of the board, re-read after a change, with the same data as `board_columns` gives it."""
    card = _with_card_data(visible_deals(user).filter(pk=deal_id), user).first()
    if card is not None:
        _attach_next_activities([card])
    return card


def stage_totals(*, deals: QuerySet[Deal], stages: list[Stage]) -> list[BoardColumn]:
    """Count and amount per stage (for refreshing column headers after a move), without cards."""
    columns = {stage.pk: BoardColumn(stage=stage) for stage in stages}
    totals = deals.filter(stage__in=columns).values("stage_id").annotate(count=Count("id"), total=Sum("amount"))
    for row in totals.order_by():
        columns[row["stage_id"]].count, columns[row["stage_id"]].total = row["count"], row["total"] or Decimal(0)
    return list(columns.values())


@dataclass(frozen=True)
class Staleness:
    """Why an open deal is stale on the board and its page, with the days that make it so (whole days)."""

    in_stage_too_long: bool  # SPEC §3: longer in its stage than the stage's rotting days
    no_activity: bool  # SPEC §3a, rotting by inactivity: its last touch older than the stage's rotting days
    days_in_stage: int
    days_untouched: int

    @property
    def is_stale(self) -> bool:
        return self.in_stage_too_long or self.no_activity


def staleness(deal: Deal, *, now: datetime | None = None) -> Staleness:
    """How stale `deal` is at `now` (its stage and `last_touched_at` loaded): a closed deal is never stale."""
    now = now or timezone.now()
    rotting = timedelta(days=deal.stage.rotting_days)
    is_open = deal.status == StageKind.OPEN
    return Staleness(
        in_stage_too_long=is_open and now - deal.stage_entered_at > rotting,
        no_activity=is_open and now - deal.last_touched_at > rotting,
        days_in_stage=max((now - deal.stage_entered_at).days, 0),
        days_untouched=max((now - deal.last_touched_at).days, 0),
    )


def is_stale(deal: Deal, *, now: datetime | None = None) -> bool:
    """An open deal is stale when it has been in its stage longer than the stage's rotting days, or when its last
    touch (pipeline.touches) is older than them; "no next step" is shown on its own, beside."""
    return staleness(deal, now=now).is_stale


# The reasons of the stale-deals metric (`forecasting.metrics.stale_deals`), each as a deal filter at `now`.
STALE_REASONS = ("in_stage_too_long", "no_next_step", "no_activity")


def stale_reason_conditions(*, now: datetime | None = None) -> dict[str, Any]:
    """Each reason an open deal is stale for, as a filter (not including "open"): in its stage longer than the
    stage's rotting days, no planned activity due after `now`, last touched longer ago than the rotting days."""
    now = now or timezone.now()
    rotting_cutoff = now - timedelta(days=1) * F("stage__rotting_days")
    next_step = Exists(Activity.objects.filter(deal_id=OuterRef("pk"), done_at__isnull=True, due_at__gt=now))
    return {
        "in_stage_too_long": Q(stage_entered_at__lt=rotting_cutoff),
        "no_next_step": ~next_step,
        "no_activity": Q(last_touched_at__lt=rotting_cutoff),
    }


def stale_condition(*, now: datetime | None = None, reason: str | None = None) -> Q:
    """The stale-deals metric's definition as a deal filter (SPEC §3 and §3a, `forecasting.metrics.stale_deals`):
    open, and stale for any reason of `STALE_REASONS` (or for `reason` only)."""
    reasons = stale_reason_conditions(now=now)
    chosen = [reasons[reason]] if reason else list(reasons.values())
    condition = chosen[0]
    for other in chosen[1:]:
        condition |= other
    return Q(status=StageKind.OPEN) & condition


# --- The deal page ---------------------------------------------------------------------------------------------


@dataclass
class StageStay:
    stage: Stage
    days: float = 0.0
    visits: int = 0
    is_current: bool = False
    reached: bool = False


def stage_path(*, deal: Deal, history: list[StageChange], now: datetime | None = None) -> list[StageStay]:
    """Every stage of the deal's pipeline with the days the deal spent in it (summed over visits), from history."""
    now = now or timezone.now()
    stays = {stage.pk: StageStay(stage=stage) for stage in deal.pipeline.stages.order_by("order")}
    for change, following in zip(history, [*history[1:], None], strict=True):
        stay = stays.get(change.to_stage_id)
        if stay is None:
            continue
        end = following.changed_at if following is not None else (deal.closed_at or now)
        stay.days += max((end - change.changed_at).total_seconds(), 0) / 86400
        stay.visits += 1
        stay.reached = True
    if deal.stage_id in stays:
        stays[deal.stage_id].is_current = True
    return list(stays.values())


# Planned activities first, soonest due first; then what was done, latest first.
TIMELINE_ORDER = (
    Case(When(done_at__isnull=True, then=Value(0)), default=Value(1)),
    Case(When(done_at__isnull=True, then=F("due_at"))).asc(nulls_last=True),
    F("done_at").desc(nulls_last=True),
    "-id",
)


def deal_activities(*, deal: Deal) -> QuerySet[Activity]:
    """The activities on a deal (visible with the deal): planned ones by due time, then done ones, newest first."""
    return deal.activities.select_related("owner").order_by(*TIMELINE_ORDER)


def lead_activities(*, lead: Lead) -> QuerySet[Activity]:
    """The activities on a lead, and those carried over to its deal when it was converted, ordered like a deal's."""
    return Activity.objects.filter(Q(lead=lead) | Q(from_lead=lead)).select_related("owner").order_by(*TIMELINE_ORDER)


def converted_lead_of(*, user: User, deal: Deal) -> Lead | None:
    """The lead `deal` was converted from, when there is one and `user` may see it."""
    return visible_leads(user).filter(deal=deal).first()


def timeline(*, record: Deal | Lead) -> QuerySet[Activity]:
    """The activities on a deal or a lead."""
    return deal_activities(deal=record) if isinstance(record, Deal) else lead_activities(lead=record)


# --- Activities inbox -------------------------------------------------------------------------------------------


def activity_inbox(*, user: User, owner: User | None = None) -> QuerySet[Activity]:
    """Planned (not done) activities of `owner` (default: the user) that the user may see, soonest first."""
    return (
        visible_activities(user)
        .filter(owner=owner or user, done_at__isnull=True, due_at__isnull=False)
        .select_related("deal", "lead", "deal__organization")
        .order_by("due_at", "id")
    )


# --- Leads -----------------------------------------------------------------------------------------------------


def lead_list(
    *, user: User, status: str = "", owner: User | None = None, source: str = "", text: str = ""
) -> QuerySet[Lead]:
    """Leads `user` may see, filtered by status, owner, source and a text in name, company or email."""
    leads = visible_leads(user).select_related("owner")
    if status:
        leads = leads.filter(status=status)
    if owner is not None:
        leads = leads.filter(owner=owner)
    if source:
        leads = leads.filter(source__iexact=source)
    text = text.strip()
    if text:
        leads = leads.filter(
            Q(first_name__icontains=text)
            | Q(last_name__icontains=text)
            | Q(company__icontains=text)
            | Q(email__icontains=text)
        )
    return leads.order_by("-created_at", "-id")


def lead_sources(*, user: User) -> list[str]:
    """The distinct sources of the leads `user` may see, for the filter."""
    return list(
        visible_leads(user).exclude(source="").order_by("source").values_list("source", flat=True).distinct()[:100]
    )


# --- Organizations and contacts -------------------------------------------------------------------------------------


def organization_list(*, user: User, text: str = "") -> QuerySet[Organization]:
    """Organizations `user` may see, by name, narrowed by a text in the name (a plain `icontains`, which the name's
    trigram index serves); each with the count and amount of its open deals the user may see."""
    organizations = visible_organizations(user).select_related("owner")
    text = text.strip()
    if text:
        organizations = organizations.filter(name__icontains=text)
    open_deals = visible_deals(user).filter(organization=OuterRef("pk"), status=DealStatus.OPEN).order_by()
    return organizations.annotate(
        open_deal_count=Coalesce(
            Subquery(open_deals.values("organization").annotate(n=Count("id")).values("n")),
            0,
            output_field=models.IntegerField(),
        ),
        open_deal_amount=Coalesce(
            Subquery(open_deals.values("organization").annotate(total=Sum("amount")).values("total")),
            Decimal(0),
            output_field=models.DecimalField(),
        ),
    ).order_by("name", "id")


def with_organization_shown(*, user: User, contacts: QuerySet[Contact]) -> QuerySet[Contact]:
    """`contacts` each with `organization_shown`: whether `user` may see the contact's organization (a contact
    visible through a deal may work at an organization the user may not see, whose name stays hidden)."""
    return contacts.annotate(
        organization_shown=Exists(visible_organizations(user).filter(pk=OuterRef("organization_id")))
    )


def contact_list(*, user: User, text: str = "") -> QuerySet[Contact]:
    """Contacts `user` may see, by name, narrowed by a text in first name, last name or email (plain `icontains`)."""
    contacts = with_organization_shown(
        user=user, contacts=visible_contacts(user).select_related("organization", "owner")
    )
    text = text.strip()
    if text:
        contacts = contacts.filter(
            Q(first_name__icontains=text) | Q(last_name__icontains=text) | Q(email__icontains=text)
        )
    return contacts.order_by("last_name", "first_name", "id")


@dataclass(frozen=True)
class DealTotals:
    """Amounts of a set of deals by status, in one currency: the open pipeline, won and lost."""

    currency: str
    open_count: int
    open_amount: Decimal
    won_count: int
    won_amount: Decimal
    lost_count: int
    lost_amount: Decimal


def deal_totals(*, deals: QuerySet[Deal]) -> list[DealTotals]:
    """Count and amount of `deals` that are open, won and lost, one row per currency (amounts in different
    currencies are never added up), the most used currency first. One query."""

    def amount(status: str) -> Sum:
        return Sum("amount", filter=Q(status=status), default=Decimal(0))

    rows = (
        deals.order_by()
        .values("currency")
        .annotate(
            open_count=Count("id", filter=Q(status=DealStatus.OPEN)),
            open_amount=amount(DealStatus.OPEN),
            won_count=Count("id", filter=Q(status=DealStatus.WON)),
            won_amount=amount(DealStatus.WON),
            lost_count=Count("id", filter=Q(status=DealStatus.LOST)),
            lost_amount=amount(DealStatus.LOST),
            deals=Count("id"),
        )
        .order_by("-deals", "currency")
    )
    return [DealTotals(**{key: value for key, value in row.items() if key != "deals"}) for row in rows]


# How many deals and activities a customer's page lists (its totals count every deal).
CUSTOMER_PAGE_ROWS = 50


@dataclass
class CustomerRecord:
    """What an organization's or a contact's page shows: the deals the user may see (open, closed), their totals,
    the planned and done activities on them and on the leads of the customer, and a timeline of what happened."""

    open_deals: list[Deal]
    closed_deals: list[Deal]
    totals: list[DealTotals]
    planned: list[Activity]
    timeline: list[dict]


def _customer_record(*, deals: QuerySet[Deal], leads: QuerySet[Lead]) -> CustomerRecord:
    """The deals and activities of a customer, given its visible deals and leads: seven queries whatever their
    number."""
    deals = deals.select_related("stage", "owner", "lost_reason", "contact", "organization")
    open_deals = list(deals.filter(status=DealStatus.OPEN).order_by("expected_close_date", "-id")[:CUSTOMER_PAGE_ROWS])
    closed_deals = list(deals.exclude(status=DealStatus.OPEN).order_by("-closed_at", "-id")[:CUSTOMER_PAGE_ROWS])
    # The ids as lists, not subqueries: PostgreSQL answers `deal_id IN (…) OR lead_id IN (…)` of literal ids with
    # its two activity indexes, while an OR of two subqueries makes it scan every activity.
    deal_ids, lead_ids = list(deals.values_list("pk", flat=True)), list(leads.values_list("pk", flat=True))
    activities = Activity.objects.filter(Q(deal_id__in=deal_ids) | Q(lead_id__in=lead_ids)).select_related(
        "owner", "deal", "lead"
    )
    planned = list(activities.filter(done_at__isnull=True).order_by("due_at", "id")[:CUSTOMER_PAGE_ROWS])
    done = list(activities.filter(done_at__isnull=False).order_by("-done_at", "-id")[:CUSTOMER_PAGE_ROWS])
    events = [{"at": activity.done_at, "kind": "activity", "activity": activity} for activity in done]
    for deal in [*open_deals, *closed_deals]:
        events.append({"at": deal.created_at, "kind": "created", "deal": deal})
        if deal.closed_at is not None:
            events.append({"at": deal.closed_at, "kind": deal.status, "deal": deal})
    events.sort(key=lambda event: event["at"], reverse=True)
    return CustomerRecord(
        open_deals=open_deals,
        closed_deals=closed_deals,
        totals=deal_totals(deals=deals),
        planned=planned,
        timeline=events[:CUSTOMER_PAGE_ROWS],
    )


def organization_record(*, user: User, organization: Organization) -> CustomerRecord:
    """An organization's page: its deals and leads that `user` may see, their totals, activities and timeline
    (callers fetch `organization` through `visible_organizations`)."""
    return _customer_record(
        deals=visible_deals(user).filter(organization=organization),
        leads=visible_leads(user).filter(organization=organization),
    )


def contact_record(*, user: User, contact: Contact) -> CustomerRecord:
    """A contact's page: the deals and leads they are the contact of that `user` may see, with totals, activities
    and timeline (callers fetch `contact` through `visible_contacts`)."""
    return _customer_record(
        deals=visible_deals(user).filter(contact=contact),
        leads=visible_leads(user).filter(contact=contact),
    )


def organization_contacts(*, user: User, organization: Organization) -> QuerySet[Contact]:
    """The contacts at `organization` that `user` may see, by name."""
    return visible_contacts(user).filter(organization=organization).order_by("last_name", "first_name", "id")


# --- The deal table (/deals/) ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DealColumn:
    """A column of the deal table: what it reads (`lookups`, paths of `QuerySet.values()`) and how its value is
    made of them. The page and its CSV export both go through `value`, so the file holds what the page shows."""

    key: str
    label: str
    lookups: tuple[str, ...]
    combine: Callable[[dict], Any] | None = None

    def value(self, row: dict) -> Any:
        return self.combine(row) if self.combine else row[self.lookups[0]]


def _person(row: dict) -> str:
    return f"{row['contact__first_name'] or ''} {row['contact__last_name'] or ''}".strip()


DEAL_TABLE_COLUMNS = {
    column.key: column
    for column in (
        DealColumn("title", "Title", ("title",)),
        DealColumn("pipeline", "Pipeline", ("pipeline__name",)),
        DealColumn("stage", "Stage", ("stage__name",)),
        DealColumn("status", "Status", ("status",)),
        DealColumn("owner", "Owner", ("owner__username",)),
        DealColumn("organization", "Organization", ("organization__name",)),
        DealColumn("contact", "Contact", ("contact__first_name", "contact__last_name"), _person),
        DealColumn("amount", "Amount", ("amount",)),
        DealColumn("currency", "Currency", ("currency",)),
        DealColumn("expected_close_date", "Expected close", ("expected_close_date",)),
        DealColumn("forecast_category", "Forecast category", ("forecast_category",)),
        DealColumn("source", "Source", ("source",)),
        DealColumn("created_at", "Created", ("created_at",)),
        DealColumn("updated_at", "Updated", ("updated_at",)),
        DealColumn("closed_at", "Closed", ("closed_at",)),
    )
}
DEFAULT_DEAL_TABLE_COLUMNS = ("title", "stage", "owner", "organization", "amount", "expected_close_date")
# The keys the table sorts by: the API list's `ordering_fields`, each served by an index of Deal.Meta (with the id
# as tie-breaker), so that a page is read from the index rather than every matching deal sorted.
DEAL_TABLE_SORTS = ("updated_at", "created_at", "amount", "expected_close_date")
DEFAULT_DEAL_TABLE_SORT = "-updated_at"
# Up to this many matching deals the table counts them exactly; beyond, it says "about N" from the planner's estimate
# instead of counting a million rows on every page.
DEAL_TABLE_EXACT_COUNT_LIMIT = 10_000


def deal_table_ordering(sort: str) -> list[str]:
    """The order of the table for `sort` (`amount`, `-amount`, …), ending with the id in the same direction."""
    return [sort, "-id" if sort.startswith("-") else "id"]


# Named from the pick lists' cache (`deal_table_names`), not joined: with the pipeline, stage and owner joined too,
# PostgreSQL weighed the orders of a seven-table join, 8-13 ms of planning on L for a 1.5 ms query; and not read in
# a query each either, three queries of every page for names that change a few times a day.
def _pipeline_names(user: User) -> QuerySet:
    return Pipeline.objects.values_list("pk", "name")


def _stage_names(user: User) -> QuerySet:
    return Stage.objects.values_list("pk", "name")


def _owner_names(user: User) -> QuerySet:
    return User.objects.values_list("pk", "username")


_DEAL_TABLE_NAMES = {"pipeline__name": _pipeline_names, "stage__name": _stage_names, "owner__username": _owner_names}
_DEAL_TABLE_NAMED = frozenset(lookup.partition("__")[0] for lookup in _DEAL_TABLE_NAMES)


def deal_table_rows(deals: QuerySet[Deal], columns: list[DealColumn]) -> QuerySet:
    """`deals` as the rows `columns` show, in one query whatever their number: named tuples (`values_list`) of the
    id, title and currency, the sort keys a cursor is made of, the columns' fields and their organization's and
    contact's (joined), and the ids of the pipeline, stage and owner (`deal_table_names` names them).

    Not model instances: a page's 153 (each deal with its organization and contact) were 1 ms of a manager's. Nor a
    deal's 29 columns: its search text and notes among them."""
    lookups = {lookup for column in columns for lookup in column.lookups}
    relations = {lookup.split("__")[0] for lookup in lookups if "__" in lookup}
    named = relations & _DEAL_TABLE_NAMED
    sort_keys = [key.lstrip("-") for key in deals.query.order_by]
    fields = {"id", "title", "currency", *sort_keys, *(f"{relation}_id" for relation in named)}
    fields |= {lookup for lookup in lookups if lookup.split("__")[0] not in named}
    return deals.values_list(*sorted(fields), named=True)


def deal_table_names(page: list, columns: list[DealColumn], pick_lists: PickLists) -> dict[str, dict]:
    """Per lookup of `columns` into a deal's pipeline, stage or owner (`stage__name`): {id: its value} for every id
    of `page`. From `pick_lists`, which reads them once per version of their tables; one made since the page read
    that version (a stage added a moment ago) from its table."""
    names = {}
    for lookup in sorted({lookup for column in columns for lookup in column.lookups} & _DEAL_TABLE_NAMES.keys()):
        relation, _, shown = lookup.partition("__")
        known = pick_lists.names(_DEAL_TABLE_NAMES[lookup])
        missing = {getattr(deal, f"{relation}_id") for deal in page} - known.keys() - {None}
        if missing:
            model = Deal._meta.get_field(relation).related_model
            known = {**known, **dict(model.objects.filter(pk__in=missing).values_list("pk", shown))}
        names[lookup] = known
    return names


def deal_row_values(deal, columns: list[DealColumn], names: dict[str, dict]) -> list[Any]:
    """The values of `columns` for `deal` (a row of `deal_table_rows`, its pipeline, stage and owner named by
    `names`: `deal_table_names`), as an exported row of it would hold."""
    row = {}
    for column in columns:
        for lookup in column.lookups:
            if lookup in names:
                row[lookup] = names[lookup].get(getattr(deal, f"{lookup.partition('__')[0]}_id"))
                continue
            row[lookup] = getattr(deal, lookup)
    return [column.value(row) for column in columns]


@dataclass(frozen=True)
class RowCount:
    """How many rows match: exact up to a limit, else the planner's estimate (`exact` False: "about N"), or with
    `more_than` the limit alone, when the planner put fewer than were counted; `amount`, their summed amount, only
    when exact (the totals row the dashboard's drill-down numbers are checked against)."""

    count: int
    exact: bool
    amount: Decimal | None = None
    more_than: bool = False


# Narrowed by the visibility alone (`deal_count`'s `narrowed` False), a count the planner puts above this many times the
# exact limit is taken from its estimate without counting: its estimate of an owner list or of the whole table is
# read from the column's statistics, and reading the limit's 10,001 index entries only to learn that there are more
# was 2-3 ms of PostgreSQL and 1.6 ms of Python on every default view on L.
TRUSTED_ESTIMATE_FACTOR = 3


def deal_count(deals: QuerySet[Deal], *, limit: int | None = None, narrowed: bool = True) -> RowCount:
    """The number of `deals`: counted when at most `limit` (`DEAL_TABLE_EXACT_COUNT_LIMIT`; a count that stops
    after `limit` + 1 rows), else PostgreSQL's estimate of the query's rows, which costs a plan, not a scan.
    `narrowed` False says `deals` are the visibility's alone (no filter, no search): the plan comes first then,
    and an estimate above `TRUSTED_ESTIMATE_FACTOR` times `limit` is not counted."""
    limit = DEAL_TABLE_EXACT_COUNT_LIMIT if limit is None else limit
    estimate = None if narrowed else _estimated_rows(deals)
    if estimate is not None and estimate > TRUSTED_ESTIMATE_FACTOR * limit:
        return RowCount(estimate, False)
    # One query for both: the count and the sum over at most `limit` + 1 rows. `COUNT(*)`, not of the id, so that
    # the rows need only the amount: the visibility, pipeline, stage and status filters are then answered from an
    # index that holds it (`deal_owner_stage_updated_idx`, `deal_stage_idx`) without visiting the table.
    totals = deals.order_by()[: limit + 1].aggregate(counted=Count("*"), amount=Sum("amount"))
    counted = totals["counted"]
    if counted <= limit:
        return RowCount(counted, True, totals["amount"] or Decimal(0))
    estimate = _estimated_rows(deals) if estimate is None else estimate
    if estimate > limit:
        return RowCount(estimate, False)
    # More were counted than the planner thinks there are (it takes a pipeline and a stage for independent): it
    # would be "about 10,001" for 11,734.
    return RowCount(limit, False, more_than=True)


def _estimated_rows(deals: QuerySet[Deal]) -> int:
    # The plan of the ids alone: its row estimate is the same, and the statement costs less to build and plan.
    plan = json.loads(deals.order_by().values("pk").explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


def saved_deal_views(*, user: User) -> QuerySet[SavedDealView]:
    """The deal tables `user` saved, by name (each user sees only their own)."""
    return SavedDealView.objects.filter(owner=user).order_by("name", "id")
