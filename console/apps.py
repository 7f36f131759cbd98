"""Django app config of the console."""

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The console app: the project's people's side."""

    name = "console"
    verbose_name = "Paddock console"

    def ready(self) -> None:
        """Register the OpenAPI extension that documents bearer tokens."""
        from console import schema  # noqa: F401 - registers the OpenAPI auth extension
