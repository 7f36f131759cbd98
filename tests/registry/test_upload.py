"""Uploading versions over the API: what is stored, and every refusal (status, message, nothing kept)."""

import hashlib
import json
import pickle
import re
from pathlib import Path
from typing import Any

import onnx
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from console.audit import Actor
from console.models import AuditEvent
from registry import services
from registry.inspection import onnxruntime_ir_range
from registry.models import ModelVersion
from tests import models as built

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(teams: dict[str, Any], cast: dict[str, Any]) -> Any:
    return services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])


@pytest.fixture
def engineer(client_for: Any) -> Any:
    return client_for("engineer", "read", "manage")


def upload(client: Any, data: bytes, name: str = "model.onnx", model: str = "iris", **fields: Any) -> Any:
    payload = {"artifact": SimpleUploadedFile(name, data), **fields}
    return client.post(f"/api/v1/models/{model}/versions/", payload, format="multipart")


def nothing_stored(model: Any) -> bool:
    folder = Path(settings.MEDIA_ROOT) / "models" / model.name
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return (
        not ModelVersion.objects.filter(model=model).exists()
        and not files
        and not AuditEvent.objects.filter(action="version.create").exists()
    )


def test_it_registers_a_version_with_checksum_signature_and_metadata(engineer: Any, model: Any) -> None:
    data = built.mlp_onnx(inputs=8, outputs=3)
    response = upload(engineer, data)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["number"] == 1
    assert body["status"] == "pending"
    assert body["format"] == "onnx"
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["size"] == len(data)
    assert body["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}]
    assert body["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}]
    assert body["metadata"]["ir_version"] == built.IR_VERSION
    assert body["metadata"]["opset"] == {"ai.onnx": 17}
    assert body["metadata"]["producer_name"] == "paddock-tests"
    assert body["created_by"] == "engineer"
    version = ModelVersion.objects.get(model=model, number=1)
    assert Path(version.artifact.path).read_bytes() == data
    assert version.artifact.name == "models/iris/1/model.onnx"
    event = AuditEvent.objects.get(action="version.create")
    assert event.actor_username == "engineer" and event.after is not None and event.after["sha256"] == body["sha256"]


def test_identical_bytes_are_answered_with_the_existing_version(engineer: Any, model: Any) -> None:
    data = built.mlp_onnx()
    first = upload(engineer, data)
    again = upload(engineer, data, name="renamed.onnx")
    assert again.status_code == 200
    assert again["X-Paddock-Duplicate"] == "true"
    assert again.json()["number"] == first.json()["number"] == 1
    assert ModelVersion.objects.filter(model=model).count() == 1
    assert upload(engineer, built.mlp_onnx(seed=1)).json()["number"] == 2


def test_versions_are_immutable(engineer: Any, model: Any) -> None:
    upload(engineer, built.mlp_onnx())
    version = ModelVersion.objects.get(model=model)
    version.sha256 = "0" * 64
    with pytest.raises(Exception, match="a model version is immutable"):
        version.save()


def truncated_onnx() -> bytes:
    data = built.mlp_onnx()
    return data[: len(data) // 2]


REFUSALS = {
    "text": (b"hello, this is not a model\n", "notes.onnx", {},
             "not a model: the file is neither ONNX nor a TorchScript archive"),
    "empty": (b"", "empty.onnx", {}, "the file is empty"),
    "truncated": (truncated_onnx(), "model.onnx", {}, re.compile(r"truncated or corrupt ONNX file: .+")),
    "pickle": (pickle.dumps({"weights": [1, 2, 3]}), "model.pt", {},
               "the file is a Python pickle (torch.save?), not a model. Paddock never unpickles uploads: "
               "export with torch.jit.script(model).save(path) or torch.onnx.export(...)"),
    "torch-save": (built.torch_save_state_dict(), "model.pth", {},
                   "the archive is a torch.save file (pickled objects), not TorchScript. Paddock never "
                   "unpickles uploads: export with torch.jit.script(model).save(path) or torch.onnx.export(...)"),
    "zip": (built.plain_zip(), "model.zip", {}, "not a model: a zip archive that is not a TorchScript archive"),
    "unknown-format": (built.mlp_onnx(), "model.pb", {"format": "tensorflow"},
                       "unknown format 'tensorflow': expected one of onnx, torchscript"),
    "traversal": (built.external_data_onnx("../../etc/passwd"), "model.onnx", {},
                  "external data location '../../etc/passwd' of tensor 'W' points outside the version's "
                  "folder: locations must be relative paths without '..'"),
    "absolute": (built.external_data_onnx("/etc/passwd"), "model.onnx", {},
                 "external data location '/etc/passwd' of tensor 'W' points outside the version's "
                 "folder: locations must be relative paths without '..'"),
    "missing-external": (built.external_data_onnx("weights.bin"), "model.onnx", {},
                         "the model reads external data from 'weights.bin', which was not uploaded: "
                         "send it as an 'external_data' file"),
    "torchscript-no-signature": (built.torchscript_linear(), "model.pt", {},
                                 "TorchScript archives carry no tensor signature: send 'signature' as JSON "
                                 '{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]} with -1 '
                                 "for dynamic axes"),
    "bad-signature-json": (built.torchscript_linear(), "model.pt", {"signature": "{inputs"},
                           "'signature' is not valid JSON: Expecting property name enclosed in double "
                           "quotes at position 1"),
    "onnx-with-signature": (built.mlp_onnx(), "model.onnx",
                            {"signature": json.dumps(built.TORCHSCRIPT_SIGNATURE)},
                            "'signature' is only accepted for TorchScript: ONNX files carry their own"),
}


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_it_refuses_what_is_not_a_loadable_model_and_keeps_nothing(engineer: Any, model: Any, case: str) -> None:
    data, name, fields, message = REFUSALS[case]
    response = upload(engineer, data, name=name, **fields)
    assert response.status_code == 400, response.content
    detail = response.json()["detail"]
    if isinstance(message, re.Pattern):
        assert message.fullmatch(detail), detail
    else:
        assert detail == message
    assert nothing_stored(model)


def test_it_refuses_an_ir_version_onnxruntime_cannot_load(engineer: Any, model: Any) -> None:
    import onnxruntime

    low, high = onnxruntime_ir_range()
    response = upload(engineer, built.mlp_onnx(ir_version=high + 1))
    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"ONNX IR version {high + 1} cannot be loaded by onnxruntime {onnxruntime.__version__}: "
        f"it loads IR versions {low} to {high}; re-export with ir_version <= {high}"
    )
    assert nothing_stored(model)


@override_settings(PADDOCK_MAX_UPLOAD_BYTES=1000)
def test_it_refuses_files_over_the_limit(engineer: Any, model: Any) -> None:
    response = upload(engineer, b"\x08" + b"\x00" * 1999)
    assert response.status_code == 413
    assert response.json()["detail"] == "upload is 2000 bytes; the limit is 1000 bytes"
    assert nothing_stored(model)


@override_settings(PADDOCK_MAX_UPLOAD_BYTES=1000)
def test_it_refuses_a_huge_body_from_its_content_length_before_reading_it(engineer: Any, model: Any) -> None:
    response = upload(engineer, b"\x08" + b"\x00" * 200_000)
    assert response.status_code == 413
    assert re.fullmatch(r"upload is \d+ bytes; the limit is 1000 bytes", response.json()["detail"])
    assert nothing_stored(model)


def test_it_refuses_nul_in_the_description_or_in_the_models_own_names_and_metadata(engineer: Any, model: Any) -> None:
    """Each was a 500: no PostgreSQL text or JSON column holds NUL."""
    response = upload(engineer, built.mlp_onnx(seed=1), description="a\x00b")
    assert response.status_code == 400
    assert response.json() == {"detail": "the description must not contain NUL characters"}
    onnx_model = onnx.load_from_string(built.mlp_onnx(seed=1))
    onnx_model.producer_name = "tests\x00"
    response = upload(engineer, onnx_model.SerializeToString())
    assert response.status_code == 400
    assert response.json() == {
        "detail": "the model's metadata or tensor names contain a NUL character, which cannot be stored"}
    assert nothing_stored(model)


def test_it_asks_for_the_artifact_field(engineer: Any, model: Any) -> None:
    response = engineer.post("/api/v1/models/iris/versions/", {"file": SimpleUploadedFile("m", b"x")},
                             format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"] == "send the model file as the multipart field 'artifact'"


def checksum_preimage(graph: bytes, weights: bytes) -> bytes:
    """What services.version_checksum hashes for a model file and its `weights.bin`, as documented."""
    pairs = [["", hashlib.sha256(graph).hexdigest()], ["weights.bin", hashlib.sha256(weights).hexdigest()]]
    return json.dumps(pairs, separators=(",", ":")).encode()


def test_external_data_inside_the_folder_is_stored_beside_the_model(engineer: Any, model: Any) -> None:
    graph, weights = built.external_data_onnx("weights.bin"), b"\x00\x00\x80\x3f" * 8
    response = upload(engineer, graph, external_data=[SimpleUploadedFile("weights.bin", weights)])
    assert response.status_code == 201, response.content
    version = ModelVersion.objects.get(model=model)
    assert (Path(version.artifact.path).parent / "weights.bin").read_bytes() == weights
    body = response.json()
    assert body["metadata"]["external_data"] == ["weights.bin"]
    # The version is every file: its checksum covers the weights, its size counts them.
    checksum = hashlib.sha256(checksum_preimage(graph, weights)).hexdigest()
    assert (body["sha256"], body["size"]) == (checksum, len(graph) + len(weights))


def test_a_lone_file_hashing_like_a_versions_checksum_is_not_that_version(engineer: Any, model: Any) -> None:
    graph, weights = built.external_data_onnx("weights.bin"), b"\x00\x00\x80\x3f" * 8
    upload(engineer, graph, external_data=[SimpleUploadedFile("weights.bin", weights)])
    lookalike = checksum_preimage(graph, weights)
    assert hashlib.sha256(lookalike).hexdigest() == ModelVersion.objects.get(model=model).sha256
    response = upload(engineer, lookalike)
    assert response.status_code == 400
    assert response.json()["detail"] == "not a model: the file is neither ONNX nor a TorchScript archive"


def test_it_registers_torchscript_with_a_declared_signature(engineer: Any, model: Any) -> None:
    response = upload(engineer, built.torchscript_linear(), name="linear.pt",
                      signature=json.dumps(built.TORCHSCRIPT_SIGNATURE))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["format"] == "torchscript"
    assert body["inputs"] == built.TORCHSCRIPT_SIGNATURE["inputs"]
    assert body["metadata"]["torchscript_format_version"].isdigit()  # read from `archive/version`, a few bytes


def test_a_viewer_cannot_upload_and_an_outsider_cannot_see_the_model(client_for: Any, model: Any) -> None:
    viewer = upload(client_for("viewer", "read", "manage"), built.mlp_onnx())
    assert viewer.status_code == 403
    assert viewer.json()["detail"] == "the engineer role in team 'ml' is required to change this model"
    outsider = upload(client_for("outsider", "read", "manage"), built.mlp_onnx())
    assert outsider.status_code == 404
    assert outsider.json()["detail"] == "model 'iris' not found"
    assert nothing_stored(model)
