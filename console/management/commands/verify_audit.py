"""`manage.py verify_audit`: check the audit log's keyed hash chain against the anchors written so
far; `--anchor` then writes the head as a new anchor (beat does so once a day)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.audit import anchor_audit_head_now, first_broken_link, read_anchors
from console.models import AuditEvent


class Command(BaseCommand):
    help = "Check the audit log's hash chain and its anchors; report the first broken link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--anchor", action="store_true",
                            help="after a successful check, append the chain's head to PADDOCK_AUDIT_ANCHOR_FILE")

    def handle(self, *args: Any, **options: Any) -> None:
        """Walk the chain from the first event; a broken link or a cut tail fails the command (exit status 1)."""
        broken = first_broken_link()
        if broken is not None:
            event_id, why = broken
            raise CommandError(f"audit chain broken at event {event_id}: {why}")
        self.stdout.write(f"audit chain intact: {AuditEvent.objects.count()} events, "
                          f"{len(read_anchors())} anchor(s) hold")
        if options["anchor"]:
            anchor = anchor_audit_head_now()
            if anchor is not None:
                self.stdout.write(f"anchored event {anchor['id']} ({anchor['hash']})")
