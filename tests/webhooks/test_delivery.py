"""One attempt at a delivery, in-process, against a real HTTP receiver on 127.0.0.1: what is
sent (headers, signature, body), what is recorded, the backoff, and every way an attempt fails."""

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from tests.webhooks.receiver import running
from webhooks import services, signing, tasks
from webhooks.delivery import attempt_delivery, backoff_seconds
from webhooks.models import Delivery
from webhooks.sending import post
from webhooks.targets import Target

pytestmark = pytest.mark.django_db
ALLOWED = override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)


def emitted(team_id: int, event: str = "alias.moved") -> Delivery:
    with transaction.atomic():
        [delivery] = services.emit(event=event, team_id=team_id, data={"model": "iris", "alias": "champion",
                                                                        "version": 2, "previous_version": 1})
    return delivery


@ALLOWED
def test_a_delivery_is_signed_posted_and_logged(make_webhook: Callable[..., Any]) -> None:
    with running([204]) as receiver:
        webhook, secret = make_webhook(receiver.url)
        delivery = emitted(webhook.team_id)
        outcome = attempt_delivery(delivery.pk)
    assert (outcome.state, outcome.retry_in) == ("succeeded", None)
    [request] = receiver.received
    assert request.path == "/hooks/paddock"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Paddock-Event"] == "alias.moved"
    assert request.headers["Paddock-Delivery"] == str(delivery.key)
    assert request.headers["Paddock-Attempt"] == "1"
    assert request.headers["Host"] == receiver.url.split("/")[2]
    assert signing.verify(secret, request.headers["Paddock-Signature"], request.body)
    body = json.loads(request.body)
    assert body == {"id": str(delivery.key), "event": "alias.moved", "team": "ml", "created_at": body["created_at"],
                    "data": {"model": "iris", "alias": "champion", "version": 2, "previous_version": 1}}
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "succeeded", 1, 204, "")
    assert delivery.duration_ms is not None and delivery.finished_at is not None


@ALLOWED
@override_settings(PADDOCK_WEBHOOK_MAX_ATTEMPTS=3)
def test_a_failing_receiver_is_tried_again_after_1_then_2_seconds_then_the_delivery_fails(
        make_webhook: Callable[..., Any]) -> None:
    with running([500]) as receiver:
        webhook, _ = make_webhook(receiver.url)
        delivery = emitted(webhook.team_id)
        waits = []
        for _ in range(3):
            Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # the backoff has passed
            waits.append(attempt_delivery(delivery.pk).retry_in)
    assert waits == [1.0, 2.0, None]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("failed", 3, 500)
    assert delivery.last_error == "HTTP 500: receiver says no"
    assert [r.headers["Paddock-Attempt"] for r in receiver.received] == ["1", "2", "3"]
    assert {r.headers["Paddock-Delivery"] for r in receiver.received} == {str(delivery.key)}
    assert attempt_delivery(delivery.pk).state == "failed"  # ended: a late message changes nothing
    assert len(receiver.received) == 3


@override_settings(PADDOCK_WEBHOOK_BACKOFF_MAX_SECONDS=10)
def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_seconds(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff_seconds(500) == 10


@ALLOWED
def test_an_attempt_that_is_not_due_waits_for_its_time(make_webhook: Callable[..., Any]) -> None:
    with running([200]) as receiver:
        webhook, _ = make_webhook(receiver.url)
        delivery = emitted(webhook.team_id)
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=30))
        outcome = attempt_delivery(delivery.pk)
    assert outcome.state == "not due" and outcome.retry_in is not None and 28 < outcome.retry_in <= 30
    assert receiver.received == [] and Delivery.objects.get(pk=delivery.pk).attempts == 0


@ALLOWED
def test_redirects_are_not_followed(make_webhook: Callable[..., Any]) -> None:
    with running([200]) as elsewhere, running([302], location=elsewhere.url) as receiver:
        webhook, _ = make_webhook(receiver.url)
        delivery = emitted(webhook.team_id)
        assert attempt_delivery(delivery.pk).retry_in == 1.0
    delivery.refresh_from_db()
    assert delivery.last_status_code == 302
    assert delivery.last_error == f"HTTP 302: redirects are not followed (Location: {elsewhere.url})"
    assert elsewhere.received == []


@ALLOWED
@override_settings(PADDOCK_WEBHOOK_TIMEOUT_SECONDS=0.5)
def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(make_webhook: Callable[..., Any]) -> None:
    with running([200], delay=2.0) as receiver:
        webhook, _ = make_webhook(receiver.url)
        delivery = emitted(webhook.team_id)
        assert attempt_delivery(delivery.pk).retry_in == 1.0
    delivery.refresh_from_db()
    assert delivery.last_error == "no answer within 0.5 s" and delivery.last_status_code is None
    assert delivery.duration_ms is not None  # cut at the timeout (its message), not the receiver's 2 s


@ALLOWED
def test_a_closed_port_is_a_failed_attempt_that_is_retried(make_webhook: Callable[..., Any]) -> None:
    with running([200]) as receiver:
        url = receiver.url
    webhook, _ = make_webhook(url)  # the receiver has gone: its port refuses connections
    delivery = emitted(webhook.team_id)
    assert attempt_delivery(delivery.pk).retry_in == 1.0
    delivery.refresh_from_db()
    port = url.split(":")[2].split("/")[0]
    assert delivery.last_error == f"127.0.0.1 refused the connection on port {port}"


def test_a_target_refused_at_delivery_time_fails_at_once(make_webhook: Callable[..., Any]) -> None:
    with running([200]) as receiver:
        webhook, _ = make_webhook(receiver.url)  # allowed then; the operator has since turned it off
        delivery = emitted(webhook.team_id)
        outcome = attempt_delivery(delivery.pk)
    assert (outcome.state, outcome.retry_in) == ("failed", None)
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.last_error == (
        "webhook target 127.0.0.1 is a loopback address; set PADDOCK_WEBHOOK_ALLOW_PRIVATE=1 to allow it")
    assert receiver.received == []


@ALLOWED
def test_a_paused_webhook_fails_what_is_pending(make_webhook: Callable[..., Any], cast: dict[str, Any]) -> None:
    from console.audit import Actor

    with running([200]) as receiver:
        webhook, _ = make_webhook(receiver.url)
        delivery = emitted(webhook.team_id)
        services.set_webhook_active(actor=Actor(user=cast["engineer"]), webhook=webhook, active=False)
        assert attempt_delivery(delivery.pk).state == "failed"
    assert Delivery.objects.get(pk=delivery.pk).last_error == "the webhook is paused" and receiver.received == []


def test_a_delivery_of_a_deleted_webhook_is_gone(make_webhook: Callable[..., Any], cast: dict[str, Any]) -> None:
    from console.audit import Actor

    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    delivery = emitted(webhook.team_id)
    services.delete_webhook(actor=Actor(user=cast["engineer"]), webhook=webhook)
    assert attempt_delivery(delivery.pk).state == "gone"


def test_emit_reaches_the_active_webhooks_of_the_team_that_hear_the_event(
        make_webhook: Callable[..., Any], cast: dict[str, Any],
        django_capture_on_commit_callbacks: Any) -> None:
    from console.audit import Actor

    hears, _ = make_webhook("http://127.0.0.1:9/a", ["alias.moved"])
    deaf, _ = make_webhook("http://127.0.0.1:9/b", ["version.ready"])
    paused, _ = make_webhook("http://127.0.0.1:9/c", ["alias.moved"])
    services.set_webhook_active(actor=Actor(user=cast["engineer"]), webhook=paused, active=False)
    others, _ = make_webhook("http://127.0.0.1:9/d", ["alias.moved"], team="other")
    with django_capture_on_commit_callbacks() as queued:
        with transaction.atomic():
            deliveries = services.emit(event="alias.moved", team_id=hears.team_id, data={"model": "iris"})
    assert [d.webhook_id for d in deliveries] == [hears.pk]
    assert len(queued) == 1  # its task, queued on commit
    with django_capture_on_commit_callbacks() as queued:
        with pytest.raises(RuntimeError), transaction.atomic():
            services.emit(event="alias.moved", team_id=hears.team_id, data={"model": "iris"})
            raise RuntimeError("the change is rolled back")
    assert queued == [] and Delivery.objects.count() == 1
    with pytest.raises(ValueError, match="unknown webhook event 'model.deleted'"):
        services.emit(event="model.deleted", team_id=hears.team_id, data={})


def test_an_attempt_connects_to_the_address_checked_and_never_resolves_the_name_again() -> None:
    with running([200]) as receiver:
        port = int(receiver.url.split(":")[2].split("/")[0])
        # A name no resolver knows: had the attempt resolved it again (DNS rebinding), it would fail.
        target = Target(scheme="http", host="hooks.paddock.invalid", port=port, path="/hooks/paddock",
                        addresses=("127.0.0.1",))
        answer = post(target, b"{}", {"Content-Type": "application/json"}, timeout=5)
    assert answer.ok and answer.status == 200
    assert receiver.received[0].headers["Host"] == f"hooks.paddock.invalid:{port}"


def test_beat_queues_again_the_deliveries_whose_message_was_lost(
        make_webhook: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    lost, waiting, done = (emitted(webhook.team_id) for _ in range(3))
    Delivery.objects.filter(pk=lost.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    Delivery.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=30))
    Delivery.objects.filter(pk=done.pk).update(state="succeeded", next_attempt_at=timezone.now() - timedelta(hours=1))
    queued: list[int] = []
    monkeypatch.setattr(tasks.deliver_webhook, "delay", queued.append)
    assert tasks.requeue_stale_deliveries() == 1 and queued == [lost.pk]
