"""Filtersets of the pipeline API. They narrow a queryset the view already limited to visible rows.

Related records are filtered by raw id (`IdFilter`), not `ModelChoiceFilter`: validating the id against a
table would tell a client whether a record they cannot see exists.
"""

from datetime import UTC

from django import forms
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from pipeline.models import Activity, ActivityKind, Contact, Deal, DealStatus, Lead, LeadStatus, Organization, Stage


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(filters.NumberFilter):
    """A related record's id: an integer (`1.5` is refused rather than read as 1)."""

    field_class = forms.IntegerField


def id_filter(field_name: str) -> IdFilter:
    return IdFilter(field_name=field_name)


class UtcDateTimeField(filters.IsoDateTimeFilter.field_class):
    """An ISO 8601 date-time, converted to UTC: PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 allows."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None or value.tzinfo is None:
            return value
        try:
            return value.astimezone(UTC)
        except OverflowError as error:
            raise forms.ValidationError("This date-time is out of range.", code="invalid") from error


class DateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class DealFilter(filters.FilterSet):
    pipeline = id_filter("pipeline_id")
    stage = id_filter("stage_id")
    status = filters.ChoiceFilter(choices=DealStatus.choices)
    owner = id_filter("owner_id")
    team = IdFilter(field_name="owner__team_id", help_text="Deals owned by members of this team.")
    organization = id_filter("organization_id")
    contact = id_filter("contact_id")
    source = filters.CharFilter()
    external_id = filters.CharFilter()
    amount_min = filters.NumberFilter(field_name="amount", lookup_expr="gte")
    amount_max = filters.NumberFilter(field_name="amount", lookup_expr="lte")
    expected_close_after = filters.DateFilter(field_name="expected_close_date", lookup_expr="gte")
    expected_close_before = filters.DateFilter(field_name="expected_close_date", lookup_expr="lte")
    updated_since = DateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Deal
        fields = []


class LeadFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=LeadStatus.choices)
    owner = id_filter("owner_id")
    source = filters.CharFilter()
    external_id = filters.CharFilter()
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Lead
        fields = []


class ActivityFilter(filters.FilterSet):
    deal = id_filter("deal_id")
    lead = id_filter("lead_id")
    owner = id_filter("owner_id")
    kind = filters.ChoiceFilter(choices=ActivityKind.choices)
    done = filters.BooleanFilter(field_name="done_at", lookup_expr="isnull", exclude=True, help_text="Done or planned.")
    due_after = DateTimeFilter(field_name="due_at", lookup_expr="gte")
    due_before = DateTimeFilter(field_name="due_at", lookup_expr="lt")

    class Meta:
        model = Activity
        fields = []


class OrganizationFilter(filters.FilterSet):
    owner = id_filter("owner_id")
    external_id = filters.CharFilter()

    class Meta:
        model = Organization
        fields = []


class ContactFilter(filters.FilterSet):
    owner = id_filter("owner_id")
    organization = id_filter("organization_id")
    external_id = filters.CharFilter()

    class Meta:
        model = Contact
        fields = []


class StageFilter(filters.FilterSet):
    pipeline = id_filter("pipeline_id")
    kind = filters.ChoiceFilter(choices=Stage._meta.get_field("kind").choices)

    class Meta:
        model = Stage
        fields = []
