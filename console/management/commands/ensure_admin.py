import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from console.audit import Actor, record_event


class Command(BaseCommand):
    help = "Create the superuser 'admin' if missing; its password comes from PADDOCK_ADMIN_PASSWORD or is printed once."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--username", default="admin")

    def handle(self, *args: object, **options: object) -> None:
        User = get_user_model()
        username = str(options["username"])
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"admin user '{username}' exists")
            return
        password = os.environ.get("PADDOCK_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_superuser(username=username, email="", password=password)
            record_event(actor=Actor.system("ensure_admin"), action="user.create", obj=user,
                         after={"username": username, "is_superuser": True})
        if os.environ.get("PADDOCK_ADMIN_PASSWORD"):
            self.stdout.write(f"created admin user '{username}' with the password from PADDOCK_ADMIN_PASSWORD")
        else:
            self.stdout.write(self.style.WARNING(
                f"created admin user '{username}' with password: {password}  (shown once; change it in /admin/)"
            ))
