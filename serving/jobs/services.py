"""Every change to a batch job, each in one transaction with its audit event where a person or
the job's outcome is concerned (submitted, cancelled, finished, failed): submit (checked against
the signature before anything is queued), the chunks' claims and outcomes, cancel, retention.

A job's files live under MEDIA_ROOT/jobs/<uid>/ (serving.models.jobs.BatchJob); a submission that
fails for any reason removes its folder, so nothing half-made is left behind."""

import hashlib
import logging
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, F, Q
from django.http import FileResponse
from django.utils import timezone

from console.audit import Actor, record_event
from console.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, full_disk_is_507
from registry.choices import VersionStatus
from registry.models import ModelVersion, RegisteredModel
from serving.jobs import progress, routing
from serving.jobs.files import JobFileError, format_of, output_format_for, read_inputs
from serving.models import BatchJob, ChunkState, JobChunk, JobSchedule, JobState
from serving.v2.routes import load_model_route

logger = logging.getLogger(__name__)
_COPY_CHUNK = 1024 * 1024


def job_path(job: BatchJob, *parts: str) -> Path:
    """A path inside the job's folder on the shared filesystem."""
    return Path(settings.MEDIA_ROOT, job.folder, *parts)


def input_path(job: BatchJob, position: int) -> Path:
    """The array of the signature's `position`-th input, as chunks read it (by position: input
    names may hold characters a file name may not)."""
    return job_path(job, "inputs", f"{position}.npy")


def chunk_path(job: BatchJob, index: int) -> Path:
    """Where a chunk's outputs are written, atomically, once."""
    return job_path(job, "chunks", f"{index}.npz")


def output_path(job: BatchJob) -> Path:
    """The assembled result."""
    return job_path(job, f"output.{job.output_format}")


def output_response(job: BatchJob) -> FileResponse:
    """The job's output streamed as a download named after its input, with its sha256 (as
    X-Checksum-Sha256 and the ETag); 409 until the job succeeded, 404 once retention removed it."""
    if job.state != JobState.SUCCEEDED:
        raise Conflict(f"job {job.uid} is {job.state}: its output exists once it has succeeded")
    path = output_path(job)
    if job.files_removed_at or not path.exists():
        raise NotFound(f"job {job.uid}'s output was removed (kept for PADDOCK_JOB_RETENTION_DAYS)")
    stem = job.input_name.rsplit(".", 1)[0] or "output"
    response = FileResponse(path.open("rb"), as_attachment=True, filename=f"{stem}.predictions.{job.output_format}",
                            content_type="application/octet-stream")
    response["X-Checksum-Sha256"] = job.output_sha256
    response["ETag"] = f'"{job.output_sha256}"'
    return response


def find_job(model: RegisteredModel, job_id: str) -> BatchJob | None:
    """The model's job with this id (a UUID), or None (a malformed id names no job either)."""
    try:
        uid = uuid.UUID(job_id)
    except ValueError:
        return None
    return BatchJob.objects.select_related("model", "version", "created_by").filter(model=model, uid=uid).first()


def _version_for(model: RegisteredModel, number: int | None) -> ModelVersion:
    """The version a job pins: the one asked for (ready), or what the deployment serves now."""
    if number is None:
        route = load_model_route(model.name)
        number = route.active if route is not None else None
        if number is None:
            raise Conflict(f"model '{model.name}' serves no version yet: register one that validates, "
                           "or pass 'version'")
    version = model.versions.filter(number=number).first()
    if version is None:
        raise NotFound(f"model '{model.name}' has no version {number}")
    if version.status != VersionStatus.READY:
        raise Conflict(f"version {number} of '{model.name}' is {version.status}, not ready: a job needs a "
                       "version that validated")
    fixed = [t["name"] for t in version.inputs if t["shape"] and t["shape"][0] not in (-1, 1)]
    if fixed:
        raise InvalidInput(f"version {number} takes a fixed batch of {version.inputs[0]['shape'][0]} rows "
                           f"(input '{fixed[0]}'): batch jobs need a dynamic first axis or a batch of 1")
    return version


def _chunk_size(requested: int | None, rows: int) -> int:
    size = settings.PADDOCK_JOB_CHUNK_ROWS if requested is None else requested
    if size < 1:
        raise InvalidInput("'chunk_size' must be a positive number of rows")
    chunks = -(-rows // size)
    if chunks > settings.PADDOCK_JOB_MAX_CHUNKS:
        raise InvalidInput(f"'chunk_size' {size} splits {rows} rows into {chunks} chunks; at most "
                           f"{settings.PADDOCK_JOB_MAX_CHUNKS} are allowed: use a chunk size of at least "
                           f"{-(-rows // settings.PADDOCK_JOB_MAX_CHUNKS)}")
    return size


def _receive(upload: UploadedFile, target: Path) -> tuple[str, int]:
    """Copy the upload into the job's folder while hashing it; 413 past the limit."""
    limit = settings.PADDOCK_MAX_JOB_INPUT_BYTES
    if upload.size is not None and upload.size > limit:
        raise PayloadTooLarge(f"input file is {upload.size} bytes; the limit is {limit} bytes")
    digest, size = hashlib.sha256(), 0
    with target.open("wb") as out:
        for piece in upload.chunks(_COPY_CHUNK):
            size += len(piece)
            if size > limit:
                raise PayloadTooLarge(f"input file is over the limit of {limit} bytes")
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest(), size


@full_disk_is_507
def submit_job(*, actor: Actor, model: RegisteredModel, upload: UploadedFile, version: int | None = None,
               chunk_size: int | None = None, input_format: str | None = None,
               output_format: str | None = None) -> BatchJob:
    """Check the file against the pinned version's signature, store it as one array per input,
    then in one transaction: the job, its chunks and `job.submitted`; the chunks are queued on
    commit. Any refusal (400 naming the column and row, 413, 404, 409) leaves nothing behind."""
    pinned = _version_for(model, version)
    name = Path(upload.name or "input").name
    try:
        fmt = format_of(name, input_format or None)
    except JobFileError as exc:
        raise InvalidInput(exc.message) from exc
    job = BatchJob(model=model, version=pinned, input_name=name[:255], input_format=fmt, created_by=actor.person)
    folder = job_path(job)
    try:
        (folder / "inputs").mkdir(parents=True)
        (folder / "chunks").mkdir()
        source = folder / f"source.{fmt}"
        job.input_sha256, job.input_bytes = _receive(upload, source)
        try:
            arrays = read_inputs(source, fmt, pinned.inputs)
            job.output_format = output_format_for(fmt, pinned.outputs, output_format or None)
        except JobFileError as exc:
            raise InvalidInput(exc.message) from exc
        for position, tensor in enumerate(pinned.inputs):
            array = arrays[tensor["name"]]
            if array.dtype == object:  # BYTES: fixed-width bytes on disk, never a pickle
                array = array.astype(np.bytes_)
            np.save(input_path(job, position), array, allow_pickle=False)
        job.rows_total = len(next(iter(arrays.values())))
        del arrays
        job.chunk_size = _chunk_size(chunk_size, job.rows_total)
        job.chunks_total = -(-job.rows_total // job.chunk_size)
        with transaction.atomic():
            job.save()
            JobChunk.objects.bulk_create(
                JobChunk(job=job, index=i, start=i * job.chunk_size,
                         stop=min(job.rows_total, (i + 1) * job.chunk_size)) for i in range(job.chunks_total))
            record_event(actor=actor, action="job.submitted", obj=job, after=job.snapshot())
            transaction.on_commit(lambda: progress.track(job.pk, model.name, job.rows_total))
            transaction.on_commit(lambda: queue_chunks(job.pk, list(range(job.chunks_total))))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return job


def queue_chunks(job_id: int, indexes: list[int], countdown: float = 0) -> None:
    """Send the chunks' tasks (one Celery group) to the workers holding the job's version, in
    turn, each on its own jobs queue; to the shared jobs queue, where any worker loads the
    version for the chunk, when no live worker holds it (a pinned version no longer deployed)."""
    from celery import group

    from workers.tasks import run_job_chunk

    if not indexes:
        return
    version_id = BatchJob.objects.filter(pk=job_id).values_list("version_id", flat=True).first()
    queues = routing.holding_queues(version_id) if version_id is not None else []
    tasks = [run_job_chunk.si(job_id, index) for index in indexes]
    if queues:
        tasks = [task.set(queue=queues[turn % len(queues)]) for turn, task in enumerate(tasks)]
    group(tasks).apply_async(countdown=countdown)


def claim_chunk(*, job_id: int, index: int, worker: str) -> JobChunk | None:
    """Take a pending chunk of a live job for this worker (a conditional UPDATE: one claimant
    wins); None when it is done, taken, or its job ended. The job is `running` from its first claim."""
    now = timezone.now()
    # On the chunk's own row only: PostgreSQL re-checks a plain WHERE against a row another
    # transaction just changed, but a condition on the job (a join, which Django writes as a
    # subquery) would be judged on the old snapshot, and a claim waiting on cancel's lock would then
    # take a chunk cancel had just ended. Ending a job ends its pending chunks, so this is enough.
    claimed = JobChunk.objects.filter(job_id=job_id, index=index, state=ChunkState.PENDING).update(
        state=ChunkState.RUNNING, worker=worker, claimed_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return None
    BatchJob.objects.filter(pk=job_id, state=JobState.QUEUED).update(state=JobState.RUNNING, started_at=now)
    return JobChunk.objects.select_related("job__version", "job__model").get(job_id=job_id, index=index)


def finish_chunk(*, chunk: JobChunk, seconds: float) -> bool:
    """The chunk's outputs are in place: done (once, whoever ran it), its rows counted; the last
    chunk done moves the job to `assembling` and queues its assembly. True when this call did it."""
    with transaction.atomic():
        # The job's row first, as cancel and fail do: two writers never hold each other's rows.
        BatchJob.objects.select_for_update().filter(pk=chunk.job_id).values_list("pk").first()
        done = JobChunk.objects.filter(pk=chunk.pk, state__in=[ChunkState.RUNNING, ChunkState.PENDING]).update(
            state=ChunkState.DONE, finished_at=timezone.now(), seconds=seconds, error="")
        if not done:
            return False
        BatchJob.objects.filter(pk=chunk.job_id).update(rows_done=F("rows_done") + chunk.rows)
        left = JobChunk.objects.filter(job_id=chunk.job_id).exclude(state=ChunkState.DONE).exists()
        if not left and BatchJob.objects.filter(pk=chunk.job_id, state=JobState.RUNNING).update(
                state=JobState.ASSEMBLING):
            transaction.on_commit(lambda: queue_assembly(chunk.job_id))
    return True


def queue_assembly(job_id: int) -> None:
    """Send the job's assembly task."""
    from workers.tasks import assemble_job_output

    assemble_job_output.delay(job_id)


def fail_job(*, job_id: int, error: str) -> None:
    """A live job ends `failed` with `error` (the chunk's, or the assembly's); `job.failed`."""
    with transaction.atomic():
        job = BatchJob.objects.select_for_update().select_related("model", "version").get(pk=job_id)
        if not job.is_live():
            return
        before = job.snapshot()
        job.state, job.finished_at, job.error = JobState.FAILED, timezone.now(), error[:4000]
        job.save(update_fields=["state", "finished_at", "error"])
        _end_chunks(job)
        record_event(actor=Actor.system("worker"), action="job.failed", obj=job, before=before, after=job.snapshot())
        transaction.on_commit(lambda: _remove_work_files(job))


def fail_chunk(*, chunk: JobChunk, error: str) -> None:
    """A chunk's attempt failed: queued again (with backoff) while attempts remain; after the
    last, the job fails naming the chunk, its rows and the runtime's message."""
    message = (error.strip().splitlines() or ["(no message)"])[0][:2000]
    if chunk.attempts < settings.PADDOCK_JOB_CHUNK_ATTEMPTS:
        if JobChunk.objects.filter(pk=chunk.pk, state=ChunkState.RUNNING).update(
                state=ChunkState.PENDING, error=message, queued_at=timezone.now()):
            queue_chunks(chunk.job_id, [chunk.index], countdown=2 ** chunk.attempts)
        return
    JobChunk.objects.filter(pk=chunk.pk).update(state=ChunkState.FAILED, error=message, finished_at=timezone.now())
    fail_job(job_id=chunk.job_id, error=f"chunk {chunk.index} (rows {chunk.start}-{chunk.stop - 1}) failed "
                                        f"{chunk.attempts} times: {message}")


def _end_chunks(job: BatchJob) -> None:
    JobChunk.objects.filter(job=job, state__in=[ChunkState.PENDING, ChunkState.RUNNING]).update(
        state=ChunkState.CANCELLED, finished_at=timezone.now())


def _remove_work_files(job: BatchJob) -> None:
    """A job that ended without a result keeps its source file (retention removes it), nothing else."""
    progress.forget(job.pk)
    for part in ("inputs", "chunks"):
        shutil.rmtree(job_path(job, part), ignore_errors=True)


def cancel_job(*, actor: Actor, job: BatchJob) -> BatchJob:
    """Stop a live job: its chunks are cancelled (a running one stops after its current run) and
    its work files removed; `job.cancelled`. An ended job cannot be cancelled (409)."""
    with transaction.atomic():
        job = BatchJob.objects.select_for_update().select_related("model", "version").get(pk=job.pk)
        if not job.is_live():
            raise Conflict(f"job {job.uid} has already ended ({job.state})")
        before = job.snapshot()
        job.state, job.finished_at = JobState.CANCELLED, timezone.now()
        job.save(update_fields=["state", "finished_at"])
        _end_chunks(job)
        record_event(actor=actor, action="job.cancelled", obj=job, before=before, after=job.snapshot())
        progress.cancel(job.pk)
        transaction.on_commit(lambda: _remove_work_files(job))
    return job


def finish_job(*, job_id: int, sha256: str, size: int) -> BatchJob | None:
    """The output is assembled: `succeeded` with its checksum, and `job.finished` with the
    figures; the work files go. None when the job was no longer assembling (cancelled meanwhile)."""
    with transaction.atomic():
        job = BatchJob.objects.select_for_update().select_related("model", "version").get(pk=job_id)
        if job.state != JobState.ASSEMBLING:
            return None
        before = job.snapshot()
        job.state, job.finished_at = JobState.SUCCEEDED, timezone.now()
        job.output_sha256, job.output_bytes = sha256, size
        job.save(update_fields=["state", "finished_at", "output_sha256", "output_bytes"])
        seconds = (job.finished_at - (job.started_at or job.created_at)).total_seconds()
        after = {**job.snapshot(), "seconds": round(seconds, 3),
                 "rows_per_second": round(job.rows_total / seconds, 1) if seconds > 0 else None}
        record_event(actor=Actor.system("worker"), action="job.finished", obj=job, before=before, after=after)
        transaction.on_commit(lambda: _remove_work_files(job))
    return job


def remove_expired_files() -> int:
    """Retention: the files of jobs ended over PADDOCK_JOB_RETENTION_DAYS ago (rows stay)."""
    cutoff = timezone.now() - timedelta(days=settings.PADDOCK_JOB_RETENTION_DAYS)
    expired = BatchJob.objects.filter(~Q(state__in=JobState.live()), finished_at__lt=cutoff,
                                      files_removed_at__isnull=True)
    count = 0
    for job in expired.exclude(pk__in=JobSchedule.objects.values("template_id")):  # templates keep their input
        shutil.rmtree(job_path(job), ignore_errors=True)
        BatchJob.objects.filter(pk=job.pk).update(files_removed_at=timezone.now())
        count += 1
    return count


def describe(job: BatchJob) -> dict[str, Any]:
    """Progress as the API, the console and /metrics show it: rows done (live, from the chunks'
    figures in Redis), rows per second and the time left at that pace."""
    live = progress.rows_done(job.pk) if job.state in (JobState.RUNNING, JobState.ASSEMBLING) else None
    done = job.rows_total if job.state == JobState.SUCCEEDED else max(job.rows_done, live or 0)
    done = min(done, job.rows_total)
    end = job.finished_at or timezone.now()
    seconds = (end - job.started_at).total_seconds() if job.started_at else 0.0
    rate = done / seconds if seconds > 0 and done else 0.0
    eta = (job.rows_total - done) / rate if rate and job.is_live() else None
    chunks = dict.fromkeys(ChunkState.values, 0)
    for state, count in JobChunk.objects.filter(job=job).values_list("state").annotate(count=Count("pk")):
        chunks[state] = count
    chunks["retried"] = JobChunk.objects.filter(job=job, attempts__gt=1).count()
    return {"rows_done": done, "rows_total": job.rows_total, "chunks": chunks,
            "percent": round(100 * done / job.rows_total, 1) if job.rows_total else 100.0,
            "rows_per_second": round(rate, 1), "eta_seconds": round(eta, 1) if eta is not None else None,
            "seconds": round(seconds, 3)}


def resubmit_job(*, actor: Actor, template: BatchJob, version: int | None,
                 schedule: JobSchedule | None) -> BatchJob:
    """Submit the template's kept `source.<fmt>` again through submit_job (the same checks, a new
    job in its own folder) with its chunk size and formats, tied to `schedule`; 409 once retention
    removed the file. Version: the number given, else what the deployment serves now."""
    source = job_path(template, f"source.{template.input_format}")
    if template.files_removed_at or not source.is_file():
        raise Conflict(f"job {template.uid}'s input file was removed: a new job needs a job whose files remain")
    made: Path | None = None
    try:
        with source.open("rb") as handle, transaction.atomic():
            upload = UploadedFile(handle, name=template.input_name, size=source.stat().st_size)
            job = submit_job(actor=actor, model=template.model, upload=upload, version=version,
                             chunk_size=template.chunk_size, input_format=template.input_format,
                             output_format=template.output_format)
            made = job_path(job)
            job.schedule = schedule
            job.save(update_fields=["schedule"])
    except BaseException:
        if made is not None:  # submit_job removes what it refused; this failed after it
            shutil.rmtree(made, ignore_errors=True)
        raise
    return job
