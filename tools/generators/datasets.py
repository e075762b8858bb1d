"""Benchmark datasets of SPEC §6: S (1,000 deals) and L (1,000,000 deals), generated fast and deterministically.

`load_dataset` fills an empty, migrated database with a company of 200 users in 20 teams, 3 pipelines, customers,
deals with their full stage history, activities, leads and quarterly quotas, over the five years before `now`.
Unlike `tools.generators.demo` (which goes through the ORM for a few thousand deals), rows are generated as text and
streamed into PostgreSQL with COPY, a chunk of deals at a time, so L never sits in memory and loads in minutes.

The same seed, size and `now` give the same rows, ids included: every random choice comes from one
`random.Random(seed)` in a fixed order, and names of customers and people are derived from their ids.

The shape is meant to look like a real sales organisation's, because the metrics and pages behave differently on
uniform data:
- pipelines of very different size (New Business has most deals and tens of thousands open: the board row of §6);
- reps with very different volumes (Zipf-like weights) and skills; teams with their own pace and deal sizes;
- long-tailed amounts (log-normal), more deals every year (the business grows);
- each deal walks its pipeline from the first open stage with a log-normal time in each stage, most are lost
  early, some skip a stage, some move back, some stall and rot; the deal's current fields (stage, status,
  stage_entered_at, closed_at, version, lost reason, expected close date, required fields) follow its history;
- activities done along the way and planned ahead (some overdue); leads in every status with the time each status
  was first reached, a share of them converted into deals.

The rows satisfy the schema's constraints and triggers (migration 0002): foreign keys are dropped during the load
and re-added after it, which re-validates every row in one set-based pass (as pg_restore does), and plain indexes
are rebuilt after the data is in. Reference data is identical for every size, so S differs from L only in volume.
"""

import bisect
import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.contrib.auth.hashers import make_password
from django.core.management.color import no_style
from django.db import connection, transaction

from accounts.models import Team, User
from forecasting.models import Quota
from pipeline import field_history, stage_history, touches
from pipeline.models import (
    Activity,
    Contact,
    Deal,
    DealState,
    Lead,
    LostReason,
    Organization,
    Pipeline,
    Stage,
    StageChange,
    StageState,
)
from pipeline.search_text import deal_search_text
from tools.generators import simulation
from tools.generators.vocabulary import (
    AUTHORITIES,
    CITIES,
    COMPANY_CORE_WORDS,
    COMPANY_CORES,
    COMPANY_PREFIXES,
    DEMO_PASSWORD,
    DISQUALIFIED_REASONS,
    FIRST_NAMES,
    JOB_TITLES,
    LAST_NAMES,
    LEAD_SOURCES,
    LOST_NOTES,
    LOST_REASONS,
    NEEDS,
    SOURCES,
    TIMELINES,
)

# Bump whenever the rows generated for a given seed change: `make bench` regenerates its dataset when it does.
GENERATOR_VERSION = 3

SIZES = {"S": 1_000, "M": 100_000, "L": 1_000_000}  # M: the middle of `make bench`'s growth table
DEFAULT_SEED = 42

HISTORY_DAYS = 5 * 365
GROWTH = 3.0  # deals are created this many times as often now as five years ago (linearly in between)
DAY = 86_400

TEAM_NAMES = (
    "Atlantic", "Pacific", "Central", "Mountain", "Great Lakes", "Gulf", "Nordics", "DACH", "Benelux", "France",
    "Iberia", "Italy", "UK North", "UK South", "Ireland", "Poland", "Canada", "Brazil", "ANZ", "Japan",
)  # fmt: skip
ADMINS = 2
REPS = 178  # + 20 managers + 2 admins = 200 users
REP_ZIPF = 0.75  # rep k (in a random order) gets a share proportional to 1 / k^REP_ZIPF of customers, deals, leads

DEAL_CHUNK = 20_000  # deals generated and copied at a time
STALL_CHANCE = 0.12  # deals that nobody moves on: they rot in their stage
STALL_PACE = 6.0
MOVES = simulation.Moves(skip_chance=0.05, back_chance=0.18, max_backs=3)
MANAGER_MOVE_CHANCE = 0.06
OVERRIDE_CHANCE = 0.10
FROM_LEAD_CHANCE = 0.11  # New Business deals that began as a lead (the lead is converted)
LEADS_PER_DEAL = 0.3


PIPELINES = (
    simulation.PipelineSpec(
        "New Business",
        0.62,
        12_000,
        1.1,
        ("Analytics", "Platform", "Data Sync", "Security Suite", "Reporting", "Workflow", "API Access", "Mobile"),
        (
            simulation.StageSpec("Prospecting", 10, rotting_days=21, median_days=6, loss=0.36),
            simulation.StageSpec("Qualification", 20, rotting_days=30, median_days=10, loss=0.30),
            simulation.StageSpec("Discovery", 35, required=("amount",), rotting_days=30, median_days=14, loss=0.22),
            simulation.StageSpec("Demo", 50, required=("amount",), rotting_days=30, median_days=12, loss=0.18),
            simulation.StageSpec(
                "Proposal",
                65,
                required=simulation.CLOSING_FIELDS,
                category="best_case",
                rotting_days=40,
                median_days=18,
                loss=0.16,
            ),
            simulation.StageSpec(
                "Negotiation",
                80,
                required=simulation.CLOSING_FIELDS,
                category="commit",
                rotting_days=45,
                median_days=20,
                loss=0.14,
            ),
            simulation.WON_STAGE,
            simulation.LOST_STAGE,
        ),
    ),
    simulation.PipelineSpec(
        "Enterprise",
        0.13,
        85_000,
        1.0,
        ("Platform", "Security Suite", "Analytics", "Data Sync"),
        (
            simulation.StageSpec("Lead in", 5, rotting_days=30, median_days=12, loss=0.34),
            simulation.StageSpec("Discovery", 15, rotting_days=45, median_days=25, loss=0.26),
            simulation.StageSpec(
                "Solution design", 30, required=("amount",), rotting_days=45, median_days=30, loss=0.20
            ),
            simulation.StageSpec("Business case", 45, required=("amount",), rotting_days=45, median_days=28, loss=0.18),
            simulation.StageSpec(
                "Proposal",
                60,
                required=simulation.CLOSING_FIELDS,
                category="best_case",
                rotting_days=60,
                median_days=25,
                loss=0.16,
            ),
            simulation.StageSpec(
                "Legal & procurement",
                80,
                required=simulation.CLOSING_FIELDS,
                category="commit",
                rotting_days=60,
                median_days=35,
                loss=0.10,
            ),
            simulation.WON_STAGE,
            simulation.LOST_STAGE,
        ),
    ),
    simulation.PipelineSpec(
        "Renewals",
        0.25,
        9_000,
        0.8,
        ("Platform", "Support Plus", "Analytics", "Security Suite"),
        (
            simulation.StageSpec("Outreach", 30, rotting_days=30, median_days=14, loss=0.16),
            simulation.StageSpec(
                "Renewal proposal", 60, required=("amount",), rotting_days=30, median_days=18, loss=0.14
            ),
            simulation.StageSpec(
                "Contract sent",
                85,
                required=("amount", "expected_close_date"),
                category="commit",
                rotting_days=14,
                median_days=8,
                loss=0.08,
            ),
            simulation.WON_STAGE,
            simulation.LOST_STAGE,
        ),
    ),
)

# Kinds drawn by index: each as many times as its weight.
_DONE_DRAWS = tuple(kind.value for kind, weight in simulation.DONE_KINDS.items() for _ in range(weight))
_PLANNED_DRAWS = tuple(kind.value for kind, weight in simulation.PLANNED_KINDS.items() for _ in range(weight))
SUBJECTS = {
    "call": ("Intro call", "Follow-up call", "Pricing call", "Check-in call", "Call about next steps"),
    "email": ("Sent product overview", "Sent proposal", "Follow-up email", "Shared a case study", "Meeting recap"),
    "meeting": ("Discovery meeting", "On-site meeting", "Stakeholder meeting", "Contract review"),
    "demo": ("Product demo", "Technical deep-dive"),
    "note": ("Budget confirmed", "Decision maker identified", "Competitor in the running", "Legal review needed"),
    "task": ("Prepare proposal", "Send pricing", "Update the mutual action plan"),
}

# Tables the load writes, parents first; TRUNCATE … CASCADE of these empties a database for --replace.
LOADED_MODELS = (Team, User, Pipeline, Stage, LostReason, Organization, Contact, Deal, StageChange, Lead, Activity)
# The big tables: their foreign keys are re-added and their plain indexes rebuilt after the data is in.
BULK_MODELS = (Organization, Contact, Deal, StageChange, Lead, Activity)

NULL = "\\N"


class DatasetError(Exception):
    """The target database is not in a state the generator can load into."""


@dataclass
class DatasetSummary:
    """What `load_dataset` wrote."""

    seed: int
    deals: int
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def report(self) -> str:
        rows = ", ".join(f"{count:,} {name}" for name, count in self.counts.items())
        return f"Loaded dataset ({self.deals:,} deals, seed {self.seed}) in {self.seconds:.1f} s: {rows}"


def size_deals(size: str) -> int:
    """The number of deals of a named size: S or L of SPEC §6, or M between them."""
    try:
        return SIZES[size.upper()]
    except KeyError:
        raise ValueError(f"unknown dataset size {size!r}; use one of {', '.join(SIZES)}") from None


def after_bulk_load(cursor) -> None:
    """Bring what the write paths would have maintained up to date after a bulk load, then refresh statistics.

    The one place for work that the services do row by row at write time and a COPY skips (summary tables); run
    inside the load's transaction, after the data and constraints are in. The stage-history stamps
    (pipeline.stage_history) are written by the generator with the rows; the field history is rebuilt from them.
    """
    # The deal field history, which the triggers skip during a bulk load: from the stage history just loaded.
    field_history.rebuild(cursor)
    # Each deal's last touch, which the activity trigger skips during a bulk load: from its activities just loaded.
    touches.restamp_last_touched(cursor)
    for model in (*LOADED_MODELS, DealState):
        cursor.execute(f"ANALYZE {model._meta.db_table}")


def load_dataset(
    *,
    deals: int,
    seed: int = DEFAULT_SEED,
    now: datetime | None = None,
    replace: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DatasetSummary:
    """Fill the database with a generated dataset of `deals` deals (see the module docstring), in one transaction.

    Refuses (DatasetError) when users, pipelines or deals already exist, unless `replace`, which first empties
    every table the load writes (and what references them). `now` (default: today's midnight, UTC) ends the
    five years of history. Sequences are reset after the load, then `after_bulk_load` runs.
    """
    if deals < 1:
        raise ValueError("deals must be at least 1")
    started = time.monotonic()
    now = now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    say = progress or (lambda message: None)
    with transaction.atomic(), connection.cursor() as cursor:
        _empty_database(cursor, replace=replace)
        # Until the stages are in (an earlier load in the same transaction may have made them immediate).
        cursor.execute(f"SET CONSTRAINTS {_WON_LOST_TRIGGERS} DEFERRED")
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        saved = _drop_foreign_keys_and_indexes(cursor)
        generator = _Generator(cursor.cursor, seed=seed, now=now, say=say)
        # The generator writes the stage-history stamps itself; no trigger needs to fire row by row.
        with stage_history.bulk_load(cursor, deal_ids=[]):
            counts = generator.run(deals=deals)
        say("  re-adding foreign keys and rebuilding indexes")
        _restore(cursor, saved)
        for sql in connection.ops.sequence_reset_sql(no_style(), [*LOADED_MODELS, Quota]):
            cursor.execute(sql)
        say("  after_bulk_load")
        after_bulk_load(cursor)
    return DatasetSummary(seed=seed, deals=deals, counts=counts, seconds=time.monotonic() - started)


def _empty_database(cursor, *, replace: bool) -> None:
    if replace:
        # TRUNCATE refuses a table with deferred checks still pending (rows written earlier in this transaction).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # The stages' history too: TRUNCATE fires no trigger to close it, and the new stages reuse the ids.
        tables = ", ".join(model._meta.db_table for model in (*LOADED_MODELS, DealState, StageState, Quota))
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        return
    if User.objects.exists() or Pipeline.objects.exists() or Deal.objects.exists() or Lead.objects.exists():
        raise DatasetError(
            "The database already has users, pipelines, deals or leads; load into an empty migrated database, "
            "or pass --replace to delete them first."
        )


def _drop_foreign_keys_and_indexes(cursor) -> list[str]:
    """Drop the big tables' foreign keys and plain indexes; return the statements that recreate them."""
    tables = [model._meta.db_table for model in BULK_MODELS]
    cursor.execute(
        """
        SELECT format('ALTER TABLE %%I ADD CONSTRAINT %%I %%s', conrelid::regclass::text, conname,
                      pg_get_constraintdef(oid)),
               format('ALTER TABLE %%I DROP CONSTRAINT %%I', conrelid::regclass::text, conname)
          FROM pg_constraint
         WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s)
         ORDER BY conrelid::regclass::text, conname
        """,
        [tables],
    )
    foreign_keys = cursor.fetchall()
    # Indexes that back a primary key or unique constraint stay: only plain ones are dropped.
    # With the statistics targets set on their columns (pipeline 0030): CREATE INDEX starts without.
    cursor.execute(
        """
        SELECT concat_ws('; ', pg_get_indexdef(i.indexrelid),
                         (SELECT string_agg(format('ALTER INDEX %%I ALTER COLUMN %%s SET STATISTICS %%s',
                                                   i.indexrelid::regclass::text, a.attnum, a.attstattarget), '; ')
                            FROM pg_attribute a
                           WHERE a.attrelid = i.indexrelid AND a.attstattarget > 0)),
               format('DROP INDEX %%I', i.indexrelid::regclass::text)
          FROM pg_index i
         WHERE i.indrelid::regclass::text = ANY(%s)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
         ORDER BY i.indexrelid::regclass::text
        """,
        [tables],
    )
    indexes = cursor.fetchall()
    for _create, drop in [*foreign_keys, *indexes]:
        cursor.execute(drop)
    # Indexes first: validating a foreign key is faster with them in place.
    return [create for create, _drop in indexes] + [create for create, _drop in foreign_keys]


def _restore(cursor, statements: list[str]) -> None:
    for statement in statements:
        cursor.execute(statement)


# --- Generation ----------------------------------------------------------------------------------------------------


class _Timestamps:
    """Fast text for COPY of epoch seconds (UTC): a table of days and one of seconds of the day."""

    def __init__(self, now: datetime):
        self.first_day = int(now.timestamp()) // DAY - HISTORY_DAYS - 800
        start = datetime.fromtimestamp(self.first_day * DAY, UTC)
        self.days = [(start + timedelta(days=offset)).strftime("%Y-%m-%d") for offset in range(HISTORY_DAYS + 1600)]
        self.clock = [f" {s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}+00" for s in range(DAY)]

    def at(self, seconds: float) -> str:
        whole = int(seconds)
        return self.days[whole // DAY - self.first_day] + self.clock[whole % DAY]

    def date(self, seconds: float) -> str:
        return self.days[int(seconds) // DAY - self.first_day]


class _Generator:
    def __init__(self, cursor, *, seed: int, now: datetime, say: Callable[[str], None]):
        self.cursor = cursor
        self.rng = random.Random(seed)
        self.seed = seed
        self.now = int(now.timestamp())
        self.now_datetime = now
        self.ts = _Timestamps(now)
        self.say = say
        self.counts: dict[str, int] = {}
        # Ids are assigned here, so that rows can refer to each other before they are copied.
        self.next_change_id = self.next_lead_id = self.next_activity_id = 1

    def run(self, *, deals: int) -> dict[str, int]:
        self._reference_data()
        self._customers(count=max(REPS, deals // 8))  # at least one customer per rep
        self._deals(count=deals)
        self._leads(count=max(10, round(deals * LEADS_PER_DEAL)) - self.counts.get("converted leads", 0))
        self._quotas()
        return self.counts

    # --- Helpers ---

    def _copy(self, table: str, columns: str, lines: list[str]) -> None:
        if not lines:
            return
        with self.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            copy.write("".join(lines))

    def _count(self, name: str, number: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + number

    def _zipf_cumulative(self, count: int) -> list[float]:
        """Cumulative weights 1/k^REP_ZIPF over `count` items in a random order."""
        weights = [1 / (rank + 1) ** REP_ZIPF for rank in range(count)]
        self.rng.shuffle(weights)
        total, cumulative = 0.0, []
        for weight in weights:
            total += weight
            cumulative.append(total)
        return cumulative

    def _pick_rep(self) -> int:
        """The index (into self.reps) of a rep drawn by volume."""
        return bisect.bisect_left(self.rep_cumulative, self.rng.random() * self.rep_total)

    def _created_moment(self) -> int:
        """A moment in the last HISTORY_DAYS, more of them recent (density rising linearly to GROWTH)."""
        half_slope = (GROWTH - 1) / 2
        share = self.rng.random()
        elapsed = (math.sqrt(1 + 4 * half_slope * share * (1 + half_slope)) - 1) / (2 * half_slope)
        return min(self.now - 3600, int(self.now - HISTORY_DAYS * DAY * (1 - elapsed)))

    @staticmethod
    def _person(person_id: int) -> tuple[str, str]:
        return FIRST_NAMES[person_id * 7919 % len(FIRST_NAMES)], LAST_NAMES[person_id * 104_729 % len(LAST_NAMES)]

    @staticmethod
    def _organization_name(organization_id: int) -> str:
        prefixes, cores = len(COMPANY_PREFIXES), len(COMPANY_CORE_WORDS)
        index = organization_id - 1
        name = f"{COMPANY_PREFIXES[index % prefixes]} {COMPANY_CORE_WORDS[index // prefixes % cores]}"
        series = index // (prefixes * cores)
        if series:
            name += f" {CITIES[(series - 1) % len(CITIES)]}"
            if series > len(CITIES):
                name += f" {series // len(CITIES) + 1}"
        return name

    # --- Reference data: teams, users, pipelines, lost reasons ---

    def _reference_data(self) -> None:
        rng, ts, now = self.rng, self.ts, self.now
        joined = ts.at(now - (HISTORY_DAYS + 60) * DAY)
        self._copy(
            "accounts_team",
            "id, name, created_at",
            [f"{i}\t{name}\t{joined}\n" for i, name in enumerate(TEAM_NAMES, 1)],
        )
        # One hash for all (the hasher is slow by design), salted from the seed so that the rows are reproducible.
        # (22 characters: Django rehashes at the first login a password whose salt is shorter.)
        password = make_password(DEMO_PASSWORD, salt=hashlib.sha256(f"dataset {self.seed}".encode()).hexdigest()[:22])
        users = []  # (id, username, role, team_id)
        users += [(1, "admin", "admin", None), (2, "admin2", "admin", None)]
        users += [(ADMINS + t, f"manager{t:02d}", "manager", t) for t in range(1, len(TEAM_NAMES) + 1)]
        first_rep = ADMINS + len(TEAM_NAMES) + 1
        users += [(first_rep + r, f"rep{r + 1:03d}", "rep", r % len(TEAM_NAMES) + 1) for r in range(REPS)]
        lines = []
        for user_id, username, role, team_id in users:
            first, last = self._person(user_id + 1000)
            staff = "t" if role != "rep" else "f"
            lines.append(
                f"{user_id}\t{password}\t{NULL}\t{'t' if role == 'admin' else 'f'}\t{username}\t{first}\t{last}\t"
                f"{username}@example.com\t{staff}\tt\t{joined}\t{role}\t{team_id or NULL}\n"
            )
        self._copy(
            "accounts_user",
            "id, password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, "
            "date_joined, role, team_id",
            lines,
        )
        self._copy(
            "accounts_team_managers",
            "id, team_id, user_id",
            [f"{t}\t{t}\t{ADMINS + t}\n" for t in range(1, len(TEAM_NAMES) + 1)],
        )
        self._count("users", len(users))
        self._count("teams", len(TEAM_NAMES))

        # Reps: volume (Zipf), skill (multiplies the chance of losing), their team's pace and deal size.
        team_pace = [rng.lognormvariate(0, 0.25) for _ in TEAM_NAMES]
        team_amount = [rng.lognormvariate(0, 0.4) for _ in TEAM_NAMES]
        self.reps = []
        for user_id, _username, role, team_id in users:
            if role == "rep":
                skill = rng.lognormvariate(0, 0.2)
                self.reps.append(
                    _Rep(user_id, ADMINS + team_id, team_id, skill, team_pace[team_id - 1], team_amount[team_id - 1])
                )
        self.rep_cumulative = self._zipf_cumulative(len(self.reps))
        self.rep_total = self.rep_cumulative[-1]

        created = ts.at(now - (HISTORY_DAYS + 30) * DAY)
        self._copy(
            "pipeline_pipeline",
            "id, name, is_default, created_at",
            [f"{i}\t{spec.name}\t{'t' if i == 1 else 'f'}\t{created}\n" for i, spec in enumerate(PIPELINES, 1)],
        )
        stage_lines, stage_id = [], 0
        self.pipelines = []
        for pipeline_id, spec in enumerate(PIPELINES, 1):
            simulated = _SimulatedPipeline(pipeline_id, spec)
            for order, stage in enumerate(spec.stages, 1):
                stage_id += 1
                required = "{" + ",".join(stage.required) + "}"
                stage_lines.append(
                    f"{stage_id}\t{pipeline_id}\t{stage.name}\t{order}\t{stage.probability}\t{stage.kind}\t"
                    f"{stage.rotting_days}\t{required}\t{stage.category}\n"
                )
                simulated.add(stage_id, stage, order)
            self.pipelines.append(simulated)
        self._copy(
            "pipeline_stage",
            'id, pipeline_id, name, "order", probability, kind, rotting_days, required_fields, forecast_category',
            stage_lines,
        )
        self.pipeline_cumulative = list(_accumulate(spec.share for spec in PIPELINES))
        self.lost_reasons = list(LOST_REASONS)
        self.lost_cumulative = list(_accumulate(LOST_REASONS.values()))
        self._copy(
            "pipeline_lostreason",
            "id, name, is_active",
            [f"{i}\t{name}\tt\n" for i, name in enumerate(self.lost_reasons, 1)],
        )
        self.sources = list(SOURCES)
        self.source_cumulative = list(_accumulate(SOURCES.values()))
        self.lead_sources = list(LEAD_SOURCES)
        self.lead_source_cumulative = list(_accumulate(LEAD_SOURCES.values()))
        # The one-won-and-one-lost checks run now, on the complete pipelines, rather than at commit.
        self.cursor.execute(f"SET CONSTRAINTS {_WON_LOST_TRIGGERS} IMMEDIATE")
        self._count("pipelines", len(PIPELINES))
        self._count("stages", stage_id)

    # --- Customers: organizations and their contacts ---

    def _customers(self, *, count: int) -> None:
        rng, ts, now = self.rng, self.ts, self.now
        industries = [COMPANY_CORES[core] for core in COMPANY_CORE_WORDS]
        self.organizations_of_rep: list[list[int]] = [[] for _ in self.reps]
        self.first_contact: list[int] = [0]  # by organization id: its first contact id and how many it has
        self.contact_count: list[int] = [0]
        org_lines, contact_lines, contact_id = [], [], 0
        for organization_id in range(1, count + 1):
            # Every rep gets a customer before the volumes decide the rest.
            rep_index = organization_id - 1 if organization_id <= len(self.reps) else self._pick_rep()
            rep = self.reps[rep_index]
            self.organizations_of_rep[rep_index].append(organization_id)
            name = self._organization_name(organization_id)
            domain = name.lower().replace(" ", "") + ".example.com"
            industry = industries[(organization_id - 1) // len(COMPANY_PREFIXES) % len(COMPANY_CORE_WORDS)]
            created_at = now - (HISTORY_DAYS + rng.uniform(1, 365)) * DAY
            created = ts.at(created_at)
            org_lines.append(
                f"{organization_id}\t{name}\thttps://www.{domain}\t{industry}\t{NULL}\t{created}\t{created}\t"
                f"{rep.user_id}\n"
            )
            people = 1 if rng.random() < 0.45 else (2 if rng.random() < 0.64 else 3)
            self.first_contact.append(contact_id + 1)
            self.contact_count.append(people)
            for _ in range(people):
                contact_id += 1
                first, last = self._person(contact_id)
                title = JOB_TITLES[contact_id % len(JOB_TITLES)]
                contact_created = ts.at(created_at + rng.uniform(0, 30) * DAY)
                contact_lines.append(
                    f"{contact_id}\t{first}\t{last}\t{first.lower()}.{last.lower()}{contact_id}@{domain}\t"
                    f"+1 555 {contact_id % 900 + 100} {contact_id % 9000 + 1000}\t{title}\t{NULL}\t"
                    f"{contact_created}\t{contact_created}\t{rep.user_id}\t{organization_id}\n"
                )
        self._copy(
            "pipeline_organization",
            "id, name, website, industry, external_id, created_at, updated_at, owner_id",
            org_lines,
        )
        self._copy(
            "pipeline_contact",
            "id, first_name, last_name, email, phone, job_title, external_id, created_at, updated_at, owner_id, "
            "organization_id",
            contact_lines,
        )
        self._count("organizations", count)
        self._count("contacts", contact_id)

    # --- Deals, their history and activities, and the leads some of them came from ---

    def _deals(self, *, count: int) -> None:
        self.won_by_rep = [0.0] * len(self.reps)
        for start in range(0, count, DEAL_CHUNK):
            batch = _Batch()
            for deal_id in range(start + 1, min(start + DEAL_CHUNK, count) + 1):
                self._deal(deal_id, batch)
            self._copy("pipeline_deal", DEAL_COLUMNS, batch.deals)
            self._copy("pipeline_stagechange", STAGE_CHANGE_COLUMNS, batch.changes)
            self._copy("pipeline_lead", LEAD_COLUMNS, batch.leads)
            self._copy("pipeline_activity", ACTIVITY_COLUMNS, batch.activities)
            self._count("deals", len(batch.deals))
            self._count("stage changes", len(batch.changes))
            self._count("converted leads", len(batch.leads))
            self._count("activities", len(batch.activities))
            if count > DEAL_CHUNK:
                self.say(f"  deals: {min(start + DEAL_CHUNK, count):,}/{count:,}")

    def _walk(self, pipeline: "_SimulatedPipeline", created_at: int, pace: float, skill: float) -> list:
        """[(stage index or WON/LOST, entered at)] from the first open stage until the deal closes or reaches now."""
        lognormvariate, log_median_days, log_pace = self.rng.lognormvariate, pipeline.log_median_days, math.log(pace)

        def stay(index: int, entered: int) -> int:
            return entered + 60 + int(lognormvariate(log_median_days[index] + log_pace, 0.9) * DAY)

        return simulation.walk(
            self.rng, MOVES, start=created_at, now=self.now, stay=stay, loss=pipeline.loss, skill=skill
        )

    def _deal(self, deal_id: int, batch: "_Batch") -> None:
        rng, ts, now = self.rng, self.ts, self.now
        random_ = rng.random
        pipeline = self.pipelines[
            bisect.bisect_left(self.pipeline_cumulative, random_() * self.pipeline_cumulative[-1])
        ]
        rep_index = self._pick_rep()
        rep = self.reps[rep_index]
        organizations = self.organizations_of_rep[rep_index]
        organization_id = organizations[int(random_() * len(organizations))]
        created_at = self._created_moment()
        pace = rng.lognormvariate(0, 0.4) * rep.pace * (STALL_PACE if random_() < STALL_CHANCE else 1.0)
        entries = self._walk(pipeline, created_at, pace, rep.skill)
        last_index, entered_at = entries[-1]
        spec = pipeline.spec
        if last_index == simulation.WON:
            stage_id, status, stage_spec = pipeline.won_id, "won", simulation.WON_STAGE
        elif last_index == simulation.LOST:
            stage_id, status, stage_spec = pipeline.lost_id, "lost", simulation.LOST_STAGE
        else:
            stage_id, status, stage_spec = pipeline.open_ids[last_index], "open", pipeline.open_specs[last_index]
        reached = (
            len(pipeline.open_ids) - 1
            if status == "won"
            else max(index for index, _at in entries if index < simulation.WON)
        )
        required = pipeline.required_up_to[reached]

        amount = budget = None
        if "amount" in required or random_() < 0.7:
            raw = rng.lognormvariate(pipeline.log_median_amount, spec.amount_sigma) * rep.amount
            amount = max(5, round(raw / 100)) * 100
        contact_id = None
        if "contact" in required or random_() < 0.85:
            contact_id = self.first_contact[organization_id] + int(random_() * self.contact_count[organization_id])
        closed_at = entered_at if status != "open" else None

        # Expected close date: won deals close about when said, open ones later the further they are.
        today = now // DAY * DAY
        if status == "won":
            expected = entered_at + (0 if random_() < 0.5 else rng.randint(-14, 7)) * DAY
        elif "expected_close_date" not in required and random_() < 0.2:
            expected = None
        elif status == "lost":
            expected = entered_at + rng.randint(-10, 60) * DAY
        elif random_() < 0.13 and now - created_at > 15 * DAY:
            expected = today - rng.randint(1, min(45, (now - created_at) // DAY - 1)) * DAY
        else:
            progress = last_index / max(1, len(pipeline.open_ids) - 1)
            expected = today + rng.randint(0, round(120 - 75 * progress)) * DAY
        if expected is not None:
            expected = max(expected, created_at)

        category = stage_spec.category
        override = NULL
        if status == "open" and category != "commit" and random_() < OVERRIDE_CHANCE:
            category = override = "commit"
        lost_reason, lost_note = NULL, ""
        if status == "lost":
            reason = bisect.bisect_left(self.lost_cumulative, random_() * self.lost_cumulative[-1])
            lost_reason = reason + 1
            if random_() < 0.2:
                notes = LOST_NOTES[self.lost_reasons[reason]]
                lost_note = notes[int(random_() * len(notes))]
        product = spec.products[int(random_() * len(spec.products))]
        bant = ("", "", "")
        if reached >= 1 and random_() < 0.5:
            budget = round((amount or 100) * rng.uniform(0.9, 1.5))
            bant = (
                AUTHORITIES[int(random_() * len(AUTHORITIES))],
                NEEDS[int(random_() * len(NEEDS))].format(product=product),
                TIMELINES[int(random_() * len(TIMELINES))],
            )
        from_lead = pipeline.index == 0 and random_() < FROM_LEAD_CHANCE
        if from_lead:
            source = self.lead_sources[
                bisect.bisect_left(self.lead_source_cumulative, random_() * self.lead_source_cumulative[-1])
            ]
        else:
            source = self.sources[bisect.bisect_left(self.source_cumulative, random_() * self.source_cumulative[-1])]
        if status == "won" and amount:
            self.won_by_rep[rep_index] += amount

        # Stage history, with the stamps the database keeps (pipeline.stage_history): each stay's exit time and
        # the deal's furthest open stage.
        changes = batch.changes
        from_stage = NULL
        for position, (index, at) in enumerate(entries):
            to_stage = pipeline.stage_id(index)
            changed_by = rep.manager_id if position and random_() < MANAGER_MOVE_CHANCE else rep.user_id
            left_at = ts.at(entries[position + 1][1]) if position + 1 < len(entries) else NULL
            changes.append(
                f"{self._change_id()}\t{deal_id}\t{from_stage}\t{to_stage}\t{changed_by}\t{ts.at(at)}\t{left_at}\n"
            )
            from_stage = to_stage
        furthest = max(pipeline.open_orders[index] for index, _at in entries if index < simulation.WON)

        # Activities: done along the way, planned ahead for open deals, a kickoff after a win.
        end = closed_at or now
        last_touch = entered_at
        activities = batch.activities
        for _ in range(min(5, int(random_() * 2.2) + len(entries) // 3)):
            at = created_at + int(random_() * (end - created_at))
            kind = _DONE_DRAWS[int(random_() * len(_DONE_DRAWS))]
            activities.append(self._done_activity(kind, at, created_at, rep.user_id, deal_id, NULL))
            last_touch = max(last_touch, at)
        if status == "open":
            if random_() < 0.7:
                due = today + rng.randint(1, 14) * DAY + rng.randint(8 * 3600, 17 * 3600)
                made = max(entered_at, now - int(rng.uniform(0.1, 6) * DAY))
                activities.append(self._planned_activity(due, made, rep.user_id, deal_id, NULL))
            if random_() < 0.1:
                due = now - rng.randint(1, 10) * DAY + rng.randint(-4 * 3600, 4 * 3600)
                if created_at < due:
                    activities.append(self._planned_activity(due, max(created_at, due - 3 * DAY), rep.user_id,
                                                             deal_id, NULL))  # fmt: skip
        elif status == "won" and random_() < 0.5:
            at = closed_at + int(rng.uniform(2, 10) * DAY)
            if at < now:
                activities.append(self._done_activity("meeting", at, closed_at, rep.user_id, deal_id, NULL))
                last_touch = max(last_touch, at)
            else:
                activities.append(self._planned_activity(at, closed_at, rep.user_id, deal_id, NULL, kind="meeting"))

        organization_name = self._organization_name(organization_id)
        title = f"{organization_name} — {product} {'renewal' if pipeline.index == 2 else 'deal'}"
        # What the database's trigger would write (pipeline.search_text), had the load left it the indexes to.
        contact_names = self._person(contact_id) if contact_id else ()
        search_text = _copy_text(deal_search_text(title, None, organization_name, *contact_names))
        batch.deals.append(
            f"{deal_id}\t{_num(budget)}\t{bant[0]}\t{bant[1]}\t{bant[2]}\t{title}\t{status}\t{_num(amount)}\tUSD\t"
            f"{ts.date(expected) if expected is not None else NULL}\t{category}\t{override}\t{lost_note}\t{source}\t"
            f"{NULL}\t{ts.at(created_at)}\t{ts.at(last_touch)}\t{ts.at(entered_at)}\t"
            f"{ts.at(closed_at) if closed_at else NULL}\t{len(entries)}\t{contact_id or NULL}\t{rep.user_id}\t"
            f"{lost_reason}\t{organization_id}\t{pipeline.id}\t{stage_id}\t{furthest}\t{search_text}\n"
        )
        if from_lead:
            self._converted_lead(batch, deal_id, created_at, rep, organization_id, contact_id, source, amount)

    def _change_id(self) -> int:
        self.next_change_id += 1
        return self.next_change_id - 1

    def _activity_id(self) -> int:
        self.next_activity_id += 1
        return self.next_activity_id - 1

    def _done_activity(self, kind: str, at: int, earliest: int, owner_id: int, deal_id, lead_id) -> str:
        """A done activity; calls, meetings and demos were scheduled (due) a little before they ended."""
        rng, ts = self.rng, self.ts
        subjects = SUBJECTS[kind]
        subject = subjects[int(rng.random() * len(subjects))]
        done = ts.at(at)
        if kind in simulation.SCHEDULED_MINUTES:
            low, high = simulation.SCHEDULED_MINUTES[kind]
            due_at = max(earliest, at - rng.randint(low, high) * 60)
            created = max(earliest, due_at - int(rng.uniform(0.5, 7) * DAY))
            due = ts.at(due_at)
        else:
            due, created = NULL, at
        return (
            f"{self._activity_id()}\t{kind}\t{subject}\t\t{due}\t{done}\t{ts.at(created)}\t{done}\t{owner_id}\t"
            f"{deal_id}\t{lead_id}\n"
        )

    def _planned_activity(self, due: int, created: int, owner_id: int, deal_id, lead_id, *, kind: str = "") -> str:
        rng, ts = self.rng, self.ts
        kind = kind or _PLANNED_DRAWS[int(rng.random() * len(_PLANNED_DRAWS))]
        subjects = SUBJECTS[kind]
        subject = subjects[int(rng.random() * len(subjects))]
        made = ts.at(min(created, due))
        return (
            f"{self._activity_id()}\t{kind}\t{subject}\t\t{ts.at(due)}\t{NULL}\t{made}\t{made}\t{owner_id}\t"
            f"{deal_id}\t{lead_id}\n"
        )

    # --- Leads ---

    def _lead_stamps(self, path: tuple[str, ...], end: int | None) -> tuple[int, dict[str, int]]:
        """When a lead was created and first reached each status of `path`, all before now.

        With `end`, the last status is reached exactly then (a conversion is the deal's creation).
        """
        rng, now = self.rng, self.now
        gaps = [int(rng.lognormvariate(_LOG_4, 0.9) * DAY) + 60 for _ in path]
        # Inbound interest often goes straight to MQL: contacted is then stamped as passed through at once.
        if len(path) > 1 and path[0] == "contacted" and rng.random() < 0.15:
            gaps[1] = 0
        total = sum(gaps) + int(rng.lognormvariate(_LOG_2, 0.8) * DAY) + 60
        if end is None:
            # Leads still at an early status are mostly young: old ones were worked or dropped.
            if not path or path[-1] in ("contacted", "mql", "sql"):
                created_at = now - int(rng.lognormvariate(_LOG_20, 0.9) * DAY)
            else:
                created_at = self._created_moment()
            created_at = min(created_at, now - total)
        else:
            created_at = end - total
        stamps, moment = {}, created_at
        for status, gap in zip(path, gaps, strict=True):
            moment += gap
            stamps[status] = moment
        if end is not None and path:
            stamps[path[-1]] = end
        return created_at, stamps

    def _lead_line(
        self, lead_id: int, status: str, owner_id: int, created_at: int, stamps: dict[str, int], **fields
    ) -> str:
        ts, rng = self.ts, self.rng
        first, last = fields.get("name") or self._person(lead_id + 500_000)
        company = fields.get("company") or self._organization_name(lead_id * 31 % 400_000 + 1)
        email = f"{first.lower()}.{last.lower()}{lead_id}@{company.lower().replace(' ', '')}.example.com"
        low, high = simulation.LEAD_SCORES[status]
        score = rng.randint(low, high)
        stamp_text = [ts.at(stamps[key]) if key in stamps else NULL for key in _LEAD_STAMP_ORDER]
        updated = ts.at(max([created_at, *stamps.values()]))
        budget, authority, need, timeline = fields.get("bant") or (None, "", "", "")
        return (
            f"{lead_id}\t{_num(budget)}\t{authority}\t{need}\t{timeline}\t{first}\t{last}\t{email}\t\t{company}\t"
            f"{JOB_TITLES[lead_id % len(JOB_TITLES)]}\t{fields['source']}\t{status}\t{score}\t"
            f"{fields.get('disqualified_reason', '')}\t{NULL}\t{ts.at(created_at)}\t{updated}\t"
            + "\t".join(stamp_text)
            + f"\t{fields.get('contact_id') or NULL}\t{fields.get('deal_id') or NULL}\t{owner_id}\t"
            f"{fields.get('organization_id') or NULL}\n"
        )

    def _converted_lead(self, batch, deal_id, created_at, rep, organization_id, contact_id, source, amount) -> None:
        lead_id = self.next_lead_id
        self.next_lead_id += 1
        created, stamps = self._lead_stamps(("contacted", "mql", "sql", "converted"), created_at)
        name = self._person(contact_id) if contact_id else None
        budget = round(amount * self.rng.uniform(0.9, 1.5)) if amount else None
        batch.leads.append(
            self._lead_line(
                lead_id,
                "converted",
                rep.user_id,
                created,
                stamps,
                name=name,
                company=self._organization_name(organization_id),
                source=source,
                contact_id=contact_id,
                deal_id=deal_id,
                organization_id=organization_id,
                bant=(budget, AUTHORITIES[lead_id % len(AUTHORITIES)], "", TIMELINES[lead_id % len(TIMELINES)]),
            )
        )
        kind = "call" if self.rng.random() < 0.5 else "email"
        batch.activities.append(self._done_activity(kind, stamps["contacted"], created, rep.user_id, NULL, lead_id))

    def _leads(self, *, count: int) -> None:
        rng = self.rng
        statuses = [status for status, share in simulation.LEAD_MIX.items() for _ in range(math.floor(count * share))]
        statuses += ["new"] * (count - len(statuses))
        rng.shuffle(statuses)
        forward = ("contacted", "mql", "sql")
        for start in range(0, len(statuses), DEAL_CHUNK):
            batch = _Batch()
            for status in statuses[start : start + DEAL_CHUNK]:
                lead_id = self.next_lead_id
                self.next_lead_id += 1
                rep = self.reps[self._pick_rep()]
                if status == "disqualified":
                    steps = bisect.bisect_left((35, 65, 90, 100), rng.random() * 100)
                    path = (*forward[:steps], "disqualified")
                else:
                    path = forward[: forward.index(status) + 1] if status != "new" else ()
                created_at, stamps = self._lead_stamps(path, None)
                source = self.lead_sources[
                    bisect.bisect_left(self.lead_source_cumulative, rng.random() * self.lead_source_cumulative[-1])
                ]
                fields = {"source": source}
                if status == "disqualified":
                    fields["disqualified_reason"] = DISQUALIFIED_REASONS[lead_id % len(DISQUALIFIED_REASONS)]
                if "sql" in stamps:
                    fields["bant"] = (
                        round(rng.lognormvariate(_LOG_15K, 0.8), -3),
                        AUTHORITIES[lead_id % len(AUTHORITIES)],
                        NEEDS[lead_id % len(NEEDS)].format(product="our platform"),
                        TIMELINES[lead_id % len(TIMELINES)],
                    )
                batch.leads.append(self._lead_line(lead_id, status, rep.user_id, created_at, stamps, **fields))
                if "contacted" in stamps:
                    kind = "call" if rng.random() < 0.5 else "email"
                    batch.activities.append(
                        self._done_activity(kind, stamps["contacted"], created_at, rep.user_id, NULL, lead_id)
                    )
                elif status == "new" and rng.random() < 0.6:
                    due = self.now // DAY * DAY + rng.randint(1, 7) * DAY + 9 * 3600
                    batch.activities.append(
                        self._planned_activity(due, created_at, rep.user_id, NULL, lead_id, kind="call")
                    )
            self._copy("pipeline_lead", LEAD_COLUMNS, batch.leads)
            self._copy("pipeline_activity", ACTIVITY_COLUMNS, batch.activities)
            self._count("leads", len(batch.leads))
            self._count("activities", len(batch.activities))
        self._count("leads", self.counts.pop("converted leads", 0))

    # --- Quotas ---

    def _quotas(self) -> None:
        """Quarterly quotas for every rep and team over the history and the next quarter: a bit above what the rep
        wins in an average quarter, scaled to the business's size at the time (it grows)."""
        today = self.now_datetime.date()
        this_quarter = simulation.quarter_start(today)
        quarters = HISTORY_DAYS / 91.31
        first = simulation.add_months(this_quarter, -3 * int(quarters))
        created = self.ts.at(self.now - (HISTORY_DAYS + 1) * DAY)
        lines, quota_id, start = [], 0, first
        half_slope = (GROWTH - 1) / 2
        while start <= simulation.add_months(this_quarter, 3):
            end = simulation.add_months(start, 3)
            elapsed = min(1.0, max(0.0, 1 - (today - start).days / HISTORY_DAYS))
            growth = (1 + 2 * half_slope * elapsed) / (1 + half_slope)
            team_totals = [0] * (len(TEAM_NAMES) + 1)
            for rep_index, rep in enumerate(self.reps):
                amount = round(self.won_by_rep[rep_index] / quarters * growth * 1.15, -3)
                team_totals[rep.team_id] += amount
                quota_id += 1
                lines.append(f"{quota_id}\t{start}\t{end}\t{amount:.2f}\t{created}\t{NULL}\t{rep.user_id}\n")
            for team_id in range(1, len(TEAM_NAMES) + 1):
                quota_id += 1
                lines.append(f"{quota_id}\t{start}\t{end}\t{team_totals[team_id]:.2f}\t{created}\t{team_id}\t{NULL}\n")
            start = end
        self._copy("forecasting_quota", "id, period_start, period_end, amount, created_at, team_id, user_id", lines)
        self._count("quotas", quota_id)


# --- Small pieces --------------------------------------------------------------------------------------------------

_WON_LOST_TRIGGERS = "stage_one_won_one_lost, pipeline_one_won_one_lost"  # migration 0002
_LOG_2, _LOG_4, _LOG_20, _LOG_15K = math.log(2), math.log(4), math.log(20), math.log(15_000)
_LEAD_STAMP_ORDER = ("contacted", "mql", "sql", "converted", "disqualified")

DEAL_COLUMNS = (
    "id, budget, authority, need, timeline, title, status, amount, currency, expected_close_date, forecast_category, "
    "forecast_category_override, lost_note, source, external_id, created_at, updated_at, stage_entered_at, "
    "closed_at, version, contact_id, owner_id, lost_reason_id, organization_id, pipeline_id, stage_id, "
    "furthest_open_order, search_text"
)
STAGE_CHANGE_COLUMNS = "id, deal_id, from_stage_id, to_stage_id, changed_by_id, changed_at, left_at"
LEAD_COLUMNS = (
    "id, budget, authority, need, timeline, first_name, last_name, email, phone, company, job_title, source, status, "
    "score, disqualified_reason, external_id, created_at, updated_at, contacted_at, mql_at, sql_at, converted_at, "
    "disqualified_at, contact_id, deal_id, owner_id, organization_id"
)
ACTIVITY_COLUMNS = "id, kind, subject, note, due_at, done_at, created_at, updated_at, owner_id, deal_id, lead_id"


@dataclass
class _Rep:
    user_id: int
    manager_id: int
    team_id: int
    skill: float
    pace: float
    amount: float


@dataclass
class _Batch:
    deals: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    leads: list[str] = field(default_factory=list)
    activities: list[str] = field(default_factory=list)


class _SimulatedPipeline:
    """A pipeline's stage ids and the simulation parameters of its open stages, in order."""

    def __init__(self, pipeline_id: int, spec: simulation.PipelineSpec):
        self.id = pipeline_id
        self.index = pipeline_id - 1
        self.spec = spec
        self.log_median_amount = math.log(spec.median_amount)
        self.open_ids: list[int] = []
        self.open_orders: list[int] = []
        self.open_specs: list[simulation.StageSpec] = []
        self.log_median_days: list[float] = []
        self.loss: list[float] = []
        self.required_up_to: list[frozenset[str]] = []  # the fields required by any open stage up to each one
        self.won_id = self.lost_id = 0

    def add(self, stage_id: int, stage: simulation.StageSpec, order: int) -> None:
        if stage.kind == "won":
            self.won_id = stage_id
        elif stage.kind == "lost":
            self.lost_id = stage_id
        else:
            self.open_ids.append(stage_id)
            self.open_orders.append(order)
            self.open_specs.append(stage)
            self.log_median_days.append(math.log(stage.median_days))
            self.loss.append(stage.loss)
            previous = self.required_up_to[-1] if self.required_up_to else frozenset()
            self.required_up_to.append(previous | frozenset(stage.required))

    def stage_id(self, index: int) -> int:
        if index == simulation.WON:
            return self.won_id
        if index == simulation.LOST:
            return self.lost_id
        return self.open_ids[index]


def _accumulate(values) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


def _copy_text(text: str) -> str:
    """`text` as a field of COPY's text format: its backslashes and line breaks escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _num(cents_or_units) -> str:
    """A whole amount (in currency units) as numeric text, or NULL."""
    return NULL if cents_or_units is None else f"{int(cents_or_units)}.00"
