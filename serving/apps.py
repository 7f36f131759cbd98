"""Django app config of the serving side."""

from django.apps import AppConfig


class ServingConfig(AppConfig):
    """The serving app: deployments, rollouts, routing and the data plane."""

    name = "serving"
