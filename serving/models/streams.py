"""Stream bindings: a model scoring the events of a Redis Stream (workers/streams/). Each binding
names its source stream and consumer group, and the sink and dead-letter streams beside it."""

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class BindingState(models.TextChoices):
    """Whether workers read the binding's source."""

    ACTIVE = "active"
    PAUSED = "paused"


class StreamBinding(models.Model):
    """Predictions for every message of `source`, read by the consumer group `group`, written to
    `sink` with the source id (deduplicated), undecodable messages to `dead_letter`."""

    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.CASCADE, related_name="stream_bindings")
    name = models.SlugField(max_length=60)
    redis_url = models.CharField(max_length=300, blank=True,
                                 help_text="Empty: Paddock's own Redis (keys under the team's prefix)")
    source = models.CharField(max_length=200)
    group = models.CharField(max_length=100, default="paddock")
    sink = models.CharField(max_length=200)
    dead_letter = models.CharField(max_length=200)
    start = models.CharField(max_length=1, default="0", choices=[("0", "the whole stream"), ("$", "new messages")],
                             help_text="Where a new consumer group starts reading")
    output_format = models.CharField(max_length=6, default="json", choices=[("json", "json"), ("binary", "binary")])
    batch_size = models.PositiveIntegerField(default=256, help_text="Messages read per round")
    state = models.CharField(max_length=8, choices=BindingState.choices, default=BindingState.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model__name", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="one_binding_name_per_model")]

    def __str__(self) -> str:
        return f"{self.model.name}/{self.name}: {self.source} -> {self.sink}"

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of the binding (a Redis URL's password is never written)."""
        return {"name": self.name, "redis": redacted_url(self.redis_url), "source": self.source,
                "group": self.group, "sink": self.sink, "dead_letter": self.dead_letter, "start": self.start,
                "output_format": self.output_format, "batch_size": self.batch_size, "state": self.state}


def redacted_url(url: str) -> str:
    """A Redis URL without its password (or '' for Paddock's own Redis)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"
