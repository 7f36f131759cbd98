"""Every htmx form, and every group of htmx action buttons, shows the server's refusal where the
person acted (static/js/forms.js), in a real Chromium against a real web server: each sends a
bad value, or acts on something that changed meanwhile, and sees the exact message in that form's
slot, with nothing else on the page replaced. (The model search and the audit log's filters
refuse nothing: a 503 would land in their slots by the same code.)"""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from playwright.sync_api import Page, Route, expect, sync_playwright

from console.audit import Actor
from registry.models import RegisteredModel
from serving import rollouts
from serving.jobs import schedules
from serving.jobs import services as jobs
from serving.jobs.files import JobFileError, format_of
from serving.models import BatchJob, Rollout
from serving.streams import services as streams
from tests.e2e.test_upload_journey import CHROMIUM, CHROMIUM_ARGS, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
T = TypeVar("T")
CSV = ("x.0,x.1,x.2,x.3,x.4,x.5,x.6,x.7\n" + "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8\n" * 5).encode()


@contextmanager
def engineers_page(web_server: str) -> Iterator[Page]:
    """The engineer of team ml, signed in; hx-confirm's dialogs are answered yes. Open it once
    the test's rows exist: while Playwright runs, Django refuses database calls in this thread."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        log_in(page, web_server, "engineer")
        yield page
        browser.close()


def elsewhere(action: Callable[[], T]) -> T:
    """Someone else's change while the page is open: run in a thread of its own (outside
    Playwright's event loop), on its own database connection."""
    def run() -> T:
        try:
            return action()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def job(iris: RegisteredModel, cast: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> BatchJob:
    """A queued job of iris. Its chunks are never sent: no worker is under test here, and the
    session's worker would run them while the test's tables are emptied."""
    monkeypatch.setattr(jobs, "queue_chunks", lambda *args, **kwargs: None)
    return jobs.submit_job(actor=Actor(user=cast["engineer"]), model=iris, upload=SimpleUploadedFile("rows.csv", CSV))


def freeze(page: Page, url: str) -> None:
    """Stop htmx's polling of `url` (its requests fail, the fragment stays as it is): what the
    page shows goes stale, as when someone else acts between two refreshes."""
    def abort_polls(route: Route) -> None:
        if route.request.resource_type in ("xhr", "fetch") and route.request.method == "GET":
            route.abort()
        else:
            route.continue_()

    page.route(url, abort_polls)


def test_the_rollout_form_shows_its_refusals_in_the_form(web_server: str, iris: RegisteredModel) -> None:
    with engineers_page(web_server) as page:
        page.goto(f"{web_server}/models/iris/")
        form = page.locator("#rollout-form")
        error = form.locator(".form-error")
        expect(form.locator("select[name=candidate] option")).to_have_text(["v2"])  # v1 serves: not offered
        expect(error).to_be_hidden()

        form.get_by_label("Max p99 ratio", exact=True).fill("fast")
        form.get_by_role("button", name="Start rollout").click()
        expect(error).to_have_text("Max p99 ratio must be a number")
        expect(error).to_be_visible()

        form.get_by_label("Max p99 ratio", exact=True).fill("")
        form.locator("input[name=steps]").fill("50, 10")
        form.get_by_role("button", name="Start rollout").click()
        expect(error).to_have_text("canary steps must increase, e.g. [10, 50, 100]")
        page.wait_for_timeout(2500)  # a refresh of the traffic panel leaves the form and its message alone
        expect(error).to_have_text("canary steps must increase, e.g. [10, 50, 100]")
        expect(page.locator("#traffic-panel .rollout")).to_have_count(0)

        form.locator("input[name=steps]").fill("50, 100")
        form.get_by_role("button", name="Start rollout").click()
        expect(page.locator("#traffic-panel .rollout")).to_have_attribute("data-state", "running")
        expect(error).to_be_hidden()
    assert Rollout.objects.get().steps == [50, 100]


def test_a_refused_rollout_button_is_explained_beside_the_buttons(web_server: str, iris: RegisteredModel,
                                                                   cast: dict[str, Any]) -> None:
    rollout = rollouts.start_rollout(actor=Actor(user=cast["engineer"]), model=iris, candidate=2, strategy="canary",
                                     steps=[50, 100])
    with engineers_page(web_server) as page:
        page.goto(f"{web_server}/models/iris/")
        freeze(page, f"{web_server}/models/iris/traffic/")
        elsewhere(lambda: rollouts.control(actor=Actor(user=cast["admin"]), rollout=rollout, action="pause"))

        page.locator("#traffic-panel").get_by_role("button", name="Pause").click()
        error = page.locator("#rollout-actions-error")
        expect(error).to_have_text(f"rollout {rollout.pk} is paused, not running")
        page.unroute(f"{web_server}/models/iris/traffic/")
        # The next refresh shows the rollout paused; the message stays beside the buttons.
        expect(page.locator("#traffic-panel .rollout")).to_have_attribute("data-state", "paused")
        expect(error).to_have_text(f"rollout {rollout.pk} is paused, not running")
        page.locator("#traffic-panel").get_by_role("button", name="Resume").click()
        expect(page.locator("#traffic-panel .rollout")).to_have_attribute("data-state", "running")
        expect(error).to_be_hidden()


def test_the_upload_form_shows_a_refused_file_in_the_form(web_server: str, iris: RegisteredModel,
                                                          tmp_path: Path) -> None:
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("these are meeting notes, not a model\n")
    with engineers_page(web_server) as page:
        page.goto(f"{web_server}/models/iris/upload/")
        page.set_input_files("input[name=artifact]", str(bogus))
        page.get_by_role("button", name="Upload").click()
        expect(page.locator("#upload-form .form-error")).to_have_text(
            "not a model: the file is neither ONNX nor a TorchScript archive")
        expect(page.locator("#upload-outcome")).to_be_empty()


def test_the_job_form_shows_a_refused_file_in_the_form(web_server: str, iris: RegisteredModel,
                                                       tmp_path: Path) -> None:
    notes = tmp_path / "rows.txt"
    notes.write_bytes(CSV)
    with pytest.raises(JobFileError) as refusal:
        format_of(notes.name)
    with engineers_page(web_server) as page:
        page.goto(f"{web_server}/models/iris/jobs/")
        page.set_input_files("#job-file", str(notes))
        page.get_by_role("button", name="Submit").click()
        expect(page.locator("#upload-form .form-error")).to_have_text(refusal.value.message)
        expect(page.locator("#upload-outcome")).to_be_empty()
    assert not BatchJob.objects.exists()


def test_the_job_cancel_button_shows_its_refusal_beside_it(web_server: str, job: BatchJob,
                                                           cast: dict[str, Any]) -> None:
    url = f"{web_server}/models/iris/jobs/{job.uid}/"
    with engineers_page(web_server) as page:
        page.goto(url)
        freeze(page, url)
        elsewhere(lambda: jobs.cancel_job(actor=Actor(user=cast["admin"]), job=job))

        page.get_by_role("button", name="Cancel").click()
        error = page.locator("#job-cancel-error")
        expect(error).to_have_text(f"job {job.uid} has already ended (cancelled)")
        page.unroute(url)
        expect(page.locator("#job-state")).to_have_text("cancelled")  # the next refresh; the message stays
        expect(error).to_have_text(f"job {job.uid} has already ended (cancelled)")


def test_the_schedule_form_and_buttons_show_their_refusals_where_they_are(
        web_server: str, job: BatchJob, cast: dict[str, Any]) -> None:
    with engineers_page(web_server) as page:
        page.goto(f"{web_server}/models/iris/jobs/")
        card = page.locator("#job-schedules[data-schedules]")
        card.get_by_text("Add a schedule", exact=True).click()
        form = card.locator("#schedule-form")
        form.get_by_label("Name").fill("nightly")
        form.get_by_label("Cron (UTC)").fill("every night")
        form.get_by_role("button", name="Add").click()
        expect(form.locator(".form-error")).to_have_text(schedules.CRON_USAGE)
        expect(form.get_by_label("Cron (UTC)")).to_have_value("every night")  # nothing typed is lost

        form.get_by_label("Cron (UTC)").fill("0 3 * * *")
        form.get_by_role("button", name="Add").click()
        row = page.locator("#schedule-nightly")
        expect(row).to_have_attribute("data-enabled", "true")

        def disable() -> None:
            schedule = schedules.find_schedule(job.model, "nightly")
            assert schedule is not None
            schedules.disable_schedule(actor=Actor(user=cast["admin"]), schedule=schedule)

        elsewhere(disable)
        row.get_by_role("button", name="Disable").click()
        expect(row.locator(".form-error")).to_have_text("schedule 'nightly' of model 'iris' is already disabled")


def test_the_stream_form_and_buttons_show_their_refusals_where_they_are(
        web_server: str, iris: RegisteredModel, cast: dict[str, Any]) -> None:
    with engineers_page(web_server) as page:
        page.goto(f"{web_server}/models/iris/")
        card = page.locator("#stream-bindings[data-bindings]")
        card.get_by_text("Bind a stream", exact=True).click()
        form = card.locator("#stream-form")
        form.get_by_label("Name").fill("clicks")
        form.get_by_label("Source stream").fill("clicks")
        form.get_by_role("button", name="Bind").click()
        expect(form.locator(".form-error")).to_have_text(
            "on Paddock's Redis, stream keys must start with 'ml:' (the team's prefix): 'clicks' does not")

        form.get_by_label("Source stream").fill("ml:clicks")
        form.get_by_role("button", name="Bind").click()
        row = page.locator("#stream-clicks")
        expect(row).to_have_attribute("data-state", "active")

        freeze(page, f"{web_server}/models/iris/streams/")

        def pause() -> None:
            binding = streams.find_binding(iris, "clicks")
            assert binding is not None
            streams.pause_binding(actor=Actor(user=cast["admin"]), binding=binding)

        elsewhere(pause)
        row.get_by_role("button", name="Pause").click()
        error = page.locator("#stream-clicks-error")
        expect(error).to_have_text("stream binding 'clicks' of model 'iris' is already paused")
        page.unroute(f"{web_server}/models/iris/streams/")
        # The table's next refresh shows the binding paused; the message stays in its row.
        expect(row).to_have_attribute("data-state", "paused")
        expect(error).to_have_text("stream binding 'clicks' of model 'iris' is already paused")
