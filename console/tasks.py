"""The console's periodic tasks (Celery beat)."""

from typing import Any

from celery import shared_task

from console.audit import anchor_audit_head_now


@shared_task(name="console.tasks.anchor_audit_head")
def anchor_audit_head() -> dict[str, Any] | None:
    """Once a day: write the audit chain's head where the database user cannot rewrite it."""
    return anchor_audit_head_now()
