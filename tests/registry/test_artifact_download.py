"""Downloading a version's artifact, over the API and from the console: the bytes as uploaded
(a zip with the external data where there is some), its sha256, the audit event, every refusal."""

import hashlib
import io
import zipfile
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.test import Client

from console.audit import Actor
from console.models import AuditEvent
from registry import services
from registry.models import ModelVersion
from tests import models as built

pytestmark = pytest.mark.django_db

WEIGHTS = b"\x00\x00\x80\x3f" * 8  # the 4×2 float32 ones that external_data_onnx reads


@pytest.fixture
def model(teams: dict[str, Any], cast: dict[str, Any]) -> Any:
    return services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])


def register(model: Any, data: bytes, name: str = "model.onnx", external_data: dict[str, bytes] | None = None
             ) -> ModelVersion:
    external: list[UploadedFile] = [SimpleUploadedFile(filename, content)
                                    for filename, content in (external_data or {}).items()]
    version, _ = services.register_version(actor=Actor.system("tests"), model=model,
                                           upload=SimpleUploadedFile(name, data), external_data=external)
    return version


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def downloads() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="version.downloaded").order_by("id"))


def test_a_single_file_artifact_streams_as_uploaded_with_its_sha256(client_for: Any, model: Any) -> None:
    data = built.mlp_onnx()
    register(model, data, name="classifier.onnx")
    response = client_for("viewer", "read").get("/api/v1/models/iris/versions/1/artifact")
    assert response.status_code == 200
    assert body(response) == data
    digest = hashlib.sha256(data).hexdigest()
    assert response["X-Checksum-Sha256"] == digest
    assert response["ETag"] == f'"{digest}"'
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Disposition"] == 'attachment; filename="iris-v1.onnx"'


def test_each_download_is_audited_with_who_and_which_version(client_for: Any, model: Any) -> None:
    version = register(model, built.mlp_onnx())
    response = client_for("viewer", "read").get("/api/v1/models/iris/versions/1/artifact/")  # the slash too
    assert response.status_code == 200
    [event] = downloads()
    assert (event.actor_username, event.actor_token_name) == ("viewer", "viewer-test")
    assert (event.object_type, event.object_id) == ("registry.modelversion", str(version.pk))
    assert event.after == {"number": 1, "sha256": version.sha256, "filename": "iris-v1.onnx", "files": ["model.onnx"]}


def test_an_external_data_model_downloads_as_a_zip_of_its_files(client_for: Any, model: Any) -> None:
    graph = built.external_data_onnx("data/weights.bin")
    version = register(model, graph, external_data={"weights.bin": WEIGHTS})
    assert version.metadata["external_data"] == ["data/weights.bin"]
    response = client_for("engineer", "read").get("/api/v1/models/iris/versions/1/artifact",
                                                  HTTP_ACCEPT="application/zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="iris-v1.zip"'
    payload = body(response)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["model.onnx", "data/weights.bin"]
        assert archive.read("model.onnx") == graph
        assert archive.read("data/weights.bin") == WEIGHTS
        contents = {name: hashlib.sha256(archive.read(name)).hexdigest() for name in archive.namelist()}
    # The header is the version's checksum, which the client recomputes from what it unzipped.
    recomputed = services.version_checksum(contents.pop("model.onnx"), contents)
    assert response["X-Checksum-Sha256"] == version.sha256 == recomputed
    assert response["ETag"] == f'"{version.sha256}-zip"'
    again = client_for("engineer", "read").get("/api/v1/models/iris/versions/1/artifact")
    assert body(again) == payload  # the same bytes each time: the ETag holds
    assert downloads()[0].after == {"number": 1, "sha256": version.sha256, "filename": "iris-v1.zip",
                                    "files": ["model.onnx", "data/weights.bin"]}


def test_an_unknown_version_is_404_with_its_message_and_not_audited(client_for: Any, model: Any) -> None:
    register(model, built.mlp_onnx())
    response = client_for("viewer", "read").get("/api/v1/models/iris/versions/9/artifact")
    assert response.status_code == 404
    assert response.json() == {"detail": "model 'iris' has no version 9"}
    assert downloads() == []


def test_another_teams_model_is_404_as_if_it_did_not_exist(client_for: Any, model: Any) -> None:
    register(model, built.mlp_onnx())
    response = client_for("outsider", "read").get("/api/v1/models/iris/versions/1/artifact")
    assert response.status_code == 404
    assert response.json() == {"detail": "model 'iris' not found"}
    assert downloads() == []


def test_a_token_without_the_read_scope_is_403(client_for: Any, model: Any) -> None:
    register(model, built.mlp_onnx())
    response = client_for("engineer", "predict").get("/api/v1/models/iris/versions/1/artifact")
    assert response.status_code == 403
    assert response.json() == {"detail": "token lacks the 'read' scope"}
    assert downloads() == []


def test_a_file_missing_from_storage_is_404_and_not_audited(client_for: Any, model: Any) -> None:
    version = register(model, built.external_data_onnx("weights.bin"), external_data={"weights.bin": WEIGHTS})
    default_storage.delete("models/iris/1/weights.bin")
    response = client_for("viewer", "read").get("/api/v1/models/iris/versions/1/artifact")
    assert response.status_code == 404
    assert response.json() == {"detail": "model 'iris' version 1: its stored file 'weights.bin' is missing"}
    assert downloads() == [] and ModelVersion.objects.filter(pk=version.pk).exists()


def test_the_console_download_is_the_same_file_and_audited(cast: dict[str, Any], model: Any) -> None:
    data = built.mlp_onnx()
    register(model, data)
    viewer = Client()
    viewer.force_login(cast["viewer"])
    page = viewer.get("/models/iris/")
    assert 'href="/models/iris/versions/1/artifact/" download' in page.content.decode()
    response = viewer.get("/models/iris/versions/1/artifact/")
    assert response.status_code == 200 and body(response) == data
    assert response["X-Checksum-Sha256"] == hashlib.sha256(data).hexdigest()
    [event] = downloads()
    assert event.actor_username == "viewer" and event.actor_token_name == ""


def test_the_console_download_refuses_outsiders_and_unknown_versions(cast: dict[str, Any], model: Any) -> None:
    register(model, built.mlp_onnx())
    outsider = Client()
    outsider.force_login(cast["outsider"])
    assert outsider.get("/models/iris/versions/1/artifact/").status_code == 404
    engineer = Client()
    engineer.force_login(cast["engineer"])
    missing = engineer.get("/models/iris/versions/7/artifact/")
    assert missing.status_code == 404
    assert downloads() == []
