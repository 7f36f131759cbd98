"""A person in a real Chromium starts a canary from the model page's form, watches the live
charts fill from the websocket while traffic flows through a real web process and worker, and
rolls it back with a button."""

import threading
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from console.audit import Actor
from console.services import create_token
from registry import services
from serving.models import Rollout
from serving.services import configure_deployment
from tests import models as built
from tests.e2e.test_upload_journey import CHROMIUM, CHROMIUM_ARGS, log_in
from tests.integration.conftest import register_ready
from tests.integration.test_rollouts import document
from tests.integration.test_serving import infer_json, rows

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_engineer_starts_a_canary_watches_it_live_and_rolls_it_back(
    web_server: str, celery_worker: Any, beat: Any, cast: dict[str, Any], teams: dict[str, Any],
) -> None:
    actor = Actor(user=cast["engineer"])
    model = services.create_model(actor=actor, name="iris", team=teams["ml"])
    register_ready(actor=actor, model=model, data=built.mlp_onnx(seed=0))
    register_ready(actor=actor, model=model, data=built.mlp_onnx(seed=5))
    configure_deployment(actor=actor, model=model, changes={"active_version": 1})
    _, token = create_token(actor=actor, user=cast["engineer"], name="traffic", scopes=["predict"])
    stopping = threading.Event()
    answered: list[str] = []

    def traffic() -> None:
        while not stopping.is_set():
            status, headers, _ = infer_json(web_server, token, "iris", document(rows(1)))
            answered.append(headers.get("x-paddock-version", str(status)))
            stopping.wait(0.02)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            log_in(page, web_server, "engineer")
            page.goto(f"{web_server}/models/iris/")
            bar = page.locator("#traffic-panel .routes-bar")
            expect(bar).to_contain_text("v1 · 100%")
            # The websocket pushes once a second: the charts redraw with v1's traffic.
            page.wait_for_function("Number(document.getElementById('live-charts').dataset.points) > 0",
                                   timeout=30_000)
            expect(page.locator("#live-table tr[data-version='1']")).to_be_visible()

            form = page.locator("#rollout-form")
            form.locator("select[name=candidate]").select_option("2")
            form.locator("select[name=strategy]").select_option("canary")
            form.locator("input[name=steps]").fill("50, 100")
            form.get_by_label("Hold each step (s)").fill("600")
            form.get_by_role("button", name="Start rollout").click()
            # The beat sees v2 warm on the worker, then gives it its first step.
            expect(bar).to_contain_text("v2 · 50%", timeout=30_000)
            expect(page.locator("#traffic-panel .rollout")).to_have_attribute("data-state", "running")
            # v2 now takes half the requests: its row and lines appear without a reload.
            expect(page.locator("#live-table tr[data-version='2']")).to_be_visible(timeout=30_000)
            page.wait_for_function(
                "document.querySelector(\"#live-table tr[data-version='2'] td:nth-child(2)\").textContent !== '0.00'",
                timeout=30_000)
            updates = int(page.locator("#live-charts").get_attribute("data-updates") or "0")
            page.wait_for_function(f"Number(document.getElementById('live-charts').dataset.updates) > {updates + 1}")

            page.get_by_role("button", name="Roll back").click()
            expect(page.locator("#traffic-panel .rollout")).to_have_attribute("data-state", "rolled_back")
            expect(bar).to_contain_text("v1 · 100%")
            expect(page.locator("#traffic-panel .timeline")).to_contain_text("rolled back by engineer")
            browser.close()
    finally:
        stopping.set()
        sender.join(timeout=60)
    rollout = Rollout.objects.get()
    assert rollout.state == "rolled_back"
    assert list(rollout.events.values_list("kind", flat=True)) == ["start", "step", "step", "rollback"]
    assert {"1", "2"} <= set(answered)
