"""The webhooks' Celery tasks: one attempt at a delivery, again after a backoff while it fails
(webhooks/delivery.py has the steps), queued on commit by webhooks.services; and beat's re-queue
of deliveries whose message was lost."""

import contextlib
import time
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.db import DatabaseError, connection
from django.utils import timezone

from console.tasks import skipped_while_database_down
from serving.v2.outage import DATABASE_DOWN
from webhooks.choices import DeliveryState
from webhooks.delivery import attempt_delivery
from webhooks.models import Delivery

DATABASE_RETRY_SECONDS = 5.0
STALE_AFTER = timedelta(minutes=1)  # past its time with no attempt made: its message is lost


@shared_task(name="webhooks.tasks.deliver_webhook", bind=True, acks_late=True, max_retries=None, ignore_result=True)
def deliver_webhook(self: Any, delivery_id: int) -> str:
    """Make the delivery's next attempt; while it fails with attempts left, run again after the
    backoff (the attempts are counted in its row, not by Celery). Idempotent: an attempt is
    claimed before it is made, and a delivery already ended is left alone."""
    try:
        outcome = attempt_delivery(delivery_id)
    except DATABASE_DOWN:
        with contextlib.suppress(DatabaseError):
            connection.close()  # the next run reconnects
        raise self.retry(countdown=DATABASE_RETRY_SECONDS) from None
    if outcome.retry_in is None:
        return outcome.state
    if self.request.is_eager:
        time.sleep(outcome.retry_in)  # eager mode (tests, development) runs a retry at once, whatever its countdown
    raise self.retry(countdown=outcome.retry_in)



@shared_task(name="webhooks.tasks.requeue_stale_deliveries", ignore_result=True)
@skipped_while_database_down
def requeue_stale_deliveries() -> int:
    """Queue again the pending deliveries a minute past their time: their message was lost (the
    broker was down when it was queued, or a worker died holding a retry). A second message for
    one delivery is harmless: each attempt is claimed before it is made."""
    stale = list(Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lt=timezone.now() - STALE_AFTER)
                 .order_by("next_attempt_at").values_list("pk", flat=True)[:1000])
    for delivery_id in stale:
        deliver_webhook.delay(delivery_id)
    return len(stale)
