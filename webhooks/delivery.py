"""One attempt at a delivery, as a worker's sender thread makes it (workers/webhook_sender.py):

1. Read the row: a delivery gone (its webhook deleted), succeeded or failed is left alone.
2. Not due yet: say how long until it is.
3. Claim the attempt with a conditional UPDATE on its count of attempts, which also leases it for
   the attempt's length (its next_attempt_at becomes the lease's end): of two senders, in one
   worker or two, one makes the attempt. A sender that dies mid-attempt leaves the row pending;
   once the lease lapses the row is due again and the next attempt is made by whoever claims it.
4. A paused webhook fails it. The URL is checked again (webhooks/targets.py), since what its host
   resolves to may have changed since the webhook was made: a refused address fails it at once;
   a name that does not resolve is a failed attempt like any other.
5. Sign the body with the time now and POST it to the address just checked (webhooks/sending.py).
6. Record the outcome: succeeded on a 2xx; otherwise failed once out of attempts
   (PADDOCK_WEBHOOK_MAX_ATTEMPTS), else pending until the backoff ends (1, 2, 4, ... s, at most
   PADDOCK_WEBHOOK_BACKOFF_MAX_SECONDS), when it is due again.

Which due delivery a sender takes next (one per target, fairly between teams) is `due_targets`
and `next_due` here, chosen by the sender."""

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Min
from django.utils import timezone

from webhooks.choices import DeliveryState
from webhooks.models import Delivery
from webhooks.sending import Answer, post
from webhooks.signing import signature_header
from webhooks.targets import TargetRefused, TargetUnresolved, checked_target

logger = logging.getLogger(__name__)

USER_AGENT = "Paddock-Webhooks/1"
LEASE_MARGIN_SECONDS = 30  # past the timeout, before another sender may take over a claimed attempt


@dataclass(frozen=True)
class Outcome:
    """What one try did: the delivery's state, and in how many seconds it is due again (None: not again)."""

    state: str
    retry_in: float | None = None


@dataclass(frozen=True)
class Claim:
    """An attempt this sender holds: the delivery as read when it was claimed, and the attempt's number."""

    delivery: Delivery
    attempt: int


@dataclass(frozen=True)
class DueTarget:
    """A webhook with at least one delivery due: its team, and since when the oldest has been due."""

    webhook_id: int
    team_id: int
    due: datetime


def backoff_seconds(attempts: int) -> float:
    """The wait after the `attempts`-th failed attempt: 1, 2, 4, ... seconds, capped."""
    return float(min(2 ** min(attempts - 1, 30), settings.PADDOCK_WEBHOOK_BACKOFF_MAX_SECONDS))


def lease_seconds() -> float:
    """How long a claimed attempt is its sender's: the whole attempt, then a margin to record it."""
    return float(settings.PADDOCK_WEBHOOK_TIMEOUT_SECONDS) + LEASE_MARGIN_SECONDS


def body_of(delivery: Delivery) -> bytes:
    """The bytes sent (and signed): the payload as compact JSON, keys sorted, the same every attempt."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def headers_for(delivery: Delivery, secret: str, body: bytes, attempt: int) -> dict[str, str]:
    """The headers of one attempt; the signature is made now, so each attempt carries its own time."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Paddock-Event": delivery.event,
            "Paddock-Delivery": str(delivery.key), "Paddock-Attempt": str(attempt),
            "Paddock-Signature": signature_header(secret, body)}


def due_targets(now: datetime, *, exclude: Any = (), limit: int = 200) -> list[DueTarget]:
    """The webhooks with a delivery due, each once, the longest waiting first (but those in `exclude`):
    one row per target, so that one target's backlog cannot fill the list and hide the others."""
    rows = (Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
            .exclude(webhook_id__in=list(exclude))
            .values("webhook_id", "webhook__team_id").annotate(due=Min("next_attempt_at")).order_by("due")[:limit])
    return [DueTarget(row["webhook_id"], row["webhook__team_id"], row["due"]) for row in rows]


def next_due(webhook_id: int, now: datetime) -> Delivery | None:
    """The webhook's delivery that has waited longest among those due (the order they were emitted in)."""
    return (Delivery.objects.select_related("webhook")
            .filter(webhook_id=webhook_id, state=DeliveryState.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id").first())


def claim_attempt(delivery: Delivery, now: datetime | None = None) -> Claim | None:
    """Take the delivery's next attempt (step 3), leased until it is recorded; None when another
    sender took it first, or it has ended since it was read."""
    now = now or timezone.now()
    attempt = delivery.attempts + 1
    lease = now + timedelta(seconds=lease_seconds())
    if not Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING, attempts=delivery.attempts).update(
            attempts=attempt, last_attempt_at=now, next_attempt_at=lease):
        return None
    return Claim(delivery, attempt)


def make_attempt(claim: Claim) -> Outcome:
    """Send a claimed attempt and record how it went (steps 4-6)."""
    delivery, attempt = claim.delivery, claim.attempt
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
        answer = post(target, body, headers_for(delivery, webhook.secret, body, attempt),
                      timeout=settings.PADDOCK_WEBHOOK_TIMEOUT_SECONDS)
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
        return Outcome("gone")  # the webhook was deleted meanwhile, or the lease lapsed and another took over
    return Outcome(state, retry_in)
