"""The card buttons' shared path (console.htmx.card_action), through the webhooks card: each
step's answer, status and message (the schedules and stream bindings cards take the same path,
their own tests cover their buttons)."""

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from console.models import AuditEvent
from tests.conftest import PASSWORD
from webhooks.models import Webhook

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def signed_in(who: str) -> Client:
    client = Client()
    assert client.login(username=who, password=PASSWORD)
    return client


def test_an_unknown_action_is_a_404_that_changes_nothing(make_webhook: Callable[..., Any],
                                                         cast: dict[str, Any]) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    unknown = signed_in("engineer").post(f"/webhooks/ml/{webhook.pk}/explode/", headers=HTMX)
    assert unknown.status_code == 404 and b"Not Found" in unknown.content  # Django's page: DEBUG is off
    assert Webhook.objects.get().active and AuditEvent.objects.filter(action__startswith="webhook.").count() == 1


def test_a_viewer_is_refused_with_the_card_and_the_reason(make_webhook: Callable[..., Any],
                                                          cast: dict[str, Any]) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    refused = signed_in("viewer").post(f"/webhooks/ml/{webhook.pk}/pause/", headers=HTMX)
    assert refused.status_code == 403
    assert refused.templates[0].name == "webhooks/partials/_webhooks.html"
    assert b"the engineer role in team &#x27;ml&#x27; is required to change its webhooks" in refused.content
    assert Webhook.objects.get().active


def test_a_missing_webhook_answers_the_card_with_a_404(cast: dict[str, Any]) -> None:
    missing = signed_in("engineer").post("/webhooks/ml/999999/pause/", headers=HTMX)
    assert missing.status_code == 404 and b"team &#x27;ml&#x27; has no webhook 999999" in missing.content


def test_resume_says_so_and_without_htmx_the_button_lands_back_on_the_page(
        make_webhook: Callable[..., Any], cast: dict[str, Any]) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    engineer = signed_in("engineer")
    plain = engineer.post(f"/webhooks/ml/{webhook.pk}/pause/")
    assert plain.status_code == 302 and plain["Location"] == "/webhooks/ml/"
    resumed = engineer.post(f"/webhooks/ml/{webhook.pk}/resume/", headers=HTMX)
    assert resumed.status_code == 200 and f"Webhook {webhook.pk} resumed.".encode() in resumed.content
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="webhook.").order_by("pk")] == [
        "webhook.created", "webhook.paused", "webhook.resumed"]
