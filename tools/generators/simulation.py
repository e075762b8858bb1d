"""The building blocks of a simulated sales team, shared by the demo data and the benchmark datasets.

Each generator is a preset of these pieces: its own pipelines (`PipelineSpec` of `StageSpec`), its own `Moves`, its
own number of users and years of history. `walk` is the heart of both: a deal starts in the first open stage, stays a
while in each, is lost when it leaves one or moves on (sometimes skipping a stage, sometimes back), until it is won,
lost or reaches now. So every metric of SPEC §3 sees a history that looks like a real team's.

Nothing here draws a random number on its own: the generators pass their one seeded `random.Random`, so that the
same seed gives the same rows, and the order of draws is part of what each generator promises.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from random import Random
from typing import TypeVar

from pipeline.models import ActivityKind, ForecastCategory, LeadStatus, StageKind


@dataclass(frozen=True)
class StageSpec:
    """A stage to create (in its pipeline's order) and how a simulated deal behaves in it."""

    name: str
    probability: int
    kind: str = StageKind.OPEN
    required: tuple[str, ...] = ()
    category: str = ForecastCategory.PIPELINE
    rotting_days: int = 30
    median_days: float = 0.0  # the simulation only: the median days a deal stays
    loss: float = 0.0  # the simulation only: the chance a deal is lost when it leaves


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline to create: its stages in order, its share of the deals, and the deals' amounts and products."""

    name: str
    share: float
    median_amount: float
    amount_sigma: float  # of the log-normal amounts
    products: tuple[str, ...]
    stages: tuple[StageSpec, ...]
    title_suffixes: tuple[str, ...] = ()  # the demo's deal titles end with one of these


# What a stage near the close typically asks for.
CLOSING_FIELDS = ("amount", "expected_close_date", "contact")
WON_STAGE = StageSpec("Won", 100, StageKind.WON, category=ForecastCategory.COMMIT)
LOST_STAGE = StageSpec("Lost", 0, StageKind.LOST)

# Activities by kind, with weights: done along a deal, and planned ahead.
DONE_KINDS = {
    ActivityKind.CALL: 30,
    ActivityKind.EMAIL: 35,
    ActivityKind.MEETING: 14,
    ActivityKind.DEMO: 8,
    ActivityKind.NOTE: 13,
}
PLANNED_KINDS = {ActivityKind.CALL: 40, ActivityKind.MEETING: 25, ActivityKind.EMAIL: 20, ActivityKind.TASK: 15}
# Kinds that were scheduled (due) before they were done, and how many minutes they took.
SCHEDULED_MINUTES = {ActivityKind.CALL: (15, 45), ActivityKind.MEETING: (30, 90), ActivityKind.DEMO: (45, 60)}

# Lead statuses other than converted: their share of those leads.
LEAD_MIX = {
    LeadStatus.NEW: 0.23,
    LeadStatus.CONTACTED: 0.22,
    LeadStatus.MQL: 0.20,
    LeadStatus.SQL: 0.14,
    LeadStatus.DISQUALIFIED: 0.21,
}
# The range of a lead's score in each status.
LEAD_SCORES = {
    LeadStatus.NEW: (0, 40),
    LeadStatus.CONTACTED: (10, 55),
    LeadStatus.MQL: (40, 75),
    LeadStatus.SQL: (60, 95),
    LeadStatus.CONVERTED: (65, 100),
    LeadStatus.DISQUALIFIED: (0, 35),
}


# --- How a deal walks its pipeline ----------------------------------------------------------------------------------

# What `walk` gives for the closing entry of a deal, beside the indexes (0, 1, ...) of the open stages it entered.
WON, LOST = 1000, 1001

Moment = TypeVar("Moment")  # a datetime for the demo, epoch seconds for the datasets


@dataclass(frozen=True)
class Moves:
    """Where a deal goes when it leaves an open stage without being lost."""

    skip_chance: float  # jumps over the next stage
    back_chance: float  # goes back one stage (a decision-maker left, the budget was reopened ...)
    max_backs: int  # at most this many times per deal
    max_loss: float = 1.0  # the chance of being lost on leaving a stage is capped here


def walk(
    rng: Random,
    moves: Moves,
    *,
    start: Moment,
    now: Moment,
    stay: Callable[[int, Moment], Moment],
    loss: list[float],
    skill: float,
) -> list[tuple[int, Moment]]:
    """The stages a deal entered and when: open stages by index from the first, then WON or LOST if it closed.

    `stay(index, entered)` is when the deal leaves open stage `index` that it entered at `entered`; once that is
    `now` or later, the deal is still open. On leaving, it is lost with the chance `loss[index] * skill` (at most
    `moves.max_loss`), else it moves on by `moves`; moving past the last open stage wins it. Draws from `rng` in a
    fixed order: stay, loss, move.
    """
    random = rng.random
    last = len(loss) - 1
    index, moment, backs = 0, start, 0
    entries = [(0, start)]
    while True:
        moment = stay(index, moment)
        if moment >= now:
            return entries
        if random() < min(moves.max_loss, loss[index] * skill):
            entries.append((LOST, moment))
            return entries
        move = random()
        if index > 0 and backs < moves.max_backs and move < moves.back_chance:
            index, backs = index - 1, backs + 1
        elif move > 1 - moves.skip_chance:
            index += 2
        else:
            index += 1
        if index > last:
            entries.append((WON, moment))
            return entries
        entries.append((index, moment))


# --- Calendar ---------------------------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """The first of the month `months` after (or before) `day`'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def quarter_start(day: date) -> date:
    """The first day of `day`'s calendar quarter (quotas are quarterly)."""
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
