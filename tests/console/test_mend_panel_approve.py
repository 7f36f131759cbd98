"""The model page's "Approve final step" asks for a reason, as the approvals inbox does: the form
carries a required reason, a blank one is refused with the inbox's message in the panel's alert,
and the reason reaches the rollout's timeline and its audit event."""

from typing import Any

import pytest
from django.test import Client

from console.models import AuditEvent
from serving.models import Rollout
from tests.console.test_approvals import bring_to_approval

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def awaiting(iris: Any, cast: dict[str, Any]) -> Rollout:
    return bring_to_approval(iris, cast["engineer"])


def signed_in(cast: dict[str, Any], who: str) -> Client:
    client = Client()
    client.force_login(cast[who])
    return client


def approve(client: Client, rollout: Rollout, reason: str | None) -> Any:
    data = {} if reason is None else {"reason": reason}
    return client.post(f"/models/iris/rollouts/{rollout.pk}/approve/", data, headers=HTMX)


def test_an_admin_s_panel_asks_for_a_reason_to_approve(awaiting: Rollout, cast: dict[str, Any]) -> None:
    html = " ".join(signed_in(cast, "admin").get("/models/iris/traffic/", headers=HTMX).content.decode().split())
    form = html[html.index(f'<form class="approve" id="rollout-{awaiting.pk}-approve"'):].split("</form>")[0]
    assert f'hx-post="/models/iris/rollouts/{awaiting.pk}/approve/"' in form
    assert '<input name="reason" required maxlength="500"' in form
    assert '<button type="submit">Approve final step</button>' in form
    assert '<p class="form-error" role="alert" hidden></p>' in form
    engineer = signed_in(cast, "engineer").get("/models/iris/traffic/", headers=HTMX).content.decode()
    assert "Approve final step" not in engineer  # only an admin approves


@pytest.mark.parametrize(("reason", "message"), [
    (None, "a reason is required to approve a rollout"),
    ("   ", "a reason is required to approve a rollout"),
    ("x" * 501, "the reason is 501 characters; at most 500"),
])
def test_approving_without_a_reason_is_refused_with_the_inbox_s_message(
        awaiting: Rollout, cast: dict[str, Any], reason: str | None, message: str) -> None:
    refused = approve(signed_in(cast, "admin"), awaiting, reason)
    assert refused.status_code == 400
    assert f'<p class="error" role="alert">{message}</p>' in refused.content.decode()
    awaiting.refresh_from_db()
    assert awaiting.state == "awaiting_approval" and awaiting.approved_by is None
    assert not AuditEvent.objects.filter(action="rollout.approve").exists()


def test_approving_with_a_reason_moves_it_on_and_audits_the_reason(awaiting: Rollout, cast: dict[str, Any]) -> None:
    approved = approve(signed_in(cast, "admin"), awaiting, "  figures look good ")
    assert approved.status_code == 200
    message = "final step approved by admin: figures look good"
    html = approved.content.decode()
    assert 'data-state="running"' in html and message in html and "Approve final step" not in html
    awaiting.refresh_from_db()
    assert awaiting.state == "running" and awaiting.approved_by == cast["admin"] and awaiting.step_index == 1
    assert awaiting.events.get(kind="approve").message == message
    event = AuditEvent.objects.get(action="rollout.approve")
    assert event.actor_username == "admin" and event.after is not None and event.after["message"] == message


def test_an_engineer_cannot_approve_even_with_a_reason(awaiting: Rollout, cast: dict[str, Any]) -> None:
    refused = approve(signed_in(cast, "engineer"), awaiting, "mine")
    assert refused.status_code == 403
    assert ('<p class="error" role="alert">only an admin can approve or reject a rollout awaiting approval</p>'
            in refused.content.decode())
    awaiting.refresh_from_db()
    assert awaiting.state == "awaiting_approval"
