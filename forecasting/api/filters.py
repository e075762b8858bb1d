"""Filtersets of the metrics API: the quota list's. Metric reads take their parameters through
`forecasting.api.params` instead.
"""

from django_filters import rest_framework as filters

from forecasting.models import Quota
from pipeline.api.filters import IdFilter


class QuotaFilter(filters.FilterSet):
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
