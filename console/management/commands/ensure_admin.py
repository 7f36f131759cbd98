"""`manage.py ensure_admin`: create the superuser unless it exists, so it is safe on every start."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from console import services
from console.audit import Actor
from console.env import env_secret


class Command(BaseCommand):
    help = ("Create the superuser 'admin' if missing; its password comes from PADDOCK_ADMIN_PASSWORD (or _FILE), "
            "else it is printed once under DEBUG, and left unusable otherwise (set it with changepassword).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: object, **options: object) -> None:
        """Create the user through the audited service; leave an existing one untouched."""
        User = get_user_model()
        username = str(options["username"])
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"admin user '{username}' exists")
            return
        given = env_secret("PADDOCK_ADMIN_PASSWORD")
        if not given and not settings.DEBUG:
            # A deployment's logs (docker compose logs) outlive a printed password: print none.
            services.create_superuser(actor=Actor.system("ensure_admin"), username=username, password=None)
            self.stdout.write(self.style.WARNING(
                f"created admin user '{username}' without a usable password: set one with "
                f"`manage.py changepassword {username}` (or set PADDOCK_ADMIN_PASSWORD before the first start)"))
            return
        password = given or secrets.token_urlsafe(12)
        services.create_superuser(actor=Actor.system("ensure_admin"), username=username, password=password)
        if given:
            self.stdout.write(f"created admin user '{username}' with the password from PADDOCK_ADMIN_PASSWORD")
        else:
            self.stdout.write(self.style.WARNING(
                f"created admin user '{username}' with password: {password}  (shown once; change it in /admin/)"
            ))
