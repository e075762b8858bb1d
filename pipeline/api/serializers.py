"""Shapes of the pipeline's records in the API. Serializers validate input and shape output; the rules of the
domain stay in `pipeline.services`, which the views call with `validated_data`.

Every id a client may send for a related record is looked up among the rows the user may see (or, for owners,
the users whose records they may change): an id outside them reads exactly like one that does not exist.
"""

from collections.abc import Callable
from datetime import date
from decimal import Decimal

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from accounts.models import AuditEntry
from accounts.selectors import assignable_owners
from config.api import OptionalEmailField, OptionalURLField
from pipeline import selectors, services
from pipeline.models import (
    REQUIRABLE_DEAL_FIELDS,
    Activity,
    Contact,
    Deal,
    DealStatus,
    ForecastCategory,
    Lead,
    LeadStatus,
    LostReason,
    Organization,
    Pipeline,
    Stage,
    StageChange,
)


class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A related record given by id, accepted only among `scope(request.user)`."""

    def __init__(self, *, scope: Callable[..., QuerySet], **kwargs):
        self.scope = scope
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet:
        return self.scope(self.context["request"].user)

    def to_internal_value(self, data):
        """An id outside `scope` answers 404 like any record outside the user's visibility (SPEC §2): whether it
        exists elsewhere or nowhere, the answer is the same, so nothing leaks."""
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as error:
            if "does_not_exist" in error.get_codes():
                raise NotFound(f"No {self.field_name.replace('_', ' ')} with id {data} that you can use.") from error
            raise


def owner_field(**kwargs) -> ScopedRelatedField:
    return ScopedRelatedField(scope=assignable_owners, **kwargs)


def external_id_field() -> serializers.CharField:
    # Null, not "", means "none": the column is unique, and two blank ids would collide.
    return serializers.CharField(
        max_length=100, required=False, allow_null=True, help_text="Your system's id, unique per kind of record."
    )


def organization_field(**kwargs) -> ScopedRelatedField:
    return ScopedRelatedField(scope=selectors.visible_organizations, allow_null=True, required=False, **kwargs)


def contact_field(**kwargs) -> ScopedRelatedField:
    return ScopedRelatedField(scope=selectors.visible_contacts, allow_null=True, required=False, **kwargs)


# --- Configuration: pipelines, stages, lost reasons -------------------------------------------------------------


def required_fields_field() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=list(REQUIRABLE_DEAL_FIELDS.items())),
        required=False,
        help_text="Deal fields that must be filled before a deal may enter the stage.",
    )


class StageSerializer(serializers.ModelSerializer):
    """A stage; its pipeline and kind are fixed once created."""

    required_fields = required_fields_field()

    class Meta:
        model = Stage
        fields = [
            "id",
            "pipeline",
            "name",
            "order",
            "probability",
            "kind",
            "rotting_days",
            "required_fields",
            "forecast_category",
        ]
        read_only_fields = ["id", "pipeline", "kind"]
        # The service checks names per pipeline; DRF's generated validator cannot see the read-only pipeline.
        validators = []
        extra_kwargs = {"order": {"required": False}, "probability": {"required": False}}


class StageCreateSerializer(StageSerializer):
    """A new open stage of `pipeline`, at `order` (default: last); the stages from there on move one place."""

    pipeline = serializers.PrimaryKeyRelatedField(queryset=Pipeline.objects.all())

    class Meta(StageSerializer.Meta):
        read_only_fields = ["id", "kind"]
        extra_kwargs = {"order": {"required": False}, "probability": {"required": True}}


class PipelineStageInputSerializer(serializers.ModelSerializer):
    """A stage of a new pipeline; its order is its place in the list."""

    required_fields = required_fields_field()

    class Meta:
        model = Stage
        fields = ["name", "kind", "probability", "rotting_days", "required_fields", "forecast_category"]
        validators = []


class PipelineSerializer(serializers.ModelSerializer):
    stages = StageSerializer(many=True, read_only=True)
    # Declared, so that DRF does not derive a uniqueness check from the one-default constraint: making a pipeline the
    # default is allowed, and the service unsets the previous one.
    is_default = serializers.BooleanField(required=False)

    class Meta:
        model = Pipeline
        fields = ["id", "name", "is_default", "created_at", "stages"]
        read_only_fields = ["id", "created_at"]


class PipelineCreateSerializer(PipelineSerializer):
    """A new pipeline with its stages in order: open ones, then exactly one won and one lost stage."""

    stages = PipelineStageInputSerializer(many=True)


class LostReasonSerializer(serializers.ModelSerializer):
    class Meta:
        model = LostReason
        fields = ["id", "name", "is_active"]
        read_only_fields = ["id"]


# --- Customers ----------------------------------------------------------------------------------------------------


class OrganizationSerializer(serializers.ModelSerializer):
    owner = owner_field(required=False)
    website = OptionalURLField()
    external_id = external_id_field()

    class Meta:
        model = Organization
        fields = ["id", "name", "website", "industry", "owner", "external_id", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class ContactSerializer(serializers.ModelSerializer):
    owner = owner_field(required=False)
    organization = organization_field()
    email = OptionalEmailField()
    external_id = external_id_field()

    class Meta:
        model = Contact
        fields = [
            "id",
            "first_name",
            "last_name",
            "email",
            "phone",
            "job_title",
            "organization",
            "owner",
            "external_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


# --- Deals --------------------------------------------------------------------------------------------------------

DEAL_FILLABLE_FIELDS = [
    "organization",
    "contact",
    "amount",
    "currency",
    "expected_close_date",
    "budget",
    "authority",
    "need",
    "timeline",
    "lost_note",
]


class DealSerializer(serializers.ModelSerializer):
    """A deal; on update, `version` (optional) must be the version read, or the write is refused with 409."""

    owner = owner_field(required=False)
    organization = organization_field()
    contact = contact_field()
    external_id = external_id_field()
    # Null, not "", clears the override: the database accepts only a real category or none.
    forecast_category_override = serializers.ChoiceField(
        choices=ForecastCategory.choices, required=False, allow_null=True, help_text="Overrides the stage's default."
    )
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Optimistic concurrency: send the version you read to refuse lost updates.",
    )

    class Meta:
        model = Deal
        fields = [
            "id",
            "title",
            "pipeline",
            "stage",
            "status",
            "owner",
            *DEAL_FILLABLE_FIELDS,
            "forecast_category",
            "forecast_category_override",
            "lost_reason",
            "source",
            "external_id",
            "created_at",
            "updated_at",
            "stage_entered_at",
            "closed_at",
            "last_touched_at",
            "version",
        ]
        read_only_fields = [
            "id",
            "pipeline",
            "stage",
            "status",
            "forecast_category",
            "lost_reason",
            "created_at",
            "updated_at",
            "stage_entered_at",
            "closed_at",
            "last_touched_at",
        ]
        extra_kwargs = {
            "last_touched_at": {
                "help_text": "The deal's last touch (stamped by the server): its creation, an edit of its fields or "
                "stage, a done activity or a note. Rotting by inactivity counts from it."
            }
        }


class DealCreateSerializer(DealSerializer):
    """A new deal: by default in the first open stage of the default pipeline."""

    pipeline = serializers.PrimaryKeyRelatedField(queryset=Pipeline.objects.all(), required=False)
    stage = serializers.PrimaryKeyRelatedField(queryset=Stage.objects.all(), required=False)
    lost_reason = serializers.PrimaryKeyRelatedField(queryset=LostReason.objects.all(), required=False, allow_null=True)
    version = None

    class Meta(DealSerializer.Meta):
        fields = [name for name in DealSerializer.Meta.fields if name != "version"]
        read_only_fields = [
            name for name in DealSerializer.Meta.read_only_fields if name not in {"pipeline", "stage", "lost_reason"}
        ]


class DealMoveSerializer(serializers.ModelSerializer):
    """Move a deal to `stage` of its pipeline, filling in what that stage requires in the same step."""

    stage = serializers.PrimaryKeyRelatedField(queryset=Stage.objects.all())
    lost_reason = serializers.PrimaryKeyRelatedField(
        queryset=LostReason.objects.all(), required=False, allow_null=True, help_text="Required to lose the deal."
    )
    organization = organization_field()
    contact = contact_field()
    version = serializers.IntegerField(required=False, min_value=1)

    class Meta:
        model = Deal
        fields = ["stage", "lost_reason", "version", *DEAL_FILLABLE_FIELDS]
        extra_kwargs = {name: {"required": False} for name in DEAL_FILLABLE_FIELDS}


class StageChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = StageChange
        fields = ["id", "from_stage", "to_stage", "changed_by", "changed_at"]
        read_only_fields = fields


class DealAsOfSerializer(DealSerializer):
    """A deal as it stood at `as_of`: pipeline, stage, status, owner, amount, currency, expected close date and
    forecast category are those of that instant (`selectors.deals_as_of`); the other fields are today's."""

    pipeline = serializers.IntegerField(source="state_pipeline_id", read_only=True)
    stage = serializers.IntegerField(source="state_stage_id", read_only=True)
    status = serializers.ChoiceField(choices=DealStatus.choices, source="state_status", read_only=True)
    owner = serializers.IntegerField(source="state_owner_id", read_only=True)
    amount = serializers.DecimalField(
        max_digits=14, decimal_places=2, source="state_amount", read_only=True, allow_null=True
    )
    currency = serializers.CharField(source="state_currency", read_only=True)
    expected_close_date = serializers.DateField(source="state_expected_close_date", read_only=True, allow_null=True)
    forecast_category = serializers.ChoiceField(
        choices=ForecastCategory.choices, source="state_forecast_category", read_only=True
    )


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}], "nullable": True})
class ChangeValueField(serializers.Field):
    """A history value as JSON: ids as integers, amounts as decimal strings, dates as ISO dates, or null."""

    def to_representation(self, value):
        if isinstance(value, Decimal):
            return str(value)
        return value.isoformat() if isinstance(value, date) else value


# The fields a change row names (named DealChangeFieldEnum in the schema, settings.SPECTACULAR_SETTINGS).
CHANGE_FIELD_CHOICES = [(name, name) for name in selectors.CHANGE_FIELDS]


class DealChangeSerializer(serializers.Serializer):
    """One field of the deal changed (`selectors.deal_changes`)."""

    field = serializers.ChoiceField(choices=CHANGE_FIELD_CHOICES, read_only=True)
    old = ChangeValueField(
        read_only=True, help_text="The value before: a stage or owner id, an amount as a decimal string, a date."
    )
    new = ChangeValueField(read_only=True, help_text="The value after, in the same form.")
    by = serializers.IntegerField(
        source="changed_by.pk", read_only=True, allow_null=True, help_text="Who changed it; null when not known."
    )
    at = serializers.DateTimeField(read_only=True)


class AuditEntrySerializer(serializers.ModelSerializer):
    actor_name = serializers.SerializerMethodField(help_text="Who made the change; null for the system.")
    changes = serializers.DictField(
        child=serializers.ListField(min_length=2, max_length=2, allow_null=True),
        help_text="Each changed field as [old, new]; foreign keys as ids, amounts as decimal strings.",
    )

    class Meta:
        model = AuditEntry
        fields = ["id", "at", "actor", "actor_name", "action", "changes"]
        read_only_fields = fields

    def get_actor_name(self, entry: AuditEntry) -> str | None:
        return str(entry.actor) if entry.actor_id else None


# --- Leads --------------------------------------------------------------------------------------------------------


class LeadSerializer(serializers.ModelSerializer):
    owner = owner_field(required=False)
    organization = organization_field()
    contact = contact_field()
    email = OptionalEmailField()
    external_id = external_id_field()

    class Meta:
        model = Lead
        fields = [
            "id",
            *services.LEAD_EDITABLE_FIELDS,
            "status",
            "deal",
            "disqualified_reason",
            "created_at",
            "updated_at",
            "contacted_at",
            "mql_at",
            "sql_at",
            "converted_at",
            "disqualified_at",
        ]
        read_only_fields = [name for name in fields if name not in services.LEAD_EDITABLE_FIELDS]


class LeadCreateSerializer(LeadSerializer):
    """A new lead, in any status before `converted`."""

    class Meta(LeadSerializer.Meta):
        read_only_fields = [name for name in LeadSerializer.Meta.read_only_fields if name != "status"]


class LeadStatusSerializer(serializers.Serializer):
    """A lead's new status: forwards (skipped steps count as passed), back, disqualified (with a reason), or
    requalified. `converted` is reached only by converting the lead."""

    status = serializers.ChoiceField(choices=[c for c in LeadStatus.choices if c[0] != LeadStatus.CONVERTED])
    reason = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="Why the lead is disqualified."
    )


class LeadConvertSerializer(serializers.ModelSerializer):
    """Turn the lead into a deal; unnamed organization and contact are the lead's (created when missing)."""

    pipeline = serializers.PrimaryKeyRelatedField(queryset=Pipeline.objects.all(), required=False)
    stage = serializers.PrimaryKeyRelatedField(queryset=Stage.objects.all(), required=False)
    organization = organization_field()
    contact = contact_field()

    class Meta:
        model = Deal
        fields = ["title", "pipeline", "stage", "organization", "contact", "amount", "currency", "expected_close_date"]
        extra_kwargs = {"title": {"required": False}, "currency": {"required": False}}


# --- Activities ---------------------------------------------------------------------------------------------------


class ActivitySerializer(serializers.ModelSerializer):
    owner = owner_field(required=False)

    class Meta:
        model = Activity
        fields = [
            "id",
            "kind",
            "subject",
            "note",
            "deal",
            "lead",
            "owner",
            "due_at",
            "done_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "deal", "lead", "done_at", "created_at", "updated_at"]


class ActivityCreateSerializer(ActivitySerializer):
    """A new activity on exactly one deal or lead that the user may change; done now unless `due_at` plans it."""

    deal = ScopedRelatedField(scope=selectors.editable_deals, required=False, allow_null=True)
    lead = ScopedRelatedField(scope=selectors.editable_leads, required=False, allow_null=True)

    class Meta(ActivitySerializer.Meta):
        read_only_fields = ["id", "created_at", "updated_at"]


# --- Small representations of related records, for `?expand=` -----------------------------------------------------
# A fixed few fields each: the id and what names the record. The whole record is one read of its own resource away.


class PipelineSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Pipeline
        fields = ["id", "name"]
        read_only_fields = fields


class StageSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Stage
        fields = ["id", "name", "kind"]
        read_only_fields = fields


class LostReasonSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = LostReason
        fields = ["id", "name"]
        read_only_fields = fields


class OrganizationSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["id", "name"]
        read_only_fields = fields


class ContactSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = ["id", "first_name", "last_name"]
        read_only_fields = fields


class DealSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Deal
        fields = ["id", "title"]
        read_only_fields = fields


class LeadSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Lead
        fields = ["id", "first_name", "last_name", "company"]
        read_only_fields = fields
