"""Stream messages into checked input arrays, and outputs into sink entries. Pure functions over
bytes and arrays, built on the v2 codec (serving/v2/protocol.py) so that a message is held to
the same limits and signature checks, with the same error messages, as an HTTP request.

Two input forms (docs/streams.md has redis-cli examples):
- JSON: field `inputs` holds a v2 `inputs` list, as in an infer request's body; optional field
  `parameters` a v2 parameters object (checked, and otherwise left to the binding's `choose`).
- Binary: per input `<name>` (raw little-endian tensor bytes; BYTES in Triton's layout, each
  element a 4-byte length and its bytes), `<name>.shape` ("1,8") and `<name>.datatype` ("FP32").
  An input is declared by its `.shape` or `.datatype` field; other fields are ignored."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from console.errors import InvalidInput
from serving.v2.protocol import datatype_of, request_from_json, serialize_bytes_tensor
from serving.v2.signature import DEFAULT_LIMITS, Limits, check_request, is_batchable
from workers.streams.source import Message, Prediction

INPUTS_FIELD = b"inputs"
PARAMETERS_FIELD = b"parameters"
SHAPE_SUFFIX = b".shape"
DATATYPE_SUFFIX = b".datatype"
# A sink entry's own fields: a binary output of one of these names would overwrite it.
RESERVED_FIELDS = frozenset({"source_id", "model", "version", "outputs", "queued_ms", "compute_ms"})
OUTPUT_FORMATS = ("json", "binary")

Signature = list[dict[str, Any]]  # a version's inputs or outputs: {"name", "datatype", "shape"}


@dataclass(slots=True)
class Decoded:
    """A message's inputs, checked against the signature of the version that answers it."""

    message: Message
    version: int
    inputs: dict[str, np.ndarray]
    rows: int  # its rows along the batch axis (1 where the version has none)
    batchable: bool

    def batch_key(self) -> tuple[Any, ...]:
        """Messages with equal keys concatenate into one batch: same version, same shape past the
        batch axis. A version without a batch axis runs each message alone."""
        if not self.batchable:
            return (self.version, self.message.id)
        return (self.version, *sorted((name, array.shape[1:]) for name, array in self.inputs.items()))


def decode_message(message: Message, version: int, inputs: Signature, outputs: Signature, *,
                   limits: Limits = DEFAULT_LIMITS) -> Decoded:
    """The message's input arrays, or InvalidInput saying what is wrong with them."""
    fields = message.fields
    if INPUTS_FIELD in fields:
        document = {"inputs": _json_field(fields, INPUTS_FIELD)}
        if PARAMETERS_FIELD in fields:
            document["parameters"] = _json_field(fields, PARAMETERS_FIELD)
        request = request_from_json(document, limits=limits)
    else:
        document, binary = _binary_document(fields)
        request = request_from_json(document, binary, limits=limits)
    rows = check_request(request, inputs, outputs, max_batch_size=0)
    return Decoded(message=message, version=version, inputs={t.name: t.array for t in request.inputs},
                   rows=rows, batchable=is_batchable(inputs, outputs))


def _json_field(fields: dict[bytes, bytes], name: bytes) -> Any:
    try:
        return orjson.loads(fields[name])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"field '{name.decode()}' is not valid JSON: {exc}") from None


def _binary_document(fields: dict[bytes, bytes]) -> tuple[dict[str, Any], bytes]:
    """The v2 document (inputs with binary_data_size) and binary section that the binary form
    stands for: protocol.py then checks sizes, limits and BYTES layouts as for Triton's binary
    requests."""
    names = sorted({key[:-len(suffix)] for key in fields for suffix in (SHAPE_SUFFIX, DATATYPE_SUFFIX)
                    if key.endswith(suffix)})
    if not names:
        raise InvalidInput("the message has no 'inputs' field (JSON form) and no '<name>.shape' and "
                           "'<name>.datatype' fields (binary form)")
    entries = []
    chunks = []
    for raw_name in names:
        name = raw_name.decode(errors="replace")
        for needed in (raw_name, raw_name + SHAPE_SUFFIX, raw_name + DATATYPE_SUFFIX):
            if needed not in fields:
                raise InvalidInput(f"input '{name}': the binary form needs fields '{name}', '{name}.shape' and "
                                   f"'{name}.datatype'; '{needed.decode(errors='replace')}' is missing")
        data = fields[raw_name]
        entries.append({"name": name, "datatype": fields[raw_name + DATATYPE_SUFFIX].decode(errors="replace"),
                        "shape": _shape(name, fields[raw_name + SHAPE_SUFFIX]),
                        "parameters": {"binary_data_size": len(data)}})
        chunks.append(data)
    return {"inputs": entries}, b"".join(chunks)


def _shape(name: str, raw: bytes) -> list[int]:
    text = raw.decode(errors="replace").strip()
    parts = [part.strip() for part in text.split(",")] if text else []
    if not all(part.isdigit() for part in parts):  # isdigit: no sign, so non-negative
        raise InvalidInput(f"input '{name}': '{name}.shape' must be comma-separated non-negative integers, "
                           f"received {text!r}")
    return [int(part) for part in parts]


def prediction(*, message: Message, model: str, version: int, outputs: dict[str, np.ndarray],
               output_format: str, read_ms: float, compute_ms: float) -> Prediction:
    """The sink entry answering `message`: source_id, model, version, the outputs (one JSON field,
    or three binary fields per output), queued_ms (message written → read) and compute_ms (its
    batch's run). InvalidInput where an output has a dtype v2 cannot carry."""
    fields: dict[bytes, bytes] = {b"source_id": message.id.encode(), b"model": model.encode(),
                                  b"version": str(version).encode()}
    if output_format == "binary":
        for name, array in outputs.items():
            datatype = datatype_of(array)
            data = serialize_bytes_tensor(array) if datatype == "BYTES" else _little_endian(array).tobytes()
            fields[name.encode()] = data
            fields[name.encode() + SHAPE_SUFFIX] = ",".join(map(str, array.shape)).encode()
            fields[name.encode() + DATATYPE_SUFFIX] = datatype.encode()
    else:
        fields[b"outputs"] = orjson.dumps([_json_output(name, array) for name, array in outputs.items()],
                                          option=orjson.OPT_SERIALIZE_NUMPY)
    if message.created_ms is not None:
        fields[b"queued_ms"] = str(max(0, round(read_ms - message.created_ms))).encode()
    fields[b"compute_ms"] = f"{compute_ms:.3f}".encode()
    return Prediction(source_id=message.id, fields=fields)


def _json_output(name: str, array: np.ndarray) -> dict[str, Any]:
    """One output in v2's JSON form, as encode_response writes it."""
    datatype = datatype_of(array)
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if datatype == "BYTES":
        entry["data"] = [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in array.ravel()]
    elif datatype == "FP16":
        entry["data"] = array.astype(np.float32).ravel()  # orjson writes no float16
    else:
        entry["data"] = np.ascontiguousarray(array).ravel()
    return entry


def _little_endian(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def binary_output_clashes(outputs: Signature) -> list[str]:
    """The outputs whose binary fields would overwrite a sink entry's own fields: a binding with
    output_format "binary" is to be refused for such a version."""
    taken = set(RESERVED_FIELDS)
    return sorted(o["name"] for o in outputs
                  if {o["name"], f"{o['name']}.shape", f"{o['name']}.datatype"} & taken)
