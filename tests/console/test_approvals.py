"""The approval inbox: a canary that needs an admin's approval, brought to its final step by a real
gate check (the beat's `tick` over figures written to Redis, as tests/serving/test_gates.py
does), is listed with its figures; approving moves it on, rejecting rolls it back, each with its
reason in the timeline and the audit log; the navigation counts what waits; only admins."""

import re
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from django.db import transaction
from django.test import Client

from console.audit import Actor
from console.errors import Forbidden
from console.models import AuditEvent
from registry import services
from registry.models import RegisteredModel
from serving import rollouts
from serving.approvals import decide_rollout
from serving.models import Deployment, Rollout
from tests.conftest import ready_version
from tests.serving.test_gates import per_second, write

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
REFUSED = '<p class="error" role="alert">only an admin can see and decide the rollouts awaiting approval</p>'


def bring_to_approval(model: RegisteredModel, engineer: Any) -> Rollout:
    """The model's canary of v2 over v1 (steps 50, 100; require_approval): warm, its 50% step held
    12 s with healthy figures for both versions, then one gate check, which passes it on to the
    final step, where it waits for an admin."""
    rollout = rollouts.start_rollout(actor=Actor(user=engineer), model=model, candidate=2,
                                     strategy="canary", steps=[50, 100], step_seconds=10,
                                     gates={"window_seconds": 10}, require_approval=True)
    with transaction.atomic():  # as the beat's tick would, once the workers hold v2 warm
        rollouts._enter_step(Actor.system("tests"), rollout, Deployment.objects.get(model=model), 0)
    now = int(time.time()) + 5000  # seconds no other test writes
    Rollout.objects.filter(pk=rollout.pk).update(step_started_at=datetime.fromtimestamp(now - 12, tz=UTC))
    rng = np.random.default_rng(11)
    for second in range(now - 12, now):
        write(rollout.stable_version_id, second, per_second(rng, 50, 7.0))
        write(rollout.candidate_version_id, second, per_second(rng, 50, 7.0))
    assert rollouts.tick(rollout.pk, now=now) == "advanced"
    rollout.refresh_from_db()
    assert rollout.state == "awaiting_approval" and rollout.last_check["passed"]
    return rollout


@pytest.fixture
def awaiting(iris: RegisteredModel, cast: dict[str, Any]) -> Rollout:
    """iris's canary waiting for an admin (bring_to_approval)."""
    return bring_to_approval(iris, cast["engineer"])


def card(html: str, rollout: Rollout) -> str:
    match = re.search(rf'<article class="card approval" id="approval-{rollout.pk}".*?</article>', html, re.S)
    assert match, f"rollout {rollout.pk} is not in the inbox"
    return " ".join(match.group(0).split())


def test_every_team_s_rollout_awaiting_approval_is_listed_with_its_figures(
        awaiting: Rollout, browser_as: Any, cast: dict[str, Any], teams: dict[str, Any]) -> None:
    # Team other's rollout waits too (no gate check yet); a running one of team ml does not wait.
    outsider = Actor(user=cast["outsider"])
    wine = services.create_model(actor=outsider, name="wine", team=teams["other"])
    for seed in (3, 4):
        ready_version(wine, seed)
    blue_green = rollouts.start_rollout(actor=outsider, model=wine, candidate=2, strategy="blue_green",
                                        require_approval=True)
    with transaction.atomic():
        rollouts._enter_step(Actor.system("tests"), blue_green, Deployment.objects.get(model=wine), 0)
    rose = services.create_model(actor=Actor(user=cast["engineer"]), name="rose", team=teams["ml"])
    for seed in (5, 6):
        ready_version(rose, seed)
    rollouts.start_rollout(actor=Actor(user=cast["engineer"]), model=rose, candidate=2, strategy="canary")

    html = browser_as("admin").get("/approvals/").content.decode()
    assert re.findall(r'<article class="card approval" id="approval-(\d+)"', html) == [
        str(awaiting.pk), str(blue_green.pk)]  # the longest waiting first; rose's canary is running
    iris = card(html, awaiting)
    check = awaiting.last_check
    assert "iris</a> · v1 → v2 <span class=\"muted\">canary · team ml</span>" in iris
    assert "Started by engineer" in iris and '<time class="waiting-since"' in iris
    candidate, stable = check["candidate"], check["stable"]
    assert candidate["requests"] == stable["requests"] == 500
    assert (f'<tr data-arm="candidate"><th>candidate v2</th><td>500</td><td>0</td> <td>0.0000</td>'
            f'<td>{candidate["p99_ms"]}</td></tr>') in iris
    assert (f'<tr data-arm="stable"><th>stable v1</th><td>500</td><td>0</td> <td>0.0000</td>'
            f'<td>{stable["p99_ms"]}</td></tr>') in iris
    assert "Held 12 s at step 1 of 2; every gate passed." in iris
    other = card(html, blue_green)
    assert "team other" in other and "No gate figures yet." in other


def decide(client: Client, rollout: Rollout, decision: str, reason: str) -> Any:
    return client.post(f"/approvals/{rollout.pk}/", {"decision": decision, "reason": reason}, headers=HTMX)


def test_approving_moves_it_on_and_audits_the_reason(awaiting: Rollout, browser_as: Any, cast: dict[str, Any]) -> None:
    answer = decide(browser_as("admin"), awaiting, "approve", "figures look good")
    assert answer.status_code == 200
    html = " ".join(answer.content.decode().split())
    assert f'<p class="notice" role="status">Rollout {awaiting.pk} of iris (v2) approved.</p>' in html
    assert "No rollout is waiting for approval." in html
    assert 'id="approvals-count" data-count="0" title="rollouts awaiting approval" hx-swap-oob="true">0</span>' in html
    awaiting.refresh_from_db()
    assert awaiting.state == "running" and awaiting.approved_by == cast["admin"] and awaiting.step_index == 1
    assert Deployment.objects.get(model=awaiting.model).routes[-1] == {"version": 2, "weight": 100}
    message = "final step approved by admin: figures look good"
    assert awaiting.events.get(kind="approve").message == message
    event = AuditEvent.objects.get(action="rollout.approve")
    assert event.actor_username == "admin" and event.after is not None and event.after["message"] == message


def test_rejecting_rolls_it_back_with_the_reason(awaiting: Rollout, browser_as: Any) -> None:
    answer = decide(browser_as("admin"), awaiting, "reject", "  p99 is too close to its limit  ")
    assert answer.status_code == 200
    assert f"Rollout {awaiting.pk} of iris (v2) rejected: rolled back." in answer.content.decode()
    awaiting.refresh_from_db()
    reason = "rolled back by admin: rejected: p99 is too close to its limit"
    assert awaiting.state == "rolled_back" and awaiting.reason == reason and awaiting.approved_by is None
    assert Deployment.objects.get(model=awaiting.model).routes == []  # all traffic back on v1
    assert awaiting.events.get(kind="rollback").message == reason
    event = AuditEvent.objects.get(action="rollout.rollback")
    assert event.actor_username == "admin" and event.after is not None and event.after["message"] == reason


@pytest.mark.parametrize(("decision", "reason", "status", "message"), [
    ("approve", " ", 400, "a reason is required to approve a rollout"),
    ("reject", "", 400, "a reason is required to reject a rollout"),
    ("promote", "why not", 400, "unknown decision &#x27;promote&#x27;: approve or reject"),
    ("approve", "x" * 501, 400, "the reason is 501 characters; at most 500"),
])
def test_a_decision_is_refused_without_a_reason_or_a_known_verb(
        awaiting: Rollout, browser_as: Any, decision: str, reason: str, status: int, message: str) -> None:
    answer = decide(browser_as("admin"), awaiting, decision, reason)
    assert answer.status_code == status
    assert f'<p class="error" role="alert">{message}</p>' in answer.content.decode()
    awaiting.refresh_from_db()
    assert awaiting.state == "awaiting_approval"
    assert not AuditEvent.objects.filter(action__in=["rollout.approve", "rollout.rollback"]).exists()


def test_a_rollout_decided_meanwhile_is_a_conflict(awaiting: Rollout, browser_as: Any) -> None:
    admin = browser_as("admin")
    assert decide(admin, awaiting, "approve", "go").status_code == 200
    again = decide(admin, awaiting, "reject", "too late")
    assert again.status_code == 409
    assert (f'<p class="error" role="alert">rollout {awaiting.pk} of model &#x27;iris&#x27; is running, '
            "no longer awaiting approval</p>") in again.content.decode()
    awaiting.refresh_from_db()
    assert awaiting.state == "running"  # not rolled back by the late rejection
    missing = admin.post("/approvals/999999/", {"decision": "approve", "reason": "x"})
    assert missing.status_code == 404


def badge(html: str) -> str:
    match = re.search(r'<span class="badge[^"]*" id="approvals-count" data-count="(\d+)"', html)
    assert match, "no approvals count in the navigation"
    return match.group(1)


def test_the_navigation_counts_what_waits_for_admins_only(awaiting: Rollout, browser_as: Any) -> None:
    admin = browser_as("admin")
    assert badge(admin.get("/models/").content.decode()) == "1"
    decide(admin, awaiting, "approve", "fine")
    assert badge(admin.get("/models/").content.decode()) == "0"
    engineer = browser_as("engineer").get("/models/").content.decode()
    assert "approvals-count" not in engineer and "/approvals/" not in engineer


def test_non_admins_are_refused_the_inbox_and_its_decisions(awaiting: Rollout, browser_as: Any,
                                                             cast: dict[str, Any]) -> None:
    engineer = browser_as("engineer")
    for response in (engineer.get("/approvals/"), engineer.get("/approvals/", headers=HTMX),
                     decide(engineer, awaiting, "approve", "mine"), decide(engineer, awaiting, "reject", "mine")):
        assert response.status_code == 403 and REFUSED in response.content.decode()
    awaiting.refresh_from_db()
    assert awaiting.state == "awaiting_approval"
    anonymous = Client().get("/approvals/")
    assert anonymous.status_code == 302 and anonymous["Location"] == "/login/?next=/approvals/"
    # The verb itself refuses a non-admin, whoever calls it.
    with pytest.raises(Forbidden, match="only an admin can approve or reject a rollout awaiting approval"):
        decide_rollout(actor=Actor(user=cast["engineer"]), rollout=awaiting, decision="reject", reason="mine")


def test_the_api_lists_the_same_inbox_for_admins(awaiting: Rollout, client_for: Any, cast: dict[str, Any]) -> None:
    answer = client_for("admin", "admin").get("/api/v1/approvals/")
    assert answer.status_code == 200
    [item] = answer.json()["results"]
    assert item["team"] == "ml" and item["waiting_since"]
    rollout = item["rollout"]
    assert (rollout["id"], rollout["model"], rollout["state"]) == (awaiting.pk, "iris", "awaiting_approval")
    assert rollout["stable_version"] == 1 and rollout["candidate_version"] == 2
    assert rollout["last_check"]["candidate"]["requests"] == 500
    assert [e["kind"] for e in rollout["events"]][-1] == "awaiting_approval"
    refused = client_for("engineer", "read").get("/api/v1/approvals/")
    assert refused.status_code == 403 and refused.json() == {"detail": "token lacks the 'admin' scope"}
    from rest_framework.test import APIClient

    session = APIClient()
    session.force_login(cast["engineer"])
    answer = session.get("/api/v1/approvals/")
    assert answer.status_code == 403 and answer.json() == {"detail": "admin role required"}
