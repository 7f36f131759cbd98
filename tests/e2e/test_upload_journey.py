"""A person in a real Chromium, against a real uvicorn web server and a real Celery worker:
log in, upload the demo model with a progress bar, watch it turn ready, see the audit event."""

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from console.audit import Actor
from console.models import AuditEvent
from registry import services
from registry.demo import build_demo_onnx
from registry.models import ModelVersion
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/models/")


def test_an_engineer_uploads_the_demo_model_and_an_admin_sees_it_audited(
    web_server: str, celery_worker: Any, cast: dict[str, Any], teams: dict[str, Any], tmp_path: Path,
) -> None:
    services.create_model(actor=Actor(user=cast["engineer"]), name="demo-mlp", team=teams["ml"])
    artifact = tmp_path / "demo-mlp.onnx"
    artifact.write_bytes(build_demo_onnx())

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        log_in(page, web_server, "engineer")
        page.get_by_role("link", name="demo-mlp").click()
        page.get_by_role("link", name="Upload a version").click()
        page.set_input_files("input[name=artifact]", str(artifact))
        page.get_by_role("button", name="Upload").click()

        expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
        expect(page.locator("#upload-percent")).to_have_text("100%")
        expect(page.locator("#upload-result")).to_contain_text("Uploaded as v1")
        # The fragment polls until the worker has validated the version: no reload.
        expect(page.locator("#validation-status")).to_have_text("ready", timeout=60_000)
        expect(page.locator("#upload-result .provider")).to_have_text("CPUExecutionProvider")
        expect(page.locator("#upload-result")).to_contain_text("[8, 2]")

        page.get_by_role("link", name="v1").click()
        expect(page.locator("#version-1 .status")).to_have_text("ready")
        page.get_by_role("button", name="Log out").click()

        log_in(page, web_server, "admin")
        page.get_by_role("link", name="Audit log").click()
        rows = page.locator("table.audit tbody tr")
        expect(rows.filter(has_text="version.create")).to_contain_text("engineer")
        expect(rows.filter(has_text="version.validated")).to_contain_text("worker")
        page.get_by_label("Action").fill("version.validated")
        expect(rows).to_have_count(1)
        browser.close()

    version = ModelVersion.objects.get(model__name="demo-mlp")
    assert version.status == "ready" and version.created_by == cast["engineer"]
    assert AuditEvent.objects.filter(action="version.create", actor_username="engineer").count() == 1


def test_a_refused_upload_is_explained_on_the_page(
    web_server: str, cast: dict[str, Any], teams: dict[str, Any], tmp_path: Path,
) -> None:
    services.create_model(actor=Actor(user=cast["engineer"]), name="notes", team=teams["ml"])
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("these are meeting notes, not a model\n")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        log_in(page, web_server, "engineer")
        page.goto(f"{web_server}/models/notes/upload/")
        page.set_input_files("input[name=artifact]", str(bogus))
        page.get_by_role("button", name="Upload").click()
        expect(page.locator("#upload-error")).to_have_text(
            "not a model: the file is neither ONNX nor a TorchScript archive")
        browser.close()

    assert not ModelVersion.objects.filter(model__name="notes").exists()
