"""The top bar at 1440×900: every link of the navigation in view, for the roles with the most links and a long name
(the bar used to scroll its navigation, hiding Import and Quotas)."""

import os

import pytest

from tests.pipeline.test_browser import CHROMIUM, browser, log_in, page  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

HIDDEN_LINKS = """() => {
  const nav = document.querySelector(".topbar nav").getBoundingClientRect();
  return [...document.querySelectorAll(".topbar nav a")]
    .filter((link) => link.getBoundingClientRect().right > nav.right + 0.5)
    .map((link) => link.textContent.trim());
}"""


@pytest.mark.parametrize("who", ["manager", "admin"])
def test_every_navigation_link_is_in_view_at_1440(page, org, who):  # noqa: F811
    user = getattr(org, who)
    user.first_name, user.last_name = "Grace", "Holloway-Montgomery"
    user.save(update_fields=["first_name", "last_name"])
    log_in(page, user.username)
    page.goto("/board/")
    links = page.locator(".topbar nav a")
    assert links.count() >= 9
    assert page.evaluate(HIDDEN_LINKS) == []
    assert page.evaluate("() => document.querySelector('.topbar nav').scrollWidth") <= page.evaluate(
        "() => document.querySelector('.topbar nav').clientWidth"
    )
