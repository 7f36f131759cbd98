"""What beat's `requeue_stale_job_chunks` sends again (serving/tasks.py): chunks a dead worker
left running, pending chunks of a job that stopped moving, assemblies nobody is doing."""

from datetime import timedelta

from django.utils import timezone

from serving.jobs import progress
from serving.models import BatchJob, ChunkState, JobChunk, JobState


def stale_chunks() -> list[JobChunk]:
    """Running chunks whose lease lapsed (their worker died), and pending chunks of a job that
    has not moved for a minute (their messages or their worker were lost): put back and
    returned, to be queued again."""
    now = timezone.now()
    running = list(JobChunk.objects.filter(state=ChunkState.RUNNING, job__state=JobState.RUNNING))
    alive = progress.leased(f"chunk:{c.pk}" for c in running)
    # A claim older than a lease: a chunk claimed this instant has not renewed it yet.
    stale = [c for c in running if f"chunk:{c.pk}" not in alive and c.claimed_at is not None
             and c.claimed_at < now - timedelta(seconds=progress.LEASE_SECONDS)]
    # Pending chunks wait in their workers' queues while the job's other chunks run: only a job
    # none of whose chunks was claimed for a minute has lost messages (or the worker they were
    # sent to), and its pending chunks go again, to the workers holding the version now.
    moving = JobChunk.objects.filter(claimed_at__gte=now - timedelta(minutes=1)).values("job_id")
    forgotten = list(JobChunk.objects.filter(state=ChunkState.PENDING, queued_at__lt=now - timedelta(minutes=1),
                                             job__state__in=[JobState.QUEUED, JobState.RUNNING])
                     .exclude(job_id__in=moving))
    back = []
    for chunk in stale:
        if JobChunk.objects.filter(pk=chunk.pk, state=ChunkState.RUNNING, worker=chunk.worker).update(
                state=ChunkState.PENDING, queued_at=now, error="its worker stopped answering"):
            back.append(chunk)
    for chunk in forgotten:
        if JobChunk.objects.filter(pk=chunk.pk, state=ChunkState.PENDING).update(queued_at=now):
            back.append(chunk)
    return back


def stale_assemblies() -> list[int]:
    """Jobs assembling with nobody at it: their last chunk ended over a minute ago and no
    worker holds the assembly's lease (the worker died, or the message was lost)."""
    quiet = timezone.now() - timedelta(minutes=1)
    candidates = list(BatchJob.objects.filter(state=JobState.ASSEMBLING).exclude(
        chunks__finished_at__gte=quiet).values_list("pk", flat=True))
    alive = progress.leased(f"assembly:{job_id}" for job_id in candidates)
    return [job_id for job_id in candidates if f"assembly:{job_id}" not in alive]
