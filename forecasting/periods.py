"""Periods: a month, a quarter or a year, half-open [start, end), written as the API reads them (`2026-11`,
`2026-Q4`, `2026`); and a `Window`, a custom range of days (`start=…&end=…`) or all time (`period=all`), which the
metrics API computes live where no snapshot holds it.

One type for every door that names a period: the metrics API's `period=`, the dashboard, the Quotas settings page
(its period filter), and the incremental refresh (the periods holding a changed date). The metrics themselves
cut periods in SQL (`date_trunc`, `forecasting.metrics`); this is the same calendar in Python.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from django.utils import timezone

from forecasting.models import PeriodKind

# The kinds a Period can be (a snapshot's other period kinds, `all`, `now`, `quota`, are not calendar periods).
KINDS = (PeriodKind.MONTH, PeriodKind.QUARTER, PeriodKind.YEAR)
MONTHS_IN = {PeriodKind.MONTH: 1, PeriodKind.QUARTER: 3, PeriodKind.YEAR: 12}
PATTERN = re.compile(r"(?P<year>\d{4})(?:-(?:(?P<month>\d{2})|Q(?P<quarter>[1-4])))?")


class PeriodError(ValueError):
    """Text that does not name a period; the message says why, in words fit for the person who wrote it."""


def _shift(start: date, months: int) -> date:
    index = start.year * 12 + start.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


# The two rules below work on (kind, first day) alone, for callers that must also name the last periods of the
# year 9999 (a deal may be expected to close then): those end in the year 10000, which no `date` holds.


def start_of(day: date, kind: str) -> date:
    """The first day of the month, quarter or year that `day` falls in."""
    months = MONTHS_IN[PeriodKind(kind)]
    return date(day.year, (day.month - 1) // months * months + 1, 1)


def key_of(kind: str, start: date) -> str:
    """How the API and the page addresses write the period of `kind` beginning on `start`: 2026-11, 2026-Q4, 2026."""
    if kind == PeriodKind.MONTH:
        return f"{start:%Y-%m}"
    if kind == PeriodKind.QUARTER:
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return str(start.year)


@dataclass(frozen=True)
class Period:
    """A month, quarter or year: [start, end), `end` being the first day after it. Build one with `parse`,
    `containing` or `current`."""

    kind: PeriodKind
    start: date
    end: date

    def __post_init__(self) -> None:
        kind = PeriodKind(self.kind)
        if kind not in KINDS:
            raise ValueError(f"A period is a month, a quarter or a year, not {kind.value!r}.")
        if self.start.day != 1 or (self.start.month - 1) % MONTHS_IN[kind]:
            raise ValueError(f"{self.start} does not start a {kind.value}.")
        if self.end != _shift(self.start, MONTHS_IN[kind]):
            raise ValueError(f"The {kind.value} from {self.start} does not end on {self.end}.")
        object.__setattr__(self, "kind", kind)

    @classmethod
    def of(cls, kind: str, start: date) -> "Period":
        """The period of `kind` beginning on `start` (which must begin one)."""
        kind = PeriodKind(kind)
        return cls(kind, start, _shift(start, MONTHS_IN[kind]))

    @classmethod
    def containing(cls, day: date, kind: str) -> "Period":
        """The month, quarter or year that `day` falls in."""
        return cls.of(kind, start_of(day, kind))

    @classmethod
    def current(cls, kind: str) -> "Period":
        """The period of `kind` that today (in TIME_ZONE) falls in."""
        return cls.containing(timezone.localdate(), kind)

    @classmethod
    def parse(cls, text: str) -> "Period":
        """'2026-11' → a month, '2026-Q4' → a quarter, '2026' → a year; raises PeriodError for anything else."""
        match = PATTERN.fullmatch(text)
        if not match:
            raise PeriodError("Write a period as 2026-11, 2026-Q4 or 2026.")
        year = int(match["year"])
        if year < 1:
            raise PeriodError("The year must be at least 1.")
        if match["month"]:
            month = int(match["month"])
            if not 1 <= month <= 12:
                raise PeriodError("The month must be 01 to 12.")
            kind, start = PeriodKind.MONTH, date(year, month, 1)
        elif match["quarter"]:
            kind, start = PeriodKind.QUARTER, date(year, 3 * (int(match["quarter"]) - 1) + 1, 1)
        else:
            kind, start = PeriodKind.YEAR, date(year, 1, 1)
        try:
            return cls.of(kind, start)
        except ValueError as error:  # its end, the first day after it, would be in the year 10000
            raise PeriodError("The period must end before the year 10000.") from error

    @property
    def key(self) -> str:
        """How the API and the page addresses write it: 2026-11, 2026-Q4, 2026."""
        return key_of(self.kind, self.start)

    @property
    def label(self) -> str:
        """How a page shows it: November 2026, Q4 2026, 2026."""
        if self.kind == PeriodKind.MONTH:
            return f"{self.start:%B %Y}"
        if self.kind == PeriodKind.QUARTER:
            return f"Q{(self.start.month - 1) // 3 + 1} {self.start.year}"
        return str(self.start.year)

    def previous(self) -> "Period":
        return Period.of(self.kind, _shift(self.start, -MONTHS_IN[self.kind]))

    def next(self) -> "Period":
        return Period.of(self.kind, self.end)


# The days a custom range may name: a CRM holds no sale before 1900, and `date` ends in 9999.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9999, 12, 31)
ALL_TIME = "all"  # how `period=` names all time
RANGE = "range"  # the period_kind of a custom range's rows (never stored: computed when asked)


@dataclass(frozen=True)
class Window:
    """A custom range of days [start, end) (`kind` "range"), or all time (`kind` "all", both None): one row per
    group in the metrics API. Build one with `between` or `all_time`."""

    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if (self.start is None) != (self.end is None):
            raise ValueError("A window has both a start and an end, or neither (all time).")
        if self.start is not None and not FIRST_DAY <= self.start < self.end <= LAST_DAY:
            raise ValueError(f"[{self.start}, {self.end}) is not a range of days between {FIRST_DAY} and {LAST_DAY}.")

    @classmethod
    def all_time(cls) -> "Window":
        return cls()

    @classmethod
    def between(cls, start: date, end: date) -> "Window":
        """The days from `start` up to, not including, `end`."""
        return cls(start, end)

    @property
    def kind(self) -> str:
        return ALL_TIME if self.start is None else RANGE

    def calendar_period(self) -> Period | None:
        """The month, quarter or year that is exactly this range (whose snapshot answers it), if there is one."""
        if self.start is None:
            return None
        for kind in KINDS:
            if self.start == start_of(self.start, kind):
                try:
                    period = Period.of(kind, self.start)
                except ValueError:  # it would end in the year 10000
                    return None
                if period.end == self.end:
                    return period
        return None

    def previous(self) -> "Window | None":
        """The range of the same length just before this one (None for all time): as many months when it runs from
        a first of the month to a first of the month, else as many days. Lead velocity compares with it."""
        if self.start is None:
            return None
        if self.start.day == 1 and self.end.day == 1:
            months = (self.end.year - self.start.year) * 12 + self.end.month - self.start.month
            start = _shift(self.start, -months) if self.start.year * 12 + self.start.month - 1 >= months else None
        else:
            days = (self.end - self.start).days
            start = date.fromordinal(self.start.toordinal() - days) if self.start.toordinal() > days else None
        return Window(start, self.start) if start is not None and start >= FIRST_DAY else None

    def bounds(self, tz: str) -> tuple[datetime | None, datetime | None]:
        """The instants it starts and ends at, as local midnights in `tz` (None, None for all time)."""
        if self.start is None:
            return None, None
        zone = ZoneInfo(tz)
        return datetime.combine(self.start, time.min, zone), datetime.combine(self.end, time.min, zone)
