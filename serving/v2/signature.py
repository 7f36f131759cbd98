"""Checks a request against the server's limits while protocol.py decodes it (from the declared
shape and datatype, before anything is allocated), and the decoded request against a version's
signature. Every refusal is a 400 naming the input (or output or parameter), what was expected
and what was received."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any

from console.errors import InvalidInput
from registry.datatypes import V2_TO_NUMPY

if TYPE_CHECKING:  # protocol.py imports this module for the limits
    from serving.v2.protocol import InferRequest

BYTES_PREFIX = 4  # a BYTES element's length prefix in Triton's binary form: what an element takes at least
_ITEMSIZES = {name: BYTES_PREFIX if name == "BYTES" else dtype.itemsize for name, dtype in V2_TO_NUMPY.items()}


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask of the web process. The defaults are the settings' defaults
    (console/settings.py, PADDOCK_MAX_*); serving.v2.http.request_limits() reads the settings."""

    max_bytes: int = 64 * 1024 * 1024  # the inputs decoded, all together (numbers: count × itemsize)
    max_rank: int = 16
    max_timeout_us: int = 60_000_000
    max_priority: int = 8


DEFAULT_LIMITS = Limits()


def declared_shape(name: str, datatype: str, shape: Any, limits: Limits, used: int) -> tuple[list[int], int]:
    """The shape and the element count it declares, refused unless (1) a list of at most
    `max_rank` (2) non-negative integers (3) whose bytes fit what the inputs before it (`used`)
    left of the request's budget. A dimension of 0 counts as 1 there: [0, 2**62] holds nothing,
    yet numpy cannot make it. Arithmetic on the shape only."""
    if not isinstance(shape, list):
        raise InvalidInput(f"input '{name}': 'shape' must be a list of non-negative integers")
    if len(shape) > limits.max_rank:
        raise InvalidInput(f"input '{name}': shape has {len(shape)} dimensions; at most {limits.max_rank} are allowed")
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape):
        raise InvalidInput(f"input '{name}': 'shape' must be a list of non-negative integers")
    itemsize = _ITEMSIZES[datatype]
    count = prod(shape)
    size = count * itemsize
    if used + size > limits.max_bytes:
        least = f"at least {size} bytes ({BYTES_PREFIX} per element)" if datatype == "BYTES" else f"{size} bytes"
        raise over_limit(name, f"shape {shape} of {datatype} is {least}", size, used, limits)
    if not count:
        span = prod(d or 1 for d in shape) * itemsize
        if used + span > limits.max_bytes:
            raise over_limit(name, f"shape {shape} of {datatype} spans {span} bytes besides its 0 dimension",
                             span, used, limits)
    return shape, count


def over_limit(name: str, what: str, size: int, used: int, limits: Limits) -> InvalidInput:
    """The refusal of an input whose `size` bytes (`what` says which) take the request past its budget."""
    if not used:
        return InvalidInput(f"input '{name}': {what}, over the limit of {limits.max_bytes} bytes per request")
    return InvalidInput(f"input '{name}': {what}, {used + size} bytes with the inputs before it, over the "
                        f"limit of {limits.max_bytes} bytes per request")


def check_parameters(parameters: dict[str, Any], limits: Limits) -> tuple[int, int | None]:
    """The request's priority (0, the default, is served after every explicit level; 1 first)
    and timeout in microseconds (None: the deployment's), each refused outside its range."""
    priority = parameters.get("priority", 0)
    timeout = parameters.get("timeout")
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= limits.max_priority:
        raise InvalidInput(f"parameter 'priority' must be an integer from 0 (the default) to {limits.max_priority}")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
        raise InvalidInput("parameter 'timeout' must be a positive integer (microseconds)")
    if timeout is not None and timeout > limits.max_timeout_us:
        raise InvalidInput(f"parameter 'timeout' is {timeout} microseconds; the most allowed is "
                           f"{limits.max_timeout_us} ({limits.max_timeout_us / 1e6:g} s)")
    return priority, timeout


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
