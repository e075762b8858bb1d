"""The pipeline waterfall and slippage over the deal history (SPEC §3a, `forecasting.selectors`).

The property test makes random histories through the services (tests.pipeline.test_field_history's steps and
replay), keeps each deal's state after every step in plain Python, and checks for random A < B and P, per group:
each deal in open(P, A) or open(P, B) of the group is in exactly one bucket, the one a plain-Python reading of
SPEC §3a gives from the replayed states, and the identity holds to the cent and in counts.
"""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecasting import selectors
from forecasting.models import PeriodKind
from forecasting.periods import Period
from pipeline import selectors as pipeline_selectors
from pipeline import services
from tests.factories import make_pipeline
from tests.pipeline.test_field_history import FREE_STAGES, Replay, clock, run, steps

pytestmark = pytest.mark.django_db

ZERO = Decimal("0")


@pytest.fixture
def free_pipeline(db):
    return make_pipeline(name="Free", stages=FREE_STAGES)


def in_pipeline(state, period, group_of):
    """(group, amount) when the replayed `state` is in the open pipeline of `period`, else None."""
    if state is None or state[2] != "open" or state[6] is None or not period.start <= state[6] < period.end:
        return None
    return group_of(state), state[4] or ZERO


def expected_buckets(before: dict, after: dict, period: Period, group_of) -> dict:
    """{(group, deal): (bucket, amount)} by the first rule of SPEC §3a that matches, in plain Python."""
    found = {}
    for pk in set(before) | set(after):
        a, b = before.get(pk), after.get(pk)
        in_a, in_b = in_pipeline(a, period, group_of), in_pipeline(b, period, group_of)
        groups = {g for g in (in_a and in_a[0], in_b and in_b[0]) if g is not False and g is not None}
        groups |= {None} if (in_a and in_a[0] is None) or (in_b and in_b[0] is None) else set()
        for group in groups:
            here_a = in_a is not None and in_a[0] == group
            here_b = in_b is not None and in_b[0] == group
            if here_a and here_b:
                diff = in_b[1] - in_a[1]
                bucket = "amount_up" if diff > 0 else "amount_down" if diff < 0 else "unchanged"
                found[group, pk] = (bucket, abs(diff))
            elif here_b:
                if a is None:
                    bucket = "created"
                elif a[2] != "open":
                    bucket = "reopened"
                elif group_of(a) != group:
                    bucket = "reassigned_in"
                else:
                    bucket = "pulled_in"
                found[group, pk] = (bucket, in_b[1])
            elif here_a:
                if b is None:
                    bucket = "deleted"
                elif b[2] in ("won", "lost"):
                    bucket = b[2]
                elif group_of(b) != group:
                    bucket = "reassigned_out"
                elif b[6] is None or b[6] >= period.end:
                    bucket = "pushed_out"
                else:
                    bucket = "pulled_out"
                found[group, pk] = (bucket, in_a[1])
    return found


# A few deals first, then random changes of them (the field history test's steps).
creates = st.lists(
    st.tuples(
        st.just("create"),
        st.integers(0, 2),
        st.integers(0, 10**6).map(lambda c: Decimal(c) / 100),
        st.integers(-30, 120),
    ),
    min_size=2,
    max_size=5,
)
histories = st.tuples(creates, steps, steps).map(lambda parts: parts[0] + parts[1] + parts[2])


def period_of(history, kind, pick) -> Period:
    """A month or quarter holding one of the close dates the history sets (most deals' periods differ else)."""
    days = [step[-1] for step in history if step[0] in ("create", "close_date") and step[-1] is not None]
    day = days[pick % len(days)] if days else pick
    return Period.containing(date(2026, 12, 1) + timedelta(days=day), kind)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=histories,
    kind=st.sampled_from([PeriodKind.MONTH, PeriodKind.QUARTER]),
    pick=st.integers(0, 400),
    picks=st.tuples(st.integers(0, 100), st.integers(0, 100)),
)
def test_each_deal_lands_in_one_bucket_and_the_waterfall_adds_up_to_the_cent(
    org, free_pipeline, lost_reason, history, kind, pick, picks
):
    period = period_of(history, kind, pick)
    with transaction.atomic():
        owners = [org.rep, org.teammate, org.other_rep]
        team_of = {user.pk: user.team_id for user in owners}
        replay = Replay(free_pipeline, owners)
        moments = [(clock(), {})]
        for step in history:
            run(step, replay, lost_reason)
            moments.append((clock(), {pk: replay.state(pk) for pk in replay.deals}))
        # Two distinct moments, A before B (there are at least two: before and after the first step).
        # A is as often as not after the first deals were made, so that deals leave the pipeline as well as enter.
        made = next((n for n, step in enumerate(history) if step[0] != "create"), len(history))
        first = made if picks[0] % 2 and made < len(moments) - 1 else 0
        i = first + picks[0] // 2 % (len(moments) - 1 - first)
        j = i + 1 + picks[1] % (len(moments) - 1 - i)
        (at_a, before), (at_b, after) = moments[i], moments[j]
        groupings = {
            "company": lambda state: None,
            "owner": lambda state: state[3],
            "team": lambda state: team_of[state[3]],
            "pipeline": lambda state: state[0],
        }
        for group, group_of in groupings.items():
            expected = expected_buckets(before, after, period, group_of)
            rows = selectors.waterfall(user=org.admin, period=period, at_from=at_a, at_to=at_b, group=group)
            assert {row.key for row in rows} == {key for key, _ in expected}, (group, history)
            for row in rows:
                mine = {pk: value for (key, pk), value in expected.items() if key == row.key}
                for bucket in row.buckets:
                    in_bucket = {pk: amount for pk, (name, amount) in mine.items() if name == bucket.name}
                    assert bucket.count == len(in_bucket), (group, bucket, history)
                    assert bucket.amount == sum(in_bucket.values(), ZERO), (group, bucket, history)
                    listed = selectors.waterfall_deals(
                        user=org.admin,
                        period=period,
                        at_from=at_a,
                        at_to=at_b,
                        group=group,
                        key=row.key,
                        bucket=bucket.name,
                    )
                    assert {deal.deal_id: deal.amount for deal in listed} == in_bucket
                opened = [in_pipeline(s, period, group_of) for s in before.values()]
                closing = [in_pipeline(s, period, group_of) for s in after.values()]
                assert row.open_from_count == sum(1 for x in opened if x and x[0] == row.key)
                assert row.open_from_amount == sum((x[1] for x in opened if x and x[0] == row.key), ZERO)
                assert row.open_to_amount == sum((x[1] for x in closing if x and x[0] == row.key), ZERO)
                sign = {"in": 1, "out": -1}
                amounts = {b.name: b.amount for b in row.buckets}
                total = row.open_from_amount + sum(sign.get(b.side, 0) * b.amount for b in row.buckets)
                total += amounts["amount_up"] - amounts["amount_down"]
                assert total == row.open_to_amount, (group, history)
                counts = row.open_from_count + sum(sign.get(b.side, 0) * b.count for b in row.buckets)
                assert counts == row.open_to_count
        transaction.set_rollback(True)


JANUARY = Period.parse("2027-01")


def deal_in(org, pipeline, amount="100.00", close=date(2027, 1, 15), owner=None):
    owner = owner or org.rep
    return services.create_deal(
        actor=owner, title="D", owner=owner, pipeline=pipeline, amount=Decimal(amount), expected_close_date=close
    )


def test_every_bucket_of_a_known_history(org, free_pipeline, lost_reason):
    stages = {s.name: s for s in free_pipeline.stages.all()}
    rep = org.rep
    _unchanged, up, down, won, lost, deleted, moved, pushed, pulled = (deal_in(org, free_pipeline) for _ in range(9))
    reopened = deal_in(org, free_pipeline, amount="40.00")
    services.move_deal(deal=reopened, stage=stages["Lost"], actor=rep, lost_reason=lost_reason)
    pulled_in = deal_in(org, free_pipeline, amount="30.00", close=date(2027, 2, 3))
    at_a = clock()
    services.update_deal(deal=up, actor=rep, amount=Decimal("150.00"))
    services.update_deal(deal=down, actor=rep, amount=Decimal("80.00"))
    services.move_deal(deal=won, stage=stages["Won"], actor=rep)
    services.move_deal(deal=lost, stage=stages["Lost"], actor=rep, lost_reason=lost_reason)
    deleted_id = deleted.pk
    deleted.delete()
    services.update_deal(deal=moved, actor=rep, owner=org.other_rep)
    services.update_deal(deal=pushed, actor=rep, expected_close_date=date(2027, 3, 1))
    services.update_deal(deal=pulled, actor=rep, expected_close_date=date(2026, 12, 20))
    deal_in(org, free_pipeline, amount="25.00")  # created
    services.move_deal(deal=reopened, stage=stages["Proposal"], actor=rep)
    services.update_deal(deal=pulled_in, actor=rep, expected_close_date=date(2027, 1, 31))
    at_b = clock()

    def read(group, key=None):
        rows = selectors.waterfall(user=org.admin, period=JANUARY, at_from=at_a, at_to=at_b, group=group)
        row = next(row for row in rows if row.key == key)
        return row, {b.name: (b.count, b.amount) for b in row.buckets if b.count}

    company, buckets = read("company")
    assert (company.open_from_count, company.open_from_amount) == (9, Decimal("900.00"))
    assert buckets == {
        "created": (1, Decimal("25.00")),
        "reopened": (1, Decimal("40.00")),
        "pulled_in": (1, Decimal("30.00")),
        "won": (1, Decimal("100.00")),
        "lost": (1, Decimal("100.00")),
        "deleted": (1, Decimal("100.00")),
        "pushed_out": (1, Decimal("100.00")),
        "pulled_out": (1, Decimal("100.00")),
        "amount_up": (1, Decimal("50.00")),
        "amount_down": (1, Decimal("20.00")),
        "unchanged": (2, Decimal("0.00")),  # the kept buckets hold the difference
    }
    # 900 + 25 + 40 + 30 + 50 − 20 − 5 × 100 = 525: the two unchanged, 150, 80, and the three that came in.
    assert (company.open_to_count, company.open_to_amount) == (7, Decimal("525.00"))
    _, rep_buckets = read("owner", org.rep.pk)
    assert rep_buckets["reassigned_out"] == (1, Decimal("100.00"))
    _, other_buckets = read("owner", org.other_rep.pk)
    assert other_buckets == {"reassigned_in": (1, Decimal("100.00"))}
    listed = selectors.waterfall_deals(
        user=org.admin, period=JANUARY, at_from=at_a, at_to=at_b, group="company", key=None, bucket="deleted"
    )
    assert [(d.deal_id, d.title, d.to_stage_id) for d in listed] == [(deleted_id, None, None)]
    # A rep sees their own owner row only; the company row is an admin's.
    assert selectors.waterfall(user=org.rep, period=JANUARY, at_from=at_a, at_to=at_b, group="company") == []
    mine = selectors.waterfall(user=org.rep, period=JANUARY, at_from=at_a, at_to=at_b, group="owner")
    assert [row.key for row in mine] == [org.rep.pk]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories)
def test_pushes_per_deal_equal_a_plain_count_of_the_close_date_moves(org, free_pipeline, lost_reason, history):
    with transaction.atomic():
        replay = Replay(free_pipeline, [org.rep, org.teammate, org.other_rep])
        for step in history:
            run(step, replay, lost_reason)
        expected = {}
        for pk, changes in replay.changes.items():
            moves = [(old, new) for field, old, new, _ in changes if field == "expected_close_date"]
            pushes = [(new - old).days for old, new in moves if old is not None and new is not None and new > old]
            if pushes:
                expected[pk] = pipeline_selectors.Pushes(len(pushes), sum(pushes))
        # Deleted deals keep their history: their pushes are counted too.
        assert pipeline_selectors.deal_pushes(replay.created) == expected, history
        transaction.set_rollback(True)


def test_a_manager_reads_the_rows_of_their_team_and_its_members_as_the_admin_does(org, free_pipeline, lost_reason):
    # SPEC §2 and the metric rows' rule: the company row adds up everyone's deals, so it is an admin's; a manager's
    # level is their team's row and its members' rows. The manager's read is limited to their owners' deals: the
    # deals that crossed the team's border between A and B must still land in their buckets.
    stages = {s.name: s for s in free_pipeline.stages.all()}
    stays, leaves, won = (deal_in(org, free_pipeline, amount=a) for a in ("100.00", "200.00", "300.00"))
    joins = deal_in(org, free_pipeline, amount="50.00", owner=org.other_rep)
    deal_in(org, free_pipeline, amount="70.00", owner=org.other_rep)  # the other team's throughout
    at_a = clock()
    services.update_deal(deal=leaves, actor=org.rep, owner=org.other_rep)
    services.update_deal(deal=joins, actor=org.other_rep, owner=org.teammate)
    services.update_deal(deal=stays, actor=org.rep, amount=Decimal("120.00"))
    services.move_deal(deal=won, stage=stages["Won"], actor=org.rep)
    deal_in(org, free_pipeline, amount="10.00", owner=org.teammate)  # created
    at_b = clock()

    def read(user, group):
        rows = selectors.waterfall(user=user, period=JANUARY, at_from=at_a, at_to=at_b, group=group)
        return {row.key: row for row in rows}

    assert read(org.manager, "company") == {}
    teams = read(org.manager, "team")
    assert list(teams) == [org.team.pk]
    assert teams[org.team.pk] == read(org.admin, "team")[org.team.pk]
    buckets = {b.name: (b.count, b.amount) for b in teams[org.team.pk].buckets if b.count}
    assert buckets == {
        "created": (1, Decimal("10.00")),
        "reassigned_in": (1, Decimal("50.00")),
        "won": (1, Decimal("300.00")),
        "reassigned_out": (1, Decimal("200.00")),
        "amount_up": (1, Decimal("20.00")),
    }
    assert (teams[org.team.pk].open_from_amount, teams[org.team.pk].open_to_amount) == (600, 180)
    owners = read(org.manager, "owner")
    everyone = read(org.admin, "owner")
    assert set(owners) == {org.rep.pk, org.teammate.pk}
    assert all(owners[key] == everyone[key] for key in owners)
    listed = selectors.waterfall_deals(
        user=org.manager,
        period=JANUARY,
        at_from=at_a,
        at_to=at_b,
        group="team",
        key=org.team.pk,
        bucket="reassigned_in",
    )
    assert [(deal.deal_id, deal.from_owner_id, deal.to_owner_id) for deal in listed] == [
        (joins.pk, org.other_rep.pk, org.teammate.pk)
    ]
