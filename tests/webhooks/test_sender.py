"""The worker's webhook sender, its dispatch rules run in-process on the real PostgreSQL and Redis
(rounds of `dispatch` and `run` called by the test, so the rows stay in its transaction): a free
sender goes to the team with the fewest attempts in flight and a team takes at most half of them;
a target has one attempt in flight at a time, across workers, and its deliveries go in order.
The threads themselves, in a real worker: test_worker.py and tests/reliability/test_webhooks_on_make_run.py."""

import queue
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from tests.webhooks.receiver import running
from webhooks.models import Delivery, Webhook
from workers.webhook_sender import Job, WebhookSender, target_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def sender_of() -> Iterator[Callable[[int], WebhookSender]]:
    """A sender with `n` senders whose threads are never started: the test runs its rounds."""
    yield WebhookSender
    keys = [target_key(pk) for pk in Webhook.objects.values_list("pk", flat=True)]
    if keys:
        redis.Redis.from_url(settings.REDIS_URL).delete(*keys)


def emitted(webhook: Webhook, minutes_ago: int = 0) -> Delivery:
    """A delivery to `webhook` alone (emit would reach each webhook of its team), due `minutes_ago`."""
    return Delivery.objects.create(webhook=webhook, event="alias.moved", payload={"n": minutes_ago},
                                   next_attempt_at=timezone.now() - timedelta(minutes=minutes_ago))


def handed(sender: WebhookSender) -> list[Job]:
    """The attempts the last rounds handed to the sender threads."""
    jobs: list[Job] = []
    while True:
        try:
            job = sender.jobs.get_nowait()
        except queue.Empty:
            return jobs
        assert job is not None
        jobs.append(job)


@pytest.mark.parametrize(("senders", "expected"), [(1, {"ml": 1}), (2, {"ml": 1, "other": 1}),
                                                   (4, {"ml": 2, "other": 1})])
def test_a_free_sender_goes_to_the_team_with_the_fewest_in_flight_and_a_team_takes_at_most_half(
        make_webhook: Callable[..., Any], sender_of: Callable[[int], WebhookSender], teams: dict[str, Any],
        senders: int, expected: dict[str, int]) -> None:
    mine = [make_webhook(f"http://127.0.0.1:9/{n}", ["alias.moved"])[0] for n in range(3)]
    theirs, _ = make_webhook("http://127.0.0.1:9/theirs", ["alias.moved"], team="other")
    oldest = [emitted(webhook, minutes_ago=10 - n) for n, webhook in enumerate(mine)]  # team ml's waited longest
    emitted(theirs)
    sender = sender_of(senders)
    assert sender.dispatch() == sum(expected.values())
    jobs = handed(sender)
    names = {teams["ml"].pk: "ml", teams["other"].pk: "other"}
    assert Counter(names[job.team_id] for job in jobs) == expected
    ml_jobs = [job.claim.delivery.pk for job in jobs if job.team_id == teams["ml"].pk]
    assert ml_jobs == [d.pk for d in oldest[:expected["ml"]]]  # the longest waiting of the team first
    assert all(job.claim.attempt == 1 for job in jobs)
    assert sender.dispatch() == 0  # every sender is busy (or the rest belong to a team at its share)


def test_a_target_has_one_attempt_in_flight_at_a_time_and_its_deliveries_go_in_order(
        make_webhook: Callable[..., Any], sender_of: Callable[[int], WebhookSender]) -> None:
    with override_settings(PADDOCK_WEBHOOK_ALLOW_PRIVATE=True), running([200]) as receiver:
        webhook, _ = make_webhook(receiver.url, ["alias.moved"])
        deliveries = [emitted(webhook, minutes_ago=3 - n) for n in range(3)]
        sender = sender_of(2)
        for delivery in deliveries:
            assert sender.dispatch() == 1
            assert sender.dispatch() == 0  # a sender is free, but this target's attempt is still in flight
            [job] = handed(sender)
            assert job.claim.delivery.pk == delivery.pk
            sender.run(job)  # sent, recorded, the target freed
        assert sender.dispatch() == 0 and sender.in_flight == {}
    assert [r.headers["Paddock-Delivery"] for r in receiver.received] == [str(d.key) for d in deliveries]
    assert set(Delivery.objects.values_list("state", flat=True)) == {"succeeded"}


def test_a_target_another_worker_is_sending_to_waits_for_it(
        make_webhook: Callable[..., Any], sender_of: Callable[[int], WebhookSender]) -> None:
    webhook, _ = make_webhook("http://127.0.0.1:9/hook", ["alias.moved"])
    delivery = emitted(webhook)
    elsewhere = redis.Redis.from_url(settings.REDIS_URL)
    elsewhere.set(target_key(webhook.pk), "another-worker", px=60_000)  # that worker's attempt is in flight
    sender = sender_of(2)
    assert sender.dispatch() == 0 and Delivery.objects.get(pk=delivery.pk).attempts == 0
    elsewhere.delete(target_key(webhook.pk))  # recorded there
    assert sender.dispatch() == 1
    [job] = handed(sender)
    assert elsewhere.get(target_key(webhook.pk)) == job.token.encode()  # now this worker's, expiring with the lease
    assert 0 < elsewhere.pttl(target_key(webhook.pk)) <= 35_000
    sender.unlock(webhook.pk, "not-this-attempt")
    assert elsewhere.exists(target_key(webhook.pk))  # only the attempt that holds the lock releases it


def test_stopping_with_nothing_in_flight_ends_every_thread(sender_of: Callable[[int], WebhookSender]) -> None:
    sender = sender_of(3)
    sender.start()
    assert sender.dispatcher is not None and len(sender.threads) == 3
    sender.stop()
    assert not sender.dispatcher.is_alive() and not any(thread.is_alive() for thread in sender.threads)
