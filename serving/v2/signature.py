"""Checks a decoded request against a version's signature; every mismatch is a 400 naming the
input (or output), what was expected and what was received."""

from typing import Any

from console.errors import InvalidInput
from serving.v2.protocol import InferRequest


def is_batchable(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> bool:
    """A version has a batch axis when every input and output starts with a dynamic dimension."""
    tensors = [*inputs, *outputs]
    return bool(tensors) and all(t["shape"] and t["shape"][0] == -1 for t in tensors)


def check_request(request: InferRequest, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
                  *, max_batch_size: int) -> int:
    """Validate names, datatypes and shapes; return the request's batch size (1 without a batch axis)."""
    expected = {tensor["name"]: tensor for tensor in inputs}
    received = {tensor.name: tensor for tensor in request.inputs}
    if len(received) != len(request.inputs):
        raise InvalidInput("an input name appears more than once")
    for name in received:
        if name not in expected:
            raise InvalidInput(f"unknown input '{name}': the model takes {', '.join(sorted(expected))}")
    for name, spec in expected.items():
        if name not in received:
            raise InvalidInput(f"missing input '{name}' ({spec['datatype']} {spec['shape']})")
        tensor = received[name]
        if tensor.datatype != spec["datatype"]:
            raise InvalidInput(
                f"input '{name}': expected datatype {spec['datatype']}, received {tensor.datatype}"
            )
        want, got = spec["shape"], tensor.shape
        if len(want) != len(got) or any(w != -1 and w != g for w, g in zip(want, got, strict=True)):
            raise InvalidInput(f"input '{name}': expected shape {want}, received {got}")
    if request.outputs is not None:
        known = {tensor["name"] for tensor in outputs}
        for name in request.outputs:
            if name not in known:
                raise InvalidInput(f"unknown output '{name}': the model returns {', '.join(sorted(known))}")
    if not is_batchable(inputs, outputs):
        return 1
    sizes = {tensor.shape[0] for tensor in request.inputs}
    if len(sizes) != 1:
        raise InvalidInput(f"inputs disagree on the batch size (first dimension): {sorted(sizes)}")
    batch = sizes.pop()
    if batch < 1:
        raise InvalidInput("the batch size (first dimension) must be at least 1")
    if max_batch_size and batch > max_batch_size:
        raise InvalidInput(f"a batch of {batch} rows exceeds the deployment's max_batch_size of {max_batch_size}")
    return batch
