"""A person in a real Chromium submits a batch job from the console against a real web server
and a real Celery worker: the upload's progress, the job's progress bar moving on its own (htmx
polling), and the download, whose rows are compared with onnxruntime run directly."""

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from playwright.sync_api import expect, sync_playwright

from console.audit import Actor
from console.models import AuditEvent
from registry import services
from serving.models import BatchJob
from tests import models as built
from tests.e2e.test_upload_journey import CHROMIUM, CHROMIUM_ARGS, log_in
from tests.integration.conftest import register_ready

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
GUARD_SECONDS = 180  # hang guard only


def test_an_engineer_submits_a_job_watches_its_progress_and_downloads_the_result(
    web_server: str, celery_worker: Any, cast: dict[str, Any], teams: dict[str, Any], tmp_path: Path,
) -> None:
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="slow", team=teams["ml"])
    artifact = built.slow_onnx(width=256, layers=8)  # slow enough per row that progress is seen moving
    register_ready(actor=actor, model=model, data=artifact)
    x = np.random.default_rng(9).standard_normal((16_000, 256)).astype(np.float32)
    source = tmp_path / "rows.npy"
    np.save(source, x)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(accept_downloads=True)
        log_in(page, web_server, "engineer")
        page.get_by_role("link", name="slow").click()
        page.get_by_role("link", name="Batch jobs").click()
        page.set_input_files("#job-file", str(source))
        page.get_by_label("Chunk size (rows)").fill("500")
        page.get_by_role("button", name="Submit").click()
        expect(page.locator("#upload-percent")).to_have_text("100%")
        expect(page.locator("#upload-outcome")).to_contain_text("16000 rows in 32 chunks, v1")
        page.locator("#job-link").click()

        seen: list[int] = []  # the bar's values as the page shows them, polled by htmx
        deadline = time.monotonic() + GUARD_SECONDS
        while time.monotonic() < deadline:
            state = page.locator("#job-state").text_content()
            seen.append(int(page.locator("#job-bar").get_attribute("value") or 0))
            if state in ("succeeded", "failed", "cancelled"):
                break
            page.wait_for_timeout(100)
        expect(page.locator("#job-state")).to_have_text("succeeded")
        assert seen[-1] == len(x)
        assert any(0 < value < len(x) for value in seen), seen  # it moved while the job ran
        assert seen == sorted(seen), seen  # and never went back
        with page.expect_download() as info:
            page.locator("#job-download").click()
        saved = tmp_path / "predictions.npy"
        info.value.save_as(saved)
        assert info.value.suggested_filename == "rows.predictions.npy"
        sha = page.locator("#job-sha256").text_content()
        browser.close()

    job = BatchJob.objects.get()
    assert sha == job.output_sha256
    got = np.load(saved, allow_pickle=False)
    expected = ort.InferenceSession(artifact).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert AuditEvent.objects.filter(action="job.submitted", actor_username="engineer").count() == 1
