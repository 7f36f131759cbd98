"""The console's webhooks page, browser-free (Django's test client): the page and its fragments,
the create form showing the secret once, the log of deliveries and its redeliver button."""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone

from console.models import AuditEvent
from tests.conftest import PASSWORD
from webhooks import services
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db
PAGE = "/webhooks/ml/"
HTMX = {"HX-Request": "true"}


def signed_in(who: str) -> Client:
    client = Client()
    assert client.login(username=who, password=PASSWORD)
    return client


@override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)
def test_an_engineer_adds_a_webhook_and_sees_its_secret_only_in_that_answer(cast: dict[str, Any]) -> None:
    engineer = signed_in("engineer")
    page = engineer.get(PAGE)
    assert page.status_code == 200
    assert b'id="webhook-form"' in page.content and b"No webhooks yet." in page.content
    made = engineer.post(PAGE, {"url": "http://127.0.0.1:9/hook", "events": ["version.ready", "rollout.promoted"]},
                         headers=HTMX)
    assert made.status_code == 201
    secret = Webhook.objects.get().secret
    assert made.templates[0].name == "webhooks/partials/_webhooks.html"
    assert f'<pre id="webhook-secret">{secret}</pre>'.encode() in made.content
    again = engineer.get(PAGE)
    assert b"http://127.0.0.1:9/hook" in again.content and secret.encode() not in again.content
    assert secret.encode() not in engineer.get(PAGE, headers=HTMX).content


def test_a_refused_target_answers_the_form_with_the_reason(cast: dict[str, Any]) -> None:
    refused = signed_in("engineer").post(PAGE, {"url": "http://169.254.169.254/", "events": ["version.ready"]},
                                         headers=HTMX)
    assert refused.status_code == 400
    assert (b"webhook target 169.254.169.254 is a link-local address; set PADDOCK_WEBHOOK_ALLOW_PRIVATE=1 to "
            b"allow it") in refused.content
    assert not Webhook.objects.exists()


def test_a_viewer_sees_the_page_without_the_form_and_cannot_add(cast: dict[str, Any]) -> None:
    viewer = signed_in("viewer")
    page = viewer.get(PAGE)
    assert page.status_code == 200 and b'id="webhook-form"' not in page.content
    refused = viewer.post(PAGE, {"url": "https://93.184.216.34/", "events": ["version.ready"]}, headers=HTMX)
    assert refused.status_code == 403
    assert b"the engineer role in team &#x27;ml&#x27; is required to change its webhooks" in refused.content


def test_another_teams_page_is_a_404(cast: dict[str, Any]) -> None:
    assert signed_in("outsider").get(PAGE).status_code == 404
    assert signed_in("outsider").get("/webhooks/").status_code == 302  # to its own team's page


@override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)
def test_the_log_shows_status_code_and_time_and_redeliver_queues_it_again(
        make_webhook: Callable[..., Any], cast: dict[str, Any]) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    with transaction.atomic():
        [delivery] = services.emit(event="version.ready", team_id=webhook.team_id, data={"model": "iris"})
    Delivery.objects.filter(pk=delivery.pk).update(state="failed", attempts=5, last_status_code=503, duration_ms=42,
                                                   last_error="HTTP 503: busy")
    engineer = signed_in("engineer")
    log = engineer.get("/webhooks/ml/deliveries/", headers=HTMX)
    assert log.status_code == 200 and log.templates[0].name == "webhooks/partials/_deliveries.html"
    row = log.content.decode()
    assert 'data-state="failed"' in row and ">503<" in row and "42 ms" in row and "HTTP 503: busy" in row
    assert f"/webhooks/ml/deliveries/{delivery.pk}/redeliver/" in row
    again = engineer.post(f"/webhooks/ml/deliveries/{delivery.pk}/redeliver/", headers=HTMX)
    assert again.status_code == 202
    fresh = Delivery.objects.exclude(pk=delivery.pk).get()
    # Due at once: the workers' senders pick it up once the request's transaction commits.
    assert fresh.key == delivery.key and fresh.state == "pending" and fresh.next_attempt_at <= timezone.now()
    assert f"Delivery {delivery.pk} queued again as delivery {fresh.pk}.".encode() in again.content
    assert f'id="delivery-{fresh.pk}" data-state="pending"'.encode() in again.content
    busy = engineer.post(f"/webhooks/ml/deliveries/{delivery.pk}/redeliver/", headers=HTMX)
    assert busy.status_code == 409
    assert f"delivery {delivery.pk} is still being tried".encode() in busy.content
    assert AuditEvent.objects.filter(action="webhook.redelivered").count() == 1


def test_a_viewer_cannot_redeliver(make_webhook: Callable[..., Any], cast: dict[str, Any]) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    with transaction.atomic():
        [delivery] = services.emit(event="version.ready", team_id=webhook.team_id, data={"model": "iris"})
    viewer = signed_in("viewer")
    assert b"/redeliver/" not in viewer.get("/webhooks/ml/deliveries/", headers=HTMX).content
    refused = viewer.post(f"/webhooks/ml/deliveries/{delivery.pk}/redeliver/", headers=HTMX)
    assert refused.status_code == 403 and Delivery.objects.count() == 1


@override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)
def test_pause_and_delete_buttons_answer_with_the_card(make_webhook: Callable[..., Any], cast: dict[str, Any]) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    engineer = signed_in("engineer")
    paused = engineer.post(f"/webhooks/ml/{webhook.pk}/pause/", headers=HTMX)
    assert paused.status_code == 200 and f"Webhook {webhook.pk} paused.".encode() in paused.content
    assert b'data-active="false"' in paused.content
    deleted = engineer.post(f"/webhooks/ml/{webhook.pk}/delete/", headers=HTMX)
    assert deleted.status_code == 200 and b"No webhooks yet." in deleted.content
    assert engineer.post(f"/webhooks/ml/{webhook.pk}/explode/", headers=HTMX).status_code == 404
