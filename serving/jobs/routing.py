"""Where a batch job's chunks go: each serving worker reads a jobs queue of its own, named by its
Celery name and published in its heartbeat, and a job's chunks are sent to the workers holding
its version (serving.jobs.services.queue_chunks)."""

from django.conf import settings

from serving.jobs import progress


def worker_jobs_queue(hostname: str) -> str:
    """The jobs queue only the worker named `hostname` reads (workers.bootsteps adds it)."""
    return f"{settings.PADDOCK_JOBS_QUEUE}.{hostname}"


def holding_queues(version_id: int) -> list[str]:
    """The jobs queues of the live workers holding the version (their heartbeats say so), sorted."""
    from serving.v2.wire import fresh_heartbeats, workers_key

    beats = fresh_heartbeats(progress.client().hgetall(workers_key()))
    return sorted({beat["jobs_queue"] for beat in beats.values() if beat.get("jobs_queue")
                   and any(held.get("id") == version_id for held in beat.get("held", []))})
