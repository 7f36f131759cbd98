"""Webhooks in the Django admin, read-only: they are made, paused and deleted from the console or
the API, through the audited services; the secret is never shown."""

from django.contrib import admin

from console.admin import ReadOnlyAdmin
from webhooks.models import Delivery, Webhook


@admin.register(Webhook)
class WebhookAdmin(ReadOnlyAdmin):
    """A team's webhooks, without their secrets."""

    list_display = ["id", "team", "url", "active", "created_by", "created_at"]
    list_filter = ["active", "team"]
    list_select_related = ["team", "created_by"]
    exclude = ["secret"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """The log of deliveries."""

    list_display = ["id", "webhook", "event", "state", "attempts", "last_status_code", "duration_ms", "created_at"]
    list_filter = ["state", "event"]
    list_select_related = ["webhook__team"]
