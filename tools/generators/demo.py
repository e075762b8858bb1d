"""Deterministic demo data: users in teams, two pipelines, customers, deals with full stage history, activities, leads.

`seed_demo` is what `manage.py seed_demo` runs. The same seed on the same day gives the same data: every random
choice comes from one `random.Random(seed)` in a fixed order, and every date is relative to today's midnight.

Deals are simulated rather than drawn independently (`simulation.walk`, as for the benchmark datasets): each walks its
pipeline from the first open stage, staying a stage-specific lognormal time in each, moving on, sometimes skipping a
stage or moving back, until it is won, lost or reaches today. So the history behind every metric of SPEC §3
(funnels, time in stage, learned probabilities, stale deals, forecasts) looks like a real team's and stays consistent
with the deals' current fields.

Reference data (users, teams, pipelines, lost reasons) is reused when it already exists under the demo names, so
running again adds another batch of customers, deals and leads beside the first.
"""

import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TextIO

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import models, transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from accounts.models import Role, Team, User
from pipeline.models import (
    Activity,
    ActivityKind,
    Contact,
    Deal,
    ForecastCategory,
    Lead,
    LeadStatus,
    LostReason,
    Organization,
    Pipeline,
    Stage,
    StageChange,
    StageKind,
)
from tools.generators import vocabulary
from tools.generators.simulation import (
    CLOSING_FIELDS,
    DONE_KINDS,
    LEAD_MIX,
    LEAD_SCORES,
    LOST,
    LOST_STAGE,
    PLANNED_KINDS,
    SCHEDULED_MINUTES,
    WON,
    WON_STAGE,
    Moves,
    PipelineSpec,
    StageSpec,
    add_months,
    quarter_start,
    walk,
)

BATCH_SIZE = 2000
# Deals are generated and written this many at a time, so that 100,000 deals never sit in memory at once.
DEAL_CHUNK = 5000

HISTORY_DAYS = 548  # 18 months of deals
# The business grows: deals are created this many times as often today as 18 months ago (linearly in between).
GROWTH = 4.0
DWELL_SIGMA = 0.9  # spread of the lognormal time in stage
# Stalled deals: nobody closes them, they rot in their stage. Every real pipeline has some.
STALL_CHANCE = 0.15
STALL_PACE = 5.0
MOVES = Moves(skip_chance=0.08, back_chance=0.05, max_backs=2, max_loss=0.9)
MANAGER_MOVE_CHANCE = 0.06  # stage changes made by the owner's manager rather than the owner
OVERRIDE_CHANCE = 0.12  # open deals outside a commit stage that the owner commits anyway


class DemoSeedError(Exception):
    """Existing data under the demo names does not have the shape the demo needs."""


# --- What to create ----------------------------------------------------------------------------------------------

# The first pipeline is the default one.
PIPELINES = (
    PipelineSpec(
        name="New Business",
        share=0.8,
        median_amount=14_000,
        amount_sigma=0.9,
        products=(
            "Analytics",
            "Platform",
            "Data Sync",
            "Security Suite",
            "Reporting",
            "Workflow",
            "API Access",
            "Mobile",
        ),
        title_suffixes=("expansion", "pilot", "rollout", "new licences", "implementation", "upgrade"),
        stages=(
            StageSpec("Prospecting", 10, rotting_days=21, median_days=10, loss=0.33),
            StageSpec("Qualification", 20, rotting_days=30, median_days=16, loss=0.28),
            StageSpec("Discovery", 40, required=("amount",), rotting_days=35, median_days=24, loss=0.20),
            StageSpec(
                "Proposal",
                60,
                required=CLOSING_FIELDS,
                category=ForecastCategory.BEST_CASE,
                rotting_days=40,
                median_days=28,
                loss=0.16,
            ),
            StageSpec(
                "Negotiation",
                80,
                required=CLOSING_FIELDS,
                category=ForecastCategory.COMMIT,
                rotting_days=45,
                median_days=32,
                loss=0.14,
            ),
            WON_STAGE,
            LOST_STAGE,
        ),
    ),
    PipelineSpec(
        name="Renewals",
        share=0.2,
        median_amount=9_000,
        amount_sigma=0.9,
        products=("Platform", "Support Plus", "Analytics", "Security Suite"),
        title_suffixes=("renewal",),
        stages=(
            StageSpec("Outreach", 30, rotting_days=30, median_days=18, loss=0.18),
            StageSpec("Renewal proposal", 60, required=("amount",), rotting_days=30, median_days=21, loss=0.16),
            StageSpec(
                "Contract sent",
                85,
                required=("amount", "expected_close_date"),
                category=ForecastCategory.COMMIT,
                rotting_days=14,
                median_days=9,
                loss=0.10,
            ),
            WON_STAGE,
            LOST_STAGE,
        ),
    ),
)
NEW_BUSINESS = PIPELINES[0]


@dataclass(frozen=True)
class RepSpec:
    first_name: str
    last_name: str
    volume: float  # relative share of customers and deals
    skill: float  # multiplies the chance of losing at each stage: below 1 wins more


@dataclass(frozen=True)
class TeamSpec:
    name: str
    manager: tuple[str, str]
    reps: tuple[RepSpec, ...]
    amount_factor: float
    pace: float  # multiplies time in stage: enterprise deals move slowly


TEAMS = (
    TeamSpec(
        "East",
        ("Grace", "Holloway"),
        (RepSpec("Marcus", "Bell", 3.0, 0.9), RepSpec("Priya", "Nair", 1.3, 0.75), RepSpec("Tom", "Becker", 0.4, 1.3)),
        amount_factor=0.8,
        pace=1.0,
    ),
    TeamSpec(
        "West",
        ("Daniel", "Ortiz"),
        (
            RepSpec("Sofia", "Rossi", 2.2, 1.0),
            RepSpec("Kevin", "Tran", 1.6, 1.15),
            RepSpec("Hannah", "Weber", 0.7, 0.85),
        ),
        amount_factor=0.8,
        pace=0.9,
    ),
    TeamSpec(
        "Enterprise",
        ("Olivia", "Chen"),
        (
            RepSpec("James", "Carter", 1.8, 0.85),
            RepSpec("Aisha", "Khan", 1.0, 0.95),
            RepSpec("Lucas", "Silva", 0.3, 1.2),
        ),
        amount_factor=2.2,
        pace=1.4,
    ),
)
ADMIN_NAME = ("Alex", "Morgan")

SUBJECTS = {
    ActivityKind.CALL: (
        "Intro call with {first}",
        "Follow-up call with {first}",
        "Pricing call with {first}",
        "Check-in call with {first}",
        "Call {first} about next steps",
    ),
    ActivityKind.EMAIL: (
        "Sent {product} overview to {first}",
        "Sent proposal to {first}",
        "Follow-up email to {first}",
        "Shared a case study with {first}",
        "Recap of our meeting",
    ),
    ActivityKind.MEETING: (
        "Meeting with {first} {last}",
        "On-site meeting at {org}",
        "Stakeholder meeting at {org}",
        "Contract review with {first}",
    ),
    ActivityKind.DEMO: ("{product} demo for {org}", "Technical deep-dive with {first}"),
    ActivityKind.NOTE: (
        "Budget confirmed for next quarter",
        "{first} {last} is the decision maker",
        "A competitor is also in the running",
        "Legal review needed before signing",
        "Asked for references",
    ),
    ActivityKind.TASK: ("Prepare proposal for {org}", "Send pricing to {first}", "Update the mutual action plan"),
}

# Converted leads: their share of all leads (the deals they became are decided up front).
CONVERTED_LEAD_SHARE = 0.22
LEAD_STAMPS = {
    LeadStatus.CONTACTED: "contacted_at",
    LeadStatus.MQL: "mql_at",
    LeadStatus.SQL: "sql_at",
    LeadStatus.CONVERTED: "converted_at",
}


# --- The result --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    team: str
    password: str


@dataclass
class DemoSummary:
    """What `seed_demo` created, and how to log in."""

    seed: int
    users: int = 0  # created by this run: existing demo users are reused
    organizations: int = 0
    contacts: int = 0
    deals_by_status: Counter = field(default_factory=Counter)
    stage_changes: int = 0
    activities: int = 0
    leads_by_status: Counter = field(default_factory=Counter)
    logins: list[DemoLogin] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def deals(self) -> int:
        return sum(self.deals_by_status.values())

    @property
    def leads(self) -> int:
        return sum(self.leads_by_status.values())

    def report(self) -> str:
        """The summary and the table of demo logins, for a terminal."""
        deals = ", ".join(f"{self.deals_by_status[kind]} {kind}" for kind in StageKind.values)
        leads = ", ".join(f"{self.leads_by_status[status]} {status}" for status in LeadStatus.values)
        lines = [
            f"Seeded demo data (seed {self.seed}) in {self.seconds:.1f} s:",
            f"  {self.users} users, {self.organizations} organizations, {self.contacts} contacts",
            f"  {self.deals} deals ({deals}), {self.stage_changes} stage changes, {self.activities} activities",
            f"  {self.leads} leads ({leads})",
            "",
            "Demo logins:",
        ]
        return "\n".join([*lines, logins_table(self.logins)])


def logins_table(logins: Sequence[DemoLogin]) -> str:
    """The demo logins as an aligned table, for a terminal."""
    header = ("username", "role", "team", "password")
    rows = [(login.username, login.role, login.team, login.password) for login in logins]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, tuple("-" * width for width in widths), *rows]
    )


def demo_usernames() -> list[str]:
    """The usernames `seed_demo` creates: the admin, then each team's manager and reps."""
    names = ["admin"]
    for team in TEAMS:
        names += [team.manager[0].lower(), *(rep.first_name.lower() for rep in team.reps)]
    return names


def existing_demo_logins() -> list[DemoLogin]:
    """The demo users that exist now, for reminding a returning developer how to log in."""
    users = User.objects.filter(username__in=demo_usernames(), is_active=True).select_related("team")
    by_name = {user.username: user for user in users}
    return [
        DemoLogin(
            username=name,
            role=by_name[name].get_role_display(),
            team=by_name[name].team.name if by_name[name].team else "",
            password=f"{vocabulary.DEMO_PASSWORD} (unless changed)",
        )
        for name in demo_usernames()
        if name in by_name
    ]


# --- The seeding -------------------------------------------------------------------------------------------------


def seed_demo(
    *, deals: int = 2000, seed: int = 42, stdout: TextIO | None = None, now: datetime | None = None
) -> DemoSummary:
    """Create the demo users, pipelines, customers, `deals` deals with history and activities, and leads.

    Deterministic: the same `seed` on the same day (or with the same `now`) creates the same data. Dates are spread
    over the 18 months before `now`, which defaults to today's midnight. Runs in one transaction; raises
    `DemoSeedError` when existing data under the demo names cannot be reused.
    """
    if deals < 0:
        raise ValueError("deals must not be negative")
    started = time.monotonic()
    now = now or timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    with transaction.atomic():
        summary = _Seeder(seed=seed, now=now, stdout=stdout).run(deals=deals)
    summary.seconds = time.monotonic() - started
    return summary


def _lead_count(deals: int) -> int:
    return max(50, round(deals * 0.3)) if deals else 0


@dataclass
class _Rep:
    user: User
    manager: User
    team: TeamSpec
    spec: RepSpec
    organizations: list[Organization] = field(default_factory=list)


@dataclass
class _SeededPipeline:
    spec: PipelineSpec
    pipeline: Pipeline
    open_stages: list[Stage]
    simulation: list[StageSpec]  # parallel to open_stages
    won: Stage
    lost: Stage

    def stage(self, index: int) -> Stage:
        """The stage of an entry of `walk`: an open stage by index, or WON or LOST."""
        if index == WON:
            return self.won
        if index == LOST:
            return self.lost
        return self.open_stages[index]


class _Seeder:
    def __init__(self, *, seed: int, now: datetime, stdout: TextIO | None):
        self.rng = random.Random(seed)
        self.now = now
        self.stdout = stdout
        self.summary = DemoSummary(seed=seed)
        self.company_names: set[tuple[str, ...]] = set()
        self.contacts_by_org: dict[int, list[Contact]] = {}
        self.converted_leads: list[Lead] = []
        # Rows whose auto_now `updated_at` is restamped at the end, by model.
        self.created_ids: dict[type, list[int]] = {Activity: [], Lead: [], Organization: [], Contact: []}

    def run(self, *, deals: int) -> DemoSummary:
        self.reps = self._users()
        self.pipelines = [self._pipeline(spec) for spec in PIPELINES]
        self.lost_reasons = self._lost_reasons()
        self._organizations(count=max(300, deals // 8))
        self._deals(count=deals)
        self._leads(count=_lead_count(deals))
        self._quotas()
        self._stamp_updated_at()
        return self.summary

    def _quotas(self) -> None:
        """Quarterly quotas for each rep and team, from a year ago to next quarter: a bit above what each rep
        has won in an average quarter, so attainment, coverage and deals needed have something to say."""
        from forecasting.models import Quota

        quarters = HISTORY_DAYS / 91.3
        won = dict(
            Deal.objects.filter(status=StageKind.WON, owner__in=[rep.user for rep in self.reps])
            .values_list("owner")
            .annotate(total=models.Sum("amount"))
        )
        today = self.now.date()
        starts = [add_months(quarter_start(today), 3 * offset) for offset in range(-4, 2)]
        quotas = []
        for start in starts:
            end = add_months(start, 3)
            team_totals: Counter = Counter()
            for rep in self.reps:
                amount = Decimal(round(float(won.get(rep.user.pk) or 0) / quarters * 1.15, -3))
                team_totals[rep.user.team_id] += amount
                quotas.append(Quota(user=rep.user, period_start=start, period_end=end, amount=amount))
            quotas += [
                Quota(team_id=team_id, period_start=start, period_end=end, amount=total)
                for team_id, total in team_totals.items()
            ]
        existing = set(Quota.objects.values_list("user_id", "team_id", "period_start"))
        Quota.objects.bulk_create(q for q in quotas if (q.user_id, q.team_id, q.period_start) not in existing)

    def _say(self, message: str) -> None:
        if self.stdout is not None:
            self.stdout.write(message + "\n")

    # --- Random helpers ---

    def _weighted(self, weights: dict) -> object:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def _lognormal(self, median: float, sigma: float) -> float:
        return self.rng.lognormvariate(math.log(median), sigma)

    def _office_hours(self, moment: datetime) -> datetime:
        """`moment` moved forward into office hours on a weekday; only forward, so a history stays in order."""
        if moment.hour >= 18:
            moment = (moment + timedelta(days=1)).replace(hour=8, minute=0) + timedelta(minutes=self.rng.randrange(150))
        elif moment.hour < 8:
            moment = moment.replace(hour=8, minute=0) + timedelta(minutes=self.rng.randrange(150))
        while moment.weekday() >= 5:
            moment += timedelta(days=1)
        return moment.replace(second=0, microsecond=0)

    def _moment_in_history(self) -> datetime:
        """A working moment in the last 18 months, more of them recent (see GROWTH)."""
        half_slope = (GROWTH - 1) / 2
        while True:
            # The inverse of the cumulative distribution of a density rising linearly from 1 to GROWTH.
            share = self.rng.random() * (1 + half_slope)
            elapsed = (math.sqrt(1 + 4 * half_slope * share) - 1) / (2 * half_slope) if half_slope else share
            moment = self._office_hours(self.now - timedelta(days=HISTORY_DAYS * (1 - elapsed)))
            if moment < self.now:
                return moment

    def _person(self) -> tuple[str, str]:
        return self.rng.choice(vocabulary.FIRST_NAMES), self.rng.choice(vocabulary.LAST_NAMES)

    def _company(self) -> tuple[str, str, str]:
        """A company name not used before in this run, its industry and its website."""
        for attempt in range(1000):
            key: tuple[str, ...] = (
                self.rng.choice(vocabulary.COMPANY_PREFIXES),
                self.rng.choice(vocabulary.COMPANY_CORE_WORDS),
            )
            # The plain "Prefix Core" names run out after a few thousand companies; then they get a city.
            if attempt >= 10:
                key += (self.rng.choice(vocabulary.CITIES),)
            if attempt >= 100:
                key += (str(attempt),)
            if key not in self.company_names:
                break
        self.company_names.add(key)
        name = " ".join(key[:2])
        form = self.rng.choice(vocabulary.COMPANY_FORMS)
        if form:
            name += f" {form}"
        if len(key) > 2:
            name += f" ({' '.join(key[2:])})"
        website = "https://www." + "".join(key).lower() + self.rng.choice(vocabulary.TLDS)
        return name, vocabulary.COMPANY_CORES[key[1]], website

    # --- Reference data ---

    def _users(self) -> list[_Rep]:
        wanted: list[tuple[str, str, str, str, TeamSpec | None]] = [(*ADMIN_NAME, "admin", Role.ADMIN, None)]
        for team in TEAMS:
            wanted.append((*team.manager, team.manager[0].lower(), Role.MANAGER, team))
            wanted += [(rep.first_name, rep.last_name, rep.first_name.lower(), Role.REP, team) for rep in team.reps]
        teams = {spec.name: Team.objects.get_or_create(name=spec.name)[0] for spec in TEAMS}
        existing = {user.username: user for user in User.objects.filter(username__in=[w[2] for w in wanted])}
        # One hash for all: the default hasher takes a noticeable fraction of a second per call, by design.
        password = make_password(vocabulary.DEMO_PASSWORD)
        new_users = [
            User(
                username=username,
                first_name=first_name,
                last_name=last_name,
                email=f"{username}@example.com",
                password=password,
                role=role,
                team=teams[team.name] if team else None,
                is_staff=role in (Role.ADMIN, Role.MANAGER),
                is_superuser=role == Role.ADMIN,
                date_joined=self.now - timedelta(days=HISTORY_DAYS + 30),
            )
            for first_name, last_name, username, role, team in wanted
            if username not in existing
        ]
        users = existing | {user.username: user for user in User.objects.bulk_create(new_users)}
        self.summary.users = len(new_users)

        reps = []
        for team in TEAMS:
            manager = users[team.manager[0].lower()]
            teams[team.name].managers.add(manager)
            reps += [_Rep(users[rep.first_name.lower()], manager, team, rep) for rep in team.reps]
        for _first, _last, username, role, team in wanted:
            self.summary.logins.append(
                DemoLogin(
                    username=username,
                    role=Role(role).label,
                    team=team.name if team else "",
                    password=vocabulary.DEMO_PASSWORD if username not in existing else "(existing user, unchanged)",
                )
            )
        return reps

    def _pipeline(self, spec: PipelineSpec) -> _SeededPipeline:
        pipeline = Pipeline.objects.filter(name=spec.name).first()
        if pipeline is None:
            is_default = spec is PIPELINES[0] and not Pipeline.objects.filter(is_default=True).exists()
            pipeline = Pipeline.objects.create(
                name=spec.name, is_default=is_default, created_at=self.now - timedelta(days=HISTORY_DAYS + 30)
            )
            Stage.objects.bulk_create(
                Stage(
                    pipeline=pipeline,
                    name=stage.name,
                    order=order,
                    probability=stage.probability,
                    kind=stage.kind,
                    rotting_days=stage.rotting_days,
                    required_fields=list(stage.required),
                    forecast_category=stage.category,
                )
                for order, stage in enumerate(spec.stages, 1)
            )
        stages = {stage.name: stage for stage in pipeline.stages.all()}
        if any(stages.get(stage.name) is None or stages[stage.name].kind != stage.kind for stage in spec.stages):
            raise DemoSeedError(
                f"Pipeline {spec.name!r} exists with stages other than the demo's "
                f"({', '.join(stage.name for stage in spec.stages)}); remove it or seed an empty database."
            )
        opens = [stage for stage in spec.stages if stage.kind == StageKind.OPEN]
        return _SeededPipeline(
            spec=spec,
            pipeline=pipeline,
            open_stages=[stages[stage.name] for stage in opens],
            simulation=opens,
            won=next(stage for stage in stages.values() if stage.kind == StageKind.WON),
            lost=next(stage for stage in stages.values() if stage.kind == StageKind.LOST),
        )

    def _lost_reasons(self) -> dict[LostReason, int]:
        reasons = {name: LostReason.objects.get_or_create(name=name)[0] for name in vocabulary.LOST_REASONS}
        return {reasons[name]: weight for name, weight in vocabulary.LOST_REASONS.items()}

    # --- Customers ---

    def _organizations(self, *, count: int) -> None:
        volumes = [rep.spec.volume for rep in self.reps]
        organizations = []
        for index in range(count):
            # Every rep gets a customer before the volumes decide the rest.
            rep = self.reps[index] if index < len(self.reps) else self.rng.choices(self.reps, weights=volumes)[0]
            name, industry, website = self._company()
            organization = Organization(
                name=name,
                industry=industry,
                website=website,
                owner=rep.user,
                # Customers predate the deals: the demo starts with an existing customer base.
                created_at=self.now - timedelta(days=HISTORY_DAYS + self.rng.uniform(1, 365)),
            )
            rep.organizations.append(organization)
            organizations.append(organization)
        Organization.objects.bulk_create(organizations, batch_size=BATCH_SIZE)
        self.created_ids[Organization] = [organization.pk for organization in organizations]

        contacts = []
        for organization in organizations:
            domain = organization.website.removeprefix("https://www.")
            people = []
            for _ in range(self.rng.choices((1, 2, 3), weights=(45, 35, 20))[0]):
                first_name, last_name = self._person()
                people.append(
                    Contact(
                        first_name=first_name,
                        last_name=last_name,
                        email=f"{first_name}.{last_name}@{domain}".lower(),
                        phone=f"+1 555 {self.rng.randint(100, 999)} {self.rng.randint(1000, 9999)}",
                        job_title=self.rng.choice(vocabulary.JOB_TITLES),
                        organization=organization,
                        owner=organization.owner,
                        created_at=organization.created_at + timedelta(days=self.rng.uniform(0, 30)),
                    )
                )
            self.contacts_by_org[organization.pk] = people
            contacts += people
        Contact.objects.bulk_create(contacts, batch_size=BATCH_SIZE)
        self.created_ids[Contact] = [contact.pk for contact in contacts]
        self.summary.organizations = len(organizations)
        self.summary.contacts = len(contacts)

    # --- Deals ---

    def _deals(self, *, count: int) -> None:
        pipelines = self.pipelines
        plan = self.rng.choices(pipelines, weights=[pipeline.spec.share for pipeline in pipelines], k=count)
        # Some new-business deals came from converted leads; decided up front so the lead count is exact.
        new_business = [index for index, pipeline in enumerate(plan) if pipeline is pipelines[0]]
        converted_target = round(_lead_count(count) * CONVERTED_LEAD_SHARE)
        from_leads = set(self.rng.sample(new_business, min(converted_target, len(new_business))))

        volumes = [rep.spec.volume for rep in self.reps]
        for start in range(0, count, DEAL_CHUNK):
            deals, changes, activities = [], [], []
            for index in range(start, min(start + DEAL_CHUNK, count)):
                rep = self.rng.choices(self.reps, weights=volumes)[0]
                deal, deal_changes, deal_activities = self._deal(plan[index], rep, from_lead=index in from_leads)
                deals.append(deal)
                changes += deal_changes
                activities += deal_activities
            Deal.objects.bulk_create(deals, batch_size=BATCH_SIZE)
            StageChange.objects.bulk_create(changes, batch_size=BATCH_SIZE)
            Activity.objects.bulk_create(activities, batch_size=BATCH_SIZE)
            self.created_ids[Activity] += [activity.pk for activity in activities]
            self.summary.deals_by_status.update(deal.status for deal in deals)
            self.summary.stage_changes += len(changes)
            self.summary.activities += len(activities)
            if count > DEAL_CHUNK:
                self._say(f"  deals: {min(start + DEAL_CHUNK, count)}/{count}")

    def _walk(
        self, pipeline: _SeededPipeline, start: datetime, pace: float, skill: float
    ) -> list[tuple[Stage, datetime]]:
        """The stages a deal entered and when, from the first open stage until it closes or reaches now."""
        simulation = pipeline.simulation

        def stay(index: int, entered: datetime) -> datetime:
            days = self._lognormal(simulation[index].median_days, DWELL_SIGMA) * pace
            # Deals move in office hours.
            return self._office_hours(entered + timedelta(days=days))

        loss = [stage.loss for stage in simulation]
        entries = walk(self.rng, MOVES, start=start, now=self.now, stay=stay, loss=loss, skill=skill)
        return [(pipeline.stage(index), at) for index, at in entries]

    def _deal(self, pipeline: _SeededPipeline, rep: _Rep, *, from_lead: bool) -> tuple[Deal, list, list]:
        rng = self.rng
        organization = rng.choice(rep.organizations)
        people = self.contacts_by_org[organization.pk]
        created_at = self._moment_in_history()
        pace = self._lognormal(1, 0.4) * rep.team.pace * (STALL_PACE if rng.random() < STALL_CHANCE else 1)
        entries = self._walk(pipeline, created_at, pace, rep.spec.skill)
        stage, entered_at = entries[-1]
        required = {name for entered, _at in entries for name in entered.required_fields}
        reached = max(pipeline.open_stages.index(entered) for entered, _at in entries if entered.is_open)
        closed_at = entered_at if not stage.is_open else None

        product = rng.choice(pipeline.spec.products)
        suffix = rng.choice(pipeline.spec.title_suffixes)
        if suffix == "renewal":
            suffix = f"renewal {created_at.year + 1}"
        amount = None
        if "amount" in required or rng.random() < 0.65:
            raw = self._lognormal(pipeline.spec.median_amount * rep.team.amount_factor, pipeline.spec.amount_sigma)
            amount = Decimal(max(5, round(raw / 100)) * 100)
        contact = None
        if "contact" in required or from_lead or rng.random() < 0.85:
            contact = rng.choice(people)

        deal = Deal(
            title=f"{organization.name} — {product} {suffix}",
            pipeline=pipeline.pipeline,
            stage=stage,
            status=stage.kind,
            owner=rep.user,
            organization=organization,
            contact=contact,
            amount=amount,
            currency=settings.DEFAULT_CURRENCY,
            expected_close_date=self._expected_close(pipeline, stage, entries, required),
            forecast_category=stage.forecast_category,
            source=self._weighted(vocabulary.LEAD_SOURCES if from_lead else vocabulary.SOURCES),
            created_at=created_at,
            stage_entered_at=entered_at,
            closed_at=closed_at,
            version=len(entries),
        )
        if stage.is_open and stage.forecast_category != ForecastCategory.COMMIT and rng.random() < OVERRIDE_CHANCE:
            deal.forecast_category = deal.forecast_category_override = ForecastCategory.COMMIT
        if stage.kind == StageKind.LOST:
            deal.lost_reason = self._weighted(self.lost_reasons)
            if rng.random() < 0.3:
                deal.lost_note = rng.choice(vocabulary.LOST_NOTES[deal.lost_reason.name])
        if reached >= 1 and rng.random() < 0.6:
            deal.budget = Decimal(round(float(amount or 10_000) * rng.uniform(0.9, 1.5), -2))
            deal.authority = rng.choice(vocabulary.AUTHORITIES)
            deal.need = rng.choice(vocabulary.NEEDS).format(product=product)
            deal.timeline = rng.choice(vocabulary.TIMELINES)

        changes = [
            StageChange(
                deal=deal,
                from_stage=entries[position - 1][0] if position else None,
                to_stage=entered,
                changed_by=rep.manager if position and rng.random() < MANAGER_MOVE_CHANCE else rep.user,
                changed_at=at,
            )
            for position, (entered, at) in enumerate(entries)
        ]
        words = {
            "first": (contact or people[0]).first_name,
            "last": (contact or people[0]).last_name,
            "org": organization.name,
            "product": product,
        }
        activities = self._deal_activities(deal, rep, len(entries), words)
        deal.updated_at = max([entered_at, *(activity.done_at or activity.created_at for activity in activities)])
        if from_lead:
            self.converted_leads.append(self._converted_lead(deal, rep))
        return deal, changes, activities

    def _expected_close(
        self, pipeline: _SeededPipeline, stage: Stage, entries: list[tuple[Stage, datetime]], required: set[str]
    ) -> date | None:
        rng = self.rng
        created, (_stage, entered_at) = entries[0][1].date(), entries[-1]
        if stage.kind == StageKind.WON:
            # Won deals close about when the rep said they would, a few a little early or late.
            return max(created, entered_at.date() + timedelta(days=0 if rng.random() < 0.5 else rng.randint(-14, 7)))
        if "expected_close_date" not in required and rng.random() < 0.2:
            return None
        if stage.kind == StageKind.LOST:
            return max(created, entered_at.date() + timedelta(days=rng.randint(-10, 60)))
        today = self.now.date()
        if rng.random() < 0.13 and (today - created).days > 14:
            return today - timedelta(days=rng.randint(1, min(45, (today - created).days - 1)))
        # Later stages are expected to close sooner.
        progress = pipeline.open_stages.index(stage) / max(1, len(pipeline.open_stages) - 1)
        return today + timedelta(days=rng.randint(0, round(120 - 75 * progress)))

    def _activity(self, kind: str, words: dict, **fields) -> Activity:
        subject = self.rng.choice(SUBJECTS[kind]).format(**words)
        return Activity(kind=kind, subject=subject, **fields)

    def _done(self, kind: str, words: dict, *, at: datetime, earliest: datetime, **fields) -> Activity:
        """A done activity that ended at `at`; calls, meetings and demos were scheduled (due) before."""
        if kind in SCHEDULED_MINUTES:
            minutes = self.rng.randint(*SCHEDULED_MINUTES[kind])
            due_at = max(earliest, (at - timedelta(minutes=minutes)).replace(minute=0))
            created_at = max(earliest, due_at - timedelta(days=self.rng.uniform(0.5, 7)))
            return self._activity(kind, words, due_at=due_at, done_at=at, created_at=created_at, **fields)
        return self._activity(kind, words, done_at=at, created_at=at, **fields)

    def _deal_activities(self, deal: Deal, rep: _Rep, changes: int, words: dict) -> list[Activity]:
        rng = self.rng
        end = deal.closed_at or self.now
        span = (end - deal.created_at).total_seconds()
        activities = []
        for _ in range(min(6, rng.randint(1, 3) + changes // 2)):
            moment = (deal.created_at + timedelta(seconds=span * rng.random())).replace(second=0, microsecond=0)
            in_hours = self._office_hours(moment)
            # Unless the deal closed (or today ended) before the next working hour.
            at = in_hours if in_hours < end else moment
            kind = self._weighted(DONE_KINDS)
            owner = rep.manager if kind == ActivityKind.MEETING and rng.random() < 0.1 else rep.user
            activities.append(self._done(kind, words, at=at, earliest=deal.created_at, deal=deal, owner=owner))
        if deal.status == StageKind.OPEN:
            if rng.random() < 0.7:
                due_at = self._office_hours(self.now + timedelta(days=rng.randint(1, 14), hours=rng.uniform(8, 17)))
                created_at = max(deal.stage_entered_at, self.now - timedelta(days=rng.uniform(0.1, 6)))
                kind = self._weighted(PLANNED_KINDS)
                activities.append(
                    self._activity(kind, words, deal=deal, owner=rep.user, due_at=due_at, created_at=created_at)
                )
            due_at = self._office_hours(self.now - timedelta(days=rng.randint(1, 10), hours=rng.uniform(0, 12)))
            # Overdue: a next step the rep planned and then let slip.
            if rng.random() < 0.1 and deal.created_at < due_at < self.now:
                created_at = max(deal.created_at, due_at - timedelta(days=rng.uniform(1, 7)))
                kind = self._weighted(PLANNED_KINDS)
                activities.append(
                    self._activity(kind, words, deal=deal, owner=rep.user, due_at=due_at, created_at=created_at)
                )
        elif deal.status == StageKind.WON and rng.random() < 0.5:
            # Post-sale follow-up (SPEC §1): a kickoff after the signature, done or still to come.
            at = self._office_hours(deal.closed_at + timedelta(days=rng.uniform(2, 10)))
            subject = f"Kickoff with {words['first']} at {words['org']}"
            if at < self.now:
                kickoff = self._done(
                    ActivityKind.MEETING, words, at=at, earliest=deal.closed_at, deal=deal, owner=rep.user
                )
                kickoff.subject = subject
            else:
                kickoff = Activity(
                    kind=ActivityKind.MEETING,
                    subject=subject,
                    deal=deal,
                    owner=rep.user,
                    due_at=at,
                    created_at=deal.closed_at,
                )
            activities.append(kickoff)
        return activities

    # --- Leads ---

    def _lead_timeline(self, statuses: Sequence[str], *, end: datetime | None) -> tuple[datetime, dict[str, datetime]]:
        """When a lead was created and reached each of `statuses` (after new), in order, all before now.

        With `end`, the last status is reached exactly then (a conversion is the deal's creation).
        """
        rng = self.rng
        gaps = [self._lognormal(4, 0.9) for _ in statuses]
        # Inbound interest often goes straight to MQL: contacted is then stamped as passed through at once.
        if len(statuses) > 1 and statuses[0] == LeadStatus.CONTACTED and rng.random() < 0.15:
            gaps[1] = 0.0
        total = timedelta(days=sum(gaps) + self._lognormal(2, 0.8))
        if end is None:
            # Leads still at an early status are mostly young: old ones were worked or dropped.
            young = not statuses or statuses[-1] in (LeadStatus.CONTACTED, LeadStatus.MQL, LeadStatus.SQL)
            if young:
                created_at = self._office_hours(self.now - timedelta(days=self._lognormal(20, 0.9)))
            else:
                created_at = self._moment_in_history()
            created_at = min(created_at, self.now - total)
        else:
            created_at = end - total
        stamps, moment = {}, created_at
        for status, gap in zip(statuses, gaps, strict=True):
            moment += timedelta(days=gap)
            stamps[status] = moment
        if end is not None and statuses:
            stamps[statuses[-1]] = end
        return created_at, stamps

    def _lead_fields(self, status: str, stamps: dict[str, datetime]) -> dict:
        fields = {LEAD_STAMPS[reached]: at for reached, at in stamps.items() if reached in LEAD_STAMPS}
        fields["score"] = self.rng.randint(*LEAD_SCORES[status])
        return fields

    def _converted_lead(self, deal: Deal, rep: _Rep) -> Lead:
        path = [LeadStatus.CONTACTED, LeadStatus.MQL, LeadStatus.SQL, LeadStatus.CONVERTED]
        created_at, stamps = self._lead_timeline(path, end=deal.created_at)
        contact = deal.contact
        return Lead(
            first_name=contact.first_name,
            last_name=contact.last_name,
            email=contact.email,
            phone=contact.phone,
            company=deal.organization.name,
            job_title=contact.job_title,
            source=deal.source,
            status=LeadStatus.CONVERTED,
            owner=rep.user,
            organization=deal.organization,
            contact=contact,
            deal=deal,
            budget=deal.budget,
            authority=deal.authority,
            need=deal.need,
            timeline=deal.timeline,
            created_at=created_at,
            **self._lead_fields(LeadStatus.CONVERTED, stamps),
        )

    def _leads(self, *, count: int) -> None:
        rng = self.rng
        others = count - len(self.converted_leads)
        statuses = [status for status, share in LEAD_MIX.items() for _ in range(math.floor(others * share))]
        statuses += [LeadStatus.NEW] * (others - len(statuses))
        rng.shuffle(statuses)
        volumes = [rep.spec.volume for rep in self.reps]
        forward = [LeadStatus.CONTACTED, LeadStatus.MQL, LeadStatus.SQL]

        leads = list(self.converted_leads)
        for status in statuses:
            rep = rng.choices(self.reps, weights=volumes)[0]
            if status == LeadStatus.DISQUALIFIED:
                path = [*forward[: rng.choices((0, 1, 2, 3), weights=(35, 30, 25, 10))[0]], LeadStatus.DISQUALIFIED]
            else:
                path = forward[: forward.index(status) + 1] if status != LeadStatus.NEW else []
            created_at, stamps = self._lead_timeline(path, end=None)
            first_name, last_name = self._person()
            company, _industry, website = self._company()
            lead = Lead(
                first_name=first_name,
                last_name=last_name,
                email=f"{first_name}.{last_name}@{website.removeprefix('https://www.')}".lower(),
                company=company,
                job_title=rng.choice(vocabulary.JOB_TITLES),
                source=self._weighted(vocabulary.LEAD_SOURCES),
                status=status,
                owner=rep.user,
                created_at=created_at,
                **self._lead_fields(status, stamps),
            )
            if status == LeadStatus.DISQUALIFIED:
                lead.disqualified_at = stamps[LeadStatus.DISQUALIFIED]
                lead.disqualified_reason = rng.choice(vocabulary.DISQUALIFIED_REASONS)
            if LeadStatus.MQL in stamps and rng.random() < 0.7:
                lead.need = rng.choice(vocabulary.NEEDS).format(product=rng.choice(NEW_BUSINESS.products))
            if LeadStatus.SQL in stamps:
                lead.budget = Decimal(round(self._lognormal(15_000, 0.8), -3))
                lead.authority = rng.choice(vocabulary.AUTHORITIES)
                lead.timeline = rng.choice(vocabulary.TIMELINES)
            leads.append(lead)
        Lead.objects.bulk_create(leads, batch_size=BATCH_SIZE)
        self.created_ids[Lead] = [lead.pk for lead in leads]
        self.summary.leads_by_status.update(lead.status for lead in leads)

        activities = [activity for lead in leads for activity in self._lead_activities(lead)]
        Activity.objects.bulk_create(activities, batch_size=BATCH_SIZE)
        self.created_ids[Activity] += [activity.pk for activity in activities]
        self.summary.activities += len(activities)

    def _lead_activities(self, lead: Lead) -> Iterable[Activity]:
        words = {"first": lead.first_name, "last": lead.last_name, "org": lead.company, "product": "our product"}
        if lead.contacted_at:
            kind = self.rng.choice((ActivityKind.CALL, ActivityKind.EMAIL))
            yield self._done(kind, words, at=lead.contacted_at, earliest=lead.created_at, lead=lead, owner=lead.owner)
        elif lead.status == LeadStatus.NEW and self.rng.random() < 0.6:
            due_at = self._office_hours(self.now + timedelta(days=self.rng.randint(1, 7), hours=9))
            yield Activity(
                kind=ActivityKind.CALL,
                subject=f"First outreach to {lead.first_name} {lead.last_name}",
                lead=lead,
                owner=lead.owner,
                due_at=due_at,
                created_at=lead.created_at,
            )

    # --- Finishing ---

    def _stamp_updated_at(self) -> None:
        """Give auto_now `updated_at` fields the simulated time of the last change rather than the seeding time."""
        lead_times = ("created_at", "contacted_at", "mql_at", "sql_at", "converted_at", "disqualified_at")
        last_change = {
            Activity: Coalesce("done_at", "created_at"),
            Lead: Greatest(*lead_times),
            Organization: F("created_at"),
            Contact: F("created_at"),
        }
        for model, ids in self.created_ids.items():
            for start in range(0, len(ids), BATCH_SIZE * 5):
                model.objects.filter(pk__in=ids[start : start + BATCH_SIZE * 5]).update(updated_at=last_change[model])
