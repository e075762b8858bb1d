"""forecasting.periods: the one Period type that the API, the dashboard, the Quotas page and the refresh share."""

from datetime import date, timedelta

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from forecasting.periods import KINDS, Period, PeriodError, key_of, start_of


@pytest.mark.parametrize(
    ("text", "kind", "start", "end"),
    [
        ("2026-11", "month", date(2026, 11, 1), date(2026, 12, 1)),
        ("2026-12", "month", date(2026, 12, 1), date(2027, 1, 1)),
        ("2026-Q4", "quarter", date(2026, 10, 1), date(2027, 1, 1)),
        ("2026-Q1", "quarter", date(2026, 1, 1), date(2026, 4, 1)),
        ("2026", "year", date(2026, 1, 1), date(2027, 1, 1)),
        ("0001-01", "month", date(1, 1, 1), date(1, 2, 1)),
        ("9999-11", "month", date(9999, 11, 1), date(9999, 12, 1)),
    ],
)
def test_parse_reads_the_three_ways_the_api_writes_a_period(text, kind, start, end):
    assert Period.parse(text) == Period(kind, start, end)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("26-11", "Write a period as 2026-11, 2026-Q4 or 2026."),
        ("2026-Q5", "Write a period as 2026-11, 2026-Q4 or 2026."),
        ("2026-q4", "Write a period as 2026-11, 2026-Q4 or 2026."),
        ("2026-11-01", "Write a period as 2026-11, 2026-Q4 or 2026."),
        ("2026\n", "Write a period as 2026-11, 2026-Q4 or 2026."),
        ("", "Write a period as 2026-11, 2026-Q4 or 2026."),
        ("0000", "The year must be at least 1."),
        ("2026-13", "The month must be 01 to 12."),
        ("2026-00", "The month must be 01 to 12."),
        ("9999-12", "The period must end before the year 10000."),
        ("9999-Q4", "The period must end before the year 10000."),
        ("9999", "The period must end before the year 10000."),
    ],
)
def test_parse_refuses_anything_else_saying_why(text, message):
    with pytest.raises(PeriodError) as refused:
        Period.parse(text)
    assert str(refused.value) == message


def test_a_period_knows_its_key_label_neighbours_and_kind():
    november = Period.parse("2026-11")
    assert (november.key, november.label) == ("2026-11", "November 2026")
    assert (november.previous().key, november.next().key) == ("2026-10", "2026-12")
    assert Period.parse("2026-Q1").previous() == Period.parse("2025-Q4")
    assert Period.parse("2026-Q4").next().label == "Q1 2027"
    assert (Period.parse("2026").label, Period.parse("2026").next().key) == ("2026", "2027")
    assert Period.parse("2026").kind.label == "Year"  # a PeriodKind, as the snapshots' period_kind


def test_a_period_is_a_value_that_refuses_to_be_built_wrong():
    assert {Period.parse("2026-Q4"), Period.containing(date(2026, 11, 15), "quarter")} == {Period.parse("2026-Q4")}
    with pytest.raises(ValueError):
        Period("quarter", date(2026, 11, 1), date(2027, 2, 1))  # does not start a quarter
    with pytest.raises(ValueError):
        Period("month", date(2026, 11, 1), date(2026, 11, 30))  # the end is the first day after
    with pytest.raises(ValueError):
        Period("all", date(2026, 1, 1), date(2027, 1, 1))  # not a calendar period


@given(st.dates(min_value=date(1, 1, 1), max_value=date(9998, 12, 31)), st.sampled_from(KINDS))
def test_containing_holds_the_day_and_its_key_reads_back(day, kind):
    period = Period.containing(day, kind)
    assert period.kind == kind and period.start <= day < period.end
    assert period.start == start_of(day, kind) and period.key == key_of(kind, period.start)
    assert period.next().start == period.end and period.next().previous() == period
    if day.year >= 1000:  # strftime writes years before 1000 without leading zeros
        assert Period.parse(period.key) == period


def test_start_of_names_the_last_periods_a_date_can_reach():
    last_day = date(9999, 12, 31)
    assert [start_of(last_day, kind) for kind in KINDS] == [date(9999, 12, 1), date(9999, 10, 1), date(9999, 1, 1)]
    assert [key_of(kind, start_of(last_day, kind)) for kind in KINDS] == ["9999-12", "9999-Q4", "9999"]


def test_current_is_the_period_holding_today():
    today = timezone.localdate()
    for kind in KINDS:
        period = Period.current(kind)
        assert period.start <= today < period.end
        assert period.start > today - timedelta(days=366)
