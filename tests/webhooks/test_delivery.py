"""One attempt at a delivery, in-process, against a real HTTP receiver on 127.0.0.1: what is
sent (headers, signature, body), what is recorded, the backoff, every way an attempt fails, the
claim and its lease, which deliveries are due, and beat's pruning of the log."""

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
from webhooks.choices import DeliveryState
from webhooks.delivery import Outcome, backoff_seconds, claim_attempt, due_targets, make_attempt, next_due
from webhooks.models import Delivery
from webhooks.sending import post
from webhooks.targets import Target

pytestmark = pytest.mark.django_db
ALLOWED = override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True)


def attempt_delivery(delivery_id: int) -> Outcome:
    """The delivery's next attempt now, if it is due and nobody else is making it: what a sender
    thread does for one delivery (workers/webhook_sender.py), without its dispatcher."""
    delivery = Delivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None:
        return Outcome("gone")
    if delivery.state != DeliveryState.PENDING:
        return Outcome(delivery.state)
    now = timezone.now()
    if delivery.next_attempt_at > now:
        return Outcome("not due", retry_in=(delivery.next_attempt_at - now).total_seconds())
    claim = claim_attempt(delivery, now)
    if claim is None:
        return Outcome("claimed by another sender")
    return make_attempt(claim)


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
        make_webhook: Callable[..., Any], cast: dict[str, Any]) -> None:
    from console.audit import Actor

    hears, _ = make_webhook("http://127.0.0.1:9/a", ["alias.moved"])
    deaf, _ = make_webhook("http://127.0.0.1:9/b", ["version.ready"])
    paused, _ = make_webhook("http://127.0.0.1:9/c", ["alias.moved"])
    services.set_webhook_active(actor=Actor(user=cast["engineer"]), webhook=paused, active=False)
    others, _ = make_webhook("http://127.0.0.1:9/d", ["alias.moved"], team="other")
    with transaction.atomic():
        deliveries = services.emit(event="alias.moved", team_id=hears.team_id, data={"model": "iris"})
    assert [d.webhook_id for d in deliveries] == [hears.pk]
    # Due at once: the row is the message, which the workers' senders see once the transaction commits.
    assert deliveries[0].state == "pending" and deliveries[0].next_attempt_at <= timezone.now()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.emit(event="alias.moved", team_id=hears.team_id, data={"model": "iris"})
        raise RuntimeError("the change is rolled back")
    assert Delivery.objects.count() == 1  # nothing of the rolled-back change is left to send
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


def test_an_attempt_whose_sender_died_is_made_again_once_its_lease_lapses(make_webhook: Callable[..., Any]) -> None:
    with ALLOWED, running([200]) as receiver:
        webhook, _ = make_webhook(receiver.url)
        delivery = emitted(webhook.team_id)
        claim = claim_attempt(delivery)  # attempt 1, claimed by a sender that then died: never sent, never recorded
        assert claim is not None and claim.attempt == 1
        assert claim_attempt(delivery) is None  # nobody else makes attempt 1
        leased = Delivery.objects.get(pk=delivery.pk)
        assert leased.next_attempt_at > timezone.now() + timedelta(seconds=30)  # leased: timeout + 30 s
        assert due_targets(timezone.now()) == []
        lapsed = leased.next_attempt_at + timedelta(milliseconds=1)
        assert [t.webhook_id for t in due_targets(lapsed)] == [webhook.pk]  # due again once the lease lapses
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # the lease has lapsed
        assert attempt_delivery(delivery.pk).state == "succeeded"
    assert [r.headers["Paddock-Attempt"] for r in receiver.received] == ["2"]
    assert receiver.received[0].headers["Paddock-Delivery"] == str(delivery.key)
    assert Delivery.objects.get(pk=delivery.pk).attempts == 2


def test_a_late_outcome_of_an_attempt_another_sender_took_over_is_not_recorded(
        make_webhook: Callable[..., Any]) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    delivery = emitted(webhook.team_id)
    first = claim_attempt(delivery)
    assert first is not None
    second = claim_attempt(Delivery.objects.select_related("webhook").get(pk=delivery.pk))  # after the lease lapsed
    assert second is not None and second.attempt == 2
    with ALLOWED:
        assert make_attempt(first).state == "gone"  # port 9 refuses: a failure, but attempt 1 is no longer the row's
    row = Delivery.objects.get(pk=delivery.pk)
    assert (row.attempts, row.last_error, row.duration_ms) == (2, "", None)


def test_the_due_list_has_one_row_per_target_the_longest_waiting_first(make_webhook: Callable[..., Any]) -> None:
    busy, _ = make_webhook("http://127.0.0.1:9/busy")
    quiet, _ = make_webhook("http://127.0.0.1:9/quiet", team="other")
    backlog = [emitted(busy.team_id) for _ in range(5)]  # a backlog of five on one target
    Delivery.objects.filter(pk__in=[d.pk for d in backlog]).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    [other] = services.emit(event="alias.moved", team_id=quiet.team_id, data={})
    targets = due_targets(timezone.now())
    assert [(t.webhook_id, t.team_id) for t in targets] == [(busy.pk, busy.team_id), (quiet.pk, quiet.team_id)]
    assert due_targets(timezone.now(), exclude=[busy.pk])[0].webhook_id == quiet.pk
    first, only = next_due(busy.pk, timezone.now()), next_due(quiet.pk, timezone.now())
    assert first is not None and first.pk == backlog[0].pk  # oldest first: the order they were emitted in
    assert only is not None and only.pk == other.pk


def test_pruning_removes_ended_deliveries_older_than_the_retention_and_keeps_the_rest(
        make_webhook: Callable[..., Any]) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook")
    old_ok, old_failed, old_pending, recent = (emitted(webhook.team_id) for _ in range(4))
    month_ago = timezone.now() - timedelta(days=31)
    Delivery.objects.filter(pk=old_ok.pk).update(state="succeeded", created_at=month_ago)
    Delivery.objects.filter(pk=old_failed.pk).update(state="failed", created_at=month_ago)
    Delivery.objects.filter(pk=old_pending.pk).update(created_at=month_ago)  # still being tried: its senders' to end
    Delivery.objects.filter(pk=recent.pk).update(state="succeeded", created_at=timezone.now() - timedelta(days=29))
    again = Delivery.objects.create(webhook=webhook, key=old_ok.key, event=old_ok.event, payload=old_ok.payload,
                                    redelivery_of=old_ok)
    assert tasks.prune_webhook_deliveries() == 2  # PADDOCK_WEBHOOK_DELIVERY_RETENTION_DAYS: 30
    assert set(Delivery.objects.values_list("pk", flat=True)) == {old_pending.pk, recent.pk, again.pk}
    again.refresh_from_db()
    assert again.redelivery_of is None and again.key == old_ok.key  # the redelivery stays, its key with it
    with override_settings(PADDOCK_WEBHOOK_DELIVERY_RETENTION_DAYS=1):
        assert tasks.prune_webhook_deliveries() == 1 and not Delivery.objects.filter(pk=recent.pk).exists()
