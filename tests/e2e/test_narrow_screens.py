"""Every page is usable on a phone: at 390 px wide, the model list, a model page, the dashboard
and the audit log never scroll sideways (a wide table scrolls in its own box instead), in a real
Chromium against a real web server, as an admin (who sees every link, button and column)."""

from typing import Any

import pytest
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright

from console.audit import Actor
from registry import services
from registry.models import RegisteredModel
from serving import rollouts
from serving.streams import services as streams
from tests.e2e.test_upload_journey import CHROMIUM, CHROMIUM_ARGS, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PHONE: ViewportSize = {"width": 390, "height": 844}

# What sticks out past the right edge, outside any box that scrolls or clips it: the culprits
# named in the failure message.
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const clipped = (el) => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") return true;
    }
    return false;
  };
  const culprits = [...document.body.querySelectorAll("*")]
    .filter((el) => el.getBoundingClientRect().right > width + 0.5 && !clipped(el))
    .slice(0, 8)
    .map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
         (el.className && typeof el.className === "string" ? "." + el.className.trim().replace(/\\s+/g, ".") : "") +
         " (right edge " + Math.round(el.getBoundingClientRect().right) + " px)");
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, culprits};
}"""


def assert_no_sideways_scroll(page: Page, what: str) -> None:
    found: dict[str, Any] = page.evaluate(OVERFLOW)
    assert found["scrollWidth"] <= found["innerWidth"], (
        f"{what} is {found['scrollWidth']} px wide on a {found['innerWidth']} px screen: {found['culprits']}")


def test_the_main_pages_fit_a_390_px_screen(web_server: str, iris: RegisteredModel, cast: dict[str, Any]) -> None:
    actor = Actor(user=cast["engineer"])
    for n in range(30):  # more than a page, and long words that must wrap
        services.create_model(actor=actor, name=f"customer-churn-gradient-boosted-{n:02d}", team=iris.team,
                              description="Predicts which customers leave next quarter from their usage " * 3,
                              tags=["tabular", "churn", "gradient-boosting", "production"])
    rollouts.start_rollout(actor=actor, model=iris, candidate=2, strategy="canary", steps=[10, 50, 100])
    streams.create_binding(actor=actor, model=iris, name="clicks", source="ml:clicks-from-the-web-shop")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=PHONE)
        log_in(page, web_server, "admin")
        expect(page.locator("nav.pages")).to_contain_text("Page 1 of 2")
        assert_no_sideways_scroll(page, "the model list")

        page.goto(f"{web_server}/models/iris/")
        expect(page.locator("#traffic-panel .rollout")).to_have_attribute("data-state", "running")
        expect(page.locator("#stream-clicks")).to_be_visible()  # the card htmx loads after the page
        expect(page.locator("#rollout-form")).to_be_attached()
        assert_no_sideways_scroll(page, "the model page")

        page.goto(f"{web_server}/dashboard/")
        expect(page.locator("#dashboard-models tr[data-model=iris]")).to_be_visible()
        assert_no_sideways_scroll(page, "the dashboard")

        page.goto(f"{web_server}/audit/")
        expect(page.locator("table.audit tbody tr").filter(has_text="stream.created")).to_have_count(1)
        assert_no_sideways_scroll(page, "the audit log")
        browser.close()
