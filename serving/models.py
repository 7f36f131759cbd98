"""Deployments: which version of a model answers, and how its requests are batched and queued."""

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Deployment(models.Model):
    """Per-model serving settings. A model without one is served by its `champion` alias, or
    else its newest ready version, with the defaults below."""

    model = models.OneToOneField("registry.RegisteredModel", on_delete=models.CASCADE, related_name="deployment")
    active_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, null=True, blank=True,
                                       related_name="+", help_text="Empty: the champion alias, else the newest")
    max_batch_size = models.PositiveIntegerField(default=64, help_text="0: no batching, one request at a time")
    max_queue_delay_ms = models.PositiveIntegerField(default=0, help_text="0: never wait when idle")
    preferred_batch_sizes = models.JSONField(default=list, blank=True)
    max_queue_depth = models.PositiveIntegerField(default=1024, help_text="Requests queued beyond this get 429")
    default_timeout_ms = models.PositiveIntegerField(default=30_000)
    min_workers = models.PositiveIntegerField(default=1, help_text="How many workers should hold the version")
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        ordering = ["model__name"]

    def __str__(self) -> str:
        return f"deployment of {self.model.name}"

    def snapshot(self) -> dict[str, Any]:
        return {
            "active_version": self.active_version.number if self.active_version else None,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "preferred_batch_sizes": list(self.preferred_batch_sizes),
            "max_queue_depth": self.max_queue_depth,
            "default_timeout_ms": self.default_timeout_ms,
            "min_workers": self.min_workers,
        }


DEFAULTS = {field: Deployment._meta.get_field(field).default for field in
            ("max_batch_size", "max_queue_delay_ms", "max_queue_depth", "default_timeout_ms", "min_workers")}
