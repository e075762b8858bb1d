"""The filters of the event list: `after` (a `sequence`) and `type`, each refused with a 400 naming it when bad."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

from config.rest import FilterSet
from pipeline.api.filters import IdFilter
from pipeline.webhooks.models import EventType, WebhookEvent


# The schema of an overridden filter type carries its description (drf-spectacular ignores help_text then).
@extend_schema_field(
    {
        "type": "integer",
        "minimum": 0,
        "description": "Only the events after this one: the `sequence` of the last event you processed.",
    }
)
class AfterSequenceFilter(IdFilter):
    """Events whose `sequence` is greater than the integer given."""


class EventFilter(FilterSet):
    after = AfterSequenceFilter(field_name="sequence", lookup_expr="gt", min_value=0)
    type = filters.ChoiceFilter(choices=EventType.choices, help_text="Only events of this type.")

    class Meta:
        model = WebhookEvent
        fields = ["after", "type"]
