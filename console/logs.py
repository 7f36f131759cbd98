"""Logging filters named in settings.LOGGING."""

import logging
from collections.abc import Iterable
from typing import Any

BEAT_SENDS = "Scheduler: Sending due task"  # celery.beat's line for each entry it sends


class QuietPeriodicTasks(logging.Filter):
    """Drops the routine INFO lines of the beat's own tasks: beat's "Sending due task" and the
    worker's "received" and "succeeded" for each run (the rollout gates alone run every 2 s, so
    `make run` printed a few lines a second). Other tasks' lines, and every warning and error of
    any task (a failure, a retry that gave up), still pass."""

    def __init__(self, tasks: Iterable[str]) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        return _task_of(record) not in self.tasks


def _task_of(record: logging.LogRecord) -> str | None:
    """The task a Celery log line is about, or None for any other line."""
    if isinstance(record.msg, str) and record.msg.startswith(BEAT_SENDS):
        args: Any = record.args
        return str(args[1]) if isinstance(args, tuple) and len(args) > 1 else None  # (entry name, task name)
    data = getattr(record, "data", None)  # the worker's trace lines carry their context as `data`
    return data.get("name") if isinstance(data, dict) else None
