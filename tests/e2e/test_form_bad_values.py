"""Bad values in the console's newer forms, in a real Chromium against a real web server: each
refusal shows the server's exact message in that form's role="alert" slot (static/js/forms.js),
and everything the person typed or ticked is still there to correct; the corrected form then
goes through. The people and teams pages, the webhooks page, the model card and the approvals
inbox.

One web server serves the module, with PADDOCK_WEBHOOK_ALLOW_PRIVATE off (the suite's own
allows private targets for its receivers). Each test starts its own Chromium once its rows
exist: while Playwright's sync API runs, its event loop runs in the test's thread, where Django
refuses database calls (pytest-django's cleanup after each test among them), and a browser
kept for the module costs as much to reconnect to as a new one takes to start."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Locator, Page, expect, sync_playwright

from console.models import Membership, Team
from registry.cards import MAX_MARKDOWN_CHARS
from registry.models import ModelVersion, RegisteredModel
from serving.models import Rollout
from tests.conftest import PASSWORD, child_env, spawn_web, stop
from tests.console.test_approvals import bring_to_approval
from tests.e2e.test_upload_journey import CHROMIUM, CHROMIUM_ARGS, log_in
from webhooks.choices import EVENTS
from webhooks.models import Webhook

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def site(_real_postgres: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn for this module, refusing private webhook targets as production does."""
    process, url = spawn_web(tmp_path_factory.mktemp("web") / "web.log",
                             child_env(PADDOCK_WEBHOOK_ALLOW_PRIVATE="0"))
    yield url
    stop(process)


@contextmanager
def signed_in(site: str, who: str) -> Iterator[Page]:
    """`who` signed in, in a fresh Chromium; confirmation dialogs are answered yes."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        log_in(page, site, who)
        yield page
        browser.close()


def refused(form: Locator, button: str, message: str) -> None:
    """Send the form; its alert slot shows exactly the server's message."""
    form.get_by_role("button", name=button).click()
    slot = form.get_by_role("alert")
    expect(slot).to_have_text(message)
    expect(slot).to_be_visible()


def test_the_people_form_explains_a_taken_name_a_bad_address_and_an_empty_name(
    site: str, cast: dict[str, Any],
) -> None:
    with signed_in(site, "admin") as page:
        page.goto(f"{site}/people/")
        page.get_by_text("Create a person", exact=True).click()
        form = page.locator("#user-form")
        username, email = form.get_by_label("Username", exact=True), form.get_by_label("Email", exact=True)
        password = form.get_by_label("Initial password")

        username.fill("Engineer")  # names are unique whatever their case
        email.fill("grace@example.com")
        password.fill(PASSWORD)
        refused(form, "Create person", "a user named 'engineer' already exists")
        expect(username).to_have_value("Engineer")
        expect(email).to_have_value("grace@example.com")
        expect(password).to_have_value(PASSWORD)

        username.fill("grace")
        email.fill("grace@example")  # the browser takes it; the server wants a domain with a dot
        refused(form, "Create person", "'grace@example' is not a valid email address")
        expect(username).to_have_value("grace")
        expect(password).to_have_value(PASSWORD)

        username.fill("   ")  # not empty to the browser's `required`; empty once trimmed
        email.fill("grace@example.com")
        refused(form, "Create person", "a username is 1 to 150 characters")
        expect(username).to_have_value("   ")
        expect(email).to_have_value("grace@example.com")
        expect(page.locator("#people")).to_have_attribute("data-people", "4")  # nothing swapped meanwhile

        username.fill("grace")
        form.get_by_role("button", name="Create person").click()
        expect(page.locator("#people .notice")).to_have_text("User 'grace' created with the password you gave.")
        expect(page.locator("#person-grace")).to_contain_text("grace@example.com")
        expect(page.locator("#user-form-error")).to_be_hidden()

    assert list(get_user_model().objects.filter(username__istartswith="grace").values_list("username", "email")) == [
        ("grace", "grace@example.com")]


def test_the_team_forms_explain_a_taken_name_a_bad_name_and_an_unknown_person(
    site: str, cast: dict[str, Any],
) -> None:
    with signed_in(site, "admin") as page:
        page.goto(f"{site}/teams/")
        form = page.locator("#team-form")
        name, description = form.get_by_label("Team name"), form.get_by_label("Description")

        name.fill("ml")
        description.fill("Images and video")
        refused(form, "Create team", "a team named 'ml' already exists")
        expect(name).to_have_value("ml")
        expect(description).to_have_value("Images and video")

        name.fill("computer vision")
        refused(form, "Create team",
                "a team name is 1 to 64 letters, digits, '-' or '_' (e.g. 'vision'): 'computer vision' is not")
        expect(name).to_have_value("computer vision")
        expect(description).to_have_value("Images and video")
        expect(page.locator("#teams")).to_have_attribute("data-teams", "2")

        name.fill("computer-vision")
        form.get_by_role("button", name="Create team").click()
        expect(page.locator("#teams .notice")).to_have_text(
            "Team 'computer-vision' created: add its members on its page.")
        expect(page.locator("#team-form-error")).to_be_hidden()

        page.get_by_role("link", name="ml", exact=True).click()
        members = page.locator("#member-form")
        members.get_by_label("Username").fill("nobody")
        members.locator("select[name=role]").select_option("viewer")
        refused(members, "Add member", "no user named 'nobody'")
        expect(members.get_by_label("Username")).to_have_value("nobody")
        expect(members.locator("select[name=role]")).to_have_value("viewer")
        expect(page.locator("#members")).to_have_attribute("data-members", "2")

    assert not Membership.objects.filter(team__name="ml", user__username="nobody").exists()
    assert sorted(Team.objects.values_list("name", flat=True)) == ["computer-vision", "ml", "other"]


def test_the_webhook_form_explains_a_refused_url_and_an_unknown_event(site: str, cast: dict[str, Any]) -> None:
    with signed_in(site, "engineer") as page:
        page.get_by_role("link", name="Webhooks").click()
        expect(page).to_have_url(f"{site}/webhooks/ml/")  # the engineer's only team
        page.get_by_text("Add a webhook", exact=True).click()
        form = page.locator("#webhook-form")
        url = form.get_by_label("URL")
        form.locator("input[name=events][value='version.failed']").uncheck()
        chosen = [event for event in EVENTS if event != "version.failed"]

        def events_as_ticked() -> None:
            expect(form.locator("input[name=events]:checked")).to_have_count(len(chosen))
            expect(form.locator("input[name=events][value='version.failed']")).not_to_be_checked()

        url.fill("ftp://hooks.example.com/paddock")  # a valid URL to the browser's type="url"
        refused(form, "Add webhook", "'url' must start with http:// or https://")
        expect(url).to_have_value("ftp://hooks.example.com/paddock")
        events_as_ticked()

        url.fill("http://10.1.2.3/paddock")
        refused(form, "Add webhook",
                "webhook target 10.1.2.3 is a private address; set PADDOCK_WEBHOOK_ALLOW_PRIVATE=1 to allow it")
        expect(url).to_have_value("http://10.1.2.3/paddock")
        events_as_ticked()

        url.fill("http://127.0.0.1:9/paddock")
        refused(form, "Add webhook",
                "webhook target 127.0.0.1 is a loopback address; set PADDOCK_WEBHOOK_ALLOW_PRIVATE=1 to allow it")

        # A page opened before an event was renamed sends a name the server no longer knows.
        form.locator("input[name=events][value='alias.moved']").evaluate("box => { box.value = 'model.deleted'; }")
        refused(form, "Add webhook", f"unknown event 'model.deleted': the events are {', '.join(EVENTS)}")
        expect(url).to_have_value("http://127.0.0.1:9/paddock")
        expect(form.locator("input[name=events][value='model.deleted']")).to_be_checked()
        expect(page.locator("#webhooks")).to_have_attribute("data-webhooks", "0")
        expect(page.locator("#webhooks")).to_contain_text("No webhooks yet.")

    assert not Webhook.objects.exists()


def test_the_card_form_explains_an_oversized_card_and_a_bad_metrics_line(
    site: str, iris: RegisteredModel,
) -> None:
    oversized = "An iris classifier.\n\n" + "x" * MAX_MARKDOWN_CHARS
    with signed_in(site, "engineer") as page:
        page.goto(f"{site}/models/iris/versions/1/")
        page.get_by_text("Edit the card", exact=True).click()
        form = page.locator("#card-form")
        card, metrics = form.locator("textarea[name=card_markdown]"), form.locator("textarea[name=metrics]")
        card.fill(oversized)
        metrics.fill("accuracy: 0.93\nf1: 0.91")
        refused(form, "Save the card",
                f"'card_markdown' must be text of at most {MAX_MARKDOWN_CHARS} characters, without NUL")
        assert card.input_value() == oversized
        expect(metrics).to_have_value("accuracy: 0.93\nf1: 0.91")
        expect(page.locator("#version-card")).to_contain_text("No card yet.")

        card.fill("An iris classifier.\n\nTrained on the **UCI** data set.")
        metrics.fill("accuracy: 0.93\nf1 = 0.91")
        refused(form, "Save the card", "'metrics' line 2 must be 'name: number', e.g. 'accuracy: 0.93'")
        expect(card).to_have_value("An iris classifier.\n\nTrained on the **UCI** data set.")
        expect(metrics).to_have_value("accuracy: 0.93\nf1 = 0.91")

        metrics.fill("accuracy: 0.93\nf1: 0.91")
        form.get_by_role("button", name="Save the card").click()
        expect(page.locator("#version-card .notice")).to_have_text("Card saved.")
        expect(page.locator("#version-card .model-card strong")).to_have_text("UCI")

    version = ModelVersion.objects.get(model=iris, number=1)
    assert version.card_markdown == "An iris classifier.\n\nTrained on the **UCI** data set."
    assert version.metrics == {"accuracy": 0.93, "f1": 0.91}


def test_the_approval_form_wants_a_reason_to_approve_or_reject(
    site: str, iris: RegisteredModel, cast: dict[str, Any],
) -> None:
    rollout = bring_to_approval(iris, cast["engineer"])
    with signed_in(site, "admin") as page:
        page.goto(f"{site}/approvals/")
        form = page.locator(f"#approval-{rollout.pk} form.decision")
        reason = form.get_by_label("Reason")
        reason.fill("   ")  # not empty to the browser's `required`; empty once trimmed
        refused(form, "Approve", "a reason is required to approve a rollout")
        expect(reason).to_have_value("   ")
        refused(form, "Reject (roll back)", "a reason is required to reject a rollout")
        expect(reason).to_have_value("   ")
        expect(page.locator("#approvals-count")).to_have_text("1")

        reason.fill("figures look good")
        form.get_by_role("button", name="Approve").click()
        expect(page.locator("#approvals .notice")).to_have_text(f"Rollout {rollout.pk} of iris (v2) approved.")
        expect(page.locator("#approvals-count")).to_have_text("0")

    rollout.refresh_from_db()
    assert rollout.state == "running" and rollout.approved_by == cast["admin"]
    assert list(rollout.events.filter(kind="approve").values_list("message", flat=True)) == [
        "final step approved by admin: figures look good"]
    assert Rollout.objects.count() == 1
