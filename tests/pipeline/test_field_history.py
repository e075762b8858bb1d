"""The deal field history (pipeline.field_history): written by the database on every path, read as of any instant.

The property test makes random histories through the services (and the ORM's delete and a raw SQL UPDATE), keeps
in plain Python what each deal should be after every step, and checks that `deals_as_of` at each step's instant
equals that replay, and that `deal_changes` lists exactly the changes the steps made, with who made them.
"""

import io
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import field_history, selectors, services
from pipeline.importing import import_csv
from pipeline.models import Deal, DealState, StageChange
from tests.factories import make_deal, make_pipeline, stage

pytestmark = pytest.mark.django_db

# Stages that require nothing, so that every random move is allowed.
FREE_STAGES = [
    ("Prospecting", "open", 10, [], "pipeline"),
    ("Proposal", "open", 60, [], "best_case"),
    ("Negotiation", "open", 80, [], "commit"),
    ("Won", "won", 100, [], "commit"),
    ("Lost", "lost", 0, [], "pipeline"),
]
CATEGORIES = [None, "pipeline", "best_case", "commit"]
amounts = st.one_of(st.none(), st.integers(0, 10**7).map(lambda cents: Decimal(cents) / 100))
close_days = st.one_of(st.none(), st.integers(-30, 400))
deal_index = st.integers(0, 7)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 2), amounts, close_days),
        st.tuples(st.just("move"), deal_index, st.integers(0, len(FREE_STAGES) - 1)),
        st.tuples(st.just("amount"), deal_index, amounts),
        st.tuples(st.just("close_date"), deal_index, close_days),
        st.tuples(st.just("owner"), deal_index, st.integers(0, 2)),
        st.tuples(st.just("category"), deal_index, st.sampled_from(CATEGORIES)),
        st.tuples(st.just("delete"), deal_index),
        st.tuples(st.just("raw_sql"), deal_index, st.integers(0, 10**6)),
    ),
    min_size=1,
    max_size=14,
)


def clock():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def as_of(user, at) -> dict[int, tuple]:
    rows = selectors.deals_as_of(user=user, at=at).values_list(
        "pk",
        "state_pipeline_id",
        "state_stage_id",
        "state_status",
        "state_owner_id",
        "state_amount",
        "state_currency",
        "state_expected_close_date",
        "state_forecast_category",
    )
    return {pk: tuple(state) for pk, *state in rows}


def recorded_as_of(at) -> dict[int, tuple]:
    """The history table read directly at `at`, deleted deals included."""
    rows = DealState.objects.filter(valid_from__lte=at).exclude(valid_to__lte=at)
    return {
        row.deal_id: (
            row.stage.pipeline_id,
            row.stage_id,
            row.stage.kind,
            row.owner_id,
            row.amount,
            row.currency,
            row.expected_close_date,
            row.forecast_category,
        )
        for row in rows.select_related("stage")
    }


class Replay:
    """What each deal should be, kept in plain Python from the steps alone (not from the database)."""

    def __init__(self, pipeline, owners):
        self.pipeline, self.owners = pipeline, owners
        self.stages = list(pipeline.stages.order_by("order"))
        self.deals: dict[int, dict] = {}  # alive deals: their fields
        self.created: list[int] = []  # every deal made, in order (deleted ones too)
        self.changes: dict[int, list[tuple]] = {}  # deal -> [(field, old, new, by)] in time order

    def state(self, pk: int) -> tuple:
        d = self.deals[pk]
        stage_ = d["stage"]
        category = d["override"] or stage_.forecast_category
        return (
            self.pipeline.pk,
            stage_.pk,
            stage_.kind,
            d["owner"],
            d["amount"],
            "USD",
            d["close"],
            category,
        )

    def change(self, pk: int, by, **new) -> None:
        before = self.state(pk)
        self.deals[pk].update(new)
        after = self.state(pk)
        names = ("stage", "owner", "amount", "currency", "expected_close_date", "forecast_category")
        positions = (1, 3, 4, 5, 6, 7)
        for name, position in zip(names, positions, strict=True):
            if before[position] != after[position]:
                self.changes[pk].append((name, before[position], after[position], by))


def close_date(days):
    return None if days is None else date(2026, 12, 1) + timedelta(days=days)


def run(step, replay: Replay, lost_reason):
    kind, *args = step
    owners, alive = replay.owners, [pk for pk in replay.created if pk in replay.deals]
    if kind == "create":
        owner, amount, days = owners[args[0]], args[1], close_date(args[2])
        deal = services.create_deal(
            actor=owner, title="D", owner=owner, pipeline=replay.pipeline, amount=amount, expected_close_date=days
        )
        replay.created.append(deal.pk)
        replay.changes[deal.pk] = []
        first = replay.stages[0]
        replay.deals[deal.pk] = {"stage": first, "owner": owner.pk, "amount": amount, "close": days, "override": None}
        return
    if not alive:
        return
    pk = alive[args[0] % len(alive)]
    deal, actor = Deal.objects.get(pk=pk), owners[0]
    if kind == "move":
        target = replay.stages[args[1]]
        if target.pk == deal.stage_id:
            return
        reason = lost_reason if target.kind == "lost" else None
        services.move_deal(deal=deal, stage=target, actor=actor, lost_reason=reason)
        replay.change(pk, actor.pk, stage=target)
    elif kind == "amount":
        services.update_deal(deal=deal, actor=actor, amount=args[1])
        replay.change(pk, actor.pk, amount=args[1])
    elif kind == "close_date":
        services.update_deal(deal=deal, actor=actor, expected_close_date=close_date(args[1]))
        replay.change(pk, actor.pk, close=close_date(args[1]))
    elif kind == "owner":
        services.update_deal(deal=deal, actor=actor, owner=owners[args[1]])
        replay.change(pk, actor.pk, owner=owners[args[1]].pk)
    elif kind == "category":
        services.update_deal(deal=deal, actor=actor, forecast_category_override=args[1])
        replay.change(pk, actor.pk, override=args[1])
    elif kind == "delete":
        deal.delete()
        del replay.deals[pk]
    elif kind == "raw_sql":
        amount = Decimal(args[1]) / 100
        with connection.cursor() as cursor:
            cursor.execute("UPDATE pipeline_deal SET amount = %s WHERE id = %s", [amount, pk])
        replay.change(pk, None, amount=amount)


@pytest.fixture
def free_pipeline(db):
    return make_pipeline(name="Free", stages=FREE_STAGES)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=steps)
def test_state_as_of_any_step_equals_replaying_the_steps(org, free_pipeline, lost_reason, history):
    with transaction.atomic():
        replay = Replay(free_pipeline, [org.rep, org.teammate, org.other_rep])
        start = clock()
        moments = []
        for step in history:
            run(step, replay, lost_reason)
            moments.append((clock(), {pk: replay.state(pk) for pk in replay.deals}))
        assert as_of(org.admin, start) == {}, "nothing existed before the first step"
        for at, expected in moments:
            # The selector lists the deals that exist still; the table keeps the deleted ones' history too.
            assert as_of(org.admin, at) == {pk: s for pk, s in expected.items() if pk in replay.deals}, history
            assert recorded_as_of(at) == expected, history
        for pk in replay.deals:
            changes = [
                (c.field, c.old, c.new, c.changed_by.pk if c.changed_by else None)
                for c in reversed(selectors.deal_changes(deal=Deal(pk=pk)))
            ]
            assert changes == replay.changes[pk]
        # A deleted deal keeps its history, closed at its deletion, with no open interval.
        for pk in set(replay.created) - set(replay.deals):
            assert DealState.objects.filter(deal_id=pk).exists()
            assert not DealState.objects.filter(deal_id=pk, valid_to__isnull=True).exists()
        transaction.set_rollback(True)


def test_history_rows_are_append_only_but_for_closing_the_open_interval(org, pipeline):
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("100"))
    services.update_deal(deal=deal, actor=org.rep, amount=Decimal("200"))
    closed, open_ = DealState.objects.filter(deal_id=deal.pk).order_by("valid_from", "id")
    for statement in (
        "UPDATE pipeline_dealstate SET amount = 1 WHERE id = %s",
        "UPDATE pipeline_dealstate SET valid_to = now() WHERE id = %s",
        "DELETE FROM pipeline_dealstate WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [closed.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE pipeline_dealstate SET amount = 1 WHERE id = %s", [open_.pk])
    assert DealState.objects.get(pk=closed.pk).amount == Decimal("100")


def test_an_import_records_the_history_with_the_importer_as_author(org, pipeline):
    csv = b"title,external_id,amount,expected_close_date\nAcme,acme-1,1500.00,2027-01-31\n"
    assert import_csv(kind="deals", stream=io.BytesIO(csv), actor=org.rep).created == 1
    csv = b"external_id,amount\nacme-1,2500.00\n"
    assert import_csv(kind="deals", stream=io.BytesIO(csv), actor=org.manager).updated == 1
    deal = Deal.objects.get(external_id="acme-1")
    [change] = selectors.deal_changes(deal=deal)
    assert (change.field, change.old, change.new, change.changed_by) == (
        "amount",
        Decimal("1500.00"),
        Decimal("2500.00"),
        org.manager,
    )


def test_the_back_fill_rebuilds_from_the_stage_history_and_the_audit_trail(org, pipeline):
    """What the migration does for deals made before the history existed: their intervals from the records."""
    deal = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("100"), expected_close_date="2027-01-31")
    deal = services.update_deal(deal=deal, actor=org.manager, amount=Decimal("250"))
    deal = services.move_deal(deal=deal, stage=stage(pipeline, "Qualification"), actor=org.rep)
    deal = services.update_deal(deal=deal, actor=org.rep, expected_close_date="2027-03-31")
    recorded = list(
        DealState.objects.filter(deal_id=deal.pk)
        .order_by("valid_from")
        .values_list("stage_id", "owner_id", "amount", "expected_close_date", "changed_by_id")
    )
    with connection.cursor() as cursor:
        written = field_history.rebuild(cursor, [deal.pk])
    rebuilt = list(
        DealState.objects.filter(deal_id=deal.pk)
        .order_by("valid_from")
        .values_list("stage_id", "owner_id", "amount", "expected_close_date", "changed_by_id")
    )
    assert written == 4
    assert rebuilt == recorded
    first_move = StageChange.objects.filter(deal=deal, from_stage__isnull=False).get()
    times = list(DealState.objects.filter(deal_id=deal.pk).order_by("valid_from").values_list("valid_from", flat=True))
    assert times[0] == deal.created_at and times[2] == first_move.changed_at


def test_an_imported_stage_history_gives_the_same_field_history_as_the_same_moves(org, pipeline):
    created = "2026-01-01T10:00:00+00:00"
    moves = [("Qualification", "2026-01-03T10:00:00+00:00"), ("Won", "2026-03-01T10:00:00+00:00")]
    native = services.create_deal(
        actor=org.rep, title="N", pipeline=pipeline, amount=Decimal("5"), created_at=datetime.fromisoformat(created)
    )
    for name, when in moves:
        at = datetime.fromisoformat(when)
        native = services.move_deal(deal=native, stage=stage(pipeline, name), actor=org.rep, at=at)
    deals = (
        f"external_id,title,stage,owner,amount,created_at,closed_at\nH-1,Imported,Won,rep,5,{created},{moves[-1][1]}\n"
    )
    assert import_csv(kind="deals", stream=io.BytesIO(deals.encode()), actor=org.rep).ok
    changes = f"deal,stage,changed_at,changed_by\nH-1,Prospecting,{created},rep\n" + "".join(
        f"H-1,{name},{when},rep\n" for name, when in moves
    )
    assert import_csv(kind="stage_changes", stream=io.BytesIO(changes.encode()), actor=org.rep).ok

    def intervals(deal_id):
        return list(
            DealState.objects.filter(deal_id=deal_id)
            .order_by("valid_from")
            .values_list("valid_from", "valid_to", "stage_id", "amount", "changed_by_id")
        )

    imported = Deal.objects.get(external_id="H-1")
    assert intervals(imported.pk) == intervals(native.pk)
    assert [row[0].isoformat() for row in intervals(imported.pk)] == [created, *(when for _name, when in moves)]


def test_an_imported_deal_with_a_dated_path_is_in_its_first_stage_until_it_moved(org, pipeline):
    csv = (
        "external_id,title,stage,owner,amount,created_at,closed_at\n"
        "W-1,Won long ago,Won,rep,900,2026-01-01T10:00:00Z,2026-03-01T10:00:00Z\n"
    )
    assert import_csv(kind="deals", stream=io.BytesIO(csv.encode()), actor=org.manager).ok
    deal = Deal.objects.get(external_id="W-1")

    def stage_at(when: str):
        return selectors.deals_as_of(user=org.admin, at=datetime.fromisoformat(when)).get(pk=deal.pk).state_stage_id

    assert stage_at("2026-02-01T00:00:00+00:00") == stage(pipeline, "Prospecting").pk
    assert stage_at("2026-03-02T00:00:00+00:00") == stage(pipeline, "Won").pk
    assert not selectors.deals_as_of(user=org.admin, at=datetime.fromisoformat("2025-12-31T00:00:00+00:00")).exists()
    first = DealState.objects.filter(deal_id=deal.pk).order_by("valid_from").first()
    assert first.changed_by == org.manager  # the importer made the deal


# The changes of a move (its stage, and its category when the stage gives it) go in one file.
FILE_OF = {
    "stage": "moves",
    "forecast_category": "moves",
    "amount": "amounts",
    "currency": "amounts",
    "expected_close_date": "close dates",
    "owner": "owners",
}


def _cell(field: str, value, stages_by_pk, users_by_pk) -> str:
    """A value of `deal_changes` written as the `field_changes` import reads it."""
    if value is None:
        return ""
    if field == "stage":
        return stages_by_pk[value]
    if field == "owner":
        return users_by_pk[value]
    return value.isoformat() if isinstance(value, date) else str(value)


def _numbers(admin, deal_ids: list[int], moments: list[datetime]) -> dict:
    """Everything read from the history: as of each moment, the waterfall between moments, the pushes."""
    from forecasting import selectors as forecast
    from forecasting.periods import Period

    position = {pk: index for index, pk in enumerate(deal_ids)}  # deals by creation order, not by id
    pairs = [(moments[0], moments[-1]), (moments[len(moments) // 2], moments[-1])]
    periods = [Period.parse(text) for text in ("2026-Q4", "2027-Q1", "2027-Q2", "2027")]
    return {
        "as_of": [{position[pk]: state for pk, state in as_of(admin, at).items()} for at in moments],
        "waterfall": [
            forecast.waterfall(user=admin, period=period, at_from=a, at_to=b, group=group)
            for period in periods
            for a, b in pairs
            if a < b
            for group in ("owner", "company")
        ],
        "slippage": [
            forecast.slippage(user=admin, period=period, group="owner", now=moments[-1]) for period in periods
        ],
        "pushes": {position[pk]: pushes for pk, pushes in selectors.deal_pushes(deal_ids).items()},
        "intervals": [
            list(
                DealState.objects.filter(deal_id=pk)
                .order_by("valid_from", "id")
                .values_list("valid_from", "valid_to", "changed_by_id", *field_history.STATE_COLUMNS)
            )
            for pk in deal_ids
        ],
        "moves": [
            list(
                StageChange.objects.filter(deal_id=pk)
                .order_by("changed_at", "id")
                .values_list("changed_at", "from_stage_id", "to_stage_id", "changed_by_id")
            )
            for pk in deal_ids
        ],
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=steps, order=st.permutations(sorted(set(FILE_OF.values()))))
def test_a_history_imported_as_field_changes_reads_like_the_same_history_made_in_the_app(
    org, free_pipeline, lost_reason, history, order
):
    """The same random history made through the services, then (rolled back) by creating each deal as it started
    and importing its changes, a file per group of fields in a random order: every number read from the history
    (as of each step, which equals the replay, the waterfall between steps, slippage, pushes, the intervals and the
    stage changes) is the same."""
    history = [step for step in history if step[0] != "delete"]  # an import changes deals that exist
    owners = [org.rep, org.teammate, org.other_rep]
    stages_by_pk = {s.pk: s.name for s in free_pipeline.stages.all()}
    users_by_pk = {u.pk: u.username for u in (*owners, org.admin, org.manager)}
    with transaction.atomic():
        with transaction.atomic():
            replay = Replay(free_pipeline, owners)
            moments = []
            for step in history:
                run(step, replay, lost_reason)
                moments.append(clock())
            if not replay.created:
                return
            native = _numbers(org.admin, replay.created, moments)
            starts = {}
            for pk in replay.created:
                first = DealState.objects.filter(deal_id=pk).order_by("valid_from", "id").first()
                starts[pk] = first
            changes = {pk: list(reversed(selectors.deal_changes(deal=Deal(pk=pk)))) for pk in replay.created}
            for at, expected in zip(moments, [m for m in native["as_of"]], strict=True):
                assert as_of(org.admin, at) == {replay.created[i]: s for i, s in expected.items()}
            transaction.set_rollback(True)
        twins = []
        files = {group: [] for group in FILE_OF.values()}
        for index, pk in enumerate(replay.created):
            first = starts[pk]
            twin = services.create_deal(
                actor=first.owner,
                title="D",
                owner=first.owner,
                pipeline=free_pipeline,
                amount=first.amount,
                expected_close_date=first.expected_close_date,
                created_at=first.valid_from,
                external_id=f"T-{index}",
            )
            twins.append(twin.pk)
            for change in changes[pk]:
                old, new = (_cell(change.field, v, stages_by_pk, users_by_pk) for v in (change.old, change.new))
                by = users_by_pk[change.changed_by.pk] if change.changed_by else ""
                files[FILE_OF[change.field]].append(
                    f"T-{index},{change.field},{old},{new},{change.at.isoformat()},{by}"
                )
        # One file per group of fields, in a random order: a later file's changes split the intervals the earlier
        # ones made and hold through them.
        for group in order:
            if files[group]:
                csv = "\n".join(["deal,field,old_value,new_value,changed_at,changed_by", *files[group]])
                result = import_csv(kind="field_changes", stream=io.BytesIO(csv.encode()), actor=org.admin)
                assert result.ok, (result.errors, history)
        imported = _numbers(org.admin, twins, moments)
        # The twins have their own ids: compare the intervals and moves without them.
        assert imported == native, history
        transaction.set_rollback(True)
