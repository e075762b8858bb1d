"""The activities inbox in a real browser: its section counts follow the rows as they are marked done."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from pipeline import services
from tests.factories import make_deal
from tests.pipeline.test_browser import CHROMIUM, board_pipeline, browser, log_in, page  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


def test_marking_an_overdue_activity_done_lowers_the_overdue_count(page, org, board_pipeline):  # noqa: F811
    deal = make_deal(owner=org.rep, pipeline=board_pipeline, title="Acme rollout")
    late = timezone.now() - timedelta(days=2)
    first = services.log_activity(actor=org.rep, kind="call", subject="Call back", deal=deal, due_at=late)
    services.log_activity(actor=org.rep, kind="email", subject="Send the quote", deal=deal, due_at=late)
    log_in(page, "rep")
    page.goto("/activities/")
    count = page.locator("#inbox-overdue .count")
    assert count.inner_text() == "2"

    page.click(f"#activity-{first.pk} button:has-text('Mark done')")

    page.locator(f"#activity-{first.pk}.done").wait_for()
    page.wait_for_function("() => document.querySelector('#inbox-overdue .count').textContent === '1'")
    assert count.inner_text() == "1"
    first.refresh_from_db()
    assert first.done_at is not None
