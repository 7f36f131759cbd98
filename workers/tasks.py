"""Celery tasks that run in the workers beside the batcher: batch-job chunks (on the jobs queue,
read only when the control queue is empty) and their assembly (workers/jobs.py)."""

import os
from typing import Any

from celery import shared_task

from workers import jobs


def _worker(task: Any) -> str:
    return f"{task.request.hostname or 'worker'}-{os.getpid()}"


@shared_task(name="workers.tasks.run_job_chunk", bind=True, acks_late=True)
def run_job_chunk(self: Any, job_id: int, index: int) -> str:
    """Run one chunk of a batch job (idempotent: claims it first, skips a chunk already done)."""
    return jobs.run_chunk(job_id, index, _worker(self))


@shared_task(name="workers.tasks.assemble_job_output", bind=True, acks_late=True)
def assemble_job_output(self: Any, job_id: int) -> str:
    """Write a job's output from its chunks, in order, and end the job."""
    return jobs.assemble_output(job_id, _worker(self))
