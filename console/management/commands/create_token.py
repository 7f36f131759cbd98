"""`manage.py create_token USER --scope ...`: mint an API token from the command line."""

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from console import services
from console.audit import Actor
from console.choices import ALL_SCOPES
from console.errors import PaddockError


class Command(BaseCommand):
    help = "Create an API token for USER and print it (for scripts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user")
        parser.add_argument("--scope", action="append", choices=ALL_SCOPES, required=True,
                            help="repeat for several scopes")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--model", action="append", default=[], help="limit to this model (repeatable)")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        """Print only the raw token, for scripts to capture; CommandError when the user is unknown
        or the token is refused."""
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user named '{options['user']}'")
        days = options["expires_days"]
        expires_at = timezone.now() + timedelta(days=int(days)) if days else None
        try:
            _, raw = services.create_token(
                actor=Actor.system("create_token"), user=user, name=str(options["name"]),
                scopes=list(options["scope"]), model_names=list(options["model"]),
                expires_at=expires_at,
            )
        except PaddockError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(raw)
