"""The webhooks API's shapes: a webhook (never its secret, but once at creation) and a delivery."""

from rest_framework import serializers

from webhooks.choices import EVENTS
from webhooks.models import Delivery, Webhook
from webhooks.targets import MAX_URL


class WebhookSerializer(serializers.ModelSerializer[Webhook]):
    """A webhook as listed: its URL, events, whether it is active, who made it; never its secret."""

    team = serializers.CharField(source="team.name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = Webhook
        fields = ["id", "team", "url", "events", "active", "created_by", "created_at"]
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    """A webhook just made, with its signing secret: the only time it is shown."""

    secret = serializers.CharField(read_only=True, help_text="Shown once; store it now to verify signatures")

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookCreateSerializer(serializers.Serializer[None]):
    """A new webhook: where to send and which events (the service checks both)."""

    url = serializers.CharField(max_length=MAX_URL, help_text="http(s) URL of the receiver; public addresses only "
                                "unless PADDOCK_WEBHOOK_ALLOW_PRIVATE")
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENTS), allow_empty=False,
                                   max_length=len(EVENTS))


class WebhookUpdateSerializer(serializers.Serializer[None]):
    """Pause (`active: false`) or resume a webhook."""

    active = serializers.BooleanField()


class DeliverySerializer(serializers.ModelSerializer[Delivery]):
    """A delivery of the log: its event, idempotency key, state, attempts and the last attempt's
    status code, error and time; the body it sends."""

    class Meta:
        model = Delivery
        fields = ["id", "webhook", "event", "key", "state", "attempts", "last_status_code", "last_error",
                  "duration_ms", "created_at", "last_attempt_at", "finished_at", "redelivery_of", "payload"]
        read_only_fields = fields
