"""The console's periodic tasks (Celery beat), and what every periodic task does while the
database is unreachable: skip the run with one log line per outage (beat calls it again), not a
traceback every 2 seconds."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task
from django.db import connection

from console.audit import anchor_audit_head_now
from serving.v2.outage import DATABASE_DOWN, OutageLog

T = TypeVar("T")
SKIPPED = "skipped: the database is unreachable"
# One log for every periodic task of this process: an outage is said once, not once per task.
_outage = OutageLog("periodic tasks skip their runs until it is back", "periodic tasks run again")


def skipped_while_database_down(task: Callable[..., T]) -> Callable[..., T | str]:
    """Wrap a periodic task: an unreachable database skips this run (SKIPPED), logged once per outage."""
    @functools.wraps(task)
    def run(*args: Any, **kwargs: Any) -> T | str:
        try:
            result = task(*args, **kwargs)
        except DATABASE_DOWN as exc:
            connection.close()  # the next run reconnects
            _outage.failed(exc)
            return SKIPPED
        _outage.succeeded()
        return result
    return run


@shared_task(name="console.tasks.anchor_audit_head")
@skipped_while_database_down
def anchor_audit_head() -> dict[str, Any] | None:
    """Once a day: write the audit chain's head where the database user cannot rewrite it."""
    return anchor_audit_head_now()
