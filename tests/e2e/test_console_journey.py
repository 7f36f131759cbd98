"""The console end to end, as an admin and an engineer use it, in a real Chromium against a real
uvicorn, a real Celery worker (validation and serving with onnxruntime), a real beat judging the
rollout's gates, and a real webhook receiver:

1. the admin creates a person and a team on the People and Teams pages, and makes the person an
   engineer of the team;
2. the admin registers a webhook for the team and reads its secret, shown once;
3. the engineer (another browser context) makes an API token and a model, uploads v1, which
   validates and serves as champion, then v2, which validates while v1 still serves;
4. the comparison page shows both versions' signatures;
5. a canary of v2 that needs an admin's approval at its final step runs on live traffic until it
   waits for that approval;
6. the admin approves it from the inbox with a reason, and v2 ends up serving;
7. the receiver got every event the code emits, signed with the secret read from the page;
8. the admin finds the engineer's uploads and rollout in the audit log, and exports them as CSV."""

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect, sync_playwright

from console.models import AuditEvent
from registry.models import ModelVersion
from serving.models import Rollout
from tests import models as built
from tests.conftest import PASSWORD, wait_until
from tests.e2e.test_upload_journey import CHROMIUM, CHROMIUM_ARGS, log_in
from tests.integration.test_rollouts import Traffic
from tests.integration.test_serving import rows
from tests.webhooks.receiver import Received, Receiver, running
from webhooks.models import Delivery
from webhooks.signing import HEADER, verify

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ENGINEER, TEAM, MODEL = "ada", "vision", "iris"
# What the code emits for this journey, in order (webhooks/events.py; serving/rollouts.py says
# when): v1's validation (it serves first, so it takes `champion`), v2's; the canary holds v2
# warm (step -1), gives it 50% (step 0), waits for the admin before its final step; approved,
# it gives v2 100% (step 1); its gates pass and the promotion makes v2 active and champion.
EXPECTED_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("version.ready", {"version": 1}),
    ("alias.moved", {"alias": "champion", "version": 1, "previous_version": None}),
    ("version.ready", {"version": 2}),
    ("deployment.changed", {"action": "traffic"}),
    ("rollout.step", {"step": -1, "state": "running"}),
    ("deployment.changed", {"action": "traffic"}),
    ("rollout.step", {"step": 0, "state": "running"}),
    ("rollout.awaiting_approval", {"step": 0, "state": "awaiting_approval"}),
    ("deployment.changed", {"action": "traffic"}),
    ("rollout.step", {"step": 1, "state": "running"}),
    ("deployment.changed", {"action": "traffic"}),
    ("alias.moved", {"alias": "champion", "version": 2, "previous_version": 1}),
    ("rollout.promoted", {"step": 1, "state": "promoted"}),
]


@pytest.fixture
def _forget_wanted_versions() -> Iterator[None]:
    """The session's worker is told which versions to hold through Redis: this test's must not
    make it hold a later test's version with the same id (as tests/integration/conftest.py does)."""
    yield
    import redis
    from django.conf import settings

    from serving.v2.wire import wanted_key

    redis.Redis.from_url(settings.REDIS_URL).delete(wanted_key())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real webhook receiver on 127.0.0.1 (the suite's web server and worker allow private
    targets: tests/conftest.py's child_env), answering 200 to everything."""
    with running([200]) as started:
        yield started


def upload(page: Page, base: str, artifact: Path, number: int) -> None:
    """Upload `artifact` from the model's upload page; wait until the worker has validated it."""
    page.goto(f"{base}/models/{MODEL}/")
    page.get_by_role("link", name="Upload a version").click()
    page.set_input_files("input[name=artifact]", str(artifact))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_contain_text(f"Uploaded as v{number}")
    expect(page.locator("#validation-status")).to_have_text("ready", timeout=90_000)


def wall_clock_of(received: Received) -> float:
    """When the receiver got the request, as Unix time (it notes a monotonic time)."""
    return time.time() - (time.monotonic() - received.at)


def test_an_admin_sets_up_a_team_and_an_engineer_ships_a_second_version_through_an_approved_canary(
    web_server: str, celery_worker: Any, beat: Any, receiver: Receiver, tmp_path: Path,
    _forget_wanted_versions: None,
) -> None:
    get_user_model().objects.create_superuser("admin", password=PASSWORD)
    v1, v2 = tmp_path / "iris-v1.onnx", tmp_path / "iris-v2.onnx"
    v1.write_bytes(built.mlp_onnx(inputs=8, outputs=3, seed=0))
    v2.write_bytes(built.mlp_onnx(inputs=8, outputs=4, seed=5))  # one more class: its signature differs

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        admin = browser.new_context(accept_downloads=True).new_page()
        engineer = browser.new_context().new_page()
        admin.on("dialog", lambda dialog: dialog.accept())
        engineer.on("dialog", lambda dialog: dialog.accept())

        # 1. The admin creates the person, the team, and the membership.
        log_in(admin, web_server, "admin")
        admin.get_by_role("link", name="People").click()
        admin.get_by_text("Create a person", exact=True).click()
        people_form = admin.locator("#user-form")
        people_form.get_by_label("Username", exact=True).fill(ENGINEER)
        people_form.get_by_label("Email", exact=True).fill("ada@example.com")
        people_form.get_by_label("Initial password").fill(PASSWORD)
        people_form.get_by_role("button", name="Create person").click()
        expect(admin.locator("#people .notice")).to_have_text(
            f"User '{ENGINEER}' created with the password you gave.")
        expect(admin.locator(f"#person-{ENGINEER}")).to_contain_text("ada@example.com")

        admin.get_by_role("link", name="Teams", exact=True).click()
        admin.get_by_label("Team name").fill(TEAM)
        admin.get_by_label("Description").fill("Images and video")
        admin.get_by_role("button", name="Create team").click()
        expect(admin.locator("#teams .notice")).to_have_text(f"Team '{TEAM}' created: add its members on its page.")
        admin.get_by_role("link", name=TEAM, exact=True).click()
        admin.get_by_label("Username").fill(ENGINEER)
        admin.locator("#member-form select[name=role]").select_option("engineer")
        admin.get_by_role("button", name="Add member").click()
        expect(admin.locator("#members .notice")).to_have_text(f"{ENGINEER} added to team {TEAM} as engineer.")
        expect(admin.locator(f"#member-{ENGINEER} [data-field=role]")).to_have_text("engineer")

        # 2. The admin registers the team's webhook (every event: all boxes start ticked).
        admin.get_by_role("link", name="Webhooks").click()
        expect(admin).to_have_url(f"{web_server}/webhooks/{TEAM}/")  # the only team: straight to it
        admin.get_by_text("Add a webhook", exact=True).click()
        admin.get_by_label("URL").fill(receiver.url)
        expect(admin.locator("#webhook-form input[name=events]:checked")).to_have_count(8)
        admin.get_by_role("button", name="Add webhook").click()
        expect(admin.locator("#webhooks .notice")).to_contain_text(f"created: {receiver.url}. Copy its secret now")
        secret = admin.locator("#webhook-secret").inner_text().strip()
        assert secret.startswith("whsec_")
        admin.reload()  # shown once: gone from the page from now on
        expect(admin.locator("#webhooks")).to_contain_text(receiver.url)
        expect(admin.locator("#webhook-secret")).to_have_count(0)
        assert secret not in admin.content()

        # 3. The engineer: a token for traffic, the model, v1 (it serves), v2 (it does not).
        log_in(engineer, web_server, ENGINEER)
        engineer.get_by_role("link", name="API tokens").click()
        engineer.get_by_label("Name").fill("traffic")
        engineer.get_by_label("Predict", exact=True).check()
        engineer.get_by_role("button", name="Create token").click()
        token = engineer.locator("#new-token").inner_text().strip()

        engineer.goto(f"{web_server}/models/new/")
        engineer.locator("input[name=name]").fill(MODEL)
        engineer.locator("select[name=team]").select_option(TEAM)
        engineer.get_by_role("button", name="Create").click()
        expect(engineer).to_have_url(f"{web_server}/models/{MODEL}/")

        panel = engineer.locator("#traffic-panel")
        bar, reason = panel.locator(".routes-bar"), panel.get_by_test_id("serving-reason")
        upload(engineer, web_server, v1, 1)
        engineer.get_by_role("link", name="v1", exact=True).click()
        expect(bar).to_have_text("v1 · 100%")
        expect(reason).to_have_text("v1 carries the champion alias; newer versions serve only when promoted")
        expect(engineer.locator("#version-1 .tag.alias")).to_have_text("champion")

        upload(engineer, web_server, v2, 2)
        engineer.get_by_role("link", name="v2", exact=True).click()
        expect(engineer.locator("#version-2 .status")).to_have_text("ready")
        expect(bar).to_have_text("v1 · 100%")  # uploading never changes what serves
        expect(reason).to_have_text("v1 carries the champion alias; newer versions serve only when promoted")
        expect(engineer.locator("#version-2 .tag.alias")).to_have_count(0)

        # 4. The comparison: v1 against v2, each signature beside the other.
        compare = engineer.locator("#compare-form")
        compare.locator("select[name=a]").select_option("1")
        compare.locator("select[name=b]").select_option("2")
        compare.get_by_role("button", name="Compare").click()
        expect(engineer).to_have_url(f"{web_server}/models/{MODEL}/compare/?a=1&b=2")
        signature = engineer.locator("#compare-signature")
        expect(signature).to_have_attribute("data-differs", "true")
        expect(signature.locator("tr[data-tensor=x]")).to_have_attribute("data-change", "same")
        expect(signature.locator("tr[data-tensor=x] td")).to_have_text(
            ["input", "x", "FP32", "[-1, 8]", "FP32", "[-1, 8]", ""])
        expect(signature.locator("tr[data-tensor=probs]")).to_have_attribute("data-change", "changed")
        expect(signature.locator("tr[data-tensor=probs] td")).to_have_text(
            ["output", "probs", "FP32", "[-1, 3]", "FP32", "[-1, 4]", "changed"])

        # 5. A canary needing approval at its final step, on live traffic, until it waits.
        with Traffic(web_server, token, rows(1, seed=4)) as traffic:
            engineer.goto(f"{web_server}/models/{MODEL}/")
            form = engineer.locator("#rollout-form")
            form.locator("select[name=candidate]").select_option("2")
            form.locator("select[name=strategy]").select_option("canary")
            form.locator("input[name=steps]").fill("50, 100")
            form.get_by_label("Hold each step (s)").fill("2")
            form.get_by_label("Min requests", exact=True).fill("10")
            form.get_by_label("Window (s)", exact=True).fill("5")
            form.get_by_label("Max p99 ratio", exact=True).fill("3")
            form.get_by_label("An admin approves the final step").check()
            form.get_by_role("button", name="Start rollout").click()
            rollout = panel.locator(".rollout")
            expect(rollout).to_have_attribute("data-state", "awaiting_approval", timeout=90_000)
            # Its final step waits for the admin: the traffic stays split.
            expect(bar.locator(".route")).to_have_text(["v1 · 50%", "v2 · 50%"])
            expect(reason).to_have_text("a canary rollout is moving traffic from v1 to v2")
            expect(rollout.locator(".timeline li").last).to_contain_text(
                "awaiting_approval an admin must approve the final step")

            # 6. The admin approves from the inbox; the last step passes and v2 serves.
            admin.goto(f"{web_server}/models/")
            expect(admin.locator("#approvals-count")).to_have_text("1")
            admin.get_by_role("link", name=re.compile(r"^Approvals")).click()
            card = admin.locator(f"article.approval[data-model={MODEL}]")
            expect(card).to_contain_text(f"{MODEL} · v1 → v2")
            expect(card).to_contain_text(f"Started by {ENGINEER}")
            expect(card.locator(".gate-verdict")).to_contain_text("every gate passed")
            card.get_by_label("Reason").fill("half the traffic for a while, no errors")
            card.get_by_role("button", name="Approve").click()
            expect(admin.locator("#approvals .notice")).to_have_text(
                re.compile(rf"^Rollout \d+ of {MODEL} \(v2\) approved\.$"))
            expect(admin.locator("#approvals-empty")).to_be_visible()

            expect(rollout).to_have_attribute("data-state", "promoted", timeout=90_000)
            expect(bar).to_have_text("v2 · 100%")
            expect(reason).to_have_text("the deployment names v2 (promoted); newer versions serve only when promoted")
            expect(rollout.locator(".timeline")).to_contain_text(
                "final step approved by admin: half the traffic for a while, no errors")
            expect(rollout.locator(".timeline li").last).to_contain_text("promote every step passed its gates")

        # 8. The admin finds the engineer's upload and rollout in the audit log, and exports them.
        admin.get_by_role("link", name="Audit log").click()
        admin.get_by_label("Actor").fill(ENGINEER)
        expect(admin).to_have_url(re.compile(rf"[?&]actor={ENGINEER}(&|$)"))
        table = admin.locator("table.audit tbody tr")
        expect(table.filter(has_text="version.create")).to_have_count(2)
        expect(table.filter(has_text="rollout.start")).to_have_count(1)
        expect(table.filter(has_text="model.create")).to_have_count(1)
        for row in table.all():
            expect(row.locator("td").nth(1)).to_have_text(ENGINEER)
        shown = table.count()
        with admin.expect_download() as download:
            admin.get_by_role("link", name="CSV").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        browser.close()

    assert [number for _, number, _ in traffic.results[-20:]] == ["2"] * 20  # v2 answers the callers now
    assert {status for status, _, _ in traffic.results} == {200}
    check_database()
    check_export(saved, shown)

    # 7, checked once the browser is closed (the log of deliveries is read from the database): every
    # event the code emitted reached the receiver, signed with the secret the page showed.
    wait_until(lambda: not Delivery.objects.filter(state="pending").exists(), timeout=120, interval=0.2)
    logged = {str(key): state for key, state in Delivery.objects.values_list("key", "state")}
    assert set(logged.values()) == {"succeeded"}, logged
    check_deliveries(receiver, secret, keys=set(logged))


def check_deliveries(receiver: Receiver, secret: str, keys: set[str]) -> None:
    """The receiver got the deliveries logged (`keys`), each signed (webhooks/signing.py's verify,
    at the time it arrived) and carrying the expected event, in the order the events happened
    (their `created_at`: deliveries are not promised to arrive in order); a repeat of a delivery
    is skipped by its key, as docs/webhooks.md tells receivers to."""
    envelopes: dict[str, dict[str, Any]] = {}
    for request in list(receiver.received):
        signature = request.headers[HEADER]
        assert verify(secret, signature, request.body, now=wall_clock_of(request)), signature
        assert not verify(secret + "x", signature, request.body, now=wall_clock_of(request))
        assert request.path == "/hooks/paddock" and request.headers["Content-Type"] == "application/json"
        envelope = json.loads(request.body)
        assert envelope["id"] == request.headers["Paddock-Delivery"]
        assert envelope["event"] == request.headers["Paddock-Event"] and envelope["team"] == TEAM
        envelopes.setdefault(envelope["id"], envelope)
    assert set(envelopes) == keys
    ordered = sorted(envelopes.values(), key=lambda envelope: datetime.fromisoformat(envelope["created_at"]))
    assert [envelope["event"] for envelope in ordered] == [event for event, _ in EXPECTED_EVENTS]
    for envelope, (event, expected) in zip(ordered, EXPECTED_EVENTS, strict=True):
        data = envelope["data"]
        assert data["model"] == MODEL, envelope
        assert {key: data[key] for key in expected} == expected, (event, data)
        if event.startswith("rollout."):
            assert (data["stable"], data["candidate"], data["steps"]) == (1, 2, [50, 100]), data
    first_ready, second_ready = ordered[0]["data"], ordered[2]["data"]
    assert first_ready["status"] == second_ready["status"] == "ready"
    assert first_ready["provider"] == second_ready["provider"] == "CPUExecutionProvider"
    steps = [envelope["data"] for envelope in ordered if envelope["event"] == "deployment.changed"]
    assert steps[0]["after"]["standby_version"] == 2 and steps[0]["after"]["routes"] == []
    assert steps[1]["after"]["routes"] == [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
    assert steps[2]["after"]["routes"] == [{"version": 1, "weight": 0}, {"version": 2, "weight": 100}]
    assert (steps[3]["before"]["active_version"], steps[3]["after"]["active_version"]) == (None, 2)
    assert steps[3]["after"]["routes"] == []


def check_database() -> None:
    """What the pages showed is what the rows say."""
    rollout = Rollout.objects.get()
    assert rollout.state == "promoted" and rollout.approved_by is not None
    assert rollout.approved_by.username == "admin" and rollout.created_by is not None
    assert rollout.created_by.username == ENGINEER
    assert list(rollout.events.values_list("kind", flat=True)) == [
        "start", "step", "step", "gate", "awaiting_approval", "approve", "step", "gate", "promote"]
    assert list(ModelVersion.objects.order_by("number").values_list("number", "status")) == [(1, "ready"), (2, "ready")]


def check_export(saved: Path, shown: int) -> None:
    """The CSV holds the filtered events, oldest first, as the audit log has them."""
    assert re.fullmatch(r"paddock-audit-\d{8}T\d{6}Z\.csv", saved.name)
    exported = list(csv.DictReader(io.StringIO(saved.read_text())))
    events = AuditEvent.objects.filter(actor_username=ENGINEER).order_by("id")
    assert len(exported) == shown
    assert [(int(row["id"]), row["hash"], row["action"]) for row in exported] == [
        (event.pk, event.hash, event.action) for event in events]
    assert {row["actor_username"] for row in exported} == {ENGINEER}
    actions = [row["action"] for row in exported]
    assert actions.count("version.create") == 2 and actions.count("rollout.start") == 1
    assert actions.index("model.create") < actions.index("version.create") < actions.index("rollout.start")
    uploads = [json.loads(row["after"]) for row in exported if row["action"] == "version.create"]
    assert [upload["number"] for upload in uploads] == [1, 2]
