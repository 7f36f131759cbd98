"""The Celery app, configured from Django settings (namespace CELERY_)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("paddock")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from workers.bootsteps import BatcherStep, WebhookSenderStep  # noqa: E402

app.steps["worker"].add(BatcherStep)
app.steps["worker"].add(WebhookSenderStep)  # webhook deliveries: threads beside the pool, never on it
