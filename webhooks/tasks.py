"""The webhooks' beat task: removing old deliveries from the log. Deliveries themselves are not
Celery tasks: each worker's sender threads pick the due ones from the database
(workers/webhook_sender.py), so a slow receiver never holds the control queue."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from console.tasks import skipped_while_database_down
from webhooks.services import prune_deliveries


@shared_task(name="webhooks.tasks.prune_webhook_deliveries", ignore_result=True)
@skipped_while_database_down
def prune_webhook_deliveries() -> int:
    """Hourly: remove the ended deliveries older than PADDOCK_WEBHOOK_DELIVERY_RETENTION_DAYS."""
    before = timezone.now() - timedelta(days=settings.PADDOCK_WEBHOOK_DELIVERY_RETENTION_DAYS)
    return prune_deliveries(before=before)
