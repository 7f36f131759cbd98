"""The v2 codec on its own: pure functions over bytes and arrays."""

import json
import struct

import numpy as np
import pytest

from console.errors import InvalidInput
from serving.v2.protocol import (
    InferRequest,
    Tensor,
    _parse_with_arrays,
    decode_request,
    encode_response,
    serialize_bytes_tensor,
)
from serving.v2.signature import DEFAULT_LIMITS, Limits, check_request, is_batchable

SIGNATURE_IN = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
SIGNATURE_OUT = [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]


def test_nested_and_flat_json_data_decode_to_the_same_array() -> None:
    flat = decode_request(json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],
                                                  "data": [1, 2, 3, 4]}]}).encode())
    nested = decode_request(json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],
                                                    "data": [[1, 2], [3, 4]]}]}).encode())
    np.testing.assert_array_equal(flat.inputs[0].array, nested.inputs[0].array)
    assert flat.inputs[0].array.dtype == np.float32


def test_binary_inputs_are_read_in_order_after_the_json_header() -> None:
    a = np.arange(4, dtype=np.int32).reshape(2, 2)
    words = np.array([b"ab", b"", b"\xff"], dtype=object)
    header = json.dumps({"inputs": [
        {"name": "a", "datatype": "INT32", "shape": [2, 2], "parameters": {"binary_data_size": 16}},
        {"name": "w", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": 15}},
    ], "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    request = decode_request(header + a.tobytes() + serialize_bytes_tensor(words), len(header))
    np.testing.assert_array_equal(request.inputs[0].array, a)
    assert list(request.inputs[1].array) == [b"ab", b"", b"\xff"]
    assert request.wants_binary("y") and not request.wants_binary("z")


def test_binary_outputs_carry_their_size_and_follow_the_header() -> None:
    request = InferRequest(id="7", inputs=[], binary_all=True)
    y = np.array([[1.5], [2.5]], dtype=np.float32)
    body, header_length = encode_response(model_name="m", model_version="3", request=request, outputs={"y": y})
    assert header_length is not None
    header = json.loads(body[:header_length])
    assert header == {"model_name": "m", "model_version": "3", "id": "7", "outputs": [
        {"name": "y", "datatype": "FP32", "shape": [2, 1], "parameters": {"binary_data_size": 8}}]}
    np.testing.assert_array_equal(np.frombuffer(body[header_length:], dtype=np.float32), [1.5, 2.5])


def test_bytes_outputs_are_length_prefixed_in_binary() -> None:
    request = InferRequest(id=None, inputs=[], binary_all=True)
    body, length = encode_response(model_name="m", model_version="1", request=request,
                                   outputs={"s": np.array(["hé", ""], dtype=object)})
    assert body[length:] == struct.pack("<I", 3) + "hé".encode() + struct.pack("<I", 0)


@pytest.mark.parametrize(("data", "message"), [
    ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [300]}]},
     "input 'x': values outside the INT8 range [-128, 127]"),
    ({"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}]},
     "input 'x': data is not BOOL (received integer values)"),
    ({"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}]},
     "input 'x': data is not INT32 (received floating-point values)"),
    ({"inputs": [{"name": "x", "datatype": "FP33", "shape": [1], "data": [1]}]}, "input 'x': unknown datatype 'FP33'"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]},
     "input 'x': 'shape' must be a list of non-negative integers"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [[1], [2, 3]]}]},
     "input 'x': data is ragged; expected 2 FP32 values"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "input 'x': no 'data' and no binary_data_size"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": {"a": 1}}]},
     "input 'x': data is not FP32 (received mixed values)"),
    ({"id": 5, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}, "'id' must be a string"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": {"timeout": -1}},
     "parameter 'timeout' must be a positive integer (microseconds)"),
    ([1, 2], "request body must be a JSON object with 'inputs'"),
    # Hostile shapes and data (issue 20): refused from the declared shape, before any allocation.
    ({"inputs": [{"name": "w", "datatype": "BYTES", "shape": [1], "data": [300000000]}]},
     "input 'w': BYTES data must be strings"),
    ({"inputs": [{"name": "w", "datatype": "BYTES", "shape": [2], "data": [["a"], "b"]}]},
     "input 'w': BYTES data must be strings"),
    ({"inputs": [{"name": "w", "datatype": "BYTES", "shape": [2**40], "data": []}]},
     "input 'w': shape [1099511627776] of BYTES is at least 4398046511104 bytes (4 per element), over the limit "
     "of 67108864 bytes per request"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, 2**62], "data": []}]},
     "input 'x': shape [0, 4611686018427387904] of FP32 spans 18446744073709551616 bytes besides its 0 dimension, "
     "over the limit of 67108864 bytes per request"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1] * 70, "data": [1]}]},
     "input 'x': shape has 70 dimensions; at most 16 are allowed"),
    ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [3, 2**22], "data": [1]}]},
     "input 'x': shape [3, 4194304] of FP64 is 100663296 bytes, over the limit of 67108864 bytes per request"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, "a" * 1000]}]},
     "input 'x': data is not FP32 (received string values)"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": {"priority": 9}},
     "parameter 'priority' must be an integer from 0 (the default) to 8"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": {"priority": 2**64}},
     "parameter 'priority' must be an integer from 0 (the default) to 8"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": {"timeout": 60_000_001}},
     "parameter 'timeout' is 60000001 microseconds; the most allowed is 60000000 (60 s)"),
])
@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_malformed_requests_are_refused_with_the_reason(data: object, message: str, large: bool) -> None:
    """Small bodies are parsed by orjson alone; large ones by simdjson first (the same verdicts)."""
    if large:
        data = pad(data)
    with pytest.raises(InvalidInput) as refused:
        decode_request(json.dumps(data).encode())
    assert refused.value.message == message


def pad(data: object) -> object:
    """The same request, past the size where simdjson reads its numbers."""
    if isinstance(data, dict):
        return {**data, "parameters": {**data.get("parameters", {}), "note": "x" * 20_000}}
    assert isinstance(data, list)
    return data + [0] * 10_000


def test_large_json_tensors_are_read_straight_into_arrays_of_the_same_values() -> None:
    rng = np.random.default_rng(3)
    image = rng.standard_normal(3 * 64 * 64).astype(np.float32)
    ids = rng.integers(-2**62, 2**62, 300)
    body = json.dumps({"id": "r", "inputs": [
        {"name": "image", "datatype": "FP32", "shape": [1, 3, 64, 64], "data": image.tolist()},
        {"name": "ids", "datatype": "INT64", "shape": [300], "data": ids.tolist()},
        {"name": "big", "datatype": "UINT64", "shape": [2], "data": [2**64 - 1, 0]},
        {"name": "half", "datatype": "FP16", "shape": [2], "data": [1, 0.5]},
    ], "outputs": [{"name": "y"}]}).encode()
    parsed = _parse_with_arrays(body)
    assert parsed is not None and all(isinstance(i["data"], np.ndarray) for i in parsed["inputs"])
    request = decode_request(body)
    np.testing.assert_array_equal(request.inputs[0].array, image.reshape(1, 3, 64, 64))
    assert request.inputs[0].array.dtype == np.float32
    np.testing.assert_array_equal(request.inputs[1].array, ids)
    assert request.inputs[2].array.tolist() == [2**64 - 1, 0] and request.inputs[2].array.dtype == np.uint64
    assert request.inputs[3].array.dtype == np.float16
    assert request.id == "r" and request.outputs == ["y"]


def test_large_nested_mixed_and_duplicated_data_decode_as_orjson_reads_them() -> None:
    note = {"note": "x" * 20_000}
    nested = decode_request(json.dumps({"parameters": note, "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}).encode())
    assert nested.inputs[0].array.tolist() == [[1, 2], [3, 4]]
    words = decode_request(json.dumps({"parameters": note, "inputs": [
        {"name": "w", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}).encode())
    assert list(words.inputs[0].array) == [b"a", b"b"]
    # Duplicate keys: the last wins, as with orjson.
    twice = (b'{"parameters": ' + json.dumps(note).encode()
             + b', "inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2], "data": [5, 6]}]}')
    assert decode_request(twice).inputs[0].array.tolist() == [5, 6]


def test_inputs_share_one_byte_budget_counted_before_allocation() -> None:
    limits = Limits(max_bytes=1024)
    four = {"name": "a", "datatype": "FP32", "shape": [200], "data": [0] * 200}  # 800 bytes
    assert decode_request(json.dumps({"inputs": [four]}).encode(), limits=limits).inputs[0].array.nbytes == 800
    two = {"inputs": [four, {"name": "b", "datatype": "INT64", "shape": [30], "data": []}]}
    with pytest.raises(InvalidInput) as refused:
        decode_request(json.dumps(two).encode(), limits=limits)
    assert refused.value.message == ("input 'b': shape [30] of INT64 is 240 bytes, 1040 bytes with the inputs before "
                                     "it, over the limit of 1024 bytes per request")
    words = {"inputs": [{"name": "w", "datatype": "BYTES", "shape": [2], "data": ["é" * 300, "x" * 420]}]}
    with pytest.raises(InvalidInput) as refused:
        decode_request(json.dumps(words).encode(), limits=limits)
    assert refused.value.message == ("input 'w': its 2 BYTES elements are 1028 bytes (4 each besides their "
                                     "contents), over the limit of 1024 bytes per request")
    header = json.dumps({"inputs": [four, {"name": "w", "datatype": "BYTES", "shape": [1],
                                           "parameters": {"binary_data_size": 254}}]}).encode()
    blob = serialize_bytes_tensor(np.array([b"z" * 250], dtype=object))
    with pytest.raises(InvalidInput) as refused:
        decode_request(header + blob, len(header), limits=limits)
    assert refused.value.message == ("input 'w': its BYTES data are 254 bytes, 1054 bytes with the inputs before "
                                     "it, over the limit of 1024 bytes per request")


def test_the_codecs_default_limits_are_the_settings_defaults() -> None:
    from serving.v2.http import request_limits

    assert request_limits() == DEFAULT_LIMITS  # the websocket path decodes with these when given none


def test_json_nested_deeper_than_simdjson_reads_gets_orjsons_message() -> None:
    deep = b"[" * 1100 + b"]" * 1100
    body = b'{"parameters": {"note": "' + b"x" * 20_000 + b'"}, "inputs": [{"name": "x", "data": ' + deep + b"}]}"
    with pytest.raises(InvalidInput) as refused:
        decode_request(body)
    assert refused.value.message.startswith("request body is not valid JSON: depth limit exceeded")


def test_large_invalid_json_gets_orjsons_message() -> None:
    body = b'{"parameters": {"note": "' + b"x" * 20_000 + b'"}, "inputs": [1, 2'
    with pytest.raises(InvalidInput) as refused:
        decode_request(body)
    assert refused.value.message.startswith("request body is not valid JSON: ")


def tensor(name: str, datatype: str, shape: list[int]) -> Tensor:
    return Tensor(name, datatype, shape, np.zeros(shape, dtype=np.float32))


def test_the_signature_check_returns_the_batch_size() -> None:
    request = InferRequest(id=None, inputs=[tensor("x", "FP32", [5, 2])])
    assert check_request(request, SIGNATURE_IN, SIGNATURE_OUT, max_batch_size=8) == 5
    assert is_batchable(SIGNATURE_IN, SIGNATURE_OUT)
    fixed = [{"name": "x", "datatype": "FP32", "shape": [3, 2]}]
    assert not is_batchable(fixed, SIGNATURE_OUT)
    assert check_request(InferRequest(id=None, inputs=[tensor("x", "FP32", [3, 2])]), fixed, SIGNATURE_OUT,
                         max_batch_size=0) == 1


def test_inputs_must_agree_on_the_batch_size() -> None:
    signature = [{"name": "a", "datatype": "FP32", "shape": [-1, 2]}, {"name": "b", "datatype": "FP32", "shape": [-1]}]
    request = InferRequest(id=None, inputs=[tensor("a", "FP32", [2, 2]), tensor("b", "FP32", [3])])
    with pytest.raises(InvalidInput, match=r"inputs disagree on the batch size \(first dimension\): \[2, 3\]"):
        check_request(request, signature, SIGNATURE_OUT, max_batch_size=8)
