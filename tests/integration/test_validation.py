"""Validation in a real Celery worker process: a real load and smoke inference, stored as a report."""

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from console.audit import Actor
from console.models import AuditEvent
from registry import services
from registry.models import ModelVersion
from tests import models as built
from tests.conftest import wait_until

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
