"""The filters of the event list: `after` (a `sequence`) and `type`, each refused with a 400 naming it when bad."""

from django_filters import rest_framework as filters

from pipeline.api.filters import IdFilter
from pipeline.webhooks.models import EventType, WebhookEvent


class EventFilter(filters.FilterSet):
    after = IdFilter(
        field_name="sequence",
        lookup_expr="gt",
        min_value=0,
        help_text="Only events after this one: the `sequence` of the last event you processed.",
    )
    type = filters.ChoiceFilter(choices=EventType.choices, help_text="Only events of this type.")

    class Meta:
        model = WebhookEvent
        fields = ["after", "type"]
