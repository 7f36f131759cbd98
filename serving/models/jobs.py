"""Batch jobs: a file of inputs scored by one pinned version, split into chunks that workers run
(serving/jobs/, workers/jobs.py). The job row holds what was asked and how it ended; each chunk
row is claimed by one worker at a time and ends `done` once its output file is in place."""

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class JobState(models.TextChoices):
    """Where a job is: live (queued, running, assembling its output) or ended."""

    QUEUED = "queued"
    RUNNING = "running"
    ASSEMBLING = "assembling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def live(cls) -> list[str]:
        """States in which chunks may still run."""
        return [cls.QUEUED, cls.RUNNING, cls.ASSEMBLING]


class ChunkState(models.TextChoices):
    """A chunk: waiting for a worker, claimed by one, its output written, or given up."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobSchedule(models.Model):
    """A recurring job: the kept input file scored again on a cron schedule, each run by the
    version the deployment serves at that moment (or a pinned one)."""

    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.CASCADE, related_name="job_schedules")
    name = models.SlugField(max_length=60)
    cron = models.CharField(max_length=100, help_text="minute hour day-of-month month day-of-week (UTC)")
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, null=True, blank=True,
                                related_name="+", help_text="Empty: what the deployment serves at each run")
    template = models.ForeignKey("BatchJob", on_delete=models.PROTECT, related_name="+",
                                 help_text="The job whose input file, chunk size and output format each run repeats")
    enabled = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        ordering = ["model__name", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="one_schedule_name_per_model")]

    def __str__(self) -> str:
        return f"{self.model.name}/{self.name} ({self.cron})"

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of the schedule."""
        return {"name": self.name, "cron": self.cron, "enabled": self.enabled,
                "version": self.version.number if self.version else None, "template": str(self.template.uid)}


class BatchJob(models.Model):
    """One file of inputs scored by one version. Files live under MEDIA_ROOT/jobs/<uid>/:
    `source.<ext>` (the upload, kept for schedules), `inputs/<name>.npy` (what chunks read),
    `chunks/<index>.npz` (each chunk's outputs) and `output.<ext>` (the result)."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.CASCADE, related_name="jobs")
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="jobs")
    state = models.CharField(max_length=12, choices=JobState.choices, default=JobState.QUEUED)
    input_name = models.CharField(max_length=255)
    input_format = models.CharField(max_length=10)
    input_bytes = models.BigIntegerField(default=0)
    input_sha256 = models.CharField(max_length=64)
    output_format = models.CharField(max_length=10)
    chunk_size = models.PositiveIntegerField()
    rows_total = models.PositiveBigIntegerField()
    chunks_total = models.PositiveIntegerField()
    rows_done = models.PositiveBigIntegerField(default=0, help_text="Rows of the chunks done")
    output_bytes = models.BigIntegerField(null=True, blank=True)
    output_sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    schedule = models.ForeignKey(JobSchedule, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    files_removed_at = models.DateTimeField(null=True, blank=True, help_text="Retention ended: files gone")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"job {self.uid} of {self.model.name} v{self.version.number}"

    @property
    def folder(self) -> str:
        """The job's folder, relative to MEDIA_ROOT."""
        return f"jobs/{self.uid}"

    def is_live(self) -> bool:
        """Whether chunks may still run (not ended)."""
        return self.state in JobState.live()

    def snapshot(self) -> dict[str, Any]:
        """The audit log's view of the job."""
        return {"uid": str(self.uid), "model": self.model.name, "version": self.version.number,
                "state": self.state, "input": self.input_name, "input_format": self.input_format,
                "input_sha256": self.input_sha256, "output_format": self.output_format,
                "rows": self.rows_total, "chunk_size": self.chunk_size, "chunks": self.chunks_total,
                "rows_done": self.rows_done, "output_sha256": self.output_sha256, "error": self.error}


class JobChunk(models.Model):
    """Rows [start, stop) of a job. Claimed by one worker at a time (a conditional UPDATE); a
    worker that dies leaves it `running` under a lease nobody renews, and beat puts it back."""

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    start = models.PositiveBigIntegerField()
    stop = models.PositiveBigIntegerField()
    state = models.CharField(max_length=10, choices=ChunkState.choices, default=ChunkState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="Compute time of the attempt that finished it")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="one_chunk_per_index")]
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"chunk {self.index} (rows {self.start}-{self.stop - 1}) of job {self.job_id}"

    @property
    def rows(self) -> int:
        """How many rows the chunk holds."""
        return self.stop - self.start
