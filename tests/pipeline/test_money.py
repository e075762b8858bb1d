"""The `money` filter, which every page's amounts go through, against Django's own number formatting."""

from decimal import Decimal

import pytest
from django.utils.formats import number_format

from pipeline.templatetags.crm import money


@pytest.mark.parametrize(
    "amount",
    ["0", "0.50", "7", "999.99", "1000", "12000", "12500.00", "1234567.89", "1000000000", "-2500.10", "-1"],
)
def test_money_groups_as_django_would(amount):
    amount = Decimal(amount)
    places = 0 if amount == amount.to_integral_value() else 2
    assert money(amount, "USD") == "$" + number_format(amount, places, force_grouping=True)


def test_money_shows_cents_only_when_there_are_any_and_the_currency():
    assert money(Decimal("12000.00"), "USD") == "$12,000"
    assert money(Decimal("12000.50"), "EUR") == "€12,000.50"
    assert money(Decimal("1234567"), "CHF") == "1,234,567 CHF"
    assert money(None, "USD") == "—"
