"""Filtersets of the metrics API: the quota list's and the forecast call's. Metric reads take their parameters through
`forecasting.api.params` instead.
"""

from django_filters import rest_framework as filters
from rest_framework import serializers

from config.rest import FilterSet
from forecasting.models import CallCategory, ForecastAdjustment, ForecastSubmission, Quota
from forecasting.periods import Period, PeriodError
from pipeline.api.filters import IdFilter


class QuotaFilter(FilterSet):
    user = IdFilter(field_name="user", help_text="Quotas of this user.")
    team = IdFilter(field_name="team", help_text="Quotas of this team.")
    period_from = filters.DateFilter(
        field_name="period_end", lookup_expr="gt", help_text="Quotas whose period runs on or after this date."
    )
    period_to = filters.DateFilter(
        field_name="period_start", lookup_expr="lt", help_text="Quotas whose period starts before this date."
    )

    class Meta:
        model = Quota
        fields = ["user", "team", "period_from", "period_to"]


class ForecastCallFilter(FilterSet):
    """Filters of the forecast submissions and adjustments: whose, which period, which category."""

    user = IdFilter(field_name="user", help_text="Of this user (a member).")
    team = IdFilter(field_name="team", help_text="Of this team (its manager's number).")
    category = filters.ChoiceFilter(choices=CallCategory.choices, help_text="Of this category.")
    period = filters.CharFilter(
        method="filter_period", help_text="Of this period: a month `2026-11` or a quarter `2026-Q4`."
    )

    def filter_period(self, queryset, name, value):
        try:
            period = Period.parse(value)
        except PeriodError as error:
            raise serializers.ValidationError({"period": [str(error)]}) from error
        return queryset.filter(period_kind=period.kind, period_start=period.start)


class ForecastSubmissionFilter(ForecastCallFilter):
    class Meta:
        model = ForecastSubmission
        fields = ["user", "team", "category", "period"]


class ForecastAdjustmentFilter(ForecastCallFilter):
    class Meta:
        model = ForecastAdjustment
        fields = ["user", "team", "category", "period"]
