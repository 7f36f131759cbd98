"""Batch jobs through real processes: the web process takes the file (API), the real Celery worker
runs its chunks with onnxruntime, the output is downloaded and compared with onnxruntime run
directly. Refusals leave nothing behind; a chunk that keeps failing fails its job by name."""

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis
import requests
from django.conf import settings

from console.audit import Actor
from console.bodylimit import MULTIPART_OVERHEAD_BYTES
from console.models import AuditEvent
from console.services import create_token
from registry import services as registry
from serving.models import BatchJob, ChunkState, JobChunk
from serving.v2.wire import fresh_heartbeats, workers_key
from tests import models as built
from tests.conftest import spawn_worker, stop, wait_until
from tests.integration.conftest import register_ready
from tests.security.test_request_bodies import stream


@pytest.fixture
def scorer(transactional_db: Any, cast: dict[str, Any], teams: dict[str, Any], celery_worker: Any,
           web_server: str) -> dict[str, Any]:
    """Model `iris` (8 inputs → 3 probabilities) with v1 ready, and a manage+read token of its engineer."""
    actor = Actor(user=cast["engineer"])
    model = registry.create_model(actor=actor, name="iris", team=teams["ml"])
    data = built.mlp_onnx(inputs=8, outputs=3)
    version = register_ready(actor=actor, model=model, data=data)
    _, token = create_token(actor=actor, user=cast["engineer"], name="jobs", scopes=["manage", "read"])
    redis.Redis.from_url(settings.REDIS_URL).delete(f"{settings.PADDOCK_REDIS_PREFIX}:jobs:rows")
    return {"base": web_server, "token": token, "version": version, "model": model, "actor": actor}


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)


def csv_of(x: np.ndarray) -> bytes:
    header = ",".join(f"x.{i}" for i in range(x.shape[1]))
    return (header + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n").encode()


def submit(scorer: dict[str, Any], filename: str, data: bytes, **fields: Any) -> requests.Response:
    return requests.post(f"{scorer['base']}/api/v1/models/iris/jobs/", files={"file": (filename, data)},
                         data={k: str(v) for k, v in fields.items()},
                         headers={"Authorization": f"Bearer {scorer['token']}"}, timeout=60)


def get(scorer: dict[str, Any], path: str, **options: Any) -> requests.Response:
    return requests.get(f"{scorer['base']}{path}", headers={"Authorization": f"Bearer {scorer['token']}"},
                        timeout=60, **options)


def finished(scorer: dict[str, Any], job_id: str, timeout: float = 120) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        job = get(scorer, f"/api/v1/models/iris/jobs/{job_id}/").json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    return wait_until(ended, timeout=timeout, interval=0.2)


def reference(version: Any, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(Path(version.artifact.path))).run(None, {"x": x})[0]


def jobs_folder() -> Path:
    return Path(settings.MEDIA_ROOT, "jobs")


def test_a_csv_job_is_scored_in_chunks_and_downloaded_with_its_checksum(scorer: dict[str, Any]) -> None:
    x = rows(2500)
    response = submit(scorer, "batch.csv", csv_of(x), chunk_size=700)
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["state"], job["version"], job["rows_total"], job["chunks_total"], job["output_format"]) == \
        ("queued", 1, 2500, 4, "csv")
    done = finished(scorer, job["id"])
    assert done["state"] == "succeeded", done
    assert done["progress"]["rows_done"] == 2500 and done["progress"]["percent"] == 100.0
    download = get(scorer, done["output_url"], stream=True)
    assert download.status_code == 200
    body = b"".join(download.iter_content(64 * 1024))
    assert download.headers["X-Checksum-Sha256"] == hashlib.sha256(body).hexdigest() == done["output_sha256"]
    assert "batch.predictions.csv" in download.headers["Content-Disposition"]
    header, *lines = list(csv.reader(io.StringIO(body.decode())))
    assert header == ["probs.0", "probs.1", "probs.2"]
    got = np.array([[float(v) for v in line] for line in lines], dtype=np.float32)
    np.testing.assert_allclose(got, reference(scorer["version"], x), rtol=1e-5, atol=1e-6)
    events = AuditEvent.objects.filter(object_type="serving.batchjob").order_by("id")
    actions = list(events.values_list("action", flat=True))
    assert actions == ["job.submitted", "job.finished"]
    metrics = get(scorer, "/metrics").text  # the rows the chunks ran, summed over the workers
    assert 'paddock_job_rows_processed_total{model="iris"} 2500.0' in metrics, metrics[-2000:]
    # Its work files are gone; the source and the output stay (until retention).
    assert sorted(p.name for p in (jobs_folder() / job["id"]).iterdir()) == ["output.csv", "source.csv"]


def test_an_npz_job_writes_npz_and_a_requested_jsonl_output(scorer: dict[str, Any]) -> None:
    x = rows(300, seed=3)
    buffer = io.BytesIO()
    np.savez(buffer, x=x)
    job = submit(scorer, "inputs.npz", buffer.getvalue(), output_format="jsonl").json()
    done = finished(scorer, job["id"])
    assert done["state"] == "succeeded", done
    body = get(scorer, done["output_url"]).content
    got = np.array([json.loads(line)["probs"] for line in body.decode().splitlines()], dtype=np.float32)
    np.testing.assert_allclose(got, reference(scorer["version"], x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("filename", "data", "message"), [
    ("batch.csv", b"x.0,x.1\n1,2\n",
     "input 'x' has 2 columns ('x.0' to 'x.1'), the signature wants 8 (rows of shape [8])"),
    ("batch.txt", b"1,2,3\n", "cannot tell the format of 'batch.txt' from its extension: name it .npy, .npz, .parquet, "
                               ".csv or .jsonl, or declare one of npy, npz, parquet, csv, jsonl"),
    ("batch.csv", b"", "the file has no rows"),
    ("batch.csv", b"x\n1\n", "row 1: input 'x' has shape [], the signature wants [8]"),
    ("batch.csv", b"y\n1\n", "missing column 'x' (or flattened columns 'x.0', 'x.1', ...)"),
], ids=["missing-columns", "unknown-format", "empty", "wrong-shape", "wrong-name"])
def test_a_file_that_does_not_fit_the_signature_is_refused_and_nothing_is_kept(
        scorer: dict[str, Any], filename: str, data: bytes, message: str) -> None:
    response = submit(scorer, filename, data)
    assert (response.status_code, response.json()) == (400, {"detail": message})
    assert not BatchJob.objects.exists()
    assert not AuditEvent.objects.filter(object_type="serving.batchjob").exists()
    assert not jobs_folder().exists() or not any(jobs_folder().iterdir())


def test_a_bad_value_is_named_by_row_and_column(scorer: dict[str, Any]) -> None:
    x = csv_of(rows(5)).decode().splitlines()
    x[3] = "abc" + x[3][x[3].index(","):]
    response = submit(scorer, "batch.csv", ("\n".join(x) + "\n").encode())
    assert response.status_code == 400
    assert response.json()["detail"] == "row 3, column 'x.0': 'abc' is not a FP32 number"


def test_an_input_over_the_limit_is_413_before_it_is_read(scorer: dict[str, Any]) -> None:
    limit = settings.PADDOCK_MAX_JOB_INPUT_BYTES
    over = limit + MULTIPART_OVERHEAD_BYTES + 1
    answer = stream(scorer["base"], "/api/v1/models/iris/jobs/", declared=True, total=over,
                    headers={"Authorization": f"Bearer {scorer['token']}"})
    assert answer.status == 413
    assert answer.json() == {"detail": f"input file is {over} bytes; the limit is {limit} bytes"}
    assert answer.sent < over  # refused before the body was read
    assert not BatchJob.objects.exists()


def test_an_unknown_version_or_job_is_404_and_a_viewer_cannot_submit(
        scorer: dict[str, Any], cast: dict[str, Any]) -> None:
    response = submit(scorer, "batch.csv", csv_of(rows(3)), version=7)
    assert (response.status_code, response.json()["detail"]) == (404, "model 'iris' has no version 7")
    response = get(scorer, "/api/v1/models/iris/jobs/not-a-job/")
    assert (response.status_code, response.json()["detail"]) == (404, "model 'iris' has no job not-a-job")
    _, viewer = create_token(actor=Actor(user=cast["viewer"]), user=cast["viewer"], name="v",
                             scopes=["manage", "read"])
    refused = requests.post(f"{scorer['base']}/api/v1/models/iris/jobs/", files={"file": ("b.csv", b"x\n1\n")},
                            headers={"Authorization": f"Bearer {viewer}"}, timeout=30)
    assert refused.status_code == 403, refused.text


def test_a_chunk_that_keeps_failing_fails_the_job_naming_the_chunk_and_rows(scorer: dict[str, Any]) -> None:
    model = registry.create_model(actor=scorer["actor"], name="picky", team=scorer["model"].team)
    register_ready(actor=scorer["actor"], model=model, data=built.picky_mlp_onnx(limit=50.0))
    x = rows(40)
    x[25, 2] = 99.0  # chunk 2 (rows 20-29) holds a value onnxruntime fails on
    response = requests.post(f"{scorer['base']}/api/v1/models/picky/jobs/",
                             files={"file": ("b.csv", csv_of(x))}, data={"chunk_size": "10"},
                             headers={"Authorization": f"Bearer {scorer['token']}"}, timeout=60)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]

    def ended() -> dict[str, Any] | None:
        job = get(scorer, f"/api/v1/models/picky/jobs/{job_id}/").json()
        return job if job["state"] in ("succeeded", "failed") else None

    failed = wait_until(ended, timeout=120, interval=0.2)
    assert failed["state"] == "failed"
    assert failed["error"].startswith(f"chunk 2 (rows 20-29) failed {settings.PADDOCK_JOB_CHUNK_ATTEMPTS} times: ")
    assert "Gather" in failed["error"] or "indices" in failed["error"], failed["error"]
    assert get(scorer, f"/api/v1/models/picky/jobs/{job_id}/output/").status_code == 409
    assert AuditEvent.objects.filter(action="job.failed", object_id=str(BatchJob.objects.get().pk)).exists()


def test_a_cancelled_job_stops_and_says_so(scorer: dict[str, Any]) -> None:
    response = submit(scorer, "batch.csv", csv_of(rows(20_000)), chunk_size=200)  # 100 chunks: still running
    job_id = response.json()["id"]
    cancel = requests.post(f"{scorer['base']}/api/v1/models/iris/jobs/{job_id}/cancel/",
                           headers={"Authorization": f"Bearer {scorer['token']}"}, timeout=30)
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["state"] == "cancelled"
    again = requests.post(f"{scorer['base']}/api/v1/models/iris/jobs/{job_id}/cancel/",
                          headers={"Authorization": f"Bearer {scorer['token']}"}, timeout=30)
    assert (again.status_code, again.json()["detail"]) == (409, f"job {job_id} has already ended (cancelled)")
    job = BatchJob.objects.get()
    wait_until(lambda: not JobChunk.objects.filter(job=job, state=ChunkState.RUNNING).exists(), timeout=30)
    assert not JobChunk.objects.filter(job=job, state=ChunkState.PENDING).exists()
    assert AuditEvent.objects.filter(action="job.cancelled", object_id=str(job.pk)).exists()


def test_chunks_run_on_the_worker_holding_the_version_not_on_a_bystander(scorer: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    # Two workers, and iris's deployment wants one (min_workers 1): one holds the version, the
    # other does not. Every chunk goes to the holder's own jobs queue; before, both workers read
    # the one jobs queue, and the bystander loaded the version for the chunks it took.
    bystander = spawn_worker(tmp_path / "bystander.log", name="bystander")
    try:
        def one_of_two_holds() -> str | None:
            beats = fresh_heartbeats(redis.Redis.from_url(settings.REDIS_URL).hgetall(workers_key()))
            ours = {name: beat for name, beat in beats.items() if beat.get("jobs_queue")}
            holders = [name for name, beat in ours.items()
                       if any(held["id"] == scorer["version"].pk for held in beat["held"])]
            return holders[0] if len(ours) >= 2 and len(holders) == 1 else None

        holder = wait_until(one_of_two_holds, timeout=60, interval=0.2)
        response = submit(scorer, "batch.csv", csv_of(rows(1600)), chunk_size=100)
        assert response.status_code == 201, response.text
        done = finished(scorer, response.json()["id"])
        assert done["state"] == "succeeded", done
        workers = set(JobChunk.objects.filter(job__uid=done["id"]).values_list("worker", flat=True))
        assert workers == {holder}
    finally:
        stop(bystander)
