"""`manage.py verify_audit`: check the audit log's hash chain."""

from django.core.management.base import BaseCommand, CommandError

from console.audit import first_broken_link
from console.models import AuditEvent


class Command(BaseCommand):
    help = "Check the audit log's hash chain; report the first broken link."

    def handle(self, *args: object, **options: object) -> None:
        """Walk the chain from the first event; a broken link fails the command (exit status 1)."""
        broken = first_broken_link()
        if broken is not None:
            event_id, why = broken
            raise CommandError(f"audit chain broken at event {event_id}: {why}")
        self.stdout.write(f"audit chain intact: {AuditEvent.objects.count()} events")
