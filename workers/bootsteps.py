"""Starts the batcher inside each Celery worker process, beside the task pool: control tasks
(validation) run in the pool, inference in the batcher thread."""

import os
from typing import Any

from celery import bootsteps


class BatcherStep(bootsteps.StartStopStep):
    """A Celery bootstep that runs a Batcher beside the pool (unless PADDOCK_WORKER_SERVES=0)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.batcher: Any = None

    def start(self, worker: Any) -> None:
        """Start the batcher when the worker starts."""
        if os.environ.get("PADDOCK_WORKER_SERVES", "1") == "0":
            return
        from workers.batcher import Batcher

        self.batcher = Batcher(consumer=f"{worker.hostname}-{os.getpid()}")
        self.batcher.start()

    def stop(self, worker: Any) -> None:
        """Stop the batcher when the worker stops."""
        if self.batcher is not None:
            self.batcher.stop()
