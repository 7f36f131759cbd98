"""Hostile batch jobs: another team's jobs are not there at all (list, read, download, cancel:
404), a file that would be unpickled is refused, and a viewer cannot submit."""

import io
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from rest_framework.test import APIClient

from console.audit import Actor
from registry import services as registry
from serving.jobs import services as jobs
from serving.models import BatchJob, JobChunk
from tests.conftest import ready_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job(cast: dict[str, Any], teams: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> BatchJob:
    """A job of model `iris` (team ml), its chunks never sent: no worker is under test here, and
    the session's worker would run them while the test's tables are emptied."""
    monkeypatch.setattr(jobs, "queue_chunks", lambda *args, **kwargs: None)
    model = registry.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    ready_version(model, 1)
    rows = "x.0,x.1,x.2,x.3,x.4,x.5,x.6,x.7\n" + "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8\n" * 5
    return jobs.submit_job(actor=Actor(user=cast["engineer"]), model=model,
                           upload=SimpleUploadedFile("rows.csv", rows.encode()))


def test_another_teams_jobs_are_not_there(job: BatchJob, client_for: Callable[..., APIClient]) -> None:
    outsider = client_for("outsider")
    base = f"/api/v1/models/iris/jobs/{job.uid}/"
    for method, path in [("get", "/api/v1/models/iris/jobs/"), ("get", base), ("get", f"{base}output/"),
                         ("post", f"{base}cancel/")]:
        answer = getattr(outsider, method)(path)
        assert (answer.status_code, answer.json()) == (404, {"detail": "model 'iris' not found"}), (method, path)
    assert BatchJob.objects.get().state == "queued"


def test_a_pickled_array_is_refused_and_nothing_is_kept(job: BatchJob, client_for: Callable[..., APIClient]) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    answer = client_for("engineer").post("/api/v1/models/iris/jobs/",
                                         {"file": SimpleUploadedFile("rows.npy", buffer.getvalue())},
                                         format="multipart")
    assert answer.status_code == 400
    assert answer.json()["detail"] == ("array 'x' holds Python objects (a pickled object array), which Paddock "
                                       "does not load: save a numeric or string array")
    assert BatchJob.objects.count() == 1


def test_a_viewer_cannot_submit_or_cancel(job: BatchJob, client_for: Callable[..., APIClient]) -> None:
    viewer = client_for("viewer")
    answer = viewer.post("/api/v1/models/iris/jobs/", {"file": SimpleUploadedFile("r.csv", b"x.0\n1\n")},
                         format="multipart")
    assert answer.status_code == 403
    answer = viewer.post(f"/api/v1/models/iris/jobs/{job.uid}/cancel/")
    assert answer.status_code == 403
    assert viewer.get(f"/api/v1/models/iris/jobs/{job.uid}/").status_code == 200


def test_a_claim_that_waited_on_a_cancel_does_not_take_the_cancelled_chunk(job: BatchJob) -> None:
    """The claim's UPDATE waits on the rows cancel holds; once cancel commits, PostgreSQL re-checks
    the claim's conditions on the chunk's new row, and finds it cancelled (a condition on the job,
    judged on the claim's older snapshot, used to let it through: a chunk left pending for ever)."""
    claims: list[Any] = []

    def claim() -> None:
        try:
            claims.append(jobs.claim_chunk(job_id=job.pk, index=0, worker="racer"))
        finally:
            connection.close()

    with transaction.atomic():
        jobs.cancel_job(actor=Actor.system("tests"), job=job)
        racer = threading.Thread(target=claim)
        racer.start()
        with connection.cursor() as cursor:  # until the claim waits on cancel's row lock
            waiting = 0
            for _ in range(200):
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # the view is cached per transaction
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                waiting = cursor.fetchone()[0]
                if waiting:
                    break
                time.sleep(0.01)
            assert waiting, "the claim never waited on the cancel"
    racer.join(timeout=30)
    assert claims == [None]
    assert set(JobChunk.objects.filter(job=job).values_list("state", flat=True)) == {"cancelled"}
