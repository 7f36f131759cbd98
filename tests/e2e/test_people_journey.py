"""An admin sets up a team in a real Chromium, against a real web server: creates the team on the
Teams page, adds a person as engineer on the team's page, and sees a refusal where they acted;
the engineer then signs in and finds the team, read-only. And a person who forgot their password
resets it from the sign-in page, the emailed link read from the web server's console (as under
`make run`), through the ASGI body guard that refuses other posts without a session."""

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect, sync_playwright

from console.models import AuditEvent, Membership
from tests.conftest import PASSWORD, child_env, spawn_web, stop, wait_until
from tests.e2e.test_upload_journey import CHROMIUM, CHROMIUM_ARGS, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_admin_creates_a_team_and_adds_an_engineer_through_the_pages(
    web_server: str, cast: dict[str, Any],
) -> None:
    get_user_model().objects.create_user("newbie", email="newbie@example.com", password=PASSWORD)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        log_in(page, web_server, "admin")
        page.get_by_role("link", name="Teams", exact=True).click()
        expect(page).to_have_url(f"{web_server}/teams/")
        page.get_by_label("Team name").fill("vision")
        page.get_by_label("Description").fill("Images and video")
        page.get_by_role("button", name="Create team").click()
        expect(page.locator("#teams .notice")).to_have_text("Team 'vision' created: add its members on its page.")

        page.get_by_label("Team name").fill("vision")  # again: refused, in the form
        page.get_by_role("button", name="Create team").click()
        expect(page.locator("#team-form-error")).to_have_text("a team named 'vision' already exists")

        page.get_by_role("link", name="vision").click()
        expect(page).to_have_url(f"{web_server}/teams/vision/")
        page.get_by_label("Username").fill("newbie")
        page.locator("#member-form select[name=role]").select_option("engineer")
        page.get_by_role("button", name="Add member").click()
        expect(page.locator("#member-newbie [data-field=role]")).to_have_text("engineer")
        expect(page.locator("#members .notice")).to_have_text("newbie added to team vision as engineer.")

        page.get_by_label("Username").fill("newbie")  # twice: refused, in the form
        page.get_by_role("button", name="Add member").click()
        expect(page.locator("#member-form-error")).to_have_text(
            "'newbie' is already a member of team 'vision' as engineer: change their role instead")
        page.get_by_role("button", name="Log out").click()

        log_in(page, web_server, "newbie")
        page.get_by_role("link", name="Teams", exact=True).click()
        page.get_by_role("link", name="vision").click()
        expect(page.locator("#member-newbie [data-field=role]")).to_have_text("engineer")
        expect(page.get_by_role("button", name="Add member")).to_have_count(0)
        expect(page.get_by_role("link", name="People")).to_have_count(0)
        browser.close()

    membership = Membership.objects.get(team__name="vision", user__username="newbie")
    assert membership.role == "engineer"
    assert list(AuditEvent.objects.filter(action__in=["team.create", "membership.create"], actor_username="admin")
                .order_by("id").values_list("action", flat=True)) == ["team.create", "membership.create"]


def test_a_person_resets_their_password_from_the_sign_in_page(cast: dict[str, Any], tmp_path: Path) -> None:
    get_user_model().objects.filter(username="viewer").update(email="viewer@example.com")
    server, base = spawn_web(tmp_path / "web.log",
                             child_env(EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend"))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            page.goto(f"{base}/login/")
            page.get_by_role("link", name="Forgot your password?").click()
            page.get_by_label("Email").fill("viewer@example.com")
            page.get_by_role("button", name="Send the link").click()
            expect(page.get_by_role("status")).to_contain_text("If an account has this address")

            link = wait_until(lambda: re.search(r"http://127\.0\.0\.1:\d+/password-reset/\S+/", server.output()))
            page.goto(link.group(0))
            page.get_by_label("New password", exact=True).fill("a-brand-new-pass-phrase")
            page.get_by_label("New password again").fill("a-brand-new-pass-phrase")
            page.get_by_role("button", name="Set the password").click()
            expect(page.get_by_role("status")).to_have_text("Your new password is set; the link cannot be used again.")

            page.get_by_role("link", name="Log in").click()
            page.get_by_label("Username").fill("viewer")
            page.get_by_label("Password").fill("a-brand-new-pass-phrase")
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(f"{base}/models/")
            browser.close()
    finally:
        stop(server)

    assert list(AuditEvent.objects.filter(object_id=str(cast["viewer"].pk)).order_by("id")
                .values_list("action", flat=True)) == ["user.password_reset_requested", "user.password_reset",
                                                       "user.login"]
