"""Structural inspection of an uploaded artifact, before anything is stored: what format it is,
its signature and metadata, and every reason to refuse it. Nothing here unpickles or runs the
model; the real load happens in a worker (`registry.tasks.validate_version`)."""

import functools
import os
import posixpath
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import onnx
from django.conf import settings
from google.protobuf.message import DecodeError

from console.errors import InvalidInput
from registry.choices import V2_DATATYPES, ArtifactFormat
from registry.datatypes import ONNX_TO_V2

PICKLE_ADVICE = (
    "Paddock never unpickles uploads: export with torch.jit.script(model).save(path) "
    "or torch.onnx.export(...)"
)


class ArtifactRejected(InvalidInput):
    """HTTP 400: the upload is not a model Paddock can register; the message says why."""


@dataclass
class Inspection:
    """What an accepted artifact is: its format, v2 signature, metadata and external-data files."""

    format: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)
    # Relative paths (inside the version's folder) of the external-data files the model reads,
    # each with the first tensor read from it (for messages about the file).
    external_files: dict[str, str] = field(default_factory=dict)


def inspect_artifact(path: Path, *, declared_format: str = "", signature: Any = None) -> Inspection:
    """Identify and describe the artifact at `path`, or raise ArtifactRejected."""
    if declared_format and declared_format not in ArtifactFormat.values:
        raise ArtifactRejected(
            f"unknown format '{declared_format}': expected one of {', '.join(ArtifactFormat.values)}"
        )
    with path.open("rb") as handle:
        head = handle.read(8)
    if not head:
        raise ArtifactRejected("the file is empty")
    if _is_pickle(head):
        raise ArtifactRejected(f"the file is a Python pickle (torch.save?), not a model. {PICKLE_ADVICE}")
    if head.startswith(b"PK\x03\x04") or declared_format == ArtifactFormat.TORCHSCRIPT:
        if declared_format == ArtifactFormat.ONNX:
            raise ArtifactRejected("format 'onnx' was declared but the file is a zip archive, not ONNX")
        return _inspect_torchscript(path, signature)
    if signature not in (None, "", {}):
        raise ArtifactRejected("'signature' is only accepted for TorchScript: ONNX files carry their own")
    return _inspect_onnx(path, head)


def _is_pickle(head: bytes) -> bool:
    # Protocol 2+ pickles start with PROTO (0x80) and the protocol number.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


# -- ONNX ------------------------------------------------------------------------------------

@functools.cache
def onnxruntime_ir_range() -> tuple[int, int]:
    """The IR versions the installed onnxruntime loads, found by loading a one-node model at
    each version from the newest onnx knows downwards (onnxruntime exposes no such constant)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    options = ort.SessionOptions()
    options.log_severity_level = 4
    for ir_version in range(onnx.IR_VERSION, 6, -1):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = ir_version
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - any refusal means "not this version"
            continue
        return 3, ir_version
    return 3, 7


def _inspect_onnx(path: Path, head: bytes) -> Inspection:
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        # A serialized ModelProto starts with field 1 (ir_version), tag byte 0x08.
        if head[:1] == b"\x08":
            raise ArtifactRejected(f"truncated or corrupt ONNX file: {exc}") from None
        raise ArtifactRejected("not a model: the file is neither ONNX nor a TorchScript archive") from None
    if model.ir_version <= 0:
        raise ArtifactRejected("not a model: the file is neither ONNX nor a TorchScript archive")
    if not model.HasField("graph") or not model.opset_import or not model.graph.output:
        raise ArtifactRejected("truncated or corrupt ONNX file: it has no complete graph")
    low, high = onnxruntime_ir_range()
    if not low <= model.ir_version <= high:
        import onnxruntime as ort

        raise ArtifactRejected(
            f"ONNX IR version {model.ir_version} cannot be loaded by onnxruntime {ort.__version__}: "
            f"it loads IR versions {low} to {high}; re-export with ir_version <= {high}"
        )
    external_files = _external_data_files(model)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [_onnx_tensor(value, "input") for value in model.graph.input if value.name not in initializers]
    outputs = [_onnx_tensor(value, "output") for value in model.graph.output]
    metadata = {
        "producer_name": model.producer_name,
        "producer_version": model.producer_version,
        "ir_version": model.ir_version,
        "opset": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        "model_version": model.model_version,
        "doc_string": model.doc_string[:500],
        "metadata_props": {prop.key: prop.value for prop in model.metadata_props},
    }
    return Inspection(ArtifactFormat.ONNX, inputs, outputs, metadata, external_files)


def _external_data_files(model: onnx.ModelProto) -> dict[str, str]:
    """Every external-data location (→ the first tensor that reads it), each checked to stay
    inside the version's own folder: any tensor a runtime may read, wherever it sits."""
    files: dict[str, str] = {}
    for tensor, label in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        # A repeated key would let this check and a runtime read different entries: check each.
        locations = [entry.value for entry in tensor.external_data if entry.key == "location"] or [""]
        for location in locations:
            if not is_inside_folder(location):
                raise ArtifactRejected(f"external data location '{location}' of {label} points outside the "
                                       "version's folder: locations must be relative paths without '..'")
            files.setdefault(posixpath.normpath(location), label)
    return files


def _all_tensors(model: onnx.ModelProto) -> Iterator[tuple[onnx.TensorProto, str]]:
    """Every tensor of the model, with a label that says where it sits: initializers, sparse
    initializers (values and indices) and node attributes, in the main graph, every subgraph
    (If, Loop, Scan bodies), functions and training graphs."""
    yield from _graph_tensors(model.graph, main=True)
    for graph in [g for info in model.training_info for g in (info.initialization, info.algorithm)]:
        yield from _graph_tensors(graph)
    for function in model.functions:
        yield from _node_tensors(function.node, f"function '{function.name}'")


def _graph_tensors(graph: onnx.GraphProto, main: bool = False) -> Iterator[tuple[onnx.TensorProto, str]]:
    for tensor in graph.initializer:
        yield tensor, f"tensor '{tensor.name}'" + ("" if main else f" (initializer of graph '{graph.name}')")
    for sparse in graph.sparse_initializer:
        yield from _sparse_parts(sparse, f"sparse initializer '{sparse.values.name}' of graph '{graph.name}'")
    yield from _node_tensors(graph.node, f"graph '{graph.name}'")


def _node_tensors(nodes: Iterable[onnx.NodeProto], owner: str) -> Iterator[tuple[onnx.TensorProto, str]]:
    for node in nodes:
        for attribute in node.attribute:
            where = f"attribute '{attribute.name}' of node '{node.name or node.op_type}' in {owner}"
            # By field, not by the declared attribute type: a mismatched type must not hide one.
            dense = [attribute.t] if attribute.HasField("t") else []
            for tensor in [*dense, *attribute.tensors]:
                yield tensor, f"tensor '{tensor.name}' ({where})" if tensor.name else f"the tensor in {where}"
            sparse = [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []
            for part in [*sparse, *attribute.sparse_tensors]:
                yield from _sparse_parts(part, f"the sparse tensor in {where}")
            for graph in [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]:
                yield from _graph_tensors(graph)


def _sparse_parts(sparse: onnx.SparseTensorProto, label: str) -> Iterator[tuple[onnx.TensorProto, str]]:
    return iter(((sparse.values, f"{label} (its values)"), (sparse.indices, f"{label} (its indices)")))


def is_inside_folder(location: str) -> bool:
    """Whether a relative POSIX path names something inside its folder: not absolute, no drive letter, no
    backslash or NUL, and no '..' that climbs out."""
    if not location or "\x00" in location or "\\" in location:
        return False
    if posixpath.isabs(location) or (len(location) > 1 and location[1] == ":"):
        return False
    normalized = posixpath.normpath(location)
    return normalized not in (".", "..") and not normalized.startswith("../")


def _onnx_tensor(value: onnx.ValueInfoProto, role: str) -> dict[str, Any]:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ArtifactRejected(
            f"{role} '{value.name}' is of ONNX type '{kind}', which the v2 protocol cannot carry: "
            "only tensors are supported"
        )
    elem_type = value.type.tensor_type.elem_type
    datatype = ONNX_TO_V2.get(elem_type)
    if datatype is None:
        type_name = onnx.TensorProto.DataType.Name(elem_type)
        raise ArtifactRejected(f"{role} '{value.name}' has element type {type_name}, which Paddock cannot serve")
    shape = value.type.tensor_type.shape
    dims = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in shape.dim]
    return {"name": value.name, "datatype": datatype, "shape": dims}


# -- TorchScript -----------------------------------------------------------------------------

def _inspect_torchscript(path: Path, signature: Any) -> Inspection:
    names, version_entry = _scan_zip(path)
    version = _read_head(path, version_entry).decode(errors="replace").strip() if version_entry else ""
    if not any("/code/" in name and name.endswith(".py") for name in names):
        if any(name.endswith("/data.pkl") for name in names):
            raise ArtifactRejected(f"the archive is a torch.save file (pickled objects), not TorchScript. "
                                   f"{PICKLE_ADVICE}")
        raise ArtifactRejected("not a model: a zip archive that is not a TorchScript archive")
    inputs, outputs = parse_signature(signature)
    metadata = {"producer_name": "pytorch", "torchscript_format_version": version}
    return Inspection(ArtifactFormat.TORCHSCRIPT, inputs, outputs, metadata)


# -- Zip archives: judged by their central directory alone, record by record, before any entry is
# read (a zip bomb declares its sizes there); nothing is decompressed but the start of `version`.
MAX_ZIP_ENTRIES = 10_000  # a TorchScript archive holds one entry per tensor storage, plus code
MAX_ZIP_DIRECTORY_BYTES = 4 * 1024 * 1024  # torch's records are ~100 bytes each
MAX_ZIP_RATIO, ZIP_RATIO_FLOOR = 100, 64 * 1024  # torch stores tensors, deflates code ~3:1; short text more
ZIP_MAX_EXPANSION = 2  # all entries together, uncompressed: at most twice the upload limit
VERSION_READ_BYTES = 64  # `version` holds a number
_END, _END64_LOCATOR, _END64 = struct.Struct("<4s4H2LH"), struct.Struct("<4sLQL"), struct.Struct("<4sQ2H2L4Q")
_CENTRAL, _LOCAL = struct.Struct("<4s4B4HL2L5H2L"), struct.Struct("<4s5H3L2H")  # directory record, local header
_Entry = tuple[bytes, int, int, int]  # raw name, method, compressed size, local header offset


def _corrupt(reason: str) -> ArtifactRejected:
    return ArtifactRejected(f"truncated or corrupt archive: {reason}")


def _scan_zip(path: Path) -> tuple[list[str], _Entry | None]:
    """The archive's entry names and `*/version` entry; each record is checked before the next is read."""
    names: list[str] = []
    seen: set[str] = set()
    version: _Entry | None = None
    total = 0
    with path.open("rb") as handle:
        try:
            count, size, start = _zip_directory(handle)
            if count > MAX_ZIP_ENTRIES:
                raise ArtifactRejected(f"the archive has {count} entries: at most {MAX_ZIP_ENTRIES} are accepted")
            if size > MAX_ZIP_DIRECTORY_BYTES:
                raise ArtifactRejected(f"the archive's central directory is {size} bytes: "
                                       f"at most {MAX_ZIP_DIRECTORY_BYTES} are accepted")
            handle.seek(start)
            while handle.tell() < start + size:
                if len(names) == count:
                    raise _corrupt(f"the central directory holds more entries than the {count} its end declares")
                (signature, _, _, _, _, flags, method, _, _, _, compressed, length, name_size, extra_size,
                 comment_size, *_, offset) = _CENTRAL.unpack(handle.read(_CENTRAL.size))
                raw, extra = handle.read(name_size), handle.read(extra_size)
                handle.seek(comment_size, os.SEEK_CUR)
                if signature != b"PK\x01\x02" or handle.tell() > start + size:
                    raise _corrupt("a central directory record is malformed")
                name = raw.decode("utf-8" if flags & 0x800 else "cp437")
                length, compressed, offset = _zip64_fields(extra, length, compressed, offset)
                total += length
                _check_entry(name, seen, flags, method, compressed, length, total)
                if offset + _LOCAL.size + compressed > start:
                    raise _corrupt(f"entry '{name}' runs past the start of the central directory")
                names.append(name)
                if version is None and name.endswith("/version"):
                    version = (raw, method, compressed, offset)
        except (struct.error, ValueError, OSError, StopIteration):  # ValueError: bad UTF-8, seek
            raise _corrupt("a central directory record is malformed") from None
    return names, version


def _zip_directory(handle: IO[bytes]) -> tuple[int, int, int]:
    """(entries, size, offset) of the central directory, from the end record (zip64's when there)."""
    tail_start = max(0, handle.seek(0, os.SEEK_END) - _END.size - 0xFFFF)  # the end, then a comment
    handle.seek(tail_start)
    tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END.size:
        raise _corrupt("File is not a zip file")
    _, disk, directory_disk, _, count, size, offset, _ = _END.unpack_from(tail, at)
    end = tail_start + at
    if at >= _END64_LOCATOR.size and tail[at - _END64_LOCATOR.size:].startswith(b"PK\x06\x07"):
        end = _END64_LOCATOR.unpack_from(tail, at - _END64_LOCATOR.size)[2]
        handle.seek(end)
        record = handle.read(_END64.size).ljust(_END64.size, b"\0")  # short: no signature either
        signature, _, _, _, disk, directory_disk, _, count, size, offset = _END64.unpack(record)
        if signature != b"PK\x06\x06":
            raise _corrupt("the zip64 end record is missing")
    if disk or directory_disk:
        raise _corrupt("zipfiles that span multiple disks are not supported")
    if offset + size != end:  # the directory ends where the end record starts: nothing prepended or hidden
        raise _corrupt("the central directory is not where the end record says")
    return count, size, offset


def _zip64_fields(extra: bytes, *fields: int) -> list[int]:
    """The record's fields, those marked 0xFFFFFFFF read in order from its zip64 extra field."""
    at, values = 0, list(fields)
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<2H", extra, at)
        if kind == 1:
            wide = iter(struct.unpack_from(f"<{size // 8}Q", extra, at + 4))
            values = [next(wide) if value == 0xFFFFFFFF else value for value in values]
        at += 4 + size
    return values


def _check_entry(name: str, seen: set[str], flags: int, method: int, compressed: int, length: int,
                 total: int) -> None:
    """Refuse an entry by its record alone; `total`: the uncompressed sizes declared so far, its own included."""
    if not is_inside_folder(name):
        raise ArtifactRejected(f"archive entry '{name}' is not a safe relative path: entries must stay inside "
                               "the archive (no absolute paths, no '..')")
    if posixpath.normpath(name) in seen:
        raise ArtifactRejected(f"archive entry '{name}' appears more than once")
    seen.add(posixpath.normpath(name))
    if flags & 0x1:
        raise ArtifactRejected(f"archive entry '{name}' is encrypted")
    if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ArtifactRejected(f"archive entry '{name}' uses compression method {method}: only stored (0) and "
                               "deflated (8) entries are accepted")
    if length > ZIP_RATIO_FLOOR and length > MAX_ZIP_RATIO * compressed:
        raise ArtifactRejected(f"archive entry '{name}' expands {compressed} bytes to {length} "
                               f"({length // max(compressed, 1)}:1): at most {MAX_ZIP_RATIO}:1 is accepted "
                               f"for entries over {ZIP_RATIO_FLOOR} bytes")
    if total > (cap := settings.PADDOCK_MAX_UPLOAD_BYTES * ZIP_MAX_EXPANSION):
        raise ArtifactRejected(f"the archive's entries declare {total} bytes uncompressed by entry '{name}': "
                               f"at most {cap} ({ZIP_MAX_EXPANSION} times the upload limit) are accepted")


def _read_head(path: Path, entry: _Entry, limit: int = VERSION_READ_BYTES) -> bytes:
    """At most `limit` bytes from the start of an entry, decompressing no more than that."""
    raw, method, compressed, offset = entry
    with path.open("rb") as handle:
        handle.seek(offset)
        header = handle.read(_LOCAL.size)
        name_size, extra_size = _LOCAL.unpack(header)[-2:] if len(header) == _LOCAL.size else (0, 0)
        if not header.startswith(b"PK\x03\x04") or handle.read(name_size) != raw:
            raise _corrupt(f"entry '{raw.decode(errors='replace')}' does not match its local header")
        handle.seek(extra_size, os.SEEK_CUR)
        data = handle.read(min(compressed, 4096))  # a few KiB of deflate inflate to far more than `limit`
    try:
        return (zlib.decompressobj(-zlib.MAX_WBITS).decompress(data, limit) if method else data)[:limit]
    except zlib.error as exc:
        raise _corrupt(f"entry '{raw.decode(errors='replace')}': {exc}") from None


def parse_signature(signature: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check a declared signature: {"inputs": [...], "outputs": [...]}, each tensor
    {"name", "datatype", "shape"} with -1 for dynamic axes."""
    if signature in (None, "", {}):
        raise ArtifactRejected(
            "TorchScript archives carry no tensor signature: send 'signature' as JSON "
            '{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]} with -1 for dynamic axes'
        )
    if not isinstance(signature, dict):
        raise ArtifactRejected("'signature' must be a JSON object with 'inputs' and 'outputs'")
    parsed = []
    for role in ("inputs", "outputs"):
        tensors = signature.get(role)
        if not isinstance(tensors, list) or not tensors:
            raise ArtifactRejected(f"'signature.{role}' must be a non-empty list of tensors")
        seen: set[str] = set()
        checked = []
        for index, tensor in enumerate(tensors):
            where = f"signature.{role}[{index}]"
            if not isinstance(tensor, dict):
                raise ArtifactRejected(f"{where} must be an object with name, datatype and shape")
            name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
            if not isinstance(name, str) or not name or name in seen:
                raise ArtifactRejected(f"{where}.name must be a unique, non-empty string")
            if datatype not in V2_DATATYPES:
                raise ArtifactRejected(f"{where}.datatype '{datatype}' is not one of {', '.join(V2_DATATYPES)}")
            if (
                not isinstance(shape, list)
                or any(not isinstance(d, int) or isinstance(d, bool) or d < -1 or d == 0 for d in shape)
            ):
                raise ArtifactRejected(f"{where}.shape must be a list of positive integers or -1")
            seen.add(name)
            checked.append({"name": name, "datatype": datatype, "shape": shape})
        parsed.append(checked)
    return parsed[0], parsed[1]
