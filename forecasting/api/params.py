"""Query parameters of the metric reads: a period (`2026-11`, `2026-Q4`, `2026`, `all`) or a custom range
(`start` & `end`; with `period_kind`, the periods of that kind within it), a group, and the filters. Bad parameters
answer 400 with a message per parameter.
"""

from django.utils import timezone
from rest_framework import serializers

from forecasting.models import GroupKind, PeriodKind
from forecasting.periods import ALL_TIME, FIRST_DAY, KINDS, LAST_DAY, Period, PeriodError, Window
from pipeline.selectors import history_starts_at

# The shape of a period (forecasting.periods.PATTERN, or `all`) as an ECMA regular expression, for the schema.
PERIOD_SCHEMA_PATTERN = r"^(all|\d{4}(-(\d{2}|Q[1-4]))?)$"
# The largest id a row can have (bigint): a larger one would fail in SQL rather than find nothing.
ID_MAX = 2**63 - 1
BACKTEST_KINDS = (PeriodKind.MONTH, PeriodKind.QUARTER)
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


class StaleDealsQuerySerializer(MetricFilterSerializer):
    """The stale deals' filters, and whether to add up the reasons."""

    reasons = serializers.BooleanField(
        required=False,
        default=False,
        help_text="true: add `reasons`, the count and amount per reason over every page (one more query, over all "
        "the rows: the page alone reads only its own).",
    )


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


class BacktestQuerySerializer(CalendarPeriodMetricQuerySerializer):
    """Filters, a group and a month or a quarter (one, or those of `period_kind`, default month, within a range):
    the backtest covers ended months and quarters."""

    period_kind = serializers.ChoiceField(
        choices=BACKTEST_KINDS,
        required=False,
        help_text="With `start` and `end`: the periods of this kind (month or quarter) lying within [start, end).",
    )

    def validate_period(self, value: str) -> Period | Window:
        period = super().validate_period(value)
        if period.kind not in BACKTEST_KINDS:
            raise serializers.ValidationError("The backtest is per month or quarter, not per year.")
        return period


class CalibrationQuerySerializer(MetricFilterSerializer):
    """Filters, a group (not pipeline: every row is a pipeline's) and the window of close dates: a quarter, a year
    or all time (the default). Validated, `period` is a `Period`, or None for all time."""

    refused = ("start", "end", "period_kind")
    group = serializers.ChoiceField(
        choices=STAGE_GROUPS, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )
    period = serializers.RegexField(
        PERIOD_SCHEMA_PATTERN,
        required=False,
        help_text="The deals closed in a quarter `2026-Q4`, a year `2026`, or `all` (all time, the default).",
    )

    def validate_period(self, value: str) -> Period | None:
        if value == ALL_TIME:
            return None
        try:
            period = Period.parse(value)
        except PeriodError as error:
            raise serializers.ValidationError(str(error)) from error
        if period.kind == PeriodKind.MONTH:
            raise serializers.ValidationError("Calibration is per quarter, year or all time, not per month.")
        return period

    def validate(self, attrs: dict) -> dict:
        refused = sorted(name for name in self.refused if name in self.initial_data)
        if refused:
            raise serializers.ValidationError(
                {name: ["Calibration is per quarter, year or all time: give period."] for name in refused}
            )
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


class WaterfallQuerySerializer(serializers.Serializer):
    """A waterfall: a calendar period, two instants `from` < `to` inside the recorded history, and a group."""

    period = serializers.RegexField(
        PERIOD_SCHEMA_PATTERN, help_text="The close period: a month `2026-11`, a quarter `2026-Q4` or a year `2026`."
    )
    group = serializers.ChoiceField(
        choices=GroupKind.values, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )

    def get_fields(self) -> dict:
        # `from` and `to` are Python keywords: declared here rather than as attributes.
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(help_text="A, the instant the waterfall starts from (ISO 8601).")
        fields["to"] = serializers.DateTimeField(help_text="B, after A and not in the future (ISO 8601).")
        return fields

    def validate_period(self, value: str) -> Period:
        try:
            return Period.parse(value)
        except PeriodError as error:
            raise serializers.ValidationError(str(error)) from error

    def validate(self, attrs: dict) -> dict:
        if attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"from": ["`from` must be before `to`."]})
        if attrs["to"] > timezone.now():
            raise serializers.ValidationError({"to": ["This instant is in the future: the history ends now."]})
        starts = history_starts_at()
        if starts is None or attrs["from"] < starts:
            begins = f" (it begins at {starts.isoformat()})" if starts else " (nothing is recorded yet)"
            raise serializers.ValidationError({"from": [f"This instant is before the recorded history{begins}."]})
        return attrs


# The buckets of a waterfall (forecasting.selectors.WATERFALL_BUCKETS), spelled here for the schema.
BUCKETS = (
    "created", "reopened", "reassigned_in", "pulled_in", "won", "lost", "deleted", "reassigned_out", "pushed_out",
    "pulled_out", "amount_up", "amount_down", "unchanged",
)  # fmt: skip


class WaterfallDealsQuerySerializer(WaterfallQuerySerializer):
    """The deals of one bucket of one group's waterfall."""

    bucket = serializers.ChoiceField(choices=BUCKETS, help_text="Which bucket's deals.")
    key = serializers.CharField(
        required=False,
        max_length=100,
        help_text="The group's row: an owner, team or pipeline id, a source's name, `none` for deals of no team or "
        "source; omitted for the company.",
    )

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        group, key = attrs["group"], attrs.get("key")
        if group == GroupKind.COMPANY:
            if key is not None:
                raise serializers.ValidationError({"key": ["The company has one row: give no key."]})
            return attrs
        if key is None:
            raise serializers.ValidationError({"key": [f"Name the {group}'s row."]})
        if key == "none":
            attrs["key"] = "" if group == GroupKind.SOURCE else None
        elif group != GroupKind.SOURCE:
            if not key.isdigit() or not 1 <= int(key) <= ID_MAX:
                raise serializers.ValidationError({"key": [f"A {group} is named by its id."]})
            attrs["key"] = int(key)
        return attrs


class SlippageQuerySerializer(serializers.Serializer):
    """Slippage of one calendar period, per group."""

    period = serializers.RegexField(
        PERIOD_SCHEMA_PATTERN, help_text="A month `2026-11`, a quarter `2026-Q4` or a year `2026`, begun already."
    )
    group = serializers.ChoiceField(
        choices=GroupKind.values, default=GroupKind.COMPANY, help_text="Which rows: the whole company or per group."
    )

    def validate_period(self, value: str) -> Period:
        try:
            period = Period.parse(value)
        except PeriodError as error:
            raise serializers.ValidationError(str(error)) from error
        if period.start > timezone.localdate():
            raise serializers.ValidationError("This period has not begun: nothing has slipped out of it yet.")
        return period


class PacingQuerySerializer(serializers.Serializer):
    """Pacing of one calendar period, for the company, per team or per owner (the groups a quota is set for)."""

    period = serializers.RegexField(
        PERIOD_SCHEMA_PATTERN, help_text="A month `2026-11`, a quarter `2026-Q4` or a year `2026`."
    )
    group = serializers.ChoiceField(
        choices=[GroupKind.COMPANY, GroupKind.TEAM, GroupKind.OWNER],
        default=GroupKind.COMPANY,
        help_text="Which rows: the whole company (admins), per team or per owner.",
    )

    def validate_period(self, value: str) -> Period:
        try:
            return Period.parse(value)
        except PeriodError as error:
            raise serializers.ValidationError(str(error)) from error


# --- The forecast call ------------------------------------------------------------------------------------------

CALL_PERIOD_SCHEMA_PATTERN = r"^\d{4}-(\d{2}|Q[1-4])$"


class CallPeriodField(serializers.RegexField):
    """A forecast call's period: a month `2026-11` or a quarter `2026-Q4`, as a `Period`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "A month `2026-11` or a quarter `2026-Q4`.")
        super().__init__(CALL_PERIOD_SCHEMA_PATTERN, **kwargs)

    def run_validation(self, data=serializers.empty) -> Period:
        # The pattern checks the text; the Period is built after it.
        text = super().run_validation(data)
        if text is None or isinstance(text, Period):
            return text
        try:
            return Period.parse(text)
        except PeriodError as error:
            raise serializers.ValidationError(str(error)) from error

    def to_representation(self, value) -> str:
        return value.key if isinstance(value, Period) else str(value)


class RollupQuerySerializer(serializers.Serializer):
    """The roll-up of one period and category (default: this quarter's commit)."""

    period = CallPeriodField(
        required=False, help_text="A month `2026-11` or a quarter `2026-Q4`; default this quarter."
    )
    category = serializers.ChoiceField(
        choices=["commit", "best_case", "most_likely"], default="commit", help_text="Which number of the call."
    )
    at = serializers.DateTimeField(
        required=False, help_text="The numbers as stated by this instant (ISO 8601); default now."
    )

    def validate(self, attrs: dict) -> dict:
        attrs.setdefault("period", Period.current("quarter"))
        return attrs


class TrendQuerySerializer(serializers.Serializer):
    """The weekly trend of one period's call."""

    period = CallPeriodField(
        required=False, help_text="A month `2026-11` or a quarter `2026-Q4`; default this quarter."
    )
    category = serializers.ChoiceField(
        choices=["commit", "best_case", "most_likely"], default="commit", help_text="Which number of the call."
    )
    team = serializers.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, help_text="Only the members of this team (its id)."
    )

    def validate(self, attrs: dict) -> dict:
        attrs.setdefault("period", Period.current("quarter"))
        return attrs


class CommitReliabilityQuerySerializer(serializers.Serializer):
    """How many ended periods, of which kind."""

    periods = serializers.IntegerField(
        default=4, min_value=1, max_value=12, help_text="The number of ended periods (default 4)."
    )
    period_kind = serializers.ChoiceField(
        choices=["month", "quarter"], default="quarter", help_text="Months or quarters (default quarters)."
    )
