"""The workers app (no models: its state lives in Redis and in the registry's rows)."""

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """Django's config for the workers app."""

    name = "workers"
