"""The weight of the board's HTML (issue 17 item 14): a full first page of 150 cards stays under 100 KB uncompressed,
since each card carries its move data as attributes and the page has one shared move form."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from pipeline import services
from pipeline.selectors import BOARD_PAGE_SIZE
from tests.factories import make_qualified_deal, stage

pytestmark = pytest.mark.django_db

BOARD_BYTES_LIMIT = 100 * 1024
OPEN_STAGES = ["Prospecting", "Qualification", "Discovery", "Proposal", "Negotiation"]


def _full_board(org, pipeline) -> None:
    """A full first page in every open column, each card with what makes it heaviest: an organization, a next
    activity, a stale marker on some and a pushed close date on others."""
    organizations = [
        services.create_organization(actor=org.rep, name=f"Northwind Trading Company {index}") for index in range(10)
    ]
    long_ago = timezone.now() - timedelta(days=60)
    for index in range(BOARD_PAGE_SIZE * len(OPEN_STAGES)):
        owner = [org.rep, org.teammate][index % 2]
        deal = make_qualified_deal(
            owner=owner,
            pipeline=pipeline,
            stage=stage(pipeline, OPEN_STAGES[index % len(OPEN_STAGES)]),
            title=f"Platform expansion and renewal, phase {index}",
            organization=organizations[index % len(organizations)],
            amount=Decimal("125000.00") + index,
            created_at=long_ago if index % 4 == 0 else None,
        )
        services.log_activity(
            actor=owner, kind="call", subject="Pricing call with the buying committee", deal=deal, due_at=timezone.now()
        )
        if index % 3 == 0:
            services.update_deal(deal=deal, actor=owner, expected_close_date="2027-03-31")


def test_a_board_of_150_cards_weighs_at_most_100_kb(client, org, pipeline):
    _full_board(org, pipeline)
    client.force_login(org.manager)

    response = client.get(reverse("pipeline:board"))

    assert response.status_code == 200
    cards = response.content.count(b'<article class="deal-card')
    assert cards == BOARD_PAGE_SIZE * len(OPEN_STAGES) == 150
    size = len(response.content)
    print(f"\nboard page with {cards} cards: {size:,} bytes ({size / 1024:.1f} KB), {size // cards} bytes a card")
    assert size <= BOARD_BYTES_LIMIT
