"""An admin approves a rollout's final step from the model page, in a real Chromium against a real
web server: the reason typed survives the panel's 2 s refresh, a blank one is refused in the
form's alert slot with the inbox's message, and the reason reaches the timeline."""

from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from registry.models import RegisteredModel
from tests.console.test_approvals import bring_to_approval
from tests.e2e.test_upload_journey import CHROMIUM, CHROMIUM_ARGS, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_admin_approves_the_final_step_from_the_model_page_with_a_reason(
        web_server: str, iris: RegisteredModel, cast: dict[str, Any]) -> None:
    rollout = bring_to_approval(iris, cast["engineer"])
    traffic = f"{web_server}/models/iris/traffic/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        log_in(page, web_server, "admin")
        page.goto(f"{web_server}/models/iris/")
        form = page.locator(f"#rollout-{rollout.pk}-approve")
        error = form.locator(".form-error")
        expect(error).to_be_hidden()

        form.get_by_label("Reason").fill("   ")  # passes the browser's `required`, not the server
        form.get_by_role("button", name="Approve final step").click()
        expect(error).to_have_text("a reason is required to approve a rollout")
        expect(error).to_be_visible()

        form.get_by_label("Reason").fill("figures look good")
        with page.expect_response(lambda response: response.url == traffic and response.request.method == "GET"):
            pass  # the panel refreshes: the form, its reason and its message are kept
        expect(form.get_by_label("Reason")).to_have_value("figures look good")
        expect(error).to_have_text("a reason is required to approve a rollout")

        form.get_by_role("button", name="Approve final step").click()
        expect(page.locator("#traffic-panel .rollout")).to_have_attribute("data-state", "running")
        expect(page.locator("#traffic-panel .timeline")).to_contain_text(
            "final step approved by admin: figures look good")
        expect(form).to_have_count(0)
        browser.close()
    rollout.refresh_from_db()
    assert rollout.approved_by == cast["admin"]
