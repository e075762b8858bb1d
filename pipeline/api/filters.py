"""Filtersets of the pipeline API. They narrow a queryset the view already limited to visible rows.

Related records are filtered by raw id (`NumberFilter`), not `ModelChoiceFilter`: validating the id against a
table would tell a client whether a record they cannot see exists.
"""

from django_filters import rest_framework as filters

from pipeline.models import Activity, ActivityKind, Contact, Deal, DealStatus, Lead, LeadStatus, Organization, Stage


def id_filter(field_name: str) -> filters.NumberFilter:
    return filters.NumberFilter(field_name=field_name)


class DealFilter(filters.FilterSet):
    pipeline = id_filter("pipeline_id")
    stage = id_filter("stage_id")
    status = filters.ChoiceFilter(choices=DealStatus.choices)
    owner = id_filter("owner_id")
    team = filters.NumberFilter(field_name="owner__team_id", help_text="Deals owned by members of this team.")
    organization = id_filter("organization_id")
    contact = id_filter("contact_id")
    source = filters.CharFilter()
    external_id = filters.CharFilter()
    amount_min = filters.NumberFilter(field_name="amount", lookup_expr="gte")
    amount_max = filters.NumberFilter(field_name="amount", lookup_expr="lte")
    expected_close_after = filters.DateFilter(field_name="expected_close_date", lookup_expr="gte")
    expected_close_before = filters.DateFilter(field_name="expected_close_date", lookup_expr="lte")
    updated_since = filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Deal
        fields = []


class LeadFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=LeadStatus.choices)
    owner = id_filter("owner_id")
    source = filters.CharFilter()
    external_id = filters.CharFilter()
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Lead
        fields = []


class ActivityFilter(filters.FilterSet):
    deal = id_filter("deal_id")
    lead = id_filter("lead_id")
    owner = id_filter("owner_id")
    kind = filters.ChoiceFilter(choices=ActivityKind.choices)
    done = filters.BooleanFilter(field_name="done_at", lookup_expr="isnull", exclude=True, help_text="Done or planned.")
    due_after = filters.IsoDateTimeFilter(field_name="due_at", lookup_expr="gte")
    due_before = filters.IsoDateTimeFilter(field_name="due_at", lookup_expr="lt")

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
