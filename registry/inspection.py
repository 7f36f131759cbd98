"""Structural inspection of an uploaded artifact, before anything is stored: what format it is,
its signature and metadata, and every reason to refuse it. Nothing here unpickles or runs the
model; the real load happens in a worker (`registry.tasks.validate_version`)."""

import functools
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
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
    from registry import archive  # it raises this module's ArtifactRejected

    names, version_entry = archive.scan_zip(path)
    version = archive.read_head(path, version_entry).decode(errors="replace").strip() if version_entry else ""
    if not any("/code/" in name and name.endswith(".py") for name in names):
        if any(name.endswith("/data.pkl") for name in names):
            raise ArtifactRejected(f"the archive is a torch.save file (pickled objects), not TorchScript. "
                                   f"{PICKLE_ADVICE}")
        raise ArtifactRejected("not a model: a zip archive that is not a TorchScript archive")
    inputs, outputs = parse_signature(signature)
    metadata = {"producer_name": "pytorch", "torchscript_format_version": version}
    return Inspection(ArtifactFormat.TORCHSCRIPT, inputs, outputs, metadata)


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
