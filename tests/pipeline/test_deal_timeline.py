"""The deal page's Changes list: the field history in words, in a constant number of queries, and in a browser."""

import os
from decimal import Decimal

import pytest
from django.urls import reverse

from pipeline import services
from tests.factories import make_deal, make_qualified_deal, stage
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, log_in, page  # noqa: F401 (fixtures)
from tests.queries import assert_query_count, capture_queries


def page_queries(client, deal):
    with capture_queries() as captured:
        response = client.get(reverse("pipeline:deal", args=[deal.pk]))
    assert response.status_code == 200
    return captured


@pytest.mark.django_db
def test_the_changes_list_takes_as_many_queries_for_one_change_as_for_many(client, org, pipeline):
    client.force_login(org.manager)
    few = make_deal(owner=org.rep, pipeline=pipeline, amount=Decimal("100"))
    services.update_deal(deal=few, actor=org.rep, amount=Decimal("200"))
    many = make_qualified_deal(owner=org.rep, pipeline=pipeline)
    for name in ("Qualification", "Discovery", "Proposal"):
        many = services.move_deal(deal=many, stage=stage(pipeline, name), actor=org.rep)
        many = services.update_deal(deal=many, actor=org.manager, amount=many.amount + 1, owner=org.teammate)
        many = services.update_deal(deal=many, actor=org.manager, owner=org.rep)
    page_queries(client, few)  # the first request warms the session and content types
    assert_query_count(page_queries(client, few), page_queries(client, many))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_deal_page_tells_the_history_in_words(page, org, board_pipeline):  # noqa: F811
    grace = org.manager
    grace.first_name, grace.last_name = "Grace", "Hopper"
    grace.save()
    deal = make_qualified_deal(owner=org.rep, pipeline=board_pipeline, amount=Decimal("12500"))
    deal = services.update_deal(deal=deal, actor=grace, amount=Decimal("15000"), expected_close_date="2027-02-26")
    deal = services.move_deal(deal=deal, stage=stage(board_pipeline, "Proposal"), actor=org.rep)
    deal = services.update_deal(deal=deal, actor=grace, owner=org.teammate)

    log_in(page, "manager")
    page.goto(f"/deals/{deal.pk}/")
    lines = page.locator(".timeline.audit li").all_inner_texts()

    assert lines[0].startswith("Owner rep → teammate by Grace, ")
    assert any(line.startswith("Stage Prospecting → Proposal by rep, ") for line in lines)
    assert any(line.startswith("Forecast category Pipeline → Best case by rep, ") for line in lines)
    assert any(line.startswith("Amount $12,500 → $15,000 by Grace, ") for line in lines)
    assert any(line.startswith("Close date 31 Dec 2026 → 26 Feb 2027 by Grace, ") for line in lines)
    assert not any("12500.00" in line or "T" in line.split(", ")[-1] for line in lines)  # no raw values or ISO
