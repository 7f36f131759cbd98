"""The events a webhook may subscribe to, and a delivery's states."""

from django.db import models

# Every event a webhook hears, in the order the docs list them (docs/webhooks.md: each payload).
EVENTS = [
    "version.ready",
    "version.failed",
    "alias.moved",
    "deployment.changed",
    "rollout.step",
    "rollout.awaiting_approval",
    "rollout.promoted",
    "rollout.rolled_back",
]


class DeliveryState(models.TextChoices):
    """pending while it has attempts left; then succeeded (a 2xx) or failed (out of attempts, or refused)."""

    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
