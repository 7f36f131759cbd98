"""One attempt at a delivery, as the worker's task makes it (webhooks/tasks.py):

1. Read the row: a delivery gone (its webhook deleted), succeeded or failed is left alone.
2. Not due yet (a message of it came early): say how long until it is.
3. Claim the attempt with a conditional UPDATE on its count of attempts, which also leases it for
   the attempt's length: of two messages for one delivery, one makes the attempt.
4. A paused webhook fails it. The URL is checked again (webhooks/targets.py), since what its host
   resolves to may have changed since the webhook was made: a refused address fails it at once;
   a name that does not resolve is a failed attempt like any other.
5. Sign the body with the time now and POST it to the address just checked (webhooks/sending.py).
6. Record the outcome: succeeded on a 2xx; otherwise failed once out of attempts
   (PADDOCK_WEBHOOK_MAX_ATTEMPTS), else pending until the backoff ends (1, 2, 4, ... s, at most
   PADDOCK_WEBHOOK_BACKOFF_MAX_SECONDS), when the task tries again."""

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from webhooks.choices import DeliveryState
from webhooks.models import Delivery
from webhooks.sending import Answer, post
from webhooks.signing import signature_header
from webhooks.targets import TargetRefused, TargetUnresolved, checked_target

logger = logging.getLogger(__name__)

USER_AGENT = "Paddock-Webhooks/1"
LEASE_MARGIN_SECONDS = 30  # past the timeout, before another message may take over a claimed attempt
EARLY = timedelta(seconds=1)  # a message this much before its time (clocks of two hosts) still runs


@dataclass(frozen=True)
class Outcome:
    """What one run of the task did: the delivery's state, and in how many seconds to run again
    (None: not again)."""

    state: str
    retry_in: float | None = None


def backoff_seconds(attempts: int) -> float:
    """The wait after the `attempts`-th failed attempt: 1, 2, 4, ... seconds, capped."""
    return float(min(2 ** min(attempts - 1, 30), settings.PADDOCK_WEBHOOK_BACKOFF_MAX_SECONDS))


def body_of(delivery: Delivery) -> bytes:
    """The bytes sent (and signed): the payload as compact JSON, keys sorted, the same every attempt."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def headers_for(delivery: Delivery, secret: str, body: bytes, attempt: int) -> dict[str, str]:
    """The headers of one attempt; the signature is made now, so each attempt carries its own time."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Paddock-Event": delivery.event,
            "Paddock-Delivery": str(delivery.key), "Paddock-Attempt": str(attempt),
            "Paddock-Signature": signature_header(secret, body)}


def attempt_delivery(delivery_id: int) -> Outcome:
    """Make the delivery's next attempt if it is due and nobody else is making it (steps above)."""
    delivery = Delivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None:
        return Outcome("gone")
    if delivery.state != DeliveryState.PENDING:
        return Outcome(delivery.state)
    now = timezone.now()
    if delivery.next_attempt_at > now + EARLY:
        return Outcome("not due", retry_in=(delivery.next_attempt_at - now).total_seconds())
    timeout = settings.PADDOCK_WEBHOOK_TIMEOUT_SECONDS
    attempt = delivery.attempts + 1
    lease = now + timedelta(seconds=timeout + LEASE_MARGIN_SECONDS)
    if not Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING, attempts=delivery.attempts).update(
            attempts=attempt, last_attempt_at=now, next_attempt_at=lease):
        return Outcome("claimed by another run")
    webhook = delivery.webhook
    if not webhook.active:
        return _record(delivery, attempt, Answer(None, "the webhook is paused", 0), last=True)
    try:
        target = checked_target(webhook.url)
    except TargetRefused as exc:
        return _record(delivery, attempt, Answer(None, exc.message, 0), last=True)
    except TargetUnresolved as exc:
        answer = Answer(None, exc.message, 0)
    else:
        body = body_of(delivery)
        answer = post(target, body, headers_for(delivery, webhook.secret, body, attempt), timeout=timeout)
    return _record(delivery, attempt, answer, last=attempt >= settings.PADDOCK_WEBHOOK_MAX_ATTEMPTS)


def _record(delivery: Delivery, attempt: int, answer: Answer, *, last: bool) -> Outcome:
    now = timezone.now()
    if answer.ok:
        state, retry_in = DeliveryState.SUCCEEDED, None
    elif last:
        state, retry_in = DeliveryState.FAILED, None
    else:
        state, retry_in = DeliveryState.PENDING, backoff_seconds(attempt)
    recorded = Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING, attempts=attempt).update(
        state=state, last_status_code=answer.status, last_error=answer.error[:500], duration_ms=answer.duration_ms,
        next_attempt_at=now + timedelta(seconds=retry_in or 0), finished_at=None if retry_in else now)
    logger.info("webhook delivery %s (%s) attempt %d: %s%s", delivery.pk, delivery.event, attempt,
                answer.status or "no answer", f" ({answer.error})" if answer.error else "")
    if not recorded:
        return Outcome("gone")  # the webhook was deleted meanwhile
    return Outcome(state, retry_in)
