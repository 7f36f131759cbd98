"""The console's periodic tasks (Celery beat), and what every periodic task does while the
database is unreachable: skip the run with one log line per outage (beat calls it again), not a
traceback every 2 seconds."""

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task
from django.db import InterfaceError, OperationalError, connection

from console.audit import anchor_audit_head_now

logger = logging.getLogger(__name__)
T = TypeVar("T")
SKIPPED = "skipped: the database is unreachable"
_outage = threading.Event()


def skipped_while_database_down(task: Callable[..., T]) -> Callable[..., T | str]:
    """Wrap a periodic task: an unreachable database skips this run (SKIPPED), logged once per outage."""
    @functools.wraps(task)
    def run(*args: Any, **kwargs: Any) -> T | str:
        try:
            result = task(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            connection.close()  # the next run reconnects
            if not _outage.is_set():
                _outage.set()
                logger.warning("the database is unreachable (%s): periodic tasks skip their runs until it is back",
                               str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            return SKIPPED
        if _outage.is_set():
            _outage.clear()
            logger.warning("the database is reachable again: periodic tasks run again")
        return result
    return run


@shared_task(name="console.tasks.anchor_audit_head")
@skipped_while_database_down
def anchor_audit_head() -> dict[str, Any] | None:
    """Once a day: write the audit chain's head where the database user cannot rewrite it."""
    return anchor_audit_head_now()
