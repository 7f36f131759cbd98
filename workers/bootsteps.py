"""Starts the batcher inside each Celery worker process, beside the task pool, and the stream
bindings' runner beside it: control tasks (validation) and batch-job chunks run in the pool,
online inference in the batcher thread, stream scoring in its own (workers/streams/runner.py).
The webhook senders have a step of their own (WebhookSenderStep: workers/webhook_sender.py), so
that a worker that does not serve (PADDOCK_WORKER_SERVES=0) still sends.

Celery's warm shutdown (SIGTERM) stops the batcher through `stop`, which drains it: every batch
it read or holds is run and answered before the process exits. A batcher that recycles itself
(memory past PADDOCK_WORKER_MAX_RSS_MB) sends its own process SIGTERM, and the worker then exits
with RECYCLED_EXIT_STATUS, which `make run`'s supervisor starts again at once, not counting it as
a crash."""

import os
import signal
from typing import Any

from celery import bootsteps

from console.supervisor import RECYCLED_EXIT_STATUS

# This process's batcher, for the tasks that share its runtimes (workers/jobs.py); None: not serving.
running_batcher: Any = None


class BatcherStep(bootsteps.StartStopStep):
    """A Celery bootstep that runs a Batcher and a StreamRunner beside the pool (unless PADDOCK_WORKER_SERVES=0)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.batcher: Any = None
        self.streams: Any = None

    def start(self, worker: Any) -> None:
        """Start the batcher when the worker starts."""
        if os.environ.get("PADDOCK_WORKER_SERVES", "1") == "0":
            return
        from workers.batcher import Batcher

        self.batcher = Batcher(consumer=f"{worker.hostname}-{os.getpid()}")
        # Its own jobs queue (named by its Celery name, so a restarted worker reads what its
        # predecessor was sent), which the heartbeat publishes: a job's chunks go to the workers
        # holding the job's version (serving.jobs.services.queue_chunks). The consumer, the last
        # bootstep, starts after this one and reads every selected queue.
        from serving.jobs.routing import worker_jobs_queue

        self.batcher.jobs_queue = worker.app.amqp.queues.select_add(worker_jobs_queue(worker.hostname)).name
        self.batcher.on_recycle = lambda: os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown
        self.batcher.start()
        global running_batcher
        running_batcher = self.batcher
        from workers.streams.runner import StreamRunner

        self.streams = StreamRunner(consumer=self.batcher.consumer)
        self.streams.start()

    def stop(self, worker: Any) -> None:
        """Drain the batcher when the worker stops; exit with RECYCLED_EXIT_STATUS if it asked to be recycled."""
        if self.streams is not None:
            self.streams.stop()  # its round under way is written and acknowledged
        if self.batcher is not None:
            self.batcher.stop()
            if self.batcher.recycling.is_set():
                worker.exitcode = RECYCLED_EXIT_STATUS


class WebhookSenderStep(bootsteps.StartStopStep):
    """A Celery bootstep that runs the webhook senders beside the pool (PADDOCK_WEBHOOK_SENDERS threads; 0: none)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.sender: Any = None

    def start(self, worker: Any) -> None:
        """Start the dispatcher and the sender threads when the worker starts."""
        from django.conf import settings

        if settings.PADDOCK_WEBHOOK_SENDERS == 0:
            return
        from workers.webhook_sender import WebhookSender

        self.sender = WebhookSender(settings.PADDOCK_WEBHOOK_SENDERS)
        self.sender.start()

    def stop(self, worker: Any) -> None:
        """Claim no more attempts; record those in flight (each cut off at the timeout) before the worker exits."""
        if self.sender is not None:
            self.sender.stop()
