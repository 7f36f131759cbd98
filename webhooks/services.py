"""Every change to a team's webhooks, each in one transaction with its audit event: create (the
secret returned that once), pause or resume, delete, redeliver. And `emit`, which the domain's
verbs call inside their own transaction: one Delivery row per webhook that hears the event. The
row is the message: the workers' senders see it once that transaction commits (nothing is sent
for a change rolled back) and send it (workers/webhook_sender.py). `prune_deliveries` empties the
log of old ones."""

import json
import logging
import uuid
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from console.audit import Actor, record_event
from console.errors import Conflict, InvalidInput
from console.models import Team
from webhooks.choices import EVENTS, DeliveryState
from webhooks.models import Delivery, Webhook
from webhooks.targets import checked_target

logger = logging.getLogger(__name__)

MAX_WEBHOOKS_PER_TEAM = 20
PRUNE_BATCH = 1000  # rows deleted per statement: no long lock on the log while it is emptied


def check_events(events: Any) -> list[str]:
    """The events asked for, without repeats, in EVENTS order; InvalidInput naming an unknown one."""
    if not isinstance(events, list) or not events or not all(isinstance(event, str) for event in events):
        raise InvalidInput(f"'events' must be a non-empty list of: {', '.join(EVENTS)}")
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        raise InvalidInput(f"unknown event '{unknown[0]}': the events are {', '.join(EVENTS)}")
    return [event for event in EVENTS if event in events]


def create_webhook(*, actor: Actor, team: Team, url: Any, events: Any) -> tuple[Webhook, str]:
    """A new webhook of the team, its URL checked (docs/webhooks.md: which addresses are refused)
    before anything is stored; returns it with its secret, which is shown this once."""
    if not isinstance(url, str) or not url:
        raise InvalidInput("'url' is required: https://hooks.example.com/paddock")
    chosen = check_events(events)
    checked_target(url)
    secret = Webhook.generate_secret()
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=team.pk).first()  # two creations count one after the other
        if Webhook.objects.filter(team=team).count() >= MAX_WEBHOOKS_PER_TEAM:
            raise Conflict(f"team '{team.name}' has {MAX_WEBHOOKS_PER_TEAM} webhooks, the most it may have: "
                           "delete one first")
        webhook = Webhook.objects.create(team=team, url=url, events=chosen, secret=secret, created_by=actor.person)
        record_event(actor=actor, action="webhook.created", obj=webhook, after=webhook.snapshot())
    return webhook, secret


def set_webhook_active(*, actor: Actor, webhook: Webhook, active: bool) -> Webhook:
    """Pause (deliveries of new events stop; pending ones fail at their next attempt) or resume;
    asking for the state it is in changes nothing and records nothing."""
    with transaction.atomic():
        webhook = Webhook.objects.select_for_update().select_related("team").get(pk=webhook.pk)
        if webhook.active != active:
            before = webhook.snapshot()
            webhook.active = active
            webhook.save(update_fields=["active"])
            record_event(actor=actor, action="webhook.resumed" if active else "webhook.paused", obj=webhook,
                         before=before, after=webhook.snapshot())
    return webhook


def delete_webhook(*, actor: Actor, webhook: Webhook) -> None:
    """Remove the webhook and its log of deliveries; attempts still queued find nothing and stop."""
    with transaction.atomic():
        record_event(actor=actor, action="webhook.deleted", obj=webhook, before=webhook.snapshot())
        webhook.delete()


def redeliver(*, actor: Actor, delivery: Delivery) -> Delivery:
    """Send a delivery again: a new row of the log with its own attempts, the same body and the
    same idempotency key (a receiver that handled it can tell). Conflict while the webhook is
    paused or the delivery is still being tried."""
    with transaction.atomic():
        webhook = Webhook.objects.select_for_update().select_related("team").get(pk=delivery.webhook_id)
        if not webhook.active:
            raise Conflict(f"webhook {webhook.pk} is paused: resume it before redelivering")
        if Delivery.objects.filter(webhook=webhook, key=delivery.key, state=DeliveryState.PENDING).exists():
            raise Conflict(f"delivery {delivery.pk} is still being tried: redeliver it once it has succeeded or failed")
        again = Delivery.objects.create(webhook=webhook, key=delivery.key, event=delivery.event,
                                        payload=delivery.payload, redelivery_of=delivery)
        record_event(actor=actor, action="webhook.redelivered", obj=webhook,
                     after={"delivery": again.pk, "redelivery_of": delivery.pk, "event": delivery.event,
                            "key": str(delivery.key)})
    return again


def emit(*, event: str, team_id: int, data: dict[str, Any]) -> list[Delivery]:
    """Record `event` for every active webhook of the team that hears it. Call it inside the
    transaction of the change it tells of: each delivery is sent once that commits."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    hooks = [hook for hook in Webhook.objects.select_related("team").filter(team_id=team_id, active=True)
             if hook.hears(event)]
    if not hooks:
        return []
    body = json.loads(json.dumps(data, cls=DjangoJSONEncoder))  # dates and decimals as JSON does them
    occurred = timezone.now().isoformat()
    deliveries = []
    for hook in hooks:
        key = uuid.uuid4()
        payload = {"id": str(key), "event": event, "created_at": occurred, "team": hook.team.name, "data": body}
        deliveries.append(Delivery.objects.create(webhook=hook, key=key, event=event, payload=payload))
    return deliveries


def prune_deliveries(*, before: datetime) -> int:
    """Delete the deliveries created before `before` that have ended (succeeded or failed; one
    still pending is left to its senders), a batch at a time; how many went. Not audited: the
    audit log records people's changes to webhooks, not the log of deliveries."""
    old = Delivery.objects.filter(created_at__lt=before).exclude(state=DeliveryState.PENDING)
    removed = 0
    while batch := list(old.order_by("created_at").values_list("pk", flat=True)[:PRUNE_BATCH]):
        removed += Delivery.objects.filter(pk__in=batch).delete()[1].get(Delivery._meta.label, 0)
    if removed:
        logger.info("removed %d webhook deliveries created before %s", removed, before.isoformat())
    return removed
