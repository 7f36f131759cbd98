"""An admin in a real Chromium, against a real uvicorn: sees the navigation count a rollout waiting
for approval, approves it from the inbox with a reason, then finds the approval in the audit
log by its filters, checks the chain, and exports the filtered view as CSV (streamed by the ASGI
server, as a person's download)."""

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from console.models import AuditEvent
from registry.models import RegisteredModel
from serving.models import Rollout
from tests.console.test_approvals import bring_to_approval
from tests.e2e.test_upload_journey import CHROMIUM, CHROMIUM_ARGS, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_admin_approves_from_the_inbox_then_finds_and_exports_it_in_the_audit_log(
    web_server: str, iris: RegisteredModel, cast: dict[str, Any], tmp_path: Path,
) -> None:
    rollout = bring_to_approval(iris, cast["engineer"])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(accept_downloads=True)
        log_in(page, web_server, "admin")
        count = page.locator("#approvals-count")
        expect(count).to_have_text("1")

        page.get_by_role("link", name=re.compile(r"^Approvals")).click()
        card = page.locator(f"#approval-{rollout.pk}")
        expect(card).to_contain_text("iris · v1 → v2")
        expect(card.locator("tr[data-arm=candidate]")).to_contain_text("500")
        expect(card).to_contain_text("every gate passed")
        card.get_by_label("Reason").fill("figures look good")
        card.get_by_role("button", name="Approve").click()
        expect(page.locator("#approvals .notice")).to_have_text(f"Rollout {rollout.pk} of iris (v2) approved.")
        expect(page.locator("#approvals-empty")).to_be_visible()
        expect(count).to_have_text("0")  # swapped out of band with the list: no reload

        page.get_by_role("link", name="Audit log").click()
        rows = page.locator("table.audit tbody tr")
        page.get_by_label("Action").fill("rollout.approve")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("final step approved by admin: figures look good")
        page.get_by_label("Team").select_option("ml")
        expect(rows).to_have_count(1)
        expect(page).to_have_url(re.compile(r"action=rollout\.approve.*team=ml"))

        page.get_by_role("button", name="Verify now").click()
        expect(page.locator("#audit-chain")).to_have_attribute("data-state", "intact")
        expect(page.locator("#audit-chain")).to_contain_text("by admin")

        with page.expect_download() as download:
            page.get_by_role("link", name="CSV").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        browser.close()

    assert re.fullmatch(r"paddock-audit-\d{8}T\d{6}Z\.csv", saved.name)
    [record] = list(csv.DictReader(io.StringIO(saved.read_text())))
    approval = AuditEvent.objects.get(action="rollout.approve")
    assert (int(record["id"]), record["hash"], record["actor_username"]) == (approval.pk, approval.hash, "admin")
    assert Rollout.objects.get(pk=rollout.pk).state == "running"
    exported = AuditEvent.objects.get(action="audit.exported")
    assert exported.after == {"format": "csv", "filters": {"action": "rollout.approve", "team": "ml"}}
