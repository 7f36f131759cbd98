"""Validation in a real Celery worker process: a real load and smoke inference, stored as a report;
in a child process with limits, so an artifact that exhausts memory, spins or hangs fails alone,
and a validation whose worker dies is retried a bounded number of times."""

import json
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from console.audit import Actor
from console.models import AuditEvent
from registry import services
from registry.isolation import Limits, Outcome, validate_in_child
from registry.models import ModelVersion, RegisteredModel
from tests import models as built
from tests.conftest import Process, child_env, spawn_worker, stop, wait_until
from tests.integration.conftest import Served
from tests.integration.test_serving import infer_json

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


@pytest.fixture
def engineer(client_for: Any, teams: dict[str, Any], cast: dict[str, Any]) -> Any:
    services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    return client_for("engineer", "read", "manage")


def upload_and_wait(client: Any, data: bytes, name: str = "model.onnx", **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/models/iris/versions/", {"artifact": SimpleUploadedFile(name, data), **fields},
                           format="multipart")
    assert response.status_code == 201, response.content
    number = response.json()["number"]

    def finished() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/models/iris/versions/{number}/").json()
        return body if body["status"] in ("ready", "failed") else None

    return wait_until(finished, timeout=90, interval=0.2)


def test_a_worker_loads_and_smoke_tests_an_onnx_version(engineer: Any) -> None:
    body = upload_and_wait(engineer, built.mlp_onnx(inputs=8, outputs=3))
    assert body["status"] == "ready", body["status_reason"]
    report = body["validation_report"]
    assert report["runtime"] == "onnxruntime"
    assert report["provider"] == "CPUExecutionProvider"
    assert report["load_ms"] > 0
    assert [run["batch_size"] for run in report["runs"]] == [1, 8]
    assert [run["output_shapes"] for run in report["runs"]] == [{"probs": [1, 3]}, {"probs": [8, 3]}]
    assert all(isinstance(run["latency_ms"], float) for run in report["runs"])  # measured, not judged
    event = AuditEvent.objects.get(action="version.validated")
    assert event.actor_username == "worker"
    assert event.after == {"status": "ready", "reason": "", "provider": "CPUExecutionProvider"}


def test_a_worker_validates_torchscript_with_torch(engineer: Any) -> None:
    body = upload_and_wait(engineer, built.torchscript_linear(), name="linear.pt",
                           signature=json.dumps(built.TORCHSCRIPT_SIGNATURE))
    assert body["status"] == "ready", body["status_reason"]
    assert body["validation_report"]["runtime"] == "torch"
    assert body["validation_report"]["provider"] == "cpu"
    assert [run["output_shapes"] for run in body["validation_report"]["runs"]] == [{"y": [1, 2]}, {"y": [8, 2]}]


def test_a_version_onnxruntime_refuses_is_failed_with_the_runtime_error(engineer: Any) -> None:
    body = upload_and_wait(engineer, built.broken_onnx())
    assert body["status"] == "failed"
    assert body["status_reason"].startswith("onnx runtime could not load the artifact: ")
    assert "MatMul" in body["status_reason"]
    assert body["validation_report"] == {}
    assert AuditEvent.objects.filter(action="version.validation_failed").count() == 1


def test_external_data_is_found_beside_the_model_by_the_runtime(engineer: Any) -> None:
    weights = SimpleUploadedFile("weights.bin", b"\x00\x00\x80\x3f" * 8)
    body = upload_and_wait(engineer, built.external_data_onnx("weights.bin"), external_data=[weights])
    assert body["status"] == "ready", body["status_reason"]
    assert body["validation_report"]["runs"][0]["output_shapes"] == {"y": [1, 2]}


def test_validation_is_idempotent(engineer: Any) -> None:
    """A second delivery of the task finds the version already claimed and does nothing."""
    from registry.tasks import validate_version

    upload_and_wait(engineer, built.mlp_onnx())
    version = ModelVersion.objects.get()
    assert validate_version(version.pk) == "already claimed or done"
    assert AuditEvent.objects.filter(action="version.validated").count() == 1


GIB = 1 << 30
WIDE_IN = [{"name": "x", "datatype": "FP32", "shape": [-1, 1024]}]  # slow_onnx's signature
WIDE_OUT = [{"name": "y", "datatype": "FP32", "shape": [-1, 1024]}]


def peak_resident_bytes(pid: int) -> int:
    """The most memory the process ever held (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_a_model_asking_for_16_gib_at_run_time_fails_alone_and_the_worker_serves_on(
        served: Served, web_server: str, celery_worker: Process, client_for: Any) -> None:
    worker = celery_worker.popen
    peak_before = peak_resident_bytes(worker.pid)
    engineer = client_for("engineer", "read", "manage")
    hog = upload_and_wait(engineer, built.memory_hog_onnx(gib=16))  # v2 of iris; inspection accepts it
    assert hog["status"] == "failed"
    assert hog["status_reason"] == "validation exceeded 2 GiB of memory"
    assert hog["validation_report"] == {}
    event = AuditEvent.objects.get(action="version.validation_failed")
    assert event.after == {"status": "failed", "reason": "validation exceeded 2 GiB of memory", "provider": None}
    # The same worker process, which never held the 16 GiB, still serves v1 and validates v3.
    assert worker.poll() is None
    assert peak_resident_bytes(worker.pid) < peak_before + GIB
    document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}]}
    status, _, answer = infer_json(web_server, served.token, "iris", document, version=1)
    assert status == 200, answer
    assert answer["outputs"][0]["shape"] == [1, 3]
    good = upload_and_wait(engineer, built.mlp_onnx(seed=7))
    assert (good["number"], good["status"]) == (3, "ready"), good["status_reason"]
    assert worker.poll() is None


def test_torch_asking_for_16_gib_fails_for_memory_too(tmp_path: Path) -> None:
    path = tmp_path / "hog.pt"
    path.write_bytes(built.torchscript_memory_hog(gib=16))
    signature = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    outcome = validate_in_child(path, fmt="torchscript", inputs=signature, outputs=[{**signature[0], "name": "y"}],
                                max_batch=8, limits=Limits.from_settings())
    assert outcome == Outcome(None, "validation exceeded 2 GiB of memory")


def test_a_validation_past_its_cpu_seconds_is_stopped_with_that_reason(tmp_path: Path) -> None:
    path = tmp_path / "slow.onnx"
    path.write_bytes(built.slow_onnx())  # ~100 MFLOP a row: 2052 rows at max batch 512, minutes of CPU
    outcome = validate_in_child(path, fmt="onnx", inputs=WIDE_IN, outputs=WIDE_OUT, max_batch=512,
                                limits=Limits(memory_bytes=2 * GIB, cpu_seconds=1, wall_seconds=600))
    assert outcome == Outcome(None, "validation exceeded 1 s of CPU time")


def test_a_validation_past_its_wall_clock_is_killed_with_that_reason(tmp_path: Path) -> None:
    path = tmp_path / "slow.onnx"
    path.write_bytes(built.slow_onnx())
    outcome = validate_in_child(path, fmt="onnx", inputs=WIDE_IN, outputs=WIDE_OUT, max_batch=512,
                                limits=Limits(memory_bytes=2 * GIB, cpu_seconds=600, wall_seconds=1))
    assert outcome == Outcome(None, "validation took longer than 1 s")


def stored_pending(model: RegisteredModel, number: int, data: bytes) -> ModelVersion:
    """A version row with its artifact, `pending`, and no validation queued for it."""
    version = ModelVersion(model=model, number=number, original_filename="slow.onnx", sha256=f"{number:064x}",
                           size=len(data), format="onnx", inputs=WIDE_IN, outputs=WIDE_OUT)
    version.artifact.save("slow.onnx", ContentFile(data), save=False)
    version.save()
    return version


def validation_child(worker_pid: int) -> int | None:
    """The pid of the worker's validation child, once it runs."""
    for children in Path(f"/proc/{worker_pid}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                if b"registry.isolation" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return int(pid)
            except OSError:
                continue
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended: only its parent's wait is missing


def test_a_worker_killed_mid_validation_takes_its_child_along_and_retries_are_bounded(
        engineer: Any, celery_worker: Process, tmp_path: Path) -> None:
    from registry.tasks import requeue_stale_validations, validate_version

    model = RegisteredModel.objects.get(name="iris")
    spent = upload_and_wait(engineer, built.mlp_onnx(seed=3))  # v1: its worker will have died three times
    killed = stored_pending(model, 2, built.slow_onnx())  # v2: minutes of smoke inference at batch 4096
    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-doomed"
    doomed = spawn_worker(tmp_path / "doomed.log", child_env(PADDOCK_CELERY_QUEUE=queue,
                                                             PADDOCK_VALIDATION_MAX_BATCH="4096"), name="doomed")
    try:
        validate_version.apply_async((killed.pk,), queue=queue)
        child = wait_until(lambda: validation_child(doomed.popen.pid), timeout=60)
        os.kill(doomed.popen.pid, signal.SIGKILL)
        doomed.popen.wait()
    finally:
        stop(doomed)
    wait_until(lambda: not alive(child), timeout=10)  # PR_SET_PDEATHSIG: no orphan keeps validating
    killed.refresh_from_db()
    assert (killed.status, killed.validation_attempts) == ("validating", 1)
    # Beat finds both stale: v2 is retried (attempt 2, by the suite's worker at batch 8), v1 has had 3.
    long_ago = timezone.now() - timedelta(hours=1)
    ModelVersion.objects.filter(pk=killed.pk).update(validation_started_at=long_ago)
    ModelVersion.objects.filter(number=spent["number"], model=model).update(
        status="validating", validation_started_at=long_ago, validation_attempts=3)
    requeue_stale_validations.delay()
    wait_until(lambda: not ModelVersion.objects.filter(status="validating").exists(), timeout=90, interval=0.2)
    killed.refresh_from_db()
    assert (killed.status, killed.validation_attempts) == ("ready", 2), killed.status_reason
    given_up = ModelVersion.objects.get(model=model, number=spent["number"])
    assert given_up.status == "failed"
    assert given_up.status_reason == ("validation did not finish after 3 attempts "
                                      "(the worker died or was stopped each time)")
    assert given_up.validation_attempts == 3
    assert AuditEvent.objects.filter(action="version.validation_failed", object_id=str(given_up.pk)).count() == 1
