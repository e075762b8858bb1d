"""Template filters of the forecast dashboard and the forecast call page: snapshot values (decimal strings,
fractions) as people read them, and the call's stale submissions and form errors."""

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template
from django.utils.html import format_html, format_html_join

from pipeline.templatetags.crm import money, money_short

register = template.Library()


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@register.filter
def amount(value: Any) -> str:
    """A snapshot amount ("12000.00") as money: "$12,000"; "—" when unknown."""
    return money(_decimal(value))


@register.filter
def amount_short(value: Any) -> str:
    """A snapshot amount as compact money: "$1.2M"."""
    return money_short(_decimal(value))


@register.filter
def percent(value: Any, places: int = 0) -> str:
    """A fraction (0.423) as a percentage: "42%"; "—" when null."""
    if value is None or value == "":  # null, or absent (a period with no row)
        return "—"
    return f"{float(value) * 100:.{places}f}%"


@register.filter
def points(value: Any) -> str:
    """A number already in percent (12.5) with its sign: "+12.5%"; "—" when null."""
    if value is None or value == "":  # null, or absent (a period with no row)
        return "—"
    return f"{float(value):+.1f}%".replace(".0%", "%")


@register.filter
def ratio(value: Any) -> str:
    """A multiple (coverage 2.37) as "2.4×"; "—" when null."""
    if value is None or value == "":  # null, or absent (a period with no row)
        return "—"
    return f"{float(value):.1f}×"


# --- The forecast call page -----------------------------------------------------------------------------------------


@register.filter
def stale_submission(submitted_at: Any, page: Any) -> int | None:
    """The age in days of a submission older than the weekly call allows (`ForecastPage.stale_days`), else None."""
    return page.stale_days(submitted_at)


def _call_errors_of(errors: dict, key: Any, kind: str) -> dict:
    return errors.get(f"{kind}-{key}", {}) if errors else {}


@register.filter
def has_call_errors(errors: dict, key: Any) -> bool:
    return bool(_call_errors_of(errors, key, "member"))


@register.filter
def has_team_call_errors(errors: dict, key: Any) -> bool:
    return bool(_call_errors_of(errors, key, "team"))


@register.simple_tag
def call_errors(errors: dict, key: Any, kind: str = "member") -> str:
    """The messages of the row's form that was just refused, each naming what to fix."""
    found = _call_errors_of(errors, key, kind)
    if not found:
        return ""
    items = format_html_join("", "<li>{}</li>", ((message,) for messages in found.values() for message in messages))
    return format_html('<ul class="errorlist call-errors" role="alert">{}</ul>', items)


@register.filter
def at(mapping: dict, key: Any) -> Any:
    """`mapping[key]` (None when absent): the drill-down link of a funnel stage or a rep, keyed by id."""
    return mapping.get(key) if mapping else None
