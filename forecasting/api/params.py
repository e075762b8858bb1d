"""Query parameters of the metric reads: a period (`2026-11`, `2026-Q4`, `2026`) or a range, a group, and the
filters. Bad parameters answer 400 with a message per parameter.
"""

import re
from datetime import date

from rest_framework import serializers

from forecasting.models import GroupKind, PeriodKind

PERIOD_PATTERN = re.compile(r"^(?P<year>\d{4})(?:-(?:(?P<month>\d{2})|Q(?P<quarter>[1-4])))?$")
# The same shape without Python's named groups, for the schema (ECMA regular expressions).
PERIOD_SCHEMA_PATTERN = r"^\d{4}(-(\d{2}|Q[1-4]))?$"
PER_PERIOD_KINDS = [PeriodKind.MONTH, PeriodKind.QUARTER, PeriodKind.YEAR]
STAGE_GROUPS = [GroupKind.COMPANY, GroupKind.OWNER, GroupKind.TEAM, GroupKind.SOURCE]


def parse_period(text: str) -> tuple[str, date]:
    """'2026-11' → (month, 2026-11-01); '2026-Q4' → (quarter, 2026-10-01); '2026' → (year, 2026-01-01)."""
    match = PERIOD_PATTERN.match(text)
    if not match:
        raise serializers.ValidationError("Write a period as 2026-11, 2026-Q4 or 2026.")
    year = int(match["year"])
    if year < 1:
        raise serializers.ValidationError("The year must be at least 1.")
    if match["month"]:
        month = int(match["month"])
        if not 1 <= month <= 12:
            raise serializers.ValidationError("The month must be 01 to 12.")
        return PeriodKind.MONTH, date(year, month, 1)
    if match["quarter"]:
        return PeriodKind.QUARTER, date(year, 3 * (int(match["quarter"]) - 1) + 1, 1)
    return PeriodKind.YEAR, date(year, 1, 1)


# --- Query parameters ---------------------------------------------------------------------------------------------


class MetricFilterSerializer(serializers.Serializer):
    """The filters every metric read takes."""

    pipeline = serializers.IntegerField(required=False, min_value=1, help_text="Only this pipeline's rows.")
    team = serializers.IntegerField(required=False, min_value=1, help_text="Only rows of this team (of its members).")
    owner = serializers.IntegerField(required=False, min_value=1, help_text="Only rows of this owner.")
    source = serializers.CharField(required=False, allow_blank=True, max_length=100, help_text="Only this source.")

    # Parameters of other metrics: refused here rather than silently ignored.
    refused: tuple[str, ...] = ("period", "start", "end", "period_kind")

    def validate(self, attrs: dict) -> dict:
        refused = sorted(name for name in self.refused if name in self.initial_data)
        if refused:
            raise serializers.ValidationError({name: ["This metric is not per period."] for name in refused})
        return attrs

    def validate_source(self, value: str) -> str:
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


class PeriodMetricQuerySerializer(MetricFilterSerializer):
    """Filters, a group and a period (one, or a range)."""

    refused = ()
    group = serializers.ChoiceField(
        choices=GroupKind.values, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )
    period = serializers.RegexField(
        PERIOD_SCHEMA_PATTERN,
        required=False,
        help_text="One period: a month `2026-11`, a quarter `2026-Q4` or a year `2026`.",
    )
    start = serializers.DateField(required=False, help_text="With `end`: every period within [start, end).")
    end = serializers.DateField(required=False, help_text="With `start`: the first day after the range.")
    period_kind = serializers.ChoiceField(
        choices=PER_PERIOD_KINDS, required=False, help_text="With `start` and `end`: which periods (default month)."
    )

    def validate_period(self, value: str) -> tuple[str, date]:
        return parse_period(value)

    def validate(self, attrs: dict) -> dict:
        if "period" in attrs and ("start" in attrs or "end" in attrs):
            raise serializers.ValidationError({"period": ["Give either period or start and end, not both."]})
        if ("start" in attrs) != ("end" in attrs):
            missing = "end" if "start" in attrs else "start"
            raise serializers.ValidationError({missing: ["Give start and end together."]})
        if "start" in attrs and attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": ["The end must be after the start."]})
        if "period_kind" in attrs and "start" not in attrs:
            raise serializers.ValidationError({"period_kind": ["period_kind goes with start and end."]})
        return attrs


class StagePeriodMetricQuerySerializer(PeriodMetricQuerySerializer):
    """Filters, a group (not pipeline: every row of a per-stage metric is a pipeline's) and a period."""

    group = serializers.ChoiceField(
        choices=STAGE_GROUPS, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )


class StageTimeQuerySerializer(MetricFilterSerializer):
    """Filters and a group: time in stage is over all history, not per period."""

    group = serializers.ChoiceField(
        choices=STAGE_GROUPS, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )
