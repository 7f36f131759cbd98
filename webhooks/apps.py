"""Django app config of the webhooks."""

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """The webhooks app: a team's receivers, and the log of every delivery to them."""

    name = "webhooks"
