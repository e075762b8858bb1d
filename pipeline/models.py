"""The sales pipeline: pipelines and their stages, customers, leads, deals, stage history and activities.

Invariants live in the database (check, unique and foreign-key constraints, and the triggers in migration 0002),
so they hold however a row is written. Workflows live in `pipeline.services`.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower, Now, Upper
from django.utils import timezone


def trigram_index(field: str, name: str) -> GinIndex:
    """A trigram GIN index on UPPER(field): the expression Django's `icontains` compares on PostgreSQL
    (`UPPER(col::text) LIKE UPPER('%term%')`), so a search for a term of 3 characters or more is served by the
    index instead of reading every row (pipeline.search)."""
    return GinIndex(OpClass(Upper(field), name="gin_trgm_ops"), name=name)


class StageKind(models.TextChoices):
    OPEN = "open", "Open"
    WON = "won", "Won"
    LOST = "lost", "Lost"


# A deal's status is always its stage's kind; the same three values.
DealStatus = StageKind


class ForecastCategory(models.TextChoices):
    PIPELINE = "pipeline", "Pipeline"
    BEST_CASE = "best_case", "Best case"
    COMMIT = "commit", "Commit"


class LeadStatus(models.TextChoices):
    NEW = "new", "New"
    CONTACTED = "contacted", "Contacted"
    MQL = "mql", "Marketing qualified"
    SQL = "sql", "Sales qualified"
    CONVERTED = "converted", "Converted"
    DISQUALIFIED = "disqualified", "Disqualified"


# The forward path of a lead; `disqualified` can be reached from any status before `converted`.
LEAD_STATUS_PATH = [LeadStatus.NEW, LeadStatus.CONTACTED, LeadStatus.MQL, LeadStatus.SQL, LeadStatus.CONVERTED]


class ActivityKind(models.TextChoices):
    CALL = "call", "Call"
    EMAIL = "email", "Email"
    MEETING = "meeting", "Meeting"
    DEMO = "demo", "Demo"
    TASK = "task", "Task"
    NOTE = "note", "Note"


# Deal fields a stage may require before a deal enters it (SPEC §2).
REQUIRABLE_DEAL_FIELDS = {
    "amount": "Amount",
    "expected_close_date": "Expected close date",
    "organization": "Organization",
    "contact": "Contact",
    "budget": "Budget (BANT)",
    "authority": "Authority (BANT)",
    "need": "Need (BANT)",
    "timeline": "Timeline (BANT)",
}


def default_currency() -> str:
    return settings.DEFAULT_CURRENCY


class Pipeline(models.Model):
    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_pipeline"),
        ]

    def __str__(self) -> str:
        return self.name


class Stage(models.Model):
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=100)
    order = models.PositiveSmallIntegerField()
    probability = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(100)], help_text="Configured win probability, 0–100."
    )
    kind = models.CharField(max_length=8, choices=StageKind.choices, default=StageKind.OPEN)
    rotting_days = models.PositiveSmallIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="An open deal older than this in the stage is stale."
    )
    required_fields = ArrayField(
        models.CharField(max_length=32, choices=list(REQUIRABLE_DEAL_FIELDS.items())),
        default=list,
        blank=True,
        help_text="Deal fields that must be filled before a deal may enter this stage.",
    )
    forecast_category = models.CharField(
        max_length=16, choices=ForecastCategory.choices, default=ForecastCategory.PIPELINE
    )

    class Meta:
        ordering = ["pipeline", "order"]
        constraints = [
            # Deferred, so that stages can swap places inside one transaction.
            models.UniqueConstraint(
                fields=["pipeline", "order"],
                name="stage_order_unique_per_pipeline",
                deferrable=models.Deferrable.DEFERRED,
            ),
            models.UniqueConstraint(fields=["pipeline", "name"], name="stage_name_unique_per_pipeline"),
            # At most one won and one lost stage; migration 0002 adds the trigger that requires at least one.
            models.UniqueConstraint(
                fields=["pipeline", "kind"], condition=~Q(kind="open"), name="one_won_and_one_lost_stage_per_pipeline"
            ),
            # The target of the deal's composite foreign key (stage, pipeline, status).
            models.UniqueConstraint(fields=["id", "pipeline", "kind"], name="stage_id_pipeline_kind_unique"),
            models.CheckConstraint(
                condition=Q(probability__gte=0, probability__lte=100), name="stage_probability_0_100"
            ),
            models.CheckConstraint(condition=Q(kind__in=StageKind.values), name="stage_kind_valid"),
            models.CheckConstraint(condition=~Q(kind="won") | Q(probability=100), name="won_stage_probability_is_100"),
            models.CheckConstraint(condition=~Q(kind="lost") | Q(probability=0), name="lost_stage_probability_is_0"),
            models.CheckConstraint(condition=Q(rotting_days__gte=1), name="stage_rotting_days_positive"),
            models.CheckConstraint(
                condition=Q(required_fields__contained_by=list(REQUIRABLE_DEAL_FIELDS)),
                name="stage_required_fields_known",
            ),
            models.CheckConstraint(
                condition=Q(forecast_category__in=ForecastCategory.values), name="stage_forecast_category_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline.name}: {self.name}" if "pipeline" in self.__dict__ else self.name

    @property
    def is_open(self) -> bool:
        return self.kind == StageKind.OPEN


LOST_REASON_NAME_TAKEN = "A lost reason with this name already exists (names ignore case)."


class LostReason(models.Model):
    name = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # "Price" and "price" are one reason: two would split the lost-reason figures between them.
            models.UniqueConstraint(
                Lower("name"),
                name="lost_reason_name_unique_ignoring_case",
                violation_error_message=LOST_REASON_NAME_TAKEN,
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Organization(models.Model):
    """The customer company."""

    name = models.CharField(max_length=200)
    website = models.URLField(blank=True)
    industry = models.CharField(max_length=100, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="organizations"
    )
    external_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["owner"]),
            models.Index(fields=["name"]),
            # The API's other list orders (`ordering=`): a sync walks `updated_at`, from its last walk on.
            models.Index(fields=["created_at"], name="organization_created_idx"),
            models.Index(fields=["updated_at"], name="organization_updated_idx"),
            trigram_index("name", "organization_name_trgm_idx"),
            trigram_index("website", "organization_website_trgm_idx"),
            trigram_index("external_id", "organization_extid_trgm_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    """A person at an organization."""

    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=50, blank=True)
    job_title = models.CharField(max_length=100, blank=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.SET_NULL, null=True, blank=True, related_name="contacts"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="contacts"
    )
    external_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["last_name", "first_name"]
        indexes = [
            models.Index(fields=["owner"]),
            models.Index(fields=["organization"]),
            # The API's list orders (`ordering=`), the default with the id that breaks its ties: a page is read
            # from the index, where a sort of every contact took 20-40 ms on 22,000 (and 0.6-2.4 s for a rep).
            models.Index(fields=["last_name", "first_name", "id"], name="contact_name_idx"),
            models.Index(fields=["created_at"], name="contact_created_idx"),
            models.Index(fields=["updated_at"], name="contact_updated_idx"),
            trigram_index("first_name", "contact_first_name_trgm_idx"),
            trigram_index("last_name", "contact_last_name_trgm_idx"),
            trigram_index("email", "contact_email_trgm_idx"),
            trigram_index("external_id", "contact_extid_trgm_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class BantFields(models.Model):
    """Budget, Authority, Need, Timeline: the qualification a lead collects and a deal carries on."""

    budget = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    authority = models.CharField(max_length=200, blank=True, help_text="Who decides, and are we talking to them?")
    need = models.TextField(blank=True)
    timeline = models.CharField(max_length=200, blank=True)

    class Meta:
        abstract = True


class Lead(BantFields):
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=50, blank=True)
    company = models.CharField(max_length=200, blank=True)
    job_title = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=LeadStatus.choices, default=LeadStatus.NEW)
    score = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="leads")
    organization = models.ForeignKey(
        Organization, on_delete=models.SET_NULL, null=True, blank=True, related_name="leads"
    )
    contact = models.ForeignKey(Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="leads")
    deal = models.OneToOneField("pipeline.Deal", on_delete=models.SET_NULL, null=True, blank=True, related_name="lead")
    disqualified_reason = models.CharField(max_length=200, blank=True)
    external_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # The first time the lead reached each status; skipped statuses are stamped as passed through.
    contacted_at = models.DateTimeField(null=True, blank=True)
    mql_at = models.DateTimeField(null=True, blank=True)
    sql_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    disqualified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "status"]),
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["sql_at"]),
            # Leads created in a range, whatever their status: lead metrics computed when asked (a custom range).
            models.Index(fields=["created_at"], name="lead_created_idx"),
            # The API's `ordering=updated_at`, the order a sync walks.
            models.Index(fields=["updated_at"], name="lead_updated_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=LeadStatus.values), name="lead_status_valid"),
            models.CheckConstraint(condition=Q(score__lte=100), name="lead_score_0_100"),
            models.CheckConstraint(
                condition=Q(budget__isnull=True) | Q(budget__gte=0), name="lead_budget_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(status="converted") | Q(deal__isnull=False, converted_at__isnull=False),
                name="converted_lead_has_deal",
            ),
            models.CheckConstraint(
                condition=~Q(status="disqualified") | Q(disqualified_at__isnull=False),
                name="disqualified_lead_has_time",
            ),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{name} ({self.company})" if self.company else name


class Deal(BantFields):
    title = models.CharField(max_length=200)
    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="deals")
    # With `pipeline` and `status`, part of a composite foreign key to (stage.id, stage.pipeline, stage.kind)
    # added in migration 0002: the database itself keeps status == stage.kind and the stage in the deal's pipeline.
    stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="deals")
    status = models.CharField(max_length=8, choices=DealStatus.choices, default=DealStatus.OPEN)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deals")
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="deals"
    )
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, null=True, blank=True, related_name="deals")
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    currency = models.CharField(
        max_length=3,
        default=default_currency,
        validators=[RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code such as USD.")],
    )
    expected_close_date = models.DateField(null=True, blank=True)
    # The effective category: the stage's default unless `forecast_category_override` is set.
    forecast_category = models.CharField(
        max_length=16, choices=ForecastCategory.choices, default=ForecastCategory.PIPELINE
    )
    forecast_category_override = models.CharField(
        max_length=16, choices=ForecastCategory.choices, null=True, blank=True
    )
    lost_reason = models.ForeignKey(LostReason, on_delete=models.PROTECT, null=True, blank=True, related_name="deals")
    lost_note = models.TextField(blank=True)
    source = models.CharField(max_length=100, blank=True)
    external_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    stage_entered_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    # Stamped by the database when a StageChange is inserted (pipeline.stage_history): the highest `order` among
    # the open stages the deal ever entered, null before it entered one. The funnel and the learned probabilities
    # read it instead of aggregating all of the stage history on every recompute.
    furthest_open_order = models.SmallIntegerField(null=True, blank=True, editable=False)
    # Stamped by the database (pipeline.touches): its creation, an edit of a field, a done activity or a note.
    # Rotting by inactivity reads it. The default only makes Django leave it to the trigger and read it back.
    last_touched_at = models.DateTimeField(db_default=Now(), editable=False)
    # Written by the database (pipeline.search_text): the title, external id, organization and contact names, what
    # the search reads. The default only makes Django leave it to the trigger and read it back.
    search_text = models.TextField(db_default="", editable=False)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["pipeline", "stage", "-stage_entered_at"], name="deal_board_idx"),
            # The board from the index alone: its column counts and totals (187 ms of scattered heap reads became
            # 18 ms on a pipeline with 50,000 open deals), and each column's newest cards in order, for a manager too
            # (the owner is carried, so their team's cards are picked while walking it: 104 ms became 9 ms).
            models.Index(
                fields=["pipeline", "stage", "-stage_entered_at", "-id"],
                include=["amount", "owner"],
                condition=Q(status="open"),
                name="deal_open_column_idx",
            ),
            models.Index(fields=["owner", "status"], name="deal_owner_status_idx"),
            # The deal table and the API list: a manager's or a rep's visibility (`owner_id = ANY(...)`) and the
            # pipeline, stage and status filters as one index condition, the admin's filters as another, each with
            # the amount, so that the table's count and total of up to 10,001 rows are read from the index alone
            # (a manager's 114 ms of heap reads became a few ms on L: docs/performance.md, "The deal table"); and
            # `updated_at`, so that the table's default order of a manager's stage picks its page from the index
            # too (its 1,880 deals were 1,838 heap blocks, 2 ms). No update is made any less cheap: `updated_at`
            # changes on every one, and other indexes hold it already.
            models.Index(
                fields=["owner", "pipeline", "stage", "status"],
                include=["amount", "updated_at", "id"],
                name="deal_owner_stage_updated_idx",
            ),
            # The planner is told that the stage decides the pipeline and the status (extended statistics,
            # pipeline 0031), so that it estimates their conditions together as the stage's alone.
            models.Index(fields=["pipeline", "stage", "status"], include=["amount"], name="deal_stage_idx"),
            # The board of a manager or a rep: their open deals of a pipeline by stage, so that the column totals
            # read only their entries (not every open deal of the pipeline, testing the owner of each).
            models.Index(
                fields=["owner", "pipeline", "stage", "-stage_entered_at", "-id"],
                include=["amount"],
                condition=Q(status="open"),
                name="deal_open_owner_column_idx",
            ),
            # With the id that breaks ties, so that `ordering=-expected_close_date` (NULLs first) and `-amount` read a
            # page from the index: a sort of the 14,000 deals without a value took 25 ms of 100,000.
            models.Index(fields=["expected_close_date", "id"], name="deal_expected_close_idx"),
            models.Index(fields=["amount", "id"], name="deal_amount_idx"),
            # Closes and creations in a range, read from the index alone by the metrics computed when asked (a custom
            # range: forecasting.selectors.metric_rows): win rates, sales cycle and the won side of the forecast by
            # close, the funnel's cohort by creation. Over a quarter of 100,000 deals, 17 ms of scattered heap reads
            # became 2 ms for the closes.
            models.Index(
                fields=["status", "closed_at"],
                include=["created_at", "amount", "owner", "pipeline", "source"],
                name="deal_closes_idx",
            ),
            models.Index(
                fields=["created_at"],
                include=["pipeline", "owner", "source", "status", "furthest_open_order"],
                name="deal_cohort_idx",
            ),
            # Newest first, with the owner as a key column (pipeline 0032): a manager's searched page walks it and
            # tests their ten owners on each entry before reading the deal, so that only their own deals are read
            # to test the words (1,044 for 51 on L, where the walk read 7,000 of everyone's: SQL 7-13 → 1.4 ms).
            models.Index(fields=["updated_at", "id", "owner"], name="deal_updated_owner_idx"),
            # A rep's or a manager's searched list in its default order: their deals newest first, each tested for
            # the words, until a page is found (pipeline.selectors.visible_deals, `searched`).
            models.Index(fields=["owner", "-updated_at", "-id"], name="deal_owner_updated_idx"),
            # The stale-deals metric and the `stale=` filter: open deals untouched since before a cut-off.
            models.Index(fields=["status", "last_touched_at"], name="deal_last_touch_idx"),
            # The search: every word tested on one column (pipeline.search_text). Its statistics target is 300
            # (pipeline 0030: how many deals a word matches decides a searched page's plan); a rebuilt index needs
            # it set again.
            trigram_index("search_text", "deal_search_trgm_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=DealStatus.values), name="deal_status_valid"),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0), name="deal_amount_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(budget__isnull=True) | Q(budget__gte=0), name="deal_budget_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(status="open", closed_at__isnull=True) | (~Q(status="open") & Q(closed_at__isnull=False)),
                name="deal_closed_at_iff_closed",
            ),
            models.CheckConstraint(
                condition=Q(status="lost", lost_reason__isnull=False)
                | (~Q(status="lost") & Q(lost_reason__isnull=True)),
                name="deal_lost_reason_iff_lost",
            ),
            models.CheckConstraint(
                condition=Q(forecast_category__in=ForecastCategory.values), name="deal_forecast_category_valid"
            ),
            models.CheckConstraint(
                condition=Q(forecast_category_override__isnull=True)
                | Q(forecast_category_override=F("forecast_category")),
                name="deal_forecast_override_is_effective",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="deal_version_positive"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="deal_currency_iso_4217"),
        ]

    def __str__(self) -> str:
        return self.title


class StageChange(models.Model):
    """Append-only history of every stage a deal enters (a trigger refuses any UPDATE but the stamp of left_at).

    The source of truth for funnels, time in stage and learned probabilities.
    """

    deal = models.ForeignKey(Deal, on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.ForeignKey(Stage, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    to_stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="+")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)
    # Stamped by the database (pipeline.stage_history): when the deal left the stage this change entered, i.e. the
    # changed_at of its next change; null while the deal is still there. Time in stage reads completed stays
    # straight from it instead of ordering all of history in a window on every recompute.
    left_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["deal", "changed_at", "id"]
        indexes = [
            models.Index(fields=["deal", "changed_at"], name="stagechange_deal_time_idx"),
            models.Index(fields=["to_stage", "changed_at"], name="stagechange_stage_time_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(from_stage__isnull=True) | ~Q(from_stage=F("to_stage")), name="stagechange_moves"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deal_id}: {self.from_stage_id} → {self.to_stage_id} at {self.changed_at:%Y-%m-%d %H:%M}"


class StageState(models.Model):
    """An interval `[valid_from, valid_to)` of a stage's configured probability and default forecast category (SPEC
    §3a: "for every stage the intervals of its probability and default category"), so that the backtest and the
    calibration weigh a past instant with the probability configured then.

    Written by triggers on pipeline_stage (migration 0022) on every path: a new stage opens its first interval at
    0001-01-01 UTC, the first instant a Python datetime holds (deals may be imported with history from before the
    stage existed: its first values are taken for then); a change of either column closes the open interval and
    opens the next at the statement's clock; a deletion closes it. The stage is a plain integer, not a foreign key:
    a deleted stage's history does not block its deletion. Stages that existed before the migration start at
    0001-01-01 too, with their values of that day.
    """

    stage_id = models.BigIntegerField()
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True)
    probability = models.PositiveSmallIntegerField()
    forecast_category = models.CharField(max_length=16, choices=ForecastCategory.choices)

    class Meta:
        ordering = ["stage_id", "valid_from", "id"]
        indexes = [models.Index(fields=["stage_id", "valid_from"], name="stagestate_stage_from_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=F("valid_from")), name="stagestate_interval"
            ),
            models.UniqueConstraint(
                fields=["stage_id"], condition=Q(valid_to__isnull=True), name="stagestate_one_open"
            ),
        ]

    def __str__(self) -> str:
        return f"Stage {self.stage_id}: {self.probability}% from {self.valid_from}"


class DealState(models.Model):
    """An interval `[valid_from, valid_to)` of a deal's forecast-relevant state (pipeline.field_history).

    The stage gives the pipeline and the status of the interval (a stage's pipeline and kind never change while
    deals are in it), so they are not stored twice.
    Written by triggers on pipeline_deal only, on every path; append-only but for closing the open interval
    (`valid_to` null while it lasts). No database foreign key to the deal: a deleted deal keeps its history.
    `changed_by` made the change that opened the interval, when the writer said who (services, imports).
    """

    # No index of their own on the foreign keys: (deal, valid_from) serves the deal, and the others are only
    # looked up when a user, stage or pipeline is deleted (rare, and refused while history names them).
    deal = models.ForeignKey(
        Deal, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="states", editable=False
    )
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="+", db_index=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    expected_close_date = models.DateField(null=True, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3)
    forecast_category = models.CharField(max_length=16, choices=ForecastCategory.choices)

    class Meta:
        # By the column: ordering by "deal" would join the deal (its own ordering) and drop deleted deals.
        ordering = ["deal_id", "valid_from", "id"]
        indexes = [
            models.Index(fields=["deal", "valid_from"], name="dealstate_deal_from_idx"),
            # The backtest and the call trend find a period's deals by the close date of their intervals.
            models.Index(fields=["expected_close_date", "valid_from"], name="dealstate_close_from_idx"),
            # The waterfall and slippage read the intervals holding an instant, index-only: those still open by
            # stage and close date (open(P, T)) or by start (what began after A), the closed ones by their end.
            models.Index(
                fields=["stage", "expected_close_date"],
                include=("valid_from", "deal", "owner", "amount"),
                condition=Q(valid_to__isnull=True),
                name="dealstate_current_idx",
            ),
            models.Index(
                fields=["valid_from"],
                include=("deal", "stage", "owner", "amount", "expected_close_date"),
                condition=Q(valid_to__isnull=True),
                name="dealstate_current_from_idx",
            ),
            models.Index(
                fields=["valid_to"],
                include=("valid_from", "deal", "stage", "owner", "amount", "expected_close_date"),
                condition=Q(valid_to__isnull=False),
                name="dealstate_to_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=F("valid_from")), name="dealstate_interval"
            ),
            # At most one open interval per deal: the trigger closes one before it opens the next.
            models.UniqueConstraint(fields=["deal"], condition=Q(valid_to__isnull=True), name="dealstate_one_open"),
        ]

    def __str__(self) -> str:
        return f"{self.deal_id}: {self.valid_from:%Y-%m-%d %H:%M} – {self.valid_to or 'now'}"


class Activity(models.Model):
    """A call, email, meeting, demo, task or note on a deal or a lead; planned (due_at) and/or done (done_at)."""

    kind = models.CharField(max_length=16, choices=ActivityKind.choices)
    subject = models.CharField(max_length=200)
    note = models.TextField(blank=True)
    deal = models.ForeignKey(Deal, on_delete=models.CASCADE, null=True, blank=True, related_name="activities")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, null=True, blank=True, related_name="activities")
    # Logged on this lead, then carried over to the deal it was converted into (`deal` set, `lead` empty): the
    # lead's page still lists it, the deal's timeline holds it.
    from_lead = models.ForeignKey(
        Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="carried_activities"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="activities")
    due_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "activities"
        indexes = [
            models.Index(fields=["owner", "done_at", "due_at"], name="activity_inbox_idx"),
            models.Index(fields=["deal", "due_at"], name="activity_deal_due_idx"),
            models.Index(fields=["lead", "due_at"], name="activity_lead_due_idx"),
            # The API's list orders (`ordering=`): the default, and the one a sync walks.
            models.Index(fields=["created_at"], name="activity_created_idx"),
            models.Index(fields=["updated_at"], name="activity_updated_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ActivityKind.values), name="activity_kind_valid"),
            models.CheckConstraint(
                condition=Q(deal__isnull=False, lead__isnull=True) | Q(deal__isnull=True, lead__isnull=False),
                name="activity_on_deal_or_lead",
            ),
            models.CheckConstraint(
                condition=Q(due_at__isnull=False) | Q(done_at__isnull=False), name="activity_planned_or_done"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.subject}"


class ImportKind(models.TextChoices):
    DEALS = "deals", "Deals"
    STAGE_CHANGES = "stage_changes", "Stage changes"
    FIELD_CHANGES = "field_changes", "Field changes"
    LEADS = "leads", "Leads"
    ORGANIZATIONS = "organizations", "Organizations"
    CONTACTS = "contacts", "Contacts"


class ImportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"  # a dry run that found no error also ends here, having written nothing
    FAILED = "failed", "Failed"  # rows were refused (see `errors`) or the file could not be read; nothing written


class ImportJob(models.Model):
    """One CSV import (or dry run) and what became of it; the API, the upload page and the command share it.

    The file is either uploaded to storage (`file`) or read where it lies on the server (`source_path`, for the
    management command). `mapping` maps CSV columns to fields; `options` holds the rest (see
    `pipeline.importing.ImportOptions`). Progress counters are updated while rows are checked, so that a page can
    show a progress bar; `errors` keeps the first rows refused (row, column, value, message).
    """

    kind = models.CharField(max_length=16, choices=ImportKind.choices)
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.PENDING)
    file = models.FileField(upload_to="imports/%Y/%m/", blank=True)
    source_path = models.CharField(max_length=500, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    mapping = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    dry_run = models.BooleanField(default=False)
    total_rows = models.PositiveIntegerField(default=0, help_text="Estimated from the line count, for progress.")
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="import_jobs"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["created_by", "-created_at"], name="importjob_user_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ImportKind.values), name="importjob_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=ImportStatus.values), name="importjob_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} import #{self.pk} ({self.status})"


class SavedDealView(models.Model):
    """A deal table (/deals/) a user named: its filters, sort and columns, kept as the page's query string."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_deal_views")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="saved_deal_view_unique_name"),
            models.CheckConstraint(condition=~Q(name=""), name="saved_deal_view_has_name"),
        ]

    def __str__(self) -> str:
        return self.name


# Webhooks keep their models in their own module (pipeline/webhooks/); importing them here registers them with the app.
from pipeline.webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription  # noqa: E402, F401
