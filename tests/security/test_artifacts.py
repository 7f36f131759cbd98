"""Hostile artifacts, uploaded over HTTP to the suite's own real web process (issue 20): zip bombs
and other hostile TorchScript archives (item 5), ONNX external data that escapes the version's
folder or changes without changing the version (item 12). Each refusal asserts its status and
exact message, that nothing was stored, and that the web process's peak memory did not grow."""

import hashlib
import io
import json
import os
import random
import struct
import urllib.error
import urllib.request
import uuid
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from onnx import TensorProto, helper, numpy_helper

from console.audit import Actor
from console.models import AuditEvent
from console.services import create_token
from registry import services
from registry.models import ModelVersion, RegisteredModel
from tests import models as built
from tests.security.conftest import WebProcess, settle_validations
from workers.cache import ModelCache, Plan

# The web process's peak resident memory may grow this much over one upload: Django spools up to
# FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) of a request body in memory, plus its own bookkeeping; never
# the artifact's contents (the bomb below inflates to 512 MiB; before the fix the peak reached 11 GB).
PEAK_GROWTH_KB = settings.FILE_UPLOAD_MAX_MEMORY_SIZE // 1024 + 4 * 1024
FOLDER_MESSAGE = "points outside the version's folder: locations must be relative paths without '..'"


@dataclass
class Answer:
    """The web process's answer to one upload, and how much its peak RSS grew meanwhile."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    peak_growth_kb: int


Upload = Callable[..., Answer]


def post_version(web: WebProcess, token: str, model: str, artifact: tuple[str, bytes],
                 external: list[tuple[str, bytes]] | None = None, **fields: str) -> Answer:
    """POST a multipart upload to /api/v1/models/<model>/versions/ as a client would."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    for field, (filename, data) in [("artifact", artifact)] + [("external_data", part) for part in external or []]:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    request = urllib.request.Request(
        f"{web.url}/api/v1/models/{model}/versions/", data=b"".join(parts) + f"--{boundary}--\r\n".encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    before = web.memory_kb("VmHWM")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, body, headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, body, headers = error.code, error.read(), error.headers
    peak_growth = web.memory_kb("VmHWM") - before
    return Answer(status, json.loads(body), {key.lower(): value for key, value in headers.items()}, peak_growth)


@pytest.fixture
def model(transactional_db: Any, cast: dict[str, Any], teams: dict[str, Any]) -> RegisteredModel:
    return services.create_model(actor=Actor(user=cast["engineer"]), name="hostile", team=teams["ml"])


@pytest.fixture
def upload(model: RegisteredModel, cast: dict[str, Any], web_process: WebProcess) -> Upload:
    """Upload as the model's engineer (a read+manage token), after warming the web process's
    zip and ONNX paths (its first ONNX upload loads onnxruntime) with refusals of its own."""
    _, token = create_token(actor=Actor.system("tests"), user=cast["engineer"], name="uploader",
                            scopes=["read", "manage"])

    def send(artifact: tuple[str, bytes], external: list[tuple[str, bytes]] | None = None, **fields: str) -> Answer:
        return post_version(web_process, token, model.name, artifact, external, **fields)

    assert send(("warm.zip", built.plain_zip())).status == 400
    assert send(("warm.onnx", built.external_data_onnx("weights.bin"))).status == 400
    return send


def nothing_stored(model: RegisteredModel) -> bool:
    folder = Path(settings.MEDIA_ROOT) / "models" / model.name
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return (not ModelVersion.objects.filter(model=model).exists() and not files
            and not AuditEvent.objects.filter(action="version.create").exists())


def assert_refused(answer: Answer, model: RegisteredModel, message: str) -> None:
    assert (answer.status, answer.body) == (400, {"detail": message})
    assert nothing_stored(model)
    assert answer.peak_growth_kb <= PEAK_GROWTH_KB, f"the web process's peak grew {answer.peak_growth_kb} kB"


# -- Item 5: hostile TorchScript archives ----------------------------------------------------

def torchscript_with(extra: Callable[[zipfile.ZipFile], None], drop: str = "") -> bytes:
    """tests.models' TorchScript archive (but `drop`), then whatever `extra` writes into it."""
    source = zipfile.ZipFile(io.BytesIO(built.torchscript_linear()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": the point of one case
        for info in source.infolist():
            if info.filename != drop:
                archive.writestr(info, source.read(info))
        extra(archive)
    return out.getvalue()


def zeros_entry(name: str, size: int) -> Callable[[zipfile.ZipFile], None]:
    """An entry of `size` zero bytes, deflated (~1000:1), streamed in 1 MiB chunks."""
    def write(archive: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        chunk = bytes(1 << 20)
        with archive.open(info, "w", force_zip64=True) as entry:
            for _ in range(size // len(chunk)):
                entry.write(chunk)
    return write


def entry(name: str, data: bytes = b"", compress_type: int = zipfile.ZIP_STORED) -> Callable[[zipfile.ZipFile], None]:
    return lambda archive: archive.writestr(name, data, compress_type=compress_type)


def declared(data: bytes, *, count: int | None = None, scale: int = 1) -> bytes:
    """The same archive with its end record declaring `count` entries, or each central directory
    record declaring `scale` times its compressed size uncompressed: lies only a reader of the
    central directory sees."""
    patched = bytearray(data)
    end = data.rfind(b"PK\x05\x06")
    if count is not None:
        struct.pack_into("<2H", patched, end + 8, count, count)
    entries, _, start = struct.unpack_from("<H2L", data, end + 10)
    for _ in range(entries if scale != 1 else 0):
        compressed, name, extra, comment = struct.unpack_from("<L4x3H", data, start + 20)
        struct.pack_into("<L", patched, start + 24, compressed * scale)
        start += 46 + name + extra + comment
    return bytes(patched)


def random_entries(count: int, size: int) -> bytes:
    """`count` entries of `size` random bytes each, deflated at level 0 (about their own size)."""
    rng = random.Random(0)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=0) as archive:
        for index in range(count):
            archive.writestr(f"archive/data/{index}", rng.randbytes(size))
    return out.getvalue()


def many_entries(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for index in range(count):
            archive.writestr(f"archive/data/{index}", b"")
    return out.getvalue()


def test_a_torchscript_zip_bomb_is_refused_from_its_central_directory_without_inflating_it(
        upload: Upload, model: RegisteredModel) -> None:
    bomb = torchscript_with(zeros_entry("archive/version", 512 << 20), drop="archive/version")
    info = zipfile.ZipFile(io.BytesIO(bomb)).getinfo("archive/version")
    assert len(bomb) < 700_000 and info.file_size == 512 << 20  # ~520 KB that inflates to 512 MiB
    answer = upload(("model.pt", bomb), signature=json.dumps(built.TORCHSCRIPT_SIGNATURE))
    assert_refused(answer, model, (
        f"archive entry 'archive/version' expands {info.compress_size} bytes to {info.file_size} "
        f"({info.file_size // info.compress_size}:1): at most 100:1 is accepted for entries over 65536 bytes"
    ))


def over_expansion() -> tuple[bytes, str]:
    """Entries that each declare 99:1 (under the ratio limit) and together more than twice the
    upload limit; the message names the entry that crosses it."""
    data = declared(random_entries(11, 1 << 20), scale=99)
    cap, total = settings.PADDOCK_MAX_UPLOAD_BYTES * 2, 0
    for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
        total += info.file_size
        if total > cap:
            return data, (f"the archive's entries declare {total} bytes uncompressed by entry '{info.filename}': "
                          f"at most {cap} (2 times the upload limit) are accepted")
    raise AssertionError("the entries stay under the limit")


UNSAFE = "is not a safe relative path: entries must stay inside the archive (no absolute paths, no '..')"
HOSTILE_ARCHIVES: dict[str, Callable[[], tuple[bytes, str]]] = {
    "traversal": lambda: (torchscript_with(entry("archive/../../../etc/cron.d/paddock", b"* * * * * root sh")),
                          f"archive entry 'archive/../../../etc/cron.d/paddock' {UNSAFE}"),
    "absolute": lambda: (torchscript_with(entry("/etc/cron.d/paddock")),
                         f"archive entry '/etc/cron.d/paddock' {UNSAFE}"),
    "backslash": lambda: (torchscript_with(entry("..\\..\\evil.py")), f"archive entry '..\\..\\evil.py' {UNSAFE}"),
    "duplicate": lambda: (torchscript_with(entry("archive/version", b"9\n")),
                          "archive entry 'archive/version' appears more than once"),
    "bzip2": lambda: (torchscript_with(entry("archive/extra.py", b"x" * 100, zipfile.ZIP_BZIP2)),
                      "archive entry 'archive/extra.py' uses compression method 12: only stored (0) and deflated (8) "
                      "entries are accepted"),
    "too-many-entries": lambda: (many_entries(10_001), "the archive has 10001 entries: at most 10000 are accepted"),
    "lying-count": lambda: (declared(many_entries(20), count=3),
                            "truncated or corrupt archive: the central directory holds more entries than the 3 its "
                            "end declares"),
    "over-expansion": over_expansion,
}


@pytest.mark.parametrize("case", list(HOSTILE_ARCHIVES), ids=list(HOSTILE_ARCHIVES))
def test_hostile_archives_are_refused_from_their_central_directory(
        upload: Upload, model: RegisteredModel, case: str) -> None:
    data, message = HOSTILE_ARCHIVES[case]()
    answer = upload(("model.pt", data), signature=json.dumps(built.TORCHSCRIPT_SIGNATURE))
    assert_refused(answer, model, message)


# -- Item 12: ONNX external data --------------------------------------------------------------

def external(tensor: TensorProto, location: str) -> TensorProto:
    """The tensor with its data moved to `location` (an external-data reference, no bytes)."""
    length = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        item = tensor.external_data.add()
        item.key, item.value = key, value
    return tensor


def onnx_model(graph: Any) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = built.IR_VERSION
    return model.SerializeToString()


def external_weights_onnx(rows: int, location: str = "weights.bin") -> bytes:
    """y[batch, 2] = x[batch, rows] · W, W read from `location` (rows × 2 float32)."""
    weight = external(numpy_helper.from_array(np.zeros((rows, 2), dtype=np.float32), "W"), location)
    return onnx_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], initializer=[weight],
    ))


def weights(rows: int, value: float) -> bytes:
    return np.full((rows, 2), value, dtype=np.float32).tobytes()


def checksum(graph: bytes, files: dict[str, bytes]) -> str:
    """The identity the registry documents for a version with external data (services.version_checksum)."""
    pairs = [["", hashlib.sha256(graph).hexdigest()],
             *sorted([name, hashlib.sha256(data).hexdigest()] for name, data in files.items())]
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def test_the_same_graph_with_new_external_weights_is_a_new_version_and_both_keep_their_files(
        upload: Upload, model: RegisteredModel, celery_worker: Any) -> None:
    graph, old, new = external_weights_onnx(4), weights(4, 1.0), weights(4, 2.0)
    first = upload(("model.onnx", graph), [("weights.bin", old)])
    second = upload(("model.onnx", graph), [("weights.bin", new)])
    again = upload(("renamed.onnx", graph), [("weights.bin", old)])
    assert (first.status, first.body["number"], first.headers["x-paddock-duplicate"]) == (201, 1, "false")
    assert (second.status, second.body["number"], second.headers["x-paddock-duplicate"]) == (201, 2, "false")
    assert (again.status, again.body["number"], again.headers["x-paddock-duplicate"]) == (200, 1, "true")
    assert first.body["sha256"] == checksum(graph, {"weights.bin": old})
    assert second.body["sha256"] == checksum(graph, {"weights.bin": new})
    assert first.body["size"] == second.body["size"] == len(graph) + len(old)
    folder = Path(settings.MEDIA_ROOT) / "models" / model.name
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == {
        "1/model.onnx": graph, "1/weights.bin": old, "2/model.onnx": graph, "2/weights.bin": new,
    }
    assert ModelVersion.objects.filter(model=model).count() == 2
    assert AuditEvent.objects.filter(action="version.create").count() == 2
    settle_validations()  # the worker validates both: not while the tables are emptied after the test


def test_the_workers_memory_estimate_counts_external_weights(db: Any, teams: dict[str, Any]) -> None:
    model = services.create_model(actor=Actor.system("tests"), name="heavy", team=teams["ml"])
    graph, data = external_weights_onnx(16_384), weights(16_384, 0.5)  # 128 KiB of weights, a 0.2 KB graph
    version, _ = services.register_version(actor=Actor.system("tests"), model=model,
                                           upload=SimpleUploadedFile("model.onnx", graph),
                                           external_data=[SimpleUploadedFile("weights.bin", data)])
    assert version.size == len(graph) + len(data)
    cache = ModelCache(budget_bytes=1 << 30)
    assert cache.sync([Plan(version.pk, "heavy", 1, True, {"max_batch_size": 8, "instances": 1},
                            sha256=version.sha256)]) == [version.pk]
    assert cache.held[version.pk].estimated_bytes == 2 * (len(graph) + len(data))


def sparse_initializer_onnx(part: str, location: str) -> bytes:
    """A dense [4, 2] weight given as a sparse initializer 'S', its values or indices external."""
    values = numpy_helper.from_array(np.ones(2, dtype=np.float32), "S")
    indices = numpy_helper.from_array(np.array([0, 5], dtype=np.int64), "S_indices")
    external(values if part == "values" else indices, location)
    return onnx_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "S"], ["y"])], "sparse",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        sparse_initializer=[helper.make_sparse_tensor(values, indices, [4, 2])],
    ))


@pytest.mark.parametrize("part", ["values", "indices"])
def test_a_sparse_initializer_reading_outside_the_folder_is_refused(
        upload: Upload, model: RegisteredModel, part: str) -> None:
    answer = upload(("model.onnx", sparse_initializer_onnx(part, "../../etc/passwd")),
                    [("passwd", b"\x00" * 8)])
    assert_refused(answer, model, f"external data location '../../etc/passwd' of sparse initializer 'S' of graph "
                                  f"'sparse' (its {part}) {FOLDER_MESSAGE}")


def constant(name: str, value: float, location: str = "") -> Any:
    tensor = numpy_helper.from_array(np.full((1, 2), value, dtype=np.float32), f"{name}_value")
    return helper.make_node("Constant", [], [name], name=name, value=external(tensor, location) if location else tensor)


def if_branch_onnx(location: str) -> bytes:
    """y = If(c): the then-branch's Constant reads external data from `location`."""
    def branch(name: str, node: Any) -> Any:
        return helper.make_graph([node], name, [], [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT,
                                                                                   [1, 2])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch("then", constant("secret", 1.0, location)),
                            else_branch=branch("else", constant("zero", 0.0)))
    return onnx_model(helper.make_graph(
        [node], "branches", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    ))


def loop_body_onnx(location: str) -> bytes:
    """A Loop whose body graph has an initializer read from `location`."""
    counter = external(numpy_helper.from_array(np.ones(2, dtype=np.float32), "step"), location)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "step"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [2])],
        initializer=[counter],
    )
    return onnx_model(helper.make_graph(
        [helper.make_node("Loop", ["n", "c", "v"], ["y"], body=body)], "loop",
        [helper.make_tensor_value_info("n", TensorProto.INT64, []),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    ))


def sparse_constant_onnx(location: str) -> bytes:
    """A Constant node whose `sparse_value` attribute's values are read from `location`."""
    values = external(numpy_helper.from_array(np.ones(2, dtype=np.float32), "sv"), location)
    indices = numpy_helper.from_array(np.array([0, 3], dtype=np.int64), "si")
    node = helper.make_node("Constant", [], ["y"], name="densify",
                            sparse_value=helper.make_sparse_tensor(values, indices, [2, 2]))
    return onnx_model(helper.make_graph([node], "attributes", [],
                                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])]))


NESTED = {
    "if-branch-constant": (if_branch_onnx("/etc/shadow"), "external data location '/etc/shadow' of tensor "
                           "'secret_value' (attribute 'value' of node 'secret' in graph 'then')"),
    "loop-body-initializer": (loop_body_onnx("../../../../root/.ssh/id_rsa"), "external data location "
                              "'../../../../root/.ssh/id_rsa' of tensor 'step' (initializer of graph 'body')"),
    "constant-sparse-value": (sparse_constant_onnx("../shared.bin"), "external data location '../shared.bin' of "
                              "the sparse tensor in attribute 'sparse_value' of node 'densify' in graph "
                              "'attributes' (its values)"),
}


@pytest.mark.parametrize("case", list(NESTED), ids=list(NESTED))
def test_a_tensor_in_a_subgraph_or_attribute_reading_outside_the_folder_is_refused(
        upload: Upload, model: RegisteredModel, case: str) -> None:
    data, message = NESTED[case]
    assert_refused(upload(("model.onnx", data)), model, f"{message} {FOLDER_MESSAGE}")


def test_a_symbolic_link_in_the_version_folder_cannot_carry_external_data_out(
        upload: Upload, model: RegisteredModel, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = Path(settings.MEDIA_ROOT) / "models" / model.name / "1"
    folder.mkdir(parents=True)
    os.symlink(outside, folder / "shared")  # left behind by someone with access to the disk
    answer = upload(("model.onnx", external_weights_onnx(4, "shared/weights.bin")), [("weights.bin", weights(4, 1))])
    assert_refused(answer, model, "external data location 'shared/weights.bin' of tensor 'W' resolves outside the "
                                  "version's folder through a symbolic link")
    assert list(outside.iterdir()) == [] and [p.name for p in folder.iterdir()] == ["shared"]
