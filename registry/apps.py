"""Django app config of the registry."""

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """The registry app: models, their versions and aliases."""

    name = "registry"
