"""Batch jobs on `make run` itself, with its defaults (SQLite, one worker, its embedded Redis):
the worker SIGKILLed mid-job, and the job still ends with exactly its N output rows, in input
order, none twice (chunk outputs are written whole or not at all; a chunk whose worker died is put
back by beat once its lease lapses and run again by the worker runstack starts anew)."""

import io
import os
import signal
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from tests import models as built
from tests.conftest import wait_until
from tests.reliability.stack import GUARD_SECONDS, WORKER, Stack, runstack

CHUNK = 8000  # rows per chunk: over a hundred inferences, about a second


def submit(stack: Stack, model: str, x: np.ndarray, chunk_size: int) -> dict[str, Any]:
    buffer = io.BytesIO()
    np.save(buffer, x)
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"chunk_size\"\r\n\r\n{chunk_size}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rows.npy\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + buffer.getvalue() + \
        f"\r\n--{boundary}--\r\n".encode()
    job: dict[str, Any] = stack.api("POST", f"/api/v1/models/{model}/jobs/", body,
                                    f"multipart/form-data; boundary={boundary}")
    return job


def download(stack: Stack, path: str) -> bytes:
    request = urllib.request.Request(f"{stack.url}{path}", headers={"Authorization": f"Bearer {stack.token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        data: bytes = response.read()
        return data


def test_a_job_whose_worker_is_killed_mid_run_ends_with_every_row_once_in_order(tmp_path: Path) -> None:
    artifact = built.slow_onnx(width=256, layers=32)  # ~4 MFLOP a row: each chunk runs long enough to be cut
    # 64 rows an inference (the user's setting): a chunk reports its rows every 0.1 s whatever the
    # machine's speed, so the test sees one mid-way.
    with runstack(tmp_path, "manage", "read", PADDOCK_JOB_RUN_ROWS="64") as stack:
        stack.upload("slow", artifact)
        x = np.random.default_rng(5).standard_normal((32_000, 256)).astype(np.float32)
        job = submit(stack, "slow", x, chunk_size=CHUNK)
        path = f"/api/v1/models/slow/jobs/{job['id']}/"

        def midway() -> dict[str, Any] | None:
            """Past a fifth of the rows, and a chunk with a quarter or more of its rows to go (it
            reports them every 0.1 s, so the last report may lag by that much): the kill lands
            while a chunk runs, not between two."""
            now = stack.api("GET", path)
            done = now["progress"]["rows_done"]
            inside = 0 < done % CHUNK <= CHUNK * 3 // 4 and now["progress"]["chunks"]["running"] == 1
            return now if 0.2 * len(x) <= done < 0.7 * len(x) and inside else None

        worker = stack.child(WORKER)  # found first: the kill follows the sight of the chunk at once
        seen = wait_until(midway, timeout=GUARD_SECONDS, interval=0.05)
        os.kill(worker, signal.SIGKILL)
        killed_at = time.monotonic()

        def ended() -> dict[str, Any] | None:
            now = stack.api("GET", path)
            return now if now["state"] in ("succeeded", "failed", "cancelled") else None

        done = wait_until(ended, timeout=GUARD_SECONDS * 2, interval=0.5)
        assert done["state"] == "succeeded", (done, stack.log.read_text()[-3000:])
        assert stack.child(WORKER) != worker  # runstack started a new one
        data = download(stack, done["output_url"])
    got = np.load(io.BytesIO(data), allow_pickle=False)
    expected = ort.InferenceSession(artifact).run(None, {"x": x})[0]
    assert got.shape == expected.shape == (len(x), 256)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)  # every row once, in input order
    assert done["progress"]["chunks"]["retried"] >= 1, done["progress"]  # the killed worker's chunk ran again
    print(f"\nkilled at {seen['progress']['rows_done']} of {len(x)} rows; job ended "
          f"{time.monotonic() - killed_at:.1f} s after the kill")
