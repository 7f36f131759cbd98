"""A team's webhooks and the log of their deliveries."""

import secrets
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from webhooks.choices import DeliveryState

SECRET_PREFIX = "whsec_"


class Webhook(models.Model):
    """A receiver of a team's events. Its secret signs every delivery: it is stored (it must be,
    to sign), shown once when the webhook is created, and never again (not in the API, the
    console, the admin or the audit log)."""

    team = models.ForeignKey("console.Team", on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=500)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=100, editable=False)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.team.name}: {self.url}"

    @staticmethod
    def generate_secret() -> str:
        """A new signing secret: 256 random bits."""
        return SECRET_PREFIX + secrets.token_urlsafe(32)

    def hears(self, event: str) -> bool:
        """Whether a delivery of `event` goes to this webhook now."""
        return self.active and event in self.events

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of the webhook (never its secret)."""
        return {"team": self.team.name, "url": self.url, "events": list(self.events), "active": self.active}


class Delivery(models.Model):
    """One event for one webhook: its body, and how the attempts to deliver it went. `key` is the
    idempotency key (the `Paddock-Delivery` header): the same on every retry and on a redelivery,
    so a receiver that remembers the keys it handled can skip a repeat."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    key = models.UUIDField(default=uuid.uuid4, db_index=True)
    event = models.CharField(max_length=40)
    payload = models.JSONField(help_text="The body sent: id, event, created_at, team and the event's data.")
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # The earliest the next attempt may start; while one is in flight, the end of its lease.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="The last attempt's.")
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    redelivery_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                                      related_name="redeliveries")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["webhook", "-created_at"], name="delivery_by_webhook"),
            # What the workers' senders look for twice a second: the pending deliveries that are due.
            models.Index(fields=["next_attempt_at"], name="delivery_due", condition=models.Q(state="pending")),
            models.Index(fields=["created_at"], name="delivery_by_age"),  # beat's pruning of the old log
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.key} ({self.state})"

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of a delivery (its body stays in the log of deliveries)."""
        return {"webhook": self.webhook_id, "event": self.event, "key": str(self.key), "state": self.state,
                "attempts": self.attempts, "last_status_code": self.last_status_code}
