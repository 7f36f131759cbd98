"""The audit chain's state, as the console shows it: the result of the last check, and the verb
that checks it now (`verify_chain_now`, the audit page's "Verify now").

A check walks the whole chain with `console.audit.first_broken_link` (the verifier
`manage.py verify_audit` uses), in the request: 10,000 events take about 0.3 s (28 µs an event,
measured on the suite's PostgreSQL), so a chain of a million events would take about half a minute
and wants `manage.py verify_audit` instead. Its result is kept as an event of the log itself,
`audit.verified`, whose `after` holds it: no table or cache of its own, and the record of who
checked, when, and what they found is chained like every other event."""

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from console.audit import Actor, first_broken_link, record_event
from console.models import AuditEvent

VERIFIED = "audit.verified"


@dataclass(frozen=True)
class ChainState:
    """One check's result: intact up to event `up_to`, or broken at event `broken_at` and why."""

    intact: bool
    up_to: int | None  # the newest event when the check began (None: the log was empty)
    events: int  # how many events the check covered
    broken_at: int | None
    reason: str
    seconds: float
    checked_at: datetime
    checked_by: str
    event_id: int  # the audit.verified event that records the check

    @classmethod
    def of(cls, event: AuditEvent) -> "ChainState":
        """The result an `audit.verified` event records."""
        found: dict[str, Any] = event.after or {}
        return cls(intact=bool(found.get("intact")), up_to=found.get("up_to"), events=int(found.get("events", 0)),
                   broken_at=found.get("broken_at"), reason=str(found.get("reason", "")),
                   seconds=float(found.get("seconds", 0)), checked_at=event.created_at,
                   checked_by=event.actor_label, event_id=event.pk)


def last_verification() -> ChainState | None:
    """The latest check made from the console, None before the first."""
    event = AuditEvent.objects.filter(action=VERIFIED).order_by("-id").first()
    return ChainState.of(event) if event is not None else None


def events_since(state: ChainState) -> int:
    """How many events were written after the check was recorded (not covered by it)."""
    return AuditEvent.objects.filter(pk__gt=state.event_id).count()


def verify_chain_now(*, actor: Actor) -> ChainState:
    """Check the whole chain and record the result as `audit.verified`.

    1. Note the chain's head: a check that finds every link whole vouches for the events up to it
       (events written meanwhile are walked too, but are not claimed).
    2. Walk the chain from its first event, with every anchor (first_broken_link).
    3. Record the result, chained after whatever was written meanwhile."""
    head = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    started = time.monotonic()
    broken = first_broken_link()
    seconds = round(time.monotonic() - started, 3)
    result: dict[str, Any] = {
        "intact": broken is None, "up_to": head, "seconds": seconds,
        "events": AuditEvent.objects.filter(pk__lte=head).count() if head is not None else 0,
    }
    if broken is not None:
        result["broken_at"], result["reason"] = broken
    with transaction.atomic():
        event = record_event(actor=actor, action=VERIFIED, object_type="console.auditevent",
                             object_id=str(head or ""), after=result)
    return ChainState.of(event)
