"""The KServe v2 / Open Inference Protocol codec, with Triton's binary tensor data extension.
Pure functions over bytes and numpy arrays: no Django, no I/O.

Binary extension: the body is a JSON header of `Inference-Header-Content-Length` bytes followed
by raw tensors; an input with `parameters.binary_data_size` takes that many bytes, in order.
Outputs are returned binary when the output asks (`parameters.binary_data`) or the request does
(`parameters.binary_data_output`), which `tritonclient` sets when it names no outputs. Each input
is held to signature.py's `Limits` from its declared shape and datatype before it is allocated."""

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import simdjson

from console.errors import InvalidInput
from registry.datatypes import NUMPY_TO_V2, V2_TO_NUMPY
from serving.v2.signature import BYTES_PREFIX, DEFAULT_LIMITS, Limits, check_parameters, declared_shape, over_limit

_INT_KINDS = "iu"
_NUMBER_KINDS = "iuf"
# How simdjson copies a homogeneous array of JSON numbers into a buffer, per numpy kind of the
# input's datatype (BOOL and BYTES have none: they always take orjson's path).
_BUFFERS = {"f": ("d", np.float64), "i": ("i", np.int64), "u": ("u", np.uint64)}
# Below this many bytes orjson's Python lists cost less than simdjson's proxies (decode_request,
# M1's 1.4 KB body: 7 µs with orjson, 10 with simdjson; M2's 253 KB: 595 µs against 297).
_FAST_PARSE_BYTES = 16 * 1024
# numpy reads numbers mixed with strings as one string array as wide as the longest, 4 bytes a
# character (a 16 MB body took 670 MB before the kind check refused it): up to 2·size² bytes for a
# body of `size`, harmless below this size; above it strings are refused before numpy sees them.
_SCAN_FROM_BYTES = 2048
_SCALARS = frozenset({int, float, bool, str})


@dataclass(slots=True)
class Tensor:
    """One named tensor of a request, decoded into an array."""

    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray


@dataclass(slots=True)
class InferRequest:
    """A decoded v2 infer request: inputs, requested outputs and the parameters Paddock reads."""

    id: str | None
    inputs: list[Tensor]
    outputs: list[str] | None = None  # names asked for; None: every output
    binary_outputs: set[str] = field(default_factory=set)
    binary_all: bool = False
    priority: int = 0
    timeout_us: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # the request's own (A/B keys among them)

    def wants_binary(self, name: str) -> bool:
        """Whether output `name` goes back as binary data (Triton's extension) instead of JSON."""
        return self.binary_all or name in self.binary_outputs


def decode_request(body: bytes, json_length: int | None = None, limits: Limits = DEFAULT_LIMITS) -> InferRequest:
    """Parse a v2 infer request (JSON, or JSON header + binary tensors) into arrays."""
    if json_length is not None:
        if json_length < 0 or json_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {json_length} but the body has {len(body)} bytes"
            )
        header, binary = body[:json_length], memoryview(body)[json_length:]
    else:
        header, binary = body, memoryview(b"")
    return request_from_json(parse_document(header, "request body"), binary, limits=limits,
                             source_bytes=len(header))


def parse_document(raw: bytes | str, what: str) -> dict[str, Any]:
    """A JSON object, or a 400 naming `what` was wrong with it. An input's flat list of numbers
    under "data" comes back as a numpy array, read by simdjson straight into a buffer: building
    a Python float per element is most of a large JSON tensor's cost. Anything else (nested or
    mixed data, values out of range, invalid JSON) is parsed by orjson, whose lists
    request_from_json checks and whose errors it reports, as before."""
    if len(raw) >= _FAST_PARSE_BYTES:
        document = _parse_with_arrays(raw)
        if document is not None:
            return document
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{what} must be a JSON object with 'inputs'")
    return document


class _ToOrjson(Exception):
    """What simdjson read is for orjson to read again (and judge)."""


def _parse_with_arrays(raw: bytes | str) -> dict[str, Any] | None:
    """The document with each input's flat numeric data as an array, or None where orjson is to
    parse it (simdjson refused it, it is not an object, or it repeats a key). A parser per call:
    a reused one refuses to parse while proxies of its last document live (a few hundred ns to
    make)."""
    try:
        document = simdjson.Parser().parse(raw)
        if not isinstance(document, simdjson.Object):
            return None
        plain = _fields(document)
        if isinstance(plain.get("inputs"), simdjson.Array):
            plain["inputs"] = [_input(entry) for entry in plain["inputs"]]
        return _settled(plain)
    except (ValueError, UnicodeError, RuntimeError, _ToOrjson):  # RuntimeError: nested too deep
        return None


def _fields(obj: Any) -> dict[str, Any]:
    """An object's fields, values still simdjson's proxies (indexing keeps them; items() would
    build every list). A repeated key goes to orjson, where the last one wins."""
    keys = list(obj.keys())
    if len(set(keys)) < len(keys):
        raise _ToOrjson
    return {key: obj[key] for key in keys}


def _input(raw: Any) -> Any:
    """One input as orjson reads it, its flat numeric data as an array."""
    if not isinstance(raw, simdjson.Object):
        return _plain(raw)
    entry = _settled(_fields(raw), keep="data")
    if "data" in entry:
        data = entry["data"]
        entry["data"] = _numbers(data, entry.get("datatype")) if isinstance(data, simdjson.Array) else _plain(data)
    return entry


def _settled(fields: dict[str, Any], keep: str = "") -> dict[str, Any]:
    """Every proxy among the values (but `keep`'s) as the Python value orjson gives."""
    return {key: value if key == keep else _plain(value) for key, value in fields.items()}


def _numbers(data: Any, datatype: Any) -> Any:
    """A flat array of numbers as numpy values of its datatype's kind (int64, uint64 or float64,
    as numpy reads orjson's lists); otherwise the list, for request_from_json to check."""
    dtype = V2_TO_NUMPY.get(datatype) if isinstance(datatype, str) else None
    buffer = _BUFFERS.get(dtype.kind) if dtype is not None else None
    if buffer is not None:
        of_type, read_as = buffer
        try:
            values = np.frombuffer(data.as_buffer(of_type=of_type), dtype=read_as)
        except (TypeError, ValueError):  # not all numbers of that kind, or out of its range
            values = None
        # as_buffer flattens nested lists: only a flat one (a number first, one number per
        # element) is taken, so that nested or ragged data is checked as before. (A list whose
        # nesting still gives one number per element, as [1, [2], 3], is read flat, as Triton
        # reads nested data.)
        if values is not None and values.size == len(data) and (not values.size or not isinstance(
                data[0], simdjson.Array)):
            return values
    return data.as_list()


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def request_from_json(document: dict[str, Any], binary: memoryview | bytes = b"", *,
                      limits: Limits = DEFAULT_LIMITS, source_bytes: int | None = None) -> InferRequest:
    """An InferRequest from a parsed v2 JSON document (and the binary section after its header);
    `source_bytes`, the JSON text's size, spares small documents the look for strings."""
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    parameters = _parameters(document, "request")
    offset = used = 0
    inputs = []
    binary = memoryview(binary)
    scan = source_bytes is None or source_bytes >= _SCAN_FROM_BYTES
    for raw in raw_inputs:
        tensor, offset, used = _decode_input(raw, binary, offset, limits, used, scan)
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidInput(f"the binary section has {len(binary) - offset} bytes that no input claims")
    request = InferRequest(id=request_id, inputs=inputs, binary_all=bool(parameters.get("binary_data_output")))
    if "outputs" in document:
        raw_outputs = document["outputs"]
        if not isinstance(raw_outputs, list):
            raise InvalidInput("'outputs' must be a list")
        request.outputs = []
        for raw in raw_outputs:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise InvalidInput("each requested output needs a 'name'")
            request.outputs.append(raw["name"])
            if _parameters(raw, f"output '{raw['name']}'").get("binary_data"):
                request.binary_outputs.add(raw["name"])
    request.priority, request.timeout_us = check_parameters(parameters, limits)
    request.parameters = parameters
    return request


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = obj.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"'parameters' of the {where} must be an object")
    return parameters


def _decode_input(raw: Any, binary: memoryview, offset: int, limits: Limits, used: int,
                  scan: bool) -> tuple[Tensor, int, int]:
    """One input, the binary section's offset after it, and the inputs' bytes with it (`used` before)."""
    if not isinstance(raw, dict):
        raise InvalidInput("each input must be an object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("each input needs a non-empty 'name'")
    datatype = raw.get("datatype")
    if datatype not in V2_TO_NUMPY:
        raise InvalidInput(f"input '{name}': unknown datatype {datatype!r}")
    shape, count = declared_shape(name, datatype, raw.get("shape"), limits, used)
    size = _parameters(raw, f"input '{name}'").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise InvalidInput(
                f"input '{name}': binary_data_size {size} runs past the {len(binary)}-byte binary section"
            )
        if datatype == "BYTES" and used + size > limits.max_bytes:  # Triton's layout: what the elements take
            raise over_limit(name, f"its BYTES data are {size} bytes", size, used, limits)
        array = _from_binary(name, datatype, shape, count, binary[offset:offset + size])
        return Tensor(name, datatype, shape, array), offset + size, used + size
    if "data" not in raw:
        raise InvalidInput(f"input '{name}': no 'data' and no binary_data_size")
    if datatype == "BYTES":
        array, taken = _bytes_from_json(name, shape, count, raw["data"])
        if used + taken > limits.max_bytes:
            raise over_limit(name, f"its {count} BYTES elements are {taken} bytes ({BYTES_PREFIX} each besides "
                                    f"their contents)", taken, used, limits)
        return Tensor(name, datatype, shape, array), offset, used + taken
    array = _from_json(name, datatype, shape, count, raw["data"], scan)
    return Tensor(name, datatype, shape, array), offset, used + array.nbytes


def _bytes_from_json(name: str, shape: list[int], count: int, data: Any) -> tuple[np.ndarray, int]:
    """BYTES elements from JSON strings (the v2 JSON form has no other: an integer n once became
    bytes(n), n zero bytes) as UTF-8, and the bytes they take with their length prefixes."""
    values = np.asarray(data, dtype=object).ravel()
    if values.size != count:
        raise InvalidInput(f"input '{name}': shape {shape} needs {count} elements, received {values.size}")
    try:
        encoded = [v.encode() for v in values]  # only str, of the types JSON gives, has encode()
    except (AttributeError, UnicodeError):  # UnicodeError: a lone surrogate (\ud800) has no UTF-8
        raise InvalidInput(f"input '{name}': BYTES data must be strings") from None
    array = np.empty(count, dtype=object)
    array[:] = encoded
    return array.reshape(shape), count * BYTES_PREFIX + sum(map(len, encoded))


def _from_json(name: str, datatype: str, shape: list[int], count: int, data: Any, scan: bool) -> np.ndarray:
    if scan and isinstance(data, list):
        _refuse_strings(name, datatype, data)
    try:
        parsed = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"input '{name}': data is ragged; expected {count} {datatype} values") from None
    dtype = V2_TO_NUMPY[datatype]
    if dtype.kind in _INT_KINDS and parsed.dtype.kind in "fO":
        # Integers beyond int64 (UINT64's upper half) make numpy guess float or object.
        parsed = _exact_integers(name, datatype, data, parsed)
    kind = parsed.dtype.kind
    allowed = "b" if dtype.kind == "b" else _INT_KINDS if dtype.kind in _INT_KINDS else _NUMBER_KINDS
    if parsed.size and kind not in allowed:
        raise InvalidInput(f"input '{name}': data is not {datatype} (received {_describe_kind(kind)} values)")
    if parsed.size != count:
        raise InvalidInput(f"input '{name}': shape {shape} needs {count} elements, received {parsed.size}")
    if dtype.kind in _INT_KINDS and parsed.size:
        info = np.iinfo(dtype)
        if parsed.min() < info.min or parsed.max() > info.max:
            raise InvalidInput(f"input '{name}': values outside the {datatype} range [{info.min}, {info.max}]")
    return parsed.astype(dtype, copy=False).reshape(shape)


def _refuse_strings(name: str, datatype: str, data: list[Any]) -> None:
    """Strings among numbers refused as the kind check would, before numpy makes a string array of
    them (_SCAN_FROM_BYTES): an object array holds pointers; a ragged list keeps its rows whole."""
    kinds = set(map(type, np.asarray(data, dtype=object).ravel()))
    if str in kinds and kinds <= _SCALARS:  # with None, dicts or rows among them numpy makes no string array
        raise InvalidInput(f"input '{name}': data is not {datatype} (received string values)")


def _exact_integers(name: str, datatype: str, data: Any, guessed: np.ndarray) -> np.ndarray:
    values = np.asarray(data, dtype=object)
    flat = values.ravel()
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        return guessed  # not all integers: the kind check below explains
    info = np.iinfo(V2_TO_NUMPY[datatype])
    if flat.size and (min(flat) < info.min or max(flat) > info.max):
        raise InvalidInput(f"input '{name}': values outside the {datatype} range [{info.min}, {info.max}]")
    return np.array(values.tolist(), dtype=V2_TO_NUMPY[datatype])


def _describe_kind(kind: str) -> str:
    return {"U": "string", "S": "string", "O": "mixed", "b": "boolean", "f": "floating-point",
            "i": "integer", "u": "integer"}.get(kind, kind)


def _from_binary(name: str, datatype: str, shape: list[int], count: int, chunk: memoryview) -> np.ndarray:
    if datatype == "BYTES":
        return deserialize_bytes_tensor(name, chunk, count).reshape(shape)
    dtype = V2_TO_NUMPY[datatype]
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"input '{name}': shape {shape} of {datatype} needs {expected} bytes, received {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def deserialize_bytes_tensor(name: str, chunk: memoryview, count: int) -> np.ndarray:
    """Triton's BYTES layout: each element a little-endian uint32 length, then its bytes."""
    items: list[bytes] = []
    offset = 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise InvalidInput(f"input '{name}': truncated BYTES element length")
        (length,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if offset + length > len(chunk):
            raise InvalidInput(f"input '{name}': a BYTES element runs past its binary data")
        items.append(bytes(chunk[offset:offset + length]))
        offset += length
    if len(items) != count:
        raise InvalidInput(f"input '{name}': expected {count} BYTES elements, received {len(items)}")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def serialize_bytes_tensor(array: np.ndarray) -> bytes:
    """BYTES elements as Triton's binary format: each a 4-byte little-endian length and its bytes."""
    parts = []
    for item in array.ravel():
        value = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(value)))
        parts.append(value)
    return b"".join(parts)


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype of a numpy array."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    try:
        return NUMPY_TO_V2[array.dtype]
    except KeyError:
        raise InvalidInput(f"the model returned an array of {array.dtype}, which v2 cannot carry") from None


def encode_response(*, model_name: str, model_version: str, request: InferRequest,
                    outputs: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (for the
    Inference-Header-Content-Length header)."""
    names = request.outputs if request.outputs is not None else list(outputs)
    entries = []
    blobs = []
    for name in names:
        array = outputs[name]
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.wants_binary(name):
            blob = serialize_bytes_tensor(array) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in array.ravel()]
        elif datatype == "FP16":
            entry["data"] = array.astype(np.float32).ravel()
        else:
            entry["data"] = np.ascontiguousarray(array).ravel()
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = entries
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def error_body(message: str) -> bytes:
    """v2's error body: `{"error": message}`."""
    return orjson.dumps({"error": message})
