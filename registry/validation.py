"""A real load and smoke inference of a version, producing its validation report."""

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from registry.datatypes import V2_TO_NUMPY
from workers.runtimes import RuntimeLoadError, load_runtime

# Dynamic axes other than the batch axis get this size in smoke inputs.
SMOKE_DYNAMIC_DIM = 4
TIMED_RUNS = 3


class ValidationFailed(Exception):
    """The runtime refused the artifact or its smoke inference; the message says how."""


def smoke_batch_sizes(inputs: list[dict[str, Any]], max_batch: int) -> list[int]:
    """Batch 1 and the max batch when the first axis is dynamic; the fixed size otherwise."""
    first_dims = {tensor["shape"][0] for tensor in inputs if tensor["shape"]}
    if not first_dims or first_dims == {-1}:
        return sorted({1, max_batch})
    return sorted(d for d in first_dims if d != -1)[:1]


def smoke_inputs(inputs: list[dict[str, Any]], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A feed for the signature: the dynamic batch axis at `batch`, other dynamic axes at
    SMOKE_DYNAMIC_DIM; random floats, zero integers, empty bytes."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for tensor in inputs:
        shape = list(tensor["shape"])
        if shape and shape[0] == -1:
            shape[0] = batch
        shape = [SMOKE_DYNAMIC_DIM if d == -1 else d for d in shape]
        dtype = V2_TO_NUMPY[tensor["datatype"]]
        if dtype.kind == "f":
            arrays[tensor["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "O":
            arrays[tensor["name"]] = np.full(shape, b"", dtype=object)
        else:
            # Zeros are a valid index or id for every integer input (embeddings, masks).
            arrays[tensor["name"]] = np.zeros(shape, dtype=dtype)
    return arrays


def validate_artifact(path: Path, *, fmt: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
                      max_batch: int) -> dict[str, Any]:
    """Load the artifact, run it at each smoke batch size, and report what happened."""
    started = time.perf_counter()
    try:
        runtime = load_runtime(path, fmt=fmt, signature={"inputs": inputs, "outputs": outputs})
    except RuntimeLoadError as exc:
        raise ValidationFailed(f"{fmt} runtime could not load the artifact: {exc}") from exc
    load_ms = (time.perf_counter() - started) * 1000
    runs = []
    for batch in smoke_batch_sizes(inputs, max_batch):
        feed = smoke_inputs(inputs, batch)
        try:
            result = runtime.run(feed)  # the first run warms up
            latencies = []
            for _ in range(TIMED_RUNS):
                tick = time.perf_counter()
                result = runtime.run(feed)
                latencies.append((time.perf_counter() - tick) * 1000)
        except Exception as exc:  # noqa: BLE001 - the runtime's own error is the report
            raise ValidationFailed(f"smoke inference at batch {batch} failed: {exc}") from exc
        missing = [o["name"] for o in outputs if o["name"] not in result]
        if missing:
            raise ValidationFailed(f"smoke inference at batch {batch} did not return output(s) {', '.join(missing)}")
        runs.append({
            "batch_size": batch,
            "latency_ms": round(statistics.median(latencies), 3),
            "output_shapes": {name: list(array.shape) for name, array in result.items()},
        })
    return {
        "runtime": runtime.name,
        "runtime_version": runtime.version,
        "provider": runtime.provider,
        "load_ms": round(load_ms, 2),
        "runs": runs,
    }
