"""Template filters of the forecast dashboard: snapshot values (decimal strings, fractions) as people read them."""

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template

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
