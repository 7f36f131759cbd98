"""Batch jobs through Paddock's API, as a user drives them (docs/jobs.md): submit a file, poll,
cancel; and the chunks' figures, which only the database has."""

import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.servers import Paddock

ENDED = {"succeeded", "failed", "cancelled"}


def submit_job(paddock: Paddock, model: str, inputs: Path, chunk_size: int) -> dict[str, Any]:
    """POSTs the file as a job (multipart, as `curl -F` sends it); the job as the API answers."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"chunk_size\"\r\n\r\n{chunk_size}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{inputs.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + inputs.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    status, payload = paddock.request("POST", f"/api/v1/models/{model}/jobs/", body,
                                      f"multipart/form-data; boundary={boundary}")
    if status != 201:
        raise RuntimeError(f"job submission for {model} failed: {status} {payload[:500]!r}")
    return dict(json.loads(payload))


def job(paddock: Paddock, model: str, job_id: str) -> dict[str, Any]:
    """The job as GET …/jobs/{id}/ shows it."""
    status, payload = paddock.get(f"/api/v1/models/{model}/jobs/{job_id}/")
    if status != 200:
        raise RuntimeError(f"job {job_id} of {model}: {status} {payload[:300]!r}")
    return dict(json.loads(payload))


def wait_job(paddock: Paddock, model: str, job_id: str, until: set[str], timeout: float = 900,
             every: float = 0.1) -> dict[str, Any]:
    """Polls the job until its state is one of `until` or it ended; RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = job(paddock, model, job_id)
        if found["state"] in until | ENDED:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} of {model} still {found['state']} after {timeout:.0f} s")
        time.sleep(every)


def cancel_job(paddock: Paddock, model: str, job_id: str) -> None:
    """POST …/cancel/; a job that ended meanwhile answers 409, which is fine here."""
    status, payload = paddock.request("POST", f"/api/v1/models/{model}/jobs/{job_id}/cancel/")
    if status not in (200, 409):
        raise RuntimeError(f"cancel of job {job_id} of {model}: {status} {payload[:300]!r}")


def rows_done(paddock: Paddock, model: str, job_ids: list[str]) -> int:
    """Rows done over these jobs, as their chunks last reported them."""
    return sum(int(job(paddock, model, job_id)["progress"]["rows_done"]) for job_id in job_ids)


def stamp(text: str) -> float:
    """An API timestamp as seconds since the epoch (the bench runs on Paddock's machine: one clock)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def chunk_times(paddock: Paddock, job_id: str) -> list[dict[str, float]]:
    """Each chunk's compute seconds, its claim-to-done span and its end, from the database (the
    API shows a job's progress, not its chunks); [] when they cannot be read."""
    script = ("import json; from serving.models import JobChunk; print(json.dumps([[c.seconds or 0.0, "
              "c.claimed_at.timestamp(), c.finished_at.timestamp()] for c in JobChunk.objects.filter("
              f"job__uid='{job_id}').order_by('index') if c.claimed_at and c.finished_at]))")
    try:
        found = json.loads(paddock.manage("shell", "-c", script).splitlines()[-1])
    except (RuntimeError, ValueError, IndexError):
        return []
    return [{"seconds": seconds, "span": finished - claimed, "finished": finished}
            for seconds, claimed, finished in found]
