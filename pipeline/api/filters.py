"""Filtersets of the pipeline API. They narrow a queryset the view already limited to visible rows.

Related records are filtered by raw id (`IdFilter`), not `ModelChoiceFilter`: validating the id against a
table would tell a client whether a record they cannot see exists.
"""

import copy
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions

from config.rest import FilterSet
from pipeline import selectors
from pipeline.models import (
    Activity,
    ActivityKind,
    Contact,
    Deal,
    DealStatus,
    ForecastCategory,
    Lead,
    LeadStatus,
    Organization,
    Stage,
    StageKind,
)


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


def as_of_parameter(params) -> datetime | None:
    """The list's `as_of` instant, None when absent; 400 on `as_of` when malformed, in the future, or before the
    recorded history begins (`selectors.history_starts_at`)."""
    raw = params.get("as_of")
    if raw is None:
        return None
    try:
        at = UtcDateTimeField(required=True).clean(raw)
    except forms.ValidationError as error:
        raise exceptions.ValidationError({"as_of": list(error.messages)}) from error
    if timezone.is_naive(at):
        at = timezone.make_aware(at)
    if at > timezone.now():
        raise exceptions.ValidationError({"as_of": ["This instant is in the future: the history ends now."]})
    starts = selectors.history_starts_at()
    if starts is None or at < starts:
        begins = f" (it begins at {starts.isoformat()})" if starts else " (nothing is recorded yet)"
        raise exceptions.ValidationError({"as_of": [f"This instant is before the recorded history{begins}."]})
    return at


class DateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class AsOfAware:
    """A filter on a field the deal history keeps: on a list as of an instant (`selectors.deals_as_of`, whose
    `state_<field>` annotations the queryset carries), it filters the value of that instant instead of today's."""

    def filter(self, qs, value):
        state = "state_" + self.field_name.replace("owner__team_id", "team_id")
        if state not in qs.query.annotations:
            return super().filter(qs, value)
        as_of = copy.copy(self)
        as_of.field_name = state
        return super(AsOfAware, as_of).filter(qs, value)


class AsOfIdFilter(AsOfAware, IdFilter):
    pass


class AsOfChoiceFilter(AsOfAware, filters.ChoiceFilter):
    pass


class AsOfNumberFilter(AsOfAware, filters.NumberFilter):
    pass


class AsOfDateFilter(AsOfAware, filters.DateFilter):
    pass


def _local_midnight(day):
    """The instant `day` begins in the configured time zone: periods are half-open in TIME_ZONE (SPEC §3). In UTC,
    so the database is never sent a year 0 or 10000 (1 January of year 1 east of UTC begins in year 0)."""
    try:
        return datetime.combine(day, time.min, ZoneInfo(settings.TIME_ZONE)).astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if day.year == 1 else datetime.max.replace(tzinfo=UTC)


class LocalDayFilter(filters.DateFilter):
    """A date bound on an instant column: `_after` keeps instants from the day's local midnight on, `_before` those
    strictly before it, so `closed_after=2026-11-01&closed_before=2026-12-01` is the month [start, end) of SPEC §3."""

    def filter(self, qs, value):
        if value in (None, ""):
            return qs
        return qs.filter(**{f"{self.field_name}__{self.lookup_expr}": _local_midnight(value)})


class DealFilter(FilterSet):
    pipeline = AsOfIdFilter(field_name="pipeline_id")
    stage = AsOfIdFilter(field_name="stage_id")
    status = AsOfChoiceFilter(choices=DealStatus.choices)
    owner = AsOfIdFilter(field_name="owner_id")
    team = AsOfIdFilter(field_name="owner__team_id", help_text="Deals owned by members of this team.")
    organization = id_filter("organization_id")
    contact = id_filter("contact_id")
    source = filters.CharFilter()
    external_id = filters.CharFilter()
    amount_min = AsOfNumberFilter(field_name="amount", lookup_expr="gte")
    amount_max = AsOfNumberFilter(field_name="amount", lookup_expr="lte")
    expected_close_after = AsOfDateFilter(field_name="expected_close_date", lookup_expr="gte")
    expected_close_before = AsOfDateFilter(field_name="expected_close_date", lookup_expr="lte")
    updated_since = DateTimeFilter(field_name="updated_at", lookup_expr="gte")
    # The drill-down of the forecast dashboard: each metric's deals are these filters' combination (SPEC §3).
    closed_after = LocalDayFilter(field_name="closed_at", lookup_expr="gte", help_text="Closed on or after this day.")
    closed_before = LocalDayFilter(field_name="closed_at", lookup_expr="lt", help_text="Closed before this day.")
    created_after = LocalDayFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created on or after this day."
    )
    created_before = LocalDayFilter(field_name="created_at", lookup_expr="lt", help_text="Created before this day.")
    forecast_category = filters.MultipleChoiceFilter(
        choices=ForecastCategory.choices, help_text="Any of these forecast categories (repeat the parameter)."
    )
    reached_stage = IdFilter(
        method="filter_reached_stage",
        help_text="Deals that reached this open stage (SPEC §3 funnel): their furthest open stage is this one or a "
        "later one, or they were won.",
    )
    # A choice rather than a BooleanFilter, which reads "perhaps" as absent: a misspelt value is a 400, not every deal.
    stale = filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false"), *((reason, reason) for reason in selectors.STALE_REASONS)],
        method="filter_stale",
        help_text="true: the dashboard's stale deals, open deals in their stage longer than its rotting days "
        "(`in_stage_too_long`), with no planned activity due later (`no_next_step`), or last touched (created, edited, "
        "moved, a done activity or a note) longer ago than the stage's rotting days (`no_activity`); one of those "
        "three names: the open deals stale for that reason (whatever others); false: the deals that are not stale.",
    )

    class Meta:
        model = Deal
        fields = []

    def filter_reached_stage(self, qs, name, value):
        if value is None:
            return qs
        stage = Stage.objects.filter(pk=value, kind=StageKind.OPEN).values("pipeline_id", "order").first()
        if stage is None:
            return qs.none()
        return qs.filter(pipeline_id=stage["pipeline_id"]).filter(
            Q(status=DealStatus.WON) | Q(furthest_open_order__gte=stage["order"])
        )

    def filter_stale(self, qs, name, value):
        if not value:
            return qs
        if value in selectors.STALE_REASONS:
            return qs.filter(selectors.stale_condition(reason=value))
        stale = selectors.stale_condition()
        return qs.filter(stale) if value == "true" else qs.exclude(stale)


class LeadFilter(FilterSet):
    status = filters.ChoiceFilter(choices=LeadStatus.choices)
    owner = id_filter("owner_id")
    source = filters.CharFilter()
    external_id = filters.CharFilter()
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Lead
        fields = []


class ActivityFilter(FilterSet):
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


class OrganizationFilter(FilterSet):
    owner = id_filter("owner_id")
    external_id = filters.CharFilter()

    class Meta:
        model = Organization
        fields = []


class ContactFilter(FilterSet):
    owner = id_filter("owner_id")
    organization = id_filter("organization_id")
    external_id = filters.CharFilter()

    class Meta:
        model = Contact
        fields = []


class StageFilter(FilterSet):
    pipeline = id_filter("pipeline_id")
    kind = filters.ChoiceFilter(choices=Stage._meta.get_field("kind").choices)

    class Meta:
        model = Stage
        fields = []
