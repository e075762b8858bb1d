"""Query parameters of the metric reads: a period (`2026-11`, `2026-Q4`, `2026`, `all`) or a custom range
(`start` & `end`; with `period_kind`, the periods of that kind within it), a group, and the filters. Bad parameters
answer 400 with a message per parameter.
"""

from rest_framework import serializers

from forecasting.models import GroupKind
from forecasting.periods import ALL_TIME, FIRST_DAY, KINDS, LAST_DAY, Period, PeriodError, Window

# The shape of a period (forecasting.periods.PATTERN, or `all`) as an ECMA regular expression, for the schema.
PERIOD_SCHEMA_PATTERN = r"^(all|\d{4}(-(\d{2}|Q[1-4]))?)$"
# The largest id a row can have (bigint): a larger one would fail in SQL rather than find nothing.
ID_MAX = 2**63 - 1
STAGE_GROUPS = [GroupKind.COMPANY, GroupKind.OWNER, GroupKind.TEAM, GroupKind.SOURCE]


# --- Query parameters ---------------------------------------------------------------------------------------------


class MetricFilterSerializer(serializers.Serializer):
    """The filters every metric read takes."""

    pipeline = serializers.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, help_text="Only this pipeline's rows."
    )
    team = serializers.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, help_text="Only rows of this team (of its members)."
    )
    owner = serializers.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, help_text="Only rows of this owner."
    )
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
    """Filters, a group and a period: one calendar period, all time, a custom range (one row per group), or with
    `period_kind` the periods of a kind within a range. Validated, `period` is a `Period` or a `Window`."""

    refused = ()
    # Whether the metric has rows for all time and custom ranges (computed live where no snapshot holds them).
    windows = True
    group = serializers.ChoiceField(
        choices=GroupKind.values, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )
    period = serializers.RegexField(
        PERIOD_SCHEMA_PATTERN,
        required=False,
        help_text="One period: a month `2026-11`, a quarter `2026-Q4`, a year `2026`, or `all` (all time: one row "
        "per group).",
    )
    start = serializers.DateField(
        required=False,
        help_text="With `end`: the custom range [start, end), one row per group (computed when asked unless it is "
        f"exactly a month, quarter or year); from {FIRST_DAY}.",
    )
    end = serializers.DateField(
        required=False, help_text=f"With `start`: the first day after the range, after `start`; until {LAST_DAY}."
    )
    period_kind = serializers.ChoiceField(
        choices=KINDS,
        required=False,
        help_text="With `start` and `end`: a row per period of this kind lying within [start, end) instead of one "
        "row for the range.",
    )

    def validate_period(self, value: str) -> Period | Window:
        if value == ALL_TIME:
            if not self.windows:
                raise serializers.ValidationError("This metric is per month, quarter or year, not over all time.")
            return Window.all_time()
        try:
            return Period.parse(value)
        except PeriodError as error:
            raise serializers.ValidationError(str(error)) from error

    def validate_start(self, value):
        if value < FIRST_DAY:
            raise serializers.ValidationError(f"The start must be {FIRST_DAY} or later.")
        return value

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
        if "start" in attrs and "period_kind" not in attrs and self.windows:
            attrs["period"] = Window.between(attrs.pop("start"), attrs.pop("end"))
        return attrs


class CalendarPeriodMetricQuerySerializer(PeriodMetricQuerySerializer):
    """Filters, a group and a calendar period (one, or those of `period_kind`, default month, within a range): for
    forecast accuracy, which is kept per month, quarter and year."""

    windows = False


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
