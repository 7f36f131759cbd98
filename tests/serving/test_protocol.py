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
from serving.v2.signature import check_request, is_batchable

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
