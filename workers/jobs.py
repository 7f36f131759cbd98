"""Running a batch job's chunks and assembling its output, in a worker (tasks: workers/tasks.py).

A chunk:
1. is claimed (serving.jobs.services.claim_chunk: one worker wins); a lease in Redis, renewed by
   a thread while it runs, tells beat that its worker is alive;
2. reads its rows from the job's arrays (memory-mapped), and runs them in large batches
   (PADDOCK_JOB_RUN_ROWS rows and PADDOCK_JOB_RUN_BYTES at most per inference, fewer where the
   version runs faster so: RunSizes tunes the size on the first inferences) on the runtime
   the worker already holds for the version (else one loaded for jobs); every REPORT_SECONDS it
   reports progress and checks the cancel flag, and, while the worker serves online requests, rests
   (PADDOCK_JOB_ONLINE_YIELD times its last inference) so that they come first;
3. writes its outputs to chunks/<index>.npz through a temporary file and a rename, so that the
   file is whole or absent: a chunk run again after its worker died writes the same file, and a
   chunk whose file exists is done without running (idempotent);
4. is marked done; the last one queues the assembly, which streams the chunks' outputs in order
   into the output file, hashes it, and ends the job `succeeded`."""

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from registry.models import ModelVersion
from serving.jobs import progress, services
from serving.jobs.files import write_outputs
from serving.models import BatchJob, JobChunk, JobState
from workers.runtimes import Runtime
from workers.shelf import Shelf, online_busy

logger = logging.getLogger(__name__)

ONLINE_RECENT_SECONDS = 0.05  # a batch served this recently means online traffic is flowing
REPORT_SECONDS = 0.1  # a running chunk reports its rows and reads the cancel flag this often
_shelf = Shelf(size=1)


class Cancelled(Exception):
    """The job was cancelled while the chunk ran."""


class Lease:
    """Renews a lease in Redis from a thread of its own until stopped (the worker dies: it lapses)."""

    def __init__(self, name: str, worker: str) -> None:
        self.name, self.worker = name, worker
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._renew, name=f"paddock-lease-{name}", daemon=True)

    def __enter__(self) -> "Lease":
        progress.renew_lease(self.name, self.worker)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        progress.drop_lease(self.name)

    def _renew(self) -> None:
        while not self.stopped.wait(progress.LEASE_SECONDS / 3):
            try:
                progress.renew_lease(self.name, self.worker)
            except Exception:  # noqa: BLE001 - Redis away: the lease lapses, the chunk runs again elsewhere
                logger.warning("could not renew lease %s", self.name, exc_info=True)


def runtime_for(version: ModelVersion) -> Runtime:
    """The runtime the batcher holds for the version (the same session as online requests), else
    one loaded for jobs (the latest only: a worker runs one chunk at a time)."""
    return _shelf.runtime(version.pk, version.sha256)


def rows_per_run(arrays: dict[str, np.ndarray]) -> int:
    """The most rows per inference: PADDOCK_JOB_RUN_ROWS, fewer when the rows are large."""
    per_row = sum(a.itemsize * int(np.prod(a.shape[1:])) for a in arrays.values()) or 1
    return max(1, min(settings.PADDOCK_JOB_RUN_ROWS, settings.PADDOCK_JOB_RUN_BYTES // per_row))


class RunSizes:
    """Rows per inference for each version, tuned on this worker. A small MLP runs fastest at a
    thousand rows, a convolutional net on the CPU at a few dozen (its activations leave the
    cache): the first inferences of a version try the largest size, then halve it while rows/s
    improves, and the best size is kept for the process's later chunks.

    Each size is judged on its own runs after its first (a new shape's first run allocates),
    over at least JUDGE_RUNS runs and JUDGE_SECONDS of inference."""

    JUDGE_RUNS = 2
    JUDGE_SECONDS = 0.02
    SMALLEST = 8

    def __init__(self) -> None:
        self.best: dict[tuple[int, str], int] = {}
        self.trials: dict[tuple[int, str], list[list[float]]] = {}  # [size, runs, rows, seconds], per size tried

    def next(self, key: tuple[int, str], largest: int) -> int:
        """The size of the next inference."""
        if key in self.best:
            return min(self.best[key], largest)
        trials = self.trials.setdefault(key, [[largest, 0, 0, 0.0]])
        return int(trials[-1][0])

    def record(self, key: tuple[int, str], size: int, rows: int, seconds: float) -> None:
        """An inference of `rows` rows (asked for `size`) took `seconds`; a short last run is not judged."""
        trials = self.trials.get(key)
        if key in self.best or not trials or rows != size or int(trials[-1][0]) != size:
            return
        trial = trials[-1]
        trial[1] += 1
        if trial[1] == 1:
            return  # the first run of a shape
        trial[2] += rows
        trial[3] += seconds
        if trial[1] <= self.JUDGE_RUNS or trial[3] < self.JUDGE_SECONDS:
            return
        rates = [(t[2] / t[3], int(t[0])) for t in trials if t[3] > 0]
        worse = len(rates) >= 2 and rates[-1][0] < rates[-2][0]
        if worse or size // 2 < self.SMALLEST:
            self.best[key] = max(rates)[1]
            logger.info("batch jobs of version %s run %d rows per inference (rows/s by size: %s)", key[0],
                        self.best[key], ", ".join(f"{n}: {r:.0f}" for r, n in rates))
            return
        trials.append([size // 2, 0, 0, 0.0])


_run_sizes = RunSizes()


def compute_chunk(job: BatchJob, chunk: JobChunk, runtime: Runtime) -> tuple[dict[str, np.ndarray], float]:
    """The chunk's outputs, run in large batches, yielding to online requests; and compute seconds."""
    version = job.version
    arrays = {t["name"]: np.load(services.input_path(job, i), mmap_mode="r")[chunk.start:chunk.stop]
              for i, t in enumerate(version.inputs)}
    one_row = any(t["shape"] and t["shape"][0] == 1 for t in version.inputs)
    largest = 1 if one_row else rows_per_run(arrays)
    key = (version.pk, version.sha256)
    parts: dict[str, list[np.ndarray]] = {t["name"]: [] for t in version.outputs}
    computing, told, unreported, start = 0.0, time.monotonic(), 0, 0
    while start < chunk.rows:
        step = _run_sizes.next(key, largest)
        feed = {name: np.ascontiguousarray(a[start:start + step]) for name, a in arrays.items()}
        feed = {name: a.astype(object) if a.dtype.kind == "S" else a for name, a in feed.items()}  # BYTES
        began = time.perf_counter()
        outputs = runtime.run(feed)
        took = time.perf_counter() - began
        computing += took
        rows = min(step, chunk.rows - start)
        _run_sizes.record(key, step, rows, took)
        for name in parts:
            parts[name].append(outputs[name])
        start += rows
        unreported += rows
        if time.monotonic() - told >= REPORT_SECONDS:  # one Redis round trip now and then, not per run
            if progress.tick(job.pk, job.model.name, chunk.index, start, unreported):
                raise Cancelled()
            told, unreported = time.monotonic(), 0
        if settings.PADDOCK_JOB_ONLINE_YIELD and online_busy(ONLINE_RECENT_SECONDS):
            time.sleep(took * settings.PADDOCK_JOB_ONLINE_YIELD)  # online requests first
    if unreported:
        progress.processed(job.model.name, unreported)
    return {name: np.concatenate(pieces) for name, pieces in parts.items()}, computing


def write_atomically(target: Path, outputs: dict[str, np.ndarray]) -> None:
    """Whole or absent: a temporary file beside the target, flushed to disk, then renamed."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as out:
        named: dict[str, Any] = {f"o{i}": outputs[name] for i, name in enumerate(outputs)}
        np.savez(out, **named)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, target)


def run_chunk(job_id: int, index: int, worker: str) -> str:
    """Claim and run one chunk (steps 1-4 above); what happened, for the task's result."""
    chunk = services.claim_chunk(job_id=job_id, index=index, worker=worker)
    if chunk is None:
        return "not claimable: done, taken, or its job ended"
    job = chunk.job
    target = services.chunk_path(job, index)
    with Lease(f"chunk:{chunk.pk}", worker):
        try:
            seconds = 0.0
            if not target.exists():
                outputs, seconds = compute_chunk(job, chunk, runtime_for(job.version))
                rows = {len(a) for a in outputs.values()}
                if rows != {chunk.rows}:
                    raise RuntimeError(f"the model returned {sorted(rows)} rows for {chunk.rows} inputs")
                write_atomically(target, {t["name"]: outputs[t["name"]] for t in job.version.outputs})
            progress.report(job.pk, index, chunk.rows)
        except Cancelled:
            return "cancelled"
        except Exception as exc:  # noqa: BLE001 - the runtime's message is the chunk's outcome
            logger.warning("job %s chunk %s failed: %s", job.uid, index, exc)
            services.fail_chunk(chunk=chunk, error=f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))
            return "failed"
    services.finish_chunk(chunk=chunk, seconds=seconds)
    return "done"


def _chunk_outputs(job: BatchJob) -> Iterator[dict[str, np.ndarray]]:
    names = [t["name"] for t in job.version.outputs]
    for index in range(job.chunks_total):
        with np.load(services.chunk_path(job, index), allow_pickle=False) as stored:
            yield {name: stored[f"o{i}"] for i, name in enumerate(names)}


def assemble_output(job_id: int, worker: str) -> str:
    """Stream every chunk's outputs, in order, into the output file, then end the job; a failure
    here (a full disk) fails the job with the reason rather than leaving it assembling."""
    job = BatchJob.objects.select_related("version", "model").get(pk=job_id)
    if job.state != JobState.ASSEMBLING:
        return f"not assembling ({job.state})"
    target = services.output_path(job)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with Lease(f"assembly:{job.pk}", worker):
        try:
            with temporary.open("wb") as out:  # the writer may close it (pyarrow does)
                write_outputs(out, job.output_format, job.version.outputs, job.rows_total,
                              lambda: _chunk_outputs(job))
            sha256, size = _hash_file(temporary)  # also flushes it to disk
            os.replace(temporary, target)
        except Exception as exc:  # noqa: BLE001 - the job ends failed with the reason
            logger.exception("assembling job %s failed", job.uid)
            temporary.unlink(missing_ok=True)
            services.fail_job(job_id=job.pk, error=f"assembling the output failed: {type(exc).__name__}: {exc}")
            return "failed"
    services.finish_job(job_id=job.pk, sha256=sha256, size=size)
    return "succeeded"


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("r+b") as stored:
        os.fsync(stored.fileno())
        while piece := stored.read(1024 * 1024):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size
