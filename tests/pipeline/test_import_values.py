"""Reading cells: amounts, dates and date-times as people write them."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from pipeline.importing.values import CellError, parse_amount, parse_date, parse_datetime


@pytest.mark.parametrize(
    ("cell", "amount"),
    [
        ("1234", "1234.00"),
        ("1,234", "1234.00"),
        ("1.234", "1234.00"),
        ("1,234,567.8", "1234567.80"),
        ("1.234.567,89", "1234567.89"),
        ("1234,5", "1234.50"),
        ("$ 12,000.00", "12000.00"),
        ("12 000 €", "12000.00"),
        ("EUR 99.9", "99.90"),
        ("£1'000", "1000.00"),
        ("0", "0.00"),
        (".5", "0.50"),
    ],
)
def test_amounts_in_their_usual_spellings(cell, amount):
    assert parse_amount(cell) == Decimal(amount)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("-5", "negative"),
        ("(1,000)", "negative"),
        ("$-5", "negative"),
        ("1.2345", "decimal places"),
        ("ten", "not an amount"),
        ("1e3", "not an amount"),
        ("12abc34", "not an amount"),
        ("1000000000000", "too large"),
    ],
)
def test_bad_amounts_say_what_is_wrong(cell, message):
    with pytest.raises(CellError, match=message):
        parse_amount(cell)


@pytest.mark.parametrize(
    ("cell", "order", "expected"),
    [
        ("2026-03-04", None, date(2026, 3, 4)),
        ("2026/3/4", None, date(2026, 3, 4)),
        ("25/12/2026", None, date(2026, 12, 25)),
        ("12/25/2026", None, date(2026, 12, 25)),
        ("03/04/2026", "dmy", date(2026, 4, 3)),
        ("03.04.2026", "mdy", date(2026, 3, 4)),
        ("3-4-2026", "dmy", date(2026, 4, 3)),
    ],
)
def test_dates_iso_or_in_the_chosen_order(cell, order, expected):
    assert parse_date(cell, date_order=order) == expected


@pytest.mark.parametrize(
    ("cell", "order", "message"),
    [
        ("03/04/2026", None, "date order"),
        ("31/02/2026", "dmy", "not a valid date"),
        ("25/12/2026", "mdy", "not a valid date"),
        ("yesterday", None, "not a date"),
    ],
)
def test_bad_or_ambiguous_dates_are_refused(cell, order, message):
    with pytest.raises(CellError, match=message):
        parse_date(cell, date_order=order)


def test_date_times_with_offsets_or_in_the_configured_time_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"

    assert parse_datetime("2026-03-04T10:00:00Z", date_order=None) == datetime(2026, 3, 4, 10, tzinfo=UTC)
    assert parse_datetime("2026-03-04 10:00+02:00", date_order=None) == datetime(
        2026, 3, 4, 10, tzinfo=timezone(timedelta(hours=2))
    )
    berlin = parse_datetime("04/03/2026 10:30", date_order="dmy")
    assert berlin.utcoffset() == timedelta(hours=1) and (berlin.hour, berlin.minute) == (10, 30)
    assert parse_datetime("2026-03-04", date_order=None).hour == 0
    with pytest.raises(CellError, match="time"):
        parse_datetime("2026-03-04 25:00", date_order=None)
