"""Which chunks beat's re-queue sends again (serving.jobs.recovery.stale_chunks): pending chunks
wait in their workers' queues while their job moves, and go again only once it has stood still
for a minute (their messages, or the worker they were sent to, were lost)."""

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from console.audit import Actor
from registry import services as registry
from serving.jobs import recovery
from serving.jobs import services as jobs
from serving.models import BatchJob, ChunkState, JobChunk, JobState
from tests.conftest import ready_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job(cast: dict[str, Any], teams: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> BatchJob:
    """A running job of 4 chunks, never sent to a worker, every chunk queued two minutes ago."""
    monkeypatch.setattr(jobs, "queue_chunks", lambda *args, **kwargs: None)
    model = registry.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    ready_version(model, 1)
    rows = "x.0,x.1,x.2,x.3,x.4,x.5,x.6,x.7\n" + "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8\n" * 8
    job = jobs.submit_job(actor=Actor(user=cast["engineer"]), model=model, chunk_size=2,
                          upload=SimpleUploadedFile("rows.csv", rows.encode()))
    BatchJob.objects.filter(pk=job.pk).update(state=JobState.RUNNING)
    JobChunk.objects.filter(job=job).update(queued_at=timezone.now() - timedelta(minutes=2))
    return job


def test_pending_chunks_of_a_job_that_moves_are_left_in_their_queues(job: BatchJob) -> None:
    JobChunk.objects.filter(job=job, index=0).update(state=ChunkState.DONE,
                                                     claimed_at=timezone.now() - timedelta(seconds=20))
    assert recovery.stale_chunks() == []


def test_pending_chunks_of_a_job_still_for_a_minute_go_again(job: BatchJob) -> None:
    JobChunk.objects.filter(job=job, index=0).update(state=ChunkState.DONE,
                                                     claimed_at=timezone.now() - timedelta(seconds=61))
    again = recovery.stale_chunks()
    assert sorted(chunk.index for chunk in again) == [1, 2, 3]
    assert recovery.stale_chunks() == []  # queued again just now: not twice
