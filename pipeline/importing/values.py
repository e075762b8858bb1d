"""Parsing of CSV cells: dates, date-times, amounts, integers. Each parser returns a value or raises CellError.

An empty cell (or one holding only spaces) is always "no value": callers check `is_empty` first.
"""

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation

from django.utils import timezone


class CellError(ValueError):
    """A cell that cannot be read as the field's type; the message says what was expected."""


DATE_ORDERS = ("dmy", "mdy")

_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_YMD_SLASH = re.compile(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})$")
_NUMERIC_DATE = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?$")


def is_empty(cell: str | None) -> bool:
    return cell is None or not cell.strip()


def parse_date(cell: str, *, date_order: str | None) -> date:
    """ISO `2026-03-04`, `2026/03/04`, or `04/03/2026` / `04.03.2026` / `04-03-2026` read by `date_order`.

    When day and month could be swapped (both ≤ 12) and no date order was chosen, the cell is refused rather
    than guessed: 03/04/2026 is the 3rd of April in London and the 4th of March in New York.
    """
    text = cell.strip()
    for pattern in (_ISO_DATE, _YMD_SLASH):
        match = pattern.match(text)
        if match:
            return _date(int(match[1]), int(match[2]), int(match[3]), text)
    match = _NUMERIC_DATE.match(text)
    if not match:
        raise CellError(f"“{text}” is not a date (use YYYY-MM-DD, or DD/MM/YYYY or MM/DD/YYYY with a date order).")
    first, second, year = int(match[1]), int(match[2]), int(match[3])
    if date_order == "dmy":
        return _date(year, second, first, text)
    if date_order == "mdy":
        return _date(year, first, second, text)
    if first > 12 >= second:
        return _date(year, second, first, text)
    if second > 12 >= first:
        return _date(year, first, second, text)
    raise CellError(f"“{text}” could be day/month or month/day: choose the date order (dmy or mdy) for this file.")


def _date(year: int, month: int, day: int, text: str) -> date:
    try:
        return date(year, month, day)
    except ValueError as error:
        raise CellError(f"“{text}” is not a valid date ({error}).") from None


def parse_datetime(cell: str, *, date_order: str | None) -> datetime:
    """A date, optionally followed by a time (`T` or a space), optionally with `Z` or an offset.

    A date alone means midnight, and a time without offset is read in the configured time zone (`TIME_ZONE`).
    """
    text = cell.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None:
        date_part, _, time_part = text.replace("T", " ").partition(" ")
        day = parse_date(date_part, date_order=date_order)
        clock = time()
        if time_part.strip():
            match = _TIME.match(time_part.strip())
            if not match:
                raise CellError(f"“{text}” has a time that is not HH:MM or HH:MM:SS.")
            try:
                clock = time(int(match[1]), int(match[2]), int(match[3] or 0), int((match[4] or "0").ljust(6, "0")))
            except ValueError as error:
                raise CellError(f"“{text}” has an invalid time ({error}).") from None
        parsed = datetime.combine(day, clock)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.get_default_timezone())
    try:
        # PostgreSQL would store an instant in year 10000 or 1 BC in UTC, and then every read of its row would fail.
        parsed.astimezone(UTC)
    except OverflowError:
        raise CellError(f"“{text}” is out of range (in UTC it falls outside the years 1 to 9999).") from None
    return parsed


_LEADING_CURRENCY = re.compile(r"^(?:[A-Za-z]{3}|[A-Za-z]{0,2}[$€£¥₹₩₽¤])\s*")
_TRAILING_CURRENCY = re.compile(r"\s*(?:[A-Za-z]{3}|[$€£¥₹₩₽¤])$")
_SPACERS = re.compile(r"[\s\u00a0\u202f']")


def _unsigned(text: str) -> tuple[str, bool]:
    """The text without its sign (`-5`, `5-`, `(5)`), and whether it was negative."""
    if text.startswith("(") and text.endswith(")"):
        return text[1:-1].strip(), True
    if text.startswith("-") or text.endswith("-"):
        return text.strip("-").strip(), True
    return text.lstrip("+").strip(), False


def parse_amount(cell: str) -> Decimal:
    """An amount of money, not negative, at most 2 decimal places.

    One currency symbol or code before or after the number (`$`, `US$`, `€`, `EUR`) is ignored, and so are
    spaces and apostrophes between digits. With both `,` and `.` the last one is the decimal mark (`1,234.56`,
    `1.234,56`). With only one of them, it is a thousands separator when it occurs more than once or is followed
    by exactly three digits (`1,234`, `1.234.567`), else the decimal mark (`1234,5`).
    """
    text = cell.strip()
    body, negative = _unsigned(text)
    body = _TRAILING_CURRENCY.sub("", _LEADING_CURRENCY.sub("", body))
    body, negative_inside = _unsigned(body)  # "$-5", "USD (5)"
    digits = _SPACERS.sub("", body)
    negative = negative or negative_inside
    if "," in digits and "." in digits:
        decimal_mark = "," if digits.rfind(",") > digits.rfind(".") else "."
        thousands = "." if decimal_mark == "," else ","
        digits = digits.replace(thousands, "").replace(decimal_mark, ".")
    else:
        for mark in (",", "."):
            if mark in digits:
                head, _, tail = digits.rpartition(mark)
                thousands = digits.count(mark) > 1 or len(tail) == 3
                digits = digits.replace(mark, "") if thousands else f"{head}.{tail}"
    if not re.fullmatch(r"\d+(\.\d*)?|\.\d+", digits):
        raise CellError(f"“{text}” is not an amount.")
    try:
        amount = Decimal(digits)
    except InvalidOperation:
        raise CellError(f"“{text}” is not an amount.") from None
    if negative and amount:
        raise CellError(f"“{text}” is negative; amounts must be 0 or more.")
    if amount != amount.quantize(Decimal("0.01")):
        raise CellError(f"“{text}” has more than 2 decimal places.")
    if amount >= Decimal("1e12"):
        raise CellError(f"“{text}” is too large (at most 999,999,999,999.99).")
    return amount.quantize(Decimal("0.01"))


def parse_integer(cell: str, *, minimum: int, maximum: int) -> int:
    text = cell.strip()
    if not re.fullmatch(r"[+-]?\d+(\.0*)?", text):
        raise CellError(f"“{text}” is not a whole number.")
    value = int(Decimal(text))
    if not minimum <= value <= maximum:
        raise CellError(f"“{text}” is not between {minimum} and {maximum}.")
    return value
